//! Reads: documents, cached vectors, the bulk vector load for search, passage
//! lookups by id or by file:line, the light rows dedup needs, and stats. None
//! of these write, so all work on a read-only store.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::types::{
    ChunkId, DedupRow, DocumentId, DocumentRow, PassageId, PassageRow, Stats, VectorSet,
};

const DOCUMENT_COLUMNS: &str = "d.id, d.path, d.content_hash, d.size, d.mtime, d.date, \
     d.ingest_order, d.ingested_at, \
     (SELECT COUNT(*) FROM passages p WHERE p.doc_id = d.id)";

const PASSAGE_COLUMNS: &str = "p.id, p.doc_id, d.path, d.date, p.idx, p.line_start, p.line_end, \
     p.byte_start, p.byte_end, p.text, p.duplicate_of, p.dup_kind, p.dup_score, p.norm_hash";

/// Reads a non-negative integer column. The crate is built without
/// rusqlite's `fallible_uint` feature, so counts and offsets go through i64.
fn uint<T: TryFrom<i64>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let v: i64 = r.get(i)?;
    T::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, v))
}

fn document_row(r: &Row<'_>) -> rusqlite::Result<DocumentRow> {
    Ok(DocumentRow {
        id: r.get(0)?,
        path: r.get(1)?,
        content_hash: r.get(2)?,
        size: uint(r, 3)?,
        mtime: r.get(4)?,
        date: r.get(5)?,
        ingest_order: r.get(6)?,
        ingested_at: r.get(7)?,
        passages: uint(r, 8)?,
    })
}

fn passage_row(r: &Row<'_>) -> rusqlite::Result<PassageRow> {
    Ok(PassageRow {
        id: r.get(0)?,
        doc_id: r.get(1)?,
        path: r.get(2)?,
        date: r.get(3)?,
        idx: uint(r, 4)?,
        line_start: uint(r, 5)?,
        line_end: uint(r, 6)?,
        byte_start: uint(r, 7)?,
        byte_end: uint(r, 8)?,
        text: r.get(9)?,
        duplicate_of: r.get(10)?,
        dup_kind: r.get(11)?,
        dup_score: r.get(12)?,
        norm_hash: r.get(13)?,
    })
}

