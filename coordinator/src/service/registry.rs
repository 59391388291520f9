//! The small shared indexes beside the experiments: the agents (with when each was last heard
//! from, on the monotonic clock) and which experiment and trial each lease belongs to. Both are
//! sharded maps whose locks are held for one lookup or insert, never across anything else.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::model::{AgentId, AgentRecord, ExperimentId, LeaseId, TrialId};

const SHARDS: usize = 32;

/// A hash map split into shards, each behind its own lock.
#[derive(Debug)]
pub struct ShardedMap<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V: Clone> ShardedMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of a key.
    pub fn get(&self, key: &K) -> Option<V> {
        self.shard(key).get(key).cloned()
    }

    /// Inserts or replaces a value.
    pub fn insert(&self, key: K, value: V) {
        self.shard(&key).insert(key, value);
    }

    /// Removes a key, returning its value.
    pub fn remove(&self, key: &K) -> Option<V> {
        self.shard(key).remove(key)
    }

    /// Changes a value in place; returns whether the key was there.
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) -> bool {
        match self.shard(key).get_mut(key) {
            Some(value) => {
                change(value);
                true
            }
            None => false,
        }
    }

    /// Keeps only the entries for which `keep` is true; returns the values removed.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) -> Vec<V> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|k, v| {
                let kept = keep(k, v);
                if !kept {
                    removed.push(v.clone());
                }
                kept
            });
        }
        removed
    }

    /// Entries, counted.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// A registered agent as the service tracks it.
#[derive(Clone, Debug)]
pub struct AgentEntry {
    /// Its stored record.
    pub record: AgentRecord,
    /// When it was last heard from.
    pub last_seen: Instant,
}

/// Where a lease belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHome {
    /// The experiment.
    pub experiment: ExperimentId,
    /// The trial.
    pub trial: TrialId,
}

/// The registered agents.
pub type Agents = ShardedMap<AgentId, AgentEntry>;

/// Every lease handed out, current or past, to its experiment and trial.
pub type Leases = ShardedMap<LeaseId, LeaseHome>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_map_basics() {
        let map: ShardedMap<u32, u32> = ShardedMap::new();
        for i in 0..100 {
            map.insert(i, i * 2);
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.get(&7), Some(14));
        assert!(map.update(&7, |v| *v = 1));
        assert_eq!(map.get(&7), Some(1));
        assert!(!map.update(&1000, |v| *v = 1));
        let removed = map.retain(|k, _| k % 2 == 0);
        assert_eq!(removed.len(), 50);
        assert_eq!(map.remove(&8), Some(16));
        assert_eq!(map.len(), 49);
    }
}
