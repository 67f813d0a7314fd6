//! Candidate generation for the `contained` detector: an inverted index of
//! word 3-shingles probed with a *prefix filter* (Chaudhuri et al. 2006,
//! "A primitive operator for similarity joins"; Bayardo et al. 2007,
//! "All-pairs").
//!
//! Why a prefix filter rather than MinHash: containment is asymmetric. A
//! 20-word pull quote inside a 300-word paragraph has Jaccard ≈ 0.06, so a
//! Jaccard LSH would never propose it. The prefix filter is exact instead:
//! order every shingle by ascending document frequency; if
//! `|A ∩ B| ≥ t·|A|` then at most `|A| - ⌈t·|A|⌉` of A's shingles are
//! missing from B, so B must contain at least one of A's
//! `p = |A| - ⌈t·|A|⌉ + 1` rarest shingles. Probing only those postings
//! lists finds every B with no false negatives, and because they are the
//! rarest shingles the lists are short (most word 3-shingles occur once).

use rayon::prelude::*;

/// Postings longer than this are not probed. A shingle in more than this many
/// passages is boilerplate; reaching it inside a prefix means the short
/// passage is made of boilerplate itself. This is the only place the filter
/// gives up exactness, and it bounds the work per query.
pub const MAX_POSTINGS: usize = 10_000;

/// Inverted index over word-shingle sets, stored CSR-style: postings of
/// term `k` are `postings[offsets[k]..offsets[k + 1]]`, terms numbered in
/// hash order. Each indexed passage also keeps its own term numbers, so a
/// query never searches the vocabulary: a binary search per shingle over a
/// multi-megabyte array is a cache miss per step, and was most of the cost.
/// About 8 bytes per (shingle, passage) occurrence.
pub struct WordIndex {
    offsets: Vec<u32>,
    postings: Vec<u32>,
    item_off: Vec<usize>,
    terms: Vec<u32>,
}

impl WordIndex {
    /// Indexes `sets[i]` (sorted, deduplicated) for every `i` where `indexed(i)`.
    pub fn build<S: AsRef<[u64]> + Sync>(
        sets: &[S],
        indexed: impl Fn(usize) -> bool + Sync,
    ) -> Self {
        let mut item_off = Vec::with_capacity(sets.len() + 1);
        item_off.push(0usize);
        for (i, s) in sets.iter().enumerate() {
            let len = if indexed(i) { s.as_ref().len() } else { 0 };
            item_off.push(item_off[i] + len);
        }
        let mut occ: Vec<(u64, u32)> = sets
            .par_iter()
            .enumerate()
            .filter(|(i, _)| indexed(*i))
            .flat_map_iter(|(i, s)| s.as_ref().iter().map(move |&h| (h, i as u32)))
            .collect();
        occ.par_sort_unstable();
        let mut offsets = Vec::new();
        let mut postings = Vec::with_capacity(occ.len());
        let mut terms = vec![0u32; occ.len()];
        let mut cursor: Vec<usize> = item_off[..sets.len()].to_vec();
        let mut last = None;
        for (h, i) in occ {
            if last != Some(h) {
                last = Some(h);
                offsets.push(postings.len() as u32);
            }
            let i = i as usize;
            terms[cursor[i]] = (offsets.len() - 1) as u32;
            cursor[i] += 1;
            postings.push(i as u32);
        }
        offsets.push(postings.len() as u32);
        WordIndex {
            offsets,
            postings,
            item_off,
            terms,
        }
    }

    fn posting(&self, k: u32) -> &[u32] {
        &self.postings[self.offsets[k as usize] as usize..self.offsets[k as usize + 1] as usize]
    }

    /// Every indexed passage `B` (other than `me`, which must be indexed)
    /// that may contain at least a fraction `t` of `me`'s shingles and for
    /// which `keep(B)` holds. Sorted, deduplicated.
    pub fn candidates(&self, me: usize, t: f32, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        let mine = &self.terms[self.item_off[me]..self.item_off[me + 1]];
        let n = mine.len();
        if n == 0 {
            return Vec::new();
        }
        // The smallest overlap the verifier (which compares `k as f32 /
        // n as f32 >= t`) would accept, computed in the same arithmetic so
        // float rounding can never shorten the prefix below what is safe.
        let accepts = |k: usize| k as f32 / n as f32 >= t;
        let mut need = ((t as f64 * n as f64).floor() as usize).min(n);
        while need > 0 && accepts(need - 1) {
            need -= 1;
        }
        while need < n && !accepts(need) {
            need += 1;
        }
        let p = n - need.max(1) + 1;
        // Rarest first; ties by term number (hash order): any fixed global
        // order makes the prefix argument hold.
        let mut by_rarity: Vec<(usize, u32)> =
            mine.iter().map(|&k| (self.posting(k).len(), k)).collect();
        by_rarity.sort_unstable();
        let mut out = Vec::new();
        for &(df, k) in by_rarity.iter().take(p) {
            if df > MAX_POSTINGS {
                continue;
            }
            out.extend(
                self.posting(k)
                    .iter()
                    .map(|&b| b as usize)
                    .filter(|&b| b != me && keep(b)),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_filter_finds_every_superset_at_threshold() {
        // A has 10 shingles; B holds 8 of them (containment 0.8) plus noise;
        // C holds 7 (0.7). At t = 0.8 B must be found; C may or may not be.
        let a: Vec<u64> = (0..10).collect();
        let mut b: Vec<u64> = (2..10).chain(100..140).collect();
        b.sort_unstable();
        let mut c: Vec<u64> = (3..10).chain(200..240).collect();
        c.sort_unstable();
        // Make A's two missing shingles the rarest so the prefix is tight.
        let sets = vec![a.clone(), b, c];
        let idx = WordIndex::build(&sets, |_| true);
        let got = idx.candidates(0, 0.8, |_| true);
        assert!(got.contains(&1));
        assert!(!got.contains(&0));
    }
}
