//! Stage 3, **contained**: candidates for a passage lying (mostly) inside a
//! longer one, such as a pull quote or a paragraph cut short. Each
//! representative long enough to be the shorter side has its word
//! 3-shingles (made in [`super::lexical::prepare`]) in an inverted index
//! probed with an exact prefix filter (see [`super::contain`]); the
//! containment `|A ∩ B| / |A|` of the shorter side is confirmed in
//! [`super::lexical::verify`]. This file owns the probing and the length
//! ratio that separates "inside" from "about the same text".

use super::lexical::{Candidate, Prep};
use super::{contain, Context};
use rayon::prelude::*;

/// Containment floor used when collecting scores for the histogram, so it
/// shows the distribution below the threshold too.
const HIST_CONTAINED_FLOOR: f32 = 0.5;

/// The contained stage's entry point: every pair where the shorter side may
/// reach the containment threshold in a side at least
/// `contained_min_ratio` times longer, touching a new passage.
pub(super) fn contained_candidates(ctx: &Context, prep: &[Prep]) -> Vec<Candidate> {
    let th = ctx.th;
    let sets: Vec<&[u64]> = prep.iter().map(|p| p.word_shingles.as_slice()).collect();
    // Every passage long enough to be the shorter side is indexed (it can
    // also be a longer side); `keep` enforces the length ratio.
    let index = contain::WordIndex::build(&sets, |i| !sets[i].is_empty());
    let t = if ctx.collect_best {
        th.contained.min(HIST_CONTAINED_FLOOR)
    } else {
        th.contained
    };
    (0..prep.len())
        .into_par_iter()
        .filter(|&a| !sets[a].is_empty())
        .flat_map_iter(|a| {
            let need = prep[a].nwords as f32 * th.contained_min_ratio;
            index
                .candidates(a, t, |b| prep[b].nwords as f32 >= need)
                .into_iter()
                .filter(move |&b| ctx.touches(a, b))
                .map(move |b| Candidate::new(a, b))
        })
        .collect()
}
