//! Tests of the store against real SQLite files in temporary directories:
//! opening and refusing files, replacing/removing documents, lookups,
//! concurrency, rollback on error, and (in a child process) a SIGKILL in the
//! middle of a large transaction.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;
use crate::error::Error;
use crate::store::{sha256_hex, NewChunk, NewDocument, NewPassage, StoreMeta};
use crate::test_support;

const DIM: usize = 4;

fn meta() -> StoreMeta {
    test_support::meta(DIM)
}

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("pareil.db")
}

fn vector_for(text: &str, dim: usize) -> Vec<f32> {
    test_support::vector_for(text, dim)
}

fn doc_with(path: &str, texts: &[&str], cached: &HashSet<String>, dim: usize) -> NewDocument {
    test_support::document(path, texts, cached, |t| vector_for(t, dim))
}

fn doc(path: &str, texts: &[&str]) -> NewDocument {
    doc_with(path, texts, &HashSet::new(), DIM)
}

fn store_error_reason(e: Error) -> String {
    match e {
        Error::Store { reason, .. } => reason,
        other => panic!("expected Error::Store, got {other:?}"),
    }
}

fn mismatch_reason(e: Error) -> String {
    match e {
        Error::StoreMismatch { reason, .. } => reason,
        other => panic!("expected Error::StoreMismatch, got {other:?}"),
    }
}

#[test]
fn sha256_hex_is_lowercase_hex() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn create_then_reopen() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    {
        let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
        s.replace_document(&doc("a.txt", &["one", "two"])).unwrap();
    }
    let raw = Connection::open(&path).unwrap();
    let app: i32 = raw
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(mode, "wal");
    drop(raw);

    let ro = SqliteStore::open_existing(&path, true).unwrap();
    assert_eq!(ro.meta(), &meta());
    assert!(ro.is_read_only());
    let st = ro.stats().unwrap();
    assert_eq!(
        (st.documents, st.passages, st.chunks, st.embeddings),
        (1, 2, 2, 2)
    );
    assert_eq!(st.schema_version, SCHEMA_VERSION);
    assert!(st.file_size_bytes > 0);
    ro.integrity_check().unwrap();
    drop(ro);

    let s = SqliteStore::create_or_open(&path, &meta()).unwrap();
    assert_eq!(s.documents().unwrap().len(), 1);
    let rw = SqliteStore::open_existing(&path, false).unwrap();
    assert!(!rw.is_read_only());
}

#[test]
fn read_only_store_refuses_writes() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    drop(SqliteStore::create_or_open(&path, &meta()).unwrap());
    let mut ro = SqliteStore::open_existing(&path, true).unwrap();
    let reason = store_error_reason(ro.replace_document(&doc("a.txt", &["x"])).unwrap_err());
    assert!(reason.contains("read-only"), "{reason}");
}

#[test]
fn missing_store_is_not_created_by_open_existing() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    for ro in [true, false] {
        let reason = store_error_reason(SqliteStore::open_existing(&path, ro).unwrap_err());
        assert!(reason.contains("pareil ingest"), "{reason}");
        assert!(!path.exists());
    }
    let reason = store_error_reason(
        SqliteStore::create_or_open(dir.path().join("no/such/dir.db"), &meta()).unwrap_err(),
    );
    assert!(reason.contains("does not exist"), "{reason}");
}

#[test]
fn directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let reason = store_error_reason(SqliteStore::create_or_open(dir.path(), &meta()).unwrap_err());
    assert!(reason.contains("directory"), "{reason}");
}

#[test]
fn empty_file_is_initialised() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    std::fs::write(&path, b"").unwrap();
    let reason = store_error_reason(SqliteStore::open_existing(&path, true).unwrap_err());
    assert!(reason.contains("pareil ingest"), "{reason}");
    let s = SqliteStore::create_or_open(&path, &meta()).unwrap();
    assert_eq!(s.meta(), &meta());
}

