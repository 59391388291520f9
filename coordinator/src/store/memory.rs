//! An in-memory `ExperimentStore` for tests: the same semantics as SQLite, nothing on disk.
//! Cloning it shares the data, so a test can "restart" a coordinator on the same store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Change, ExperimentStore, Snapshot};
use crate::Result;
use crate::service::model::{
    AgentId, AgentRecord, EpochRecord, ExperimentId, ExperimentRecord, TrialId, TrialRecord,
};

#[derive(Default)]
struct Tables {
    experiments: Vec<ExperimentRecord>,
    trials: BTreeMap<(ExperimentId, u32), TrialRecord>,
    trial_keys: BTreeMap<TrialId, (ExperimentId, u32)>,
    epochs: BTreeMap<(TrialId, u32, u32), EpochRecord>,
    agents: BTreeMap<AgentId, AgentRecord>,
}

/// A store that keeps everything in memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ExperimentStore for MemoryStore {
    fn load(&self) -> Result<Snapshot> {
        let tables = self
            .tables
            .lock()
            .expect("memory store lock is never poisoned");
        Ok(Snapshot {
            experiments: tables.experiments.clone(),
            trials: tables.trials.values().cloned().collect(),
            epochs: tables.epochs.values().cloned().collect(),
            agents: tables.agents.values().cloned().collect(),
        })
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        let mut tables = self
            .tables
            .lock()
            .expect("memory store lock is never poisoned");
        for change in changes {
            match change {
                Change::PutExperiment(e) => {
                    match tables.experiments.iter_mut().find(|x| x.id == e.id) {
                        Some(slot) => *slot = e.clone(),
                        None => tables.experiments.push(e.clone()),
                    }
                }
                Change::PutTrial(t) => {
                    let key = (t.experiment_id.clone(), t.number);
                    tables.trial_keys.insert(t.id.clone(), key.clone());
                    tables.trials.insert(key, t.clone());
                }
                Change::AddEpoch(e) => {
                    tables
                        .epochs
                        .entry((e.trial_id.clone(), e.attempt, e.epoch))
                        .or_insert_with(|| e.clone());
                }
                Change::PutAgent(a) => {
                    tables.agents.insert(a.id.clone(), a.clone());
                }
                Change::DeleteAgent(id) => {
                    tables.agents.remove(id);
                }
            }
        }
        Ok(())
    }
}
