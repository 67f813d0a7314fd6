//! The PostgreSQL + pgvector store: the same [`Store`] as the SQLite file,
//! kept in a database several processes (and machines) share. Selected by a
//! `postgres://` (or `postgresql://`) `--db`.
//!
//! Vectors live server-side as `halfvec` with an HNSW cosine index, and
//! nearest-neighbour questions are answered by the server
//! (`ORDER BY vector <=> $1`, see `search.rs`), so no process ever loads the
//! corpus's vectors. Each write is one transaction that also bumps
//! `pareil_meta.generation` (the row lock serialises writers, as SQLite's
//! `BEGIN IMMEDIATE` does).
//!
//! The client is the synchronous `postgres` crate behind a mutex: reads take
//! `&self` in the trait, and one connection answers one statement at a time.

mod read;
mod schema;
#[doc(hidden)]
pub mod scratch;
mod search;
#[cfg(test)]
mod tests;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use postgres::{Client, NoTls};

use crate::error::{Error, Result};
use crate::store::{
    DedupRow, DocumentId, DocumentRow, DuplicateMark, Filter, Neighbour, NewChunk, NewDocument,
    PassageId, PassageRow, PassageTraits, ReplaceOutcome, Stats, Store, StoreMeta,
};

pub use schema::SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::StoreBackend {
            source: Box::new(ServerError(e)),
        }
    }
}

/// A client error shown with what the server said (`postgres::Error`'s own
/// message is only "db error"); the client error stays the cause.
#[derive(Debug)]
struct ServerError(postgres::Error);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(f, "PostgreSQL: {} ({})", db.message(), db.code().code())?;
                if let Some(detail) = db.detail() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            None => write!(f, "PostgreSQL: {}", self.0),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `db` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_pass, host)) => {
            let user = user_pass.split_once(':').map_or(user_pass, |(u, _)| u);
            let hidden = if user_pass.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The synchronous client, which runs its own small tokio runtime: closing
/// it inside another runtime's worker (a server dropping an engine) would
/// panic, so there it is closed on a thread of its own. Remembers the search
/// settings last sent, so a search sends them only when they change.
struct Connection {
    client: Option<Client>,
    /// `(hnsw.ef_search, exact)` as last set on this session.
    search: Option<(usize, bool)>,
}

impl Connection {
    fn new(client: Client) -> Self {
        Connection {
            client: Some(client),
            search: None,
        }
    }
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("open until dropped")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(client)).join();
            }
        }
    }
}

/// A pareil store in a PostgreSQL database.
pub struct PostgresStore {
    client: Mutex<Connection>,
    /// The URL without its password.
    location: String,
    /// The URL as given (password included), for the extra connections of
    /// a parallel neighbour search; never shown.
    url: String,
    meta: StoreMeta,
    read_only: bool,
    /// Schema version 2 or later: passages carry `lang` and `sketch`.
    has_traits: bool,
    /// Schema version 4 or later: passages carry their lexical keys.
    has_keys: bool,
    /// `--exact`: rank every chunk (a sequential scan) instead of walking
    /// the HNSW index.
    exact_search: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Advisory-lock namespaces (the first key of PostgreSQL's two-key form;
/// the value spells "PARL" plus one), so pareil's locks never meet another
/// program's single-key ones.
const CREATE_LOCK: i32 = 0x5041_524C;
/// Claims of documents by ingest workers: (CLAIM_LOCKS, hash of the path).
const CLAIM_LOCKS: i32 = 0x5041_524D;

/// The second key of a document's claim: 32 bits of the path's SHA-256. Two
/// paths that share it only make one worker wait for the other.
fn claim_key(path: &str) -> i32 {
    let hex = crate::store::sha256_hex(path.as_bytes());
    u32::from_str_radix(&hex[..8], 16).unwrap_or(0) as i32
}

impl PostgresStore {
    /// Connects to `url` and opens the store there for writing, creating the
    /// schema when the database (its current schema) holds none of pareil's
    /// tables. Refuses another program's tables, a newer schema, and a store
    /// made with another model setup, without writing anything.
    pub fn create_or_open(url: &str, meta: &StoreMeta) -> Result<PostgresStore> {
        if meta.dim == 0 {
            return Err(Error::Usage("store dimension must be at least 1".into()));
        }
        let location = redact(url);
        let mut client = connect(url, &location)?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&CREATE_LOCK])?;
        match schema::classify(&mut tx)? {
            schema::DatabaseKind::Blank => schema::initialise(&mut tx, meta)?,
            schema::DatabaseKind::Pareil { version } => {
                schema::check_version(&location, version)?;
                schema::migrate(&mut tx, version)?;
            }
            schema::DatabaseKind::Foreign { tables } => {
                return Err(schema::foreign_error(&location, &tables))
            }
        }
        let stored = schema::read_meta(&mut tx, &location)?;
        tx.commit()?;
        let store = PostgresStore {
            client: Mutex::new(Connection::new(client)),
            location,
            url: url.to_string(),
            meta: stored,
            read_only: false,
            has_traits: true,
            has_keys: true,
            exact_search: false,
        };
        store.check_meta(meta)?;
        Ok(store)
    }

