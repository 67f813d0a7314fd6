//! Throwaway databases on a PostgreSQL server, for tests and benchmarks
//! (library unit tests, the integration tests and `benches/` alike): each
//! gets a fresh database, dropped afterwards.
//!
//! The server comes from `PAREIL_TEST_POSTGRES`: a URL without a database
//! name, e.g. `postgres://postgres@127.0.0.1:54329`, of a role that may
//! create databases, with pgvector installed (`scripts/test.sh` starts one).
//! Without it [`ScratchDatabase::create`] returns `None` after a note, so a
//! test skips — except under CI (`CI` set), where it fails.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Environment variable naming the PostgreSQL server tests use.
pub const TEST_SERVER_ENV: &str = "PAREIL_TEST_POSTGRES";

/// A database created for one test (or benchmark) and dropped, connections
/// and all, when this value is.
pub struct ScratchDatabase {
    server: String,
    name: String,
}

impl ScratchDatabase {
    /// A fresh, empty database, or `None` (with a note) when no server is
    /// configured outside CI.
    pub fn create() -> Option<ScratchDatabase> {
        let server = match std::env::var(TEST_SERVER_ENV) {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI: the PostgreSQL tests need {} (scripts/test.sh starts a server)",
                    TEST_SERVER_ENV
                );
                eprintln!(
                    "skipped: no PostgreSQL server ({} unset; scripts/test.sh starts one)",
                    TEST_SERVER_ENV
                );
                return None;
            }
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pareil_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
            .expect("connect to the test server");
        // One statement per call: CREATE DATABASE refuses a transaction block.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .and_then(|()| admin.batch_execute(&format!("CREATE DATABASE {name}")))
            .expect("create a test database");
        Some(ScratchDatabase { server, name })
    }

    /// The URL of this database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{}/postgres", self.server), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
