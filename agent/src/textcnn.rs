//! The `textcnn` workload: the study's CNN trained with `cnn::train` on any backend.
//!
//! Parameters: the workload's fixed parameters, overridden by the trial's, over
//! `HyperParams::study_default()`; an optional `seed` parameter picks the initialization (by
//! default a hash of the trial id, so a retried trial trains the same way). `dataset` is `mr`
//! (embedded) or a path to a training file of `label<TAB>text` or `label text` lines on the
//! agent's machine, with optional `dev_dataset` (else a seeded split of the training file) and
//! `test_dataset` files (`cnn::data::files`); the loaded corpus is cached on the slot's thread
//! between trials, and loaded again when a file's size or modification time changed.
//!
//! The objective is never measured on the test file: the final model (the one the dev accuracy
//! score is measured on) is scored on it once after training, reported as the extra metric
//! [`TEST_ACCURACY`].

use std::collections::BTreeMap;

use cnn::{Control, Dataset, HyperParams};
use kernels::Backend;

use crate::trainer::{EpochControl, EpochMetrics, TrainOutcome, Trainer, TrialFailure, TrialJob};

/// Seed of the train/dev split of a user's labelled file (fixed, so every trial sees one split).
const FILE_SPLIT_SEED: u64 = 1;

/// The extra metric holding the final model's accuracy on the test file.
pub const TEST_ACCURACY: &str = "test_accuracy";

/// The files a corpus was loaded from: (dataset, dev_dataset, test_dataset).
type CorpusKey = (String, String, String);

/// The size and modification time of each of a corpus's files when it was loaded, so a file
/// changed on disk (a user fixed or grew their data) is loaded again, not served from the cache.
type FileStamps = Vec<Option<(u64, std::time::SystemTime)>>;

fn stamps((train, dev, test): &CorpusKey) -> FileStamps {
    [train, dev, test]
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// Trains the text CNN on one backend.
pub struct TextCnnTrainer<B: Backend> {
    backend: B,
    corpus: Option<(CorpusKey, FileStamps, Dataset)>,
}

impl<B: Backend> TextCnnTrainer<B> {
    /// A trainer on `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            corpus: None,
        }
    }

    fn dataset(&mut self, workload: &proto::v1::Workload) -> Result<Dataset, TrialFailure> {
        let key: CorpusKey = (
            workload.dataset.clone(),
            workload.dev_dataset.clone(),
            workload.test_dataset.clone(),
        );
        let stamped = stamps(&key);
        let cached = matches!(
            &self.corpus,
            Some((cached_key, cached_stamps, _)) if *cached_key == key && *cached_stamps == stamped
        );
        if !cached {
            let loaded = load(&key).map_err(|error| {
                TrialFailure::new(format!("failed to load dataset '{}': {error}", key.0))
            })?;
            if loaded.cut_sentences > 0 {
                tracing::warn!(
                    dataset = %key.0,
                    cut = loaded.cut_sentences,
                    "sentences longer than {} tokens were cut to it",
                    cnn::data::MAX_SEQ_LEN
                );
            }
            self.corpus = Some((key, stamped, loaded));
        }
        let (max_train, max_dev) = (workload.max_train_examples, workload.max_dev_examples);
        let (_, _, full) = self
            .corpus
            .as_ref()
            .expect("the corpus was loaded just above");
        Ok(full.clone().truncated(max_train as usize, max_dev as usize))
    }
}

/// Loads the embedded MR or a user's files.
fn load((train, dev, test): &CorpusKey) -> cnn::Result<Dataset> {
    let optional = |path: &str| (!path.is_empty()).then(|| std::path::PathBuf::from(path));
    match train.as_str() {
        "mr" | "" if dev.is_empty() && test.is_empty() => cnn::data::mr_embedded(),
        "mr" | "" => Err(cnn::Error::Data {
            reason: "dev_dataset and test_dataset need dataset to be a training file, \
                     not the embedded MR"
                .to_owned(),
        }),
        path => {
            let files = cnn::data::DataFiles {
                train: path.into(),
                dev: optional(dev),
                test: optional(test),
            };
            cnn::data::files::load(&files, FILE_SPLIT_SEED)
        }
    }
}