    /// Opens an existing store; never creates one. With `read_only` every
    /// write is refused (and the session is read-only on the server too).
    pub fn open_existing(url: &str, read_only: bool) -> Result<PostgresStore> {
        let location = redact(url);
        let mut client = connect(url, &location)?;
        let version = match schema::classify(&mut client)? {
            schema::DatabaseKind::Pareil { version } => version,
            schema::DatabaseKind::Blank => {
                return Err(Error::NotFound(format!(
                    "no pareil store in {location}\n  fix: run `pareil ingest --db {location} \
                     DIR` first"
                )))
            }
            schema::DatabaseKind::Foreign { tables } => {
                return Err(schema::foreign_error(&location, &tables))
            }
        };
        schema::check_version(&location, version)?;
        if read_only {
            client.batch_execute("SET default_transaction_read_only = on")?;
        } else if version < schema::SCHEMA_VERSION {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&CREATE_LOCK])?;
            if let schema::DatabaseKind::Pareil { version } = schema::classify(&mut tx)? {
                schema::migrate(&mut tx, version)?;
            }
            tx.commit()?;
        }
        let meta = schema::read_meta(&mut client, &location)?;
        Ok(PostgresStore {
            client: Mutex::new(Connection::new(client)),
            location,
            url: url.to_string(),
            meta,
            read_only,
            // Migrated above unless read-only.
            has_traits: !read_only || version >= schema::TRAITS_VERSION,
            has_keys: !read_only || version >= schema::KEYS_VERSION,
            exact_search: false,
        })
    }

    /// The connection, for one statement or transaction at a time.
    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (its
        // transaction object rolls back on drop), so a poisoned lock is taken.
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::Store {
                path: self.location.clone().into(),
                reason: "opened read-only; this command does not write".into(),
            });
        }
        Ok(())
    }
}

