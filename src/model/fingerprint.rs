//! A fingerprint of the model files, recorded in the store so a model that
//! changed under the same id (a `config.json` edited to 6 layers, weights
//! replaced) is noticed before its vectors are mixed with the store's.
//!
//! Cheap enough to take on every run (tens of milliseconds, not the seconds
//! hashing 470 MB of weights would cost): the small files are hashed whole
//! (config, tokenizer, sentence-transformers files); the weights by their
//! size, their safetensors header (every tensor's name, dtype, shape and
//! offsets) and 16 slices of 64 KiB spread over the file, so replaced
//! weights of the same shape differ in the sampled bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Files read whole, when present (an absent one counts as absent).
const SMALL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "modules.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
];
const WEIGHTS: &str = "model.safetensors";
const SAMPLES: u64 = 16;
const SAMPLE_BYTES: u64 = 64 * 1024;
/// Largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// The fingerprint of the model in `dir`: `sha256:` and 64 hex digits.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for name in SMALL_FILES {
        let path = dir.join(name);
        h.update(name.as_bytes());
        match std::fs::read(&path) {
            Ok(bytes) => {
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => h.update(b"absent"),
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    weights(&dir.join(WEIGHTS), &mut h)?;
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// Hashes the weights' size, safetensors header and sampled slices into `h`.
pub(super) fn weights(path: &Path, h: &mut Sha256) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    h.update(WEIGHTS.as_bytes());
    h.update(len.to_le_bytes());
    let mut n = [0u8; 8];
    if len >= 8 {
        f.read_exact(&mut n).map_err(io)?;
    }
    let header = u64::from_le_bytes(n)
        .min(MAX_HEADER)
        .min(len.saturating_sub(8));
    let mut buf = vec![0u8; header as usize];
    f.read_exact(&mut buf).map_err(io)?;
    h.update(&buf);
    let mut sample = vec![0u8; SAMPLE_BYTES.min(len) as usize];
    for i in 0..SAMPLES {
        let at = (len - sample.len() as u64) * i / (SAMPLES - 1);
        f.seek(SeekFrom::Start(at)).map_err(io)?;
        f.read_exact(&mut sample).map_err(io)?;
        h.update(&sample);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            br#"{"num_hidden_layers": 12}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("tokenizer.json"), b"{}").unwrap();
        let mut w = 16u64.to_le_bytes().to_vec();
        w.extend_from_slice(br#"{"a":[1,2,3]}   "#);
        w.extend((0..300_000u32).map(|i| (i % 251) as u8));
        std::fs::write(d.path().join(WEIGHTS), w).unwrap();
        d
    }

    #[test]
    fn stable_and_sensitive_to_config_and_weights() {
        let d = model_dir();
        let f = fingerprint(d.path()).unwrap();
        assert!(f.starts_with("sha256:") && f.len() == 71, "{f}");
        assert_eq!(fingerprint(d.path()).unwrap(), f, "stable");
        std::fs::write(d.path().join("config.json"), br#"{"num_hidden_layers": 6}"#).unwrap();
        let g = fingerprint(d.path()).unwrap();
        assert_ne!(g, f, "config edited");
        // Same size and header, other weight bytes.
        let p = d.path().join(WEIGHTS);
        let mut w = std::fs::read(&p).unwrap();
        let tail = w.len() - 10;
        w[tail] ^= 0xff;
        std::fs::write(&p, w).unwrap();
        assert_ne!(fingerprint(d.path()).unwrap(), g, "weights replaced");
    }

    #[test]
    fn tiny_or_missing_weights_are_errors_or_hashed_not_panics() {
        let d = model_dir();
        std::fs::write(d.path().join(WEIGHTS), b"abc").unwrap();
        assert!(fingerprint(d.path()).is_ok());
        std::fs::remove_file(d.path().join(WEIGHTS)).unwrap();
        assert!(fingerprint(d.path()).is_err());
    }
}
