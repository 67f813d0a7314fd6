//! Format compatibility (tantivy's compat tests): a store written by the
//! version-1 release (`tests/data/compat/store-v1.db`, made from
//! `tests/data/compat/docs/` with `pareil ingest docs --on-duplicate skip`)
//! must still open, read, migrate to the current format and answer queries.

use std::path::{Path, PathBuf};

use crate::util::{pareil_json, repo_root};
use pareil::store::{Filter, SqliteStore, Store, SCHEMA_VERSION};

/// A writable copy of the fixture in a temporary directory.
fn fixture_copy(dir: &Path) -> PathBuf {
    let src = repo_root().join("tests/data/compat/store-v1.db");
    let dst = dir.join("store-v1.db");
    std::fs::write(&dst, std::fs::read(src).expect("reading the fixture")).unwrap();
    dst
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn version_1_store_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(dir.path());
    let store = SqliteStore::open_existing(&db, true).unwrap();
    assert_eq!(store.meta().model_id, "intfloat/multilingual-e5-small");
    let rows = store.dedup_rows().unwrap();
    assert_eq!(rows.len(), 6);
    // b.txt's second and third passages were stored as references.
    let refs: Vec<_> = rows
        .iter()
        .filter(|r| r.passage.duplicate_of.is_some())
        .collect();
    assert_eq!(refs.len(), 2);
    let first = rows[0].passage.id;
    let v = store.passage_vector(first).unwrap().unwrap();
    let hits = store.nearest(&v, 3, &Filter::default()).unwrap();
    assert_eq!(hits[0].passage, first);
    drop(store);
    assert_eq!(user_version(&db), 1, "a read-only open never migrates");
}

#[test]
fn version_1_store_is_migrated_by_a_writer_and_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(dir.path());
    let mut store = SqliteStore::open_existing(&db, false).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    assert_eq!(
        store.meta_value("generation").unwrap().as_deref(),
        Some("0")
    );
    assert!(store.remove_document("docs/b.txt").unwrap());
    assert_eq!(
        store.meta_value("generation").unwrap().as_deref(),
        Some("1")
    );
    drop(store);

    // The real binary queries the migrated store.
    let db_arg = db.to_str().unwrap();
    let r = pareil_json(
        dir.path(),
        &["--db", db_arg, "similar", "--at", "a.txt:1", "--json"],
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    assert!(results.iter().all(|h| h["path"] == "docs/a.txt"));
    let s = pareil_json(dir.path(), &["--db", db_arg, "stats", "--json"]);
    assert_eq!(s["stats"]["schema_version"], SCHEMA_VERSION);
    assert_eq!(s["stats"]["documents"], 1);
}

/// A writable copy of the version-3 fixture (`tests/data/compat/store-v3.db`,
/// made by the last version-3 build from the same documents, same command):
/// passages without the language guesses and sketches of format 4.
fn fixture_v3_copy(dir: &Path) -> PathBuf {
    let src = repo_root().join("tests/data/compat/store-v3.db");
    let dst = dir.join("store-v3.db");
    std::fs::write(&dst, std::fs::read(src).expect("reading the fixture")).unwrap();
    dst
}

#[test]
fn version_3_store_without_traits_is_read_and_gets_them_from_the_next_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_v3_copy(dir.path());
    let db_arg = db.to_str().unwrap();
    let report = |dir: &Path| pareil_json(dir, &["--db", db_arg, "dups", "--json"]);

    // Read as it is: no traits stored, `dups` works them out.
    let store = SqliteStore::open_existing(&db, true).unwrap();
    let rows = store.dedup_rows().unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.lang.is_none()), "nothing stored yet");
    let mut sketches = 0;
    store.for_each_sketch(&mut |_, _| sketches += 1).unwrap();
    assert_eq!(sketches, 0);
    drop(store);
    assert_eq!(user_version(&db), 3, "a read-only open never migrates");
    let before = report(dir.path());

    // The next ingest migrates the store and stores what was missing.
    let more = dir.path().join("more");
    std::fs::create_dir(&more).unwrap();
    std::fs::write(
        more.join("c.txt"),
        "Un texte de plus, sans rapport avec les autres.\n",
    )
    .unwrap();
    pareil_json(dir.path(), &["--db", db_arg, "ingest", "more", "--json"]);
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    let store = SqliteStore::open_existing(&db, true).unwrap();
    let rows = store.dedup_rows().unwrap();
    assert_eq!(rows.len(), 7);
    assert!(
        rows.iter().all(|r| r.lang.is_some()),
        "every passage has its guess"
    );
    assert!(rows.iter().any(|r| r.lang == Some(Some("fr".to_string()))));
    let mut sketches = 0;
    store.for_each_sketch(&mut |_, _| sketches += 1).unwrap();
    assert_eq!(sketches, 7);
    assert_eq!(
        store
            .meta_value("passage_traits_complete")
            .unwrap()
            .as_deref(),
        Some("1"),
        "later ingests need not look for passages without them"
    );
    drop(store);

    // Stored or worked out, the findings are the same.
    let after = report(dir.path());
    assert_eq!(after["findings"], before["findings"], "{after}");
    assert!(!before["findings"].as_array().unwrap().is_empty());
}
