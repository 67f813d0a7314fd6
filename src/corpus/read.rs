//! Decoding a file's bytes into text: BOM stripping, strict or lossy UTF-8,
//! binary detection, and line-ending normalisation.

use std::path::Path;

use crate::error::{Error, Result};

/// How many leading bytes binary detection looks at. Matches what git and
/// ripgrep inspect; enough to catch every common binary header.
const SNIFF_LEN: usize = 8 * 1024;

/// Share of control bytes (excluding tab, LF, CR, FF, ESC) in the sniffed
/// prefix above which a file is called binary. Real text has essentially none;
/// 10% leaves room for the odd stray byte in a log file.
const MAX_CONTROL_SHARE: f64 = 0.10;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes a file's bytes into text.
///
/// - An empty file gives `Ok("")`.
/// - A NUL byte, or more than 10% control bytes, in the first 8 KiB gives
///   [`Error::Binary`] (checked first: binary data is rarely valid UTF-8, and
///   "binary" is the more useful message). UTF-16 files land here too, since
///   they are full of NULs.
/// - A UTF-8 BOM is stripped.
/// - Invalid UTF-8 gives [`Error::InvalidUtf8`] with the offset of the first
///   bad byte *in the file* (BOM included), unless `lossy`, in which case bad
///   sequences become U+FFFD.
/// - `"\r\n"` becomes `"\n"`. Line count is unchanged, so line numbers computed
///   on the result are the file's line numbers. A lone `'\r'` is left alone (it
///   is not a line break for grep, wc or most editors); passage splitting turns
///   any `'\r'` it still sees into a line end or a space.
pub fn read_text(path: &Path, bytes: &[u8], lossy: bool) -> Result<String> {
    if bytes.is_empty() {
        return Ok(String::new());
    }
    if looks_binary(bytes) {
        return Err(Error::Binary {
            path: path.to_path_buf(),
        });
    }
    let (bom, body) = match bytes.strip_prefix(UTF8_BOM) {
        Some(rest) => (UTF8_BOM.len(), rest),
        None => (0, bytes),
    };
    let text = match std::str::from_utf8(body) {
        Ok(s) => s.to_owned(),
        Err(_) if lossy => String::from_utf8_lossy(body).into_owned(),
        Err(e) => {
            return Err(Error::InvalidUtf8 {
                path: path.to_path_buf(),
                offset: bom + e.valid_up_to(),
            })
        }
    };
    Ok(normalize_line_endings(text))
}

/// True when the sniffed prefix has a NUL byte or too many control bytes.
fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(SNIFF_LEN)];
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)) || b == 0x7f)
        .count();
    control as f64 > head.len() as f64 * MAX_CONTROL_SHARE
}

/// Replaces every CRLF by LF, without reallocating when there is none.
fn normalize_line_endings(text: String) -> String {
    if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<String> {
        read_text(Path::new("t.txt"), bytes, false)
    }

    #[test]
    fn empty_file_is_empty_text() {
        assert_eq!(read(b"").unwrap(), "");
    }

    #[test]
    fn bom_is_stripped() {
        assert_eq!(read(b"\xEF\xBB\xBFBonjour").unwrap(), "Bonjour");
        // A BOM alone is an empty document, not an error.
        assert_eq!(read(b"\xEF\xBB\xBF").unwrap(), "");
    }

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        assert_eq!(read(b"a\r\nb\r\n\r\nc").unwrap(), "a\nb\n\nc");
        assert_eq!(read(b"a\rb").unwrap(), "a\rb");
    }

    #[test]
    fn invalid_utf8_reports_file_offset() {
        match read(b"caf\xC3\xA9 \xFF!") {
            Err(Error::InvalidUtf8 { path, offset }) => {
                assert_eq!(path, Path::new("t.txt"));
                assert_eq!(offset, 6);
            }
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
        // Offset counts the BOM: it is a position in the file.
        match read(b"\xEF\xBB\xBFab\xC3") {
            Err(Error::InvalidUtf8 { offset, .. }) => assert_eq!(offset, 5),
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
    }

    #[test]
    fn lossy_replaces_bad_bytes() {
        let s = read_text(Path::new("t"), b"caf\xE9 ok\r\n", true).unwrap();
        assert_eq!(s, "caf\u{FFFD} ok\n");
    }

    #[test]
    fn binary_is_refused() {
        assert!(matches!(
            read(b"PK\x03\x04\x00\x00"),
            Err(Error::Binary { .. })
        ));
        // UTF-16LE text is NUL-heavy: refused rather than misread.
        assert!(matches!(
            read(b"\xFF\xFEh\x00i\x00"),
            Err(Error::Binary { .. })
        ));
        let mut noisy = vec![b'a'; 100];
        noisy.extend(std::iter::repeat_n(0x01u8, 20));
        assert!(matches!(read(&noisy), Err(Error::Binary { .. })));
        // Binary detection beats the UTF-8 check even in lossy mode.
        assert!(matches!(
            read_text(Path::new("x"), b"\x00\xFF", true),
            Err(Error::Binary { .. })
        ));
    }

    #[test]
    fn tabs_form_feeds_and_escapes_are_text() {
        assert_eq!(read(b"a\tb\x0c\x1b[0m").unwrap(), "a\tb\x0c\x1b[0m");
    }

    #[test]
    fn nul_after_sniff_window_is_not_checked() {
        // Only the first 8 KiB are sniffed; this is the documented trade-off.
        let mut bytes = vec![b'a'; SNIFF_LEN];
        bytes.push(0);
        assert_eq!(read(&bytes).unwrap().len(), SNIFF_LEN + 1);
    }
}
