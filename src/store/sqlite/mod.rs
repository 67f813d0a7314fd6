//! The passage store: one SQLite file (default `./pareil.db`) holding
//! documents, their passages, the chunks fed to the model, and a cache of
//! vectors keyed by the hash of the exact model input. This file owns opening:
//! deciding whether a path may be created, refusing files that are not ours or
//! were made with another model, and the connection settings (WAL, busy
//! timeout). Reads are in `read.rs`, writes in `write.rs`, the on-disk format
//! in `schema.rs`.
//!
//! Durability: WAL with `synchronous=NORMAL`, so a killed process never leaves
//! a half-written document (each document is one transaction); a power cut may
//! lose the last few committed documents, never corrupt the file.

mod ann;
mod places;
mod read;
mod schema;
mod search;
mod write;

#[cfg(test)]
mod ann_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::store::{
    DedupRow, DocumentId, DocumentRow, DuplicateMark, Filter, Neighbour, NewChunk, NewDocument,
    PassageId, PassageRow, PassageTraits, ReplaceOutcome, Stats, Store, StoreMeta,
};
pub use schema::{APPLICATION_ID, OLDEST_SUPPORTED_VERSION, SCHEMA_VERSION};
use search::Searcher;
pub use search::{IndexUpkeep, ANN_MIN_CHUNKS};

use crate::error::{Error, Result};
use schema::FileKind;

/// How long a writer waits for another process's transaction before failing.
/// Long, because a concurrent ingest holds the lock for one whole document.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound of the memory map used for reads (see `open_connection`).
const MMAP_SIZE: i64 = 1 << 30;

