//! Nearest neighbours for many queries at once, through clusters (an
//! inverted file): what `dups` asks of a large store — every passage's
//! nearest passages above the semantic floor — answered with matrix
//! products instead of one graph walk per passage.
//!
//! Why: a walk of the HNSW index is bound by memory latency (each step reads
//! a vector at a random place), so a million of them took 400–575 s per
//! stage on 2 Zen 3 cores, and `dups` needs two such stages (plain lists and
//! cross-language ones). Here the candidates are grouped into clusters by
//! spherical k-means, each query is compared with the members of its
//! [`PROBES`] nearest clusters, and the comparisons are done cluster by
//! cluster, every query that probes a cluster against all its members in one
//! product: work the CPU does at ~10⁸ pairs a second, 371 s for the whole
//! `dups` at 1M (BENCHMARKS.md).
//!
//! Each side is clustered and probed from its own mean. Sentence embeddings
//! share a large common component; uncentred, the clusters near it scored
//! high for every query and were probed by most of them (1M synthetic
//! vectors: 1,000 clusters of 1 to 9,849 members, one probed by 144,495
//! queries, and planted pairs at cosine 0.985 lost because neither side
//! probed the other's cluster); centred, 656 to 1,500 members, each probed
//! by at most 17,458. Queries of one language asking among the others' are
//! centred on their own mean, so what sets the languages apart does not
//! decide where a query looks. The scores themselves are the plain cosines
//! of the stored vectors.
//!
//! Vectors are held as f16 (the store's own precision), widened a cluster
//! at a time. The clusters are seeded deterministically, so a run's lists
//! are reproducible.

use candle_core::{Device, Tensor};
use half::{f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;

use crate::error::Result;
use crate::store::exact;

/// Candidates per cluster on average: the clusters are `candidates / LIST`.
/// The work is `queries × (clusters + PROBES × LIST)` products, so smaller
/// clusters cost more to assign and larger ones more to search.
const LIST: usize = 1_000;
/// Clusters each query is compared with. Measured recall of the lists
/// against exact search in BENCHMARKS.md.
const PROBES: usize = 16;
/// `PAREIL_CLUSTER_LIST` and `PAREIL_CLUSTER_PROBES` override [`LIST`] and
/// [`PROBES`], for measuring recall against time on a small store.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v >= 1)
        .unwrap_or(default)
}

/// Vectors sampled per cluster to train the centroids, and Lloyd rounds.
const TRAIN_PER_LIST: usize = 40;
const TRAIN_ROUNDS: usize = 8;
/// Rows per matrix product when comparing with the centroids, and queries
/// per product with a cluster's members (memory: 4,096 × 2 × LIST scores).
const BLOCK: usize = 4_096;
const ASKERS: usize = 4_096;
/// A cluster holding more than this many times [`LIST`] vectors after
/// training is split by k-means of its own members: a large cluster costs
/// twice, through its members and the many queries that probe it, and
/// k-means can leave some far larger than the rest (1M synthetic vectors
/// uncentred: median 283, largest 9,849; centred, 656 to 1,500, nothing
/// to split).
const SPLIT_ABOVE: usize = 2;

/// Unit vectors held as f16 rows.
pub(crate) struct HalfRows {
    pub dim: usize,
    data: Vec<f16>,
}

impl HalfRows {
    pub(crate) fn new(dim: usize) -> Self {
        HalfRows {
            dim,
            data: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Appends `rows` (`dim` floats each).
    pub(crate) fn extend_from_f32(&mut self, rows: &[f32]) {
        self.data.extend(rows.iter().map(|&x| f16::from_f32(x)));
    }

    fn row(&self, r: usize) -> &[f16] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Rows `rows`, widened, as one `[rows, dim]` buffer.
    fn gather(&self, rows: impl ExactSizeIterator<Item = usize>) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.dim];
        for (r, to) in rows.zip(out.chunks_exact_mut(self.dim)) {
            self.row(r).convert_to_f32_slice(to);
        }
        out
    }
}

