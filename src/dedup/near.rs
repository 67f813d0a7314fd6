//! Stage 2, **near**: candidates for lightly edited copies. Each
//! representative's character 5-shingles are sketched with a 125-row
//! one-permutation MinHash (in [`super::lexical::prepare`]); passages
//! sharing one of the 25 × 5 LSH band keys become candidates, and a 16-bit
//! signature estimate drops the hopeless ones before exact verification
//! (in [`super::lexical::verify`]). This file owns the banding and the
//! pre-filter: why the stage never compares all pairs.

use super::lexical::Candidate;
use super::sketch::NearSketch;
use super::{minhash, Context};
use rayon::prelude::*;

/// In an LSH bucket of m passages (sorted by ingest order) each passage is
/// compared with at most this many earlier ones. Huge buckets only arise
/// from mass near-copies; grouping still connects them through the first
/// members, and the work stays linear in m.
const MAX_BUCKET_PEERS: usize = 64;
/// LSH candidates whose signature estimate is this far below the near
/// threshold are dropped before exact verification. The estimate's standard
/// deviation is ≤ 0.045 (125 rows), so 0.2 is > 4σ: a true near-duplicate
/// is essentially never lost, while most of the LSH false candidates (real
/// Jaccard 0.05–0.3) are, which keeps verification linear at 100k passages.
const NEAR_PREFILTER_MARGIN: f32 = 0.2;
/// Lowest estimated Jaccard verified when collecting histogram scores.
const HIST_NEAR_FLOOR: f32 = 0.4;

/// The near stage's entry point: every pair of sketched passages that share
/// an LSH band and survive the pre-filter, touching a new passage.
pub(super) fn near_candidates(ctx: &Context, sketches: &[Option<NearSketch>]) -> Vec<Candidate> {
    let floor = if ctx.collect_best {
        HIST_NEAR_FLOOR.min(ctx.th.near_jaccard - NEAR_PREFILTER_MARGIN)
    } else {
        ctx.th.near_jaccard - NEAR_PREFILTER_MARGIN
    };
    let per_band: Vec<Vec<Candidate>> = (0..minhash::BANDS)
        .into_par_iter()
        .map(|band| band_candidates(ctx, sketches, band, floor))
        .collect();
    per_band.into_iter().flatten().collect()
}

/// Candidates from one band: within each bucket of equal keys (in ingest
/// order), each passage against up to [`MAX_BUCKET_PEERS`] earlier ones.
fn band_candidates(
    ctx: &Context,
    sketches: &[Option<NearSketch>],
    band: usize,
    floor: f32,
) -> Vec<Candidate> {
    let mut keyed: Vec<(u64, u64, u32)> = sketches
        .iter()
        .enumerate()
        .filter_map(|(i, ns)| {
            ns.as_ref()
                .map(|ns| (ns.keys[band], ctx.items[i].order, i as u32))
        })
        .collect();
    keyed.sort_unstable();
    let mut out = Vec::new();
    for run in keyed.chunk_by(|x, y| x.0 == y.0) {
        for y in 1..run.len() {
            for x in 0..y.min(MAX_BUCKET_PEERS) {
                let (i, j) = (run[x].2 as usize, run[y].2 as usize);
                if worth_verifying(sketches, i, j, floor) && ctx.touches(i, j) {
                    out.push(Candidate::new(i, j));
                }
            }
        }
    }
    out
}

/// Cheap pre-filter on the signatures: a pair estimated 0.2 (> 4σ) below
/// the bar is not worth an exact comparison. Short sets are always kept:
/// their estimate is noisy and exact comparison is cheap anyway.
fn worth_verifying(sketches: &[Option<NearSketch>], i: usize, j: usize, floor: f32) -> bool {
    let sketch = |k: usize| sketches[k].as_ref().and_then(|ns| ns.compact.as_deref());
    match (sketch(i), sketch(j)) {
        (Some(a), Some(b)) => minhash::estimate(a, b) >= floor,
        _ => true,
    }
}
