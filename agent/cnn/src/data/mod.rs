//! The data pipeline of the reference (MXNet/SigOpt `data_helpers.py` over Kim's MR files).
//!
//! Lines split on byte 0x0A only (the files are latin-1 and contain 0x85, which Unicode-aware
//! splitters treat as a line break) → [`clean::clean_str`] → tokens → every sentence padded at
//! the end with `</s>` to the longest → vocabulary from the padded corpus, most common first,
//! ties in order of first appearance (Python's `Counter.most_common`, a stable sort of an
//! insertion-ordered dict) → token ids → numpy's legacy `permutation` with seed 10 → the last
//! 1,000 sentences are the validation set.

pub mod clean;
pub mod numpy_rng;

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result};

/// The padding token of the reference.
pub const PAD: &str = "</s>";

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

    /// Keeps the first `max_train` training and `max_dev` validation sentences (0 keeps all).
    /// The vocabulary is unchanged, so ids stay valid.
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
struct Corpus {
    sentences: Vec<Vec<String>>,
    labels: Vec<u32>,
    num_classes: usize,
    class_names: Vec<String>,
}

/// MR, embedded in the binary, through the reference pipeline and split.
///
/// # Errors
/// Never for the embedded files; the `Result` keeps one signature with [`load_labelled_file`].
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
    build(corpus, MR_SPLIT_SEED, MR_DEV_SIZE)
}

/// A user's labelled file (`label<TAB>text` a line, any number of classes) through the same
/// pipeline, with its own vocabulary and a split seeded by `seed`: a tenth of the sentences (at
/// least one) for validation. Classes are numbered in sorted order of their labels (numeric
/// order when every label is an integer). Blank lines are skipped.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Parse`] naming a line without a tab or
/// with an empty label, [`Error::Data`] for fewer than two sentences or a single class.
pub fn load_labelled_file(path: impl AsRef<Path>, seed: u64) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let corpus = parse_labelled(path, &bytes)?;
    let dev = (corpus.labels.len() / 10).max(1);
    build(corpus, (seed & 0xffff_ffff) as u32, dev)
}

fn parse_labelled(path: &Path, bytes: &[u8]) -> Result<Corpus> {
    let mut raw_labels = Vec::new();
    let mut sentences = Vec::new();
    for (index, line) in split_lines(bytes).into_iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parse_error = |reason: &str| Error::Parse {
            path: path.to_owned(),
            line: index + 1,
            reason: reason.to_owned(),
        };
        let tab = line
            .iter()
            .position(|&b| b == b'\t')
            .ok_or_else(|| parse_error("expected 'label<TAB>text'"))?;
        let label = String::from_utf8_lossy(&line[..tab]).trim().to_owned();
        if label.is_empty() {
            return Err(parse_error("empty label"));
        }
        raw_labels.push(label);
        sentences.push(clean::tokenize(&line[tab + 1..]));
    }
    let mut class_names: Vec<String> = raw_labels.clone();
    class_names.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    class_names.dedup();
    if sentences.len() < 2 || class_names.len() < 2 {
        return Err(Error::Data {
            reason: format!(
                "{} has {} sentences and {} classes; at least 2 of each are needed",
                path.display(),
                sentences.len(),
                class_names.len()
            ),
        });
    }
    let index_of: HashMap<&str, u32> = class_names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i as u32))
        .collect();
    let labels = raw_labels.iter().map(|l| index_of[l.as_str()]).collect();
    Ok(Corpus {
        sentences,
        labels,
        num_classes: class_names.len(),
        class_names,
    })
}

/// Pads, builds the vocabulary, maps to ids and splits (the last `dev_size` are validation).
fn build(mut corpus: Corpus, split_seed: u32, dev_size: usize) -> Result<Dataset> {
    let n = corpus.sentences.len();
    if dev_size >= n {
        return Err(Error::Data {
            reason: format!("{n} sentences cannot leave {dev_size} for validation"),
        });
    }
    let seq_len = corpus.sentences.iter().map(Vec::len).max().unwrap_or(0);
    for sentence in &mut corpus.sentences {
        sentence.resize(seq_len, PAD.to_owned());
    }
    let mut vocab = vocabulary(&corpus.sentences);
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
        .map(|s| s.iter().map(|w| index[w.as_str()]).collect())
        .collect();
    if pad_id as usize == vocab.len() {
        vocab.push(PAD.to_owned());
    }
    let permutation = numpy_rng::legacy_permutation(n, split_seed);
    let (train, dev) = permutation.split_at(n - dev_size);
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
        vocab,
        seq_len,
        num_classes: corpus.num_classes,
        class_names: corpus.class_names,
        pad_id,
        permutation,
    })
}

/// Words by decreasing count, ties in order of first appearance (`Counter.most_common()`).
fn vocabulary(sentences: &[Vec<String>]) -> Vec<String> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut order = 0usize;
    for word in sentences.iter().flatten() {
        let entry = counts.entry(word.as_str()).or_insert_with(|| {
            order += 1;
            (0, order)
        });
        entry.0 += 1;
    }
    let mut words: Vec<(&str, (usize, usize))> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    words.into_iter().map(|(w, _)| w.to_owned()).collect()
}

#[cfg(test)]
mod tests;
