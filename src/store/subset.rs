//! Searching among a candidate set held in memory: what both stores do for
//! [`Store::neighbours_among`](super::Store::neighbours_among) when the
//! candidates are few next to the store ([`among_is_small`]), so that no
//! search walks the store's own index (or a server's) past every other
//! passage. The candidates' vectors are compared exactly while the work
//! (queries × candidates) is small; beyond that, through a throwaway HNSW
//! graph over the candidates alone, so each search costs what it would in
//! a store of that size. (69k French passages against 5k in other
//! languages, 3.5 × 10⁸ pairs, took 2.8 s exactly on 2 cores; ten times
//! both would take a hundred times that, where a graph over 50k vectors is
//! built in seconds.)

use std::collections::HashMap;

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::exact::{per_passage, VectorIndex};
use super::{Neighbour, PassageId, VectorSet};
use crate::error::{Error, Result};

/// A search restricted to candidates is done exactly, in memory, when fewer
/// than 1 in `SMALL_SHARE` passages of the store are candidates. An index
/// walk restricted to them goes on until it has found enough, so with few
/// candidates it visits most of the graph (a server's filtered scan alike):
/// the common case of a store in one language with a few passages in
/// others. A synthetic 100k store whose language guesses were 69 % French
/// and 5 % other languages: the cross-language searches of `dups` took 52 s
/// through the SQLite store's index, 3.1 s exactly (BENCHMARKS.md).
const SMALL_SHARE: usize = 16;

/// Query × candidate pairs up to which the comparison is exact: about 10 s
/// of matrix products on 2 cores (3.5 × 10⁸ pairs took 3.1 s).
const EXACT_MAX_PAIRS: usize = 1_000_000_000;

/// The throwaway graph: the store index's degree and build list, and the
/// candidate list of its `dups` searches.
const GRAPH_CONNECTIVITY: usize = 16;
const GRAPH_EXPANSION_ADD: usize = 128;
const GRAPH_EXPANSION_SEARCH: usize = 96;

/// Whether `candidates` among `passages` stored are few enough to search
/// in memory rather than through the store's index.
pub(crate) fn among_is_small(candidates: usize, passages: usize) -> bool {
    candidates * SMALL_SHARE < passages
}

/// The candidates, ready to be searched.
pub(crate) enum Subset {
    Exact(VectorIndex),
    Graph {
        graph: Index,
        passage_ids: Vec<PassageId>,
        chunk_idx: Vec<u32>,
    },
}

impl Subset {
    /// The candidates' chunk vectors, for `queries` passages to come.
    pub(crate) fn new(candidates: VectorSet, queries: usize) -> Result<Subset> {
        if candidates.len().saturating_mul(queries) <= EXACT_MAX_PAIRS {
            return Ok(Subset::Exact(VectorIndex::new(candidates)?));
        }
        Subset::graph(candidates)
    }

    /// The candidates in a throwaway HNSW graph.
    fn graph(candidates: VectorSet) -> Result<Subset> {
        let _span = tracing::info_span!("candidate_graph", vectors = candidates.len()).entered();
        let graph = Index::new(&IndexOptions {
            dimensions: candidates.dim,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F16,
            connectivity: GRAPH_CONNECTIVITY,
            expansion_add: GRAPH_EXPANSION_ADD,
            expansion_search: GRAPH_EXPANSION_SEARCH,
            multi: false,
        })
        .map_err(graph_error)?;
        graph.reserve(candidates.len()).map_err(graph_error)?;
        candidates
            .data
            .par_chunks_exact(candidates.dim)
            .enumerate()
            .try_for_each(|(row, v)| graph.add(row as u64, v))
            .map_err(graph_error)?;
        Ok(Subset::Graph {
            graph,
            passage_ids: candidates.passage_ids,
            chunk_idx: candidates.chunk_idx,
        })
    }

    /// For each passage owning rows of `queries`, its `k` most similar
    /// other candidates scoring at least `floor`.
    pub(crate) fn neighbours_of(
        &self,
        queries: &VectorSet,
        k: usize,
        floor: f32,
    ) -> Result<HashMap<PassageId, Vec<Neighbour>>> {
        let (graph, passage_ids, chunk_idx) = match self {
            Subset::Exact(index) => return index.neighbours_of_vectors(queries, k, floor),
            Subset::Graph {
                graph,
                passage_ids,
                chunk_idx,
            } => (graph, passage_ids, chunk_idx),
        };
        // Twice k chunks per query chunk (as everywhere), plus one for the
        // query's own passage when it is a candidate too.
        let found: Vec<Vec<(usize, f32)>> = (0..queries.len())
            .into_par_iter()
            .map(|r| {
                let m = graph
                    .search(queries.row(r), 2 * k + 1)
                    .map_err(graph_error)?;
                Ok(m.keys
                    .iter()
                    .zip(&m.distances)
                    .map(|(&row, &d)| (row as usize, 1.0 - d))
                    .filter(|&(row, s)| s >= floor && passage_ids[row] != queries.passage_ids[r])
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok(per_passage(
            passage_ids,
            chunk_idx,
            &queries.passage_ids,
            found,
            k,
        ))
    }
}

fn graph_error(e: impl std::fmt::Display) -> Error {
    Error::StoreBackend {
        source: format!("graph over the candidates of a search (usearch): {e}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Rng;

    /// `n` rows of one chunk each, passage ids from `first`, around 20 topics.
    fn clustered(n: usize, first: i64, rng: &mut Rng, topics: &[Vec<f32>]) -> VectorSet {
        let dim = topics[0].len();
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let t = &topics[(rng.next_u64() % topics.len() as u64) as usize];
            let v: Vec<f32> = t.iter().map(|x| x + 0.5 * rng.next_f32()).collect();
            data.extend(crate::test_support::unit(v));
        }
        VectorSet {
            chunk_ids: (first..first + n as i64).collect(),
            passage_ids: (first..first + n as i64).collect(),
            doc_ids: vec![1; n],
            chunk_idx: vec![0; n],
            dim,
            data,
        }
    }

    #[test]
    fn the_graph_finds_what_exact_comparison_finds() {
        let mut rng = Rng::new(11);
        let topics: Vec<Vec<f32>> = (0..20).map(|_| rng.unit_vector(24)).collect();
        let candidates = clustered(3000, 0, &mut rng, &topics);
        let mut queries = clustered(200, 10_000, &mut rng, &topics);
        // One query is a candidate itself: never its own neighbour.
        queries.passage_ids[0] = candidates.passage_ids[7];
        queries.data[..24].copy_from_slice(candidates.row(7));
        let exact = Subset::Exact(VectorIndex::new(candidates.clone()).unwrap());
        let graph = Subset::graph(candidates).unwrap();
        let want = exact.neighbours_of(&queries, 10, 0.2).unwrap();
        let got = graph.neighbours_of(&queries, 10, 0.2).unwrap();
        let (mut hit, mut total) = (0, 0);
        for (p, list) in &want {
            let found = &got[p];
            assert!(found.iter().all(|n| n.passage != *p && n.score >= 0.2));
            for n in list {
                total += 1;
                if let Some(m) = found.iter().find(|m| m.passage == n.passage) {
                    hit += 1;
                    assert!((m.score - n.score).abs() < 1e-2, "{m:?} vs {n:?}");
                }
            }
        }
        assert!(total >= 1000, "lists too short to tell: {total}");
        assert!(hit as f64 >= 0.95 * total as f64, "{hit} of {total}");
    }
}
