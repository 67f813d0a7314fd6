//! The real `pareil` binary end to end on a tiny BERT the tests build
//! (`tiny_model::build`): every command's plumbing, JSON shapes and exit
//! codes in seconds, with no model to install. What the real model must get
//! right (which passage is similar to which) is tested in `real_model::`:
//! the tiny model's random weights put every pair of texts above the
//! semantic threshold, so these tests look at the lexical kinds.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::tiny_model::{build, BERT};
use crate::util::{pareil_command, stderr};

/// A temporary directory holding a tiny model in `tiny-model/`.
struct Sandbox {
    dir: tempfile::TempDir,
    model: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny-model");
        std::fs::create_dir_all(&model).unwrap();
        build(&model, BERT);
        Sandbox { dir, model }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        pareil_command(self.path())
            .env("PAREIL_MODEL", &self.model)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs, asserts success, parses stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let o = self.run(args);
        assert!(o.status.success(), "pareil {args:?}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("pareil {args:?}: {e}"))
    }
}

const A: &str = "le chat dort sur le tapis\n\nder hund schläft\n";
const B: &str = "a b a b\n\nle chat dort sur le tapis\n";

#[test]
fn ingest_similar_dups_stats_remove() {
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.write("b.txt", B);
    let r = s.json(&["ingest", "--json", "a.txt", "b.txt"]);
    assert_eq!(
        (r["documents_written"].as_u64(), r["passages"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(
        r["chunks_embedded"], 3,
        "the repeated paragraph is embedded once: {r}"
    );
    let exact = |v: &Value| -> Vec<Value> {
        v["findings"]
            .as_array()
            .or(v["duplicates"].as_array())
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "exact")
            .cloned()
            .collect()
    };
    assert_eq!(exact(&r).len(), 1, "{r}");

    let d = s.json(&["dups", "--json", "--kinds", "exact,near,contained"]);
    assert_eq!(d["findings"].as_array().unwrap().len(), 1, "{d}");
    let f = &exact(&d)[0];
    assert_eq!(
        (
            f["canonical"]["path"].as_str(),
            f["duplicate"]["path"].as_str()
        ),
        (Some("a.txt"), Some("b.txt"))
    );
    assert_eq!(d["passages"], 4);

    // A stored passage's copy is listed as its other location, not as a result.
    let v = s.json(&["similar", "--at", "a.txt:1", "--json"]);
    assert_eq!(v["query"]["passage"]["path"], "a.txt");
    assert_eq!(v["query"]["also"][0]["path"], "b.txt", "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let v = s.json(&["similar", "der hund", "-k", "1", "--json"]);
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["rank"], 1);

    let st = s.json(&["stats", "--json", "--documents"]);
    assert_eq!(st["stats"]["passages"], 4);
    assert_eq!(st["documents"].as_array().unwrap().len(), 2);
    let o = s.run(&["remove", "b.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.json(&["stats", "--json"])["stats"]["documents"], 1);
}

#[test]
fn on_duplicate_fail_refuses_and_skip_keeps_a_reference() {
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.write("b.txt", B);
    s.json(&["ingest", "--json", "a.txt"]);
    let o = s.run(&["ingest", "--on-duplicate", "fail", "b.txt"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(s.json(&["stats", "--json"])["stats"]["documents"], 1);
    let r = s.json(&["ingest", "--on-duplicate", "skip", "--json", "b.txt"]);
    let skipped = r["passages_skipped_as_duplicates"].as_u64().unwrap();
    assert!(skipped >= 1, "at least the exact copy: {r}");
    let ids: Vec<i64> = r["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| [&f["canonical"]["ids"], &f["duplicate"]["ids"]])
        .flat_map(|ids| ids.as_array().unwrap().iter().map(|i| i.as_i64().unwrap()))
        .collect();
    assert!(
        ids.iter().all(|&i| i > 0),
        "stored ids, not placeholders: {ids:?}"
    );
    let st = s.json(&["stats", "--json"]);
    assert_eq!(st["stats"]["passages"], 4, "nothing lost");
    assert_eq!(st["stats"]["duplicates"].as_u64(), Some(skipped));
}

#[test]
fn stdin_is_a_document_and_exit_codes_mean_something() {
    let s = Sandbox::new();
    let mut child = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["ingest", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(A.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["passages"], 2);
    let docs = s.json(&["stats", "--json", "--documents"]);
    assert_eq!(docs["documents"][0]["path"], "<stdin>");

    assert_eq!(s.run(&["similar", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        s.run(&["--db", "missing.db", "stats"]).status.code(),
        Some(4)
    );
    s.write("bad.txt", "caf\u{e9}");
    std::fs::write(s.path().join("bad.txt"), b"caf\xe9\n").unwrap();
    assert_eq!(s.run(&["ingest", "bad.txt"]).status.code(), Some(5));
    let o = pareil_command(s.path())
        .env("PAREIL_MODELS_DIR", s.path().join("nothing-here"))
        .args(["ingest", "bad.txt"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}
