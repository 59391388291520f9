//! Pausing an experiment whose trials keep failing the same way, instead of burning its budget.
//!
//! The rule: when `pause_after_failures` (N, the coordinator's setting, 3 by default, 0 turns
//! pausing off) trials **in a row**, in the order they finished, failed with the same
//! [normalized](normalize_reason) reason, the experiment is paused. A trial that ends with a
//! result (succeeded or early stopped) restarts the count at zero, and a failure with another
//! reason restarts it at one; cancelled trials do not count either way. The count starts when the
//! experiment is created and again when it is resumed, so a resumed experiment gets N fresh
//! tries. The rule applies at any time, not only to the first trials: a data set deleted in the
//! middle of a run pauses it too. N failures in a row for the same reason can also be genuine
//! (out of memory on N large configurations in a row); resume such an experiment, or raise N.
//!
//! While paused no trial is leased and none is created; pending trials stay pending, and leased
//! ones run to their end (their agents are not told to stop). `ResumeExperiment` sets it running
//! again. The paused state, its reason and the time of the last resume are stored; the count
//! itself is rebuilt from the stored trials at startup ([`FailureStreak::rebuild`]).

use super::model::{TrialRecord, TrialState};

/// The default of `pause_after_failures`.
pub const DEFAULT_PAUSE_AFTER_FAILURES: u32 = 3;

/// The longest normalized reason compared, in characters.
const MAX_NORMALIZED_CHARS: usize = 300;

/// The failures in a row that share one normalized reason, since the experiment started or was
/// last resumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureStreak {
    /// The normalized reason the failures share (empty when `count` is 0).
    pub normalized: String,
    /// The latest failure's reason as reported.
    pub latest: String,
    /// Failures in a row with that reason.
    pub count: u32,
}

impl FailureStreak {
    /// Counts a trial that just became terminal.
    pub fn record(&mut self, trial: &TrialRecord) {
        match trial.state {
            TrialState::Failed => {
                let normalized = normalize_reason(&trial.failure_reason);
                if self.count > 0 && normalized == self.normalized {
                    self.count += 1;
                } else {
                    self.normalized = normalized;
                    self.count = 1;
                }
                self.latest.clone_from(&trial.failure_reason);
            }
            TrialState::Succeeded | TrialState::EarlyStopped => *self = Self::default(),
            TrialState::Cancelled
            | TrialState::Pending
            | TrialState::Leased
            | TrialState::Running => {}
        }
    }

    /// The streak of the trials that finished at or after `since_unix`, in the order they
    /// finished (ties in creation order).
    pub fn rebuild<'a>(trials: impl IntoIterator<Item = &'a TrialRecord>, since_unix: f64) -> Self {
        let mut finished: Vec<&TrialRecord> = trials
            .into_iter()
            .filter(|t| t.state.is_terminal() && t.finished_unix.is_some_and(|f| f >= since_unix))
            .collect();
        finished.sort_by(|a, b| {
            a.finished_unix
                .unwrap_or(0.0)
                .total_cmp(&b.finished_unix.unwrap_or(0.0))
                .then(a.number.cmp(&b.number))
        });
        let mut streak = Self::default();
        for trial in finished {
            streak.record(trial);
        }
        streak
    }

    /// The pause reason when the streak reached `threshold` (0: never).
    pub fn pause_reason(&self, threshold: u32) -> Option<String> {
        (threshold > 0 && self.count >= threshold).then(|| {
            format!(
                "{} trials in a row failed with the same reason: {}",
                self.count, self.latest
            )
        })
    }
}

