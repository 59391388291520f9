//! Check values of the reference pipeline on MR (`data/mr/README.md`) and the labelled-file path.

use super::*;
use sha2::{Digest, Sha256};

#[test]
fn mr_files_have_5331_lines_each_split_on_newline_only() {
    assert_eq!(split_lines(MR_POS).len(), 5331);
    assert_eq!(split_lines(MR_NEG).len(), 5331);
}

#[test]
fn mr_matches_the_reference_check_values() {
    let data = mr_embedded().unwrap();
    assert_eq!(data.train_len(), 9662);
    assert_eq!(data.dev_len(), 1000);
    assert_eq!(data.seq_len, 56);
    assert_eq!(data.vocab_size(), 18_766);
    assert_eq!(data.vocab[data.pad_id as usize], PAD);
    let dev_positive = data.dev_labels.iter().filter(|&&l| l == 1).count();
    assert_eq!((dev_positive, 1000 - dev_positive), (483, 517));
    assert_eq!(&data.permutation[..3], &[7359, 5573, 10180]);
    let text: String = data.permutation.iter().map(|i| format!("{i}\n")).collect();
    let hex: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "ab3ec06102ae950c75bbdd7a21cfc636b0c5fad1f5ba461e0d850a9fc156cd51"
    );
    // The longest sentence (overall index 5640) has no padding.
    let at = data.permutation.iter().position(|&i| i == 5640).unwrap();
    let row = if at < 9662 {
        &data.train_ids[at * 56..(at + 1) * 56]
    } else {
        &data.dev_ids[(at - 9662) * 56..(at - 9661) * 56]
    };
    assert!(row.iter().all(|&id| id != data.pad_id));
    assert!(
        data.vocab.iter().any(|w| w == "\\("),
        "the backslash tokens are in the vocabulary"
    );
}

#[test]
fn vocabulary_breaks_count_ties_by_first_appearance() {
    let s = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let vocab = vocabulary(&[s(&["b", "a", "c"]), s(&["c", "a", "d"])]);
    assert_eq!(vocab, s(&["a", "c", "b", "d"]));
}

#[test]
fn labelled_file_is_split_and_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tsv");
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "{}\tsentence number {i} is {}\n",
                i % 3,
                ["ok", "bad", "fine"][i % 3]
            )
        })
        .collect();
    std::fs::write(&good, lines).unwrap();
    let data = load_labelled_file(&good, 7).unwrap();
    assert_eq!(
        (data.train_len(), data.dev_len(), data.num_classes),
        (27, 3, 3)
    );
    assert_eq!(data.class_names, vec!["0", "1", "2"]);
    assert_eq!(
        load_labelled_file(&good, 7).unwrap(),
        data,
        "same seed, same split"
    );

    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "1\tfine\n0 a space line\nnolabel\n").unwrap();
    let err = load_labelled_file(&bad, 7).unwrap_err().to_string();
    assert!(
        err.contains("bad.tsv:3: expected 'label<TAB>text' or 'label text'"),
        "{err}"
    );
    let missing = load_labelled_file(dir.path().join("missing.tsv"), 7).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
}

#[test]
fn dev_and_test_files_keep_their_sentences_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    };
    let train = write(
        "train.txt",
        &[
            "pos a good film",
            "neg a bad film",
            "pos\tgood fun",
            "neg dull",
        ],
    );
    let dev = write("dev.txt", &["neg bad", "pos good"]);
    let test = write(
        "test.txt",
        &["pos good unseen words and more words than any", "neg bad"],
    );
    let files = DataFiles {
        train: train.clone(),
        dev: Some(dev),
        test: Some(test.clone()),
    };
    let data = files::load(&files, 3).unwrap();
    assert_eq!(data.class_names, vec!["neg", "pos"]);
    assert_eq!(data.train_labels, vec![1, 0, 1, 0], "file order, no split");
    assert_eq!(data.dev_labels, vec![0, 1]);
    assert_eq!(data.test_labels, vec![1, 0]);
    assert_eq!(
        data.test_ids.len(),
        2 * data.seq_len,
        "cut to the training length"
    );
    let without_test = files::load(
        &DataFiles {
            test: None,
            ..files.clone()
        },
        3,
    )
    .unwrap();
    assert_eq!(
        without_test.vocab, data.vocab,
        "a test file never changes the vocabulary"
    );
    assert_eq!(without_test.train_ids, data.train_ids);

    let split = files::load(
        &DataFiles {
            dev: None,
            ..files.clone()
        },
        3,
    )
    .unwrap();
    assert_eq!(
        (split.train_len(), split.dev_len(), split.test_len()),
        (3, 1, 2)
    );

    let bad_test = write("bad-test.txt", &["pos fine", "maybe so so"]);
    let err = files::load(
        &DataFiles {
            test: Some(bad_test),
            ..files.clone()
        },
        3,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad-test.txt:2: label 'maybe' is not a label of the training file"),
        "{err}"
    );
}
