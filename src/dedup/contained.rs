//! Stage 3, **contained**: candidates for a passage lying (mostly) inside a
//! longer one, such as a pull quote or a paragraph cut short. Each
//! representative long enough to be the shorter side has its word
//! 3-shingles (made in [`super::lexical::prepare`]) in an inverted index
//! ([`index`], which then drops the shingles)
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

/// Indexes the prepared word shingles and drops them: from here on a
/// passage's sorted term numbers stand in for its shingle hashes (half the
/// memory, and the same intersections).
pub(super) fn index(prep: &mut [Prep]) -> contain::WordIndex {
    let index = {
        let sets: Vec<&[u64]> = prep.iter().map(|p| p.word_shingles.as_slice()).collect();
        // Every passage long enough to be the shorter side is indexed (it
        // can also be a longer side); the length ratio is checked per probe.
        contain::WordIndex::build(&sets, |i| !sets[i].is_empty())
    };
    for p in prep.iter_mut() {
        p.word_shingles = Vec::new();
    }
    index
}

/// The contained stage's entry point: every pair where the shorter side may
/// reach the containment threshold in a side at least
/// `contained_min_ratio` times longer, touching a new passage.
pub(super) fn contained_candidates(
    ctx: &Context,
    prep: &[Prep],
    index: &contain::WordIndex,
) -> Vec<Candidate> {
    let th = ctx.th;
    let t = if ctx.collect_best {
        th.contained.min(HIST_CONTAINED_FLOOR)
    } else {
        th.contained
    };
    (0..prep.len())
        .into_par_iter()
        .filter(|&a| !index.terms_of(a).is_empty())
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
