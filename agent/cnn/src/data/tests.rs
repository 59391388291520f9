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
    let vocab = vocabulary(&[s(&["b", "a", "c"]), s(&["c", "a", "d"])], 3);
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

/// The reference's way: pad every sentence with `PAD` strings, count the padded corpus, map.
/// Returns the vocabulary and every sentence's ids in corpus order.
fn materialized_padding(sentences: &[Vec<String>]) -> (Vec<String>, Vec<Vec<u32>>) {
    let seq_len = sentences.iter().map(Vec::len).max().unwrap_or(0);
    let padded: Vec<Vec<String>> = sentences
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.resize(seq_len, PAD.to_owned());
            s
        })
        .collect();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for word in padded.iter().flatten() {
        match counts.iter_mut().find(|(w, _)| w == word) {
            Some((_, count)) => *count += 1,
            None => counts.push((word.clone(), 1)),
        }
    }
    // A stable sort by count keeps first appearances in order among ties.
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let vocab: Vec<String> = counts.into_iter().map(|(w, _)| w).collect();
    let ids = padded
        .iter()
        .map(|s| {
            s.iter()
                .map(|w| vocab.iter().position(|v| v == w).unwrap() as u32)
                .collect()
        })
        .collect();
    (vocab, ids)
}

/// `build`'s vocabulary and every sentence's ids in corpus order (undoing the split).
fn built(sentences: &[Vec<String>]) -> (Vec<String>, Vec<Vec<u32>>) {
    let corpus = Corpus {
        sentences: sentences.to_vec(),
        labels: (0..sentences.len() as u32).map(|i| i % 2).collect(),
        num_classes: 2,
        class_names: vec!["a".into(), "b".into()],
    };
    let data = build(
        corpus,
        Split::Given {
            train_len: sentences.len(),
        },
    )
    .unwrap();
    let mut vocab = data.vocab.clone();
    // Without any padding or literal PAD, `build` still appends PAD for its padding id; the
    // reference's vocabulary has no such entry.
    let has_pad = sentences.iter().any(|s| s.len() < data.seq_len)
        || sentences.iter().flatten().any(|w| w == PAD);
    if !has_pad {
        vocab.pop();
    }
    let ids = data
        .train_ids
        .chunks(data.seq_len)
        .map(<[u32]>::to_vec)
        .collect();
    (vocab, ids)
}

#[test]
fn padding_is_counted_exactly_as_the_padded_corpus_counts_it() {
    let s = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let corpora = [
        // The padding's first appearance ties with "b" and "c" and comes between them.
        vec![s("a b"), s("a b c d"), s("c d a")],
        // A literal "</s>" before the first padding, and after it.
        vec![s("x </s> y z"), s("y"), s("</s> q")],
        vec![s("q"), s("r s t u v w"), s("t </s>")],
        // Every sentence the same length: no padding at all.
        vec![s("a b"), s("b a"), s("c c")],
    ];
    for corpus in corpora {
        assert_eq!(built(&corpus), materialized_padding(&corpus), "{corpus:?}");
    }
}

#[test]
fn mr_ids_are_those_of_the_padded_corpus() {
    let mut sentences = Vec::new();
    for bytes in [MR_POS, MR_NEG] {
        sentences.extend(split_lines(bytes).into_iter().map(clean::tokenize));
    }
    let data = mr_embedded().unwrap();
    let (vocab, ids) = materialized_padding(&sentences[..400]);
    let (built_vocab, built_ids) = built(&sentences[..400]);
    assert_eq!((built_vocab, built_ids), (vocab, ids));
    assert_eq!(data.cut_sentences, 0);
}

#[test]
fn sentences_longer_than_the_cap_are_cut_to_it() {
    let long: Vec<String> = (0..MAX_SEQ_LEN + 500)
        .map(|i| format!("w{}", i % 7))
        .collect();
    let short = vec!["w1".to_owned(), "x".to_owned()];
    let corpus = Corpus {
        sentences: vec![long.clone(), short.clone(), long, short],
        labels: vec![0, 1, 0, 1],
        num_classes: 2,
        class_names: vec!["a".into(), "b".into()],
    };
    let data = build(corpus, Split::Given { train_len: 4 }).unwrap();
    assert_eq!(data.seq_len, MAX_SEQ_LEN);
    assert_eq!(data.cut_sentences, 2);
    assert_eq!(data.train_ids.len(), 4 * MAX_SEQ_LEN);
    let second = &data.train_ids[MAX_SEQ_LEN..2 * MAX_SEQ_LEN];
    assert!(
        second[2..].iter().all(|&id| id == data.pad_id),
        "padded after its 2 tokens"
    );
}