/// Opens `path` every way, expecting each to fail, and checks that the file's
/// bytes did not change. Returns the create_or_open error for message checks.
fn assert_refused_untouched(path: &Path, expect: fn(Error) -> String) -> String {
    let before = std::fs::read(path).unwrap();
    let reason = expect(SqliteStore::create_or_open(path, &meta()).unwrap_err());
    expect(SqliteStore::open_existing(path, true).unwrap_err());
    expect(SqliteStore::open_existing(path, false).unwrap_err());
    assert_eq!(std::fs::read(path).unwrap(), before, "file was modified");
    reason
}

#[test]
fn other_model_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
    s.replace_document(&doc("a.txt", &["one"])).unwrap();
    drop(s);
    let before = std::fs::read(&path).unwrap();

    let other = StoreMeta {
        model_id: "other/model".into(),
        ..meta()
    };
    let reason = mismatch_reason(SqliteStore::create_or_open(&path, &other).unwrap_err());
    assert!(
        reason.contains("model: store has \"test/model\""),
        "{reason}"
    );
    assert!(reason.contains("--db"), "{reason}");

    let bigger = StoreMeta { dim: 384, ..meta() };
    let reason = mismatch_reason(SqliteStore::create_or_open(&path, &bigger).unwrap_err());
    assert!(reason.contains("dimension: store has \"4\""), "{reason}");
    assert!(!reason.contains("model:"), "{reason}");

    let prefixes = StoreMeta {
        query_prefix: "q: ".into(),
        revision: "r2".into(),
        ..meta()
    };
    let reason = mismatch_reason(SqliteStore::create_or_open(&path, &prefixes).unwrap_err());
    assert!(
        reason.contains("revision") && reason.contains("query prefix"),
        "{reason}"
    );

    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The recorded model is what a read-only command uses; it still opens.
    assert_eq!(
        SqliteStore::open_existing(&path, true).unwrap().meta(),
        &meta()
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    drop(SqliteStore::create_or_open(&path, &meta()).unwrap());
    let raw = Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let reason = assert_refused_untouched(&path, mismatch_reason);
    assert!(reason.contains("newer pareil"), "{reason}");
}

#[test]
fn random_bytes_are_refused() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let reason = assert_refused_untouched(&path, store_error_reason);
    assert!(reason.contains("not a SQLite database"), "{reason}");
}

#[test]
fn text_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some notes\nnot a database\n").unwrap();
    let reason = assert_refused_untouched(&path, store_error_reason);
    assert!(reason.contains("untouched"), "{reason}");
}

#[test]
fn garbage_after_sqlite_magic_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend((0..4080u32).map(|i| (i * 7 % 251) as u8));
    // Garbage in the application_id field is caught by the header check
    // alone; zero it so the file reaches SQLite's own corruption checks.
    bytes[68..72].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let reason = assert_refused_untouched(&path, store_error_reason);
    assert!(reason.contains("corrupt"), "{reason}");
}

#[test]
fn foreign_sqlite_is_refused() {
    let dir = TempDir::new().unwrap();
    for (name, app_id, wal) in [("a.db", 0, false), ("b.db", 0x1234, true)] {
        let path = dir.path().join(name);
        let raw = Connection::open(&path).unwrap();
        if wal {
            let _: String = raw
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .unwrap();
        }
        raw.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
            .unwrap();
        raw.pragma_update(None, "application_id", app_id).unwrap();
        drop(raw);
        let reason = assert_refused_untouched(&path, store_error_reason);
        assert!(reason.contains("not a pareil store"), "{reason}");
        if app_id == 0 {
            assert!(reason.contains("invoices"), "{reason}");
        }
        let raw = Connection::open(&path).unwrap();
        let n: i64 = raw
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "foreign schema changed");
    }
}

