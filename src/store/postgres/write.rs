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
    DocumentId, DuplicateMark, NewChunk, NewDocument, PassageId, PassageTraits, ReplaceOutcome,
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
        crate::store::check_dimensions(self.location.as_ref(), doc, self.meta.dim)?;
        let location = self.location.clone();
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        let (doc_id, unlinked_duplicates, replaced) = upsert_document(&mut tx, doc)?;
        let written = insert_embeddings(&mut tx, doc)?;
        let (passage_ids, reused) = insert_passages(&mut tx, &location, doc_id, doc, &written)?;
        write_marks(&mut tx, doc, &passage_ids)?;
        let already_stored = record_texts(&mut tx, &passage_ids)?;
        let late_references = if doc.exact_references {
            refer_to_stored_copies(&mut tx, doc_id, &already_stored)?
        } else {
            Vec::new()
        };
        tx.commit()?;
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
        let places: Vec<(usize, usize, &NewChunk)> = chunks
            .iter()
            .enumerate()
            .map(|(ci, c)| (0, ci, c))
            .collect();
        if insert_chunks(&mut tx, doc_id, &[passage], &places)? < chunks.len() {
            let (_, ci, c) = first_missing(&mut tx, &places)?;
            return Err(Error::Store {
                path: location.into(),
                reason: format!(
                    "chunk {ci} of passage {passage} uses embedding key {}, which is neither \
                     stored nor supplied",
                    c.emb_key
                ),
            });
        }
        unmark(&mut tx, passage)?;
        record_texts(&mut tx, &[passage])?;
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

    /// Records traits worked out later, in one statement per batch.
    pub(super) fn write_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()> {
        self.writable()?;
        let ids: Vec<PassageId> = traits.iter().map(|(id, _)| *id).collect();
        let langs: Vec<Option<&str>> = traits.iter().map(|(_, t)| t.lang.as_deref()).collect();
        let sketches: Vec<&[u8]> = traits.iter().map(|(_, t)| &t.sketch[..]).collect();
        let keys: Vec<String> = traits.iter().map(|(_, t)| key_array(&t.keys)).collect();
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        tx.execute(
            "UPDATE passages p SET lang = t.lang, sketch = t.sketch, lex_keys = t.keys::int4[] \
             FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[]) \
             AS t(id, lang, sketch, keys) WHERE p.id = t.id",
            &[&ids, &langs, &sketches, &keys],
        )?;
        tx.commit()?;
        Ok(())
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
        // A passage now a reference is no text's canonical copy.
        let marked: Vec<PassageId> = marks.iter().map(|m| m.passage_id).collect();
        let hashes: Vec<String> = tx
            .query(
                "DELETE FROM passage_texts WHERE passage_id = ANY($1) \
                 AND doc_id IN (SELECT doc_id FROM passages WHERE id = ANY($1)) \
                 RETURNING norm_hash",
                &[&marked],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        rerecord_texts(&mut tx, &hashes)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn write_unmark(&mut self, passage: PassageId) -> Result<()> {
        self.writable()?;
        let mut db = self.db();
        let mut tx = begin(&mut db)?;
        unmark(&mut tx, passage)?;
        record_texts(&mut tx, &[passage])?;
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
    let hashes: Vec<String> = tx
        .query(
            "DELETE FROM passage_texts WHERE doc_id = $1 RETURNING norm_hash",
            &[&doc_id],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    rerecord_texts(tx, &hashes)?;
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

/// Inserts the supplied vectors some chunk uses and that are not stored yet,
/// in one statement; returns their keys.
fn insert_embeddings<'d>(
    tx: &mut Transaction<'_>,
    doc: &'d NewDocument,
) -> Result<HashSet<&'d str>> {
    let used: HashSet<&str> = doc
        .passages
        .iter()
        .flat_map(|p| p.chunks.iter().map(|c| c.emb_key.as_str()))
        .collect();
    let (keys, vectors): (Vec<&str>, Vec<HalfVector>) = doc
        .embeddings
        .iter()
        .filter(|(k, _)| used.contains(k.as_str()))
        .map(|(k, v)| (k.as_str(), HalfVector::from_f32_slice(v)))
        .unzip();
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx.query(
        "INSERT INTO embeddings (hash, vector) SELECT * FROM unnest($1::text[], $2::halfvec[]) \
         ON CONFLICT (hash) DO NOTHING RETURNING hash",
        &[&keys, &vectors],
    )?;
    let written: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(keys.into_iter().filter(|k| written.contains(*k)).collect())
}

/// Inserts the passages, then their chunks, one statement each; returns the
/// passage ids in order and how many chunks used a vector already stored.
fn insert_passages(
    tx: &mut Transaction<'_>,
    location: &str,
    doc_id: DocumentId,
    doc: &NewDocument,
    written: &HashSet<&str>,
) -> Result<(Vec<PassageId>, usize)> {
    let ps = &doc.passages;
    let column = |f: &dyn Fn(&crate::store::types::NewPassage) -> usize| -> Vec<i64> {
        ps.iter().map(|p| f(p) as i64).collect()
    };
    let rows = tx.query(
        "INSERT INTO passages (doc_id, idx, line_start, line_end, byte_start, byte_end, \
         text, norm, norm_hash, lang, sketch, lex_keys) \
         SELECT $1, t.idx, t.line_start, t.line_end, t.byte_start, t.byte_end, t.text, \
         t.norm, t.norm_hash, t.lang, t.sketch, t.keys::int4[] \
         FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[]) \
         AS t(idx, line_start, line_end, byte_start, byte_end, text, norm, norm_hash, lang, \
         sketch, keys) \
         RETURNING id, idx",
        &[
            &doc_id,
            &(0..ps.len() as i32).collect::<Vec<i32>>(),
            &column(&|p| p.line_start),
            &column(&|p| p.line_end),
            &column(&|p| p.byte_start),
            &column(&|p| p.byte_end),
            &ps.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
            &ps.iter().map(|p| p.norm.as_str()).collect::<Vec<_>>(),
            &ps.iter()
                .map(|p| sha256_hex(p.norm.as_bytes()))
                .collect::<Vec<_>>(),
            &ps.iter()
                .map(|p| p.traits.as_ref().and_then(|t| t.lang.as_deref()))
                .collect::<Vec<_>>(),
            &ps.iter()
                .map(|p| p.traits.as_ref().map(|t| &t.sketch[..]))
                .collect::<Vec<_>>(),
            &ps.iter()
                .map(|p| p.traits.as_ref().map(|t| key_array(&t.keys)))
                .collect::<Vec<_>>(),
        ],
    )?;
    // RETURNING promises no order: place each id by its index.
    let mut passage_ids = vec![0; ps.len()];
    for r in &rows {
        passage_ids[r.get::<_, i32>(1) as usize] = r.get(0);
    }
    let chunks: Vec<(usize, usize, &NewChunk)> = ps
        .iter()
        .enumerate()
        .flat_map(|(pi, p)| p.chunks.iter().enumerate().map(move |(ci, c)| (pi, ci, c)))
        .collect();
    let inserted = insert_chunks(tx, doc_id, &passage_ids, &chunks)?;
    if inserted < chunks.len() {
        let (pi, ci, c) = first_missing(tx, &chunks)?;
        return Err(Error::Store {
            path: location.into(),
            reason: format!(
                "chunk {ci} of passage {pi} of {} uses embedding key {}, which is neither \
                 stored nor supplied; nothing was written for this document",
                doc.path, c.emb_key
            ),
        });
    }
    let reused = chunks
        .iter()
        .filter(|(_, _, c)| !written.contains(c.emb_key.as_str()))
        .count();
    Ok((passage_ids, reused))
}

/// Inserts chunks `(passage index, chunk index, chunk)` of passages
/// `passage_ids`, each with its vector copied from the cache row of its key
/// (written just before when the caller supplied it), in one statement;
/// returns how many were inserted (a chunk whose key is not cached is not).
fn insert_chunks(
    tx: &mut Transaction<'_>,
    doc_id: DocumentId,
    passage_ids: &[PassageId],
    chunks: &[(usize, usize, &NewChunk)],
) -> Result<usize> {
    let n = tx.execute(
        "INSERT INTO chunks \
         (doc_id, passage_id, idx, byte_start, byte_end, tokens, emb_key, vector) \
         SELECT $1, t.passage_id, t.idx, t.byte_start, t.byte_end, t.tokens, e.hash, e.vector \
         FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::text[]) AS t(passage_id, idx, byte_start, byte_end, tokens, emb_key) \
         JOIN embeddings e ON e.hash = t.emb_key",
        &[
            &doc_id,
            &chunks
                .iter()
                .map(|(pi, _, _)| passage_ids[*pi])
                .collect::<Vec<i64>>(),
            &chunks
                .iter()
                .map(|(_, ci, _)| *ci as i32)
                .collect::<Vec<i32>>(),
            &chunks
                .iter()
                .map(|(_, _, c)| c.byte_start as i64)
                .collect::<Vec<_>>(),
            &chunks
                .iter()
                .map(|(_, _, c)| c.byte_end as i64)
                .collect::<Vec<_>>(),
            &chunks
                .iter()
                .map(|(_, _, c)| c.tokens as i64)
                .collect::<Vec<_>>(),
            &chunks
                .iter()
                .map(|(_, _, c)| c.emb_key.as_str())
                .collect::<Vec<_>>(),
        ],
    )?;
    Ok(n as usize)
}

/// The first of `chunks` whose vector is neither stored nor supplied (what
/// made [`insert_chunks`] insert fewer rows than asked).
fn first_missing<'c>(
    tx: &mut Transaction<'_>,
    chunks: &[(usize, usize, &'c NewChunk)],
) -> Result<(usize, usize, &'c NewChunk)> {
    let keys: Vec<&str> = chunks.iter().map(|(_, _, c)| c.emb_key.as_str()).collect();
    let stored: HashSet<String> = tx
        .query("SELECT hash FROM embeddings WHERE hash = ANY($1)", &[&keys])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(*chunks
        .iter()
        .find(|(_, _, c)| !stored.contains(&c.emb_key))
        .unwrap_or(&chunks[0]))
}

/// Lexical keys as an `int4[]` literal (the same 32 bits, signed): one text
/// per passage, since `unnest` would flatten an array of arrays.
pub(super) fn key_array(keys: &[u32]) -> String {
    let mut out = String::with_capacity(keys.len() * 11 + 2);
    out.push('{');
    for (i, &k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&(k as i32).to_string());
    }
    out.push('}');
    out
}

/// Writes the marks the caller gave the new passages (`passage_ids`, in
/// passage order), after checking that each points at a passage that exists.
fn write_marks(
    tx: &mut Transaction<'_>,
    doc: &NewDocument,
    passage_ids: &[PassageId],
) -> Result<()> {
    let mut marks: Vec<(PassageId, PassageId, &str, f64)> = Vec::new();
    for (pi, p) in doc.passages.iter().enumerate() {
        let Some(m) = &p.duplicate_of else { continue };
        let canonical = crate::store::marked_canonical(m, pi, passage_ids)?;
        marks.push((passage_ids[pi], canonical, &m.kind, m.score));
    }
    if marks.is_empty() {
        return Ok(());
    }
    // Every canonical must exist: a stored one may have gone (an earlier
    // passage of this document was inserted just before).
    let column = |f: fn(&(PassageId, PassageId, &str, f64)) -> PassageId| -> Vec<PassageId> {
        marks.iter().map(f).collect()
    };
    let canonicals = column(|m| m.1);
    let found: HashSet<PassageId> = tx
        .query("SELECT id FROM passages WHERE id = ANY($1)", &[&canonicals])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(missing) = canonicals.iter().find(|id| !found.contains(id)) {
        return Err(Error::NotFound(format!("passage {missing}")));
    }
    tx.execute(
        "UPDATE passages p SET duplicate_of = t.canonical, dup_kind = t.kind, \
         dup_score = t.score \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::float8[]) \
         AS t(id, canonical, kind, score) WHERE p.id = t.id",
        &[
            &column(|m| m.0),
            &canonicals,
            &marks.iter().map(|m| m.2).collect::<Vec<_>>(),
            &marks.iter().map(|m| m.3).collect::<Vec<_>>(),
        ],
    )?;
    Ok(())
}

/// Records in `passage_texts` each of `ids` that is a canonical copy of a
/// non-empty text no row names yet, in passage order (the first of a
/// document's twins wins); returns `(id, norm_hash)` of those whose text
/// already had a row. The primary key decides: a concurrent writer of the
/// same text waits for this transaction and then finds the row.
fn record_texts(tx: &mut Transaction<'_>, ids: &[PassageId]) -> Result<Vec<(PassageId, String)>> {
    let rows = tx.query(
        "WITH candidates AS ( \
             SELECT id, doc_id, idx, norm_hash FROM passages \
             WHERE id = ANY($1) AND duplicate_of IS NULL AND btrim(norm) <> ''), \
         recorded AS ( \
             INSERT INTO passage_texts (norm_hash, passage_id, doc_id) \
             SELECT norm_hash, id, doc_id FROM candidates ORDER BY doc_id, idx \
             ON CONFLICT (norm_hash) DO NOTHING RETURNING passage_id) \
         SELECT id, norm_hash FROM candidates \
         WHERE id NOT IN (SELECT passage_id FROM recorded) ORDER BY doc_id, idx",
        &[&ids],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Under `exact_references`: each passage of `doc_id` whose text already
/// had a canonical copy becomes an exact reference to it and loses its
/// chunks; returns those passages.
fn refer_to_stored_copies(
    tx: &mut Transaction<'_>,
    doc_id: DocumentId,
    already_stored: &[(PassageId, String)],
) -> Result<Vec<PassageId>> {
    if already_stored.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<&str> = already_stored.iter().map(|(_, h)| h.as_str()).collect();
    let copy_of: HashMap<String, PassageId> = tx
        .query(
            "SELECT norm_hash, passage_id FROM passage_texts WHERE norm_hash = ANY($1)",
            &[&hashes],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (ids, canonicals): (Vec<PassageId>, Vec<PassageId>) = already_stored
        .iter()
        .filter_map(|(id, hash)| Some((*id, *copy_of.get(hash)?)))
        .filter(|(id, canonical)| id != canonical)
        .unzip();
    tx.execute(
        "UPDATE passages p SET duplicate_of = t.canonical, dup_kind = 'exact', dup_score = 1 \
         FROM unnest($1::bigint[], $2::bigint[]) AS t(id, canonical) \
         WHERE p.doc_id = $3 AND p.id = t.id",
        &[&ids, &canonicals, &doc_id],
    )?;
    tx.execute(
        "DELETE FROM chunks WHERE doc_id = $1 AND passage_id = ANY($2)",
        &[&doc_id, &ids],
    )?;
    Ok(ids)
}

/// Texts whose recorded canonical copy is gone (deleted, or now a
/// reference): each is given its oldest remaining canonical copy, if any.
fn rerecord_texts(tx: &mut Transaction<'_>, hashes: &[String]) -> Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO passage_texts (norm_hash, passage_id, doc_id) \
         SELECT DISTINCT ON (norm_hash) norm_hash, id, doc_id FROM passages \
         WHERE norm_hash = ANY($1) AND duplicate_of IS NULL AND btrim(norm) <> '' \
         ORDER BY norm_hash, id \
         ON CONFLICT (norm_hash) DO NOTHING",
        &[&hashes],
    )?;
    Ok(())
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
