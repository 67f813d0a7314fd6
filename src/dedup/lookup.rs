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

use super::shingle::{self, mix64};
use super::sketch::NearSketch;
use super::Thresholds;

/// Kind tags mixed into a key, so an exact key never meets a band key.
const EXACT: u64 = 0x45;
const BAND: u64 = 0x42 << 8;
const WORD: u64 = 0x57 << 16;

/// The lexical keys of a normalised text under `th` (sorted, distinct;
/// none for an empty text, which is nobody's duplicate).
fn keys_of(norm: &str, th: &Thresholds) -> Vec<u64> {
    let trimmed = norm.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    let mut keys: Vec<u64> = exact_key(trimmed).into_iter().collect();
    let words = shingle::fold(norm);
    if words.nwords >= th.min_words_near.max(1) {
        let sketch = NearSketch::of(&words);
        keys.extend(
            (0u64..)
                .zip(sketch.keys)
                .map(|(band, key)| mix64(key ^ BAND ^ band)),
        );
    }
    if words.nwords >= th.min_words_contained.max(1) {
        keys.extend(
            shingle::word_shingles(&words)
                .into_iter()
                .map(|s| mix64(s ^ WORD)),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The key of a text's exact twins (one of [`keys_of`]'s).
fn exact_key(norm: &str) -> Option<u64> {
    let trimmed = norm.trim();
    (!trimmed.is_empty()).then(|| mix64(shingle::hash_bytes(trimmed.as_bytes()) ^ EXACT))
}

/// Passages by lexical key. The bulk is one sorted array (16 bytes per
/// key occurrence: about 100 keys for a 60-word passage), built once;
/// passages added later go to a small hash map. Passages are never taken
/// out: the caller drops ids it no longer holds.
pub(crate) struct LexicalLookup {
    th: Thresholds,
    sorted: Vec<(u64, u32)>,
    recent: HashMap<u64, Vec<u32>>,
    /// Key occurrences in `recent`: past a quarter of `sorted` (or a
    /// million) they are merged into it, so a long run's additions stay
    /// in the compact form.
    recent_len: usize,
    /// Slot → passage id.
    ids: Vec<i64>,
}

impl LexicalLookup {
    /// Indexes `passages` (`(id, normalised text)`) under `th`'s keys, in parallel.
    pub fn build(passages: &[(i64, &str)], th: &Thresholds) -> Self {
        let _span = tracing::info_span!("lexical_lookup", passages = passages.len()).entered();
        let mut sorted: Vec<(u64, u32)> = passages
            .par_iter()
            .enumerate()
            .flat_map_iter(|(slot, (_, norm))| {
                keys_of(norm, th).into_iter().map(move |k| (k, slot as u32))
            })
            .collect();
        sorted.par_sort_unstable();
        LexicalLookup {
            th: th.clone(),
            sorted,
            recent: HashMap::new(),
            recent_len: 0,
            ids: passages.iter().map(|(id, _)| *id).collect(),
        }
    }

    /// The thresholds whose stages the keys serve.
    pub fn thresholds(&self) -> &Thresholds {
        &self.th
    }

    /// Adds one passage.
    pub fn insert(&mut self, id: i64, norm: &str) {
        let slot = self.ids.len() as u32;
        self.ids.push(id);
        let keys = keys_of(norm, &self.th);
        self.recent_len += keys.len();
        for k in keys {
            self.recent.entry(k).or_default().push(slot);
        }
        if self.recent_len > (self.sorted.len() / 4).max(1 << 20) {
            self.sorted.extend(
                self.recent
                    .drain()
                    .flat_map(|(k, slots)| slots.into_iter().map(move |s| (k, s))),
            );
            self.sorted.par_sort_unstable();
            self.recent_len = 0;
        }
    }

    /// Every passage sharing a key with one of `norms`.
    pub fn sharing_keys(&self, norms: &[&str]) -> HashSet<i64> {
        let mut met = HashSet::new();
        for norm in norms {
            self.meet(&keys_of(norm, &self.th), &mut met);
        }
        met
    }

    /// Adds to `met` the exact twins of the texts `norms`.
    pub fn add_exact_twins(&self, norms: &[&str], met: &mut HashSet<i64>) {
        let keys: Vec<u64> = norms.iter().filter_map(|n| exact_key(n)).collect();
        self.meet(&keys, met);
    }

    /// Adds to `out` every passage filed under one of `keys`.
    fn meet(&self, keys: &[u64], out: &mut HashSet<i64>) {
        for &k in keys {
            let from = self.sorted.partition_point(|&(key, _)| key < k);
            let run = self.sorted[from..].iter().take_while(|&&(key, _)| key == k);
            out.extend(run.map(|&(_, slot)| self.ids[slot as usize]));
            if let Some(slots) = self.recent.get(&k) {
                out.extend(slots.iter().map(|&slot| self.ids[slot as usize]));
            }
        }
    }
}
