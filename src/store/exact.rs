//! Exact vector search over vectors held in memory: every chunk vector as
//! one `[rows, dim]` matrix, scores as one matrix product (gemm through
//! candle), each passage scored by its best chunk. The SQLite store's
//! searcher below its index size and under `--exact` (loaded once per open
//! store, on first use; writes through the same store keep the matrix
//! current without reloading it: a replaced or removed document's rows are
//! marked dead and the new rows appended, so an ingest that searches before
//! every document reads the vectors once per run), and both stores' search
//! among a small candidate set ([`super::subset`]).

use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::store::{DocumentId, Filter, Neighbour, PassageId, VectorSet};

/// The loaded vectors, with the passage, document and chunk index of each row.
/// Rows of one passage are contiguous and in chunk order.
pub(crate) struct VectorIndex {
    passage_ids: Vec<PassageId>,
    doc_ids: Vec<DocumentId>,
    chunk_idx: Vec<u32>,
    live: Vec<bool>,
    dim: usize,
    matrix: Tensor,
}

impl VectorIndex {
    pub(crate) fn new(set: VectorSet) -> Result<Self> {
        let rows = set.len();
        let matrix = Tensor::from_vec(set.data, (rows, set.dim), &Device::Cpu)?;
        Ok(VectorIndex {
            live: vec![true; rows],
            passage_ids: set.passage_ids,
            doc_ids: set.doc_ids,
            chunk_idx: set.chunk_idx,
            dim: set.dim,
            matrix,
        })
    }

    fn len(&self) -> usize {
        self.passage_ids.len()
    }

    /// Marks every row of `doc` dead (its passages were replaced or removed).
    pub(crate) fn forget_document(&mut self, doc: DocumentId) {
        for (live, &d) in self.live.iter_mut().zip(&self.doc_ids) {
            if d == doc {
                *live = false;
            }
        }
    }