/// Ids as a JSON array, for `IN (SELECT value FROM json_each(?))`: one
/// bound parameter however many ids.
fn json_ids(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

/// Appends a stored vector to `out`: `dim` little-endian f16 values (format
/// 3 on), or `dim` f32 values (rows written by format 1–2); `false` for any
/// other length (a damaged row).
pub(super) fn decode_into(blob: &[u8], dim: usize, out: &mut Vec<f32>) -> bool {
    if blob.len() == dim * 2 {
        out.extend(
            blob.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        );
    } else if blob.len() == dim * 4 {
        out.extend(
            blob.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    } else {
        return false;
    }
    true
}

impl SqliteStore {
    fn bad_vector(&self, what: &str) -> Error {
        Error::Store {
            path: self.path.clone(),
            reason: format!(
                "stored vector {what} does not have {} dimensions; the file is damaged\n  fix: \
                 remove it and run `pareil ingest` again",
                self.meta.dim
            ),
        }
    }

    /// The document stored under exactly `path`, to skip unchanged files by
    /// `content_hash`.
    pub fn document_by_path(&self, path: &str) -> Result<Option<DocumentRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.path = ?1"),
                [path],
                document_row,
            )
            .optional()?)
    }

    /// All documents in first-ingest order.
    pub fn documents(&self) -> Result<Vec<DocumentRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents d ORDER BY d.ingest_order"
        ))?;
        let rows = stmt
            .query_map([], document_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Vectors already stored for any of `keys`; missing keys are absent from
    /// the map.
    pub fn cached_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let dim = self.meta.dim;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT vector FROM embeddings WHERE hash = ?1")?;
        let mut out = HashMap::new();
        for key in keys {
            if out.contains_key(key) {
                continue;
            }
            let mut rows = stmt.query([key])?;
            if let Some(row) = rows.next()? {
                let mut v = Vec::with_capacity(dim);
                if !decode_into(
                    row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?,
                    dim,
                    &mut v,
                ) {
                    return Err(self.bad_vector(key));
                }
                out.insert(key.clone(), v);
            }
        }
        Ok(out)
    }

    /// Every chunk's vector, row-major, rows of a passage together (a
    /// passage's chunks are written together, so chunk id order keeps them
    /// contiguous and in order without a sort). Reads
    /// only ids and blobs (no text) and joins on integer keys, so it stays
    /// fast for 100k+ rows.
    pub fn load_vectors(&self) -> Result<VectorSet> {
        self.vectors_where("1", [])
    }

    /// The vectors of one document's chunks (appended to the in-memory
    /// index after a write).
    pub(super) fn vectors_of_document(&self, doc: DocumentId) -> Result<VectorSet> {
        self.vectors_where("p.doc_id = ?1", [doc])
    }

    /// The vectors of one passage's chunks, in chunk order.
    pub(super) fn vectors_of_passage(&self, passage: PassageId) -> Result<VectorSet> {
        self.vectors_where("c.passage_id = ?1", [passage])
    }

    /// The vectors of these chunks (those that still exist), in id order.
    pub(super) fn vectors_of_chunks(&self, ids: &[ChunkId]) -> Result<VectorSet> {
        self.vectors_where("c.id IN (SELECT value FROM json_each(?1))", [json_ids(ids)])
    }

    /// The vectors of these documents' chunks, in id order.
    pub(super) fn vectors_of_documents(&self, docs: &[DocumentId]) -> Result<VectorSet> {
        self.vectors_where(
            "p.doc_id IN (SELECT value FROM json_each(?1))",
            [json_ids(docs)],
        )
    }

    /// Up to `limit` chunk vectors with ids above `after`, in id order: the
    /// index is built in batches so memory stays bounded.
    pub(super) fn vectors_after(&self, after: ChunkId, limit: usize) -> Result<VectorSet> {
        self.vectors_limited("c.id > ?1", [after], Some(limit))
    }

    /// Every chunk as (chunk id, passage id, index in its passage), id order:
    /// what the approximate index's keys mean, without the vectors.
    pub(super) fn chunk_places(&self) -> Result<Vec<(ChunkId, PassageId, u32)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, passage_id, idx FROM chunks ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, uint(r, 2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Number of chunks with ids in `lo..=hi`.
    pub(super) fn chunks_between(&self, lo: ChunkId, hi: ChunkId) -> Result<usize> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM chunks WHERE id BETWEEN ?1 AND ?2",
            [lo, hi],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    fn vectors_where<P: rusqlite::Params>(&self, condition: &str, params: P) -> Result<VectorSet> {
        self.vectors_limited(condition, params, None)
    }

    fn vectors_limited<P: rusqlite::Params>(
        &self,
        condition: &str,
        params: P,
        limit: Option<usize>,
    ) -> Result<VectorSet> {
        let limit = limit
            .map(|n| format!(" LIMIT {}", n.min(i64::MAX as usize)))
            .unwrap_or_default();
        let dim = self.meta.dim;
        let mut set = VectorSet {
            dim,
            ..VectorSet::default()
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT c.id, c.passage_id, p.doc_id, c.idx, e.vector FROM chunks c \
             JOIN passages p ON p.id = c.passage_id \
             JOIN embeddings e ON e.id = c.emb_id WHERE {condition} ORDER BY c.id{limit}"
        ))?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            let chunk_id: i64 = row.get(0)?;
            let blob = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
            if !decode_into(blob, dim, &mut set.data) {
                return Err(self.bad_vector(&format!("of chunk {chunk_id}")));
            }
            set.chunk_ids.push(chunk_id);
            set.passage_ids.push(row.get(1)?);
            set.doc_ids.push(row.get(2)?);
            set.chunk_idx.push(uint(row, 3)?);
        }
        Ok(set)
    }

    /// One passage with its document's path.
    pub fn passage(&self, id: PassageId) -> Result<Option<PassageRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id \
                     WHERE p.id = ?1"
                ),
                [id],
                passage_row,
            )
            .optional()?)
    }

    /// Passages for `ids`, in the order given; ids not in the store are skipped.
    pub fn passages_by_ids(&self, ids: &[PassageId]) -> Result<Vec<PassageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id \
             WHERE p.id = ?1"
        ))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = stmt.query_row([id], passage_row).optional()? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// All passages of one document, in order.
    pub fn passages_of(&self, doc_id: DocumentId) -> Result<Vec<PassageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id \
             WHERE p.doc_id = ?1 ORDER BY p.idx"
        ))?;
        let rows = stmt
            .query_map([doc_id], passage_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The passage of the document stored under exactly `path` whose line
    /// span contains the 1-based `line`; `Ok(None)` when there is no such
    /// document, or the line falls between passages or past the end.
    pub fn passage_at(&self, path: &str, line: usize) -> Result<Option<PassageRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id \
                     WHERE d.path = ?1 AND p.line_start <= ?2 AND p.line_end >= ?2 \
                     ORDER BY p.idx LIMIT 1"
                ),
                rusqlite::params![path, line as i64],
                passage_row,
            )
            .optional()?)
    }

    /// Every passage with its stored normalised text, ordered by first sight
    /// (document ingest order, then passage index).
    pub fn dedup_rows(&self) -> Result<Vec<DedupRow>> {
        self.read_dedup_rows("", [])
    }

    /// The dedup records of the passages of `docs`, in ingest order.
    pub fn dedup_rows_of(&self, docs: &[DocumentId]) -> Result<Vec<DedupRow>> {
        self.read_dedup_rows(
            "WHERE p.doc_id IN (SELECT value FROM json_each(?1))",
            [json_ids(docs)],
        )
    }

    fn read_dedup_rows(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<DedupRow>> {
        // A store still in an older format (opened read-only) has no traits.
        let traits = if self.has_traits()? {
            "p.sketch IS NOT NULL, p.lang"
        } else {
            "0, NULL"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {PASSAGE_COLUMNS}, p.norm, d.ingest_order, {traits} FROM passages p \
             JOIN documents d ON d.id = p.doc_id {filter} ORDER BY d.ingest_order, p.idx"
        ))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(DedupRow {
                    passage: passage_row(r)?,
                    norm: r.get(14)?,
                    order: r.get(15)?,
                    lang: r.get::<_, bool>(16)?.then(|| r.get(17)).transpose()?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Each document's highest passage id (see [`Store::last_passage_ids`]).
    pub fn last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id, max(id) FROM passages GROUP BY doc_id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<HashMap<_, _>>>()?;
        Ok(rows)
    }

    /// Calls `visit` with every passage's stored sketch (those stored since
    /// format 4), in no particular order.
    pub fn for_each_sketch(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()> {
        if !self.has_traits()? {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, sketch FROM passages WHERE sketch IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if let rusqlite::types::ValueRef::Blob(sketch) = r.get_ref(1)? {
                visit(r.get(0)?, sketch);
            }
        }
        Ok(())
    }

    /// Passages stored without traits, after `after` by id (none in a store
    /// still in an older format, opened read-only: nothing could be set).
    pub fn passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>> {
        if !self.has_traits()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, text, norm FROM passages WHERE id > ?1 AND sketch IS NULL \
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(rusqlite::params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Whether passages carry `lang` and `sketch` (format 4 on).
    fn has_traits(&self) -> Result<bool> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(version >= super::schema::TRAITS_VERSION)
    }

    /// Counts, file size and the recorded model.
    pub fn stats(&self) -> Result<Stats> {
        let count =
            |sql: &str| -> Result<usize> { Ok(self.conn.query_row(sql, [], |r| uint(r, 0))?) };
        let file_len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let schema_version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(Stats {
            path: self.path.clone(),
            schema_version,
            documents: count("SELECT COUNT(*) FROM documents")?,
            passages: count("SELECT COUNT(*) FROM passages")?,
            chunks: count("SELECT COUNT(*) FROM chunks")?,
            embeddings: count("SELECT COUNT(*) FROM embeddings")?,
            orphan_embeddings: count(
                "SELECT COUNT(*) FROM embeddings e WHERE NOT EXISTS \
                 (SELECT 1 FROM chunks c WHERE c.emb_id = e.id)",
            )?,
            duplicates: count("SELECT COUNT(*) FROM passages WHERE duplicate_of IS NOT NULL")?,
            file_size_bytes: file_len(&self.path) + file_len(std::path::Path::new(&wal)),
            meta: self.meta.clone(),
            search_index: self.search_index_stats()?,
        })
    }
}
