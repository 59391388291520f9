//! Users' own labelled files: one sentence a line, `label<TAB>text` or `label text`.
//!
//! A line splits at its first tab; a line without a tab splits at its first space (after any
//! leading spaces). The label is the text before the split, trimmed: any non-empty text (`0`/`1`,
//! `pos`/`neg`, `DESC`, ...); the text after it goes through Kim's `clean_str` as MR does. Blank
//! lines are skipped. Classes are numbered 0..k-1 in sorted order of the training file's labels
//! (numeric order when every label is an integer), so any number of classes works (TREC's six).
//!
//! A UTF-8 byte order mark at the start of a file is skipped. A training file in which more
//! than half of the labels label one line only is refused as unlabelled (a file of plain
//! sentences, whose first words would otherwise become hundreds of classes).
//!
//! - Training file only: a tenth of its sentences (at least one) are split off for validation by
//!   the seeded permutation, exactly as before validation files existed.
//! - With a validation file: no split; the vocabulary is built from the training then the
//!   validation sentences, as MR's is built from its whole corpus.
//! - A test file is encoded with that vocabulary and never changes it (so giving one does not
//!   change training): words it alone uses read as padding, and sentences longer than the
//!   longest training or validation sentence are cut to that length. Its labels must be labels
//!   of the training file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Corpus, Dataset, Split, clean, split_lines};
use crate::{Error, Result};

/// What a labelled line must look like, for errors.
pub const LINE_FORMAT: &str = "expected 'label<TAB>text' or 'label text' (the label is any \
     non-empty text before the first tab, or before the first space in a line without a tab)";

/// The byte order mark some editors put at the start of a UTF-8 file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The files of a user's data set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataFiles {
    /// Training sentences (and, without `dev`, the validation split).
    pub train: PathBuf,
    /// Validation sentences, if separate.
    pub dev: Option<PathBuf>,
    /// Held-out test sentences, if any.
    pub test: Option<PathBuf>,
}

/// One parsed file: labels and tokens, with the line number of each sentence.
struct Parsed {
    path: PathBuf,
    lines: Vec<usize>,
    labels: Vec<String>,
    sentences: Vec<Vec<String>>,
}

/// A user's labelled file (see the module docs), split by `seed`.
///
/// # Errors
/// As [`load`].
pub fn load_labelled_file(path: impl AsRef<Path>, seed: u64) -> Result<Dataset> {
    load(
        &DataFiles {
            train: path.as_ref().to_owned(),
            ..DataFiles::default()
        },
        seed,
    )
}

/// Loads a user's data set; `seed` splits the training file when there is no validation file.
///
/// # Errors
/// [`Error::Io`] when a file cannot be read, [`Error::Parse`] naming the file and line of a
/// malformed line or of a validation or test label the training file does not have,
/// [`Error::Data`] for too few sentences or a single class.
pub fn load(files: &DataFiles, seed: u64) -> Result<Dataset> {
    let train = parse_file(&files.train)?;
    let class_names = classes(&train)?;
    let mut corpus = Corpus {
        labels: label_ids(&train, &class_names, &files.train)?,
        sentences: train.sentences,
        num_classes: class_names.len(),
        class_names,
    };
    let split = match &files.dev {
        None => Split::Seeded {
            seed: (seed & 0xffff_ffff) as u32,
            dev_size: (corpus.labels.len() / 10).max(1),
        },
        Some(dev_path) => {
            let dev = non_empty(parse_file(dev_path)?)?;
            let train_len = corpus.labels.len();
            corpus
                .labels
                .extend(label_ids(&dev, &corpus.class_names, &files.train)?);
            corpus.sentences.extend(dev.sentences);
            Split::Given { train_len }
        }
    };
    let mut data = super::build(corpus, split)?;
    if let Some(test_path) = &files.test {
        let test = non_empty(parse_file(test_path)?)?;
        data.test_labels = label_ids(&test, &data.class_names, &files.train)?;
        data.test_ids = encode(&data, &test.sentences);
    }
    Ok(data)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Splits a line into label and text (see the module docs).
pub fn split_label(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(tab) = line.iter().position(|&b| b == b'\t') {
        return Some((&line[..tab], &line[tab + 1..]));
    }
    let start = line.iter().position(|&b| b != b' ')?;
    let rest = &line[start..];
    let space = rest.iter().position(|&b| b == b' ')?;
    Some((&rest[..space], &rest[space + 1..]))
}

fn parse_file(path: &Path) -> Result<Parsed> {
    parse(path, &read(path)?)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut parsed = Parsed {
        path: path.to_owned(),
        lines: Vec::new(),
        labels: Vec::new(),
        sentences: Vec::new(),
    };
    // A UTF-8 byte order mark (as Windows editors write) is not part of the first label.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
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
        let (label, text) = split_label(line).ok_or_else(|| parse_error(LINE_FORMAT))?;
        let label = String::from_utf8_lossy(label).trim().to_owned();
        if label.is_empty() {
            return Err(parse_error(&format!("empty label: {LINE_FORMAT}")));
        }
        parsed.lines.push(index + 1);
        parsed.labels.push(label);
        parsed.sentences.push(clean::tokenize(text));
    }
    Ok(parsed)
}

