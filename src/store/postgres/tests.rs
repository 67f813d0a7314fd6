//! The PostgreSQL store against a real server: the shared conformance suite,
//! plus what only this backend has (URLs, another program's tables, a
//! read-only session, concurrent writers). Each test gets a database of its
//! own, dropped afterwards.
//!
//! The server comes from `PAREIL_TEST_POSTGRES` (see `scratch.rs`;
//! `scripts/test.sh` starts one). Without it the tests skip with a note —
//! and fail under CI.

use super::scratch::ScratchDatabase as TestDatabase;
use super::{redact, PostgresStore};
use crate::error::Error;
use crate::store::conformance::{self, Fixture};
use crate::store::Store;
use crate::test_support;

fn conformance_store() -> Option<Fixture> {
    let db = TestDatabase::create()?;
    let store =
        PostgresStore::create_or_open(&db.url(), &test_support::meta(conformance::DIM)).unwrap();
    Some(Fixture {
        store: Box::new(store),
        _guard: Box::new(db),
    })
}

mod conformance_suite {
    crate::store_conformance_tests!(super::conformance_store);
}

#[test]
fn passwords_never_reach_messages() {
    assert_eq!(
        redact("postgres://ann:s3cret@db.example:5432/pareil?sslmode=disable"),
        "postgres://ann:***@db.example:5432/pareil?sslmode=disable"
    );
    assert_eq!(
        redact("postgresql://ann@db/pareil"),
        "postgresql://ann@db/pareil"
    );
    assert_eq!(redact("postgres://db/p@ss"), "postgres://db/p@ss");
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let err = PostgresStore::create_or_open(
        "postgres://nobody:pw@127.0.0.1:1/pareil",
        &test_support::meta(4),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("pw@"), "the password stays out: {err}");
}

#[test]
fn another_programs_tables_are_left_alone() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE documents (id int, body text); INSERT INTO documents VALUES (1, 'keep me')",
    )
    .unwrap();
    let err = PostgresStore::create_or_open(&db.url(), &test_support::meta(4)).unwrap_err();
    assert!(
        matches!(&err, Error::Store { reason, .. } if reason.contains("not a pareil store")),
        "{err}"
    );
    let kept: String = c
        .query_one("SELECT body FROM documents", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, "keep me");
    assert!(c
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'passages'",
            &[]
        )
        .unwrap()
        .is_none());
}

#[test]
fn open_existing_needs_a_store_and_read_only_refuses_writes() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let err = PostgresStore::open_existing(&db.url(), true).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    PostgresStore::create_or_open(&db.url(), &test_support::meta(4)).unwrap();
    let mut ro = PostgresStore::open_existing(&db.url(), true).unwrap();
    assert_eq!(ro.meta(), &test_support::meta(4));
    assert!(ro.set_meta_value("k", "v").is_err());
    let other = crate::store::StoreMeta {
        model_id: "other/model".into(),
        ..test_support::meta(4)
    };
    assert!(matches!(
        PostgresStore::create_or_open(&db.url(), &other),
        Err(Error::StoreMismatch { .. })
    ));
}

/// A store of schema version 1 (made here by taking a new store back: the
/// columns and table later versions added dropped, the version set to 1) is read as it is
/// by a reader and migrated by a writer, which keeps every passage.
#[test]
fn a_version_1_store_is_read_as_it_is_and_migrated_by_a_writer() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let mut store = PostgresStore::create_or_open(&db.url(), &test_support::meta(4)).unwrap();
    let mut doc = test_support::document(
        "a.txt",
        &["one passage", "another"],
        &Default::default(),
        |t| test_support::vector_for(t, 4),
    );
    doc.passages.iter_mut().for_each(|p| p.traits = None);
    store.replace_document(&doc).unwrap();
    store
        .db()
        .batch_execute(
            "ALTER TABLE passages DROP COLUMN lang, DROP COLUMN sketch, DROP COLUMN lex_keys;
             DROP TABLE passage_texts;
             UPDATE pareil_meta SET value = '1' WHERE key = 'schema_version'",
        )
        .unwrap();
    drop(store);

    let ro = PostgresStore::open_existing(&db.url(), true).unwrap();
    let rows = ro.dedup_rows().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.lang.is_none()));
    assert_eq!(ro.passages_without_traits(0, 10).unwrap(), []);
    ro.for_each_sketch(&mut |_, _| panic!("no sketches at version 1"))
        .unwrap();
    drop(ro);

    let rw = PostgresStore::open_existing(&db.url(), false).unwrap();
    assert_eq!(
        rw.read_stats().unwrap().schema_version,
        super::schema::SCHEMA_VERSION
    );
    assert_eq!(rw.passages_without_traits(0, 10).unwrap().len(), 2);
    assert_eq!(rw.dedup_rows().unwrap().len(), 2);
    let recorded: i64 = rw
        .db()
        .query_one("SELECT count(*) FROM passage_texts", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, 2, "version 3 records the stored texts");
    assert_eq!(
        rw.lexical_neighbours(&[vec![1]]).unwrap(),
        None,
        "keys come at the next ingest"
    );
}