#[test]
fn replace_twice_reuses_embeddings() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    let first = s
        .replace_document(&doc("a.txt", &["alpha", "beta", "gamma"]))
        .unwrap();
    assert!(!first.replaced);
    assert_eq!((first.embeddings_written, first.embeddings_reused), (3, 0));
    let other = s.replace_document(&doc("b.txt", &["delta"])).unwrap();

    // The caller asks the cache first and embeds only what is missing.
    let texts = ["alpha", "BETA changed", "gamma"];
    let probe = doc("a.txt", &texts);
    let keys: Vec<String> = probe
        .passages
        .iter()
        .map(|p| p.chunks[0].emb_key.clone())
        .collect();
    let cached = s.cached_embeddings(&keys).unwrap();
    assert_eq!(cached.len(), 2);
    assert!(test_support::close(
        &cached[&keys[0]],
        &vector_for("alpha", DIM)
    ));
    let cached_keys: HashSet<String> = cached.into_keys().collect();
    let second = s
        .replace_document(&doc_with("a.txt", &texts, &cached_keys, DIM))
        .unwrap();
    assert!(second.replaced);
    assert_eq!(second.doc_id, first.doc_id);
    assert_eq!(
        (second.embeddings_written, second.embeddings_reused),
        (1, 2)
    );
    assert!(second
        .passage_ids
        .iter()
        .all(|id| !first.passage_ids.contains(id)));

    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.passages, st.chunks), (2, 4, 4));
    assert_eq!((st.embeddings, st.orphan_embeddings), (5, 1));

    // Re-ingesting unchanged text writes no vectors at all.
    let all: HashSet<String> = keys.iter().cloned().collect();
    let third = s
        .replace_document(&doc_with("a.txt", &texts, &all, DIM))
        .unwrap();
    assert_eq!((third.embeddings_written, third.embeddings_reused), (0, 3));

    let docs = s.documents().unwrap();
    assert_eq!(docs[0].path, "a.txt");
    assert_eq!(
        docs[0].ingest_order, 1,
        "an edit keeps the first-ingest order"
    );
    assert_eq!(docs[0].passages, 3);
    assert_eq!(docs[1].id, other.doc_id);
    assert_eq!(
        s.document_by_path("a.txt").unwrap().unwrap().content_hash,
        doc("a.txt", &texts).content_hash
    );
    assert!(s.document_by_path("zzz.txt").unwrap().is_none());

    assert_eq!(s.vacuum_embeddings().unwrap(), 1);
    let st = s.stats().unwrap();
    assert_eq!((st.embeddings, st.orphan_embeddings), (4, 0));
    s.integrity_check().unwrap();
}

#[test]
fn vectors_of_wrong_dimension_are_refused() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    let bad = doc_with("a.txt", &["x"], &HashSet::new(), DIM + 1);
    mismatch_reason(s.replace_document(&bad).unwrap_err());
    assert_eq!(s.stats().unwrap().documents, 0);
}

#[test]
fn failed_replace_keeps_previous_version() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    let v1 = s
        .replace_document(&doc("a.txt", &["old one", "old two"]))
        .unwrap();
    let before = s.passages_by_ids(&v1.passage_ids).unwrap();
    let vectors = s.load_vectors().unwrap();

    // The failure comes after the old passages were deleted and two new
    // passages inserted: the third chunk's vector is neither cached nor supplied.
    let mut v2 = doc("a.txt", &["new one", "new two", "new three"]);
    let missing = v2.passages[2].chunks[0].emb_key.clone();
    v2.embeddings.remove(&missing);
    let reason = store_error_reason(s.replace_document(&v2).unwrap_err());
    assert!(reason.contains(&missing), "{reason}");

    assert_eq!(s.passages_by_ids(&v1.passage_ids).unwrap(), before);
    assert_eq!(s.load_vectors().unwrap(), vectors);
    let st = s.stats().unwrap();
    assert_eq!(
        (st.documents, st.passages, st.chunks, st.embeddings),
        (1, 2, 2, 2)
    );
    // The connection is usable afterwards.
    s.replace_document(&doc("a.txt", &["new one"])).unwrap();
    assert_eq!(s.stats().unwrap().passages, 1);
}

