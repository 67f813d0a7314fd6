//! The Hugging Face side of provisioning: the local HF cache (`HF_HOME`) and
//! the Hub through hf-hub, bounded by a deadline because hf-hub has none.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::{FetchOptions, MODEL_FILES};
use crate::error::{Error, Result};

/// A snapshot directory of the HF cache that holds the model files, with its revision.
pub(super) fn hf_cache_snapshot(model_id: &str) -> Option<(PathBuf, String)> {
    let repo = hf_hub::Cache::from_env().model(model_id.to_string());
    let paths: Vec<PathBuf> = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|f| repo.get(f))
        .collect::<Option<_>>()?;
    let dir = paths[0].parent()?.to_path_buf();
    let rev = dir.file_name()?.to_string_lossy().into_owned();
    Some((dir, rev))
}

/// Downloads the model through hf-hub on a worker thread with a deadline:
/// hf-hub has no timeout of its own and hangs on a silent server.
pub(super) fn fetch_from_hub(
    opts: &FetchOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(PathBuf, String)> {
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
