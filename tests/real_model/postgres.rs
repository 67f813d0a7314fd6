//! The real binary on the PostgreSQL store: every command answers as it does
//! on the SQLite file, two ingest processes can write one database at once,
//! and a database that cannot be reached is a clear error (exit 4).
//!
//! Each test makes its own database on the server named by
//! `PAREIL_TEST_POSTGRES` (`scripts/test.sh` starts one); without it they
//! skip with a note, and fail under CI.

use std::process::Stdio;

use crate::util::{copy_seeds, pareil, pareil_json, stderr};
use pareil::store::postgres::scratch::ScratchDatabase;
use serde_json::Value;
use tempfile::TempDir;

/// The same command on the SQLite store and the PostgreSQL one: both JSON answers.
fn both(dir: &std::path::Path, url: &str, args: &[&str]) -> (Value, Value) {
    let on = |db: &str| {
        let mut full = vec!["--db", db];
        full.extend_from_slice(args);
        pareil_json(dir, &full)
    };
    (on("pareil.db"), on(url))
}

/// A `pareil --db URL ARGS…` process in `dir` (the real model, one
/// thread, output captured): one ingest worker.
fn worker(dir: &std::path::Path, url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_pareil"))
        .args(["--db", url])
        .args(args)
        .current_dir(dir)
        .env("PAREIL_MODEL", crate::util::model_dir())
        .env("PAREIL_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a worker; fails the test with its stderr unless it succeeded.
/// Its stdout.
fn finished(worker: std::process::Child) -> Vec<u8> {
    let out = worker.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

#[test]
fn every_command_answers_as_on_sqlite() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let url = db.url();
    let t = TempDir::new().unwrap();
    let dir = t.path();
    copy_seeds(dir);

    let (lite, pg) = both(dir, &url, &["ingest", "seeds", "--json"]);
    assert_eq!(lite["passages"], pg["passages"]);
    assert_eq!(lite["duplicates"], pg["duplicates"], "dedup on ingestion");
    assert_eq!(pg["passages"], 100);

    let (lite, pg) = both(dir, &url, &["dups", "--json"]);
    assert_eq!(lite, pg, "the duplicate report");
    assert!(!pg["findings"].as_array().unwrap().is_empty());

    for query in [
        vec!["similar", "Qui a fondé OpenAI ?", "-k", "8", "--json"],
        vec!["similar", "--id", "7", "-k", "5", "--json"],
        vec![
            "similar",
            "--at",
            "seeds/001_6e736bcd7626f111.txt:19",
            "--exclude-same-doc",
            "--json",
        ],
    ] {
        let (lite, pg) = both(dir, &url, &query);
        let places = |v: &Value| -> Vec<(String, u64)> {
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["path"].as_str().unwrap().into(),
                        r["line_start"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(places(&lite), places(&pg), "{query:?}");
        assert!(!places(&pg).is_empty());
    }

    // Unchanged files are not embedded again; removing forgets a document.
    let again = pareil_json(dir, &["--db", &url, "ingest", "seeds", "--json"]);
    assert_eq!(again["documents_unchanged"], 5, "{again}");
    assert_eq!(again["chunks_embedded"], 0, "{again}");
    let o = pareil(
        dir,
        &["--db", &url, "remove", "seeds/000_edaf19d688b91e06.txt"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stats = pareil_json(dir, &["--db", &url, "stats", "--json"]);
    assert_eq!(stats["stats"]["documents"], 4);
    assert!(stats["stats"]["path"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));

    // Dedup on ingestion decides alike, though PostgreSQL's candidates are
    // found by the server (the passages' lexical keys) and SQLite's in the
    // run's memory: copies of the seeds, verbatim or each paragraph cut
    // short by its last word (into stores that both hold four seeds).
    let o = pareil(
        dir,
        &[
            "--db",
            "pareil.db",
            "remove",
            "seeds/000_edaf19d688b91e06.txt",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(dir.join("copies")).unwrap();
    for (i, entry) in std::fs::read_dir(dir.join("seeds")).unwrap().enumerate() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = if i % 2 == 0 {
            text
        } else {
            let cut = |p: &str| p.rsplit_once(' ').map_or(p, |(head, _)| head).to_string();
            text.split("\n\n").map(cut).collect::<Vec<_>>().join("\n\n")
        };
        let name = format!("copy-{}", entry.file_name().to_string_lossy());
        std::fs::write(dir.join("copies").join(name), text).unwrap();
    }
    let skip = ["ingest", "copies", "--on-duplicate", "skip", "--json"];
    let (lite, pg) = both(dir, &url, &skip);
    let skipped = &pg["passages_skipped_as_duplicates"];
    assert_eq!(&lite["passages_skipped_as_duplicates"], skipped);
    assert!(skipped.as_u64().unwrap() > 50, "{pg}");
    let kinds = |v: &Value| -> std::collections::BTreeSet<String> {
        v["duplicates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        kinds(&pg).contains("near") && kinds(&pg).contains("exact"),
        "{pg}"
    );
    assert_eq!(lite["duplicates"], pg["duplicates"]);
}

#[test]
fn ingest_workers_share_the_work_and_embed_nothing_twice() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let url = db.url();
    let t = TempDir::new().unwrap();
    let dir = t.path();
    copy_seeds(dir);
    let alone = pareil_json(dir, &["--db", "alone.db", "ingest", "seeds", "--json"]);
    // Two workers on the same folder, started together on an empty database
    // (both race to create the schema, then to claim each document).
    let spawn = || worker(dir, &url, &["ingest", "seeds", "--json"]);
    let workers = [spawn(), spawn()];
    let reports: Vec<Value> = workers
        .into_iter()
        .map(|w| serde_json::from_slice(&finished(w)).unwrap())
        .collect();
    let sum = |field: &str| -> u64 { reports.iter().map(|r| r[field].as_u64().unwrap()).sum() };
    assert_eq!(
        sum("documents_written"),
        5,
        "each document written once: {reports:?}"
    );
    assert_eq!(
        sum("documents_unchanged"),
        5,
        "and found stored by the other worker"
    );
    assert_eq!(
        sum("chunks_embedded"),
        alone["chunks_embedded"].as_u64().unwrap(),
        "nothing embedded twice: {reports:?}"
    );
    let stats = pareil_json(dir, &["--db", &url, "stats", "--json"]);
    assert_eq!(stats["stats"]["documents"], 5);
    assert_eq!(stats["stats"]["passages"], 100);
}

#[test]
fn an_unreachable_database_is_a_store_error_without_the_password() {
    let t = TempDir::new().unwrap();
    let o = pareil(
        t.path(),
        &["--db", "postgres://ann:hunter2@127.0.0.1:1/pareil", "stats"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("ann:***@127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn workers_skipping_duplicates_at_once_leave_one_canonical_copy() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let url = db.url();
    let t = TempDir::new().unwrap();
    let dir = t.path();
    let seeds = copy_seeds(dir);
    // The same five articles under other names in each worker's folder:
    // each passage reaches the store twice, at about the same moment.
    for half in ["a", "b"] {
        std::fs::create_dir_all(dir.join(half)).unwrap();
        for entry in std::fs::read_dir(&seeds).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{half}-{}", entry.file_name().to_string_lossy());
            std::fs::copy(entry.path(), dir.join(half).join(name)).unwrap();
        }
    }
    let spawn = |what: &str| worker(dir, &url, &["-q", "ingest", what, "--on-duplicate", "skip"]);
    let workers = [spawn("a"), spawn("b")];
    for w in workers {
        finished(w);
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let passages: i64 = c
        .query_one("SELECT count(*) FROM passages", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        passages, 200,
        "nothing lost: every passage stored, as itself or a reference"
    );
    let twice: Vec<String> = c
        .query(
            "SELECT norm_hash FROM passages WHERE duplicate_of IS NULL \
             GROUP BY norm_hash HAVING count(*) > 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        twice.is_empty(),
        "texts stored as two canonical copies: {twice:?}"
    );
    let canonical: i64 = c
        .query_one("SELECT count(DISTINCT norm_hash) FROM passages", &[])
        .unwrap()
        .get(0);
    let unmarked: i64 = c
        .query_one(
            "SELECT count(*) FROM passages WHERE duplicate_of IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        unmarked <= canonical,
        "{unmarked} unmarked for {canonical} texts"
    );
    // The exact-duplicate key names one canonical copy of each text.
    let astray: i64 = c
        .query_one(
            "SELECT count(*) FROM passage_texts t LEFT JOIN passages p \
             ON p.id = t.passage_id AND p.norm_hash = t.norm_hash AND p.duplicate_of IS NULL \
             WHERE p.id IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    let recorded: i64 = c
        .query_one("SELECT count(*) FROM passage_texts", &[])
        .unwrap()
        .get(0);
    assert_eq!((astray, recorded), (0, unmarked));
}

#[test]
fn a_killed_workers_document_is_taken_over_and_nothing_is_lost() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let url = db.url();
    let t = TempDir::new().unwrap();
    let dir = t.path();
    let folder = dir.join("in");
    std::fs::create_dir_all(&folder).unwrap();
    // A long document first (the killed worker holds it), then short ones.
    let long: String = (0..400)
        .map(|i| format!("Paragraphe numéro {i} : un texte assez long pour occuper le modèle.\n\n"))
        .collect();
    std::fs::write(folder.join("a_long.txt"), &long).unwrap();
    for i in 0..4 {
        std::fs::write(
            folder.join(format!("b_{i}.txt")),
            format!("Un court texte {i}.\n"),
        )
        .unwrap();
    }
    let spawn = || worker(dir, &url, &["-q", "ingest", "in", "--json"]);
    let claims = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            // pareil's document claims: the two-key advisory locks under "PARM".
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = 1346458189 AND objsubid = 2",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap_or(0)
    };
    let mut first = spawn();
    let mut watch = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let started = std::time::Instant::now();
    while claims(&mut watch) == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first worker never claimed a document"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = spawn();
    std::thread::sleep(std::time::Duration::from_millis(300));
    first.kill().unwrap(); // SIGKILL, mid-document
    first.wait().unwrap();
    let report: Value = serde_json::from_slice(&finished(second)).unwrap();
    let stats = pareil_json(dir, &["--db", &url, "stats", "--json", "--documents"]);
    assert_eq!(stats["stats"]["documents"], 5, "{report}");
    assert_eq!(
        stats["stats"]["passages"], 404,
        "the long document whole, once: {report}"
    );
    assert!(
        report["chunks_embedded"].as_u64().unwrap() >= 400,
        "the second worker took the long document over: {report}"
    );
}
