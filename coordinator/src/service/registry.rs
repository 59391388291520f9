//! The small shared indexes beside the experiments: the agents (with when each was last heard
//! from, on the monotonic clock, and the digest of its secret) and which experiment, trial and
//! agent each lease belongs to. Both are sharded maps whose locks are held for one lookup or
//! insert, never across anything else.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::credentials::SecretDigest;
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

    /// Looks a key up and lets `f` change its value in place (`Some`) or say what to insert
    /// (`None`: `f` returns the value to insert, if any), under one lock, so two callers racing on
    /// one key see each other's change.
    pub fn upsert<R>(&self, key: K, f: impl FnOnce(Option<&mut V>) -> (Option<V>, R)) -> R {
        let mut shard = self.shard(&key);
        match shard.get_mut(&key) {
            Some(value) => f(Some(value)).1,
            None => {
                let (insert, result) = f(None);
                if let Some(value) = insert {
                    shard.insert(key, value);
                }
                result
            }
        }
    }

    /// Calls `f` on every value, in place.
    pub fn for_each_mut(&self, mut f: impl FnMut(&K, &mut V)) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in shard.iter_mut() {
                f(k, v);
            }
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

    /// Entries for which `count` is true, counted.
    pub fn count(&self, mut count: impl FnMut(&V) -> bool) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|p| p.into_inner());
                shard.values().filter(|v| count(v)).count()
            })
            .sum()
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
    /// Its secret's digest; `None` for an agent stored before agents had secrets.
    pub secret: Option<SecretDigest>,
    /// False once it was silent for the agent timeout: it is no longer counted or leased to
    /// until it registers again, but its secret is kept (for the agent retention) so its late
    /// reports and completions are still recognised.
    pub connected: bool,
}

impl AgentEntry {
    /// A connected agent seen at `now`.
    pub fn new(record: AgentRecord, now: Instant) -> Self {
        let secret = SecretDigest::from_hex(&record.secret_sha256);
        Self {
            record,
            last_seen: now,
            secret,
            connected: true,
        }
    }

    /// Whether `secret` is this agent's.
    pub fn admits(&self, secret: &str) -> bool {
        self.secret.is_some_and(|digest| digest.matches(secret))
    }
}

/// Where a lease belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHome {
    /// The experiment.
    pub experiment: ExperimentId,
    /// The trial.
    pub trial: TrialId,
    /// The agent it was granted to.
    pub agent: AgentId,
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
        assert_eq!(map.count(|v| *v > 100), 24);
        let inserted = map.upsert(500, |slot| match slot {
            Some(_) => (None, false),
            None => (Some(5), true),
        });
        assert!(inserted);
        let replaced = map.upsert(500, |slot| match slot {
            Some(v) => {
                *v += 1;
                (None, true)
            }
            None => (Some(0), false),
        });
        assert!(replaced);
        assert_eq!(map.get(&500), Some(6));
        map.for_each_mut(|_, v| *v = 0);
        assert_eq!(map.count(|v| *v == 0), 50);
    }
}
