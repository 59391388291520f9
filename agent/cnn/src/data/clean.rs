//! Kim's `clean_str` (Kim 2014, `CNN_sentence/process_data.py`), on bytes.
//!
//! The steps, in the reference's order: every byte outside ``[A-Za-z0-9(),!?'`]`` becomes a
//! space; `'s 've n't 're 'd 'll` get a space in front; `,` and `!` get spaces around; `(`, `)`
//! and `?` become ` \( `, ` \) ` and ` \? ` (Python's `re.sub` keeps the backslash of an unknown
//! punctuation escape in the replacement, so the tokens carry it); runs of spaces collapse;
//! the ends are stripped; letters are lower-cased. Each replacement is a literal left-to-right
//! non-overlapping substitution, exactly what `str::replace` does.

/// The suffix splits and punctuation replacements, applied in order.
const REPLACEMENTS: [(&str, &str); 11] = [
    ("'s", " 's"),
    ("'ve", " 've"),
    ("n't", " n't"),
    ("'re", " 're"),
    ("'d", " 'd"),
    ("'ll", " 'll"),
    (",", " , "),
    ("!", " ! "),
    ("(", " \\( "),
    (")", " \\) "),
    ("?", " \\? "),
];

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"(),!?'`".contains(&byte)
}

/// The cleaned sentence as one string.
pub fn clean_str(line: &[u8]) -> String {
    let mut text: String = line
        .iter()
        .map(|&b| if allowed(b) { b as char } else { ' ' })
        .collect();
    for (from, to) in REPLACEMENTS {
        text = text.replace(from, to);
    }
    let collapsed: Vec<&str> = text.split(' ').filter(|t| !t.is_empty()).collect();
    collapsed.join(" ").to_ascii_lowercase()
}

/// The reference's tokens: the cleaned sentence split on single spaces (an empty sentence is
/// one empty token, as Python's `"".split(" ")` gives).
pub fn tokenize(line: &[u8]) -> Vec<String> {
    clean_str(line).split(' ').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_contractions_and_escapes_brackets() {
        assert_eq!(
            clean_str(b"It's a (great) film, isn't it? Yes!"),
            "it 's a \\( great \\) film , is n't it \\? yes !"
        );
    }

    #[test]
    fn non_ascii_bytes_and_dashes_become_separators() {
        assert_eq!(clean_str(b"caf\xe9 \x85 well-made  "), "caf well made");
        assert_eq!(tokenize(b"..."), vec![String::new()]);
    }
}