/// An open store. Reads take `&self`; writes take `&mut self` because each is a
/// transaction on the one connection.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    meta: StoreMeta,
    read_only: bool,
    /// What answers searches (all vectors in memory, or the approximate
    /// index and the exact tail), loaded on the first search and kept
    /// current by this store's own writes.
    search: OnceCell<Searcher>,
    /// Search exactly even where an approximate index exists (`--exact`).
    exact_search: bool,
    /// `meta.generation` at the last [`Store::refresh`].
    seen_generation: Option<i64>,
    /// Chunks from which `maintain_index` builds an index.
    ann_min_chunks: usize,
    /// Index sizes above which the graph is built with the wide insertion
    /// list ([`ann::SMALL_GRAPH`]; tests lower it).
    small_graph: usize,
    /// Passages asked about at once from which `neighbours` clusters the
    /// stored vectors rather than walking the index for each
    /// (`search::CLUSTERED_MIN_QUERIES`; tests lower it).
    clustered_min: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl SqliteStore {
    /// Opens the store at `path` for writing, creating it when the path does
    /// not exist (or is an empty file). Refuses, without writing anything, a
    /// file that is not a pareil store, a store of a newer format, and a store
    /// whose recorded model differs from `meta` in any field.
    pub fn create_or_open(path: impl AsRef<Path>, meta: &StoreMeta) -> Result<SqliteStore> {
        let path = path.as_ref();
        if meta.dim == 0 {
            return Err(Error::Usage("store dimension must be at least 1".into()));
        }
        let exists = match std::fs::metadata(path) {
            Ok(md) if md.is_dir() => return Err(is_dir(path)),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(path, e)),
        };
        if exists {
            // Inspect on a read-only handle first, so a foreign or broken
            // file, or a store of another model, is refused before a writable
            // connection ever touches it.
            let (ro, kind) = inspect(path)?;
            refuse_unless_ours_or_blank(&kind, path)?;
            if let FileKind::Pareil { .. } = kind {
                check_meta(path, &schema::read_meta(&ro, path)?, meta)?;
            }
        } else if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(Error::Store {
                    path: path.to_path_buf(),
                    reason: format!(
                        "cannot be created: directory {} does not exist",
                        parent.display()
                    ),
                });
            }
        }

        refuse_unwritable(path)?;
        let mut conn = open_connection(path, false)?;
        // Decide and initialise under the write lock: if two first ingests
        // race, the second sees the first one's schema instead of a blank file.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| schema::unreadable(path, e))?;
        match schema::classify(&tx, path)? {
            FileKind::Blank => schema::initialise(&tx, meta)?,
            FileKind::Pareil { version } => {
                schema::check_version(path, version)?;
                schema::migrate(&tx, version)?;
            }
            kind @ FileKind::Foreign { .. } => {
                // Dropping `tx` rolls back; nothing was written.
                return Err(refuse_unless_ours_or_blank(&kind, path).unwrap_err());
            }
        }
        tx.commit()?;
        enable_wal(&conn)?;

        let stored = schema::read_meta(&conn, path)?;
        let store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            meta: stored,
            read_only: false,
            search: OnceCell::new(),
            exact_search: false,
            seen_generation: None,
            ann_min_chunks: ANN_MIN_CHUNKS,
            small_graph: ann::SMALL_GRAPH,
            clustered_min: search::clustered_min_queries(),
        };
        store.check_meta(meta)?;
        Ok(store)
    }

    /// Opens an existing store; never creates one. With `read_only` the file
    /// is opened with SQLite's read-only flag and every write fails; a store
    /// the user may read but not write (file or directory read-only) opens
    /// too (see `open_read_only`). Without it, a file or directory that
    /// cannot be written is refused up front, with the cause and the fix.
    pub fn open_existing(path: impl AsRef<Path>, read_only: bool) -> Result<SqliteStore> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(md) if md.is_dir() => return Err(is_dir(path)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Store {
                    path: path.to_path_buf(),
                    reason: "no store here\n  fix: run `pareil ingest` first, or pass the --db \
                             of an existing store"
                        .into(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        let version = match inspect(path)?.1 {
            FileKind::Pareil { version } => version,
            FileKind::Blank => {
                return Err(Error::Store {
                    path: path.to_path_buf(),
                    reason: "is an empty database, not a pareil store yet\n  fix: run `pareil \
                             ingest` first"
                        .into(),
                });
            }
            kind => return Err(refuse_unless_ours_or_blank(&kind, path).unwrap_err()),
        };
        schema::check_version(path, version)?;
        if !read_only {
            refuse_unwritable(path)?;
        }
        let mut conn = open_connection(path, read_only)?;
        if !read_only {
            if version < SCHEMA_VERSION {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
                schema::migrate(&tx, now)?;
                tx.commit()?;
            }
            enable_wal(&conn)?;
        }
        let meta = schema::read_meta(&conn, path)?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            meta,
            read_only,
            search: OnceCell::new(),
            exact_search: false,
            seen_generation: None,
            ann_min_chunks: ANN_MIN_CHUNKS,
            small_graph: ann::SMALL_GRAPH,
            clustered_min: search::clustered_min_queries(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(())` when it says "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if lines == ["ok"] {
            Ok(())
        } else {
            Err(Error::Store {
                path: self.path.clone(),
                reason: format!("integrity check failed: {}", lines.join("; ")),
            })
        }
    }

    /// Fails early, with a clear message, on a store opened read-only.
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::Store {
                path: self.path.clone(),
                reason: "was opened read-only and cannot be written".into(),
            });
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Sets the number of chunks from which `maintain_index` builds an
    /// approximate index (default [`ANN_MIN_CHUNKS`]); tests and benchmarks
    /// lower it to exercise the index on small stores.
    pub fn set_ann_min_chunks(&mut self, chunks: usize) {
        self.ann_min_chunks = chunks;
    }

    /// Sets the index size above which the graph is built with the wide
    /// insertion list, and a narrow graph growing past it is rebuilt
    /// (default 250,000); tests lower it.
    #[cfg(test)]
    pub(crate) fn set_small_graph(&mut self, vectors: usize) {
        self.small_graph = vectors;
    }

    /// Sets how many passages asked about at once take the clustered
    /// search (default 50,000); tests lower it.
    #[cfg(test)]
    pub(crate) fn set_clustered_min_queries(&mut self, passages: usize) {
        self.clustered_min = passages;
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn meta(&self) -> &StoreMeta {
        &self.meta
    }
    fn check_meta(&self, wanted: &StoreMeta) -> Result<()> {
        check_meta(&self.path, &self.meta, wanted)
    }
    fn meta_value(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }
    fn set_meta_value(&mut self, key: &str, value: &str) -> Result<()> {
        self.writable()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            [key, value],
        )?;
        Ok(())
    }
    fn documents(&self) -> Result<Vec<DocumentRow>> {
        SqliteStore::documents(self)
    }
    fn document_by_path(&self, path: &str) -> Result<Option<DocumentRow>> {
        SqliteStore::document_by_path(self, path)
    }
    fn replace_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome> {
        SqliteStore::replace_document(self, doc)
    }
    fn remove_document(&mut self, path: &str) -> Result<bool> {
        SqliteStore::remove_document(self, path)
    }
    fn passage(&self, id: PassageId) -> Result<Option<PassageRow>> {
        SqliteStore::passage(self, id)
    }
    fn passages_by_ids(&self, ids: &[PassageId]) -> Result<Vec<PassageRow>> {
        SqliteStore::passages_by_ids(self, ids)
    }
    fn passages_of(&self, doc: DocumentId) -> Result<Vec<PassageRow>> {
        SqliteStore::passages_of(self, doc)
    }
    fn passage_at(&self, path: &str, line: usize) -> Result<Option<PassageRow>> {
        SqliteStore::passage_at(self, path, line)
    }
    fn dedup_rows(&self) -> Result<Vec<DedupRow>> {
        SqliteStore::dedup_rows(self)
    }
    fn dedup_rows_of(&self, docs: &[DocumentId]) -> Result<Vec<DedupRow>> {
        SqliteStore::dedup_rows_of(self, docs)
    }
    /// Not indexed here: a file's reader holds the corpus anyway (and a
    /// key table would take ~100 rows a passage).
    fn lexical_neighbours(&self, _keys: &[Vec<u32>]) -> Result<Option<Vec<DedupRow>>> {
        Ok(None)
    }
    fn last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>> {
        SqliteStore::last_passage_ids(self)
    }
    fn for_each_sketch(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()> {
        SqliteStore::for_each_sketch(self, visit)
    }
    fn passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>> {
        SqliteStore::passages_without_traits(self, after, limit)
    }
    fn set_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()> {
        SqliteStore::set_traits(self, traits)
    }
    fn cached_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        SqliteStore::cached_embeddings(self, keys)
    }
    fn passage_vector(&self, id: PassageId) -> Result<Option<Vec<f32>>> {
        Ok(crate::store::exact::mean_unit(
            &self.vectors_of_passage(id)?,
        ))
    }
    fn nearest(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Neighbour>> {
        self.search_nearest(query, k, filter)
    }
    fn neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.search_neighbours(passages, k, floor, None)
    }
    fn neighbours_among(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: &HashSet<PassageId>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.search_neighbours(passages, k, floor, Some(among))
    }
    fn warm(&self) -> Result<()> {
        self.searcher().map(|_| ())
    }
    fn refresh(&mut self) -> Result<()> {
        let now: i64 = self
            .meta_value("generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        if self.seen_generation.is_some_and(|seen| seen != now) {
            self.search = OnceCell::new();
        }
        self.seen_generation = Some(now);
        Ok(())
    }
    fn set_exact_search(&mut self, exact: bool) {
        if exact != self.exact_search {
            self.exact_search = exact;
            self.search = OnceCell::new();
        }
    }
    fn maintain(&mut self, note: &mut dyn FnMut(&str)) -> Result<()> {
        self.maintain_index(note).map(|_| ())
    }
    fn add_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()> {
        SqliteStore::add_chunks(self, passage, chunks, embeddings)
    }
    fn set_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()> {
        SqliteStore::set_duplicates(self, marks)
    }
    fn clear_duplicate(&mut self, passage: PassageId) -> Result<()> {
        SqliteStore::clear_duplicate(self, passage)
    }
    fn stats(&self) -> Result<Stats> {
        SqliteStore::stats(self)
    }
    fn vacuum_embeddings(&mut self) -> Result<usize> {
        SqliteStore::vacuum_embeddings(self)
    }
}

fn is_dir(path: &Path) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        reason: "is a directory, not a store file\n  fix: pass a file path to --db".into(),
    }
}

fn check_meta(path: &Path, stored: &StoreMeta, wanted: &StoreMeta) -> Result<()> {
    let diffs = stored.differences(wanted);
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::StoreMismatch {
        path: path.to_path_buf(),
        reason: format!(
            "it was built with another model setup:\n    {}\n  fix: pass another --db for this \
             model, or remove {} and run `pareil ingest` again to rebuild it",
            diffs.join("\n    "),
            path.display()
        ),
    })
}

/// Header check, then a read-only SQLite handle to classify the file. The
/// handle is returned so the caller can read the recorded meta through it.
fn inspect(path: &Path) -> Result<(Connection, FileKind)> {
    schema::check_header(path)?;
    let conn = open_read_only(path)?;
    let kind = schema::classify(&conn, path)?;
    Ok((conn, kind))
}

fn refuse_unless_ours_or_blank(kind: &FileKind, path: &Path) -> Result<()> {
    match kind {
        FileKind::Blank => Ok(()),
        FileKind::Pareil { version } => schema::check_version(path, *version),
        FileKind::Foreign {
            application_id,
            tables,
        } => Err(schema::foreign_error(path, *application_id, tables)),
    }
}

/// Opens the connection used for the store's lifetime. No URI flag: a path
/// that happens to start with `file:` is still a plain path.
fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let conn = if read_only {
        open_read_only(path)?
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| cannot_open(path, e, "written"))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn
    };
    conn.pragma_update(None, "foreign_keys", true)?;
    // Memory-map reads: `load_vectors` reads every vector page on each run,
    // and mapping skips a copy into SQLite's small page cache. Address space
    // only; SQLite falls back to plain reads where mmap is unavailable.
    // Not when an approximate index stands beside the store: vectors are
    // then not read in bulk, and the mapped pages of a large store (a
    // gigabyte for `dups` at 1M passages) would count in the process's memory.
    let mmap = if ann::path_for(path).exists() {
        0
    } else {
        MMAP_SIZE
    };
    conn.pragma_update(None, "mmap_size", mmap)?;
    Ok(conn)
}

/// Switches an (already verified) pareil store to WAL, which persists in the
/// file, so readers never block the one writer. `synchronous=NORMAL` is
/// per-connection; in WAL it is still crash-safe for a killed process.
/// The switch needs the file to itself and SQLite answers "busy" at once
/// instead of waiting (two first ingests racing): retried until the busy
/// timeout.
fn enable_wal(conn: &Connection) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.map(drop)?,
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// A read-only connection that can really read. A WAL store needs its `-shm`
/// (and `-wal`) file: SQLite creates it beside the store, so with the
/// directory read-only, or the file another user's, the first read fails
/// with "attempt to write a readonly database" or "unable to open database
/// file". Then the store is opened `immutable` (no shared memory, no
/// locks), which is exact when no `-wal` file holds committed pages not
/// yet copied into the store: a writer that could have left one would have
/// left its `-shm` too, and the first attempt would have used them.
fn open_read_only(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags);
    let probe = conn.and_then(|c| {
        c.busy_timeout(BUSY_TIMEOUT)?;
        c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(c)
    });
    let err = match probe {
        Ok(conn) => return Ok(conn),
        Err(e) if cannot_share(&e) && !has_pending_wal(path) => e,
        Err(e) if cannot_share(&e) => return Err(cannot_open(path, e, "read")),
        Err(e) => return Err(schema::unreadable(path, e)),
    };
    tracing::debug!(path = %path.display(), %err, "read-only open failed; opening immutable");
    open_immutable(path).map_err(|_| cannot_open(path, err, "read"))
}

/// Opens `path` with SQLite's `immutable` flag (through a `file:` URI, so
/// the path is percent-encoded: `?`, `#` and `%` in a name stay a name).
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let uri = format!("file:{}?immutable=1", uri_path(&absolute));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

/// `path` as the path of a `file:` URI: every byte but unreserved ones and
/// `/` percent-encoded.
fn uri_path(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().replace('\\', "/").into_bytes();
    let mut out = String::with_capacity(bytes.len());
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SQLite's answers when it may not create or write a file it needs.
fn cannot_share(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied
        )
    )
}

/// Whether a `-wal` file beside `path` holds pages (a reader that ignores
/// it would see an older store).
fn has_pending_wal(path: &Path) -> bool {
    std::fs::metadata(sidecar(path, "-wal")).is_ok_and(|m| m.len() > 0)
}

/// `path` with `suffix` appended to its file name (`pareil.db-wal`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses, before any writable connection, a store that cannot be written:
/// a file on a virtual filesystem (`/proc`), not a regular file, read-only,
/// or in a directory where SQLite cannot create its journal files.
fn refuse_unwritable(path: &Path) -> Result<()> {
    match write_problem(path) {
        Some(reason) => Err(Error::Store {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Why `path` cannot hold a writable store, with the fix; `None` if it can.
fn write_problem(path: &Path) -> Option<String> {
    let dir = parent_dir(path);
    if let Some(fs) = virtual_fs(dir) {
        return Some(format!(
            "cannot be written: {} is on the {fs} virtual filesystem, not a regular one\n  \
             fix: pass a --db on a regular filesystem (e.g. in your home directory)",
            dir.display()
        ));
    }
    if let Ok(md) = std::fs::metadata(path) {
        if !md.is_file() {
            return Some(
                "is not a regular file\n  fix: pass a --db path to a regular file".to_string(),
            );
        }
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(path) {
            return Some(format!(
                "cannot be written ({e})\n  fix: make it writable (`chmod u+w {}`), or pass \
                 another --db; read-only commands (similar, dups, stats) work on it as it is",
                path.display()
            ));
        }
    }
    let probe = tempfile::Builder::new()
        .prefix(".pareil-probe-")
        .tempfile_in(dir);
    if let Err(e) = probe {
        // SQLite can live without creating files when its journal files are
        // already there, writable.
        let sidecars_writable = ["-wal", "-shm"].iter().all(|s| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(sidecar(path, s))
                .is_ok()
        });
        if !sidecars_writable {
            let name = path
                .file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy();
            return Some(format!(
                "cannot be written: directory {} is not writable ({e}), and SQLite creates \
                 its journal files ({name}-wal, {name}-shm) beside the store\n  fix: make \
                 the directory writable, or pass a --db in a writable directory; read-only \
                 commands (similar, dups, stats) work on an existing store as it is",
                dir.display()
            ));
        }
    }
    None
}

/// The SQLite error for a store that cannot be opened for `what` ("read"
/// or "written"), with the cause found on the filesystem and a fix.
fn cannot_open(path: &Path, e: rusqlite::Error, what: &str) -> Error {
    if !cannot_share(&e) {
        return schema::unreadable(path, e);
    }
    let reason = match (what, write_problem(path)) {
        ("written", Some(reason)) => reason,
        _ => format!(
            "cannot be {what} ({e}): SQLite needs to create or open files beside it in {}\n  \
             fix: check the permissions of the file and its directory, or pass another --db",
            parent_dir(path).display()
        ),
    };
    Error::Store {
        path: path.to_path_buf(),
        reason,
    }
}

/// The name of the virtual filesystem (`proc`, `sysfs`, ...) `dir` is on,
/// where no store can be created.
#[cfg(target_os = "linux")]
fn virtual_fs(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is NUL-terminated and `st` is a valid place for statfs to
    // write; all-zero bytes are a valid `statfs`.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    match st.f_type {
        libc::PROC_SUPER_MAGIC => Some("proc"),
        libc::SYSFS_MAGIC => Some("sysfs"),
        libc::CGROUP2_SUPER_MAGIC => Some("cgroup2"),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn virtual_fs(_dir: &Path) -> Option<&'static str> {
    None
}