/// Two writers storing the same text at the same moment, each asking the
/// store to refer to a stored copy (`exact_references`) and neither
/// holding ingest's claim: one canonical copy and one exact reference,
/// whichever commits first — the unique key of `passage_texts` decides.
#[test]
fn concurrent_writers_of_one_text_leave_one_canonical_copy() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let meta = test_support::meta(4);
    PostgresStore::create_or_open(&db.url(), &meta).unwrap();
    for round in 0..8 {
        let text = format!("the same passage, round {round}");
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let (url, meta, text, start) =
                    (db.url(), meta.clone(), text.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut store = PostgresStore::create_or_open(&url, &meta).unwrap();
                    let mut doc = test_support::document(
                        &format!("{name}{round}.txt"),
                        &[text.as_str()],
                        &Default::default(),
                        |t| test_support::vector_for(t, 4),
                    );
                    doc.exact_references = true;
                    start.wait();
                    store.replace_document(&doc).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let ro = PostgresStore::open_existing(&db.url(), true).unwrap();
        let marks: Vec<Option<i64>> = outcomes
            .iter()
            .map(|o| ro.passage(o.passage_ids[0]).unwrap().unwrap().duplicate_of)
            .collect();
        let ids: Vec<i64> = outcomes.iter().map(|o| o.passage_ids[0]).collect();
        assert!(
            marks == [None, Some(ids[0])] || marks == [Some(ids[1]), None],
            "round {round}: marks {marks:?} for passages {ids:?}"
        );
        let late: usize = outcomes.iter().map(|o| o.late_references.len()).sum();
        assert_eq!(late, 1);
    }
}

#[test]
fn a_claimed_document_is_free_again_when_released_or_its_holder_is_gone() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let meta = test_support::meta(4);
    let mut a = PostgresStore::create_or_open(&db.url(), &meta).unwrap();
    let mut b = PostgresStore::create_or_open(&db.url(), &meta).unwrap();
    assert!(a.claim("x.txt", false).unwrap());
    assert!(!b.claim("x.txt", false).unwrap(), "held by a");
    assert!(b.claim("y.txt", false).unwrap(), "another document is free");
    a.release("x.txt").unwrap();
    assert!(b.claim("x.txt", false).unwrap());
    b.release_claims().unwrap();
    assert!(a.claim("x.txt", false).unwrap() && a.claim("y.txt", false).unwrap());
    // A worker that dies loses its claims; one that waits gets them.
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        assert!(b.claim("x.txt", true).unwrap());
        started.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(a);
    assert!(waiter.join().unwrap() >= std::time::Duration::from_millis(150));
}

/// A store of `docs` documents of two passages each, random 8-dimensional vectors.
fn filled_store(url: &str, docs: usize) -> PostgresStore {
    let mut store = PostgresStore::create_or_open(url, &test_support::meta(8)).unwrap();
    let rng = std::cell::RefCell::new(test_support::Rng::new(20261204));
    for d in 0..docs {
        let texts = [format!("doc {d} first"), format!("doc {d} second")];
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let doc = test_support::document(&format!("d{d}.txt"), &texts, &Default::default(), |_| {
            rng.borrow_mut().unit_vector(8)
        });
        store.replace_document(&doc).unwrap();
    }
    store
}

fn ids(found: &[crate::store::Neighbour]) -> Vec<i64> {
    found.iter().map(|n| n.passage).collect()
}