    /// Appends rows (a freshly written document's chunks).
    pub(crate) fn append(&mut self, set: VectorSet) -> Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        let added = Tensor::from_vec(set.data, (set.passage_ids.len(), set.dim), &Device::Cpu)?;
        self.matrix = Tensor::cat(&[&self.matrix, &added], 0)?;
        self.live
            .extend(std::iter::repeat_n(true, set.passage_ids.len()));
        self.passage_ids.extend(set.passage_ids);
        self.doc_ids.extend(set.doc_ids);
        self.chunk_idx.extend(set.chunk_idx);
        Ok(())
    }

    /// Cosine of `query` (unit vector) with every row.
    fn scores(&self, query: &[f32]) -> Result<Vec<f32>> {
        if self.len() == 0 {
            return Ok(Vec::new());
        }
        let q = Tensor::from_slice(query, (self.dim, 1), &Device::Cpu)?;
        Ok(self.matrix.matmul(&q)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The best `k` live passages for `query` that pass `filter`.
    pub(crate) fn nearest(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        let scores = self.scores(query)?;
        // Rows of a passage are contiguous: its best chunk is found in one pass.
        let mut best: Vec<(Neighbour, DocumentId)> = Vec::new();
        for r in (0..self.len()).filter(|&r| self.live[r]) {
            let (passage, score) = (self.passage_ids[r], scores[r]);
            let chunk = self.chunk_idx[r] as usize;
            match best.last_mut() {
                Some((last, _)) if last.passage == passage => {
                    if score > last.score {
                        (last.score, last.chunk) = (score, chunk);
                    }
                }
                _ => best.push((
                    Neighbour {
                        passage,
                        score,
                        chunk,
                    },
                    self.doc_ids[r],
                )),
            }
        }
        let mut best: Vec<Neighbour> = best
            .into_iter()
            .filter(|(n, doc)| filter.admits(n.passage, *doc, n.score))
            .map(|(n, _)| n)
            .collect();
        keep_best(&mut best, k, |n| (n.passage, n.score));
        Ok(best)
    }

    /// For each of `passages`, its `k` most similar other live passages
    /// scoring at least `floor` (and in `among`, when given): chunk rows
    /// compared block by block (`[block, dim] × [dim, n]`, so memory stays
    /// at `block × n` scores), then the best chunk pair per passage pair.
    pub(crate) fn neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let mut rows_of: HashMap<PassageId, Vec<usize>> = HashMap::new();
        for r in (0..self.len()).filter(|&r| self.live[r]) {
            rows_of.entry(self.passage_ids[r]).or_default().push(r);
        }
        let rows: Vec<usize> = passages
            .iter()
            .flat_map(|p| rows_of.get(p).into_iter().flatten().copied())
            .collect();
        let owners: Vec<PassageId> = rows.iter().map(|&r| self.passage_ids[r]).collect();
        let queries = |range: std::ops::Range<usize>| -> Result<Tensor> {
            let ids: Vec<u32> = rows[range].iter().map(|&r| r as u32).collect();
            let ids = Tensor::from_vec(ids.clone(), ids.len(), &Device::Cpu)?;
            Ok(self.matrix.index_select(&ids, 0)?)
        };
        let chunk_lists = self.top_k_for_queries(&queries, &owners, (2 * k, floor), among)?;
        let mut lists = per_passage(&self.passage_ids, &self.chunk_idx, &owners, chunk_lists, k);
        Ok(passages
            .iter()
            .map(|p| lists.remove(p).unwrap_or_default())
            .collect())
    }

    /// For each passage owning rows of `queries` (vectors from elsewhere:
    /// this index may hold only a subset of the store), its `k` most similar
    /// other live passages of this index scoring at least `floor`.
    pub(crate) fn neighbours_of_vectors(
        &self,
        queries: &VectorSet,
        k: usize,
        floor: f32,
    ) -> Result<HashMap<PassageId, Vec<Neighbour>>> {
        let block = |range: std::ops::Range<usize>| -> Result<Tensor> {
            let data = queries.data[range.start * queries.dim..range.end * queries.dim].to_vec();
            Ok(Tensor::from_vec(
                data,
                (range.len(), queries.dim),
                &Device::Cpu,
            )?)
        };
        let lists = self.top_k_for_queries(&block, &queries.passage_ids, (2 * k, floor), None)?;
        Ok(per_passage(
            &self.passage_ids,
            &self.chunk_idx,
            &queries.passage_ids,
            lists,
            k,
        ))
    }

    /// For each query row (`queries(range)` gives rows `range` as a
    /// `[len, dim]` matrix, row `i` owned by passage `owners[i]`), its `k`
    /// most similar live rows of other passages with cosine ≥ `min_score`
    /// (and in `among`, when given).
    fn top_k_for_queries(
        &self,
        queries: &dyn Fn(std::ops::Range<usize>) -> Result<Tensor>,
        owners: &[PassageId],
        (k, min_score): (usize, f32),
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        let n = self.len();
        let mut out = Vec::with_capacity(owners.len());
        if n == 0 || owners.is_empty() {
            return Ok(vec![Vec::new(); owners.len()]);
        }
        let block = (64 * 1024 * 1024 / 4 / n).clamp(16, 1024);
        let mt = self.matrix.t()?;
        let candidate =
            |j: usize| self.live[j] && among.is_none_or(|a| a.contains(&self.passage_ids[j]));
        for start in (0..owners.len()).step_by(block) {
            let end = (start + block).min(owners.len());
            let sims = queries(start..end)?.matmul(&mt)?.to_vec2::<f32>()?;
            // Each row's selection on its own thread: a row scan is as long
            // as the store, and the product above is already parallel.
            let lists: Vec<Vec<(usize, f32)>> = owners[start..end]
                .par_iter()
                .zip(sims)
                .map(|(&me, row)| {
                    let mut cand: Vec<(usize, f32)> = row
                        .into_iter()
                        .enumerate()
                        .filter(|&(j, s)| {
                            s >= min_score && self.passage_ids[j] != me && candidate(j)
                        })
                        .collect();
                    keep_best(&mut cand, k, |&(j, s)| (j as i64, s));
                    // The list kept every row above the floor until now: on
                    // real text (cosines crowd between 0.8 and 0.9) that is
                    // thousands of rows, and 119k such lists held 10+ GB.
                    cand.shrink_to_fit();
                    cand
                })
                .collect();
            out.extend(lists);
        }
        Ok(out)
    }
}