#[test]
fn remove_and_prune() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    for p in ["a.txt", "b.txt", "c.txt", "d/e.txt"] {
        s.replace_document(&doc(p, &[p, "shared"])).unwrap();
    }
    assert!(s.remove_document("b.txt").unwrap());
    assert!(!s.remove_document("b.txt").unwrap());
    let keep: HashSet<String> = ["a.txt".to_string(), "d/e.txt".to_string()].into();
    assert_eq!(s.prune(&keep).unwrap(), vec!["c.txt".to_string()]);
    assert_eq!(
        s.prune_where(|p| p.starts_with("d/")).unwrap(),
        vec!["d/e.txt"]
    );
    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.passages, st.chunks), (1, 2, 2));
    // Vectors stay cached for a later re-ingest until vacuumed.
    assert_eq!(st.embeddings, 5);
    assert_eq!(s.vacuum_embeddings().unwrap(), 3);
}

#[test]
fn passage_lookup_by_line() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    s.replace_document(&doc("notes/a/b.txt", &["first", "second", "third"]))
        .unwrap();
    s.replace_document(&doc("other/b.txt", &["elsewhere"]))
        .unwrap();

    // Exact stored paths only (suffixes are the engine's `find_document`).
    let p = s.passage_at("notes/a/b.txt", 3).unwrap().unwrap();
    assert_eq!(
        (p.text.as_str(), p.idx, p.path.as_str()),
        ("second", 1, "notes/a/b.txt")
    );
    assert_eq!(
        s.passage_at("notes/a/b.txt", 5).unwrap().unwrap().text,
        "third"
    );
    assert!(
        s.passage_at("notes/a/b.txt", 2).unwrap().is_none(),
        "between passages"
    );
    assert!(
        s.passage_at("notes/a/b.txt", 99).unwrap().is_none(),
        "past the end"
    );
    assert_eq!(
        s.passage_at("other/b.txt", 1).unwrap().unwrap().text,
        "elsewhere"
    );
    assert!(
        s.passage_at("b.txt", 1).unwrap().is_none(),
        "no suffix matching here"
    );
    let all = s.passages_of(p.doc_id).unwrap();
    assert_eq!(all.iter().map(|r| r.idx).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(all[1], p);

    let by_id = s.passage(p.id).unwrap().unwrap();
    assert_eq!(by_id, p);
    assert!(s.passage(987_654).unwrap().is_none());
    let rows = s.passages_by_ids(&[p.id + 1, 987_654, p.id]).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![p.id + 1, p.id]
    );
}

