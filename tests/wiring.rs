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
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
    pub(crate) model: PathBuf,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny-model");
        std::fs::create_dir_all(&model).unwrap();
        build(&model, BERT);
        Sandbox { dir, model }
    }

    pub(crate) fn path(&self) -> &Path {
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

/// Asserts `pareil args` exits 2 and its stderr contains every one of `words`.
fn assert_usage(o: &Output, args: &[&str], words: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "pareil {args:?}: {err}");
    for w in words {
        assert!(err.contains(w), "pareil {args:?}: no {w:?} in {err}");
    }
}

/// Out-of-range flag values, an empty query and an unknown PAREIL_KERNEL
/// are refused with the value named and exit 2, like every bad command line
/// (issue 13: `-k 0` printed "no results", `-k -1` was an "unexpected
/// argument", `--min-score nan` switched the filter off, `similar ""` gave a
/// top 10, `dups --near 1.5` exited 1, `PAREIL_KERNEL=bogus` was ignored).
#[test]
fn bad_values_exit_2_naming_the_value() {
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.json(&["ingest", "--json", "a.txt"]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["similar", "chat", "-k", "0"],
            &["'0'", "-k", "at least 1"],
        ),
        (
            &["similar", "chat", "-k", "-1"],
            &["'-1'", "-k", "at least 1"],
        ),
        (&["similar", "chat", "-k", "x"], &["'x'", "-k"]),
        (
            &["similar", "chat", "--min-score", "nan"],
            &["'nan'", "--min-score"],
        ),
        (
            &["similar", "chat", "--min-score", "1.5"],
            &["'1.5'", "-1 to 1"],
        ),
        (&["similar", ""], &["empty"]),
        (&["similar", " \t "], &["empty"]),
        (&["similar", "--id", "-3"], &["'-3'", "--id"]),
        (&["dups", "--semantic", "-3"], &["'-3'", "--semantic"]),
        (
            &["dups", "--near", "1.5"],
            &["'1.5'", "--near", "at most 1"],
        ),
        (&["dups", "--contained", "0"], &["'0'", "--contained"]),
        (&["dups", "--near", "inf"], &["'inf'", "--near"]),
        (&["dups", "--kinds", "exact,bogus"], &["bogus"]),
        (&["--threads", "0", "stats"], &["'0'", "--threads"]),
        (&["--threads", "-2", "stats"], &["'-2'", "--threads"]),
        (
            &["model", "fetch", "--hub-timeout", "0"],
            &["--hub-timeout"],
        ),
    ];
    for (args, words) in cases {
        assert_usage(&s.run(args), args, words);
    }
    let o = pareil_command(s.path())
        .env("PAREIL_THREADS", "0")
        .args(["stats"])
        .output()
        .unwrap();
    assert_usage(&o, &["PAREIL_THREADS=0", "stats"], &["'0'"]);
    for args in [&["stats"][..], &["similar", "chat"]] {
        let o = pareil_command(s.path())
            .env("PAREIL_MODEL", &s.model)
            .env("PAREIL_KERNEL", "bogus")
            .args(args)
            .output()
            .unwrap();
        assert_usage(
            &o,
            args,
            &["PAREIL_KERNEL", "bogus", "auto, avx2, portable"],
        );
    }
    // In-range values, negative cosines and the valid kernels still work.
    let v = s.json(&[
        "similar",
        "--at",
        "a.txt:1",
        "--min-score",
        "-0.5",
        "--json",
    ]);
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "{v}");
    s.json(&["dups", "--json", "--near", "1", "--semantic", "0.5"]);
    for kernel in ["portable", "avx2", "auto", ""] {
        let o = pareil_command(s.path())
            .env("PAREIL_MODEL", &s.model)
            .env("PAREIL_KERNEL", kernel)
            .args(["similar", "chat", "-k", "1", "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "PAREIL_KERNEL={kernel}: {}", stderr(&o));
    }
}

/// `--threads 100000` (or such a RAYON_NUM_THREADS) is lowered to 4 × the
/// cores with a warning, instead of starting that many threads in each pool
/// (issue 13: it hung).
#[test]
fn absurd_thread_counts_are_capped_with_a_warning() {
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.write("b.txt", B);
    s.json(&["--threads", "100000", "ingest", "--json", "a.txt"]);
    let o = s.run(&["--threads", "100000", "ingest", "b.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: --threads 100000") && err.contains("threads"),
        "{err}"
    );
    let o = s.run(&["-q", "--threads", "100000", "dups", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "--quiet: {}", stderr(&o));
    let o = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .env("RAYON_NUM_THREADS", "100000")
        .args(["similar", "chat", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("RAYON_NUM_THREADS 100000"),
        "{}",
        stderr(&o)
    );
}

/// Runs the binary as a user who may read the sandbox but not write the
/// store: `nobody` when the tests run as root (permissions do not stop
/// root), else the current user after the caller's chmod.
fn run_as_reader(s: &Sandbox, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = pareil_command(s.path());
    c.env("PAREIL_MODEL", &s.model).args(args);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

/// A store the user may read but not write (the file read-only, then its
/// directory too) serves stats, similar and dups; writes are refused with
/// the cause and a `fix:` line, exit 4 (issue 13: "attempt to write a
/// readonly database" for stats and similar; a bare "unable to open
/// database file" for a new store in a read-only folder).
#[cfg(unix)]
#[test]
fn read_only_store_serves_reads_and_refuses_writes_with_the_cause() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.write("b.txt", B);
    s.json(&["ingest", "--json", "a.txt", "b.txt"]);
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let db = s.path().join("pareil.db");
    mode(&db, 0o444).unwrap();
    // The directory read-only too (no `-shm` can be created beside the
    // store: SQLite's immutable fallback), then the file alone (the
    // directory writable by all: SQLite creates its `-shm`).
    for dir_mode in [0o555, 0o777] {
        mode(s.path(), dir_mode).unwrap();
        let reads: [&[&str]; 5] = [
            &["stats", "--json"],
            &["similar", "--at", "a.txt:1", "--json"],
            &["similar", "chat", "--json"],
            &["dups", "--json"],
            &["dups", "--json", "--kinds", "exact"],
        ];
        for args in reads {
            let o = run_as_reader(&s, args);
            assert!(
                o.status.success(),
                "dir {dir_mode:o}: pareil {args:?}: {}",
                stderr(&o)
            );
            serde_json::from_slice::<Value>(&o.stdout).unwrap();
        }
        for args in [&["ingest", "a.txt"][..], &["remove", "a.txt"]] {
            let o = run_as_reader(&s, args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(4), "pareil {args:?}: {err}");
            assert!(
                err.contains("cannot be written") && err.contains("fix:"),
                "pareil {args:?}: {err}"
            );
        }
    }
    mode(s.path(), 0o555).unwrap();
    let o = run_as_reader(&s, &["--db", "new.db", "ingest", "a.txt"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("is not writable") && err.contains("fix:"),
        "{err}"
    );
    assert!(!s.path().join("new.db").exists());
    mode(s.path(), 0o755).unwrap();
    mode(&db, 0o644).unwrap();
    assert_eq!(s.json(&["stats", "--json"])["stats"]["documents"], 2);
}

/// `--db` on a virtual filesystem is refused with the cause and a fix
/// (issue 13: "unable to open database file", nothing else).
#[cfg(target_os = "linux")]
#[test]
fn store_on_proc_is_refused_with_the_cause() {
    let s = Sandbox::new();
    s.write("a.txt", A);
    let o = s.run(&["--db", "/proc/pareil-test.db", "ingest", "a.txt"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("/proc") && err.contains("virtual filesystem") && err.contains("fix:"),
        "{err}"
    );
}

/// Runs an `ingest --json` with spans logged; its report and how many
/// model calls (`embed` spans) it made.
fn logged_ingest(s: &Sandbox, args: &[&str]) -> (Value, usize) {
    let out = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .env("PAREIL_LOG", "pareil=info")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let embeds = stderr(&out)
        .lines()
        .filter(|l| l.contains("embed{") && l.contains("close"))
        .count();
    (serde_json::from_slice(&out.stdout).unwrap(), embeds)
}

/// A folder of small files is embedded in batches across files, not one
/// model call per file, and the vectors are the ones a file-by-file ingest
/// stores (seen through the `embed` spans and `similar` scores).
#[test]
fn small_files_share_model_batches() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path().join("many")).unwrap();
    for i in 0..60 {
        s.write(
            &format!("many/f{i:02}.txt"),
            &format!(
                "texte numéro {i} sur un sujet\n\nsecond paragraphe {}\n",
                i % 7
            ),
        );
    }
    let (report, embeds) = logged_ingest(&s, &["--db", "batched.db", "ingest", "--json", "many"]);
    assert_eq!(report["documents_written"], 60);
    // 60 + 7 distinct paragraphs, each embedded once.
    assert_eq!(report["chunks_embedded"], 67, "{report}");
    assert_eq!(report["chunks_reused"], 53, "{report}");
    assert!(
        (1..=2).contains(&embeds),
        "{embeds} model calls for 60 files"
    );
    // File by file: the same vectors.
    for i in [0, 31, 59] {
        let f = format!("many/f{i:02}.txt");
        s.json(&["--db", "single.db", "ingest", "--json", &f]);
    }
    use pareil::store::{SqliteStore, Store};
    let vector = |db: &str, file: &str, line: usize| {
        let store = SqliteStore::open_existing(s.path().join(db), true).unwrap();
        let p = store.passage_at(file, line).unwrap().unwrap();
        store.passage_vector(p.id).unwrap().unwrap()
    };
    for (file, line) in [
        ("many/f00.txt", 1),
        ("many/f31.txt", 3),
        ("many/f59.txt", 1),
    ] {
        let (a, b) = (
            vector("batched.db", file, line),
            vector("single.db", file, line),
        );
        assert!(crate::util::cosine(&a, &b) > 0.99999, "{file}:{line}");
    }
}

/// Batches in flight: the model embeds one batch on its thread while the
/// next is gathered. A paragraph every file repeats is first needed in the
/// first batch; files of later batches, gathered while it is still being
/// embedded, must neither embed it again nor be written without it.
#[test]
fn a_paragraph_shared_across_batches_is_embedded_once() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path().join("long")).unwrap();
    let files: u64 = 60;
    for i in 0..files {
        let words: Vec<String> = (0..150).map(|j| format!("mot{i}x{j}")).collect();
        s.write(
            &format!("long/f{i:02}.txt"),
            &format!("{}\n\nle paragraphe commun à tous\n", words.join(" ")),
        );
    }
    let (report, embeds) = logged_ingest(&s, &["ingest", "--json", "long"]);
    assert_eq!(report["documents_written"], files);
    assert_eq!(report["chunks_reused"], files - 1, "{report}");
    assert!(embeds >= 2, "one batch only: nothing was in flight");
    let stats = &s.json(&["stats", "--json"])["stats"];
    assert_eq!(stats["orphan_embeddings"], 0, "{stats}");
    let chunks = stats["chunks"].as_u64().unwrap();
    assert_eq!(stats["embeddings"], chunks - (files - 1), "{stats}");
    // Every copy has its vector: each file's copy is found, identical.
    let hits = s.json(&["similar", "--json", "-k", "1", "--id", "2"]);
    assert!(hits.to_string().contains("le paragraphe commun"), "{hits}");
    let found = s.json(&["dups", "--json"]);
    let exact = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "exact")
        .count();
    assert_eq!(exact as u64, files - 1, "{found}");
}

#[test]
fn batch_queries_answer_one_json_line_each() {
    use std::io::Write;
    let s = Sandbox::new();
    s.write("a.txt", A);
    s.write("b.txt", B);
    s.json(&["ingest", "--json", "a.txt", "b.txt"]);
    let mut child = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["similar", "-k", "1", "--queries", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines =
        "chat\n{\"at\": \"b.txt:3\", \"k\": 3}\n\n{\"id\": 1, \"kk\": 2}\n{\"text\": \"hund\"}\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    // One bad line: answered with its error, the others still answered, exit 5.
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let answers: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(answers[0]["query"]["text"], "chat");
    assert_eq!(answers[0]["results"].as_array().unwrap().len(), 1);
    assert_eq!(answers[1]["query"]["passage"]["path"], "b.txt");
    assert!(answers[1]["results"].as_array().unwrap().len() <= 3);
    assert_eq!(answers[2]["line"], 4);
    assert!(answers[2]["error"].as_str().unwrap().contains("kk"));
    assert_eq!(answers[3]["query"]["text"], "hund");
}
