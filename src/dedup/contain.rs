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
    ///
    /// Terms are numbered in hash order, so each passage's term numbers come
    /// out sorted like its hashes. The occurrences are sorted one hash range
    /// at a time (ranges of the top bits, in order): a single sorted array of
    /// every (hash, passage) occurrence would take 16 bytes each, twice the
    /// index itself (1.6 GB at a million passages).
    pub fn build<S: AsRef<[u64]> + Sync>(
        sets: &[S],
        indexed: impl Fn(usize) -> bool + Sync,
    ) -> Self {
        Self::build_by_ranges(sets, indexed, OCCURRENCES_PER_RANGE)
    }

    fn build_by_ranges<S: AsRef<[u64]> + Sync>(
        sets: &[S],
        indexed: impl Fn(usize) -> bool + Sync,
        per_range: usize,
    ) -> Self {
        let mut item_off = Vec::with_capacity(sets.len() + 1);
        item_off.push(0usize);
        for (i, s) in sets.iter().enumerate() {
            let len = if indexed(i) { s.as_ref().len() } else { 0 };
            item_off.push(item_off[i] + len);
        }
        let total = item_off[sets.len()];
        let mut index = WordIndex {
            offsets: Vec::new(),
            postings: Vec::with_capacity(total),
            item_off,
            terms: vec![0u32; total],
        };
        let mut cursor: Vec<usize> = index.item_off[..sets.len()].to_vec();
        for range in hash_ranges(total, per_range) {
            let mut occ: Vec<(u64, u32)> = sets
                .par_iter()
                .enumerate()
                .filter(|(i, _)| indexed(*i))
                .flat_map_iter(|(i, s)| {
                    in_range(s.as_ref(), range)
                        .iter()
                        .map(move |&h| (h, i as u32))
                })
                .collect();
            occ.par_sort_unstable();
            index.append_sorted(&occ, &mut cursor);
        }
        index.offsets.push(index.postings.len() as u32);
        index
    }

    /// Appends occurrences sorted by hash (all above those appended before):
    /// a new term per distinct hash, each passage's term numbers in order.
    fn append_sorted(&mut self, occ: &[(u64, u32)], cursor: &mut [usize]) {
        let mut last = None;
        for &(h, i) in occ {
            if last != Some(h) {
                last = Some(h);
                self.offsets.push(self.postings.len() as u32);
            }
            let i = i as usize;
            self.terms[cursor[i]] = (self.offsets.len() - 1) as u32;
            cursor[i] += 1;
            self.postings.push(i as u32);
        }
    }

    /// Passage `i`'s term numbers, sorted (empty when it is not indexed): a
    /// stand-in for its shingle hashes once those are dropped.
    pub fn terms_of(&self, i: usize) -> &[u32] {
        &self.terms[self.item_off[i]..self.item_off[i + 1]]
    }

    fn posting(&self, k: u32) -> &[u32] {
        &self.postings[self.offsets[k as usize] as usize..self.offsets[k as usize + 1] as usize]
    }

    /// Every indexed passage `B` (other than `me`, which must be indexed)
    /// that may contain at least a fraction `t` of `me`'s shingles and for
    /// which `keep(B)` holds. Sorted, deduplicated.
    pub fn candidates(&self, me: usize, t: f32, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        let mine = self.terms_of(me);
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

/// Occurrences sorted at a time while building, about (16 bytes each).
const OCCURRENCES_PER_RANGE: usize = 1 << 21;

/// Hash ranges `[lo, hi]` covering every u64 in order, split by top bits
/// so that each holds about `per_range` of `total` uniformly spread hashes.
fn hash_ranges(total: usize, per_range: usize) -> impl Iterator<Item = (u64, u64)> {
    let bits = (total / per_range)
        .next_power_of_two()
        .trailing_zeros()
        .min(16);
    let parts = 1u64 << bits;
    let width = if bits == 0 { 0 } else { 1u64 << (64 - bits) };
    (0..parts).map(move |p| {
        let lo = p * width;
        let hi = if p + 1 == parts {
            u64::MAX
        } else {
            lo + width - 1
        };
        (lo, hi)
    })
}

/// The part of a sorted slice inside the inclusive range.
fn in_range(s: &[u64], (lo, hi): (u64, u64)) -> &[u64] {
    let a = s.partition_point(|&h| h < lo);
    let b = s.partition_point(|&h| h <= hi);
    &s[a..b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ranges_cover_every_hash_in_order() {
        for total in [0, 1, 5_000, usize::MAX / 2] {
            let r: Vec<(u64, u64)> = hash_ranges(total, 1_000).collect();
            assert_eq!(r[0].0, 0);
            assert_eq!(r.last().unwrap().1, u64::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
        assert_eq!(hash_ranges(5_000, 1_000).count(), 8);
    }

    #[test]
    fn terms_follow_hash_order_across_ranges() {
        // Hashes spread over the whole u64 range, split into several ranges:
        // each set's terms are sorted, equal hashes share a term, and the
        // postings list every set holding a hash.
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng = crate::dedup::shingle::mix64(rng);
            rng % 3_000 * (u64::MAX / 3_000)
        };
        let sets: Vec<Vec<u64>> = (0..2_000)
            .map(|_| {
                let mut s: Vec<u64> = (0..40).map(|_| next()).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        // About 80k occurrences in ranges of 5k: 16 ranges.
        let idx = WordIndex::build_by_ranges(&sets, |i| i % 7 != 3, 5_000);
        let whole = WordIndex::build_by_ranges(&sets, |i| i % 7 != 3, usize::MAX);
        assert_eq!(idx.terms, whole.terms);
        assert_eq!(idx.postings, whole.postings);
        assert_eq!(idx.offsets, whole.offsets);
        let mut term_of = std::collections::HashMap::new();
        for (i, s) in sets.iter().enumerate() {
            let terms = idx.terms_of(i);
            if i % 7 == 3 {
                assert!(terms.is_empty());
                continue;
            }
            assert!(terms.windows(2).all(|w| w[0] < w[1]));
            for (&h, &t) in s.iter().zip(terms) {
                assert_eq!(*term_of.entry(h).or_insert(t), t);
                assert!(idx.posting(t).contains(&(i as u32)));
            }
        }
    }

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
