//! MinHash signatures and LSH banding: the candidate generator of the `near`
//! detector. Owns the sketching scheme, the band/row layout and the
//! S-curve arithmetic that justifies it. Candidates are only candidates:
//! the caller confirms each with exact Jaccard.

use super::shingle::mix64;

/// Signature length (MinHash rows).
pub const PERMS: usize = 125;
/// LSH bands × rows = `PERMS`. With b = 25, r = 5 the probability that a
/// pair of Jaccard `s` shares at least one band is `1 - (1 - s^5)^25`:
///
/// | s    | 0.05   | 0.1    | 0.3  | 0.5  | 0.6  | 0.7   | 0.75   | 0.8     |
/// |------|--------|--------|------|------|------|-------|--------|---------|
/// | P    | 8e-6   | 2.5e-4 | 0.06 | 0.55 | 0.86 | 0.990 | 0.9989 | 0.99997 |
///
/// The S-curve midpoint `(1/b)^(1/r)` ≈ 0.53 sits well below the default
/// near threshold (0.75), so a true near-duplicate is missed with
/// probability ≈ 1e-3 at the threshold and far less above it, while an
/// unrelated pair (char 5-shingle Jaccard ≈ 0.02–0.08 between distinct
/// paragraphs of the same language) becomes a candidate with probability
/// ≤ 1e-4 — so candidate verification stays near-linear in the corpus.
/// (r = 4, b = 32 would add recall at 0.6 but multiply false candidates at
/// s = 0.1 by ~13; r = 6, b = 21 loses 1.6 % of pairs at 0.75.)
pub const BANDS: usize = 25;
pub const ROWS: usize = PERMS / BANDS;

/// Probability that a pair with Jaccard `s` becomes an LSH candidate.
pub fn candidate_probability(s: f64) -> f64 {
    1.0 - (1.0 - s.powi(ROWS as i32)).powi(BANDS as i32)
}

/// One-permutation MinHash (Li, Owen & Zhang 2012) with optimal
/// densification (Shrivastava 2017). Each shingle is hashed once, its hash
/// picks one of `PERMS` bins and competes for that bin's minimum; a bin left
/// empty copies the value of the first non-empty bin along a probe sequence
/// that depends only on the bin and the seed (the same for every set).
/// For any two sets, row `j` agrees with probability exactly their Jaccard
/// — the property LSH needs — at the cost of one hash per shingle instead
/// of `PERMS` (a 100-word passage has ~500 character shingles: classic
/// MinHash spent ~60 000 multiply-min steps on it and dominated the scan).
///
/// Caveat, documented rather than hidden: for sets much smaller than
/// `PERMS`, densified rows are copies of each other and no longer
/// independent; agreement per row is still `J`, so recall of the banding
/// does not suffer (correlated rows agree together), but the signature
/// estimate is noisier, which is why [`estimate`] is only used as a
/// pre-filter on large sets.
pub struct Sketcher {
    seed: u64,
}

impl Sketcher {
    pub fn new(seed: u64) -> Self {
        Sketcher { seed: mix64(seed) }
    }

    #[inline]
    fn bin(h: u64) -> usize {
        // Multiply-shift range reduction: the high bits choose the bin.
        ((h as u128 * PERMS as u128) >> 64) as usize
    }

    /// The signature of a shingle set (all `u64::MAX` for an empty set).
    pub fn signature(&self, shingles: &[u64]) -> [u64; PERMS] {
        let mut sig = [u64::MAX; PERMS];
        let mut filled = [false; PERMS];
        for &x in shingles {
            let h = mix64(x ^ self.seed);
            let b = Self::bin(h);
            // Within a bin the order of `h` is as random as anywhere else.
            if h < sig[b] || !filled[b] {
                sig[b] = h;
                filled[b] = true;
            }
        }
        if shingles.is_empty() {
            return sig;
        }
        let orig = sig;
        for j in 0..PERMS {
            if filled[j] {
                continue;
            }
            let mut t = 0u64;
            loop {
                t += 1;
                let k = Self::bin(mix64(self.seed ^ mix64(((j as u64) << 32) | t)));
                if filled[k] {
                    sig[j] = orig[k];
                    break;
                }
            }
        }
        sig
    }
}

