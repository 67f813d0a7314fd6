//! How the SQLite store answers `nearest` and `neighbours`, and keeps the
//! approximate index beside it current.
//!
//! - Below [`SqliteStore::ann_min_chunks`] chunks (a measured crossover, see
//!   BENCHMARKS.md), with no index file, or when exact search is asked for:
//!   every vector in memory, exact (`vectors.rs`).
//! - Otherwise: the memory-mapped HNSW index (`ann.rs`) for the chunks it
//!   covers, plus exact search over the chunks written after it (the tail);
//!   `nearest` re-scores every candidate with the vector stored in SQLite (a
//!   chunk removed since the index was written is dropped there), and
//!   `neighbours` (the k-NN graph behind `dups`) takes the index's cosines,
//!   which are computed on the same f16 values the store holds — except
//!   when many passages are asked about at once (a whole-store `dups`):
//!   then every stored vector is read and clustered, and each passage is
//!   compared with the members of its nearest clusters (`store::clustered`),
//!   which costs a fraction of a million walks.
//!
//! [`SqliteStore::maintain_index`] is the only writer of the index: run by
//! the engine after ingest and remove, it builds the index once the store is
//! large enough, folds a grown tail into it, and rebuilds it when too many of
//! its vectors belong to removed chunks, or once when a graph built with the
//! narrow insertion list grows past the size that calls for the wide one.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use super::ann::{self, AnnIndex, Builder};
use super::places::{ChunkPlaces, ChunkSet};
use super::SqliteStore;
use crate::error::Result;
use crate::store::clustered::{self, HalfRows};
use crate::store::exact::{per_passage, VectorIndex};
use crate::store::subset::{among_is_small, Subset};
use crate::store::{
    ChunkId, DocumentId, Filter, Neighbour, PassageId, SearchIndexStats, VectorSet,
};

/// Chunks below which the store searches exactly and builds no index: exact
/// search over this many vectors costs less than opening an index (measured
/// in BENCHMARKS.md, "crossover").
pub const ANN_MIN_CHUNKS: usize = 20_000;
/// A tail longer than this share of the index (and than `TAIL_MIN`) is
/// folded into the index by the next `maintain_index`.
const TAIL_SHARE: usize = 50; // 1/50 = 2 %
const TAIL_MIN: usize = 2_000;
/// The index is rebuilt when more than this share of its vectors belong to
/// removed chunks (they cost search time and are dropped at re-scoring).
const DEAD_SHARE: usize = 4; // 1/4 = 25 %
/// Nodes a walk restricted to candidates may test per result wanted: past
/// it, the walk admits every node (so it ends as a plain search would) and
/// the results are filtered afterwards. A walk goes on until it has found
/// enough candidates, and a few go on through most of the graph: at 1M
/// synthetic passages one thread was left walking alone for minutes at the
/// end of a language's searches (cross-language stage 731 → 606 s with the
/// budget). 64 changes nothing on the development set (32 changes 41 of its
/// 3,839 findings).
const WALK_BUDGET: usize = 64;
/// Passages asked about at once from which their lists come from clusters
/// of the stored vectors ([`clustered`]) rather than from a walk of the
/// index each: the clusters cost a read of every vector and a training run
/// first, then far less per passage (measured in BENCHMARKS.md).
/// `PAREIL_CLUSTERED_MIN` overrides it, for measuring both ways
/// (`cargo bench --bench scale`).
const CLUSTERED_MIN_QUERIES: usize = 50_000;

