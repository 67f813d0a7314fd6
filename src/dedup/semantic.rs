//! Stage 4, **semantic**: pairs whose embeddings are close, read from the
//! caller's neighbour lists (this module never sees a vector), and accepted
//! only when the words agree. It owns the check of those lists, the
//! decision rule, and the rule that a pair already linked by a lexical stage
//! (directly or through an exact twin) keeps its lexical kind.
//!
//! The rule, measured on `../shared/eval/debian-dev` (BENCHMARKS.md): no
//! single cosine cut separates translations from templated look-alikes,
//! because a look-alike in the same language often scores above the
//! translation. So:
//! - **same language** (or a language unknown): cosine ≥ `semantic` and no
//!   veto from the text's evidence (names, numbers, template fillers; see
//!   [`evidence`](super::evidence)) — except that one template filled twice
//!   is a rewording from [`REWORDING_COSINE`] on, unless the words that
//!   differ negate or oppose each other;
//! - **across languages**: cosine ≥ `semantic_cross_lingual`, no veto, and
//!   each side is the other's best such match in the other's language
//!   (mutual nearest neighbours, as in bitext mining): a translation is its
//!   original's unique best match, a template has many look-alikes; and it
//!   stands out of each side's crowd (margin);
//! - or, across languages, a **second rendering** (see
//!   [`second_rendering`]): one side's best match is the other, whose own
//!   best is a third text in the first side's language, with fewer copies,
//!   that the first side differs from in no name or number (translators
//!   render two originals with one sentence, or one original two ways);
//! - then, across languages, pairs are taken strongest first and a pair
//!   whose sides already have different partners in a third language is
//!   refused (see [`third_language_check`]).

use super::diff::truncate;
use super::evidence::{opposed, Evidence, Veto};
use super::group::UnionFind;
use super::{BestScores, Context, Item, Kind, Pair, SemanticNeighbour, SEMANTIC_NEIGHBOURS};
use crate::error::{Error, Result};
use std::cell::OnceCell;
use std::collections::HashMap;

/// Neighbours in the other language that make up a passage's crowd
/// (Artetxe & Schwenk use 4).
const MARGIN_NEIGHBOURS: usize = 4;
/// The margin a translation needs over its crowd: at least as close as the
/// crowd's mean. Measured on debian-dev (BENCHMARKS.md), 1.0 trades 2
/// points of translations found for 6 points of precision; higher values
/// cost more recall than they gain.
const MIN_MARGIN: f32 = 1.0;
/// Cosine from which two texts of one language that read as one template
/// filled twice are the same text in other words ("This package contains
/// the shared library." / "… provides the shared library.", 0.992). Read
/// by hand on debian-dev (`scripts/data/same-language-labels.tsv`): of the
/// 79 distinct template-shaped pairs at or above it, none differs in
/// meaning; from 0.975 to 0.98, 5 of 44 do ("binary protocol" / "compact
/// protocol"); from 0.965 to 0.975, 20 of a sample of 45 ("fichiers
/// communs" / "fichiers d'exécution") — the vectors weigh the words that
/// differ, and a swapped verb or article weighs little. A negation weighs
/// little too ("architecture-independent" / "-dependent files", 0.995), so
/// a pair whose differing words negate ([`opposed`]) stays two texts.
const REWORDING_COSINE: f32 = 0.98;

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

/// The languages of two passages when both are known and differ.
fn across<'a>(a: &Item<'a>, b: &Item<'a>) -> Option<(&'a str, &'a str)> {
    match (a.lang, b.lang) {
        (Some(x), Some(y)) if x != y => Some((x, y)),
        _ => None,
    }
}

/// Evidence of each passage, computed when first asked for, and the
/// verdicts on pairs.
struct Judge<'a> {
    items: &'a [Item<'a>],
    evidence: Vec<OnceCell<Evidence>>,
    verdicts: HashMap<(usize, usize), Verdict>,
    /// How many items hold each normalised text.
    copies: OnceCell<HashMap<&'a str, usize>>,
}

/// What the words say about a pair, before its cosine is weighed.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Agree,
    /// One template filled twice: a duplicate only if reworded (see [`REWORDING_COSINE`]).
    Template,
    Veto,
}

