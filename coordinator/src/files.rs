//! Small files the daemons and `tunectl` read from paths an operator gives (token files, TLS
//! certificates and keys), read with a size bound: a path such as `/dev/zero` once made the
//! reader allocate without end (found by the `config_toml` fuzz target).
//!
//! ```
//! let dir = tempfile::tempdir().expect("a temp dir");
//! let path = dir.path().join("token");
//! std::fs::write(&path, "s3cret\n").expect("writes");
//! assert_eq!(coordinator::files::read_small(&path).expect("reads"), b"s3cret\n");
//! assert!(coordinator::files::read_small(std::path::Path::new("/dev/zero")).is_err());
//! ```

use std::io::Read;
use std::path::Path;

/// The largest small file read: 1 MiB (a CA bundle is a few hundred KiB).
pub const MAX_SMALL_FILE_BYTES: u64 = 1 << 20;

/// The file's bytes, or an error when it cannot be read or holds more than
/// [`MAX_SMALL_FILE_BYTES`].
///
/// # Errors
/// The I/O error, or `InvalidData` naming the limit.
pub fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SMALL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SMALL_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_small`] as UTF-8 text.
///
/// # Errors
/// As [`read_small`], or `InvalidData` for text that is not UTF-8.
pub fn read_small_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_small(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}
