//! Nearest neighbours, computed by the server: chunks ranked by
//! `vector <=> $1` (pgvector's cosine distance, through the HNSW index on
//! large tables, with iterative scans so filters do not starve the result),
//! then folded into passages (a passage's best chunk) here.
//!
//! A ranked page of `limit` chunks is exact for every passage it holds as
//! long as the page is complete: a passage left out has no chunk closer than
//! the page's last row. So a search asks for a page, and asks again for a
//! page four times as long while it holds fewer than `k` admitted passages
//! and the server had more rows to give.

use std::collections::HashMap;

use pgvector::HalfVector;

use super::PostgresStore;
use crate::error::Result;
use crate::store::{Admit, DocumentId, Filter, Neighbour, PassageId};

/// Largest HNSW candidate list pgvector accepts (`hnsw.ef_search`).
const MAX_EF_SEARCH: usize = 1000;

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
    /// Filters the server cannot know (the caller's `admit`).
    keep: &'a dyn Fn(&Hit) -> bool,
}

impl PostgresStore {
    /// Up to `limit` chunks nearest `query` within `scope`, nearest first;
    /// whether the server had more.
    fn ranked_page(
        &self,
        query: &HalfVector,
        scope: &Scope,
        limit: usize,
    ) -> Result<(Vec<Hit>, bool)> {
        let only = scope.only_documents.as_ref();
        let max_distance = scope.floor.map(|f| 1.0 - f64::from(f));
        let mut db = self.db();
        db.batch_execute(&format!(
            "SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order",
            limit.clamp(40, MAX_EF_SEARCH)
        ))?;
        let rows = db.query(
            "SELECT passage_id, idx, (vector <=> $1)::float8 AS distance FROM chunks \
             WHERE passage_id <> ALL($2) AND doc_id <> ALL($3) \
             AND ($4::bigint[] IS NULL OR doc_id = ANY($4)) \
             AND ($5::float8 IS NULL OR (vector <=> $1) <= $5) \
             ORDER BY vector <=> $1 LIMIT $6",
            &[
                query,
                &scope.exclude_passages,
                &scope.exclude_documents,
                &only,
                &max_distance,
                &(limit as i64),
            ],
        )?;
        let more = rows.len() == limit;
        let hits = rows
            .iter()
            .map(|r| Hit {
                passage: r.get(0),
                chunk: r.get::<_, i32>(1).max(0) as usize,
                score: (1.0 - r.get::<_, f64>(2)) as f32,
            })
            .collect();
        Ok((hits, more))
    }

    /// The `k` passages nearest `query` in `scope`, best chunk each, best
    /// first, ties by lower id.
    fn nearest_in(&self, query: &[f32], k: usize, scope: &Scope) -> Result<Vec<Neighbour>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let query = HalfVector::from_f32_slice(query);
        let mut limit = 2 * k + 8;
        loop {
            let (hits, more) = self.ranked_page(&query, scope, limit)?;
            let best = best_per_passage(hits.iter().filter(|h| (scope.keep)(h)));
            if best.len() >= k || !more {
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
        self.nearest_in(query, k, &scope)
    }

    /// For each passage, its `k` nearest other passages at or above `floor`
    /// (and admitted, when `admit` is given): the best pair of chunks counts.
    pub(super) fn search_neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        admit: Option<&Admit>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let mut lists = Vec::with_capacity(passages.len());
        for &p in passages {
            let keep = |h: &Hit| admit.is_none_or(|a| a(p, h.passage));
            let scope = Scope {
                exclude_passages: vec![p],
                exclude_documents: Vec::new(),
                only_documents: None,
                floor: Some(floor),
                keep: &keep,
            };
            let mut best: HashMap<PassageId, Neighbour> = HashMap::new();
            for chunk in self.passage_chunk_vectors(p)? {
                for n in self.nearest_in(&chunk, k, &scope)? {
                    let entry = best.entry(n.passage).or_insert(n);
                    if n.score > entry.score {
                        *entry = n;
                    }
                }
            }
            lists.push(ranked(best, k));
        }
        Ok(lists)
    }
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
