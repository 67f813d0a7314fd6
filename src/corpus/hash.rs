//! Content fingerprints: SHA-256 hex digests of raw file bytes (to notice a
//! file changed) and of text (to find exact duplicates after normalisation).

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of raw bytes, e.g. a file's content as read from disk.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of the UTF-8 bytes of `s`, exactly as given.
///
/// It deliberately does not normalise: callers that want "same text modulo
/// typography" use [`normalized_hash`], so the two meanings never get mixed up.
pub fn text_hash(s: &str) -> String {
    content_hash(s.as_bytes())
}

/// `text_hash(&normalize(s))`: equal for texts that differ only in Unicode
/// form, case, quote/dash style or whitespace.
pub fn normalized_hash(s: &str) -> String {
    text_hash(&super::normalize::normalize(s))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            content_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            text_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn normalized_hash_ignores_typography() {
        assert_eq!(
            normalized_hash("L’IA  «\u{a0}étrange\u{a0}» — oui"),
            normalized_hash("l'ia \"étrange\" - OUI")
        );
        assert_ne!(text_hash("a"), text_hash("A"));
    }
}
