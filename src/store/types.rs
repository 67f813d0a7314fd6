//! Plain data types that cross the store's boundary: what a caller hands in
//! (`StoreMeta`, `NewDocument` and its parts, `DuplicateMark`) and what the
//! store hands back (rows, `VectorSet`, `Stats`). No SQL lives here, so the
//! rest of the program can use these types without knowing the schema.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Row id of a document.
pub type DocumentId = i64;
/// Row id of a passage; also what `duplicate_of` points at.
pub type PassageId = i64;
/// Row id of a chunk (one model input; a passage has one or more).
pub type ChunkId = i64;

/// What the vectors in a store were made with. Two stores are only comparable
/// when every field matches, because each field changes the vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Model identifier, e.g. `intfloat/multilingual-e5-small`.
    pub model_id: String,
    /// Model revision (commit or tag) the weights came from.
    pub revision: String,
    /// Vector dimension; every stored vector has exactly this many floats.
    pub dim: usize,
    /// Pooling used to turn token states into one vector, e.g. `mean`.
    pub pooling: String,
    /// Prefix put before passage text before embedding, e.g. `passage: `.
    pub passage_prefix: String,
    /// Prefix put before query text before embedding, e.g. `query: `.
    pub query_prefix: String,
}

impl StoreMeta {
    /// Describes each field that differs, as `field: store has A, this run uses B`;
    /// empty when the two are compatible. `self` is the store's side.
    pub fn differences(&self, wanted: &StoreMeta) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |name: &str, have: String, want: String| {
            if have != want {
                out.push(format!(
                    "{name}: store has {have:?}, this run uses {want:?}"
                ));
            }
        };
        cmp("model", self.model_id.clone(), wanted.model_id.clone());
        cmp("revision", self.revision.clone(), wanted.revision.clone());
        cmp("dimension", self.dim.to_string(), wanted.dim.to_string());
        cmp("pooling", self.pooling.clone(), wanted.pooling.clone());
        cmp(
            "passage prefix",
            self.passage_prefix.clone(),
            wanted.passage_prefix.clone(),
        );
        cmp(
            "query prefix",
            self.query_prefix.clone(),
            wanted.query_prefix.clone(),
        );
        out
    }
}

/// One document to write, with everything derived from it. `replace_document`
/// writes all of it in one transaction.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    /// Path as the caller wants it shown and matched (the store does not
    /// canonicalise it); unique in the store.
    pub path: String,
    /// Hash of the file's bytes, compared on the next ingest to skip unchanged files.
    pub content_hash: String,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch, if known.
    pub mtime: Option<i64>,
    /// A date the caller attached to the document (free-form text, e.g. ISO 8601).
    pub date: Option<String>,
    /// Passages in document order; a passage's index is its position here.
    pub passages: Vec<NewPassage>,
    /// Vectors computed for this document, keyed by embedding cache key. Keys
    /// already in the store are skipped; every chunk's key must be either here
    /// or already stored.
    pub embeddings: HashMap<String, Vec<f32>>,
    /// `--on-duplicate skip`: a passage written without a mark whose
    /// normalised text a stored passage already holds as its own canonical
    /// copy becomes an `exact` reference to that copy (no chunks), decided
    /// inside the write. The caller marks what it found before writing; this
    /// is the store's own guarantee for what it could not see — another
    /// writer storing the same text at the same moment — so one text never
    /// ends with two canonical copies (PostgreSQL holds one row per text
    /// under a unique key, `passage_texts`).
    pub exact_references: bool,
}

/// One passage of a `NewDocument`.
#[derive(Debug, Clone, Default)]
pub struct NewPassage {
    /// First line, 1-based, inclusive.
    pub line_start: usize,
    /// Last line, 1-based, inclusive.
    pub line_end: usize,
    /// Byte offset of the passage in the file.
    pub byte_start: usize,
    /// Byte offset just past the passage in the file.
    pub byte_end: usize,
    /// The passage text as shown to users.
    pub text: String,
    /// Normalised text for lexical dedup; the store hashes it into `norm_hash`.
    pub norm: String,
    /// Model inputs cut from this passage, in order (at least one for a
    /// passage that should be searchable).
    pub chunks: Vec<NewChunk>,
    /// What `dups` will need of it, worked out now (`None`: left to `dups`).
    pub traits: Option<PassageTraits>,
    /// Written as a duplicate of another passage (its `duplicate_of` mark),
    /// in the same transaction as the passage itself.
    pub duplicate_of: Option<NewMark>,
}

/// The duplicate mark of a passage being written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMark {
    pub canonical: MarkTarget,
    /// e.g. `exact`, `near`: the caller's vocabulary, as in [`DuplicateMark`].
    pub kind: String,
    pub score: f64,
}

/// Where a passage being written points as a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkTarget {
    /// A passage already stored (of another document).
    Stored(PassageId),
    /// An earlier passage of the same document, by index.
    Earlier(usize),
}

/// What ingest works out about a passage for `dups` and stores beside it
/// (store format 4), so each run reads it instead of recomputing it: half a
/// minute per run at a million passages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassageTraits {
    /// The language guess (ISO 639-1); `None` when the text does not tell.
    pub lang: Option<String>,
    /// The lexical sketch of the normalised text (`dedup::sketch::encode`;
    /// its bytes are dedup's business).
    pub sketch: Vec<u8>,
    /// The text's lexical keys (`dedup::lookup::stored_keys`), for a store
    /// that finds a text's lexical neighbours itself
    /// ([`Store::lexical_neighbours`](crate::store::Store::lexical_neighbours):
    /// PostgreSQL indexes them); a store that does not, ignores them.
    pub keys: Vec<u32>,
}

