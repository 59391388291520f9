//! The data pipeline of the reference (MXNet/SigOpt `data_helpers.py` over Kim's MR files).
//!
//! Lines split on byte 0x0A only (the files are latin-1 and contain 0x85, which Unicode-aware
//! splitters treat as a line break) → [`clean::clean_str`] → tokens → every sentence padded at
//! the end with `</s>` to the longest → vocabulary from the padded corpus, most common first,
//! ties in order of first appearance (Python's `Counter.most_common`, a stable sort of an
//! insertion-ordered dict) → token ids → numpy's legacy `permutation` with seed 10 → the last
//! 1,000 sentences are the validation set.
//!
//! The padding is counted, not materialized, and a sentence longer than [`MAX_SEQ_LEN`] tokens
//! is cut to it (MR's longest has 56, so MR goes through unchanged, id for id).
//!
//! Users' own files go through the same pipeline ([`files`]): `label<TAB>text` or `label text`
//! lines, a training file with an optional validation file (else a seeded split) and an optional
//! test file.

pub mod clean;
pub mod files;
pub mod numpy_rng;

pub use files::{DataFiles, load_labelled_file};

use std::collections::HashMap;

use crate::{Error, Result};

/// The padding token of the reference.
pub const PAD: &str = "</s>";

/// The most tokens of a sentence the model sees: longer ones are cut (and counted in
/// [`Dataset::cut_sentences`]). Every sentence is padded to the longest, so one line of 5,000
/// words made a 10,662-sentence corpus take 3.8 GB and 19 s to load (`agent train`, 2-core AMD
/// EPYC), and a longer one would exhaust memory. Sentence data sets stay far below it: MR's
/// longest sentence has 56 tokens.
pub const MAX_SEQ_LEN: usize = 1000;

/// The seed of the reference's split (`np.random.seed(10)`).
pub const MR_SPLIT_SEED: u32 = 10;

/// Validation sentences of the reference's MR split.
pub const MR_DEV_SIZE: usize = 1000;

const MR_POS: &[u8] = include_bytes!("../../../../data/mr/rt-polarity.pos");
const MR_NEG: &[u8] = include_bytes!("../../../../data/mr/rt-polarity.neg");

/// A tokenized, padded and split text-classification data set.
///
/// Token ids are row-major `[sentences, seq_len]`; labels are class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Training token ids, `[train_len, seq_len]`.
    pub train_ids: Vec<u32>,
    /// Training labels.
    pub train_labels: Vec<u32>,
    /// Validation token ids, `[dev_len, seq_len]`.
    pub dev_ids: Vec<u32>,
    /// Validation labels.
    pub dev_labels: Vec<u32>,
    /// Test token ids, `[test_len, seq_len]` (empty without a test file). Never used for
    /// training or selection: [`crate::train()`] only scores the final model on it.
    pub test_ids: Vec<u32>,
    /// Test labels (empty without a test file).
    pub test_labels: Vec<u32>,
    /// The vocabulary, id order (most common first).
    pub vocab: Vec<String>,
    /// Tokens a sentence after padding.
    pub seq_len: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, by class index.
    pub class_names: Vec<String>,
    /// The id of the padding token.
    pub pad_id: u32,
    /// The permutation of all sentences (train first, then dev), as indices into the corpus.
    pub permutation: Vec<usize>,
    /// Training and validation sentences longer than [`MAX_SEQ_LEN`] tokens, cut to it.
    pub cut_sentences: usize,
}

impl Dataset {
    /// Entries of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Training sentences.
    pub fn train_len(&self) -> usize {
        self.train_labels.len()
    }

    /// Validation sentences.
    pub fn dev_len(&self) -> usize {
        self.dev_labels.len()
    }

    /// Test sentences (0 without a test file).
    pub fn test_len(&self) -> usize {
        self.test_labels.len()
    }

    /// Keeps the first `max_train` training and `max_dev` validation sentences (0 keeps all).
    /// The vocabulary is unchanged, so ids stay valid; the test set is kept whole.
    pub fn truncated(mut self, max_train: usize, max_dev: usize) -> Dataset {
        if max_train > 0 && max_train < self.train_len() {
            self.train_labels.truncate(max_train);
            self.train_ids.truncate(max_train * self.seq_len);
        }
        if max_dev > 0 && max_dev < self.dev_len() {
            self.dev_labels.truncate(max_dev);
            self.dev_ids.truncate(max_dev * self.seq_len);
        }
        self
    }
}

/// Splits on 0x0A only, dropping the empty piece after a final newline.
pub fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// A corpus before the split: token lists and labels, in file order.
pub(crate) struct Corpus {
    pub(crate) sentences: Vec<Vec<String>>,
    pub(crate) labels: Vec<u32>,
    pub(crate) num_classes: usize,
    pub(crate) class_names: Vec<String>,
}