pub(super) fn clustered_min_queries() -> usize {
    std::env::var("PAREIL_CLUSTERED_MIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLUSTERED_MIN_QUERIES)
}

/// Chunks read from SQLite per batch while building the index (and
/// passages per batch of queries searched exactly).
const BUILD_BATCH: usize = 20_000;

/// What answers searches for one open store.
pub(super) enum Searcher {
    /// Every vector in memory.
    Exact(VectorIndex),
    /// The index for chunks up to its `covered` id, exact search over the rest.
    Approx { ann: AnnIndex, tail: VectorIndex },
}

impl SqliteStore {
    /// The searcher, chosen and loaded on first use.
    pub(super) fn searcher(&self) -> Result<&Searcher> {
        if let Some(s) = self.search.get() {
            return Ok(s);
        }
        let searcher = match self.open_index()? {
            Some(ann) if !self.exact_search => {
                let tail = VectorIndex::new(self.vectors_after(ann.header.covered, usize::MAX)?)?;
                Searcher::Approx { ann, tail }
            }
            _ => Searcher::Exact(VectorIndex::new(self.load_vectors()?)?),
        };
        Ok(self.search.get_or_init(|| searcher))
    }

    pub(super) fn store_id(&self) -> Result<Option<String>> {
        use crate::store::Store;
        self.meta_value("store_id")
    }

    fn open_index(&self) -> Result<Option<AnnIndex>> {
        let Some(id) = self.store_id()? else {
            return Ok(None);
        };
        AnnIndex::open(&ann::path_for(&self.path), &id, self.meta.dim)
    }

    /// Keeps a loaded searcher current after `doc` was rewritten or removed:
    /// its old rows die (in the index they are dropped at re-scoring), its
    /// new rows join the exact part.
    pub(super) fn searcher_rewritten(&mut self, doc: DocumentId, rewritten: bool) -> Result<()> {
        if self.search.get().is_none() {
            return Ok(());
        }
        let added = if rewritten {
            Some(self.vectors_of_document(doc)?)
        } else {
            None
        };
        let (Searcher::Exact(exact) | Searcher::Approx { tail: exact, .. }) =
            self.search.get_mut().expect("checked above");
        exact.forget_document(doc);
        if let Some(set) = added {
            exact.append(set)?;
        }
        Ok(())
    }

    /// Keeps a loaded searcher current after `passage` got its own chunks.
    pub(super) fn searcher_added(&mut self, passage: PassageId) -> Result<()> {
        if self.search.get().is_none() {
            return Ok(());
        }
        let set = self.vectors_of_passage(passage)?;
        match self.search.get_mut().expect("checked above") {
            Searcher::Exact(v) | Searcher::Approx { tail: v, .. } => v.append(set),
        }
    }

    pub(super) fn search_nearest(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        match self.searcher()? {
            Searcher::Exact(v) => v.nearest(query, k, filter),
            Searcher::Approx { ann, tail } => {
                if let Some(docs) = &filter.only_documents {
                    // A handful of documents: their vectors, exactly.
                    let docs: Vec<DocumentId> = docs.iter().copied().collect();
                    return VectorIndex::new(self.vectors_of_documents(&docs)?)?
                        .nearest(query, k, filter);
                }
                let mut hits = self.approx_nearest(ann, query, k, filter)?;
                hits.extend(tail.nearest(query, k, filter)?);
                keep_best(&mut hits, k);
                Ok(hits)
            }
        }
    }

    /// The index's candidates, re-scored with the stored vectors, widened
    /// until `k` pass the filter or the index has no more to give.
    ///
    /// The index holds the store's own f16 values, so its ranking is the
    /// exact ranking up to rounding: the search's candidate list (HNSW's
    /// ef, 128 or 384 by index size) is what buys recall, and only the best `k`, every
    /// candidate tied with the k-th (copies share a vector; exact search
    /// breaks their ties by id) and a little slack for removed chunks are
    /// read back from SQLite to be re-scored and checked alive.
    fn approx_nearest(
        &self,
        ann: &AnnIndex,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        /// Candidates read back beyond the `k` wanted.
        const SLACK: usize = 16;
        /// Index scores this close count as tied (f16 values, rounding only).
        const TIE: f32 = 1e-4;
        let wanted = k + filter.exclude_passages.len();
        let mut want = wanted + SLACK;
        loop {
            let found = ann.search(query, want)?;
            let exhausted = found.len() < want || want >= ann.len();
            let ties_past_end =
                found.len() > wanted && found[found.len() - 1].1 >= found[wanted - 1].1 - TIE;
            if ties_past_end && !exhausted {
                want *= 4;
                continue;
            }
            let ids: Vec<ChunkId> = found.iter().map(|&(id, _)| id).collect();
            let rescored =
                VectorIndex::new(self.vectors_of_chunks(&ids)?)?.nearest(query, k, filter)?;
            let below_floor = filter
                .min_score
                .is_some_and(|m| found.last().is_some_and(|&(_, s)| s < m - 0.01));
            if rescored.len() >= k || exhausted || below_floor {
                return Ok(rescored);
            }
            want *= 4;
        }
    }

    pub(super) fn search_neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        match self.searcher()? {
            Searcher::Exact(v) => v.neighbours(passages, k, floor, among),
            Searcher::Approx { ann, tail } => {
                let places = ChunkPlaces::new(self.chunk_places()?);
                match among {
                    Some(among) if among_is_small(among.len(), places.passages()) => {
                        self.neighbours_in_subset(&places, passages, (k, floor), among)
                    }
                    _ if passages.len() >= self.clustered_min => {
                        self.clustered_neighbours(&places, passages, (k, floor), among)
                    }
                    _ => self.approx_neighbours(ann, tail, &places, passages, (k, floor), among),
                }
            }
        }
    }

    /// Neighbours among a small candidate set, in memory (see
    /// [`Subset`]): the candidates' vectors and the queries' from SQLite.
    fn neighbours_in_subset(
        &self,
        places: &ChunkPlaces,
        passages: &[PassageId],
        (k, floor): (usize, f32),
        among: &HashSet<PassageId>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let chunks = |ids: &mut dyn Iterator<Item = &PassageId>| -> Vec<ChunkId> {
            let mut c: Vec<ChunkId> = ids
                .flat_map(|&p| places.chunks_of(p).iter().copied())
                .collect();
            c.sort_unstable();
            c.dedup();
            c
        };
        let candidates = self.vectors_of_chunks(&chunks(&mut among.iter()))?;
        let candidates = Subset::new(candidates, passages.len())?;
        let mut out = Vec::with_capacity(passages.len());
        // Query vectors a batch at a time: a million of them are 1.5 GB.
        for batch in passages.chunks(BUILD_BATCH) {
            let queries = self.vectors_of_chunks(&chunks(&mut batch.iter()))?;
            let mut lists = candidates.neighbours_of(&queries, k, floor)?;
            out.extend(batch.iter().map(|p| lists.remove(p).unwrap_or_default()));
        }
        Ok(out)
    }

    /// The k-NN graph for many `passages` at once, through clusters of the
    /// candidates' vectors read from SQLite (see [`clustered`]): every
    /// chunk, or those of `among`'s passages.
    fn clustered_neighbours(
        &self,
        places: &ChunkPlaces,
        passages: &[PassageId],
        (k, floor): (usize, f32),
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let candidates = self.half_rows(|p| among.is_none_or(|a| a.contains(&p)))?;
        let asked: Vec<ChunkId> = passages
            .iter()
            .flat_map(|&p| places.chunks_of(p).iter().copied())
            .collect();
        // The queries' vectors: rows of the candidates when every chunk is
        // one, else read on their own.
        let own_queries;
        let (queries, query_rows) = match among {
            None => {
                let rows = asked
                    .iter()
                    .filter_map(|c| candidates.chunk_ids.binary_search(c).ok());
                (&candidates, rows.collect::<Vec<usize>>())
            }
            Some(_) => {
                own_queries = self.half_rows_of_chunks(asked)?;
                (&own_queries, (0..own_queries.rows.len()).collect())
            }
        };
        let owners: Vec<PassageId> = query_rows.iter().map(|&r| queries.passage_ids[r]).collect();
        // Queries that are candidates too get what their neighbours find.
        let mirror = among.is_none().then(|| {
            let mut at = vec![None; candidates.rows.len()];
            for (i, &r) in query_rows.iter().enumerate() {
                at[r] = Some(i);
            }
            at
        });
        let lists = clustered::neighbours(
            &candidates.rows,
            &queries.rows,
            &query_rows,
            (2 * k, floor),
            |q, c| queries.passage_ids[q] != candidates.passage_ids[c],
            mirror.as_deref(),
        )?;
        let mut lists = per_passage(
            &candidates.passage_ids,
            &candidates.chunk_idx,
            &owners,
            lists,
            k,
        );
        Ok(passages
            .iter()
            .map(|p| lists.remove(p).unwrap_or_default())
            .collect())
    }

    /// Every stored chunk vector whose passage `keep` accepts, as f16 rows.
    fn half_rows(&self, keep: impl Fn(PassageId) -> bool) -> Result<HalfSet> {
        let mut set = HalfSet::new(self.meta.dim);
        let mut after = 0;
        loop {
            let batch = self.vectors_after(after, BUILD_BATCH)?;
            let Some(&last) = batch.chunk_ids.last() else {
                break;
            };
            after = last;
            set.extend_where(&batch, |i| keep(batch.passage_ids[i]));
        }
        Ok(set)
    }

    /// The vectors of chunks `ids`, as f16 rows in id order.
    fn half_rows_of_chunks(&self, mut ids: Vec<ChunkId>) -> Result<HalfSet> {
        ids.sort_unstable();
        ids.dedup();
        let mut set = HalfSet::new(self.meta.dim);
        for batch in ids.chunks(BUILD_BATCH) {
            let batch = self.vectors_of_chunks(batch)?;
            set.extend_where(&batch, |_| true);
        }
        Ok(set)
    }

    /// The k-NN graph for `passages`: each chunk's nearest chunks from the
    /// index and from the tail (only those of `among`, when given: a walk of
    /// the graph keeping candidates only; on the development set it found
    /// the translations exact search finds, 97.9 % vs 98.0 %, plain lists
    /// through the index 93.0 %), the best chunk pair per passage pair.
    fn approx_neighbours(
        &self,
        ann: &AnnIndex,
        tail: &VectorIndex,
        places: &ChunkPlaces,
        passages: &[PassageId],
        (k, floor): (usize, f32),
        among: Option<&HashSet<PassageId>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let covered = ann.header.covered;
        // Query vectors the index does not hold (tail chunks) come from SQLite.
        let tail_ids: Vec<ChunkId> = passages
            .iter()
            .flat_map(|&p| places.chunks_of(p).iter().copied())
            .filter(|&c| c > covered)
            .collect();
        let tail_set = self.vectors_of_chunks(&tail_ids)?;
        let tail_vectors: HashMap<ChunkId, &[f32]> = tail_set
            .chunk_ids
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, tail_set.row(i)))
            .collect();
        let walk = Walk {
            ann,
            tail,
            places,
            tail_vectors,
            among,
            candidate_chunks: among.map(|a| places.chunk_set(a.iter())),
            k,
            floor,
            dim: self.meta.dim,
        };
        if passages.len() >= ann::RESIDENT_MIN_SEARCHES {
            ann.make_resident()?;
        }
        ann.set_expansion(Some(match among {
            Some(_) => ann::EXPANSION_WALK,
            None => ann.graph_expansion(),
        }));
        let lists = passages
            .par_iter()
            .map(|&p| walk.neighbours_of(p))
            .collect();
        ann.set_expansion(None);
        lists
    }

    /// Brings the index beside the store up to date (see the module doc).
    /// Returns what it did, for messages.
    pub(super) fn maintain_index(&mut self, note: &mut dyn FnMut(&str)) -> Result<IndexUpkeep> {
        if self.read_only {
            return Ok(IndexUpkeep::Unchanged);
        }
        let Some(store_id) = self.store_id()? else {
            return Ok(IndexUpkeep::Unchanged);
        };
        let path = ann::path_for(&self.path);
        // A small store without an index: nothing to do, and no lock file
        // left beside it.
        if !path.exists() && self.chunks_between(0, self.last_chunk_id()?)? < self.ann_min_chunks {
            return Ok(IndexUpkeep::Unchanged);
        }
        // One writer of the index at a time, across processes: another
        // ingest already building it will leave it current, so this one
        // goes on without waiting (the index is derived data, searches are
        // complete without it). The lock dies with its process.
        let Some(_lock) = ann::try_lock(&path)? else {
            tracing::info!("another process is updating the approximate index");
            return Ok(IndexUpkeep::Unchanged);
        };
        let last = self.last_chunk_id()?;
        let upkeep = match AnnIndex::open(&path, &store_id, self.meta.dim)? {
            None => {
                let chunks = self.chunks_between(0, last)?;
                if chunks < self.ann_min_chunks {
                    return Ok(IndexUpkeep::Unchanged);
                }
                note(&format!(
                    "building the approximate search index over {chunks} vectors (once; \
                     later runs add to it)"
                ));
                self.build_index(self.new_builder(&path, &store_id, chunks)?)?;
                IndexUpkeep::Built
            }
            Some(ann) => {
                let (size, header) = (ann.len(), ann.header.clone());
                drop(ann);
                let live = self.chunks_between(0, header.covered)?;
                let tail = self.chunks_between(header.covered + 1, last)?;
                let grown = live + tail;
                if size.saturating_sub(live) * DEAD_SHARE > size {
                    note(&format!(
                        "rebuilding the approximate search index ({} of its {size} vectors \
                         were removed)",
                        size - live
                    ));
                    self.build_index(self.new_builder(&path, &store_id, grown)?)?;
                    IndexUpkeep::Built
                } else if tail <= TAIL_MIN.max(size / TAIL_SHARE) {
                    return Ok(IndexUpkeep::Unchanged);
                } else if header.expansion_add < ann::expansion_add(grown, self.small_graph) {
                    // Vectors added to a graph keep the list they were
                    // linked with, so a graph begun narrow keeps its recall
                    // (about 0.98 at 1M) however it grows: rebuilt once.
                    note(&format!(
                        "rebuilding the approximate search index over {grown} vectors with a \
                         wider insertion list (once, as it passes {} vectors; it keeps search \
                         recall at this size)",
                        self.small_graph
                    ));
                    self.build_index(self.new_builder(&path, &store_id, grown)?)?;
                    IndexUpkeep::Built
                } else {
                    note(&format!(
                        "adding {tail} vectors to the approximate search index"
                    ));
                    self.build_index(Builder::load(&path, header, tail, self.small_graph)?)?;
                    IndexUpkeep::Extended
                }
            }
        };
        // The next search opens the new file.
        self.search = Default::default();
        Ok(upkeep)
    }

    /// An empty index for `capacity` vectors of this store.
    fn new_builder(&self, path: &Path, store_id: &str, capacity: usize) -> Result<Builder> {
        Builder::new(path, store_id, self.meta.dim, capacity, self.small_graph)
    }

    /// Adds every chunk after the builder's `covered` id, batch by batch, and
    /// writes the index.
    fn build_index(&self, mut builder: Builder) -> Result<()> {
        let _span = tracing::info_span!("build_index").entered();
        loop {
            let batch = self.vectors_after(builder.header().covered, BUILD_BATCH)?;
            if batch.is_empty() {
                break;
            }
            builder.add(&batch.chunk_ids, &batch.data)?;
        }
        builder.save()
    }

    /// The index beside the store, for `stats` (its header only).
    pub(super) fn search_index_stats(&self) -> Result<Option<SearchIndexStats>> {
        let Some(id) = self.store_id()? else {
            return Ok(None);
        };
        let path = ann::path_for(&self.path);
        let Some(header) = ann::header_of(&path, &id, self.meta.dim) else {
            return Ok(None);
        };
        let last = self.last_chunk_id()?;
        Ok(Some(SearchIndexStats {
            file_size_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            path,
            vectors: header.vectors,
            chunks_after: self.chunks_between(header.covered + 1, last)?,
        }))
    }

    fn last_chunk_id(&self) -> Result<ChunkId> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM chunks", [], |r| r.get(0))?)
    }
}

