//! Which stored passages a new one could be a lexical duplicate of, without
//! looking at the others: the keys each lexical stage meets its candidates
//! by, kept for a whole corpus so that dedup on ingestion (`--on-duplicate
//! skip|fail`) judges each document against the few passages that share a
//! key with it instead of re-running every stage over the whole store —
//! 1.5 s a document at 100k stored passages, growing with the store.
//!
//! The keys are the stages' own: the trimmed normalised text (exact), the
//! 25 MinHash band keys of a passage long enough for `near`, and every word
//! 3-shingle of one long enough for `contained`. Any pair a stage could
//! propose shares one of them: `near` proposes pairs that share a band key;
//! `contained` needs the shorter side's rarest shingles in the longer (the
//! prefix filter, [`super::contain`]), which share a shingle. The caller
//! then runs the stages on the new passages and the passages met, plus the
//! exact twins of those (so each exact group's canonical is the one the
//! whole corpus would pick), and gets the pairs a whole run would report —
//! the one difference being that the caps a whole run applies to
//! boilerplate (a band bucket's first 64 members, shingles in more than
//! 10,000 passages) do not bind among so few passages, so it may verify a
//! pair a whole run would have passed over.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::minhash;
use super::shingle::{self, mix64};
use super::sketch::{decode, NearSketch};
use super::Thresholds;

/// Kind tags mixed into a key, so an exact key never meets a band key.
const EXACT: u64 = 0x45;
const BAND: u64 = 0x42 << 8;
const WORD: u64 = 0x57 << 16;

/// A key as filed: 32 bits of its hash. Two keys that share them only add
/// a passage to verify (at a million passages, a few per document).
type Key = u32;

fn key(hash: u64, tag: u64) -> Key {
    (mix64(hash ^ tag) >> 32) as Key
}

fn band_keys(keys: &[u64; minhash::BANDS]) -> impl Iterator<Item = Key> + '_ {
    (0u64..).zip(keys).map(|(band, &k)| key(k, BAND ^ band))
}

/// The key of a text's exact twins; none for an empty text, which is
/// nobody's duplicate.
fn exact_key(norm: &str) -> Option<Key> {
    let trimmed = norm.trim();
    (!trimmed.is_empty()).then(|| key(shingle::hash_bytes(trimmed.as_bytes()), EXACT))
}

/// Where a text's band keys come from.
#[derive(Clone, Copy)]
enum Bands<'a> {
    /// Worked out from the text.
    Compute,
    /// Read from its stored sketch (worked out when the bytes do not decode).
    Stored(&'a [u8]),
    /// Not wanted: the caller files them itself.
    Leave,
}