/// The layout splits by `doc_id` as Citus would: `chunks` hash-partitioned
/// on it over two other servers through PostgreSQL's own `postgres_fdw`
/// (each shard with its own HNSW index); a top-k across the shards equals
/// the single server's.
#[test]
fn a_top_k_across_postgres_fdw_shards_equals_the_single_server_top_k() {
    use super::scratch::ScratchServer;
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (Some(shard_0), Some(shard_1)) = (ScratchServer::start(), ScratchServer::start()) else {
        return;
    };
    let store = filled_store(&db.url(), 60);
    for shard in [&shard_0, &shard_1] {
        let mut c = postgres::Client::connect(&shard.url("pareil"), postgres::NoTls).unwrap();
        c.batch_execute(
            "CREATE TABLE chunks (id bigint, doc_id bigint NOT NULL, passage_id bigint NOT NULL, \
             idx integer NOT NULL, byte_start bigint, byte_end bigint, tokens bigint, \
             emb_key text NOT NULL, vector halfvec(8) NOT NULL, PRIMARY KEY (doc_id, id)); \
             CREATE INDEX ON chunks USING hnsw (vector halfvec_cosine_ops)",
        )
        .unwrap();
    }
    let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    c.batch_execute(
        "CREATE EXTENSION postgres_fdw; \
         CREATE TABLE chunks_sharded (LIKE chunks) PARTITION BY HASH (doc_id)",
    )
    .unwrap();
    for (i, shard) in [&shard_0, &shard_1].iter().enumerate() {
        c.batch_execute(&format!(
            "CREATE SERVER shard_{i} FOREIGN DATA WRAPPER postgres_fdw \
             OPTIONS (host '127.0.0.1', port '{}', dbname 'pareil', extensions 'vector'); \
             CREATE USER MAPPING FOR CURRENT_USER SERVER shard_{i} OPTIONS (user 'postgres'); \
             CREATE FOREIGN TABLE chunks_shard_{i} PARTITION OF chunks_sharded \
             FOR VALUES WITH (MODULUS 2, REMAINDER {i}) SERVER shard_{i} \
             OPTIONS (table_name 'chunks')",
            shard.port()
        ))
        .unwrap();
    }
    c.batch_execute("INSERT INTO chunks_sharded SELECT * FROM chunks")
        .unwrap();
    for shard in [&shard_0, &shard_1] {
        let mut s = postgres::Client::connect(&shard.url("pareil"), postgres::NoTls).unwrap();
        let n: i64 = s
            .query_one("SELECT count(*) FROM chunks", &[])
            .unwrap()
            .get(0);
        assert!(
            n > 20 && n < 100,
            "each shard holds part of the 120 chunks: {n}"
        );
    }
    let mut rng = test_support::Rng::new(7);
    for _ in 0..5 {
        let q = rng.unit_vector(8);
        let single = ids(&store.nearest(&q, 10, &Default::default()).unwrap());
        let sharded: Vec<i64> = c
            .query(
                "SELECT passage_id FROM chunks_sharded ORDER BY vector <=> $1, passage_id LIMIT 10",
                &[&pgvector::HalfVector::from_f32_slice(&q)],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(sharded, single);
    }
}

/// Read scaling: a streaming replica (`pg_basebackup -R`) of the server
/// opens read-only, answers as the primary does, refuses writes, and sees
/// the primary's later writes.
#[test]
fn a_streaming_replica_answers_searches() {
    use super::scratch::ScratchServer;
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Some(port) = db.server_port() else {
        return;
    };
    let mut primary = filled_store(&db.url(), 20);
    let Some(replica) = ScratchServer::replica_of(port) else {
        return;
    };
    let url = replica.url(db.name());
    let documents = |s: &PostgresStore| s.stats().map(|st| st.documents).unwrap_or(0);
    let wait_for = |n: usize| {
        let started = std::time::Instant::now();
        loop {
            if let Ok(s) = PostgresStore::open_existing(&url, true) {
                if documents(&s) == n {
                    return s;
                }
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "the replica never caught up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let mut copy = wait_for(20);
    let q = test_support::Rng::new(3).unit_vector(8);
    assert_eq!(
        ids(&copy.nearest(&q, 5, &Default::default()).unwrap()),
        ids(&primary.nearest(&q, 5, &Default::default()).unwrap())
    );
    assert!(
        copy.set_meta_value("k", "v").is_err(),
        "a replica is read-only"
    );
    let more = test_support::document("late.txt", &["written later"], &Default::default(), |_| {
        q.clone()
    });
    primary.replace_document(&more).unwrap();
    let copy = wait_for(21);
    let top = copy.nearest(&q, 1, &Default::default()).unwrap();
    assert_eq!(
        copy.passage(top[0].passage).unwrap().unwrap().path,
        "late.txt"
    );
}

/// Neighbour lists for many passages at once (spread over several
/// connections) come back in the order asked, each as when asked alone.
#[test]
fn neighbours_of_many_passages_match_one_at_a_time() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = filled_store(&db.url(), 300);
    let mut asked: Vec<i64> = store
        .dedup_rows()
        .unwrap()
        .iter()
        .map(|r| r.passage.id)
        .collect();
    asked.reverse(); // not in id order: the answer must follow the question
    let all = store.neighbours(&asked, 5, -1.0).unwrap();
    assert_eq!(all.len(), asked.len());
    for (i, &id) in asked.iter().enumerate().step_by(37) {
        let alone = store.neighbours(&[id], 5, -1.0).unwrap();
        assert_eq!(ids(&all[i]), ids(&alone[0]), "passage {id}");
    }
}

/// The search settings are sent when they change, not before every search;
/// `--exact` after an index search, and a longer page, still reach the
/// session.
#[test]
fn search_settings_follow_exact_search_and_page_length() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let mut store = filled_store(&db.url(), 20);
    let show = |store: &PostgresStore, name: &str| -> String {
        store
            .db()
            .query_one(&format!("SHOW {name}"), &[])
            .unwrap()
            .get(0)
    };
    let query = test_support::Rng::new(7).unit_vector(8);
    let approximate = store.nearest(&query, 5, &Default::default()).unwrap();
    assert_eq!(show(&store, "enable_indexscan"), "on");
    assert_eq!(show(&store, "hnsw.ef_search"), "128");
    store.set_exact_search(true);
    let exact = store.nearest(&query, 5, &Default::default()).unwrap();
    assert_eq!(show(&store, "enable_indexscan"), "off");
    assert_eq!(ids(&approximate), ids(&exact));
    store.nearest(&query, 300, &Default::default()).unwrap();
    assert_eq!(show(&store, "hnsw.ef_search"), "608");
    store.set_exact_search(false);
    store.nearest(&query, 5, &Default::default()).unwrap();
    assert_eq!(show(&store, "enable_indexscan"), "on");
    assert_eq!(show(&store, "hnsw.ef_search"), "128");
}
