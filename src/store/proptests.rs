//! Property tests of opening a store file: whatever bytes are at the path
//! (random, SQLite-looking, or a real store with bytes overwritten),
//! [`SqliteStore::open_existing`] and [`SqliteStore::create_or_open`] return
//! an error or a working store, never panic, and a refusal leaves the file
//! byte-identical with nothing beside it but SQLite's WAL files.

use std::path::Path;

use proptest::prelude::*;

use crate::store::SqliteStore;
use crate::test_support::{self, proptest_config};

/// The SQLite file header every database starts with.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// The directory's entries, for checking that nothing was created beside the file.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Tries every way of opening `path`; for each refusal, the file must be
/// untouched, with nothing new beside it but SQLite's WAL files. Returns whether any open succeeded.
fn open_all_ways(path: &Path) -> Result<bool, TestCaseError> {
    let dir = path.parent().unwrap();
    let before = std::fs::read(path).unwrap();
    let listing = entries(dir);
    let mut opened = false;
    let attempts: [&dyn Fn() -> crate::Result<SqliteStore>; 3] = [
        &|| SqliteStore::open_existing(path, true),
        &|| SqliteStore::open_existing(path, false),
        &|| SqliteStore::create_or_open(path, &test_support::meta(4)),
    ];
    for (i, open) in attempts.iter().enumerate() {
        match open() {
            Ok(store) => {
                opened = true;
                // A store that opens answers (or fails) without panicking.
                let _ = store.stats();
                let _ = store.integrity_check();
                return Ok(opened);
            }
            Err(_) => {
                prop_assert_eq!(
                    std::fs::read(path).unwrap(),
                    before.clone(),
                    "attempt {} changed the file",
                    i
                );
                // SQLite itself leaves a `-wal` and a `-shm` beside a
                // WAL-mode file (a real store's header says WAL) after any
                // connection, as after a successful read-only open; a write
                // transaction rolled back on refusal may leave frames in the
                // `-wal` that no commit record validates, which SQLite
                // ignores. The file itself is what must not change.
                let name = path.file_name().unwrap().to_string_lossy();
                for extra in entries(dir).iter().filter(|e| !listing.contains(e)) {
                    let wal = format!("{name}-wal");
                    prop_assert!(
                        *extra == wal || *extra == format!("{name}-shm"),
                        "attempt {} left {}",
                        i,
                        extra
                    );
                }
            }
        }
    }
    Ok(opened)
}

/// A real store (one document) as bytes.
fn valid_store() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pareil.db");
    {
        let mut store = SqliteStore::create_or_open(&path, &test_support::meta(4)).unwrap();
        let doc = test_support::document(
            "a.txt",
            &["Un texte.", "Un autre."],
            &Default::default(),
            |t| test_support::vector_for(t, 4),
        );
        store.replace_document(&doc).unwrap();
    }
    assert_eq!(
        entries(dir.path()),
        ["pareil.db"],
        "WAL checkpointed on close"
    );
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// Random non-empty bytes, half of them behind SQLite's magic: refused
    /// every way, file untouched.
    #[test]
    fn store_from_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 1..4096), magic in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pareil.db");
        let mut bytes = if magic { SQLITE_MAGIC.to_vec() } else { Vec::new() };
        bytes.extend(body);
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(!open_all_ways(&path)?, "random bytes opened as a store");
    }

    /// A real store with bytes overwritten (the 100-byte header, or anywhere)
    /// or cut short: opens or is refused untouched, never panics.
    #[test]
    fn store_from_mutated_file(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                               in_header in any::<bool>(), cut in prop::option::weighted(0.2, any::<prop::sample::Index>())) {
        let mut bytes = valid_store();
        for (at, v) in edits {
            let i = if in_header { at.index(100) } else { at.index(bytes.len()) };
            bytes[i] = v;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()).max(1));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pareil.db");
        std::fs::write(&path, &bytes).unwrap();
        open_all_ways(&path)?;
    }
}
