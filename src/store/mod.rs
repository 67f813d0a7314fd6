//! The passage store seam. [`Store`] is what the engine needs from a place
//! that keeps documents, passages, the chunks fed to the model, their vectors
//! (cached by the hash of the exact model input), duplicate marks and a few
//! metadata values — and that answers nearest-neighbour questions on its own
//! side ([`Store::nearest`], [`Store::neighbours`]), so a server-side vector
//! engine (PostgreSQL + pgvector) can search where the vectors live instead
//! of shipping them to the client.
//!
//! Implementations: [`sqlite::SqliteStore`] (one file, the default) and
//! [`postgres::PostgresStore`] (a PostgreSQL database with pgvector, shared
//! by several processes and machines). Every
//! implementation must pass the shared conformance suite in
//! `conformance.rs`. Backend errors reach callers as `#[source]` causes of
//! the library's [`Error`](crate::Error), never as backend-specific variants.
//!
//! The plain data crossing this boundary lives in `types.rs`.

pub(crate) mod clustered;
pub(crate) mod exact;
pub mod postgres;
pub mod sqlite;
pub(crate) mod subset;
mod types;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod proptests;

use std::collections::{HashMap, HashSet};

pub use postgres::{is_postgres_url, PostgresStore};
pub use sqlite::{SqliteStore, ANN_MIN_CHUNKS, APPLICATION_ID, SCHEMA_VERSION};
pub use types::{
    ChunkId, DedupRow, DocumentId, DocumentRow, DuplicateMark, MarkTarget, NewChunk, NewDocument,
    NewMark, NewPassage, PassageId, PassageRow, PassageTraits, ReplaceOutcome, SearchIndexStats,
    Stats, StoreMeta, VectorSet,
};

use crate::error::Result;

/// Where the store lives when no `--db` is given.
pub const DEFAULT_PATH: &str = "pareil.db";

/// Opens the store `db` names for writing, creating it when missing: a
/// `postgres://` URL names a PostgreSQL database, anything else a SQLite
/// file. Refuses a store made with another model setup.
pub fn create_or_open(db: &std::path::Path, meta: &StoreMeta) -> Result<Box<dyn Store>> {
    Ok(match db.to_str().filter(|d| is_postgres_url(d)) {
        Some(url) => Box::new(PostgresStore::create_or_open(url, meta)?),
        None => Box::new(SqliteStore::create_or_open(db, meta)?),
    })
}

/// Opens the existing store `db` names (a URL or a file; see
/// [`create_or_open`]), read-only unless `writable`.
pub fn open_existing(db: &std::path::Path, writable: bool) -> Result<Box<dyn Store>> {
    Ok(match db.to_str().filter(|d| is_postgres_url(d)) {
        Some(url) => Box::new(PostgresStore::open_existing(url, !writable)?),
        None => Box::new(SqliteStore::open_existing(db, !writable)?),
    })
}

/// Refuses a document carrying a vector whose length is not the store's
/// dimension (`location` names the store in the error).
pub(crate) fn check_dimensions(
    location: &std::path::Path,
    doc: &NewDocument,
    dim: usize,
) -> Result<()> {
    match doc.embeddings.iter().find(|(_, v)| v.len() != dim) {
        None => Ok(()),
        Some((key, v)) => Err(crate::error::Error::StoreMismatch {
            path: location.to_path_buf(),
            reason: format!(
                "vector for {key} of {} has {} values, the store holds {dim}-dimensional vectors",
                doc.path,
                v.len()
            ),
        }),
    }
}

/// The id the mark of passage `pi` of a document being written points at,
/// `earlier` holding the ids of the passages written before it: a stored
/// passage's id as given (each store checks it exists), or an earlier
/// passage's, which must be before `pi`.
pub(crate) fn marked_canonical(
    mark: &NewMark,
    pi: usize,
    earlier: &[PassageId],
) -> Result<PassageId> {
    match mark.canonical {
        MarkTarget::Stored(id) => Ok(id),
        MarkTarget::Earlier(i) if i < pi => Ok(earlier[i]),
        MarkTarget::Earlier(i) => Err(crate::error::Error::Usage(format!(
            "passage {pi} cannot be a duplicate of passage {i} of its document, which is not \
             before it"
        ))),
    }
}

/// The model settings a store recorded, read key by key with `get` (which
/// fails for a missing key); `damaged(reason)` makes the error for a value
/// that does not parse.
pub(crate) fn recorded_meta(
    get: impl Fn(&str) -> Result<String>,
    damaged: impl Fn(String) -> crate::error::Error,
) -> Result<StoreMeta> {
    let dim_text = get("dim")?;
    let dim = dim_text
        .parse::<usize>()
        .map_err(|_| damaged(format!("recorded dimension {dim_text:?} is not a number")))?;
    Ok(StoreMeta {
        model_id: get("model_id")?,
        revision: get("revision")?,
        dim,
        pooling: get("pooling")?,
        passage_prefix: get("passage_prefix")?,
        query_prefix: get("query_prefix")?,
    })
}

