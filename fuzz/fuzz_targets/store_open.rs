//! Arbitrary non-empty bytes as a store file: every way of opening it is
//! refused (or, by a miracle, works) and a refusal leaves the file
//! byte-identical; no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pareil::store::{SqliteStore, StoreMeta};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return; // an empty file is a store to be created, by design
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pareil.db");
    std::fs::write(&path, data).unwrap();
    let meta = StoreMeta {
        model_id: "fuzz/model".into(),
        revision: "r1".into(),
        dim: 4,
        pooling: "mean".into(),
        passage_prefix: "passage: ".into(),
        query_prefix: "query: ".into(),
    };
    for attempt in 0..3 {
        let opened = match attempt {
            0 => SqliteStore::open_existing(&path, true),
            1 => SqliteStore::open_existing(&path, false),
            _ => SqliteStore::create_or_open(&path, &meta),
        };
        match opened {
            Ok(store) => {
                let _ = store.stats();
                return;
            }
            Err(_) => assert_eq!(std::fs::read(&path).unwrap(), data, "attempt {attempt}"),
        }
    }
});
