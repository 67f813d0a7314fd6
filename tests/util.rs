//! Helpers shared by the integration tests: where the real model is, running
//! the real `pareil` binary in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real model: `$PAREIL_MODEL`, else where `pareil model fetch` installs
/// it (`$PAREIL_MODELS_DIR`, else the user's cache). Tests that need it fail
/// (not skip) when it is missing, with the fix.
pub fn model_dir() -> PathBuf {
    let installed = || {
        std::env::var_os("PAREIL_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(pareil::provision::default_models_dir)
            .join(pareil::provision::model_dir_name(
                pareil::model::DEFAULT_MODEL_ID,
            ))
    };
    let dir = std::env::var_os("PAREIL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(installed);
    assert!(
        dir.join("model.safetensors").is_file(),
        "the real model is not installed at {}: run `bash scripts/test.sh` (it runs `pareil model fetch` first)",
        dir.display()
    );
    dir
}

pub fn seeds_dir() -> PathBuf {
    repo_root().join("seeds")
}

/// Runs the built `pareil` binary with `args` in `cwd`, with the real model.
pub fn pareil(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pareil"))
        .args(args)
        .current_dir(cwd)
        .env("PAREIL_MODEL", model_dir())
        .env_remove("PAREIL_DB")
        .output()
        .expect("running pareil")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Copies the seed files into `dst/seeds/` as fresh, writable files (the
/// checkout's seeds are read-only, and `fs::copy` would keep that).
/// Returns `dst/seeds`.
pub fn copy_seeds(dst: &Path) -> PathBuf {
    let out = dst.join("seeds");
    std::fs::create_dir_all(&out).expect("creating seeds dir");
    for entry in std::fs::read_dir(seeds_dir()).expect("reading seeds dir") {
        let entry = entry.expect("seed entry");
        let bytes = std::fs::read(entry.path()).expect("reading seed");
        std::fs::write(out.join(entry.file_name()), bytes).expect("writing seed copy");
    }
    out
}

/// Runs `pareil` like [`pareil`], asserts it exited 0, and parses stdout as JSON.
pub fn pareil_json(cwd: &Path, args: &[&str]) -> serde_json::Value {
    let o = pareil(cwd, args);
    assert!(
        o.status.success(),
        "pareil {args:?} failed ({:?})\nstderr:\n{}",
        o.status.code(),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("pareil {args:?}: stdout is not JSON ({e}):\n{}", stdout(&o)))
}

/// A `Command` for the built binary in `cwd` with no inherited `PAREIL_*`
/// settings, for tests that need another environment (e.g. a missing model).
pub fn pareil_command(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pareil"));
    c.current_dir(cwd)
        .env_remove("PAREIL_DB")
        .env_remove("PAREIL_MODEL")
        .env_remove("PAREIL_MODELS_DIR")
        .env_remove("PAREIL_THREADS");
    c
}
