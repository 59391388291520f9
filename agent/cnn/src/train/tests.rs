//! Training on a slice of MR: it learns, a fixed seed reproduces it, and the controls work.

use super::*;
use kernels::cpu::CpuBackend;

use crate::model::batch::{Batcher, HostBatch};

fn small_hp(epochs: usize) -> HyperParams {
    HyperParams::study_default()
        .with_overrides([
            ("embed_dim", 32.0),
            ("num_feature_maps", 32.0),
            ("epochs", epochs as f64),
            ("learning_rate", 0.002),
        ])
        .unwrap()
}

fn slice() -> Dataset {
    crate::data::mr_embedded().unwrap().truncated(3000, 500)
}

#[test]
fn tiny_model_on_mr_learns_well_above_chance() {
    let data = slice();
    let mut reports = Vec::new();
    let summary = train(&CpuBackend::new(), &data, &small_hp(6), 3, |r| {
        reports.push(r.clone());
        Control::Continue
    })
    .unwrap();
    let last = reports.last().unwrap();
    assert_eq!(
        (summary.epochs_run, reports.len(), last.examples),
        (6, 6, 3000)
    );
    assert!(
        last.train_accuracy > 0.85,
        "train accuracy {}",
        last.train_accuracy
    );
    assert!(
        reports[0].train_loss > last.train_loss,
        "the loss falls: {reports:?}"
    );
    assert!(summary.best_dev_accuracy > 0.6, "dev accuracy {summary:?}");
    assert!(summary.best_epoch >= 1 && summary.final_dev_accuracy == last.dev_accuracy);
}