impl<'a> Judge<'a> {
    fn new(items: &'a [Item<'a>]) -> Self {
        Judge {
            items,
            evidence: (0..items.len()).map(|_| OnceCell::new()).collect(),
            verdicts: HashMap::new(),
            copies: OnceCell::new(),
        }
    }

    /// How many items hold `i`'s text.
    fn copies(&self, i: usize) -> usize {
        let copies = self.copies.get_or_init(|| {
            let mut n = HashMap::new();
            for item in self.items {
                *n.entry(item.norm).or_insert(0) += 1;
            }
            n
        });
        copies[self.items[i].norm]
    }

    fn evidence(&self, i: usize) -> &Evidence {
        self.evidence[i].get_or_init(|| Evidence::of(self.items[i].text))
    }

    /// Whether the words let `i` and `j`, at cosine `score`, be duplicates.
    fn agree(&mut self, i: usize, j: usize, score: f32) -> bool {
        match self.verdict(i, j) {
            Verdict::Agree => true,
            Verdict::Template => score >= REWORDING_COSINE,
            Verdict::Veto => false,
        }
    }

    /// What the words say about `i` and `j`.
    fn verdict(&mut self, i: usize, j: usize) -> Verdict {
        let key = (i.min(j), i.max(j));
        match self.verdicts.get(&key) {
            Some(&v) => v,
            None => {
                let across = across(&self.items[i], &self.items[j]).is_some();
                let v = match self.evidence(i).veto(self.evidence(j), across) {
                    None => Verdict::Agree,
                    Some(Veto::Template(a, b)) if !opposed(&a, &b) => Verdict::Template,
                    Some(_) => Verdict::Veto,
                };
                self.verdicts.insert(key, v);
                v
            }
        }
    }
}

/// The semantic stage's entry point: one pair per accepted passage pair
/// (the rule in the module docs), touching a new passage, and not in the
/// same component of the `lexical` pairs. Records each passage's best
/// cosine in `best`, lexical duplicates included.
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
    let mut judge = Judge::new(items);
    let best_across = best_matches_across(ctx, neighbours, &mut judge);
    let mut found: HashMap<(usize, usize), Pair> = HashMap::new();
    for (i, list) in neighbours.iter().enumerate() {
        for &SemanticNeighbour { index: j, score } in list {
            if j == i || score.is_nan() {
                continue;
            }
            best.offer(i, Kind::Semantic, score);
            if !ctx.touches(i, j) || uf.find(i) == uf.find(j) {
                continue;
            }
            // `Some((margin, second_to))` when accepted (neither within a language).
            let accepted = match across(&items[i], &items[j]) {
                None => {
                    (score >= ctx.th.semantic && judge.agree(i, j, score)).then_some((None, None))
                }
                Some(langs) => {
                    let pair = Across { i, j, langs, score };
                    accept_across(ctx, neighbours, &best_across, &mut judge, pair)
                        .map(|(m, z)| (Some(m), z))
                }
            };
            if let Some((margin, second_to)) = accepted {
                let p = Pair {
                    margin,
                    second_to,
                    ..ctx.pair(i, j, Kind::Semantic, score)
                };
                let e = found.entry((p.canonical, p.duplicate)).or_insert(p);
                e.score = e.score.max(score);
            }
        }
    }
    third_language_check(items, uf, found.into_values().collect())
}

/// A candidate pair across languages: passages `i` and `j`, their
/// languages, their cosine.
#[derive(Clone, Copy)]
struct Across<'l> {
    i: usize,
    j: usize,
    langs: (&'l str, &'l str),
    score: f32,
}

/// The rule across languages (module docs): `Some((margin, second_to))`
/// when the pair is accepted, `second_to` naming the text it is a second
/// rendering beside when it is a best match one way only.
fn accept_across(
    ctx: &Context,
    neighbours: &[Vec<SemanticNeighbour>],
    best: &[BestAcross],
    judge: &mut Judge,
    Across {
        i,
        j,
        langs: (li, lj),
        score,
    }: Across,
) -> Option<(f32, Option<usize>)> {
    if score < ctx.th.semantic_cross_lingual {
        return None;
    }
    let beats = |x: usize, lang: &str| best[x].get(lang).is_none_or(|&(b, _)| score >= b);
    let second_to = match (beats(i, lj), beats(j, li)) {
        (true, true) => None,
        (true, false) => Some(second_rendering(best, judge, i, j)?),
        (false, true) => Some(second_rendering(best, judge, j, i)?),
        (false, false) => return None,
    };
    // The margin (which sorts both lists) only past the cheap checks.
    let sides = ((i, li, &neighbours[i][..]), (j, lj, &neighbours[j][..]));
    let m = margin(ctx.items, sides, score, ctx.th.semantic_floor());
    (m >= MIN_MARGIN && judge.agree(i, j, score)).then_some((m, second_to))
}

