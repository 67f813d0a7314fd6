//! `--histogram`: per kind, the distribution of each passage's best-match
//! score, so a user can see where the duplicates separate from the merely
//! similar and choose thresholds from data rather than guesswork.

use super::{detect, Item, Kind, SemanticNeighbour, Thresholds};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Distribution of best-match scores for one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub kind: Kind,
    /// The threshold in force for this kind (for display).
    pub threshold: f32,
    /// Lower edge of the first bin: the lowest observed score or the
    /// threshold, whichever is lower, rounded down to 0.05. The last bin ends
    /// at 1.0 inclusive. For `exact`: one bin at 1.0 (width 0).
    pub lo: f32,
    /// Bin width (0 for `exact`).
    pub width: f32,
    /// Passages per bin.
    pub counts: Vec<usize>,
    /// Passages with at least one scored candidate.
    pub scored: usize,
    /// Passages with no candidate at all. For `near` this includes passages
    /// whose best match lies below the LSH S-curve (Jaccard ≲ 0.5 is found
    /// only sometimes) and exact twins (compared through their canonical);
    /// for `contained`, passages too short to be the shorter side or with
    /// no candidate reaching containment 0.5.
    pub unscored: usize,
    /// Passages whose best score reaches the threshold.
    pub at_or_above: usize,
}

/// Histograms of each passage's best score, for each kind in `kinds`, with
/// `bins` bins between the lowest observed score and 1. Scores are what the
/// stages of [`super::find_pairs`] measured (nothing is compared
/// all-pairs), with their candidate floors lowered (containment down to
/// 0.5, estimated Jaccard down to 0.4) so scores below the thresholds
/// show. Semantic scores are the best cosine in each passage's neighbour
/// list, lexical duplicates included, which is what calibrating the model's
/// cosine needs.
pub fn histogram(
    items: &[Item],
    neighbours: Option<&[Vec<SemanticNeighbour>]>,
    th: &Thresholds,
    kinds: &[Kind],
    bins: usize,
) -> Result<Vec<Histogram>> {
    let bins = bins.max(1);
    let neighbours = neighbours.map(super::Neighbours::Given);
    let detection = detect(items, neighbours, Default::default(), th, kinds, 0, true)?;
    Ok(Kind::ALL
        .into_iter()
        .filter(|k| kinds.contains(k))
        .map(|kind| {
            let scores: Vec<f32> = detection.best.of(kind).collect();
            let threshold = th.for_kind(kind);
            // Exact scores are all 1: one bin says everything.
            let (lo, width, counts) = if kind == Kind::Exact {
                (1.0, 0.0, vec![scores.len()])
            } else {
                // Range from the lowest score (or the threshold, so its bin
                // is always shown), rounded down to 0.05, up to 1.
                let min = scores.iter().copied().fold(threshold, f32::min);
                let lo = ((min * 20.0).floor() / 20.0).clamp(0.0, 0.95);
                let width = (1.0 - lo) / bins as f32;
                let mut counts = vec![0usize; bins];
                for &x in &scores {
                    let k = (((x - lo).max(0.0) / width) as usize).min(bins - 1);
                    counts[k] += 1;
                }
                (lo, width, counts)
            };
            Histogram {
                kind,
                threshold,
                lo,
                width,
                counts,
                scored: scores.len(),
                unscored: items.len() - scores.len(),
                at_or_above: scores.iter().filter(|&&x| x >= threshold).count(),
            }
        })
        .collect())
}

impl std::fmt::Display for Histogram {
    /// A text bar chart, one line per bin, the threshold's bin marked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} (threshold {:.2}): {} passages scored, {} at or above, {} without candidate",
            self.kind, self.threshold, self.scored, self.at_or_above, self.unscored
        )?;
        if self.width == 0.0 {
            return writeln!(f, "  1.000 {:>8}", self.counts.iter().sum::<usize>());
        }
        let peak = self.counts.iter().copied().max().unwrap_or(0).max(1);
        for (k, &c) in self.counts.iter().enumerate() {
            let a = self.lo + k as f32 * self.width;
            let b = a + self.width;
            let mark = if self.threshold >= a && (self.threshold < b || k + 1 == self.counts.len())
            {
                '◀'
            } else {
                ' '
            };
            let bar = "█".repeat((c * 40).div_ceil(peak));
            writeln!(f, "  {a:.3}–{b:.3} {c:>8} {bar} {mark}")?;
        }
        Ok(())
    }
}
