//! The on-disk format: the pareil `application_id`, the schema version, the
//! DDL, and the checks that tell a pareil store from a blank file, a foreign
//! SQLite database or something that is not SQLite at all. Everything that
//! decides whether a file may be written lives here, so the rule "never touch
//! a file that is not ours" has one home.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

use crate::error::{Error, Result};
use crate::store::types::StoreMeta;

/// `PRAGMA application_id` of a pareil store: the bytes "PARL". SQLite keeps it
/// in the file header (offset 68), so a foreign file is recognised before any
/// table is read.
pub const APPLICATION_ID: i32 = 0x5041_524C;

/// `PRAGMA user_version` written by this build. A store with a higher number
/// was made by a newer pareil and is refused rather than misread.
///
/// History: 1 — first release. 2 — `meta.generation` (a counter every write
/// transaction increments, so a derived index can tell it is stale) and an
/// index on `documents(ingest_order)` (dedup reads passages in that order).
/// 3 — vectors written as f16 (half the size; older f32 rows stay readable:
/// a blob's length says which) and `meta.store_id`, a random id that ties the
/// approximate index file beside the store to this store and no copy of
/// another. 4 — `passages.lang` and `passages.sketch`: the language guess
/// and lexical sketch ingest works out for `dups` ([`PassageTraits`],
/// NULL for passages stored before).
///
/// [`PassageTraits`]: crate::store::types::PassageTraits
pub const SCHEMA_VERSION: i64 = 4;

/// The oldest format this build opens. Older stores are refused with a fix;
/// stores from this version up to [`SCHEMA_VERSION`] are read as they are and
/// migrated in place, in one transaction, when opened for writing.
pub const OLDEST_SUPPORTED_VERSION: i64 = 1;

/// Migration steps: the SQL that takes a store from version `to - 1` to `to`.
/// Steps only add (tables, columns, indexes, meta keys), so a store still
/// at an older supported version reads correctly without them.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        2,
        "CREATE INDEX IF NOT EXISTS documents_ingest_order ON documents(ingest_order);
         INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0');",
    ),
    (
        3,
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(16))));",
    ),
    (
        4,
        "ALTER TABLE passages ADD COLUMN lang TEXT;
         ALTER TABLE passages ADD COLUMN sketch BLOB;",
    ),
];

/// The first version whose passages carry `lang` and `sketch`.
pub const TRAITS_VERSION: i64 = 4;

/// First 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Tables, in dependency order. Ids of documents, passages and chunks are
/// AUTOINCREMENT so an id a user saw (`pareil show 42`) never comes back
/// naming another passage after a re-ingest. `embeddings` has an integer key so that
/// `load_vectors` joins chunks to vectors by rowid; the string cache key is a
/// separate unique column. `passages(doc_id, idx)` and `chunks(passage_id,
/// idx)` are unique, and those indexes also serve the per-document deletes.
const DDL: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE documents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    path          TEXT NOT NULL UNIQUE,
    content_hash  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    mtime         INTEGER,
    date          TEXT,
    ingest_order  INTEGER NOT NULL,
    ingested_at   TEXT NOT NULL
);

CREATE TABLE passages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id       INTEGER NOT NULL REFERENCES documents(id),
    idx          INTEGER NOT NULL,
    line_start   INTEGER NOT NULL,
    line_end     INTEGER NOT NULL,
    byte_start   INTEGER NOT NULL,
    byte_end     INTEGER NOT NULL,
    text         TEXT NOT NULL,
    norm         TEXT NOT NULL,
    norm_hash    TEXT NOT NULL,
    duplicate_of INTEGER REFERENCES passages(id),
    dup_kind     TEXT,
    dup_score    REAL,
    UNIQUE (doc_id, idx)
);
CREATE INDEX passages_norm_hash ON passages(norm_hash);
CREATE INDEX passages_duplicate_of ON passages(duplicate_of) WHERE duplicate_of IS NOT NULL;

CREATE TABLE embeddings (
    id     INTEGER PRIMARY KEY,
    hash   TEXT NOT NULL UNIQUE,
    vector BLOB NOT NULL
);

CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    passage_id  INTEGER NOT NULL REFERENCES passages(id),
    idx         INTEGER NOT NULL,
    byte_start  INTEGER NOT NULL,
    byte_end    INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    emb_id      INTEGER NOT NULL REFERENCES embeddings(id),
    UNIQUE (passage_id, idx)
);
CREATE INDEX chunks_emb_id ON chunks(emb_id);
";

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// Zero bytes, or a SQLite database with no schema and no application id:
    /// nothing to lose, so it may be initialised.
    Blank,
    /// A pareil store with this schema version.
    Pareil { version: i64 },
    /// A SQLite database of some other program.
    Foreign {
        application_id: i32,
        tables: Vec<String>,
    },
}

/// Looks at the first 100 bytes without SQLite, so that a text file or random
/// bytes are refused before SQLite is ever pointed at them.
pub fn check_header(path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut header = Vec::with_capacity(100);
    file.by_ref()
        .take(100)
        .read_to_end(&mut header)
        .map_err(|e| Error::io(path, e))?;
    if header.is_empty() {
        return Ok(());
    }
    if header.len() < 100 || &header[..16] != SQLITE_MAGIC {
        return Err(Error::Store {
            path: path.to_path_buf(),
            reason: "is not a SQLite database, so not a pareil store; it was left untouched\n  \
                     fix: pass another --db path"
                .into(),
        });
    }
    let app_id = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(foreign_error(path, app_id, &[]));
    }
    Ok(())
}