#[test]
fn same_seed_same_results_and_stop_ends_training() {
    let data = slice().truncated(600, 200);
    let run = |seed: u64| {
        let mut reports = Vec::new();
        let summary = train(&CpuBackend::new(), &data, &small_hp(3), seed, |r| {
            reports.push((r.train_loss, r.train_accuracy, r.dev_accuracy));
            if r.epoch == 2 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .unwrap();
        (reports, summary)
    };
    let (first, summary) = run(11);
    let (second, _) = run(11);
    let (other, _) = run(12);
    assert_eq!(first, second);
    assert_ne!(first, other);
    assert_eq!((summary.epochs_run, summary.stopped), (2, true));
}

#[test]
fn a_non_finite_loss_is_diverged_not_a_panic() {
    assert!(matches!(
        finite_loss(f64::NAN, 4),
        Err(Error::Diverged { epoch: 4 })
    ));
    assert!(matches!(
        finite_loss(f64::INFINITY, 1),
        Err(Error::Diverged { epoch: 1 })
    ));
    assert_eq!(finite_loss(0.5, 1).unwrap(), 0.5);
}

#[test]
fn learning_rate_halves_after_epochs_50_and_100() {
    assert_eq!(learning_rate_at(1.0, 50), 1.0);
    assert_eq!(learning_rate_at(1.0, 51), 0.5);
    assert_eq!(learning_rate_at(1.0, 101), 0.25);
}

#[test]
fn short_sentences_are_padded_for_wide_filters_and_empty_sets_are_errors() {
    let data = slice().truncated(100, 50);
    let hp = HyperParams {
        filter_sizes: [3, 4, 70],
        epochs: 1,
        ..small_hp(1)
    };
    assert!(train(&CpuBackend::new(), &data, &hp, 1, |_| Control::Continue).is_ok());
    let mut no_train = data.clone();
    no_train.train_ids.clear();
    no_train.train_labels.clear();
    let mut no_dev = data.clone();
    no_dev.dev_ids.clear();
    no_dev.dev_labels.clear();
    for empty in [no_train, no_dev] {
        let err = train(&CpuBackend::new(), &empty, &small_hp(1), 1, |_| {
            Control::Continue
        })
        .unwrap_err();
        assert!(matches!(err, Error::Data { .. }), "{err}");
        assert!(err.to_string().contains("at least one training"), "{err}");
    }
}

#[test]
fn a_training_set_smaller_than_a_batch_is_one_batch_of_all_of_it() {
    let data = slice();
    let hp = small_hp(2);
    assert!(hp.batch_size > 10, "the test needs a batch larger than 10");
    let run = |data: &Dataset, hp: &HyperParams| {
        let mut losses = Vec::new();
        let summary = train(&CpuBackend::new(), data, hp, 3, |report| {
            losses.push(report.train_loss);
            Control::Continue
        })
        .unwrap();
        (summary, losses)
    };
    let small = data.truncated(10, 40);
    let (summary, losses) = run(&small, &hp);
    assert_eq!(summary.epochs_run, 2);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // The same as asking for a batch of exactly the ten sentences.
    let exact = HyperParams {
        batch_size: 10,
        ..hp.clone()
    };
    let (summary_exact, losses_exact) = run(&small, &exact);
    assert_eq!(losses, losses_exact);
    assert_eq!(summary.final_dev_accuracy, summary_exact.final_dev_accuracy);
}

#[test]
fn the_test_set_is_scored_once_with_the_final_model() {
    let plain = crate::data::mr_embedded().unwrap().truncated(300, 100);
    let hp = HyperParams::study_default()
        .with_overrides([
            ("embed_dim", 8.0),
            ("num_feature_maps", 4.0),
            ("epochs", 2.0),
        ])
        .unwrap();
    let without = train(&CpuBackend::new(), &plain, &hp, 5, |_| Control::Continue).unwrap();
    assert_eq!(without.test_accuracy, None);
    let mut with_test = plain.clone();
    with_test.test_ids = plain.dev_ids.clone();
    with_test.test_labels = plain.dev_labels.clone();
    let with = train(&CpuBackend::new(), &with_test, &hp, 5, |_| {
        Control::Continue
    })
    .unwrap();
    assert_eq!(
        with.final_dev_accuracy, without.final_dev_accuracy,
        "a test set changes nothing in training"
    );
    assert_eq!(
        with.test_accuracy,
        Some(with.final_dev_accuracy),
        "the dev sentences as a test set score as the final model does on dev"
    );
}

/// Issue 15: the step the training loop runs (device step counter and learning rate, the form
/// a CUDA graph captures) computes what the host-argument form computes, bit for bit.
#[test]
fn the_capturable_step_equals_the_host_argument_step() {
    let b = CpuBackend::new();
    let hp = small_hp(1);
    let data = slice().truncated(100, 50);
    let dims = Dims {
        vocab: data.vocab_size(),
        embed_dim: hp.embed_dim,
        seq_len: data.seq_len,
        classes: data.num_classes,
        filter_sizes: hp.filter_sizes,
        maps: hp.num_feature_maps,
        capacity: hp.batch_size,
    };
    let (seed, lr) = (9u64, 0.003f64);
    let mut host = HostBatch::default();
    let (s, bs) = (data.seq_len, hp.batch_size);
    Batcher::new(dims.vocab).fill(
        &data.train_ids[..bs * s],
        &data.train_labels[..bs],
        &mut host,
    );
    let run = |device_form: bool| -> Vec<Vec<f32>> {
        let mut model = Model::new(&b, dims, seed).unwrap();
        let mut optimizer = Optimizer::new(&b, &model, &hp).unwrap();
        optimizer.set_learning_rate(lr);
        model.upload(&b, &host).unwrap();
        let (mut step, lr_buf, mut stats) = (
            b.alloc_idx(1).unwrap(),
            b.upload(&[lr as f32]).unwrap(),
            b.alloc(2).unwrap(),
        );
        for at in 1..=3u64 {
            if device_form {
                let mut bufs = StepBuffers {
                    step: &mut step,
                    lr: &lr_buf,
                    stats: &mut stats,
                };
                train_step(
                    &b,
                    &mut model,
                    &mut optimizer,
                    &hp,
                    seed ^ DROPOUT_STREAM,
                    &mut bufs,
                )
                .unwrap();
            } else {
                let dropout_seed = kernels::rng::mix64(seed ^ DROPOUT_STREAM, at);
                let dropout = Some((hp.dropout as f32, dropout_seed));
                model.forward(&b, dropout, &mut stats).unwrap();
                model.backward(&b).unwrap();
                optimizer.step(&b, &mut model).unwrap();
            }
        }
        let mut out = vec![stats.clone(), model.weights.embedding.clone()];
        out.extend(model.weights.dense.iter().cloned());
        out
    };
    let bits = |v: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
        v.iter()
            .map(|t| t.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(run(true)), bits(run(false)));
}