/// Chunk-level lists (row `i` of a query set owned by `owners[i]`; each
/// entry a row of a set whose rows belong to `passage_ids`, chunk
/// `chunk_idx`) folded into passage-level ones: the best chunk pair per
/// passage pair, the `k` best. Twice `k` chunks are asked per query chunk,
/// so a windowed neighbour's several chunks cannot crowd out other passages.
pub(crate) fn per_passage(
    passage_ids: &[PassageId],
    chunk_idx: &[u32],
    owners: &[PassageId],
    chunk_lists: Vec<Vec<(usize, f32)>>,
    k: usize,
) -> HashMap<PassageId, Vec<Neighbour>> {
    let mut best: HashMap<PassageId, HashMap<PassageId, Neighbour>> = HashMap::new();
    for (&p, list) in owners.iter().zip(chunk_lists) {
        let mine = best.entry(p).or_default();
        for (other, score) in list {
            let n = Neighbour {
                passage: passage_ids[other],
                score,
                chunk: chunk_idx[other] as usize,
            };
            mine.entry(n.passage)
                .and_modify(|b| {
                    if score > b.score {
                        *b = n
                    }
                })
                .or_insert(n);
        }
    }
    best.into_iter()
        .map(|(p, found)| {
            let mut list: Vec<Neighbour> = found.into_values().collect();
            keep_best(&mut list, k, |n| (n.passage, n.score));
            (p, list)
        })
        .collect()
}

/// Keeps the `k` highest-scoring entries, best first (ties by lower id).
pub(crate) fn keep_best<T>(list: &mut Vec<T>, k: usize, key: impl Fn(&T) -> (i64, f32)) {
    let order = |a: &T, b: &T| {
        let (ia, sa) = key(a);
        let (ib, sb) = key(b);
        sb.total_cmp(&sa).then(ia.cmp(&ib))
    };
    if list.len() > k && k > 0 {
        list.select_nth_unstable_by(k - 1, order);
    }
    list.truncate(k);
    list.sort_by(order);
}

/// The mean of a passage's chunk vectors, renormalised: the passage's own
/// vector when it was windowed into several chunks.
pub(crate) fn mean_unit(set: &VectorSet) -> Option<Vec<f32>> {
    if set.is_empty() {
        return None;
    }
    let mut v = vec![0f32; set.dim];
    for r in set.data.chunks_exact(set.dim) {
        v.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|a| *a /= norm);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_index(n: usize, dim: usize) -> VectorIndex {
        let mut rng = crate::test_support::Rng::new(0x2545_f491_4f6c_dd1d);
        let data: Vec<f32> = (0..n).flat_map(|_| rng.unit_vector(dim)).collect();
        VectorIndex::new(VectorSet {
            chunk_ids: (0..n as i64).collect(),
            passage_ids: (0..n as i64).collect(),
            doc_ids: (0..n as i64).map(|i| i / 10).collect(),
            chunk_idx: vec![0; n],
            dim,
            data,
        })
        .unwrap()
    }

    #[test]
    fn blocked_neighbours_equal_brute_force() {
        // More rows than one block, so several blocks run.
        let index = random_index(2100, 8);
        let all: Vec<PassageId> = (0..2100).collect();
        let lists = index.neighbours(&all, 5, 0.0, None).unwrap();
        for (p, list) in all.iter().zip(&lists).step_by(97) {
            let mut brute: Vec<(i64, f32)> = index
                .scores(
                    index
                        .matrix
                        .get(*p as usize)
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                        .as_slice(),
                )
                .unwrap()
                .into_iter()
                .enumerate()
                .filter(|&(j, s)| j as i64 != *p && s >= 0.0)
                .map(|(j, s)| (j as i64, s))
                .collect();
            keep_best(&mut brute, 5, |&x| x);
            let got: Vec<i64> = list.iter().map(|n| n.passage).collect();
            let want: Vec<i64> = brute.iter().map(|x| x.0).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn dead_rows_are_never_returned() {
        let mut index = random_index(100, 8);
        index.forget_document(3);
        let q = index.matrix.get(35).unwrap().to_vec1::<f32>().unwrap();
        let hits = index.nearest(&q, 100, &Filter::default()).unwrap();
        assert_eq!(hits.len(), 90);
        assert!(hits.iter().all(|n| !(30..40).contains(&n.passage)));
        let lists = index.neighbours(&[0], 100, -1.0, None).unwrap();
        assert!(lists[0].iter().all(|n| !(30..40).contains(&n.passage)));
    }
}