/// One 64-bit key per band, hashing the band index with its `ROWS` minima so
/// equal rows in different bands never collide.
pub fn band_keys(sig: &[u64; PERMS]) -> [u64; BANDS] {
    let mut keys = [0u64; BANDS];
    for (band, key) in keys.iter_mut().enumerate() {
        let mut h = mix64(band as u64 + 1);
        for &v in &sig[band * ROWS..(band + 1) * ROWS] {
            h = mix64(h ^ v);
        }
        *key = h;
    }
    keys
}

/// The signature folded to 16 bits per permutation (250 bytes a passage),
/// kept to estimate Jaccard for LSH candidates before paying for an exact
/// comparison. Two different minima agree on 16 bits with probability
/// 2^-16, which biases the estimate up by at most that: harmless for a
/// pre-filter that only discards.
pub fn compact(sig: &[u64; PERMS]) -> Box<[u16; PERMS]> {
    let mut out = Box::new([0u16; PERMS]);
    for (o, &v) in out.iter_mut().zip(sig) {
        *o = (mix64(v) >> 48) as u16;
    }
    out
}

/// Fraction of agreeing rows: an unbiased estimate of Jaccard with standard
/// deviation about `sqrt(J(1-J)/PERMS)` (0.039 at J = 0.75) when both
/// sets have at least a few times `PERMS` elements; noisier below.
pub fn estimate(a: &[u16; PERMS], b: &[u16; PERMS]) -> f32 {
    a.iter().zip(b.iter()).filter(|(x, y)| x == y).count() as f32 / PERMS as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_curve_matches_documented_values() {
        assert_eq!(BANDS * ROWS, PERMS);
        assert!(candidate_probability(0.75) > 0.998);
        assert!(candidate_probability(0.7) > 0.98);
        assert!(candidate_probability(0.1) < 3e-4);
        let mid = (1.0 / BANDS as f64).powf(1.0 / ROWS as f64);
        assert!(mid < 0.6 && mid > 0.5);
    }

    #[test]
    fn identical_sets_share_every_band_and_disjoint_share_none() {
        let p = Sketcher::new(7);
        let a: Vec<u64> = (0..200u64).map(mix64).collect();
        let b: Vec<u64> = (1000..1200u64).map(mix64).collect();
        let k = |s: &[u64]| band_keys(&p.signature(s));
        assert_eq!(k(&a), k(&a.clone()));
        let (ka, kb) = (k(&a), k(&b));
        assert!(ka.iter().zip(kb.iter()).all(|(x, y)| x != y));
    }
}

#[cfg(test)]
mod estimate_tests {
    use super::*;

    #[test]
    fn estimate_tracks_jaccard() {
        let p = Sketcher::new(3);
        // |A ∩ B| = 600, |A ∪ B| = 1000: J = 0.6.
        let a: Vec<u64> = (0..800u64).map(mix64).collect();
        let b: Vec<u64> = (200..1000u64).map(mix64).collect();
        let e = estimate(&compact(&p.signature(&a)), &compact(&p.signature(&b)));
        assert!((e - 0.6).abs() < 0.15, "{e}");
    }
}

#[cfg(test)]
mod s_curve_tests {
    use super::*;

    /// Two sets of `size` elements with Jaccard `j`: fraction of pairs that
    /// share a band, over `trials` independent pairs.
    fn candidate_rate(size: usize, j: f64, trials: u64) -> f64 {
        let p = Sketcher::new(11);
        // |A ∩ B| = c, |A| = |B| = size, J = c / (2·size - c).
        let c = ((2.0 * j * size as f64) / (1.0 + j)).round() as u64;
        let size = size as u64;
        let mut hits = 0;
        for t in 0..trials {
            let base = t << 32;
            let a: Vec<u64> = (0..size).map(|x| mix64(base + x)).collect();
            let b: Vec<u64> = (0..c)
                .chain(size..2 * size - c)
                .map(|x| mix64(base + x))
                .collect();
            let (ka, kb) = (band_keys(&p.signature(&a)), band_keys(&p.signature(&b)));
            if ka.iter().zip(kb.iter()).any(|(x, y)| x == y) {
                hits += 1;
            }
        }
        hits as f64 / trials as f64
    }

    #[test]
    fn empirical_s_curve_follows_the_formula() {
        for size in [20, 120, 500] {
            for (j, lo, hi) in [(0.8, 0.99, 1.0), (0.75, 0.97, 1.0), (0.3, 0.0, 0.2)] {
                let r = candidate_rate(size, j, 300);
                assert!(
                    r >= lo && r <= hi,
                    "size {size}, J {j}: rate {r} (formula {})",
                    candidate_probability(j)
                );
            }
        }
    }
}
