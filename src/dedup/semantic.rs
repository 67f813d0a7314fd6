//! Stage 4, **semantic**: pairs whose embeddings are close, read from the
//! caller's neighbour lists (this module never sees a vector). It owns the
//! check of those lists and the rule that a pair already linked by a
//! lexical stage (directly or through an exact twin) keeps its lexical
//! kind: semantic names only what the text comparisons could not see.

use super::group::UnionFind;
use super::{BestScores, Context, Kind, Pair, SemanticNeighbour};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// Rejects neighbour lists that do not fit `n` passages.
pub(super) fn check_neighbours(n: usize, neighbours: &[Vec<SemanticNeighbour>]) -> Result<()> {
    if neighbours.len() != n {
        return Err(Error::Usage(format!(
            "neighbour lists for {} passages, but {n} passages given",
            neighbours.len()
        )));
    }
    let bad = neighbours
        .iter()
        .enumerate()
        .find_map(|(i, list)| list.iter().find(|s| s.index >= n).map(|s| (i, s.index)));
    if let Some((i, j)) = bad {
        return Err(Error::Usage(format!(
            "passage {i} lists neighbour {j}, but only {n} passages given"
        )));
    }
    Ok(())
}

/// The semantic stage's entry point: one pair per passage pair at or above
/// its semantic threshold (the best cosine of either direction), touching
/// a new passage, and not in the same component of the `lexical` pairs.
/// Records each passage's best cosine in `best`, lexical duplicates included.
pub(super) fn semantic_pairs(
    ctx: &Context,
    neighbours: &[Vec<SemanticNeighbour>],
    lexical: &[Pair],
    best: &mut BestScores,
) -> Vec<Pair> {
    let items = ctx.items;
    let mut uf = UnionFind::new(items.len());
    for p in lexical {
        uf.union(p.canonical, p.duplicate);
    }
    let mut found: HashMap<(usize, usize), Pair> = HashMap::new();
    for (i, list) in neighbours.iter().enumerate() {
        for &SemanticNeighbour { index: j, score } in list {
            if j == i || score.is_nan() {
                continue;
            }
            best.offer(i, Kind::Semantic, score);
            if score < ctx.th.semantic_for(items[i].lang, items[j].lang)
                || !ctx.touches(i, j)
                || uf.find(i) == uf.find(j)
            {
                continue;
            }
            let p = ctx.pair(i, j, Kind::Semantic, score);
            let e = found.entry((p.canonical, p.duplicate)).or_insert(p);
            e.score = e.score.max(score);
        }
    }
    found.into_values().collect()
}