/// Which number of an epoch report is the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objective {
    DevAccuracy,
    TrainAccuracy,
    TrainLoss,
}

fn objective(metric: &str) -> Result<Objective, TrialFailure> {
    match metric {
        "" | "dev_accuracy" | "accuracy" | "validation_accuracy" => Ok(Objective::DevAccuracy),
        "train_accuracy" => Ok(Objective::TrainAccuracy),
        "train_loss" => Ok(Objective::TrainLoss),
        TEST_ACCURACY => Err(TrialFailure::new(
            "metric 'test_accuracy' is never the objective: the test file is held out from \
             selection; optimize dev_accuracy",
        )),
        other => Err(TrialFailure::new(format!(
            "unknown metric '{other}' for workload 'textcnn': use dev_accuracy, train_accuracy or train_loss"
        ))),
    }
}

/// The hyperparameters and seed of a job.
fn hyperparams(job: &TrialJob) -> Result<(HyperParams, Option<u64>), TrialFailure> {
    let mut numbers: BTreeMap<String, f64> = job.numeric_params()?;
    let seed = match numbers.remove("seed") {
        Some(seed) if seed >= 0.0 && seed.fract() == 0.0 => Some(seed as u64),
        Some(seed) => {
            return Err(TrialFailure::new(format!(
                "parameter 'seed' must be a whole number >= 0, got {seed}"
            )));
        }
        None => None,
    };
    let pairs = numbers.iter().map(|(name, value)| (name.as_str(), *value));
    let hp = HyperParams::study_default()
        .with_overrides(pairs)
        .map_err(|error| TrialFailure::new(error.to_string()))?;
    Ok((hp, seed))
}