/// The lexical keys of a normalised text: band keys for a text of at least
/// `min_near` words, word 3-shingles for one of at least `min_contained`.
fn keys_of(norm: &str, min_near: usize, min_contained: usize, bands: Bands) -> Vec<Key> {
    let Some(exact) = exact_key(norm) else {
        return Vec::new();
    };
    let mut keys = vec![exact];
    let words = shingle::fold(norm);
    if words.nwords >= min_near.max(1) && !matches!(bands, Bands::Leave) {
        let stored = match bands {
            Bands::Stored(bytes) => decode(bytes),
            _ => None,
        };
        let near = stored.map_or_else(|| NearSketch::of(&words), |s| s.near);
        keys.extend(band_keys(&near.keys));
    }
    if words.nwords >= min_contained.max(1) {
        keys.extend(
            shingle::word_shingles(&words)
                .into_iter()
                .map(|s| key(s, WORD)),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The keys a store indexes for a passage of normalised text `norm` whose
/// stored sketch is `sketch` ([`super::sketch::encode`]): every key
/// [`query_keys`] could ask for under any thresholds — the exact key, the
/// band keys of any text with a word, every word 3-shingle — so a store
/// that finds lexical neighbours itself (PostgreSQL) answers for whatever
/// thresholds a run uses.
pub fn stored_keys(norm: &str, sketch: &[u8]) -> Vec<u32> {
    keys_of(norm, 1, 1, Bands::Stored(sketch))
}

/// The keys under which the passages a text of normalised text `norm` can
/// pair with under `th` are filed (a subset of a store's [`stored_keys`]).
pub fn query_keys(norm: &str, th: &Thresholds) -> Vec<u32> {
    keys_of(
        norm,
        th.min_words_near,
        th.min_words_contained,
        Bands::Compute,
    )
}

/// A key's entry in the sorted array.
fn entry(k: Key, slot: usize) -> u64 {
    (k as u64) << 32 | slot as u64
}

/// Passages by lexical key. The bulk is one sorted array of `key << 32 |
/// slot` (8 bytes per key occurrence: about 100 keys for a 60-word
/// passage), built once; passages added later go to a small hash map,
/// merged into the array as it grows. Passages are never taken out: the
/// caller drops ids it no longer holds.
pub(crate) struct LexicalLookup {
    th: Thresholds,
    sorted: Vec<u64>,
    recent: HashMap<Key, Vec<u32>>,
    /// Key occurrences in `recent`: past a quarter of `sorted` (or a
    /// million) they are merged into it.
    recent_len: usize,
    /// Slot → passage id.
    ids: Vec<i64>,
}

impl LexicalLookup {
    /// Indexes `passages` (`(id, normalised text)`) under `th`'s keys, in
    /// parallel. `stored_sketches` hands over the sketches stored at
    /// ingest (`(id, bytes)`, [`super::sketch`]), whose band keys are taken
    /// as they are: the MinHash is most of the work of keying a passage.
    pub fn build(
        passages: &[(i64, &str)],
        th: &Thresholds,
        stored_sketches: impl FnOnce(&mut dyn FnMut(i64, &[u8])) -> crate::error::Result<()>,
    ) -> crate::error::Result<Self> {
        let _span = tracing::info_span!("lexical_lookup", passages = passages.len()).entered();
        let slot_of: HashMap<i64, usize> =
            (0..passages.len()).map(|s| (passages[s].0, s)).collect();
        // Stored band keys go straight in; the passages given them are
        // keyed below without their own.
        let mut sorted: Vec<u64> = Vec::new();
        let mut banded = vec![false; passages.len()];
        stored_sketches(&mut |id, bytes| {
            let (Some(&slot), Some(stored)) = (slot_of.get(&id), decode(bytes)) else {
                return;
            };
            banded[slot] = true;
            if stored.nwords >= th.min_words_near.max(1) && exact_key(passages[slot].1).is_some() {
                sorted.extend(band_keys(&stored.near.keys).map(|k| entry(k, slot)));
            }
        })?;
        drop(slot_of);
        let rest: Vec<u64> = passages
            .par_iter()
            .zip(banded)
            .enumerate()
            .flat_map_iter(|(slot, ((_, norm), banded))| {
                let bands = if banded { Bands::Leave } else { Bands::Compute };
                keys_of(norm, th.min_words_near, th.min_words_contained, bands)
                    .into_iter()
                    .map(move |k| entry(k, slot))
            })
            .collect();
        sorted.extend(rest);
        sorted.par_sort_unstable();
        sorted.shrink_to_fit();
        Ok(LexicalLookup {
            th: th.clone(),
            sorted,
            recent: HashMap::new(),
            recent_len: 0,
            ids: passages.iter().map(|(id, _)| *id).collect(),
        })
    }

    /// The thresholds whose stages the keys serve.
    pub fn thresholds(&self) -> &Thresholds {
        &self.th
    }

    /// Adds one passage.
    pub fn insert(&mut self, id: i64, norm: &str) {
        let slot = self.ids.len() as u32;
        self.ids.push(id);
        let keys = query_keys(norm, &self.th);
        self.recent_len += keys.len();
        for k in keys {
            self.recent.entry(k).or_default().push(slot);
        }
        if self.recent_len > (self.sorted.len() / 4).max(1 << 20) {
            self.sorted.extend(
                self.recent
                    .drain()
                    .flat_map(|(k, slots)| slots.into_iter().map(move |s| entry(k, s as usize))),
            );
            self.sorted.par_sort_unstable();
            self.recent_len = 0;
        }
    }

    /// Every passage filed under a key of one of the key sets `keys`
    /// ([`query_keys`] under this lookup's thresholds).
    pub fn sharing_keys(&self, keys: &[Vec<Key>]) -> HashSet<i64> {
        let mut met = HashSet::new();
        for set in keys {
            self.meet(set, &mut met);
        }
        met
    }

    /// Adds to `met` the exact twins of the texts `norms`.
    pub fn add_exact_twins(&self, norms: &[&str], met: &mut HashSet<i64>) {
        let keys: Vec<Key> = norms.iter().filter_map(|n| exact_key(n)).collect();
        self.meet(&keys, met);
    }

    /// Adds to `out` every passage filed under one of `keys`.
    fn meet(&self, keys: &[Key], out: &mut HashSet<i64>) {
        for &k in keys {
            let from = self.sorted.partition_point(|&e| e < entry(k, 0));
            let run = self.sorted[from..]
                .iter()
                .take_while(|&&e| e >> 32 == k as u64);
            out.extend(run.map(|&e| self.ids[(e & 0xffff_ffff) as usize]));
            if let Some(slots) = self.recent.get(&k) {
                out.extend(slots.iter().map(|&slot| self.ids[slot as usize]));
            }
        }
    }
}
