//! Writes: replacing and removing documents, pruning, duplicate marks and
//! garbage-collecting cached vectors. Each public call is one `BEGIN
//! IMMEDIATE` transaction, so a concurrent ingest waits (busy timeout) instead
//! of failing mid-way, and a crash or error leaves the previous state.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::sha256_hex;
use crate::store::types::{
    DocumentId, DuplicateMark, MarkTarget, NewChunk, NewDocument, NewMark, PassageId,
    PassageTraits, ReplaceOutcome,
};

// Offsets, counts and sizes are written `as i64`: the crate is built without
// rusqlite's `fallible_uint` feature, and no file comes near 2^63 bytes.

/// SQL for "now" in the format of `documents.ingested_at`.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// Encodes a vector as the stored blob: `dim` f16 values, little-endian.
/// Half of f32's size; a unit vector's components keep 11 significant bits,
/// so a cosine moves by less than 1e-3 (measured in BENCHMARKS.md).
pub(super) fn encode_vector(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 2);
    for &x in v {
        out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
    }
    out
}

impl SqliteStore {
    /// Starts a write transaction and counts it in `meta.generation`, so
    /// whatever is derived from the store (an index) can tell it is stale.
    fn begin(&mut self) -> Result<Transaction<'_>> {
        self.writable()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'",
            [],
        )?;
        Ok(tx)
    }

    /// Writes `doc` in one transaction: the old passages and chunks of the same
    /// path (if any) go, the document row is updated or inserted, and the new
    /// passages, chunks and not-yet-cached vectors are inserted. On any error
    /// (or a killed process) the previous version stays as it was.
    ///
    /// Passages of other documents that were marked duplicates of a removed
    /// passage lose that mark (listed in the outcome), because passage ids do
    /// not survive a replace.
    pub fn replace_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome> {
        crate::store::check_dimensions(&self.path, doc, self.meta.dim)?;
        let path = self.path.clone();
        let tx = self.begin()?;
        let (doc_id, unlinked_duplicates, replaced) = upsert_document(&tx, doc)?;
        let written = insert_embeddings(&tx, doc)?;
        let (passage_ids, reused, late_references) =
            insert_passages(&tx, &path, doc_id, doc, &written)?;
        tx.commit()?;
        self.searcher_rewritten(doc_id, true)?;
        Ok(ReplaceOutcome {
            doc_id,
            passage_ids,
            replaced,
            embeddings_written: written.len(),
            embeddings_reused: reused,
            unlinked_duplicates,
            late_references,
        })
    }

    /// Gives a passage stored without vectors (a duplicate reference) its
    /// own chunks and clears its duplicate mark, in one transaction: what a
    /// reference becomes when its canonical copy is edited away.
    pub fn add_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self.begin()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO embeddings (hash, vector) VALUES (?1, ?2) ON CONFLICT(hash) DO NOTHING",
            )?;
            for c in chunks {
                if let Some(v) = embeddings.get(&c.emb_key) {
                    insert.execute(params![c.emb_key, encode_vector(v)])?;
                }
            }
            let mut emb_ids = EmbeddingIds::new(&tx)?;
            for (ci, c) in chunks.iter().enumerate() {
                let emb_id = emb_ids.get(&c.emb_key)?.ok_or_else(|| Error::Store {
                    path: path.clone(),
                    reason: format!(
                        "chunk {ci} of passage {passage} uses embedding key {}, which is \
                         neither stored nor supplied",
                        c.emb_key
                    ),
                })?;
                insert_chunk(&tx, passage, ci, c, emb_id)?;
            }
            unmark(&tx, passage)?;
        }
        tx.commit()?;
        self.searcher_added(passage)?;
        Ok(())
    }

    /// Removes the document stored under exactly `path`, with its passages and
    /// chunks; its vectors stay cached until `vacuum_embeddings`. Returns
    /// whether there was such a document.
    pub fn remove_document(&mut self, path: &str) -> Result<bool> {
        let tx = self.begin()?;
        let id: Option<DocumentId> = tx
            .query_row("SELECT id FROM documents WHERE path = ?1", [path], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = id {
            delete_document(&tx, id)?;
        }
        tx.commit()?;
        if let Some(id) = id {
            self.searcher_rewritten(id, false)?;
        }
        Ok(id.is_some())
    }

    /// Removes every document whose path is not in `keep`, in one
    /// transaction; returns the removed paths.
    pub fn prune(&mut self, keep: &HashSet<String>) -> Result<Vec<String>> {
        self.prune_where(|path| !keep.contains(path))
    }

    /// Removes every document for which `remove(path)` is true, in one
    /// transaction; returns the removed paths. For scoped pruning (only paths
    /// under the folder just ingested, say).
    pub fn prune_where(&mut self, mut remove: impl FnMut(&str) -> bool) -> Result<Vec<String>> {
        let tx = self.begin()?;
        let docs = {
            let mut stmt = tx.prepare("SELECT id, path FROM documents ORDER BY ingest_order")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        let mut removed = Vec::new();
        let mut ids = Vec::new();
        for (id, path) in docs {
            if remove(&path) {
                delete_document(&tx, id)?;
                removed.push(path);
                ids.push(id);
            }
        }
        tx.commit()?;
        for id in ids {
            self.searcher_rewritten(id, false)?;
        }
        Ok(removed)
    }

    /// Deletes cached vectors no chunk uses any more; returns how many. The
    /// file only shrinks after a SQLite `VACUUM`, but the pages are reused.
    pub fn vacuum_embeddings(&mut self) -> Result<usize> {
        let tx = self.begin()?;
        let n = tx.execute(
            "DELETE FROM embeddings WHERE NOT EXISTS \
             (SELECT 1 FROM chunks WHERE chunks.emb_id = embeddings.id)",
            [],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Marks `passage_id` as a duplicate of `canonical_id`.
    pub fn set_duplicate(
        &mut self,
        passage_id: PassageId,
        canonical_id: PassageId,
        kind: &str,
        score: f64,
    ) -> Result<()> {
        self.set_duplicates(&[DuplicateMark {
            passage_id,
            canonical_id,
            kind: kind.to_string(),
            score,
        }])
    }

    /// Writes many duplicate marks in one transaction; all or none.
    /// Records traits worked out for passages stored without them.
    pub fn set_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()> {
        let tx = self.begin()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE passages SET lang = ?2, sketch = ?3 WHERE id = ?1")?;
            for (id, t) in traits {
                update.execute(params![id, t.lang, t.sketch])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()> {
        let tx = self.begin()?;
        {
            let mut exists = tx.prepare_cached("SELECT 1 FROM passages WHERE id = ?1")?;
            let mut update = tx.prepare_cached(
                "UPDATE passages SET duplicate_of = ?2, dup_kind = ?3, dup_score = ?4 WHERE id = ?1",
            )?;
            for m in marks {
                if m.passage_id == m.canonical_id {
                    return Err(Error::Usage(format!(
                        "passage {} cannot be a duplicate of itself",
                        m.passage_id
                    )));
                }
                if !exists.exists([m.canonical_id])? {
                    return Err(Error::NotFound(format!("passage {}", m.canonical_id)));
                }
                if update.execute(params![m.passage_id, m.canonical_id, m.kind, m.score])? == 0 {
                    return Err(Error::NotFound(format!("passage {}", m.passage_id)));
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes the duplicate mark of one passage (no error if it had none).
    pub fn clear_duplicate(&mut self, passage_id: PassageId) -> Result<()> {
        let tx = self.begin()?;
        unmark(&tx, passage_id)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes every duplicate mark, for a full re-run of dedup; returns how
    /// many passages were marked.
    pub fn clear_all_duplicates(&mut self) -> Result<usize> {
        let tx = self.begin()?;
        let n = tx.execute(
            "UPDATE passages SET duplicate_of = NULL, dup_kind = NULL, dup_score = NULL \
             WHERE duplicate_of IS NOT NULL OR dup_kind IS NOT NULL",
            [],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

/// Deletes a document's chunks and passages (not the document row), first
/// unmarking passages elsewhere that point at them. Returns those passages.
fn delete_passages(tx: &Transaction<'_>, doc_id: DocumentId) -> Result<Vec<PassageId>> {
    let unlinked = {
        let mut stmt = tx.prepare_cached(
            "UPDATE passages SET duplicate_of = NULL, dup_kind = NULL, dup_score = NULL \
             WHERE duplicate_of IN (SELECT id FROM passages WHERE doc_id = ?1) \
             RETURNING id, doc_id",
        )?;
        let rows = stmt
            .query_map([doc_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut ids: Vec<PassageId> = rows
            .into_iter()
            .filter(|&(_, d)| d != doc_id)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    };
    tx.execute(
        "DELETE FROM chunks WHERE passage_id IN (SELECT id FROM passages WHERE doc_id = ?1)",
        [doc_id],
    )?;
    tx.execute("DELETE FROM passages WHERE doc_id = ?1", [doc_id])?;
    Ok(unlinked)
}

fn delete_document(tx: &Transaction<'_>, doc_id: DocumentId) -> Result<()> {
    delete_passages(tx, doc_id)?;
    tx.execute("DELETE FROM documents WHERE id = ?1", [doc_id])?;
    Ok(())
}

/// Updates the document row stored under `doc.path` (its old passages go;
/// id and ingest order stay) or inserts a new one. Returns the id, the
/// passages elsewhere that lost their duplicate mark, and whether it replaced.
fn upsert_document(
    tx: &Transaction<'_>,
    doc: &NewDocument,
) -> Result<(DocumentId, Vec<PassageId>, bool)> {
    let existing: Option<DocumentId> = tx
        .query_row(
            "SELECT id FROM documents WHERE path = ?1",
            [&doc.path],
            |r| r.get(0),
        )
        .optional()?;
    let size = doc.size as i64;
    if let Some(id) = existing {
        let unlinked = delete_passages(tx, id)?;
        tx.execute(
            &format!(
                "UPDATE documents SET content_hash = ?2, size = ?3, mtime = ?4, date = ?5, \
                 ingested_at = {NOW} WHERE id = ?1"
            ),
            params![id, doc.content_hash, size, doc.mtime, doc.date],
        )?;
        return Ok((id, unlinked, true));
    }
    tx.execute(
        &format!(
            "INSERT INTO documents \
             (path, content_hash, size, mtime, date, ingest_order, ingested_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, \
             (SELECT COALESCE(MAX(ingest_order), 0) + 1 FROM documents), {NOW})"
        ),
        params![doc.path, doc.content_hash, size, doc.mtime, doc.date],
    )?;
    Ok((tx.last_insert_rowid(), Vec::new(), false))
}

/// Inserts the supplied vectors some chunk uses (an unused one would be an
/// orphan from the start) and that are not cached yet; returns their keys.
fn insert_embeddings<'d>(tx: &Transaction<'_>, doc: &'d NewDocument) -> Result<HashSet<&'d str>> {
    let used: HashSet<&str> = doc
        .passages
        .iter()
        .flat_map(|p| p.chunks.iter().map(|c| c.emb_key.as_str()))
        .collect();
    let mut written = HashSet::new();
    let mut insert = tx.prepare_cached(
        "INSERT INTO embeddings (hash, vector) VALUES (?1, ?2) ON CONFLICT(hash) DO NOTHING",
    )?;
    for (key, v) in &doc.embeddings {
        if used.contains(key.as_str()) && insert.execute(params![key, encode_vector(v)])? > 0 {
            written.insert(key.as_str());
        }
    }
    Ok(written)
}

/// Inserts the passages and their chunks; returns the passage ids in order
/// and how many chunks used a vector that was already stored.
fn insert_passages(
    tx: &Transaction<'_>,
    path: &std::path::Path,
    doc_id: DocumentId,
    doc: &NewDocument,
    written: &HashSet<&str>,
) -> Result<(Vec<PassageId>, usize, Vec<PassageId>)> {
    let mut insert_passage = tx.prepare_cached(
        "INSERT INTO passages (doc_id, idx, line_start, line_end, byte_start, byte_end, \
         text, norm, norm_hash, lang, sketch, duplicate_of, dup_kind, dup_score) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut emb_ids = EmbeddingIds::new(tx)?;
    let mut passage_ids = Vec::with_capacity(doc.passages.len());
    let mut late_references = Vec::new();
    let mut reused = 0usize;
    for (pi, p) in doc.passages.iter().enumerate() {
        let norm_hash = sha256_hex(p.norm.as_bytes());
        let (mark, late) = match &p.duplicate_of {
            Some(m) => (Some(resolve_mark(tx, m, pi, &passage_ids)?), false),
            None if doc.exact_references => {
                let stored = stored_canonical(tx, &p.norm, &norm_hash)?;
                let late = stored.is_some();
                (stored.map(|id| (id, "exact", 1.0)), late)
            }
            None => (None, false),
        };
        insert_passage.execute(params![
            doc_id,
            pi as i64,
            p.line_start as i64,
            p.line_end as i64,
            p.byte_start as i64,
            p.byte_end as i64,
            p.text,
            p.norm,
            norm_hash,
            p.traits.as_ref().and_then(|t| t.lang.as_deref()),
            p.traits.as_ref().map(|t| &t.sketch[..]),
            mark.map(|(id, _, _)| id),
            mark.map(|(_, kind, _)| kind),
            mark.map(|(_, _, score)| score),
        ])?;
        let passage_id = tx.last_insert_rowid();
        passage_ids.push(passage_id);
        if late {
            // A reference keeps no chunks of its own.
            late_references.push(passage_id);
            continue;
        }
        for (ci, c) in p.chunks.iter().enumerate() {
            let emb_id = emb_ids.get(&c.emb_key)?.ok_or_else(|| Error::Store {
                path: path.to_path_buf(),
                reason: format!(
                    "chunk {ci} of passage {pi} of {} uses embedding key {}, which is neither \
                     stored nor supplied; nothing was written for this document",
                    doc.path, c.emb_key
                ),
            })?;
            reused += usize::from(!written.contains(c.emb_key.as_str()));
            insert_chunk(tx, passage_id, ci, c, emb_id)?;
        }
    }
    Ok((passage_ids, reused, late_references))
}

/// The `(canonical id, kind, score)` a passage being written at index `pi`
/// points at: a stored passage that exists, or an earlier one of its document.
fn resolve_mark<'m>(
    tx: &Transaction<'_>,
    mark: &'m NewMark,
    pi: usize,
    earlier: &[PassageId],
) -> Result<(PassageId, &'m str, f64)> {
    let id = crate::store::marked_canonical(mark, pi, earlier)?;
    if let MarkTarget::Stored(id) = mark.canonical {
        let exists = tx
            .prepare_cached("SELECT 1 FROM passages WHERE id = ?1")?
            .exists([id])?;
        if !exists {
            return Err(Error::NotFound(format!("passage {id}")));
        }
    }
    Ok((id, &mark.kind, mark.score))
}

/// The stored passage holding `norm` as its own canonical copy (not itself
/// a reference), the oldest if several: what an unmarked passage with that
/// text becomes an exact reference to under `exact_references`. Empty
/// texts are nobody's copy.
fn stored_canonical(
    tx: &Transaction<'_>,
    norm: &str,
    norm_hash: &str,
) -> Result<Option<PassageId>> {
    if norm.trim().is_empty() {
        return Ok(None);
    }
    Ok(tx
        .prepare_cached(
            "SELECT id FROM passages WHERE norm_hash = ?1 AND duplicate_of IS NULL \
             ORDER BY id LIMIT 1",
        )?
        .query_row([norm_hash], |r| r.get(0))
        .optional()?)
}

fn insert_chunk(
    tx: &Transaction<'_>,
    passage_id: PassageId,
    idx: usize,
    c: &NewChunk,
    emb_id: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO chunks (passage_id, idx, byte_start, byte_end, tokens, emb_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        passage_id,
        idx as i64,
        c.byte_start as i64,
        c.byte_end as i64,
        c.tokens as i64,
        emb_id
    ])?;
    Ok(())
}

/// Embedding row ids by cache key, looked up once per key.
struct EmbeddingIds<'t> {
    find: rusqlite::CachedStatement<'t>,
    known: HashMap<String, i64>,
}

impl<'t> EmbeddingIds<'t> {
    fn new(tx: &'t Transaction<'_>) -> Result<Self> {
        Ok(EmbeddingIds {
            find: tx.prepare_cached("SELECT id FROM embeddings WHERE hash = ?1")?,
            known: HashMap::new(),
        })
    }

    fn get(&mut self, key: &str) -> Result<Option<i64>> {
        if let Some(&id) = self.known.get(key) {
            return Ok(Some(id));
        }
        let id: Option<i64> = self.find.query_row([key], |r| r.get(0)).optional()?;
        if let Some(id) = id {
            self.known.insert(key.to_string(), id);
        }
        Ok(id)
    }
}

/// Clears one passage's duplicate mark; `NotFound` when there is no such passage.
fn unmark(tx: &Transaction<'_>, passage: PassageId) -> Result<()> {
    let n = tx.execute(
        "UPDATE passages SET duplicate_of = NULL, dup_kind = NULL, dup_score = NULL WHERE id = ?1",
        [passage],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!("passage {passage}")));
    }
    Ok(())
}