/// For each of `query_rows` (rows of `queries`), the `count` rows of
/// `candidates` most similar to it with cosine ≥ `floor` for which
/// `admit(query_row, candidate_row)` holds, best first. With `mirror`
/// (candidate row → position in `query_rows`, when the queries are rows of
/// the candidates), a pair found from one side is offered to the other's
/// list too: it is missed only when neither side's clusters hold the other.
pub(crate) fn neighbours(
    candidates: &HalfRows,
    queries: &HalfRows,
    query_rows: &[usize],
    (count, floor): (usize, f32),
    admit: impl Fn(usize, usize) -> bool + Sync,
    mirror: Option<&[Option<usize>]>,
) -> Result<Vec<Vec<(usize, f32)>>> {
    let mut lists: Vec<Vec<(usize, f32)>> = vec![Vec::new(); query_rows.len()];
    if candidates.len() == 0 || query_rows.is_empty() || count == 0 {
        return Ok(lists);
    }
    let _span = tracing::info_span!(
        "clustered_neighbours",
        candidates = candidates.len(),
        queries = query_rows.len()
    )
    .entered();
    // Each side is clustered and probed from its own mean (see the module
    // doc): the shift that takes it there.
    let centre = |rows: &HalfRows, which: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
        mean(rows, which).into_iter().map(|x| -x).collect()
    };
    let Clusters { centroids, members } =
        cluster(candidates, &centre(candidates, &mut (0..candidates.len())))?;
    let probes = knob("PAREIL_CLUSTER_PROBES", PROBES);
    let probes = nearest_centroids(
        queries,
        query_rows.iter().copied(),
        &centroids,
        probes,
        &centre(queries, &mut query_rows.iter().copied()),
    )?;
    let probers = invert(&probes, members.len());
    for (cluster, askers) in probers.iter().enumerate() {
        let inside = &members[cluster];
        for askers in askers.chunks(ASKERS) {
            let found = compare(
                candidates, inside, queries, askers, query_rows, floor, &admit,
            )?;
            for (&a, found) in askers.iter().zip(found) {
                for (c, s) in found {
                    offer(&mut lists[a], (c, s), count);
                    if let Some(b) = mirror.and_then(|m| m[c]) {
                        offer(&mut lists[b], (query_rows[a], s), count);
                    }
                }
            }
        }
    }
    lists.par_iter_mut().for_each(|l| keep_best(l, count));
    Ok(lists)
}

/// Each of `askers` (positions in `query_rows`) against every row of
/// `inside` (rows of `candidates`) in one product: the admitted pairs at or
/// above `floor`, per asker.
fn compare(
    candidates: &HalfRows,
    inside: &[usize],
    queries: &HalfRows,
    askers: &[usize],
    query_rows: &[usize],
    floor: f32,
    admit: &(impl Fn(usize, usize) -> bool + Sync),
) -> Result<Vec<Vec<(usize, f32)>>> {
    let dim = candidates.dim;
    let block = candidates.gather(inside.iter().copied());
    let block = Tensor::from_vec(block, (inside.len(), dim), &Device::Cpu)?;
    let asked = queries.gather(askers.iter().map(|&a| query_rows[a]));
    let asked = Tensor::from_vec(asked, (askers.len(), dim), &Device::Cpu)?;
    let scores = asked.matmul(&block.t()?)?.to_vec2::<f32>()?;
    Ok(askers
        .par_iter()
        .zip(scores)
        .map(|(&a, row)| {
            row.into_iter()
                .zip(inside)
                .filter(|&(s, &c)| s >= floor && admit(query_rows[a], c))
                .map(|(s, &c)| (c, s))
                .collect()
        })
        .collect())
}

/// Adds `found` to a list, trimmed to its best `count` whenever it has
/// grown to four times that.
fn offer(list: &mut Vec<(usize, f32)>, found: (usize, f32), count: usize) {
    list.push(found);
    if list.len() >= 4 * count {
        keep_best(list, count);
    }
}

/// Keeps the `count` highest scores, one per row (a pair found from both
/// sides is offered twice), best first, ties by lower row.
fn keep_best(list: &mut Vec<(usize, f32)>, count: usize) {
    list.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    list.dedup_by_key(|x| x.0);
    exact::keep_best(list, count, |&(row, score)| (row as i64, score));
    list.shrink_to_fit();
}

/// For each of `clusters` clusters, the positions in `assigned` that name it.
fn invert(assigned: &[Vec<u32>], clusters: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); clusters];
    for (i, cs) in assigned.iter().enumerate() {
        for &c in cs {
            out[c as usize].push(i);
        }
    }
    out
}

/// Clusters of a set of rows: centroids (`[clusters, dim]`, unit rows)
/// and the rows nearest each, none empty.
struct Clusters {
    centroids: Vec<f32>,
    members: Vec<Vec<usize>>,
}

