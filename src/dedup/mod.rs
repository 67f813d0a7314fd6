//! Duplicate detection over passages: the four detectors (exact, near,
//! contained, semantic), and what users see of them (blocks, groups,
//! explanations, score histograms). Pure algorithms on plain data: this
//! module knows nothing of the store, the files or the model. The caller
//! hands in passages as [`Item`]s (with the corpus module's normalised text)
//! and, for the semantic layer, each passage's top-k embedding neighbours.
//!
//! Pipeline of [`find_pairs`]; no stage compares all pairs:
//! 1. **exact** — hash of the normalised text, sort, equal runs. Each group of
//!    equal texts keeps one representative for the next stages.
//! 2. **near** — character 5-shingles of the accent-folded text; a
//!    125-row one-permutation MinHash (see [`minhash`]) banded 25 × 5
//!    proposes candidates, a 16-bit signature estimate drops hopeless ones,
//!    and exact Jaccard of the shingle sets confirms the rest.
//! 3. **contained** — word 3-shingles in an inverted index probed with an
//!    exact prefix filter (see [`contain`]); the containment
//!    `|A ∩ B| / |A|` of the shorter side confirms.
//! 4. **semantic** — the caller's neighbour lists; a pair already linked by a
//!    lexical layer keeps its lexical kind.
//!
//! Why two shingle kinds: character 5-shingles make `near` tolerant of
//! typos (an edited character changes at most 5 shingles, less than one
//! word's worth; with word 3-shingles it would change three words' worth),
//! while word 3-shingles make
//! `contained` discriminating and indexable (a random 8-word passage shares
//! many character 5-grams with any long paragraph, but almost never three
//! consecutive words).
//!
//! Ingest-time use: there is no persistent index. [`find_pairs_touching`]
//! reruns the pipeline over stored + new passages but only verifies and
//! returns pairs that involve a new passage. Measured on a 2-core machine
//! (release, shared with other builds): 10k passages 0.55 s, 100k passages
//! 7 s for the three lexical layers — small next to embedding the new
//! passages, and a persisted index would be a second schema to keep in sync.

pub mod blocks;
pub mod contain;
pub mod diff;
pub mod group;
pub mod histogram;
pub mod minhash;
pub mod scan;
pub mod shingle;
#[cfg(test)]
mod tests;

pub use blocks::{merge_blocks, Finding, Span};
pub use diff::word_diff;
pub use group::{group, Group, Member};
pub use histogram::{histogram, Histogram};

use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One passage as the detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The caller's passage id (opaque here; carried for the caller's convenience).
    pub id: i64,
    /// Document the passage belongs to.
    pub doc: i64,
    /// Passage index within its document (consecutive passages differ by 1).
    pub pos: usize,
    /// Ingest order: lower is older, and the oldest member of a group is its canonical.
    pub order: u64,
    /// Original text (used for explanations).
    pub text: &'a str,
    /// Normalised text (NFKC, case folded, quotes/dashes unified, whitespace collapsed).
    pub norm: &'a str,
    /// Language guess (ISO 639-1), for the semantic layer's cross-lingual threshold.
    pub lang: Option<&'a str>,
}

/// Which detector reported a pair. Ordered from strictest to loosest, which
/// is also the precedence when a pair qualifies for several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exact,
    Near,
    Contained,
    Semantic,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Exact, Kind::Near, Kind::Contained, Kind::Semantic];
    pub const LEXICAL: [Kind; 3] = [Kind::Exact, Kind::Near, Kind::Contained];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Near => "near",
            Kind::Contained => "contained",
            Kind::Semantic => "semantic",
        }
    }

    pub fn is_lexical(self) -> bool {
        self != Kind::Semantic
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown duplicate kind '{s}' (expected exact, near, contained or semantic)"
                ))
            })
    }
}