/// How a corpus is split into training and validation sentences.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Split {
    /// numpy's legacy permutation with this seed; the last `dev_size` are validation.
    Seeded {
        /// The permutation's seed.
        seed: u32,
        /// Validation sentences.
        dev_size: usize,
    },
    /// The first `train_len` sentences are training, the rest validation, in file order.
    Given {
        /// Training sentences.
        train_len: usize,
    },
}

/// MR, embedded in the binary, through the reference pipeline and split.
///
/// # Errors
/// Never for the embedded files; the `Result` keeps one signature with [`files::load`].
pub fn mr_embedded() -> Result<Dataset> {
    let mut sentences = Vec::new();
    let mut labels = Vec::new();
    for (bytes, label) in [(MR_POS, 1u32), (MR_NEG, 0u32)] {
        for line in split_lines(bytes) {
            sentences.push(clean::tokenize(line));
            labels.push(label);
        }
    }
    let corpus = Corpus {
        sentences,
        labels,
        num_classes: 2,
        class_names: vec!["negative".into(), "positive".into()],
    };
    build(
        corpus,
        Split::Seeded {
            seed: MR_SPLIT_SEED,
            dev_size: MR_DEV_SIZE,
        },
    )
}

/// Pads, builds the vocabulary, maps to ids and splits.
pub(crate) fn build(mut corpus: Corpus, split: Split) -> Result<Dataset> {
    let n = corpus.sentences.len();
    let (permutation, train_len) = match split {
        Split::Seeded { seed, dev_size } => {
            if dev_size >= n {
                return Err(Error::Data {
                    reason: format!("{n} sentences cannot leave {dev_size} for validation"),
                });
            }
            (numpy_rng::legacy_permutation(n, seed), n - dev_size)
        }
        Split::Given { train_len } => ((0..n).collect(), train_len.min(n)),
    };
    let mut cut_sentences = 0;
    for sentence in &mut corpus.sentences {
        if sentence.len() > MAX_SEQ_LEN {
            sentence.truncate(MAX_SEQ_LEN);
            cut_sentences += 1;
        }
    }
    let seq_len = corpus.sentences.iter().map(Vec::len).max().unwrap_or(0);
    let mut vocab = vocabulary(&corpus.sentences, seq_len);
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
    for (i, word) in vocab.iter().enumerate() {
        index.insert(word.as_str(), i as u32);
    }
    let pad_id = match index.get(PAD) {
        Some(&id) => id,
        None => vocab.len() as u32,
    };
    let ids: Vec<Vec<u32>> = corpus
        .sentences
        .iter()
        .map(|s| {
            let mut row: Vec<u32> = s.iter().map(|w| index[w.as_str()]).collect();
            row.resize(seq_len, pad_id);
            row
        })
        .collect();
    if pad_id as usize == vocab.len() {
        vocab.push(PAD.to_owned());
    }
    let (train, dev) = permutation.split_at(train_len);
    let gather = |part: &[usize]| -> (Vec<u32>, Vec<u32>) {
        let tokens = part.iter().flat_map(|&i| ids[i].iter().copied()).collect();
        let labels = part.iter().map(|&i| corpus.labels[i]).collect();
        (tokens, labels)
    };
    let (train_ids, train_labels) = gather(train);
    let (dev_ids, dev_labels) = gather(dev);
    Ok(Dataset {
        train_ids,
        train_labels,
        dev_ids,
        dev_labels,
        test_ids: Vec::new(),
        test_labels: Vec::new(),
        vocab,
        seq_len,
        num_classes: corpus.num_classes,
        class_names: corpus.class_names,
        pad_id,
        permutation,
        cut_sentences,
    })
}

/// Words of the corpus padded to `seq_len` by decreasing count, ties in order of first
/// appearance (`Counter.most_common()` over the padded sentences). The padding is counted, not
/// materialized: [`PAD`] first appears at the end of the first sentence shorter than
/// `seq_len`, and appears `seq_len - len` times in each sentence of `len` tokens.
fn vocabulary(sentences: &[Vec<String>], seq_len: usize) -> Vec<String> {
    // (count, order of first appearance) of each word.
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut count = |word, times| {
        let first = counts.len() + 1;
        counts.entry(word).or_insert((0, first)).0 += times;
    };
    for sentence in sentences {
        for word in sentence {
            count(word.as_str(), 1);
        }
        let pads = seq_len.saturating_sub(sentence.len());
        if pads > 0 {
            count(PAD, pads);
        }
    }
    let mut words: Vec<(&str, (usize, usize))> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    words.into_iter().map(|(w, _)| w.to_owned()).collect()
}

#[cfg(test)]
mod tests;