/// Connects, turning "connection refused" and friends into an error that
/// names the server and the fix.
pub(super) fn connect(url: &str, location: &str) -> Result<Client> {
    Client::connect(url, NoTls).map_err(|e| Error::Store {
        path: location.into(),
        reason: format!(
            "cannot connect to PostgreSQL: {e}\n  fix: check that the server is running and the \
             URL (user, host, port, database) is right"
        ),
    })
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn meta(&self) -> &StoreMeta {
        &self.meta
    }
    fn check_meta(&self, wanted: &StoreMeta) -> Result<()> {
        let diffs = self.meta.differences(wanted);
        if diffs.is_empty() {
            return Ok(());
        }
        Err(Error::StoreMismatch {
            path: self.location.clone().into(),
            reason: format!(
                "it was built with another model setup:\n    {}\n  fix: pass another --db for \
                 this model",
                diffs.join("\n    ")
            ),
        })
    }
    fn meta_value(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_opt("SELECT value FROM pareil_meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }
    fn set_meta_value(&mut self, key: &str, value: &str) -> Result<()> {
        self.writable()?;
        self.db().execute(
            "INSERT INTO pareil_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }
    fn documents(&self) -> Result<Vec<DocumentRow>> {
        self.read_documents()
    }
    fn document_by_path(&self, path: &str) -> Result<Option<DocumentRow>> {
        self.read_document_by_path(path)
    }
    fn replace_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome> {
        self.write_document(doc)
    }
    fn remove_document(&mut self, path: &str) -> Result<bool> {
        self.delete_document_at(path)
    }
    fn passage(&self, id: PassageId) -> Result<Option<PassageRow>> {
        Ok(self.read_passages("p.id = $1", &[&id])?.pop())
    }
    fn passages_by_ids(&self, ids: &[PassageId]) -> Result<Vec<PassageRow>> {
        self.read_passages("p.id = ANY($1)", &[&ids])
    }
    fn passages_of(&self, doc: DocumentId) -> Result<Vec<PassageRow>> {
        self.read_passages("p.doc_id = $1", &[&doc])
    }
    fn passage_at(&self, path: &str, line: usize) -> Result<Option<PassageRow>> {
        let line = line as i64;
        Ok(self
            .read_passages(
                "d.path = $1 AND p.line_start <= $2 AND p.line_end >= $2",
                &[&path, &line],
            )?
            .into_iter()
            .next())
    }
    fn dedup_rows(&self) -> Result<Vec<DedupRow>> {
        self.read_dedup_rows(None)
    }
    fn dedup_rows_of(&self, docs: &[DocumentId]) -> Result<Vec<DedupRow>> {
        self.read_dedup_rows(Some(docs))
    }
    fn lexical_neighbours(&self, keys: &[Vec<u32>]) -> Result<Option<Vec<DedupRow>>> {
        self.read_lexical_neighbours(keys)
    }
    fn last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>> {
        self.read_last_passage_ids()
    }
    fn for_each_sketch(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()> {
        self.read_sketches(visit)
    }
    fn passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>> {
        self.read_passages_without_traits(after, limit)
    }
    fn set_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()> {
        self.write_traits(traits)
    }
    fn cached_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        self.read_cached_embeddings(keys)
    }
    fn passage_vector(&self, id: PassageId) -> Result<Option<Vec<f32>>> {
        self.read_passage_vector(id)
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
    fn set_exact_search(&mut self, exact: bool) {
        self.exact_search = exact;
    }
    /// A session-level advisory lock per document: held by this
    /// connection, so it ends when the process does, however it ends.
    fn claim(&mut self, path: &str, wait: bool) -> Result<bool> {
        let key = claim_key(path);
        let mut db = self.db();
        if wait {
            db.execute("SELECT pg_advisory_lock($1, $2)", &[&CLAIM_LOCKS, &key])?;
            return Ok(true);
        }
        let row = db.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&CLAIM_LOCKS, &key])?;
        Ok(row.get(0))
    }
    fn release(&mut self, path: &str) -> Result<()> {
        let key = claim_key(path);
        // Each claim is taken once (the engine never claims a held path
        // again), so one unlock ends it.
        self.db()
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&CLAIM_LOCKS, &key])?;
        Ok(())
    }
    fn release_claims(&mut self) -> Result<()> {
        self.db().batch_execute("SELECT pg_advisory_unlock_all()")?;
        Ok(())
    }
    fn add_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()> {
        self.write_chunks(passage, chunks, embeddings)
    }
    fn set_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()> {
        self.write_duplicates(marks)
    }
    fn clear_duplicate(&mut self, passage: PassageId) -> Result<()> {
        self.write_unmark(passage)
    }
    fn stats(&self) -> Result<Stats> {
        self.read_stats()
    }
    fn vacuum_embeddings(&mut self) -> Result<usize> {
        self.delete_orphan_embeddings()
    }
}