/// Lower-case hex SHA-256 of `data`: `norm_hash`, content hashes and
/// embedding cache keys, so all hashes look alike.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// A passage found by a vector search, with its best chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub passage: PassageId,
    /// Cosine of the passage's best-matching chunk (vectors are unit length).
    pub score: f32,
    /// Index of that chunk within its passage (0 unless the passage was windowed).
    pub chunk: usize,
}

/// Which passages a [`Store::nearest`] search may return.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Never return these passages (the query's own passage, say).
    pub exclude_passages: HashSet<PassageId>,
    /// Never return passages of these documents.
    pub exclude_documents: HashSet<DocumentId>,
    /// Only passages of these documents, when set.
    pub only_documents: Option<HashSet<DocumentId>>,
    /// Only passages scoring at least this much.
    pub min_score: Option<f32>,
}

impl Filter {
    /// Whether a passage of `doc` scoring `score` passes.
    pub fn admits(&self, passage: PassageId, doc: DocumentId, score: f32) -> bool {
        !self.exclude_passages.contains(&passage)
            && !self.exclude_documents.contains(&doc)
            && self
                .only_documents
                .as_ref()
                .is_none_or(|d| d.contains(&doc))
            && self.min_score.is_none_or(|m| score >= m)
    }
}

/// A place that keeps passages and their vectors. Reads take `&self`; each
/// write takes `&mut self` and is atomic (one transaction), so a killed
/// process leaves either the old or the new version of a document.
pub trait Store: Send {
    /// Where the store lives, for messages (a file path, or a URL without its password).
    fn location(&self) -> String;
    /// The model settings the store was created with.
    fn meta(&self) -> &StoreMeta;
    /// Fails with `StoreMismatch` naming each differing field when `wanted`
    /// is not what the store was made with.
    fn check_meta(&self, wanted: &StoreMeta) -> Result<()>;
    /// A stored metadata value (free-form keys next to the model settings).
    fn meta_value(&self, key: &str) -> Result<Option<String>>;
    /// Sets a metadata value.
    fn set_meta_value(&mut self, key: &str, value: &str) -> Result<()>;

    /// Every document, in first-ingest order.
    fn documents(&self) -> Result<Vec<DocumentRow>>;
    /// The document stored under exactly `path`.
    fn document_by_path(&self, path: &str) -> Result<Option<DocumentRow>>;
    /// Writes `doc` in one transaction, replacing the document stored under
    /// the same path (its passages, chunks and the duplicate marks pointing
    /// at them; see [`ReplaceOutcome::unlinked_duplicates`]). Passages'
    /// marks ([`NewPassage::duplicate_of`]) are written with them, and with
    /// [`NewDocument::exact_references`] an unmarked passage whose text is
    /// already stored becomes an exact reference
    /// ([`ReplaceOutcome::late_references`]).
    fn replace_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome>;
    /// Removes the document stored under exactly `path`; whether there was one.
    fn remove_document(&mut self, path: &str) -> Result<bool>;

