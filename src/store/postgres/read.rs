//! Reads: documents, passages, dedup rows, cached vectors and stats, with the
//! same columns and orders as the SQLite store's `read.rs`.

use std::collections::HashMap;

use pgvector::HalfVector;
use postgres::types::ToSql;
use postgres::{GenericClient, Row};

use super::write::key_array;
use super::PostgresStore;
use crate::error::Result;
use crate::store::types::{
    DedupRow, DocumentId, DocumentRow, PassageId, PassageRow, SearchIndexStats, Stats, VectorSet,
};

const DOCUMENT_COLUMNS: &str = "d.id, d.path, d.content_hash, d.size, d.mtime, d.date, \
     d.ingest_order, d.ingested_at, \
     (SELECT COUNT(*) FROM passages p WHERE p.doc_id = d.id)";

const PASSAGE_COLUMNS: &str = "p.id, p.doc_id, d.path, d.date, p.idx, p.line_start, p.line_end, \
     p.byte_start, p.byte_end, p.text, p.duplicate_of, p.dup_kind, p.dup_score, p.norm_hash";

/// A non-negative count or offset stored as bigint/integer.
fn uint(r: &Row, i: usize) -> usize {
    match r.columns()[i].type_() {
        &postgres::types::Type::INT4 => r.get::<_, i32>(i).max(0) as usize,
        _ => r.get::<_, i64>(i).max(0) as usize,
    }
}

fn document_row(r: &Row) -> DocumentRow {
    DocumentRow {
        id: r.get(0),
        path: r.get(1),
        content_hash: r.get(2),
        size: uint(r, 3) as u64,
        mtime: r.get(4),
        date: r.get(5),
        ingest_order: r.get(6),
        ingested_at: r.get(7),
        passages: uint(r, 8),
    }
}

fn passage_row(r: &Row) -> PassageRow {
    PassageRow {
        id: r.get(0),
        doc_id: r.get(1),
        path: r.get(2),
        date: r.get(3),
        idx: uint(r, 4),
        line_start: uint(r, 5),
        line_end: uint(r, 6),
        byte_start: uint(r, 7),
        byte_end: uint(r, 8),
        text: r.get(9),
        duplicate_of: r.get(10),
        dup_kind: r.get(11),
        dup_score: r.get(12),
        norm_hash: r.get(13),
    }
}

/// A stored `halfvec` as f32 values.
pub(super) fn decode(v: &HalfVector) -> Vec<f32> {
    v.as_slice().iter().map(|x| x.to_f32()).collect()
}

impl PostgresStore {
    pub(super) fn read_document_by_path(&self, path: &str) -> Result<Option<DocumentRow>> {
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.path = $1");
        Ok(self
            .db()
            .query_opt(&sql, &[&path])?
            .map(|r| document_row(&r)))
    }

    pub(super) fn read_documents(&self) -> Result<Vec<DocumentRow>> {
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents d ORDER BY d.ingest_order");
        Ok(self
            .db()
            .query(&sql, &[])?
            .iter()
            .map(document_row)
            .collect())
    }

