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