/// FNV-1a of the trial id: a stable default seed.
fn seed_of(trial_id: &str) -> u64 {
    trial_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<B: Backend> Trainer for TextCnnTrainer<B> {
    fn train(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> Result<TrainOutcome, TrialFailure> {
        let objective = objective(&job.metric)?;
        let (hp, seed) = hyperparams(job)?;
        let data = self.dataset(&job.workload)?;
        let backend = &self.backend;
        let mut last_value = None;
        let summary = cnn::train(
            backend,
            &data,
            &hp,
            seed.unwrap_or_else(|| seed_of(&job.trial_id)),
            |report| {
                let value = match objective {
                    Objective::DevAccuracy => report.dev_accuracy,
                    Objective::TrainAccuracy => report.train_accuracy,
                    Objective::TrainLoss => report.train_loss,
                };
                last_value = Some(value);
                let metrics = EpochMetrics {
                    epoch: report.epoch as u32,
                    value,
                    train_loss: report.train_loss,
                    train_accuracy: report.train_accuracy,
                    epoch_seconds: report.epoch_seconds,
                    examples: report.examples as u64,
                    device_memory_bytes: backend.memory_used_bytes(),
                };
                match on_epoch(&metrics) {
                    EpochControl::Continue => Control::Continue,
                    EpochControl::Stop => Control::Stop,
                }
            },
        )
        .map_err(|error| TrialFailure::new(error.to_string()))?;
        Ok(TrainOutcome {
            final_value: last_value.unwrap_or(summary.final_dev_accuracy),
            best_epoch: summary.best_epoch as u32,
            epochs_run: summary.epochs_run as u32,
            stopped: summary.stopped,
            device_seconds: summary.device_seconds,
            metrics: summary
                .test_accuracy
                .map(|accuracy| (TEST_ACCURACY.to_owned(), accuracy))
                .into_iter()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{ParameterValue, Workload, parameter_value::Kind};

    fn job(params: &[(&str, f64)], metric: &str) -> TrialJob {
        TrialJob {
            trial_id: "trial-1".into(),
            workload: Workload {
                kind: "textcnn".into(),
                dataset: "mr".into(),
                ..Workload::default()
            },
            params: params
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        ParameterValue {
                            kind: Some(Kind::FloatValue(*value)),
                        },
                    )
                })
                .collect(),
            metric: metric.into(),
            maximize: true,
        }
    }

    #[test]
    fn params_override_the_study_defaults() {
        let (hp, seed) = hyperparams(&job(
            &[("embed_dim", 16.0), ("epochs", 2.0), ("seed", 7.0)],
            "",
        ))
        .expect("valid");
        assert_eq!((hp.embed_dim, hp.epochs, hp.batch_size), (16, 2, 50));
        assert_eq!(seed, Some(7));
    }

    #[test]
    fn out_of_range_and_unknown_params_name_the_parameter() {
        let err = hyperparams(&job(&[("dropout", 1.5)], "")).expect_err("out of range");
        assert!(err.reason.contains("dropout"), "{err}");
        let err = hyperparams(&job(&[("momentum", 0.9)], "")).expect_err("unknown");
        assert!(err.reason.contains("momentum"), "{err}");
        let err = hyperparams(&job(&[("seed", -1.0)], "")).expect_err("bad seed");
        assert!(err.reason.contains("seed"), "{err}");
    }

    #[test]
    fn metrics_map_to_report_fields() {
        assert_eq!(
            objective("dev_accuracy").expect("known"),
            Objective::DevAccuracy
        );
        assert_eq!(objective("").expect("default"), Objective::DevAccuracy);
        assert!(objective("f1").is_err());
        assert_ne!(seed_of("a"), seed_of("b"));
    }

    #[test]
    fn trains_a_tiny_model_on_a_slice_of_mr_and_stops_on_request() {
        let mut trainer = TextCnnTrainer::new(kernels::cpu::CpuBackend::new());
        let mut tiny = job(
            &[
                ("embed_dim", 8.0),
                ("epochs", 3.0),
                ("num_feature_maps", 4.0),
                ("batch_size", 50.0),
            ],
            "",
        );
        tiny.workload.max_train_examples = 200;
        tiny.workload.max_dev_examples = 100;
        let mut epochs = Vec::new();
        let outcome = trainer
            .train(&tiny, &mut |m| {
                epochs.push(m.epoch);
                if m.epoch == 2 {
                    EpochControl::Stop
                } else {
                    EpochControl::Continue
                }
            })
            .expect("trains");
        assert_eq!(epochs, vec![1, 2]);
        assert!(outcome.stopped && outcome.epochs_run == 2);
        assert!((0.0..=1.0).contains(&outcome.final_value));
    }

    #[test]
    fn own_files_report_test_accuracy_and_bad_lines_fail_naming_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lines = |count: usize, offset: usize| -> String {
            (0..count)
                .map(|i| {
                    let label = (i + offset) % 2;
                    let word = ["dull", "great"][label];
                    format!("{label} a {word} film number {i}\n")
                })
                .collect()
        };
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writes");
            path.display().to_string()
        };
        let mut tiny = job(
            &[
                ("embed_dim", 8.0),
                ("epochs", 1.0),
                ("num_feature_maps", 4.0),
                ("batch_size", 10.0),
            ],
            "",
        );
        tiny.workload.dataset = write("train.txt", &lines(60, 0));
        tiny.workload.dev_dataset = write("dev.txt", &lines(20, 1));
        tiny.workload.test_dataset = write("test.txt", &lines(20, 0));
        let mut trainer = TextCnnTrainer::new(kernels::cpu::CpuBackend::new());
        let outcome = trainer
            .train(&tiny, &mut |_| EpochControl::Continue)
            .expect("trains");
        let test = outcome.metrics[TEST_ACCURACY];
        assert!((0.0..=1.0).contains(&test), "{test}");
        assert!((0.0..=1.0).contains(&outcome.final_value));

        // A file fixed or grown on disk is read again, not served from the slot's cache.
        let small = trainer.dataset(&tiny.workload).expect("cached");
        write("train.txt", &lines(90, 0));
        let grown = trainer.dataset(&tiny.workload).expect("reloaded");
        assert_eq!(
            (small.train_len(), grown.train_len()),
            (60, 90),
            "the grown training file is read again"
        );

        tiny.workload.test_dataset = write("bad.txt", "1 fine\n\njust-a-label\n");
        let err = trainer
            .train(&tiny, &mut |_| EpochControl::Continue)
            .expect_err("bad test file");
        assert!(
            err.reason.contains("bad.txt:3: expected 'label<TAB>text'"),
            "{err}"
        );
        assert!(objective(TEST_ACCURACY).is_err(), "never the objective");
    }
}
