//! A passage's lexical sketch: its word count and the `near` stage's MinHash
//! band keys and folded signature. Ingest stores it beside the passage
//! (store format 4, [`encode`]) so that `dups` reads it back ([`Sketches`])
//! instead of shingling and hashing every passage again on every run.
//!
//! The stored bytes are this module's business. They open with a scheme
//! byte ([`SCHEME`]): a sketch made with another seed, shingle length or
//! band layout is recognised and recomputed, never compared with new ones.

use super::minhash::{self, Sketcher};
use super::shingle::{self, Folded};

/// Seed of the MinHash permutations (fixed: results are reproducible).
const MINHASH_SEED: u64 = 0x7061_7265_696c; // "pareil"
/// The near pre-filter applies only when both passages have at least this
/// many character shingles (≈ 50 words): below it the one-permutation
/// estimate is too noisy to discard on, and exact comparison is cheap.
const PREFILTER_MIN_SHINGLES: usize = 2 * minhash::PERMS;
/// Version of the stored layout and of everything the values depend on
/// (seed, `shingle::CHAR_K`, `minhash::PERMS` and `BANDS`, folding). Change
/// it with any of them: stored sketches of another scheme are then ignored.
const SCHEME: u8 = 1;
const KEYS_BYTES: usize = 8 * minhash::BANDS;
const COMPACT_BYTES: usize = 2 * minhash::PERMS;
/// scheme, word count (u32), band keys, has-compact flag.
const HEAD_BYTES: usize = 1 + 4 + KEYS_BYTES + 1;

/// A passage's MinHash sketch for the `near` stage.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NearSketch {
    pub keys: [u64; minhash::BANDS],
    /// The signature folded to 16 bits, only for sets large enough for a
    /// reliable estimate (see [`PREFILTER_MIN_SHINGLES`]).
    pub compact: Option<Box<[u16; minhash::PERMS]>>,
}

impl NearSketch {
    /// The sketch of a folded text.
    pub(super) fn of(words: &Folded) -> NearSketch {
        let shingles = shingle::char_shingles_unsorted(words);
        let signature = Sketcher::new(MINHASH_SEED).signature(&shingles);
        NearSketch {
            keys: minhash::band_keys(&signature),
            compact: (shingles.len() >= PREFILTER_MIN_SHINGLES)
                .then(|| minhash::compact(&signature)),
        }
    }
}

/// What a stored sketch holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stored {
    pub nwords: usize,
    pub near: NearSketch,
}

/// The bytes ingest stores for a passage of normalised text `norm`: 206
/// bytes, 456 with the folded signature (passages of ≈ 50 words and more).
pub fn encode(norm: &str) -> Vec<u8> {
    let words = shingle::fold(norm);
    let near = NearSketch::of(&words);
    let mut out = Vec::with_capacity(HEAD_BYTES + COMPACT_BYTES);
    out.push(SCHEME);
    out.extend_from_slice(&(words.nwords.min(u32::MAX as usize) as u32).to_le_bytes());
    for k in near.keys {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out.push(u8::from(near.compact.is_some()));
    for v in near.compact.iter().flat_map(|c| c.iter()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads stored bytes back; `None` for another scheme or a damaged value
/// (the caller recomputes).
pub(super) fn decode(bytes: &[u8]) -> Option<Stored> {
    if bytes.first() != Some(&SCHEME) || bytes.len() < HEAD_BYTES {
        return None;
    }
    let nwords = u32::from_le_bytes(bytes[1..5].try_into().ok()?) as usize;
    let mut keys = [0u64; minhash::BANDS];
    for (k, b) in keys
        .iter_mut()
        .zip(bytes[5..5 + KEYS_BYTES].chunks_exact(8))
    {
        *k = u64::from_le_bytes(b.try_into().ok()?);
    }
    let rest = &bytes[HEAD_BYTES..];
    let compact = match (bytes[HEAD_BYTES - 1], rest.len()) {
        (0, 0) => None,
        (1, COMPACT_BYTES) => {
            let mut c = Box::new([0u16; minhash::PERMS]);
            for (v, b) in c.iter_mut().zip(rest.chunks_exact(2)) {
                *v = u16::from_le_bytes([b[0], b[1]]);
            }
            Some(c)
        }
        _ => return None,
    };
    Some(Stored {
        nwords,
        near: NearSketch { keys, compact },
    })
}

/// Stored sketches of a run's passages, by item index, handed to the
/// lexical stages (which take each one instead of computing it).
#[derive(Debug, Default)]
pub struct Sketches(Vec<Option<Stored>>);

impl Sketches {
    /// Room for `n` passages, none known yet.
    pub fn new(n: usize) -> Self {
        Sketches((0..n).map(|_| None).collect())
    }

    /// Records item `i`'s stored bytes; false (and nothing kept) when they
    /// are of another scheme or damaged.
    pub fn insert(&mut self, i: usize, bytes: &[u8]) -> bool {
        let decoded = decode(bytes);
        let ok = decoded.is_some();
        if let Some(slot) = self.0.get_mut(i) {
            *slot = decoded;
        }
        ok
    }

    /// Passages with a sketch.
    pub fn known(&self) -> usize {
        self.0.iter().filter(|s| s.is_some()).count()
    }

    /// Every slot, item by item (as many as items; missing ones `None`).
    pub(super) fn into_slots(mut self, n: usize) -> Vec<Option<Stored>> {
        self.0.resize_with(n, || None);
        self.0.truncate(n);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 80 words: enough character shingles for the folded signature.
    fn long() -> String {
        (0..80)
            .map(|i| format!("mot{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_stored_sketch_reads_back_as_computed() {
        for norm in ["", "two words", &long()] {
            let words = shingle::fold(norm);
            let stored = decode(&encode(norm)).expect("decodes");
            assert_eq!(stored.nwords, words.nwords);
            assert_eq!(stored.near, NearSketch::of(&words));
        }
        assert!(decode(&encode(&long())).unwrap().near.compact.is_some());
        assert!(decode(&encode("two words")).unwrap().near.compact.is_none());
    }

    #[test]
    fn another_scheme_or_damaged_bytes_are_not_read() {
        let mut other = encode(&long());
        other[0] = SCHEME + 1;
        assert_eq!(decode(&other), None);
        let good = encode(&long());
        for cut in [0, 1, HEAD_BYTES - 1, HEAD_BYTES, good.len() - 1] {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let mut flag = encode("two words");
        flag[HEAD_BYTES - 1] = 2;
        assert_eq!(decode(&flag), None);
        let mut s = Sketches::new(2);
        assert!(!s.insert(0, &other));
        assert!(s.insert(1, &good));
        assert_eq!(s.known(), 1);
    }
}