fn non_empty(parsed: Parsed) -> Result<Parsed> {
    if parsed.sentences.is_empty() {
        return Err(Error::Data {
            reason: format!("{} has no labelled lines", parsed.path.display()),
        });
    }
    Ok(parsed)
}

/// The training file's classes in sorted order (numeric when every label is an integer).
fn classes(train: &Parsed) -> Result<Vec<String>> {
    let mut names = train.labels.clone();
    names.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    names.dedup();
    refuse_unlabelled(train, names.len())?;
    if train.sentences.len() < 2 || names.len() < 2 {
        return Err(Error::Data {
            reason: format!(
                "{} has {} sentences and {} classes; at least 2 of each are needed",
                train.path.display(),
                train.sentences.len(),
                names.len()
            ),
        });
    }
    Ok(names)
}

/// An error when the training file looks unlabelled: when more than half of its labels label a
/// single line. Every line of a file of plain sentences (MR's own `rt-polarity.pos`, say) splits
/// at its first space, so its first words become labels, most of them used once: that file has
/// 1,429 "classes", 1,023 of them on one line only. A labelled data set has a few classes, each
/// on many lines.
fn refuse_unlabelled(train: &Parsed, classes: usize) -> Result<()> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for label in &train.labels {
        *counts.entry(label.as_str()).or_default() += 1;
    }
    let once = counts.values().filter(|&&count| count == 1).count();
    if classes >= 2 && 2 * once > classes {
        let mut examples: Vec<&str> = counts
            .iter()
            .filter(|(_, count)| **count == 1)
            .map(|(label, _)| *label)
            .collect();
        examples.sort_unstable();
        let examples: Vec<String> = examples.iter().take(3).map(|l| format!("{l:?}")).collect();
        return Err(Error::Data {
            reason: format!(
                "{} looks unlabelled: {once} of its {classes} labels are on one line only \
                 (for example {}){}; each line must start with its class label: {LINE_FORMAT}",
                train.path.display(),
                examples.join(", "),
                label_last_hint(train)
            ),
        });
    }
    Ok(())
}

/// A hint for [`refuse_unlabelled`]'s error when the labels seem to come last on each line
/// (`text<TAB>label`, as GLUE's SST-2 files have): nine lines in ten or more have a one-token
/// "text", and those tokens take at most 100 values.
fn label_last_hint(train: &Parsed) -> &'static str {
    let single: Vec<&str> = train
        .sentences
        .iter()
        .filter(|tokens| tokens.len() == 1)
        .map(|tokens| tokens[0].as_str())
        .collect();
    let distinct: std::collections::HashSet<&str> = single.iter().copied().collect();
    if single.len() * 10 >= train.sentences.len() * 9 && distinct.len() <= 100 {
        " (the label seems to come last, as in 'text<TAB>label' files: put it first)"
    } else {
        ""
    }
}

/// The class index of every label, or an error naming the line of one the training file lacks.
fn label_ids(parsed: &Parsed, class_names: &[String], train_path: &Path) -> Result<Vec<u32>> {
    let index_of: HashMap<&str, u32> = class_names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i as u32))
        .collect();
    let mut ids = Vec::with_capacity(parsed.labels.len());
    for (label, &line) in parsed.labels.iter().zip(&parsed.lines) {
        let id = index_of.get(label.as_str()).ok_or_else(|| Error::Parse {
            path: parsed.path.clone(),
            line,
            reason: format!(
                "label '{label}' is not a label of the training file {} (its labels: {})",
                train_path.display(),
                class_names.join(", ")
            ),
        })?;
        ids.push(*id);
    }
    Ok(ids)
}