/// When `x`'s best match in `y`'s language is `y` but `y`'s is another
/// text `z` in `x`'s language: `Some(z)` if `x` is a second rendering
/// beside `z` — `y` and `z` are each other's best match, `y`'s text has
/// more copies than `z`'s (so some of `y`'s copies are left for another
/// partner, as when each copy pairs with one copy), and `x` and `z` differ
/// in no name or number (a template filled twice is allowed: that is what
/// a translator who renders "the shared library" and "the runtime library"
/// alike, "die Laufzeitbibliothek", judged the same). Two shapes, both
/// common in translated software descriptions (debian-dev): several
/// originals share one translation, and one original has several
/// translations ("Este paquete forma parte …" / "Este programa es parte
/// …"). Without the copy count, precision across languages (lower bound)
/// fell from 98 % to 91 %: a text whose own translation is missing then
/// joins the translation of a look-alike.
fn second_rendering(best: &[BestAcross], judge: &mut Judge, x: usize, y: usize) -> Option<usize> {
    let items = judge.items;
    let (lx, ly) = (items[x].lang?, items[y].lang?);
    let &(_, z) = best[y].get(lx)?;
    let mutual = best[z]
        .get(ly)
        .is_some_and(|&(_, w)| items[w].norm == items[y].norm);
    let spare = judge.copies(y) > judge.copies(z);
    (mutual && spare && judge.verdict(x, z) != Verdict::Veto).then_some(z)
}

/// A cross-lingual pair's cosine over the mean of each side's nearest
/// neighbours in the other's language: a translation stands out of its
/// neighbourhood (a margin ≥ [`MIN_MARGIN`]), a passage that merely shares
/// a topic with a crowd of others does not. `floor` is the score the lists
/// were fetched down to.
fn margin(items: &[Item], ((i, li, of_i), (j, lj, of_j)): Sides, score: f32, floor: f32) -> f32 {
    let crowd = (crowding(items, of_i, i, lj, floor) + crowding(items, of_j, j, li, floor)) / 2.0;
    score / crowd.max(f32::MIN_POSITIVE)
}

/// The two sides of a pair: passage, its language, its neighbour list.
type Sides<'l> = (
    (usize, &'l str, &'l [SemanticNeighbour]),
    (usize, &'l str, &'l [SemanticNeighbour]),
);

/// How crowded a passage's neighbourhood is in one language: the mean
/// cosine of its `k` nearest neighbours in that language (Artetxe &
/// Schwenk's margin denominator). Neighbours beyond the list score at most
/// its last score, and below `floor` when the list is shorter than
/// [`SEMANTIC_NEIGHBOURS`] (it then holds every neighbour above the floor):
/// taking the last score there gave a pair alone in its lists (its crowd
/// the pair itself) a margin of 1 up to rounding, on the very edge of
/// [`MIN_MARGIN`]. (The debian-dev findings are the same either way.)
fn crowding(items: &[Item], list: &[SemanticNeighbour], i: usize, lang: &str, floor: f32) -> f32 {
    let last = list
        .iter()
        .map(|n| n.score)
        .filter(|s| !s.is_nan())
        .fold(f32::INFINITY, f32::min)
        .min(1.0);
    let beyond = if list.len() < SEMANTIC_NEIGHBOURS {
        last.min(floor)
    } else {
        last
    };
    let mut s: Vec<(f32, &str)> = list
        .iter()
        .filter(|n| n.index != i && !n.score.is_nan() && items[n.index].lang == Some(lang))
        .map(|n| (n.score, items[n.index].norm))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    // A text counts once: sixteen copies of one boilerplate line are one
    // neighbour, not a crowd.
    s.dedup_by(|a, b| a.1 == b.1);
    let mut s: Vec<f32> = s.into_iter().map(|(score, _)| score).collect();
    s.resize(MARGIN_NEIGHBOURS, beyond);
    s.iter().sum::<f32>() / MARGIN_NEIGHBOURS as f32
}