/// One model input (a window of a passage).
#[derive(Debug, Clone, Default)]
pub struct NewChunk {
    /// Byte offset within the passage text.
    pub byte_start: usize,
    /// Byte offset just past the chunk within the passage text.
    pub byte_end: usize,
    /// Number of model tokens in the chunk.
    pub tokens: usize,
    /// Embedding cache key: a hash of the exact model input text.
    pub emb_key: String,
}

/// What `replace_document` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceOutcome {
    /// The document's id (kept when the path was already stored).
    pub doc_id: DocumentId,
    /// New passage ids in passage order, so the caller can mark duplicates.
    pub passage_ids: Vec<PassageId>,
    /// Whether a previous version of this path was replaced.
    pub replaced: bool,
    /// Vectors written by this call.
    pub embeddings_written: usize,
    /// Chunks whose vector was already stored.
    pub embeddings_reused: usize,
    /// Passages of other documents that pointed at a removed passage through
    /// `duplicate_of` and were unmarked; the caller may re-check them.
    pub unlinked_duplicates: Vec<PassageId>,
    /// With [`NewDocument::exact_references`]: passages of this document the
    /// store wrote as exact references because their text was already
    /// stored when the caller had not marked them (another writer's).
    pub late_references: Vec<PassageId>,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRow {
    pub id: DocumentId,
    pub path: String,
    pub content_hash: String,
    pub size: u64,
    pub mtime: Option<i64>,
    pub date: Option<String>,
    /// Position in first-ingest order (1, 2, ...); kept when the document is
    /// replaced, so editing an original does not make it look newer than its copies.
    pub ingest_order: i64,
    /// UTC time of the last write, `YYYY-MM-DDTHH:MM:SSZ`.
    pub ingested_at: String,
    /// Number of passages.
    pub passages: usize,
}

/// A stored passage with its document's path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassageRow {
    pub id: PassageId,
    pub doc_id: DocumentId,
    pub path: String,
    pub date: Option<String>,
    pub idx: usize,
    pub line_start: usize,
    pub line_end: usize,
    pub byte_start: usize,
    pub byte_end: usize,
    pub text: String,
    pub duplicate_of: Option<PassageId>,
    pub dup_kind: Option<String>,
    pub dup_score: Option<f64>,
    /// Hex SHA-256 of the normalised text: equal for passages whose texts
    /// differ only in case, spacing and typography (the exact-duplicate key),
    /// so copies are recognised without normalising again.
    #[serde(skip)]
    pub norm_hash: String,
}

/// What the dedup pass needs of a stored passage: the row, the normalised
/// text stored at ingest (not recomputed), and the document's ingest order.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupRow {
    pub passage: PassageRow,
    /// Normalised text, as written by the ingest that stored the passage.
    pub norm: String,
    /// The document's `ingest_order`; with `passage.idx` it orders passages by first sight.
    pub order: i64,
    /// The language guessed at ingest ([`PassageTraits::lang`]): `None` for
    /// a passage stored before guesses were kept (store format 3 and older).
    pub lang: Option<Option<String>>,
}

/// A duplicate link to write with `set_duplicates`.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateMark {
    pub passage_id: PassageId,
    pub canonical_id: PassageId,
    /// e.g. `exact`, `near`, `semantic`: the caller's vocabulary.
    pub kind: String,
    pub score: f64,
}

/// Stored vectors, row-major, with the chunk, passage and document each row
/// belongs to; rows of one passage are contiguous, in chunk order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorSet {
    pub chunk_ids: Vec<ChunkId>,
    pub passage_ids: Vec<PassageId>,
    pub doc_ids: Vec<DocumentId>,
    /// Index of each row's chunk within its passage.
    pub chunk_idx: Vec<u32>,
    pub dim: usize,
    /// `chunk_ids.len() * dim` floats; row `i` is `data[i*dim..(i+1)*dim]`.
    pub data: Vec<f32>,
}

impl VectorSet {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.chunk_ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.chunk_ids.is_empty()
    }

    /// Row `i` as a slice of `dim` floats.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Counts and size of a store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub path: PathBuf,
    pub schema_version: i64,
    pub documents: usize,
    pub passages: usize,
    pub chunks: usize,
    /// Stored vectors, including cached ones no chunk uses any more.
    pub embeddings: usize,
    /// Stored vectors no chunk uses (reclaimed by `vacuum_embeddings`).
    pub orphan_embeddings: usize,
    /// Passages marked as a duplicate of another.
    pub duplicates: usize,
    /// Size of the database file plus its write-ahead log, in bytes.
    pub file_size_bytes: u64,
    pub meta: StoreMeta,
    /// The approximate index beside the store, when there is a usable one.
    pub search_index: Option<SearchIndexStats>,
}

/// What `stats` says about a store's approximate index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchIndexStats {
    pub path: PathBuf,
    /// Vectors in the index (chunks removed since are still counted).
    pub vectors: usize,
    /// Chunks written after the index, searched exactly until an ingest adds them.
    pub chunks_after: usize,
    pub file_size_bytes: u64,
}