/// A failure reason with what differs between trials taken out, so that the same cause reads
/// the same: lowercase, whitespace collapsed, every run of digits replaced by `#` (epochs,
/// sizes, line numbers), the hex tail of an id (`trial-…`, `lease-…`, `agent-…`, `exp-…`)
/// dropped, and at most 300 characters.
pub fn normalize_reason(reason: &str) -> String {
    let lowered = reason.trim().to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut chars = lowered.chars().peekable();
    let mut last_space = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('#');
            last_space = false;
        } else if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
            if c == '-' && ends_with_id_prefix(&out) {
                while chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    chars.next();
                }
                out.push('…');
            }
        }
    }
    out.chars().take(MAX_NORMALIZED_CHARS).collect()
}

fn ends_with_id_prefix(text: &str) -> bool {
    ["trial-", "lease-", "agent-", "exp-"].iter().any(|prefix| {
        text.strip_suffix(prefix).is_some_and(|before| {
            before
                .chars()
                .last()
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::sample_trial;

    fn finished(number: u32, state: TrialState, reason: &str, at: f64) -> TrialRecord {
        let mut trial = sample_trial();
        trial.number = number;
        trial.state = state;
        trial.failure_reason = reason.into();
        trial.finished_unix = Some(at);
        trial.lease = None;
        trial
    }

    #[test]
    fn reasons_that_differ_only_in_numbers_and_ids_normalize_alike() {
        assert_eq!(
            normalize_reason("Loss diverged to NaN at epoch 3 (trial-00ab12cd)"),
            normalize_reason("loss diverged to NaN at  epoch 17 (trial-ff99)")
        );
        assert_eq!(normalize_reason("  a\n\tb  "), "a b");
        assert_ne!(
            normalize_reason("failed to load dataset 'a.txt'"),
            normalize_reason("failed to load dataset 'b.txt'")
        );
        // A word that merely ends like an id prefix keeps its tail.
        assert_eq!(normalize_reason("subexp-abc"), "subexp-abc");
        assert_eq!(normalize_reason(&"x".repeat(1000)).chars().count(), 300);
    }

    #[test]
    fn the_streak_counts_same_reason_failures_in_a_row() {
        let mut streak = FailureStreak::default();
        let reason = "failed to load dataset 'data/typo.txt': no such file";
        for n in 0..2 {
            streak.record(&finished(n, TrialState::Failed, reason, 1.0));
        }
        assert_eq!(streak.count, 2);
        assert_eq!(streak.pause_reason(3), None);
        streak.record(&finished(2, TrialState::Cancelled, "", 2.0));
        assert_eq!(streak.count, 2, "a cancelled trial does not count");
        streak.record(&finished(3, TrialState::Failed, reason, 3.0));
        let paused = streak.pause_reason(3).expect("three in a row");
        assert!(paused.starts_with("3 trials in a row failed"), "{paused}");
        assert!(paused.ends_with(reason), "{paused}");
        assert_eq!(streak.pause_reason(0), None, "0 turns pausing off");
        streak.record(&finished(4, TrialState::Failed, "out of memory", 4.0));
        assert_eq!(streak.count, 1, "another reason starts over");
        streak.record(&finished(5, TrialState::Succeeded, "", 5.0));
        assert_eq!(streak, FailureStreak::default(), "a result starts over");
    }

    #[test]
    fn the_rebuilt_streak_follows_finish_order_since_the_resume() {
        let trials = [
            // Finished last: a success ends the earlier failures' streak...
            finished(0, TrialState::Succeeded, "", 50.0),
            finished(1, TrialState::Failed, "boom 1", 10.0),
            finished(2, TrialState::Failed, "boom 2", 20.0),
            // ...and these two come after it.
            finished(3, TrialState::Failed, "boom 3", 60.0),
            finished(4, TrialState::Failed, "boom 4", 70.0),
        ];
        let streak = FailureStreak::rebuild(&trials, 0.0);
        assert_eq!((streak.count, streak.latest.as_str()), (2, "boom 4"));
        let since_resume = FailureStreak::rebuild(&trials, 65.0);
        assert_eq!(since_resume.count, 1, "only the failure after the resume");
        assert_eq!(FailureStreak::rebuild(&trials, 100.0).count, 0);
    }
}
