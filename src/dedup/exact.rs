//! Stage 1, **exact**: passages whose normalised texts are equal (hash,
//! sort, equal runs). It owns the exact groups and each group's
//! *representative* (its canonical, the oldest member): the later lexical
//! stages compare representatives only, so a near copy is reported once,
//! against the text it copies, not once per exact twin of that text.

use super::{shingle, BestScores, Context, Item, Kind, Pair};
use rayon::prelude::*;

/// Exact groups up to this size report every pair (so a repeated block is
/// still seen as a block when one of its lines also appears elsewhere);
/// bigger groups report a star around the canonical to stay linear.
const EXACT_CLIQUE: usize = 16;

/// What the exact stage hands on.
pub(super) struct ExactStage {
    /// Exact pairs touching a new passage (empty unless reported).
    pub pairs: Vec<Pair>,
    /// `representative[i]`: passage `i` is the canonical of its exact group
    /// or in no group; the only passages the near and contained stages see.
    pub representative: Vec<bool>,
}

/// The exact stage's entry point: groups, representatives, each grouped
/// passage's best exact score (1), and the pairs when `report` is set.
pub(super) fn exact_pairs(ctx: &Context, report: bool, best: &mut BestScores) -> ExactStage {
    let mut representative = vec![true; ctx.items.len()];
    let mut pairs = Vec::new();
    for g in groups(ctx.items) {
        for &i in &g[1..] {
            representative[i] = false;
        }
        for &i in &g {
            best.offer(i, Kind::Exact, 1.0);
        }
        if report {
            let heads = if g.len() <= EXACT_CLIQUE { g.len() } else { 1 };
            for x in 0..heads {
                for y in x + 1..g.len() {
                    if ctx.touches(g[x], g[y]) {
                        pairs.push(Pair {
                            canonical: g[x],
                            duplicate: g[y],
                            kind: Kind::Exact,
                            score: 1.0,
                            margin: None,
                            second_to: None,
                        });
                    }
                }
            }
        }
    }
    ExactStage {
        pairs,
        representative,
    }
}

/// Groups of two or more passages with the same trimmed, non-empty
/// normalised text, each in `(order, index)` order: `g[0]` is canonical.
fn groups(items: &[Item]) -> Vec<Vec<usize>> {
    let mut keyed: Vec<(u64, u64, usize)> = (0..items.len())
        .into_par_iter()
        .filter(|&i| !items[i].norm.trim().is_empty())
        .map(|i| {
            (
                shingle::hash_bytes(items[i].norm.trim().as_bytes()),
                items[i].order,
                i,
            )
        })
        .collect();
    keyed.par_sort_unstable();
    let mut out = Vec::new();
    for run in keyed.chunk_by(|x, y| x.0 == y.0) {
        if run.len() < 2 {
            continue;
        }
        // Split the hash run by actual text (collisions are ~impossible,
        // but correctness should not rest on it).
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &(_, _, i) in run {
            let t = items[i].norm.trim();
            match groups.iter_mut().find(|g| items[g[0]].norm.trim() == t) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        out.extend(groups.into_iter().filter(|g| g.len() > 1));
    }
    out
}