    /// One passage with its document's path.
    fn passage(&self, id: PassageId) -> Result<Option<PassageRow>>;
    /// The passages with these ids that exist, in any order.
    fn passages_by_ids(&self, ids: &[PassageId]) -> Result<Vec<PassageRow>>;
    /// A document's passages in document order.
    fn passages_of(&self, doc: DocumentId) -> Result<Vec<PassageRow>>;
    /// The passage of the document at `path` (exact path) that covers `line`.
    fn passage_at(&self, path: &str, line: usize) -> Result<Option<PassageRow>>;
    /// Every passage's dedup record (stored normalised text, no passage
    /// text), in ingest order: by document `ingest_order`, then index.
    fn dedup_rows(&self) -> Result<Vec<DedupRow>>;
    /// The dedup records of the passages of `docs` only, in the same order.
    fn dedup_rows_of(&self, docs: &[DocumentId]) -> Result<Vec<DedupRow>>;
    /// The dedup records of the passages filed under a key of one of the
    /// key sets `keys` (one per text: [`PassageTraits::keys`]) and of every
    /// passage with the same normalised text as one of those, in ingest
    /// order — from a store that indexes the keys of every passage it holds
    /// (PostgreSQL, where workers then never hold the corpus); `None` from
    /// one that does not, or while some passage lacks them (the caller
    /// finds them in memory).
    fn lexical_neighbours(&self, keys: &[Vec<u32>]) -> Result<Option<Vec<DedupRow>>>;
    /// Each document's highest passage id (documents without passages are
    /// absent). Ids are never reused and a rewrite gives every passage a
    /// new one, so a changed or missing value means the document was
    /// rewritten or removed: how a process holding the passages in memory
    /// catches up with other writers without reading them all again.
    fn last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>>;
    /// Calls `visit` with each passage's stored sketch
    /// ([`PassageTraits::sketch`]; passages stored without one are skipped),
    /// in no particular order, streaming: a million are 450 MB.
    fn for_each_sketch(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()>;
    /// Up to `limit` passages stored without traits (by an older pareil),
    /// with ids above `after`, lowest first: `(id, text, normalised text)`.
    fn passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>>;
    /// Records traits worked out after the passages were stored (ids of
    /// passages since removed are passed over).
    fn set_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()>;

    /// Vectors already stored for any of `keys`; missing keys are absent.
    fn cached_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>>;
    /// A passage's own vector: the mean of its chunk vectors, renormalised;
    /// `None` when it has no chunks (stored as a duplicate reference).
    fn passage_vector(&self, id: PassageId) -> Result<Option<Vec<f32>>>;
    /// The `k` passages most similar to `query` (a unit vector) that pass
    /// `filter`, best first; ties broken by lower passage id.
    fn nearest(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Neighbour>>;
    /// For each of `passages`, its `k` most similar *other* passages scoring
    /// at least `floor` (best chunk pair per passage pair), best first.
    fn neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
    ) -> Result<Vec<Vec<Neighbour>>>;
    /// Like [`neighbours`](Self::neighbours), counting only the passages of
    /// `among` (the same candidates for every passage asked about): the
    /// semantic rule's search for passages' nearest neighbours *in other
    /// languages*, which same-language look-alikes would crowd out of a
    /// plain list. A store with an approximate index may search a small
    /// `among` exactly and walk its graph for a large one, so lists can
    /// differ from exact search as plain ones do.
    fn neighbours_among(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: &HashSet<PassageId>,
    ) -> Result<Vec<Vec<Neighbour>>>;
    /// Loads whatever searching needs (vectors into memory, say), so a
    /// caller can overlap it with loading the model. Optional.
    fn warm(&self) -> Result<()> {
        Ok(())
    }
    /// Notices writes made through other handles on the same store (another
    /// connection, another process) since the last call, so the next
    /// search sees them: a cache of vectors is dropped when the store
    /// changed. Optional for stores that cache nothing.
    fn refresh(&mut self) -> Result<()> {
        Ok(())
    }
    /// Answer `nearest` and `neighbours` by exact search even where the
    /// store keeps an approximate index (`--exact`). Optional.
    fn set_exact_search(&mut self, _exact: bool) {}
    /// Brings derived search structures (an approximate index) up to date
    /// after a run of writes; the engine calls it at the end of ingest and
    /// remove. Searches are complete without it, only slower. Optional.
    /// `note` hears about long work (building an index) before it starts.
    fn maintain(&mut self, _note: &mut dyn FnMut(&str)) -> Result<()> {
        Ok(())
    }

    /// Claims the document at `path` for this process's ingest, so that
    /// several ingest processes sharing one store (workers on different
    /// machines) never embed the same document twice: `false` when another
    /// process holds it — or, with `wait`, blocks until it is free. A claim
    /// ends with [`release`](Self::release) or
    /// [`release_claims`](Self::release_claims), or when the process ends,
    /// killed included, so a dead worker's document is taken over. A store
    /// that one process writes at a time need not do anything (the default).
    fn claim(&mut self, _path: &str, _wait: bool) -> Result<bool> {
        Ok(true)
    }
    /// Ends this process's claim on `path` (none held: nothing happens).
    fn release(&mut self, _path: &str) -> Result<()> {
        Ok(())
    }
    /// Ends every claim this process holds (the end of an ingest run, a
    /// failed one included).
    fn release_claims(&mut self) -> Result<()> {
        Ok(())
    }

    /// Gives a passage stored as a duplicate reference (no chunks) its own
    /// chunks and vectors and clears its mark, in one transaction.
    fn add_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()>;
    /// Marks passages as duplicates of canonical passages, in one transaction.
    fn set_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()>;
    /// Clears a passage's duplicate mark.
    fn clear_duplicate(&mut self, passage: PassageId) -> Result<()>;

    /// Counts, size and the recorded model.
    fn stats(&self) -> Result<Stats>;
    /// Deletes cached vectors no chunk uses; returns how many.
    fn vacuum_embeddings(&mut self) -> Result<usize>;
}
