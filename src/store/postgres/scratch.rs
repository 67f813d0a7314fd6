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

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's port, when its URL names one.
    pub fn server_port(&self) -> Option<u16> {
        self.server.rsplit_once(':')?.1.parse().ok()
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

/// A PostgreSQL server of its own, started by `scripts/pg-server.sh` in a
/// temporary folder and stopped (by pid) when this value is dropped: the
/// extra instances of the sharding and replica tests.
pub struct ScratchServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl ScratchServer {
    /// A fresh server with a `pareil` database (pgvector created), or
    /// `None` (with a note) where PostgreSQL is not installed, outside CI.
    pub fn start() -> Option<ScratchServer> {
        Self::launch(&[])
    }

    /// A streaming replica of the server listening on `primary_port`
    /// (`pg_basebackup -R`: it replays the primary's writes, read-only).
    pub fn replica_of(primary_port: u16) -> Option<ScratchServer> {
        Self::launch(&[primary_port.to_string()])
    }

    fn launch(extra: &[String]) -> Option<ScratchServer> {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-server.sh");
        if !std::path::Path::new("/usr/lib/postgresql/15/bin/initdb").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: PostgreSQL 15 is not installed (.ci/run installs it)"
            );
            eprintln!("skipped: PostgreSQL 15 is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("pareil-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        // The server may run as another user (`postgres`, under root): it
        // must reach the data folder inside.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("temp dir permissions");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let command = if extra.is_empty() { "start" } else { "replica" };
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(command)
            .arg(dir.path().join("data"))
            .arg(port.to_string())
            .args(extra)
            .output()
            .expect("running scripts/pg-server.sh");
        assert!(
            out.status.success(),
            "pg-server.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(ScratchServer { dir, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-server.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path().join("data"))
            .output();
    }
}
