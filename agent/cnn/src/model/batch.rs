//! Host-side batch preparation: token ids, labels and the compacted embedding rows.

/// One batch as it goes up to the device.
#[derive(Debug, Default)]
pub struct HostBatch {
    /// Token ids, `[n, seq_len]`.
    pub ids: Vec<u32>,
    /// Labels, `[n]`.
    pub labels: Vec<u32>,
    /// For each token, its row's slot in `rows`.
    pub slots: Vec<u32>,
    /// The distinct ids of the batch, in order of first appearance.
    pub rows: Vec<u32>,
}

/// Builds batches, reusing a vocabulary-sized map from id to slot.
#[derive(Debug)]
pub struct Batcher {
    slot_of: Vec<u32>,
}

impl Batcher {
    /// A batcher for a vocabulary of `vocab` ids.
    pub fn new(vocab: usize) -> Self {
        Self {
            slot_of: vec![u32::MAX; vocab],
        }
    }

    /// Fills `out` with the sentences `ids` (already `[n, seq_len]`) and their labels.
    pub fn fill(&mut self, ids: &[u32], labels: &[u32], out: &mut HostBatch) {
        out.ids.clear();
        out.ids.extend_from_slice(ids);
        out.labels.clear();
        out.labels.extend_from_slice(labels);
        out.slots.clear();
        out.rows.clear();
        for &id in ids {
            let slot = &mut self.slot_of[id as usize];
            if *slot == u32::MAX {
                *slot = out.rows.len() as u32;
                out.rows.push(id);
            }
            out.slots.push(*slot);
        }
        for &row in &out.rows {
            self.slot_of[row as usize] = u32::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_distinct_in_first_appearance_order() {
        let mut batcher = Batcher::new(10);
        let mut batch = HostBatch::default();
        batcher.fill(&[7, 3, 7, 0], &[1], &mut batch);
        assert_eq!(batch.rows, vec![7, 3, 0]);
        assert_eq!(batch.slots, vec![0, 1, 0, 2]);
        batcher.fill(&[3, 3], &[0], &mut batch);
        assert_eq!((batch.rows, batch.slots), (vec![3], vec![0, 0]));
    }
}
