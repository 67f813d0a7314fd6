//! Nearest neighbours, computed by the server: chunks ranked by
//! `vector <=> $1` (pgvector's cosine distance, through the HNSW index on
//! large tables, with iterative scans so filters do not starve the result),
//! then folded into passages (a passage's best chunk) here.
//!
//! A ranked page of `limit` chunks is exact for every passage it holds as
//! long as the page is complete: a passage left out has no chunk closer than
//! the page's last row. So a search asks for a page, and asks again for a
//! page four times as long while it holds fewer than `k` admitted passages,
//! the server had more rows, and the last row still scored above the floor.
//! The floor is applied here, not in SQL: a distance bound in the query
//! makes an index scan that finds too few rows walk the whole graph.
//!
//! `neighbours` (the k-NN graph behind `dups`) asks for many passages in one
//! statement (a `LATERAL` top-k per query chunk, each an index scan), and
//! falls back to the growing pages for a passage whose first page was not
//! enough (a crowd of look-alikes the caller's filter refuses).

use std::collections::{HashMap, HashSet};

use pgvector::HalfVector;

use super::read::{passage_chunk_vectors, passages_with_vectors, vectors_of_passages};
use super::{Connection, PostgresStore};
use crate::error::Result;
use crate::store::subset::{among_is_small, Subset};
use crate::store::{DocumentId, Filter, Neighbour, PassageId};

/// HNSW candidate list: at least this many (the SQLite store's index uses
/// 128 to 256; pgvector's default of 40 measured recall@10 0.91 at 5k
/// synthetic passages), at most pgvector's own limit.
const MIN_EF_SEARCH: usize = 128;
const MAX_EF_SEARCH: usize = 1000;
/// Passages whose neighbours one `LATERAL` statement fetches.
const NEIGHBOUR_BATCH: usize = 128;
/// Passages whose vectors are read per batch of queries searched exactly in
/// this process (a million of them are 1.5 GB).
const SUBSET_QUERY_BATCH: usize = 20_000;

/// Each query chunk's first page of ranked chunks and whether the server
/// had more, keyed by the query chunk's passage.
type FirstPages = HashMap<PassageId, Vec<(Vec<Hit>, bool)>>;

/// One ranked chunk: its passage, its index in the passage, its cosine.
#[derive(Debug, Clone, Copy)]
struct Hit {
    passage: PassageId,
    chunk: usize,
    score: f32,
}

/// What the server filters on before ranking.
struct Scope<'a> {
    exclude_passages: Vec<PassageId>,
    exclude_documents: Vec<DocumentId>,
    only_documents: Option<Vec<DocumentId>>,
    /// Lowest cosine worth returning.
    floor: Option<f32>,
    /// Filters the server is not told (the caller's candidate set).
    keep: &'a dyn Fn(&Hit) -> bool,
}

impl Scope<'_> {
    fn admits(&self, h: &Hit) -> bool {
        self.floor.is_none_or(|f| h.score >= f) && (self.keep)(h)
    }

    /// Whether a page of hits, nearest first, answers a top-`k` question:
    /// enough admitted passages, the server had no more, or the rest score
    /// below the floor.
    fn complete(
        &self,
        hits: &[Hit],
        more: bool,
        k: usize,
    ) -> (HashMap<PassageId, Neighbour>, bool) {
        let best = best_per_passage(hits.iter().filter(|h| self.admits(h)));
        let below_floor = matches!((self.floor, hits.last()), (Some(f), Some(h)) if h.score < f);
        let done = best.len() >= k || !more || below_floor;
        (best, done)
    }
}

fn hit(r: &postgres::Row, at: usize) -> Hit {
    Hit {
        passage: r.get(at),
        chunk: r.get::<_, i32>(at + 1).max(0) as usize,
        score: (1.0 - r.get::<_, f64>(at + 2)) as f32,
    }
}

impl PostgresStore {
    /// Sets the HNSW candidate list for pages of `limit` rows, or turns
    /// index scans off for exact search — only when they differ from what
    /// this session has (a round trip per search otherwise). Searches run
    /// outside transactions, so a `SET` is never rolled back behind the
    /// connection's record.
    fn search_settings(&self, db: &mut Connection, limit: usize) -> Result<()> {
        let wanted = (limit.clamp(MIN_EF_SEARCH, MAX_EF_SEARCH), self.exact_search);
        if db.search == Some(wanted) {
            return Ok(());
        }
        db.search = None;
        db.batch_execute(&format!(
            "SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order; \
             SET enable_indexscan = {}; SET jit = off",
            wanted.0,
            if wanted.1 { "off" } else { "on" }
        ))?;
        db.search = Some(wanted);
        Ok(())
    }