/// Per-kind thresholds. Defaults are derived from first principles (see each
/// field), not fitted to the evaluation pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Minimum Jaccard of character 5-shingles for `near`. A substitution
    /// edit changes up to 5 shingles out of ≈ L (text length in characters),
    /// so J ≈ (L - 5e)/(L + 5e) for e edits: 0.75 tolerates one edited
    /// character every ~35 characters (~one per 6 words), heavy retouching
    /// of the same text, while two different paragraphs on the same topic sit
    /// around 0.05–0.2. Accents, case and punctuation are folded away before
    /// shingling and do not count as edits at all.
    pub near_jaccard: f32,
    /// Minimum containment (share of the shorter side's word 3-shingles found
    /// in the longer side) for `contained`. 0.8 lets a fifth of the short
    /// side's shingles differ — about one edited word in 15 (each edit costs
    /// 3 shingles) — while chance containment of an 8+-word passage in an
    /// unrelated one is essentially 0 (most 3-word sequences are unique).
    pub contained: f32,
    /// Shorter side of a `contained` pair must have at least this many words:
    /// below it, a stock phrase ("selon lequel l'innovation en matière") is
    /// contained in many passages without being a duplicate. 8 words = 6
    /// shingles, of which 5 must match.
    pub min_words_contained: usize,
    /// The longer side must have at least this many times the shorter's words;
    /// below it the two are about the same text and the pair is judged as
    /// `near` instead. 1.2 = at least a sentence in five added.
    pub contained_min_ratio: f32,
    /// Passages shorter than this many words are not compared as `near`
    /// (they can still be `exact`): two- or three-word headings differ by
    /// one word and nothing else.
    pub min_words_near: usize,
    /// Minimum embedding cosine for `semantic`. Placeholder: must be
    /// calibrated from the model's measured cosine distribution (use
    /// [`histogram`]).
    pub semantic: f32,
    /// Minimum embedding cosine for `semantic` when the two passages are in
    /// different languages (translations score lower than same-language
    /// paraphrases with this model; see the README's calibration notes).
    pub semantic_cross_lingual: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            near_jaccard: 0.75,
            contained: 0.8,
            min_words_contained: 8,
            contained_min_ratio: 1.2,
            min_words_near: 3,
            semantic: 0.95,
            semantic_cross_lingual: 0.91,
        }
    }
}

impl Thresholds {
    /// The threshold that applies to `kind` (1.0 for exact).
    pub fn for_kind(&self, kind: Kind) -> f32 {
        match kind {
            Kind::Exact => 1.0,
            Kind::Near => self.near_jaccard,
            Kind::Contained => self.contained,
            Kind::Semantic => self.semantic,
        }
    }

    /// The lowest semantic threshold of any pair: where neighbour search can stop.
    pub fn semantic_floor(&self) -> f32 {
        self.semantic.min(self.semantic_cross_lingual)
    }

    /// The semantic threshold for a pair: the cross-lingual one when both
    /// languages are known and differ.
    pub fn semantic_for(&self, a: Option<&str>, b: Option<&str>) -> f32 {
        match (a, b) {
            (Some(x), Some(y)) if x != y => self.semantic_cross_lingual,
            _ => self.semantic,
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("near", self.near_jaccard),
            ("contained", self.contained),
            ("semantic", self.semantic),
            ("semantic cross-lingual", self.semantic_cross_lingual),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(Error::Usage(format!(
                    "{name} threshold must be in (0, 1], got {v}"
                )));
            }
        }
        if self.contained_min_ratio < 1.0 || self.contained_min_ratio.is_nan() {
            return Err(Error::Usage(format!(
                "contained length ratio must be at least 1, got {}",
                self.contained_min_ratio
            )));
        }
        Ok(())
    }
}

/// A duplicate pair of indices into the `items` slice. For `contained`,
/// either side may be the shorter one; compare word counts to tell which
/// lies inside which.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The older side: lower `(order, index)`.
    pub canonical: usize,
    /// The newer side, reported as the copy.
    pub duplicate: usize,
    pub kind: Kind,
    /// 1 for exact, Jaccard for near, containment for contained, cosine for semantic.
    pub score: f32,
}

/// One entry of a passage's semantic neighbour list: another passage and
/// the embedding cosine between the two.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SemanticNeighbour {
    /// Index of the other passage in the `items` slice.
    pub index: usize,
    /// Cosine similarity of the two passages' embeddings.
    pub score: f32,
}