#[test]
fn load_vectors_shape() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    assert!(s.load_vectors().unwrap().is_empty());
    let a = s.replace_document(&doc("a.txt", &["one", "two"])).unwrap();
    // "one" again: its vector is shared, but each chunk still gets a row.
    let b = s
        .replace_document(&doc("b.txt", &["three", "one"]))
        .unwrap();
    let v = s.load_vectors().unwrap();
    assert_eq!((v.len(), v.dim, v.data.len()), (4, DIM, 4 * DIM));
    let mut expected_passages = a.passage_ids.clone();
    expected_passages.extend(&b.passage_ids);
    assert_eq!(v.passage_ids, expected_passages);
    assert!(test_support::close(v.row(0), &vector_for("one", DIM)));
    assert_eq!(v.row(3), v.row(0), "one cached vector");
    assert!(test_support::close(v.row(2), &vector_for("three", DIM)));
    assert!(v.chunk_ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn duplicates_are_marked_and_unlinked_on_replace() {
    let dir = TempDir::new().unwrap();
    let mut s = SqliteStore::create_or_open(db(&dir), &meta()).unwrap();
    let a = s
        .replace_document(&doc("a.txt", &["Same text", "a only"]))
        .unwrap();
    let b = s
        .replace_document(&doc("b.txt", &["same TEXT", "b only"]))
        .unwrap();

    let rows = s.dedup_rows().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!((rows[0].order, rows[0].passage.idx), (1, 0));
    assert_eq!(rows[2].order, 2);
    assert_eq!(rows[0].norm, rows[2].norm, "same normalised text");
    assert_ne!(rows[0].norm, rows[1].norm);

    s.set_duplicate(b.passage_ids[0], a.passage_ids[0], "exact", 1.0)
        .unwrap();
    let p = s.passage(b.passage_ids[0]).unwrap().unwrap();
    assert_eq!(p.duplicate_of, Some(a.passage_ids[0]));
    assert_eq!(
        (p.dup_kind.as_deref(), p.dup_score),
        (Some("exact"), Some(1.0))
    );
    assert_eq!(s.stats().unwrap().duplicates, 1);
    assert!(matches!(
        s.set_duplicate(b.passage_ids[1], 987_654, "near", 0.9),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.set_duplicate(b.passage_ids[1], b.passage_ids[1], "near", 0.9),
        Err(Error::Usage(_))
    ));

    // Replacing the canonical's document removes its passage ids, so the mark
    // pointing at it goes and is reported.
    let again = s
        .replace_document(&doc("a.txt", &["Same text", "a only"]))
        .unwrap();
    assert_eq!(again.unlinked_duplicates, vec![b.passage_ids[0]]);
    let p = s.passage(b.passage_ids[0]).unwrap().unwrap();
    assert_eq!(
        (p.duplicate_of, p.dup_kind, p.dup_score),
        (None, None, None)
    );

    s.set_duplicates(&[
        DuplicateMark {
            passage_id: b.passage_ids[0],
            canonical_id: again.passage_ids[0],
            kind: "exact".into(),
            score: 1.0,
        },
        DuplicateMark {
            passage_id: b.passage_ids[1],
            canonical_id: again.passage_ids[1],
            kind: "semantic".into(),
            score: 0.91,
        },
    ])
    .unwrap();
    assert_eq!(s.stats().unwrap().duplicates, 2);
    s.clear_duplicate(b.passage_ids[1]).unwrap();
    assert_eq!(s.stats().unwrap().duplicates, 1);
    assert_eq!(s.clear_all_duplicates().unwrap(), 1);
    assert_eq!(s.stats().unwrap().duplicates, 0);
    // Removing a document that holds canonicals works with marks in place.
    s.set_duplicate(b.passage_ids[0], again.passage_ids[0], "exact", 1.0)
        .unwrap();
    assert!(s.remove_document("a.txt").unwrap());
    assert_eq!(
        s.passage(b.passage_ids[0]).unwrap().unwrap().duplicate_of,
        None
    );
}

#[test]
fn concurrent_writers_wait_for_each_other() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    drop(SqliteStore::create_or_open(&path, &meta()).unwrap());
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
                for i in 0..25 {
                    let texts: Vec<String> = (0..40)
                        .map(|j| format!("thread {t} doc {i} passage {j}"))
                        .collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    s.replace_document(&doc(&format!("t{t}/{i}.txt"), &refs))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = SqliteStore::open_existing(&path, true).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.passages), (50, 2000));
    let orders: HashSet<i64> = s
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.ingest_order)
        .collect();
    assert_eq!(orders.len(), 50, "ingest_order is unique under concurrency");
}

#[test]
fn concurrent_first_ingests_initialise_once() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
                s.replace_document(&doc(&format!("{t}.txt"), &["x"]))
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = SqliteStore::open_existing(&path, true).unwrap();
    assert_eq!(s.stats().unwrap().documents, 4);
}