/// Token ids of `sentences` under the data set's vocabulary, padded or cut to its length.
fn encode(data: &Dataset, sentences: &[Vec<String>]) -> Vec<u32> {
    let index: HashMap<&str, u32> = data
        .vocab
        .iter()
        .enumerate()
        .map(|(i, word)| (word.as_str(), i as u32))
        .collect();
    let mut ids = Vec::with_capacity(sentences.len() * data.seq_len);
    for sentence in sentences {
        let mut row: Vec<u32> = sentence
            .iter()
            .take(data.seq_len)
            .map(|word| index.get(word.as_str()).copied().unwrap_or(data.pad_id))
            .collect();
        row.resize(data.seq_len, data.pad_id);
        ids.extend(row);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_tab_else_the_first_space() {
        let split = |line: &[u8]| split_label(line).map(|(l, t)| (l.to_vec(), t.to_vec()));
        assert_eq!(
            split(b"pos\ta fine film"),
            Some((b"pos".to_vec(), b"a fine film".to_vec()))
        );
        assert_eq!(
            split(b"very good\ta tab file"),
            Some((b"very good".to_vec(), b"a tab file".to_vec()))
        );
        assert_eq!(
            split(b"  DESC how did it end ?"),
            Some((b"DESC".to_vec(), b"how did it end ?".to_vec()))
        );
        assert_eq!(split(b"lonely"), None);
    }

    #[test]
    fn a_bad_line_is_named_with_its_file_and_number() {
        let path = Path::new("/data/train.txt");
        let parsed = parse(path, b"1 good\n\n0\tbad\r\n").expect("tab and space lines");
        assert_eq!(parsed.labels, vec!["1", "0"]);
        assert_eq!(parsed.lines, vec![1, 3]);
        assert_eq!(parsed.sentences[1], vec!["bad"]);
        let Err(err) = parse(path, b"1 good\n\nnolabel\n") else {
            panic!("a line without a separator parses")
        };
        let text = err.to_string();
        assert!(
            text.starts_with("/data/train.txt:3: expected 'label<TAB>text' or 'label text'"),
            "{text}"
        );
        let Err(err) = parse(path, b"\tno label\n") else {
            panic!("an empty label parses")
        };
        assert!(
            err.to_string()
                .starts_with("/data/train.txt:1: empty label"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_label() {
        let path = Path::new("/data/train.txt");
        let parsed = parse(path, b"\xEF\xBB\xBFpos\tgood\r\nneg\tbad\r\n").expect("parses");
        assert_eq!(parsed.labels, vec!["pos", "neg"]);
    }

    #[test]
    fn a_file_of_plain_sentences_is_refused_as_unlabelled() {
        let path = Path::new("/data/rt-polarity.pos");
        // First words as labels: "the" twice, four others once each.
        let plain = b"the rock is destined\nthe film works\na gorgeous film\n\
            effective but too-tepid\nif you sometimes like to go\nemerges as something rare\n";
        let parsed = parse(path, plain).expect("every line has a space");
        let err = classes(&parsed)
            .expect_err("plain sentences are refused")
            .to_string();
        assert!(
            err.contains(
                "/data/rt-polarity.pos looks unlabelled: 4 of its 5 labels are on one \
                 line only (for example \"a\", \"effective\", \"emerges\")"
            ),
            "{err}"
        );
        assert!(!err.contains("seems to come last"), "{err}");
        // GLUE's SST-2 layout: a header, then `text<TAB>label`.
        let glue = parse(
            path,
            b"sentence\tlabel\nit 's a charming journey\t1\nunflinchingly bleak\t0\n\
              the acting is fine\t1\n",
        )
        .expect("tab lines");
        let err = classes(&glue).expect_err("refused").to_string();
        assert!(
            err.contains(
                "(the label seems to come last, as in 'text<TAB>label' files: put it first)"
            ),
            "{err}"
        );
        // Half the classes on one line each is still a data set (a rare class or two).
        let labelled = parse(path, b"a x\na y\nb x\nb y\nc x\nd y\n").expect("parses");
        assert_eq!(
            classes(&labelled).expect("labelled"),
            vec!["a", "b", "c", "d"]
        );
    }
}