/// A passage's best match per other language: cosine and passage.
type BestAcross<'a> = HashMap<&'a str, (f32, usize)>;

/// For each passage, its best match per other language among the
/// neighbours the words agree with (above the cross-lingual threshold).
fn best_matches_across<'a>(
    ctx: &Context<'a>,
    neighbours: &[Vec<SemanticNeighbour>],
    judge: &mut Judge,
) -> Vec<BestAcross<'a>> {
    let items = ctx.items;
    let mut out = vec![HashMap::new(); items.len()];
    for (i, list) in neighbours.iter().enumerate() {
        for &SemanticNeighbour { index: j, score } in list {
            if j == i || score.is_nan() || score < ctx.th.semantic_cross_lingual {
                continue;
            }
            let Some((_, lj)) = across(&items[i], &items[j]) else {
                continue;
            };
            let beaten = out[i]
                .get(lj)
                .is_some_and(|&(b, _): &(f32, usize)| b >= score);
            if beaten || !judge.agree(i, j, score) {
                continue;
            }
            out[i].insert(lj, (score, j));
        }
    }
    out
}

/// Characters of the text a second rendering stands beside, in its reason.
const SECOND_TO_LEN: usize = 60;

/// The one-line reason of a semantic pair: the languages and the margin
/// (`None` within a language), the text it is a second rendering beside
/// (if any), and the names both sides share or the words that differ.
pub(crate) fn explain(a: &Item, b: &Item, margin: Option<f32>, second_to: Option<&Item>) -> String {
    let (ea, eb) = (Evidence::of(a.text), Evidence::of(b.text));
    let how = match second_to {
        None => "best match both ways".to_string(),
        Some(z) => format!(
            "best match one way, a second rendering beside \"{}\"",
            truncate(z.text, SECOND_TO_LEN)
        ),
    };
    let mut parts = vec![match (across(a, b), margin) {
        (Some((x, y)), Some(m)) => format!("translation {x} → {y}, {how}, margin {m:.3}"),
        (Some((x, y)), None) => format!("translation {x} → {y}, {how}"),
        (None, _) => "same meaning".to_string(),
    }];
    let shared = ea.shared_names(&eb);
    if !shared.is_empty() {
        parts.push(format!("same names: {}", shared.join(", ")));
    }
    if across(a, b).is_none() {
        if let Some(d) = ea.wording_difference(&eb) {
            parts.push(d);
        }
    }
    parts.join("; ")
}

/// Drops the cross-language pairs that two passages' translations in a
/// third language contradict: pairs are taken by descending cosine
/// (competitive linking, as in word and sentence alignment), each passage
/// remembers its strongest accepted partner per language, and a pair is
/// refused when both sides already have partners in some third language and
/// those are different texts. A French and an Italian text whose English
/// originals differ are not each other's translation, however alike: each
/// is the other's best match only because its own partner is missing from
/// the other language. Local on purpose: whole groups, chained through
/// boilerplate paraphrases, hold different texts of one language that mean
/// the same. Same-language pairs (judged by their own rule) and lexical
/// pairs make two texts the same here.
fn third_language_check<'a>(
    items: &[Item<'a>],
    mut uf: UnionFind,
    mut pairs: Vec<Pair>,
) -> Vec<Pair> {
    let is_across = |p: &Pair| across(&items[p.canonical], &items[p.duplicate]).is_some();
    for p in pairs.iter().filter(|p| !is_across(p)) {
        uf.union(p.canonical, p.duplicate);
    }
    pairs.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then((a.canonical, a.duplicate).cmp(&(b.canonical, b.duplicate)))
    });
    let mut partner: Vec<Vec<(&'a str, usize)>> = vec![Vec::new(); items.len()];
    pairs.retain(|p| {
        let Some((la, lb)) = across(&items[p.canonical], &items[p.duplicate]) else {
            return true;
        };
        let (a, b) = (p.canonical, p.duplicate);
        let conflict = partner[a].iter().any(|&(l, x)| {
            partner[b]
                .iter()
                .any(|&(m, y)| m == l && items[x].norm != items[y].norm && uf.find(x) != uf.find(y))
        });
        if conflict {
            return false;
        }
        if !partner[a].iter().any(|&(l, _)| l == lb) {
            partner[a].push((lb, b));
        }
        if !partner[b].iter().any(|&(l, _)| l == la) {
            partner[b].push((la, a));
        }
        true
    });
    pairs
}
