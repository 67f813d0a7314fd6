//! What the **near** and **contained** stages share: each passage's lexical
//! preparation ([`Prep`]: folded once, in parallel, for exact-group
//! representatives only), the [`Candidate`] pairs both stages propose, and
//! the exact verification of the merged candidates ([`verify`]).
//!
//! Verification is shared rather than per stage because one candidate is
//! judged on both measures: a pair proposed by the MinHash LSH may turn out
//! to be a containment and the reverse, and `contained` takes precedence
//! when both hold ("A lies inside B" is the more informative statement).

use super::contain::WordIndex;
use super::sketch::{NearSketch, Stored};
use super::{shingle, BestScores, Context, Kind, Pair};
use rayon::prelude::*;

/// Per-passage lexical preparation, computed once and in parallel. The
/// folded words themselves are not kept (memory); `near` verification
/// recomputes the character shingles of the few candidate pairs.
pub(super) struct Prep {
    pub nwords: usize,
    /// Sketched for `near` (its [`NearSketch`] is kept apart, and dropped
    /// once the near candidates are found).
    pub sketched: bool,
    /// Sorted word 3-shingles, for `contained`-eligible passages (else
    /// empty), until [`super::contained::index`] takes them.
    pub word_shingles: Vec<u64>,
}

/// A pair proposed for verification, `first < second` (item indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Candidate {
    pub first: u32,
    pub second: u32,
}

impl Candidate {
    pub fn new(i: usize, j: usize) -> Self {
        Candidate {
            first: i.min(j) as u32,
            second: i.max(j) as u32,
        }
    }
}

/// Prepares every representative for the requested stages; other passages
/// get an empty [`Prep`] and are never proposed. The near sketches come
/// back beside the preparations, to be dropped on their own. A passage's
/// `stored` sketch (made at ingest, [`super::sketch`]) is taken as it is;
/// its words are folded only when `contained` needs their shingles.
pub(super) fn prepare(
    ctx: &Context,
    representative: &[bool],
    want_near: bool,
    want_contained: bool,
    stored: Vec<Option<Stored>>,
) -> (Vec<Prep>, Vec<Option<NearSketch>>) {
    let th = ctx.th;
    stored
        .into_par_iter()
        .enumerate()
        .map(|(i, stored)| {
            if !representative[i] {
                let prep = Prep {
                    nwords: 0,
                    sketched: false,
                    word_shingles: Vec::new(),
                };
                return (prep, None);
            }
            let norm = ctx.items[i].norm;
            let mut words = None;
            let nwords = match &stored {
                Some(s) => s.nwords,
                None => words.insert(shingle::fold(norm)).nwords,
            };
            let near = (want_near && nwords >= th.min_words_near.max(1)).then(|| match stored {
                Some(s) => s.near,
                None => NearSketch::of(words.get_or_insert_with(|| shingle::fold(norm))),
            });
            let word_shingles = if want_contained && nwords >= th.min_words_contained.max(1) {
                shingle::word_shingles(words.get_or_insert_with(|| shingle::fold(norm)))
            } else {
                Vec::new()
            };
            let prep = Prep {
                nwords,
                sketched: near.is_some(),
                word_shingles,
            };
            (prep, near)
        })
        .unzip()
}

/// One candidate's exact scores (NaN where a measure does not apply).
struct Measured {
    candidate: Candidate,
    jaccard: f32,
    containment: f32,
    /// The side with fewer words: the one whose best containment this is.
    shorter: usize,
}

/// Verifies the merged candidates of both stages exactly and classifies
/// them: contained when the containment reaches its threshold, else near
/// when the Jaccard does. Records every measured score in `best`.
pub(super) fn verify(
    ctx: &Context,
    prep: &[Prep],
    words: Option<&WordIndex>,
    mut candidates: Vec<Candidate>,
    best: &mut BestScores,
) -> Vec<Pair> {
    candidates.par_sort_unstable();
    candidates.dedup();
    let measured: Vec<Measured> = candidates
        .par_iter()
        .map(|&c| measure(ctx, prep, words, c))
        .collect();
    let th = ctx.th;
    let mut pairs = Vec::new();
    for m in measured {
        let (i, j) = (m.candidate.first as usize, m.candidate.second as usize);
        if m.containment >= th.contained {
            pairs.push(ctx.pair(i, j, Kind::Contained, m.containment));
        } else if m.jaccard >= th.near_jaccard {
            pairs.push(ctx.pair(i, j, Kind::Near, m.jaccard));
        }
        best.offer(i, Kind::Near, m.jaccard);
        best.offer(j, Kind::Near, m.jaccard);
        best.offer(m.shorter, Kind::Contained, m.containment);
    }
    pairs
}

/// Exact Jaccard of the character 5-shingles (both sides sketched for
/// `near`) and containment of the shorter side's word 3-shingles in the
/// longer's (as term numbers of the `contained` index) (both sides prepared for `contained`, the longer long enough).
fn measure(
    ctx: &Context,
    prep: &[Prep],
    words: Option<&WordIndex>,
    candidate: Candidate,
) -> Measured {
    let (i, j) = (candidate.first as usize, candidate.second as usize);
    let items = ctx.items;
    let jaccard = if prep[i].sketched && prep[j].sketched {
        let ci = shingle::char_shingles(&shingle::fold(items[i].norm));
        let cj = shingle::char_shingles(&shingle::fold(items[j].norm));
        shingle::jaccard(&ci, &cj)
    } else {
        f32::NAN
    };
    let (shorter, longer) = if prep[i].nwords <= prep[j].nwords {
        (i, j)
    } else {
        (j, i)
    };
    let (ts, tl) = match words {
        Some(w) => (w.terms_of(shorter), w.terms_of(longer)),
        None => (&[][..], &[][..]),
    };
    let long_enough =
        prep[longer].nwords as f32 >= prep[shorter].nwords as f32 * ctx.th.contained_min_ratio;
    let containment = if !ts.is_empty() && !tl.is_empty() && long_enough {
        shingle::intersect_len(ts, tl) as f32 / ts.len() as f32
    } else {
        f32::NAN
    };
    Measured {
        candidate,
        jaccard,
        containment,
        shorter,
    }
}