    /// Up to `limit` chunks nearest `query` within `scope`, nearest first;
    /// whether the server had more.
    fn ranked_page(
        &self,
        db: &mut Connection,
        query: &HalfVector,
        scope: &Scope,
        limit: usize,
    ) -> Result<(Vec<Hit>, bool)> {
        let only = scope.only_documents.as_ref();
        self.search_settings(db, limit)?;
        let rows = db.query(
            "SELECT passage_id, idx, (vector <=> $1)::float8 AS distance FROM chunks \
             WHERE passage_id <> ALL($2) AND doc_id <> ALL($3) \
             AND ($4::bigint[] IS NULL OR doc_id = ANY($4)) \
             ORDER BY vector <=> $1 LIMIT $5",
            &[
                query,
                &scope.exclude_passages,
                &scope.exclude_documents,
                &only,
                &(limit as i64),
            ],
        )?;
        let hits = rows.iter().map(|r| hit(r, 0)).collect();
        Ok((hits, rows.len() == limit))
    }

    /// The `k` passages nearest `query` in `scope`, best chunk each, best
    /// first, ties by lower id, over `db`; the first page asked for is
    /// `limit` rows long.
    fn nearest_in(
        &self,
        db: &mut Connection,
        query: &[f32],
        k: usize,
        scope: &Scope,
        mut limit: usize,
    ) -> Result<Vec<Neighbour>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let query = HalfVector::from_f32_slice(query);
        loop {
            let (hits, more) = self.ranked_page(db, &query, scope, limit)?;
            let (best, done) = scope.complete(&hits, more, k);
            if done {
                return Ok(ranked(best, k));
            }
            limit *= 4;
        }
    }

    pub(super) fn search_nearest(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        let scope = Scope {
            exclude_passages: filter.exclude_passages.iter().copied().collect(),
            exclude_documents: filter.exclude_documents.iter().copied().collect(),
            only_documents: filter
                .only_documents
                .as_ref()
                .map(|d| d.iter().copied().collect()),
            floor: filter.min_score,
            keep: &|_| true,
        };
        self.nearest_in(&mut self.db(), query, k, &scope, first_page(k))
    }

    /// For each passage, its `k` nearest other passages at or above `floor`
    /// (and in `among`, when given): the best pair of chunks counts.
    ///
    /// Each connection is one server process, so a long list of passages is
    /// split over one extra connection per core: the server ranks on every
    /// core (the `dups` k-NN graph was bound to one before).
    pub(super) fn search_neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        if let Some(among) = among {
            let mut db = self.db();
            if among_is_small(among.len(), passages_with_vectors(&mut db)?) {
                return self.neighbours_in_subset(&mut db, passages, (k, floor), among);
            }
        }
        let batches: Vec<&[PassageId]> = passages.chunks(NEIGHBOUR_BATCH).collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batches.len());
        if workers <= 1 {
            let mut db = self.db();
            return self.neighbour_batches(&mut db, &batches, k, floor, among);
        }
        let parts: Vec<Result<Vec<Vec<Neighbour>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let mine: Vec<&[PassageId]> =
                        batches.iter().skip(w).step_by(workers).copied().collect();
                    scope.spawn(move || {
                        let mut db = Connection::new(super::connect(&self.url, &self.location)?);
                        self.neighbour_batches(&mut db, &mine, k, floor, among)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("neighbour search thread"))
                .collect()
        });
        // Batch b went to worker b % workers, as its (b / workers)-th.
        let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
        let mut lists = Vec::with_capacity(passages.len());
        let mut cursors: Vec<std::vec::IntoIter<Vec<Neighbour>>> =
            parts.into_iter().map(Vec::into_iter).collect();
        for (b, batch) in batches.iter().enumerate() {
            lists.extend(cursors[b % workers].by_ref().take(batch.len()));
        }
        Ok(lists)
    }

    /// Neighbours among a small candidate set, in this process (see
    /// [`Subset`]): the candidates' vectors read once, the queries' a batch
    /// at a time (a filtered scan of the HNSW index would walk past every
    /// other passage to find enough candidates).
    fn neighbours_in_subset(
        &self,
        db: &mut Connection,
        passages: &[PassageId],
        (k, floor): (usize, f32),
        among: &HashSet<PassageId>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let dim = self.meta.dim;
        let ids: Vec<PassageId> = among.iter().copied().collect();
        let candidates = Subset::new(vectors_of_passages(db, &ids, dim)?, passages.len())?;
        let mut out = Vec::with_capacity(passages.len());
        for batch in passages.chunks(SUBSET_QUERY_BATCH) {
            let queries = vectors_of_passages(db, batch, dim)?;
            let mut lists = candidates.neighbours_of(&queries, k, floor)?;
            out.extend(batch.iter().map(|p| lists.remove(p).unwrap_or_default()));
        }
        Ok(out)
    }

    /// The lists of every passage of `batches`, in order, over `db`.
    fn neighbour_batches(
        &self,
        db: &mut Connection,
        batches: &[&[PassageId]],
        k: usize,
        floor: f32,
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let mut lists = Vec::new();
        for batch in batches {
            let pages = self.first_pages(db, batch, first_page(k))?;
            for &p in *batch {
                let keep = |h: &Hit| among.is_none_or(|a| a.contains(&h.passage));
                let scope = Scope {
                    exclude_passages: vec![p],
                    exclude_documents: Vec::new(),
                    only_documents: None,
                    floor: Some(floor),
                    keep: &keep,
                };
                lists.push(self.neighbours_of(db, p, k, &scope, pages.get(&p))?);
            }
        }
        Ok(lists)
    }

    /// One passage's list from the first pages of its chunks, asking again
    /// over `db` (growing pages from the next length on, per chunk) when a
    /// page did not answer.
    fn neighbours_of(
        &self,
        db: &mut Connection,
        p: PassageId,
        k: usize,
        scope: &Scope,
        pages: Option<&Vec<(Vec<Hit>, bool)>>,
    ) -> Result<Vec<Neighbour>> {
        let mut best: HashMap<PassageId, Neighbour> = HashMap::new();
        let mut merge = |found: HashMap<PassageId, Neighbour>| {
            for (id, n) in found {
                let entry = best.entry(id).or_insert(n);
                if n.score > entry.score {
                    *entry = n;
                }
            }
        };
        let mut unanswered = false;
        for (hits, more) in pages.into_iter().flatten() {
            let (found, done) = scope.complete(hits, *more, k);
            unanswered |= !done;
            merge(found);
        }
        if unanswered {
            for chunk in passage_chunk_vectors(db, p)? {
                let found = self.nearest_in(db, &chunk, k, scope, 4 * first_page(k))?;
                merge(found.into_iter().map(|n| (n.passage, n)).collect());
            }
        }
        Ok(ranked(best, k))
    }

    /// For each chunk of `passages`, its `limit` nearest chunks of other
    /// passages, in one statement; keyed by passage, a page per chunk with
    /// whether the server had more.
    fn first_pages(
        &self,
        db: &mut Connection,
        passages: &[PassageId],
        limit: usize,
    ) -> Result<FirstPages> {
        self.search_settings(db, limit)?;
        let rows = db.query(
            "SELECT q.passage_id, q.idx, n.passage_id, n.idx, n.distance FROM chunks q \
             CROSS JOIN LATERAL ( \
                 SELECT c.passage_id, c.idx, (c.vector <=> q.vector)::float8 AS distance \
                 FROM chunks c WHERE c.passage_id <> q.passage_id \
                 ORDER BY c.vector <=> q.vector LIMIT $2) n \
             WHERE q.passage_id = ANY($1) ORDER BY q.passage_id, q.idx, n.distance",
            &[&passages, &(limit as i64)],
        )?;
        let mut pages: HashMap<(PassageId, i32), Vec<Hit>> = HashMap::new();
        for r in &rows {
            pages
                .entry((r.get(0), r.get(1)))
                .or_default()
                .push(hit(r, 2));
        }
        let mut out = FirstPages::new();
        for ((p, _), hits) in pages {
            let more = hits.len() == limit;
            out.entry(p).or_default().push((hits, more));
        }
        Ok(out)
    }
}

/// The first page asked for a top-`k`: room for each passage's best chunk
/// and its others.
fn first_page(k: usize) -> usize {
    2 * k + 8
}

/// Each passage's best chunk among `hits`.
fn best_per_passage<'a>(hits: impl Iterator<Item = &'a Hit>) -> HashMap<PassageId, Neighbour> {
    let mut best: HashMap<PassageId, Neighbour> = HashMap::new();
    for h in hits {
        let n = Neighbour {
            passage: h.passage,
            score: h.score,
            chunk: h.chunk,
        };
        let entry = best.entry(h.passage).or_insert(n);
        if (n.score, std::cmp::Reverse(n.chunk)) > (entry.score, std::cmp::Reverse(entry.chunk)) {
            *entry = n;
        }
    }
    best
}

/// The best `k`, by score then lower passage id.
fn ranked(best: HashMap<PassageId, Neighbour>, k: usize) -> Vec<Neighbour> {
    let mut out: Vec<Neighbour> = best.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.passage.cmp(&b.passage)));
    out.truncate(k);
    out
}