    /// Passages matching `condition` (over `p` and `d`), in document and
    /// passage order.
    pub(super) fn read_passages(
        &self,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<PassageRow>> {
        let sql = format!(
            "SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id \
             WHERE {condition} ORDER BY d.ingest_order, p.idx"
        );
        Ok(self
            .db()
            .query(&sql, params)?
            .iter()
            .map(passage_row)
            .collect())
    }

    /// Every passage's dedup record, or those of `docs` only, in ingest order.
    pub(super) fn read_dedup_rows(&self, docs: Option<&[DocumentId]>) -> Result<Vec<DedupRow>> {
        let mut db = self.db();
        match docs {
            Some(docs) => read_dedup_rows_where(
                &mut **db,
                self.has_traits,
                "WHERE p.doc_id = ANY($1)",
                &[&docs],
            ),
            None => read_dedup_rows_where(&mut **db, self.has_traits, "", &[]),
        }
    }

    /// The passages filed under one of `keys` and their exact twins (see
    /// [`Store::lexical_neighbours`]); `None` while a passage lacks keys.
    pub(super) fn read_lexical_neighbours(
        &self,
        keys: &[Vec<u32>],
    ) -> Result<Option<Vec<DedupRow>>> {
        if !self.has_keys {
            return Ok(None);
        }
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let unkeyed: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM passages WHERE lex_keys IS NULL)",
                &[],
            )?
            .get(0);
        if unkeyed {
            return Ok(None);
        }
        // One GIN probe per text, so each candidate is rechecked against
        // one text's ~100 keys (`&&` compares every pair); the index always,
        // whatever the planner guesses of a freshly written table (a scan
        // rechecks every row), and no JIT for a query of milliseconds.
        tx.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")?;
        let sets: Vec<String> = keys.iter().map(|k| key_array(k)).collect();
        let rows = read_dedup_rows_where(
            &mut tx,
            self.has_traits,
            "WHERE p.norm_hash IN (SELECT m.norm_hash FROM unnest($1::text[]) AS q(keys) \
             CROSS JOIN LATERAL (SELECT norm_hash FROM passages \
             WHERE lex_keys && q.keys::int4[]) m)",
            &[&sets],
        )?;
        tx.commit()?;
        Ok(Some(rows))
    }

    /// Each document's highest passage id (see [`Store::last_passage_ids`]).
    pub(super) fn read_last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>> {
        Ok(self
            .db()
            .query("SELECT doc_id, max(id) FROM passages GROUP BY doc_id", &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    pub(super) fn read_passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>> {
        if !self.has_traits {
            return Ok(Vec::new());
        }
        let missing = if self.has_keys {
            "sketch IS NULL OR lex_keys IS NULL"
        } else {
            "sketch IS NULL"
        };
        Ok(self
            .db()
            .query(
                &format!(
                    "SELECT id, text, norm FROM passages WHERE id > $1 AND ({missing}) \
                     ORDER BY id LIMIT $2"
                ),
                &[&after, &(limit as i64)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Every stored sketch, fetched through a portal a batch at a time so
    /// that a million of them are never held at once.
    pub(super) fn read_sketches(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()> {
        const BATCH: i32 = 10_000;
        if !self.has_traits {
            return Ok(());
        }
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let portal = tx.bind(
            "SELECT id, sketch FROM passages WHERE sketch IS NOT NULL",
            &[],
        )?;
        loop {
            let rows = tx.query_portal(&portal, BATCH)?;
            for r in &rows {
                visit(r.get(0), r.get(1));
            }
            if rows.len() < BATCH as usize {
                return Ok(());
            }
        }
    }

    pub(super) fn read_cached_embeddings(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<f32>>> {
        let rows = self.db().query(
            "SELECT hash, vector FROM embeddings WHERE hash = ANY($1)",
            &[&keys],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), decode(&r.get::<_, HalfVector>(1))))
            .collect())
    }

    pub(super) fn read_passage_vector(&self, id: PassageId) -> Result<Option<Vec<f32>>> {
        let chunks = passage_chunk_vectors(&mut self.db(), id)?;
        if chunks.is_empty() {
            return Ok(None);
        }
        let mut mean = vec![0f32; self.meta.dim];
        for v in &chunks {
            mean.iter_mut().zip(v).for_each(|(m, x)| *m += x);
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|x| *x /= norm);
        Ok(Some(mean))
    }

    pub(super) fn read_stats(&self) -> Result<Stats> {
        let mut db = self.db();
        let row = db.query_one(
            "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM passages), \
             (SELECT COUNT(*) FROM chunks), (SELECT COUNT(*) FROM embeddings), \
             (SELECT COUNT(*) FROM embeddings e WHERE NOT EXISTS \
                 (SELECT 1 FROM chunks c WHERE c.emb_key = e.hash)), \
             (SELECT COUNT(*) FROM passages WHERE duplicate_of IS NOT NULL), \
             (SELECT SUM(pg_total_relation_size(c.oid))::bigint FROM pg_class c \
                 WHERE c.relnamespace = current_schema()::regnamespace \
                 AND c.relname = ANY($1) AND c.relkind = 'r'), \
             (SELECT value FROM pareil_meta WHERE key = 'schema_version'), \
             (SELECT pg_relation_size(c.oid)::bigint FROM pg_class c \
                 WHERE c.relnamespace = current_schema()::regnamespace \
                 AND c.relname = 'chunks_hnsw')",
            &[&super::schema::TABLES
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()],
        )?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as usize;
        Ok(Stats {
            path: self.location.clone().into(),
            schema_version: row.get::<_, String>(7).parse().unwrap_or(0),
            documents: count(0),
            passages: count(1),
            chunks: count(2),
            embeddings: count(3),
            orphan_embeddings: count(4),
            duplicates: count(5),
            file_size_bytes: row.get::<_, Option<i64>>(6).unwrap_or(0).max(0) as u64,
            meta: self.meta.clone(),
            // The server's HNSW index covers every stored vector; there is
            // no tail searched apart.
            search_index: Some(SearchIndexStats {
                path: "pgvector HNSW index chunks_hnsw".into(),
                vectors: count(2),
                chunks_after: 0,
                file_size_bytes: row.get::<_, Option<i64>>(8).unwrap_or(0).max(0) as u64,
            }),
        })
    }
}

/// The chunk vectors of one passage, in chunk order.
pub(super) fn passage_chunk_vectors(
    db: &mut postgres::Client,
    id: PassageId,
) -> Result<Vec<Vec<f32>>> {
    let rows = db.query(
        "SELECT vector FROM chunks WHERE passage_id = $1 ORDER BY idx",
        &[&id],
    )?;
    Ok(rows
        .iter()
        .map(|r| decode(&r.get::<_, HalfVector>(0)))
        .collect())
}

/// The chunk vectors of `passages`, in chunk id order (one statement).
pub(super) fn vectors_of_passages(
    db: &mut postgres::Client,
    passages: &[PassageId],
    dim: usize,
) -> Result<VectorSet> {
    let rows = db.query(
        "SELECT id, passage_id, doc_id, idx, vector FROM chunks \
         WHERE passage_id = ANY($1) ORDER BY id",
        &[&passages],
    )?;
    let mut set = VectorSet {
        dim,
        ..VectorSet::default()
    };
    for r in &rows {
        set.chunk_ids.push(r.get(0));
        set.passage_ids.push(r.get(1));
        set.doc_ids.push(r.get(2));
        set.chunk_idx.push(r.get::<_, i32>(3) as u32);
        set.data.extend(decode(&r.get::<_, HalfVector>(4)));
    }
    Ok(set)
}

/// How many passages have vectors (live, not stored as references).
pub(super) fn passages_with_vectors(db: &mut postgres::Client) -> Result<usize> {
    let n: i64 = db
        .query_one("SELECT count(DISTINCT passage_id) FROM chunks", &[])?
        .get(0);
    Ok(n as usize)
}

/// Dedup records of the passages `filter` admits, in ingest order.
fn read_dedup_rows_where(
    db: &mut impl GenericClient,
    has_traits: bool,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<DedupRow>> {
    // A store still at schema 1 (opened read-only) has no traits.
    let traits = if has_traits {
        "p.sketch IS NOT NULL, p.lang"
    } else {
        "false, NULL::text"
    };
    let sql = format!(
        "SELECT {PASSAGE_COLUMNS}, p.norm, d.ingest_order, {traits} FROM passages p \
         JOIN documents d ON d.id = p.doc_id {filter} ORDER BY d.ingest_order, p.idx"
    );
    Ok(db
        .query(&sql, params)?
        .iter()
        .map(|r| DedupRow {
            passage: passage_row(r),
            norm: r.get(14),
            order: r.get(15),
            lang: r.get::<_, bool>(16).then(|| r.get(17)),
        })
        .collect())
}