/// Exact groups up to this size report every pair (so a repeated block is
/// still seen as a block when one of its lines also appears elsewhere);
/// bigger groups report a star around the canonical to stay linear.
const EXACT_CLIQUE: usize = 16;
/// In an LSH bucket of m passages (sorted by ingest order) each passage is
/// compared with at most this many earlier ones. Huge buckets only arise
/// from mass near-copies; grouping still connects them through the first
/// members, and the work stays linear in m.
const MAX_BUCKET_PEERS: usize = 64;
/// Containment floor used when collecting scores for the histogram, so it
/// shows the distribution below the threshold too.
const HIST_CONTAINED_FLOOR: f32 = 0.5;
/// LSH candidates whose signature estimate is this far below the near
/// threshold are dropped before exact verification. The estimate's standard
/// deviation is ≤ 0.045 (125 rows), so 0.2 is > 4σ: a true near-duplicate
/// is essentially never lost, while most of the LSH false candidates (real
/// Jaccard 0.05–0.3) are, which keeps verification linear at 100k passages.
const NEAR_PREFILTER_MARGIN: f32 = 0.2;
/// The pre-filter applies only when both passages have at least this many
/// character shingles (≈ 50 words): below it the one-permutation estimate
/// is too noisy to discard on, and exact comparison is cheap.
const PREFILTER_MIN_SHINGLES: usize = 2 * minhash::PERMS;
/// Lowest estimated Jaccard verified when collecting histogram scores.
const HIST_NEAR_FLOOR: f32 = 0.4;
/// Seed of the MinHash permutations (fixed: results are reproducible).
const MINHASH_SEED: u64 = 0x7061_7265_696c; // "pareil"

/// Every duplicate pair among `items`, for the requested `kinds`.
///
/// `neighbours[i]` lists passage `i`'s nearest neighbours (any k, any
/// order, self entries ignored); needed only for [`Kind::Semantic`]. Pairs
/// are sorted by `(canonical, duplicate)`.
///
/// Near and contained pairs are computed between the representatives of
/// exact groups (a near copy is reported against the canonical of the text
/// it copies, not against each of its exact twins). If no lexical kind is
/// requested, every neighbour at or above the semantic threshold is semantic.
pub fn find_pairs(
    items: &[Item],
    neighbours: Option<&[Vec<SemanticNeighbour>]>,
    th: &Thresholds,
    kinds: &[Kind],
) -> Result<Vec<Pair>> {
    Ok(detect(items, neighbours, th, kinds, 0, false)?.pairs)
}

/// Like [`find_pairs`] but returns (and verifies) only pairs involving at
/// least one passage with index `>= first_new`: the ingest-time check of new
/// passages against stored ones and against each other. Pairs between two
/// stored passages are not reported.
pub fn find_pairs_touching(
    items: &[Item],
    first_new: usize,
    neighbours: Option<&[Vec<SemanticNeighbour>]>,
    th: &Thresholds,
    kinds: &[Kind],
) -> Result<Vec<Pair>> {
    Ok(detect(items, neighbours, th, kinds, first_new, false)?.pairs)
}

/// What one pass produces: the pairs, and optionally each passage's best
/// score per kind among all verified candidates (for [`histogram`]).
pub(crate) struct Detection {
    pub pairs: Vec<Pair>,
    /// `best[i][kind as usize]`, NaN when passage `i` had no candidate.
    pub best: Vec<[f32; 4]>,
}

/// Per-passage lexical preparation, computed once and in parallel. The
/// folded words themselves are not kept (memory); `near` verification
/// recomputes the character shingles of the few candidate pairs.
struct Prep {
    nwords: usize,
    /// LSH band keys and compact signature, for `near`-eligible passages;
    /// the signature only for sets large enough for a reliable estimate.
    near: Option<NearSketch>,
    wsh: Vec<u64>,
}

struct NearSketch {
    keys: [u64; minhash::BANDS],
    compact: Option<Box<[u16; minhash::PERMS]>>,
}