/// Chunk vectors as f16 rows, with each row's chunk id (ascending),
/// passage and index in its passage.
struct HalfSet {
    rows: HalfRows,
    chunk_ids: Vec<ChunkId>,
    passage_ids: Vec<PassageId>,
    chunk_idx: Vec<u32>,
}

impl HalfSet {
    fn new(dim: usize) -> Self {
        HalfSet {
            rows: HalfRows::new(dim),
            chunk_ids: Vec::new(),
            passage_ids: Vec::new(),
            chunk_idx: Vec::new(),
        }
    }

    /// Appends the rows of `batch` that `keep` accepts (by row index).
    fn extend_where(&mut self, batch: &VectorSet, keep: impl Fn(usize) -> bool) {
        for i in (0..batch.len()).filter(|&i| keep(i)) {
            self.rows.extend_from_f32(batch.row(i));
            self.chunk_ids.push(batch.chunk_ids[i]);
            self.passage_ids.push(batch.passage_ids[i]);
            self.chunk_idx.push(batch.chunk_idx[i]);
        }
    }
}

/// What [`SqliteStore::maintain_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUpkeep {
    Unchanged,
    /// Built from every stored vector.
    Built,
    /// The chunks written since were added.
    Extended,
}

/// What each passage's search in [`SqliteStore::approx_neighbours`] reads.
struct Walk<'a> {
    ann: &'a AnnIndex,
    tail: &'a VectorIndex,
    places: &'a ChunkPlaces,
    /// Query vectors of the chunks the index does not hold (read from SQLite).
    tail_vectors: HashMap<ChunkId, &'a [f32]>,
    among: Option<&'a HashSet<PassageId>>,
    candidate_chunks: Option<ChunkSet>,
    k: usize,
    floor: f32,
    dim: usize,
}