/// Environment variable that turns `kill_child_writer` into the child.
const KILL_CHILD_ENV: &str = "PAREIL_STORE_KILL_CHILD";
const KILL_PASSAGES: usize = 5_000;

fn kill_doc(version: usize) -> NewDocument {
    let texts: Vec<String> = (0..KILL_PASSAGES)
        .map(|i| format!("version {version} passage {i}"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    doc("big.txt", &refs)
}

/// The child half of `sigkill_mid_transaction_leaves_a_whole_version`, not a
/// test of its own (hence ignored; the parent runs it with `--ignored`):
/// rewrites one big document forever in the store the environment variable
/// names, reporting `VERSION started` just before each transaction and
/// `VERSION committed` after it in a progress file.
#[test]
#[ignore = "child process of sigkill_mid_transaction_leaves_a_whole_version"]
fn kill_child_writer() {
    let path =
        std::env::var(KILL_CHILD_ENV).expect("run by the SIGKILL test, which sets the store");
    let progress = format!("{path}.progress");
    let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
    for version in 1.. {
        let doc = kill_doc(version);
        std::fs::write(&progress, format!("{version} started")).unwrap();
        s.replace_document(&doc).unwrap();
        std::fs::write(&progress, format!("{version} committed")).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn sigkill_mid_transaction_leaves_a_whole_version() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let progress = PathBuf::from(format!("{}.progress", path.display()));
    // `module_path!()` is `crate::store::tests`; the test filter wants it
    // without the crate name, whatever the crate is called.
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::kill_child_writer"),
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(KILL_CHILD_ENV, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Watch two whole transactions to learn how long one takes, then kill
    // the child half-way through the next.
    let start = Instant::now();
    let mut started_at: Option<(usize, Instant)> = None;
    let mut last = String::new();
    let (committed, txn) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "child made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        let now = std::fs::read_to_string(&progress).unwrap_or_default();
        if now != last {
            let (v, state) = now.split_once(' ').unwrap_or(("0", ""));
            let v: usize = v.parse().unwrap_or(0);
            match (state, started_at) {
                ("started", _) => started_at = Some((v, Instant::now())),
                ("committed", Some((sv, t))) if sv == v && v >= 2 => break (v, t.elapsed()),
                _ => {}
            }
            last = now;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    loop {
        let now = std::fs::read_to_string(&progress).unwrap_or_default();
        if now == format!("{} started", committed + 1) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "child stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(txn / 2);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let s = SqliteStore::create_or_open(&path, &meta()).unwrap();
    s.integrity_check().unwrap();
    let rows = s.dedup_rows().unwrap();
    assert_eq!(rows.len(), KILL_PASSAGES, "a whole version, not a mix");
    let version = s.passages_by_ids(&[rows[0].passage.id]).unwrap()[0]
        .text
        .split(' ')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap();
    // Normally the in-flight version is rolled back; on a very loaded
    // machine the kill may land after its commit, which is also whole.
    assert!(
        version == committed || version == committed + 1,
        "found version {version}, last committed {committed}"
    );
    let last = s
        .passages_by_ids(&[rows[KILL_PASSAGES - 1].passage.id])
        .unwrap();
    assert_eq!(
        last[0].text,
        format!("version {version} passage {}", KILL_PASSAGES - 1)
    );
    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.chunks), (1, KILL_PASSAGES));
    assert_eq!(s.load_vectors().unwrap().len(), KILL_PASSAGES);
    eprintln!("killed after {committed} commits, {txn:?} per transaction; found version {version}");
}

/// Timing of `load_vectors` for 100k chunks of 384 floats. Ignored by default
/// (slow to build the data); run with
/// `cargo test --release -- --ignored --nocapture load_vectors_100k`.
#[test]
#[ignore]
fn load_vectors_100k() {
    use std::time::Instant;
    const D: usize = 384;
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let mut s = SqliteStore::create_or_open(&path, &StoreMeta { dim: D, ..meta() }).unwrap();
    let mut x: u64 = 42;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let t = Instant::now();
    for d in 0..1000 {
        let mut doc = NewDocument {
            path: format!("docs/{d}.txt"),
            content_hash: format!("{d}"),
            ..Default::default()
        };
        for p in 0..100 {
            let key = format!("{d}-{p}");
            doc.embeddings
                .insert(key.clone(), (0..D).map(|_| rand()).collect());
            doc.passages.push(NewPassage {
                line_start: p + 1,
                line_end: p + 1,
                text: format!("passage {p} of document {d} with some words"),
                norm: format!("passage {p} of document {d} with some words"),
                chunks: vec![NewChunk {
                    emb_key: key,
                    tokens: 9,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        s.replace_document(&doc).unwrap();
    }
    let ingest = t.elapsed();
    drop(s);
    let s = SqliteStore::open_existing(&path, true).unwrap();
    let t = Instant::now();
    let v = s.load_vectors().unwrap();
    let cold = t.elapsed();
    let t = Instant::now();
    let v2 = s.load_vectors().unwrap();
    let warm = t.elapsed();
    assert_eq!((v.len(), v.data.len()), (100_000, 100_000 * D));
    assert_eq!(v, v2);
    let st = s.stats().unwrap();
    println!(
        "100k x {D}: ingest {ingest:?}, load_vectors first {cold:?}, second {warm:?}, \
         file {:.1} MiB",
        st.file_size_bytes as f64 / (1 << 20) as f64
    );
}

/// A fresh SQLite store in a temporary directory, for the conformance suite.
fn conformance_store() -> crate::store::conformance::Fixture {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::create_or_open(
        db(&dir),
        &test_support::meta(crate::store::conformance::DIM),
    )
    .unwrap();
    crate::store::conformance::Fixture {
        store: Box::new(store),
        _guard: Box::new(dir),
    }
}

mod conformance {
    crate::store_conformance_tests!(super::conformance_store);
}

/// The same suite with the approximate index built from the first chunk on
/// and brought up to date after every write: searches go through it.
fn conformance_store_indexed() -> crate::store::conformance::Fixture {
    let dir = TempDir::new().unwrap();
    let mut store = SqliteStore::create_or_open(
        db(&dir),
        &test_support::meta(crate::store::conformance::DIM),
    )
    .unwrap();
    store.set_ann_min_chunks(0);
    crate::store::conformance::Fixture {
        store: Box::new(crate::store::conformance::Maintained(Box::new(store))),
        _guard: Box::new(dir),
    }
}

mod conformance_indexed {
    crate::store_conformance_tests!(super::conformance_store_indexed);
}

/// Environment variable that turns `read_only_child` into the child.
const READ_ONLY_CHILD_ENV: &str = "PAREIL_STORE_READ_ONLY_CHILD";

/// The child half of `store_in_a_read_only_directory_opens_for_reading`
/// (ignored: the parent runs it, as another user when the tests run as
/// root, whom permissions do not stop): the store can be read, and not
/// written, with the causes named.
#[test]
#[ignore = "child process of store_in_a_read_only_directory_opens_for_reading"]
fn read_only_child() {
    let path = PathBuf::from(std::env::var(READ_ONLY_CHILD_ENV).expect("run by the parent test"));
    assert!(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .is_err(),
        "the store should not be writable here"
    );
    let ro = SqliteStore::open_existing(&path, true).unwrap();
    assert_eq!(ro.stats().unwrap().passages, 2);
    let q = vector_for("one", DIM);
    let found = ro.nearest(&q, 1, &Filter::default()).unwrap();
    assert_eq!(found.len(), 1);
    for reason in [
        store_error_reason(SqliteStore::open_existing(&path, false).unwrap_err()),
        store_error_reason(SqliteStore::create_or_open(&path, &meta()).unwrap_err()),
    ] {
        assert!(
            reason.contains("cannot be written") && reason.contains("fix:"),
            "{reason}"
        );
    }
    let fresh = path.with_file_name("new.db");
    let reason = store_error_reason(SqliteStore::create_or_open(&fresh, &meta()).unwrap_err());
    assert!(
        reason.contains("directory") && reason.contains("not writable") && reason.contains("fix:"),
        "{reason}"
    );
    assert!(!fresh.exists());
}

/// A WAL store whose file and directory are read-only (no `-shm` can be
/// created) is read through SQLite's `immutable` fallback (issue 13: it
/// failed with "attempt to write a readonly database").
#[cfg(unix)]
#[test]
fn store_in_a_read_only_directory_opens_for_reading() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    let dir = TempDir::new().unwrap();
    let sub = dir.path().join("ro");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("pareil.db");
    {
        let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
        s.replace_document(&doc("a.txt", &["one", "two"])).unwrap();
    }
    assert!(!sidecar(&path, "-shm").exists(), "a clean close removes it");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(dir.path(), 0o755).unwrap();
    mode(&path, 0o444).unwrap();
    mode(&sub, 0o555).unwrap();
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            &format!("{module}::read_only_child"),
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(READ_ONLY_CHILD_ENV, &path);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        child.uid(65534).gid(65534);
    }
    let out = child.output().unwrap();
    mode(&sub, 0o755).unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !sidecar(&path, "-shm").exists(),
        "nothing written beside it"
    );
}

/// The immutable fallback opens names that mean something in a URI.
#[test]
fn immutable_open_keeps_odd_names() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a ?b#c%20d é.db");
    {
        let mut s = SqliteStore::create_or_open(&path, &meta()).unwrap();
        s.replace_document(&doc("a.txt", &["one"])).unwrap();
    }
    assert_eq!(uri_path(Path::new("/a b/%?#é")), "/a%20b/%25%3F%23%C3%A9");
    let conn = open_immutable(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM passages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    assert!(open_immutable(&dir.path().join("missing.db")).is_err());
}

/// `--db /proc/x.db` or a device is refused with the cause and a fix, not
/// SQLite's bare "unable to open database file" (issue 13).
#[test]
fn unwritable_places_are_refused_with_the_cause() {
    #[cfg(target_os = "linux")]
    {
        let reason = store_error_reason(
            SqliteStore::create_or_open("/proc/pareil-test.db", &meta()).unwrap_err(),
        );
        assert!(
            reason.contains("proc virtual filesystem") && reason.contains("fix:"),
            "{reason}"
        );
    }
    #[cfg(unix)]
    {
        let reason =
            store_error_reason(SqliteStore::create_or_open("/dev/null", &meta()).unwrap_err());
        assert!(
            reason.contains("not a regular file") && reason.contains("fix:"),
            "{reason}"
        );
    }
    let dir = TempDir::new().unwrap();
    assert_eq!(write_problem(&db(&dir)), None);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the probe leaves nothing behind"
    );
}

#[test]
fn refresh_sees_writes_of_another_handle() {
    use crate::store::{Filter, Store};
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    let mut writer = SqliteStore::create_or_open(&path, &meta()).unwrap();
    writer.replace_document(&doc("a.txt", &["one"])).unwrap();
    let mut reader = SqliteStore::open_existing(&path, true).unwrap();
    reader.refresh().unwrap();
    let query = vector_for("two", DIM);
    let found = |r: &SqliteStore| r.nearest(&query, 5, &Filter::default()).unwrap().len();
    assert_eq!(found(&reader), 1);
    writer.replace_document(&doc("b.txt", &["two"])).unwrap();
    // The reader's cached vectors do not know b.txt until it refreshes.
    assert_eq!(found(&reader), 1);
    reader.refresh().unwrap();
    assert_eq!(found(&reader), 2);
    // Nothing written since: the cache is kept.
    reader.refresh().unwrap();
    assert!(reader.search.get().is_some());
}