pub(crate) fn detect(
    items: &[Item],
    neighbours: Option<&[Vec<SemanticNeighbour>]>,
    th: &Thresholds,
    kinds: &[Kind],
    first_new: usize,
    collect_best: bool,
) -> Result<Detection> {
    th.validate()?;
    let n = items.len();
    if n > u32::MAX as usize {
        return Err(Error::Usage(format!("too many passages for one scan: {n}")));
    }
    if let Some(nb) = neighbours {
        if nb.len() != n {
            return Err(Error::Usage(format!(
                "neighbour lists for {} passages, but {n} passages given",
                nb.len()
            )));
        }
        if let Some((i, j)) = nb
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.iter().find(|s| s.index >= n).map(|s| (i, s.index)))
        {
            return Err(Error::Usage(format!(
                "passage {i} lists neighbour {j}, but only {n} passages given"
            )));
        }
    }
    let want = |k: Kind| kinds.contains(&k);
    let touches = |i: usize, j: usize| i.max(j) >= first_new;
    let canon = |i: usize, j: usize| {
        if (items[i].order, i) <= (items[j].order, j) {
            (i, j)
        } else {
            (j, i)
        }
    };
    let mut best = if collect_best {
        vec![[f32::NAN; 4]; n]
    } else {
        Vec::new()
    };
    let mut pairs: Vec<Pair> = Vec::new();

    // 1. exact — and representatives for the lexical stages.
    let mut is_rep = vec![true; n];
    if Kind::LEXICAL.iter().any(|&k| want(k)) {
        let mut keyed: Vec<(u64, u64, usize)> = (0..n)
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
            for g in groups.into_iter().filter(|g| g.len() > 1) {
                // `g` is in (order, index) order: g[0] is canonical.
                for &i in &g[1..] {
                    is_rep[i] = false;
                }
                if collect_best {
                    for &i in &g {
                        best[i][Kind::Exact.slot()] = 1.0;
                    }
                }
                if !want(Kind::Exact) {
                    continue;
                }
                let heads = if g.len() <= EXACT_CLIQUE { g.len() } else { 1 };
                for x in 0..heads {
                    for y in x + 1..g.len() {
                        if touches(g[x], g[y]) {
                            pairs.push(Pair {
                                canonical: g[x],
                                duplicate: g[y],
                                kind: Kind::Exact,
                                score: 1.0,
                            });
                        }
                    }
                }
            }
        }
    }

    // 2–3. near and contained.
    let (do_near, do_cont) = (want(Kind::Near), want(Kind::Contained));
    if do_near || do_cont {
        let perms = minhash::Sketcher::new(MINHASH_SEED);
        let prep: Vec<Prep> = (0..n)
            .into_par_iter()
            .map(|i| {
                if !is_rep[i] {
                    return Prep {
                        nwords: 0,
                        near: None,
                        wsh: Vec::new(),
                    };
                }
                let words = shingle::fold(items[i].norm);
                let nwords = words.nwords;
                let near = (do_near && nwords >= th.min_words_near.max(1)).then(|| {
                    let sh = shingle::char_shingles_unsorted(&words);
                    let sig = perms.signature(&sh);
                    let est = (sh.len() >= PREFILTER_MIN_SHINGLES).then(|| minhash::compact(&sig));
                    NearSketch {
                        keys: minhash::band_keys(&sig),
                        compact: est,
                    }
                });
                let wsh = if do_cont && nwords >= th.min_words_contained.max(1) {
                    shingle::word_shingles(&words)
                } else {
                    Vec::new()
                };
                Prep { nwords, near, wsh }
            })
            .collect();

        let mut cands: Vec<(u32, u32)> = Vec::new();
        let near_floor = if collect_best {
            HIST_NEAR_FLOOR.min(th.near_jaccard - NEAR_PREFILTER_MARGIN)
        } else {
            th.near_jaccard - NEAR_PREFILTER_MARGIN
        };
        if do_near {
            let per_band: Vec<Vec<(u32, u32)>> = (0..minhash::BANDS)
                .into_par_iter()
                .map(|band| {
                    let mut v: Vec<(u64, u64, u32)> = prep
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| {
                            p.near
                                .as_ref()
                                .map(|ns| (ns.keys[band], items[i].order, i as u32))
                        })
                        .collect();
                    v.sort_unstable();
                    let mut out = Vec::new();
                    for run in v.chunk_by(|x, y| x.0 == y.0) {
                        for y in 1..run.len() {
                            for x in 0..y.min(MAX_BUCKET_PEERS) {
                                let (i, j) = (run[x].2, run[y].2);
                                // Cheap pre-filter on the signatures: a pair
                                // estimated 0.2 (> 4σ) below the bar is not
                                // worth an exact comparison.
                                let sketch = |k: u32| {
                                    prep[k as usize]
                                        .near
                                        .as_ref()
                                        .and_then(|ns| ns.compact.as_deref())
                                };
                                let keep = match (sketch(i), sketch(j)) {
                                    (Some(a), Some(b)) => minhash::estimate(a, b) >= near_floor,
                                    // Short sets: exact comparison is cheap anyway.
                                    _ => true,
                                };
                                if keep && touches(i as usize, j as usize) {
                                    out.push((i.min(j), i.max(j)));
                                }
                            }
                        }
                    }
                    out
                })
                .collect();
            cands.extend(per_band.into_iter().flatten());
        }
        if do_cont {
            let sets: Vec<&[u64]> = prep.iter().map(|p| p.wsh.as_slice()).collect();
            // Every passage long enough to be the shorter side is indexed
            // (it can also be a longer side); `keep` enforces the length ratio.
            let index = contain::WordIndex::build(&sets, |i| !sets[i].is_empty());
            let t = if collect_best {
                th.contained.min(HIST_CONTAINED_FLOOR)
            } else {
                th.contained
            };
            let found: Vec<(u32, u32)> = (0..n)
                .into_par_iter()
                .filter(|&a| !sets[a].is_empty())
                .flat_map_iter(|a| {
                    let need = prep[a].nwords as f32 * th.contained_min_ratio;
                    index
                        .candidates(a, t, |b| prep[b].nwords as f32 >= need)
                        .into_iter()
                        .filter(move |&b| touches(a, b))
                        .map(move |b| (a.min(b) as u32, a.max(b) as u32))
                })
                .collect();
            cands.extend(found);
        }
        cands.par_sort_unstable();
        cands.dedup();

        // Verify every candidate exactly.
        struct Verified {
            i: usize,
            j: usize,
            jac: f32,
            cont: f32,
            short: usize,
        }
        let verified: Vec<Verified> = cands
            .par_iter()
            .map(|&(i, j)| {
                let (i, j) = (i as usize, j as usize);
                let jac = if do_near && prep[i].near.is_some() && prep[j].near.is_some() {
                    let ci = shingle::char_shingles(&shingle::fold(items[i].norm));
                    let cj = shingle::char_shingles(&shingle::fold(items[j].norm));
                    shingle::jaccard(&ci, &cj)
                } else {
                    f32::NAN
                };
                let (s, l) = if prep[i].nwords <= prep[j].nwords {
                    (i, j)
                } else {
                    (j, i)
                };
                let cont = if do_cont
                    && !prep[s].wsh.is_empty()
                    && !prep[l].wsh.is_empty()
                    && prep[l].nwords as f32 >= prep[s].nwords as f32 * th.contained_min_ratio
                {
                    shingle::intersect_len(&prep[s].wsh, &prep[l].wsh) as f32
                        / prep[s].wsh.len() as f32
                } else {
                    f32::NAN
                };
                Verified {
                    i,
                    j,
                    jac,
                    cont,
                    short: s,
                }
            })
            .collect();
        for v in verified {
            // Contained first: when the longer side is meaningfully longer,
            // "A lies inside B" is the more informative statement.
            let kind = if v.cont >= th.contained {
                Some((Kind::Contained, v.cont))
            } else if v.jac >= th.near_jaccard {
                Some((Kind::Near, v.jac))
            } else {
                None
            };
            if let Some((kind, score)) = kind {
                let (canonical, duplicate) = canon(v.i, v.j);
                pairs.push(Pair {
                    canonical,
                    duplicate,
                    kind,
                    score,
                });
            }
            if collect_best {
                for x in [v.i, v.j] {
                    let slot = &mut best[x][Kind::Near.slot()];
                    if !v.jac.is_nan() && (slot.is_nan() || v.jac > *slot) {
                        *slot = v.jac;
                    }
                }
                let slot = &mut best[v.short][Kind::Contained.slot()];
                if !v.cont.is_nan() && (slot.is_nan() || v.cont > *slot) {
                    *slot = v.cont;
                }
            }
        }
    }

    // 4. semantic.
    if let (true, Some(nb)) = (want(Kind::Semantic), neighbours) {
        // Components of the lexical graph: a pair already explained by a
        // lexical layer (directly or through an exact twin) is not
        // re-reported as semantic.
        let mut uf = group::UnionFind::new(n);
        for p in &pairs {
            uf.union(p.canonical, p.duplicate);
        }
        let mut sem: HashMap<(usize, usize), f32> = HashMap::new();
        for (i, list) in nb.iter().enumerate() {
            for &SemanticNeighbour {
                index: j,
                score: cos,
            } in list
            {
                if j == i || cos.is_nan() {
                    continue;
                }
                if collect_best {
                    let slot = &mut best[i][Kind::Semantic.slot()];
                    if slot.is_nan() || cos > *slot {
                        *slot = cos;
                    }
                }
                if cos < th.semantic_for(items[i].lang, items[j].lang)
                    || !touches(i, j)
                    || uf.find(i) == uf.find(j)
                {
                    continue;
                }
                let e = sem.entry(canon(i, j)).or_insert(cos);
                *e = e.max(cos);
            }
        }
        pairs.extend(sem.into_iter().map(|((canonical, duplicate), score)| Pair {
            canonical,
            duplicate,
            kind: Kind::Semantic,
            score,
        }));
    }

    pairs.sort_unstable_by_key(|p| (p.canonical, p.duplicate));
    Ok(Detection { pairs, best })
}
