//! Writes, each one transaction that first bumps `pareil_meta.generation`:
//! the row lock it takes serialises writers (as SQLite's `BEGIN IMMEDIATE`
//! does), and a killed process or an error leaves the previous state.

use std::collections::{HashMap, HashSet};

use pgvector::HalfVector;
use postgres::Transaction;

use super::PostgresStore;
use crate::error::{Error, Result};
use crate::store::sha256_hex;
use crate::store::types::{
    DocumentId, DuplicateMark, NewChunk, NewDocument, PassageId, ReplaceOutcome,
};

/// SQL for "now" in the format of `documents.ingested_at`.
const NOW: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

/// Starts a write transaction and counts it in `generation`.
fn begin(client: &mut postgres::Client) -> Result<Transaction<'_>> {
    let mut tx = client.transaction()?;
    tx.execute(
        "UPDATE pareil_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'",
        &[],
    )?;
    Ok(tx)
}

impl PostgresStore {
    pub(super) fn write_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome> {
        self.writable()?;
        self.check_dimensions(doc)?;
        let location = self.location.clone();
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        let (doc_id, unlinked_duplicates, replaced) = upsert_document(&mut tx, doc)?;
        let written = insert_embeddings(&mut tx, doc)?;
        let (passage_ids, reused) = insert_passages(&mut tx, &location, doc_id, doc, &written)?;
        tx.commit()?;
        Ok(ReplaceOutcome {
            doc_id,
            passage_ids,
            replaced,
            embeddings_written: written.len(),
            embeddings_reused: reused,
            unlinked_duplicates,
        })
    }

    fn check_dimensions(&self, doc: &NewDocument) -> Result<()> {
        let dim = self.meta.dim;
        match doc.embeddings.iter().find(|(_, v)| v.len() != dim) {
            None => Ok(()),
            Some((key, v)) => Err(Error::StoreMismatch {
                path: self.location.clone().into(),
                reason: format!(
                    "vector for {key} of {} has {} values, the store holds {dim}-dimensional \
                     vectors",
                    doc.path,
                    v.len()
                ),
            }),
        }
    }

    pub(super) fn write_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()> {
        self.writable()?;
        let location = self.location.clone();
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        let doc_id: DocumentId = tx
            .query_opt("SELECT doc_id FROM passages WHERE id = $1", &[&passage])?
            .ok_or_else(|| Error::NotFound(format!("passage {passage}")))?
            .get(0);
        for c in chunks {
            if let Some(v) = embeddings.get(&c.emb_key) {
                insert_embedding(&mut tx, &c.emb_key, v)?;
            }
        }
        for (ci, c) in chunks.iter().enumerate() {
            if !insert_chunk(&mut tx, passage, doc_id, ci, c)? {
                return Err(Error::Store {
                    path: location.clone().into(),
                    reason: format!(
                        "chunk {ci} of passage {passage} uses embedding key {}, which is \
                         neither stored nor supplied",
                        c.emb_key
                    ),
                });
            }
        }
        unmark(&mut tx, passage)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn delete_document_at(&mut self, path: &str) -> Result<bool> {
        self.writable()?;
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        let id: Option<DocumentId> = tx
            .query_opt(
                "SELECT id FROM documents WHERE path = $1 FOR UPDATE",
                &[&path],
            )?
            .map(|r| r.get(0));
        if let Some(id) = id {
            delete_passages(&mut tx, id)?;
            tx.execute("DELETE FROM documents WHERE id = $1", &[&id])?;
        }
        tx.commit()?;
        Ok(id.is_some())
    }

    pub(super) fn delete_orphan_embeddings(&mut self) -> Result<usize> {
        self.writable()?;
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        let n = tx.execute(
            "DELETE FROM embeddings e WHERE NOT EXISTS \
             (SELECT 1 FROM chunks c WHERE c.emb_key = e.hash)",
            &[],
        )?;
        tx.commit()?;
        Ok(n as usize)
    }

    pub(super) fn write_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()> {
        self.writable()?;
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        for m in marks {
            if m.passage_id == m.canonical_id {
                return Err(Error::Usage(format!(
                    "passage {} cannot be a duplicate of itself",
                    m.passage_id
                )));
            }
            if tx
                .query_opt("SELECT 1 FROM passages WHERE id = $1", &[&m.canonical_id])?
                .is_none()
            {
                return Err(Error::NotFound(format!("passage {}", m.canonical_id)));
            }
            let n = tx.execute(
                "UPDATE passages SET duplicate_of = $2, dup_kind = $3, dup_score = $4 \
                 WHERE id = $1",
                &[&m.passage_id, &m.canonical_id, &m.kind, &m.score],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("passage {}", m.passage_id)));
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn write_unmark(&mut self, passage: PassageId) -> Result<()> {
        self.writable()?;
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        unmark(&mut tx, passage)?;
        tx.commit()?;
        Ok(())
    }
}

/// Deletes a document's chunks and passages (not the document row), first
/// unmarking passages elsewhere that point at them; returns those passages.
fn delete_passages(tx: &mut Transaction<'_>, doc_id: DocumentId) -> Result<Vec<PassageId>> {
    let mut unlinked: Vec<PassageId> = tx
        .query(
            "UPDATE passages SET duplicate_of = NULL, dup_kind = NULL, dup_score = NULL \
             WHERE duplicate_of IN (SELECT id FROM passages WHERE doc_id = $1) \
             RETURNING id, doc_id",
            &[&doc_id],
        )?
        .iter()
        .filter(|r| r.get::<_, i64>(1) != doc_id)
        .map(|r| r.get(0))
        .collect();
    unlinked.sort_unstable();
    tx.execute("DELETE FROM chunks WHERE doc_id = $1", &[&doc_id])?;
    tx.execute("DELETE FROM passages WHERE doc_id = $1", &[&doc_id])?;
    Ok(unlinked)
}

/// Updates the document row stored under `doc.path` (its old passages go;
/// id and ingest order stay) or inserts a new one.
fn upsert_document(
    tx: &mut Transaction<'_>,
    doc: &NewDocument,
) -> Result<(DocumentId, Vec<PassageId>, bool)> {
    let size = doc.size as i64;
    let existing: Option<DocumentId> = tx
        .query_opt(
            "SELECT id FROM documents WHERE path = $1 FOR UPDATE",
            &[&doc.path],
        )?
        .map(|r| r.get(0));
    if let Some(id) = existing {
        let unlinked = delete_passages(tx, id)?;
        tx.execute(
            &format!(
                "UPDATE documents SET content_hash = $2, size = $3, mtime = $4, date = $5, \
                 ingested_at = {NOW} WHERE id = $1"
            ),
            &[&id, &doc.content_hash, &size, &doc.mtime, &doc.date],
        )?;
        return Ok((id, unlinked, true));
    }
    let id = tx
        .query_one(
            &format!(
                "INSERT INTO documents (path, content_hash, size, mtime, date, ingested_at) \
                 VALUES ($1, $2, $3, $4, $5, {NOW}) RETURNING id"
            ),
            &[&doc.path, &doc.content_hash, &size, &doc.mtime, &doc.date],
        )?
        .get(0);
    Ok((id, Vec::new(), false))
}

/// Inserts one vector unless its key is stored; whether it was written.
fn insert_embedding(tx: &mut Transaction<'_>, key: &str, v: &[f32]) -> Result<bool> {
    let n = tx.execute(
        "INSERT INTO embeddings (hash, vector) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
        &[&key, &HalfVector::from_f32_slice(v)],
    )?;
    Ok(n > 0)
}

/// Inserts the supplied vectors some chunk uses and that are not stored yet;
/// returns their keys.
fn insert_embeddings<'d>(
    tx: &mut Transaction<'_>,
    doc: &'d NewDocument,
) -> Result<HashSet<&'d str>> {
    let used: HashSet<&str> = doc
        .passages
        .iter()
        .flat_map(|p| p.chunks.iter().map(|c| c.emb_key.as_str()))
        .collect();
    let mut written = HashSet::new();
    for (key, v) in &doc.embeddings {
        if used.contains(key.as_str()) && insert_embedding(tx, key, v)? {
            written.insert(key.as_str());
        }
    }
    Ok(written)
}