/// Classifies an open database by its header pragmas and schema. Runs only
/// reads, so it is safe on a file that turns out not to be ours. The reads
/// share one read transaction: another process initialising the store
/// commits either before all of them or after, never in between (which
/// would show its tables without its application id).
pub fn classify(conn: &Connection, path: &Path) -> Result<FileKind> {
    let read = || -> rusqlite::Result<FileKind> {
        let application_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let tables = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(if application_id == APPLICATION_ID {
            FileKind::Pareil { version }
        } else if application_id == 0 && version == 0 && tables.is_empty() {
            FileKind::Blank
        } else {
            FileKind::Foreign {
                application_id,
                tables,
            }
        })
    };
    // A savepoint, not BEGIN: callers may already be in a transaction.
    let snapshot = || -> rusqlite::Result<FileKind> {
        conn.execute_batch("SAVEPOINT classify")?;
        let kind = read();
        conn.execute_batch("RELEASE classify")?;
        kind
    };
    snapshot().map_err(|e| unreadable(path, e))
}

/// Maps an SQLite failure while inspecting or opening into a user-facing error:
/// "not a database" and "corrupt" become `Error::Store`, the rest a backend cause.
pub fn unreadable(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => Error::Store {
            path: path.to_path_buf(),
            reason: format!(
                "is corrupt or not a SQLite database ({e}); it was left untouched\n  \
                 fix: pass another --db path, or restore the file from a backup"
            ),
        },
        _ => Error::from(e),
    }
}

/// The error for a SQLite file that belongs to something else.
pub fn foreign_error(path: &Path, application_id: i32, tables: &[String]) -> Error {
    let mut reason = format!(
        "is a SQLite database but not a pareil store (application_id {application_id:#010x}"
    );
    if !tables.is_empty() {
        let shown: Vec<&str> = tables.iter().take(8).map(String::as_str).collect();
        reason.push_str(&format!(", tables: {}", shown.join(", ")));
        if tables.len() > shown.len() {
            reason.push_str(", ...");
        }
    }
    reason.push_str("); it was left untouched\n  fix: pass another --db path");
    Error::Store {
        path: path.to_path_buf(),
        reason,
    }
}

/// Refuses schema versions this build cannot read.
pub fn check_version(path: &Path, version: i64) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::StoreMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "it uses store format version {version}, written by a newer pareil; this build \
                 reads version {SCHEMA_VERSION}\n  fix: upgrade pareil, or pass another --db path"
            ),
        });
    }
    if (1..OLDEST_SUPPORTED_VERSION).contains(&version) {
        return Err(Error::StoreMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "it uses store format version {version}; this build opens versions \
                 {OLDEST_SUPPORTED_VERSION} to {SCHEMA_VERSION}\n  fix: pass another --db path, \
                 or remove the file and run `pareil ingest` again to rebuild it"
            ),
        });
    }
    if version < 1 {
        // Our application id with no version cannot come from `initialise`,
        // which sets both in one transaction: something else edited the file.
        return Err(Error::Store {
            path: path.to_path_buf(),
            reason: format!(
                "has the pareil application id but store format version {version}, which no \
                 pareil writes; it was left untouched\n  fix: pass another --db path, or remove \
                 the file and run `pareil ingest` again"
            ),
        });
    }
    Ok(())
}

/// Creates the schema and records `meta`. Must run inside a write transaction
/// on a database that `classify` found `Blank`, so a crash leaves it blank.
pub fn initialise(conn: &Connection, meta: &StoreMeta) -> rusqlite::Result<()> {
    conn.execute_batch(DDL)?;
    write_meta(conn, meta)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    // A new store is the oldest format plus every migration: one path to
    // each version, so a migrated store and a new one cannot differ.
    conn.pragma_update(None, "user_version", OLDEST_SUPPORTED_VERSION)?;
    migrate(conn, OLDEST_SUPPORTED_VERSION)
}

/// Applies the migration steps after `from`, and records the new version.
/// Must run inside a write transaction, so a crash leaves the old version.
pub fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > from) {
        conn.execute_batch(sql)?;
        conn.pragma_update(None, "user_version", to)?;
    }
    Ok(())
}

fn write_meta(conn: &Connection, meta: &StoreMeta) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    let dim = meta.dim.to_string();
    for (k, v) in [
        ("model_id", meta.model_id.as_str()),
        ("revision", meta.revision.as_str()),
        ("dim", dim.as_str()),
        ("pooling", meta.pooling.as_str()),
        ("passage_prefix", meta.passage_prefix.as_str()),
        ("query_prefix", meta.query_prefix.as_str()),
        ("created_by", concat!("pareil ", env!("CARGO_PKG_VERSION"))),
    ] {
        stmt.execute((k, v))?;
    }
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) \
         VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        [],
    )?;
    Ok(())
}

/// Reads the recorded `StoreMeta`; a missing or malformed key means the file
/// was damaged or edited by hand.
pub fn read_meta(conn: &Connection, path: &Path) -> Result<StoreMeta> {
    let get = |key: &str| -> Result<String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| unreadable(path, e))?
            .ok_or_else(|| Error::Store {
                path: path.to_path_buf(),
                reason: format!(
                    "pareil store without a recorded {key}; the file is damaged\n  \
                     fix: remove it and run `pareil ingest` again, or pass another --db path"
                ),
            })
    };
    crate::store::recorded_meta(get, |reason| Error::Store {
        path: path.to_path_buf(),
        reason: format!("{reason}; the file is damaged"),
    })
}