impl Walk<'_> {
    fn admitted(&self, q: &PassageId) -> bool {
        self.among.is_none_or(|a| a.contains(q))
    }

    /// Passage `p`'s list: for each of its chunks, the nearest chunks of
    /// the index and of the tail, the best chunk pair per passage.
    fn neighbours_of(&self, p: PassageId) -> Result<Vec<Neighbour>> {
        let mut best: HashMap<PassageId, Neighbour> = HashMap::new();
        let own = self.places.chunks_of(p);
        for &c in own {
            let query = match self.tail_vectors.get(&c) {
                Some(v) => v.to_vec(),
                None => match self.ann.vector(c, self.dim) {
                    Some(v) => v,
                    None => continue,
                },
            };
            self.offer_index_matches(p, own, &query, &mut best)?;
            self.offer_tail_matches(p, &query, &mut best)?;
        }
        let mut list: Vec<Neighbour> = best.into_values().collect();
        keep_best(&mut list, self.k);
        Ok(list)
    }

    fn offer_index_matches(
        &self,
        p: PassageId,
        own: &[ChunkId],
        query: &[f32],
        best: &mut HashMap<PassageId, Neighbour>,
    ) -> Result<()> {
        // Twice k chunks, plus the passage's own, so a windowed neighbour's
        // several chunks cannot crowd out others.
        let count = 2 * self.k + own.len();
        let found = search_index(self.ann, query, count, self.candidate_chunks.as_ref(), own)?;
        for (other, score) in found {
            if score < self.floor {
                continue;
            }
            let Some((q, idx)) = self.places.place_of(other) else {
                continue; // removed since the index was written
            };
            if q != p && self.admitted(&q) {
                offer(best, q, score, idx as usize);
            }
        }
        Ok(())
    }

    fn offer_tail_matches(
        &self,
        p: PassageId,
        query: &[f32],
        best: &mut HashMap<PassageId, Neighbour>,
    ) -> Result<()> {
        let not_me = Filter {
            exclude_passages: [p].into_iter().collect(),
            min_score: Some(self.floor),
            ..Filter::default()
        };
        // The tail is small: filtered after an exact search of all of it.
        let want = if self.among.is_some() {
            usize::MAX
        } else {
            self.k
        };
        let found = self.tail.nearest(query, want, &not_me)?;
        for n in found
            .into_iter()
            .filter(|n| self.admitted(&n.passage))
            .take(self.k)
        {
            offer(best, n.passage, n.score, n.chunk);
        }
        Ok(())
    }
}