/// Inserts the passages and their chunks; returns the passage ids in order
/// and how many chunks used a vector that was already stored.
fn insert_passages(
    tx: &mut Transaction<'_>,
    location: &str,
    doc_id: DocumentId,
    doc: &NewDocument,
    written: &HashSet<&str>,
) -> Result<(Vec<PassageId>, usize)> {
    let insert = tx.prepare(
        "INSERT INTO passages (doc_id, idx, line_start, line_end, byte_start, byte_end, \
         text, norm, norm_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )?;
    let mut passage_ids = Vec::with_capacity(doc.passages.len());
    let mut reused = 0usize;
    for (pi, p) in doc.passages.iter().enumerate() {
        let passage_id: PassageId = tx
            .query_one(
                &insert,
                &[
                    &doc_id,
                    &(pi as i32),
                    &(p.line_start as i64),
                    &(p.line_end as i64),
                    &(p.byte_start as i64),
                    &(p.byte_end as i64),
                    &p.text,
                    &p.norm,
                    &sha256_hex(p.norm.as_bytes()),
                ],
            )?
            .get(0);
        passage_ids.push(passage_id);
        for (ci, c) in p.chunks.iter().enumerate() {
            if !insert_chunk(tx, passage_id, doc_id, ci, c)? {
                return Err(Error::Store {
                    path: location.into(),
                    reason: format!(
                        "chunk {ci} of passage {pi} of {} uses embedding key {}, which is \
                         neither stored nor supplied; nothing was written for this document",
                        doc.path, c.emb_key
                    ),
                });
            }
            reused += usize::from(!written.contains(c.emb_key.as_str()));
        }
    }
    Ok((passage_ids, reused))
}

/// Inserts a chunk with its vector, copied from the cache row of its key
/// (written just before when the caller supplied it); `false` when the key
/// is not cached, and then nothing was inserted.
fn insert_chunk(
    tx: &mut Transaction<'_>,
    passage_id: PassageId,
    doc_id: DocumentId,
    idx: usize,
    c: &NewChunk,
) -> Result<bool> {
    let n = tx.execute(
        "INSERT INTO chunks \
         (doc_id, passage_id, idx, byte_start, byte_end, tokens, emb_key, vector) \
         SELECT $1, $2, $3, $4, $5, $6, e.hash, e.vector FROM embeddings e WHERE e.hash = $7",
        &[
            &doc_id,
            &passage_id,
            &(idx as i32),
            &(c.byte_start as i64),
            &(c.byte_end as i64),
            &(c.tokens as i64),
            &c.emb_key,
        ],
    )?;
    Ok(n == 1)
}

/// Clears one passage's duplicate mark; `NotFound` when there is no such passage.
fn unmark(tx: &mut Transaction<'_>, passage: PassageId) -> Result<()> {
    let n = tx.execute(
        "UPDATE passages SET duplicate_of = NULL, dup_kind = NULL, dup_score = NULL \
         WHERE id = $1",
        &[&passage],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!("passage {passage}")));
    }
    Ok(())
}