/// Clusters of `rows`: spherical k-means on a sample, then every cluster
/// left larger than [`SPLIT_ABOVE`] × [`LIST`] split by k-means of its
/// own members.
fn cluster(rows: &HalfRows, shift: &[f32]) -> Result<Clusters> {
    let list = knob("PAREIL_CLUSTER_LIST", LIST);
    let dim = rows.dim;
    let all: Vec<usize> = (0..rows.len()).collect();
    let first = k_means(rows, &all, rows.len().div_ceil(list), shift)?;
    let assigned = nearest_centroids(rows, all.iter().copied(), &first, 1, shift)?;
    let mut out = Clusters {
        centroids: Vec::new(),
        members: Vec::new(),
    };
    let mut keep = |centroid: &[f32], inside: Vec<usize>| {
        if !inside.is_empty() {
            out.centroids.extend_from_slice(centroid);
            out.members.push(inside);
        }
    };
    for (c, inside) in invert(&assigned, first.len() / dim).into_iter().enumerate() {
        if inside.len() <= SPLIT_ABOVE * list {
            keep(&first[c * dim..(c + 1) * dim], inside);
            continue;
        }
        let sub = k_means(rows, &inside, inside.len().div_ceil(list), shift)?;
        let of = nearest_centroids(rows, inside.iter().copied(), &sub, 1, shift)?;
        for (i, part) in invert(&of, sub.len() / dim).into_iter().enumerate() {
            let part = part.into_iter().map(|j| inside[j]).collect();
            keep(&sub[i * dim..(i + 1) * dim], part);
        }
    }
    Ok(out)
}

/// `clusters` centroids (unit rows; fewer when `which` holds fewer rows)
/// by spherical k-means on a sample of `which` rows, seeded
/// deterministically.
fn k_means(rows: &HalfRows, which: &[usize], clusters: usize, shift: &[f32]) -> Result<Vec<f32>> {
    let clusters = clusters.clamp(1, which.len().max(1));
    let sample: Vec<usize> = sample_rows(which.len(), clusters * TRAIN_PER_LIST)
        .into_iter()
        .map(|i| which[i])
        .collect();
    let dim = rows.dim;
    let mut centroids = rows.gather(sample.iter().take(clusters).copied());
    for c in centroids.chunks_exact_mut(dim) {
        c.iter_mut().zip(shift).for_each(|(x, d)| *x += d);
    }
    let mut row = vec![0f32; dim];
    for _ in 0..TRAIN_ROUNDS {
        let nearest = nearest_centroids(rows, sample.iter().copied(), &centroids, 1, shift)?;
        let mut sums = vec![0f32; clusters * dim];
        for (&r, c) in sample.iter().zip(&nearest) {
            let c = c[0] as usize;
            rows.row(r).convert_to_f32_slice(&mut row);
            sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&row)
                .zip(shift)
                .for_each(|((s, x), d)| *s += x + d);
        }
        for (sum, old) in sums.chunks_exact(dim).zip(centroids.chunks_exact_mut(dim)) {
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 1e-6 {
                old.iter_mut().zip(sum).for_each(|(o, s)| *o = s / norm);
            } // an empty cluster keeps its centroid
        }
    }
    Ok(centroids)
}

/// `want` distinct row indices below `n` (all of them when `want ≥ n`), in a
/// fixed pseudo-random order.
fn sample_rows(n: usize, want: usize) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..n).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let take = want.min(n);
    for i in 0..take {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = i + (z % (n - i) as u64) as usize;
        rows.swap(i, j);
    }
    rows.truncate(take);
    rows
}

/// The mean of `which` rows.
fn mean(rows: &HalfRows, which: impl Iterator<Item = usize>) -> Vec<f32> {
    let mut sum = vec![0f64; rows.dim];
    let mut n = 0usize;
    for r in which {
        sum.iter_mut()
            .zip(rows.row(r))
            .for_each(|(s, x)| *s += x.to_f64());
        n += 1;
    }
    sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect()
}

/// For each of `which` rows plus `shift`, its `count` nearest centroids,
/// nearest first.
fn nearest_centroids(
    rows: &HalfRows,
    which: impl Iterator<Item = usize>,
    centroids: &[f32],
    count: usize,
    shift: &[f32],
) -> Result<Vec<Vec<u32>>> {
    let which: Vec<usize> = which.collect();
    let clusters = centroids.len() / rows.dim;
    let centroids = Tensor::from_slice(centroids, (clusters, rows.dim), &Device::Cpu)?;
    let centroids_t = centroids.t()?;
    let mut out = Vec::with_capacity(which.len());
    for block in which.chunks(BLOCK) {
        let mut data = rows.gather(block.iter().copied());
        for row in data.chunks_exact_mut(rows.dim) {
            row.iter_mut().zip(shift).for_each(|(x, d)| *x += d);
        }
        let scores = Tensor::from_vec(data, (block.len(), rows.dim), &Device::Cpu)?
            .matmul(&centroids_t)?
            .to_vec2::<f32>()?;
        out.par_extend(scores.into_par_iter().map(|row| best_of(&row, count)));
    }
    Ok(out)
}

