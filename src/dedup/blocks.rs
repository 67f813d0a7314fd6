//! Findings as users see them: runs of consecutive duplicate passages merged
//! into one block ("lines 2–25 duplicated at 26–49") instead of one finding
//! per passage.

use super::group::EXPLAIN_LEN;
use super::{Item, Kind, Pair};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A run of consecutive passages of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub doc: i64,
    /// Item index of the first passage of the run.
    pub first: usize,
    /// Item index of the last passage of the run.
    pub last: usize,
    /// Number of passages in the run.
    pub passages: usize,
}

/// One reported duplication: a block of `n` consecutive passages of one
/// document matching, in the same order, `n` consecutive passages of
/// another (or the same) document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Loosest kind in the block (exact < near < contained < semantic): a
    /// block is `exact` only if every passage is.
    pub kind: Kind,
    /// Lowest pair score in the block (conservative).
    pub score: f32,
    /// Mean pair score in the block.
    pub mean_score: f32,
    /// The older side (every pair's `canonical`).
    pub canonical: Span,
    /// The copy (every pair's `duplicate`).
    pub duplicate: Span,
    /// The block's pairs, in passage order.
    pub pairs: Vec<Pair>,
    /// Word diffs of the block's near/contained pairs (None when all are
    /// exact or semantic, or differ only in spacing).
    pub explanation: Option<String>,
}

/// Merges pairs into blocks. Pair `(c, d)` (canonical, duplicate) extends
/// the block ending with `(c', d')` when `c` follows `c'` and `d` follows
/// `d'` in their documents (`pos + 1`, same documents). Every pair lands in
/// exactly one finding. Findings come oldest canonical first.
pub fn merge_blocks(items: &[Item], pairs: &[Pair]) -> Vec<Finding> {
    let key = |p: &Pair| {
        let (x, y) = (&items[p.canonical], &items[p.duplicate]);
        (x.doc, x.pos, y.doc, y.pos)
    };
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_unstable_by_key(|&k| key(&pairs[k]));
    let at: HashMap<(i64, usize, i64, usize), usize> =
        order.iter().map(|&k| (key(&pairs[k]), k)).collect();
    let mut used = vec![false; pairs.len()];
    let mut findings = Vec::new();
    // Walking in (doc, pos) order guarantees a block is entered at its first
    // pair: any predecessor sorts earlier and has already absorbed it.
    for &k in &order {
        if used[k] {
            continue;
        }
        let mut run = vec![pairs[k]];
        used[k] = true;
        let (da, mut pa, db, mut pb) = key(&pairs[k]);
        loop {
            pa += 1;
            pb += 1;
            match at.get(&(da, pa, db, pb)) {
                Some(&n) if !used[n] => {
                    used[n] = true;
                    run.push(pairs[n]);
                }
                _ => break,
            }
        }
        findings.push(finding(items, run, da, db));
    }
    findings.sort_unstable_by_key(|f| {
        (
            items[f.canonical.first].order,
            f.canonical.first,
            f.duplicate.first,
        )
    });
    findings
}

fn finding(items: &[Item], run: Vec<Pair>, da: i64, db: i64) -> Finding {
    let n = run.len();
    let kind = run.iter().map(|p| p.kind).max().expect("non-empty run");
    let score = run.iter().map(|p| p.score).fold(f32::INFINITY, f32::min);
    let mean_score = run.iter().map(|p| p.score).sum::<f32>() / n as f32;
    let diffs: Vec<String> = run
        .iter()
        .enumerate()
        .filter_map(|(k, p)| {
            let d = super::explain(p, items, p.canonical, p.duplicate)?;
            match (d.is_empty(), n > 1) {
                (true, _) => None,
                (false, true) => Some(format!("#{}: {d}", k + 1)),
                (false, false) => Some(d),
            }
        })
        .collect();
    let explanation = (!diffs.is_empty()).then(|| {
        let s = diffs.join(" | ");
        if s.chars().count() > 2 * EXPLAIN_LEN {
            let mut t: String = s.chars().take(2 * EXPLAIN_LEN - 1).collect();
            t.push('…');
            t
        } else {
            s
        }
    });
    let span = |doc: i64, first: usize, last: usize| Span {
        doc,
        first,
        last,
        passages: n,
    };
    Finding {
        kind,
        score,
        mean_score,
        canonical: span(da, run[0].canonical, run[n - 1].canonical),
        duplicate: span(db, run[0].duplicate, run[n - 1].duplicate),
        pairs: run,
        explanation,
    }
}