/// The index's `count` nearest chunks to `query`; with `candidates`, a
/// walk that keeps only theirs (never the asking passage's `own`) — until
/// its budget ([`WALK_BUDGET`]) is spent, after which it admits every node
/// so that it ends as a plain search would (the caller filters the results
/// all the same).
fn search_index(
    ann: &AnnIndex,
    query: &[f32],
    count: usize,
    candidates: Option<&ChunkSet>,
    own: &[ChunkId],
) -> Result<Vec<(ChunkId, f32)>> {
    let Some(candidates) = candidates else {
        return ann.search(query, count);
    };
    let budget = std::cell::Cell::new(WALK_BUDGET * count);
    ann.search_where(query, count, |c| {
        if budget.get() == 0 {
            return true;
        }
        budget.set(budget.get() - 1);
        candidates.contains(c) && !own.contains(&c)
    })
}

fn offer(best: &mut HashMap<PassageId, Neighbour>, passage: PassageId, score: f32, chunk: usize) {
    let n = Neighbour {
        passage,
        score,
        chunk,
    };
    best.entry(passage)
        .and_modify(|b| {
            if score > b.score {
                *b = n
            }
        })
        .or_insert(n);
}

/// Keeps the `k` best, best first, one entry per passage, ties by lower id.
fn keep_best(list: &mut Vec<Neighbour>, k: usize) {
    list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.passage.cmp(&b.passage)));
    let mut seen = std::collections::HashSet::new();
    list.retain(|n| seen.insert(n.passage));
    list.truncate(k);
}