/// The positions of the `count` highest of `scores`, highest first (ties by
/// lower position): one pass, each kept in a short sorted list (exactly
/// `count` long, so a million of them hold no more than they need).
fn best_of(scores: &[f32], count: usize) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(count + 1);
    for (j, &s) in scores.iter().enumerate() {
        if best.len() == count && best.last().is_some_and(|&(low, _)| s <= low) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b >= s);
        best.insert(at, (s, j as u32));
        best.truncate(count);
    }
    let mut out: Vec<u32> = best.into_iter().map(|(_, j)| j).collect();
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        // Clustered data: 40 directions, each row one of them plus noise.
        let centres: Vec<Vec<f32>> = (0..40)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.35 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            out.extend(v);
        }
        out
    }

    fn exact(rows: &[f32], dim: usize, count: usize, floor: f32) -> Vec<Vec<(usize, f32)>> {
        let n = rows.len() / dim;
        let row = |i: usize| &rows[i * dim..(i + 1) * dim];
        (0..n)
            .map(|q| {
                let mut l: Vec<(usize, f32)> = (0..n)
                    .filter(|&c| c != q)
                    .map(|c| (c, row(q).iter().zip(row(c)).map(|(a, b)| a * b).sum()))
                    .filter(|&(_, s)| s >= floor)
                    .collect();
                keep_best(&mut l, count);
                l
            })
            .collect()
    }

    #[test]
    fn clustered_lists_find_what_exact_search_finds() {
        let dim = 32;
        let n = 24 * LIST; // 24 clusters, each query compares with 16
        let data = unit_rows(n, dim, 7);
        let mut rows = HalfRows::new(dim);
        rows.extend_from_f32(&data);
        let queries: Vec<usize> = (0..n).step_by(13).collect();
        let got = neighbours(&rows, &rows, &queries, (10, 0.5), |q, c| q != c, None).unwrap();
        let want = exact(&data, dim, 10, 0.5);
        let mut hit = 0;
        let mut total = 0;
        for (&q, list) in queries.iter().zip(&got) {
            let truth: std::collections::HashSet<usize> = want[q].iter().map(|x| x.0).collect();
            total += truth.len();
            hit += list.iter().filter(|x| truth.contains(&x.0)).count();
            assert!(list.iter().all(|&(c, s)| c != q && s >= 0.5));
            assert!(list.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        assert!(total > 1_000, "the floor should leave lists to compare");
        assert!(hit as f64 / total as f64 > 0.99, "{hit} of {total}");
    }

    #[test]
    fn clusters_partition_the_rows_and_stay_near_the_list_size_on_skewed_data() {
        let dim = 16;
        let n = 12 * LIST;
        // Three rows in four near one direction, the rest spread.
        let mut data = unit_rows(n, dim, 3);
        for row in data.chunks_exact_mut(dim).take(n * 3 / 4) {
            row.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = *x * 0.05 + (i == 0) as u8 as f32);
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let mut rows = HalfRows::new(dim);
        rows.extend_from_f32(&data);
        let shift: Vec<f32> = mean(&rows, 0..n).into_iter().map(|x| -x).collect();
        let clusters = cluster(&rows, &shift).unwrap();
        let mut seen = vec![0u8; n];
        for m in &clusters.members {
            assert!(!m.is_empty());
            m.iter().for_each(|&r| seen[r] += 1);
        }
        assert!(seen.iter().all(|&s| s == 1), "a partition of the rows");
        assert_eq!(clusters.centroids.len(), clusters.members.len() * dim);
        let largest = clusters.members.iter().map(Vec::len).max().unwrap();
        assert!(largest <= 4 * LIST, "largest cluster {largest}");
    }

    #[test]
    fn best_of_keeps_the_highest_in_order() {
        let scores = [0.1, 0.9, 0.5, 0.9, 0.7, 0.2];
        assert_eq!(best_of(&scores, 3), vec![1, 3, 4]);
        assert_eq!(best_of(&scores, 10), vec![1, 3, 4, 2, 5, 0]);
        assert_eq!(best_of(&scores, 3).capacity(), 3);
    }

    #[test]
    fn admit_and_floor_are_honoured_and_runs_repeat() {
        let dim = 16;
        let data = unit_rows(3_000, dim, 11);
        let mut rows = HalfRows::new(dim);
        rows.extend_from_f32(&data);
        let queries: Vec<usize> = (0..3_000).collect();
        let even_only = |q: usize, c: usize| q != c && c.is_multiple_of(2);
        let a = neighbours(&rows, &rows, &queries, (5, 0.9), even_only, None).unwrap();
        let b = neighbours(&rows, &rows, &queries, (5, 0.9), even_only, None).unwrap();
        assert_eq!(a, b);
        assert!(a
            .iter()
            .flatten()
            .all(|&(c, s)| c.is_multiple_of(2) && s >= 0.9));
        assert!(a.iter().all(|l| l.len() <= 5));
        assert!(a.iter().any(|l| l.len() == 5));
    }
}
