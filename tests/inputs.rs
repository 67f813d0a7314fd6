//! Hostile inputs to `ingest`, on the real binary and the tiny model (issue
//! 13): file names that are not UTF-8, one file under several spellings,
//! bad directory entries, FIFOs, several documents from standard input.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::util::{pareil_command, stderr};
use crate::wiring::Sandbox;

/// A [`Sandbox`] with an empty `docs/` folder.
struct Dir(Sandbox);

impl std::ops::Deref for Dir {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl Dir {
    fn new() -> Self {
        let s = Sandbox::new();
        std::fs::create_dir_all(s.path().join("docs")).unwrap();
        Dir(s)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = pareil_command(self.path())
            .env("PAREIL_MODEL", &self.model)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    fn documents(&self) -> Vec<String> {
        let o = self.run(&["stats", "--json", "--documents"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut paths: Vec<String> = v["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap().to_string())
            .collect();
        paths.sort();
        paths
    }
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_stay_distinct_and_survive_prune() {
    use std::os::unix::ffi::OsStrExt;
    let d = Dir::new();
    let name = |b: &[u8]| d.path().join("docs").join(std::ffi::OsStr::from_bytes(b));
    std::fs::write(name(b"caf\xe9.txt"), "premier texte\n").unwrap();
    std::fs::write(name(b"caf\xe8.txt"), "second texte\n").unwrap();
    let o = d.run(&["ingest", "docs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.documents(), ["docs/caf\\xE8.txt", "docs/caf\\xE9.txt"]);
    // Both files still exist: prune keeps both.
    let o = d.run(&["ingest", "--prune", "--json", "docs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["removed"], serde_json::json!([]));
    assert_eq!(d.documents().len(), 2);
    // One is deleted: prune removes that one only.
    std::fs::remove_file(name(b"caf\xe8.txt")).unwrap();
    let o = d.run(&["ingest", "--prune", "docs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.documents(), ["docs/caf\\xE9.txt"]);
}

#[test]
fn one_file_under_several_spellings_is_one_document() {
    let d = Dir::new();
    std::fs::write(d.path().join("docs/x.txt"), "un texte\n").unwrap();
    let abs = d.path().join("docs/x.txt");
    for spelling in [
        "docs/x.txt",
        "./docs/x.txt",
        "docs/../docs/x.txt",
        abs.to_str().unwrap(),
    ] {
        let o = d.run(&["ingest", spelling]);
        assert!(o.status.success(), "{spelling}: {}", stderr(&o));
    }
    assert_eq!(d.documents(), ["docs/x.txt"]);
    let o = d.run(&["dups", "--json", "--kinds", "exact"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"], serde_json::json!([]), "no self-duplicate");
}

#[cfg(unix)]
#[test]
fn bad_entries_are_skipped_with_a_warning_and_exit_5() {
    let d = Dir::new();
    let docs = d.path().join("docs");
    std::fs::write(docs.join("good.txt"), "un bon texte\n").unwrap();
    std::os::unix::fs::symlink(docs.join("absent.txt"), docs.join("dangling.txt")).unwrap();
    std::os::unix::fs::symlink(&docs, docs.join("loop")).unwrap();
    let fifo = docs.join("pipe.txt");
    let fifo_made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let o = d.run(&["ingest", "docs"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("dangling.txt") && err.contains("dangling symlink"),
        "{err}"
    );
    assert!(err.contains("symlink loop"), "{err}");
    assert_eq!(d.documents(), ["docs/good.txt"], "the good file is stored");
    if fifo_made {
        assert!(
            err.contains("pipe.txt") && err.contains("not a regular file"),
            "{err}"
        );
        // Named explicitly, a FIFO is refused at once (it would block).
        let o = d.run(&["ingest", "docs/pipe.txt"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    }
}

#[test]
fn stdin_documents_have_names_and_a_replacement_warns() {
    let d = Dir::new();
    assert!(d
        .run_with_stdin(&["ingest", "-"], "premier\n")
        .status
        .success());
    let o = d.run_with_stdin(&["ingest", "-"], "second\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--name"), "{}", stderr(&o));
    let o = d.run_with_stdin(&["ingest", "--name", "notes", "-"], "troisième\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.documents(), ["<notes>", "<stdin>"]);
    // Prune never removes a stream's document.
    std::fs::write(d.path().join("docs/a.txt"), "un fichier\n").unwrap();
    assert!(d.run(&["ingest", "--prune", "docs"]).status.success());
    assert_eq!(d.documents(), ["<notes>", "<stdin>", "docs/a.txt"]);
    assert_eq!(
        d.run(&["ingest", "--name", "x", "docs"]).status.code(),
        Some(2)
    );
    assert_eq!(
        d.run_with_stdin(&["ingest", "--name", "", "-"], "x\n")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_model_changed_under_the_same_id_is_refused() {
    let d = Dir::new();
    std::fs::write(d.path().join("docs/a.txt"), "un texte\n").unwrap();
    assert!(d.run(&["ingest", "docs"]).status.success());
    assert!(d.run(&["similar", "--json", "texte"]).status.success());
    // One layer fewer in config.json: loads, but gives other vectors.
    let config = d.model.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    let mut v: Value = serde_json::from_str(&original).unwrap();
    let layers = v["num_hidden_layers"].as_u64().unwrap();
    assert!(layers >= 2);
    v["num_hidden_layers"] = (layers - 1).into();
    std::fs::write(&config, v.to_string()).unwrap();
    for args in [&["similar", "texte"][..], &["ingest", "docs"]] {
        let o = d.run(args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("fingerprint"), "{}", stderr(&o));
        assert!(stderr(&o).contains("fix:"), "{}", stderr(&o));
    }
    // Restored, it is accepted again; stored-passage queries need no model.
    std::fs::write(&config, original).unwrap();
    assert!(d.run(&["similar", "texte"]).status.success());
}

#[test]
fn plain_progress_lines_when_stderr_is_not_a_terminal() {
    let d = Dir::new();
    let long: String = (0..400).map(|i| format!("phrase numéro {i}. ")).collect();
    std::fs::write(d.path().join("docs/long.txt"), format!("{long}\n")).unwrap();
    let o = pareil_command(d.path())
        .env("PAREIL_MODEL", &d.model)
        .env("PAREIL_PROGRESS_EVERY", "0")
        .args(["ingest", "docs"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("chunks embedded") && err.contains("long.txt"),
        "{err}"
    );
    let o = pareil_command(d.path())
        .env("PAREIL_MODEL", &d.model)
        .env("PAREIL_PROGRESS_EVERY", "0")
        .args(["ingest", "--progress", "none", "--prune", "docs"])
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("pareil: ["), "{}", stderr(&o));
}
