//! Is this text already stored? The check a publishing tool runs before it
//! stores or sends a text (`POST /v1/check`), without writing anything.
//!
//! Each text is treated as one passage. Its stored look-alikes are its
//! nearest passages by vector (an exact or lightly edited copy is among the
//! very nearest); they, the text, and the passages the semantic rule
//! compares them with (their own neighbour lists) become dedup items, and
//! the same `dedup` decision as `pareil dups` judges the pairs that touch
//! the text. So a check answers what a `dups` run after ingesting the text
//! would, except for a copy whose vector is not among the
//! [`CHECK_CANDIDATES`] nearest (a short quote inside a much longer stored
//! passage can be missed), and except that the semantic rule's copy counts
//! (second renderings) are taken among the passages the check reads, not
//! the whole store.

use std::collections::HashMap;

use serde::Serialize;

use super::dups::Corpus;
use super::{Engine, Location};
use crate::dedup::SEMANTIC_NEIGHBOURS;
use crate::dedup::{find_pairs_touching, Kind, SemanticNeighbour, Thresholds};
use crate::error::{Error, Result};
use crate::model::Role;
use crate::store::{DedupRow, Filter, PassageId, PassageRow};

/// Stored passages compared with each checked text.
pub const CHECK_CANDIDATES: usize = 16;

/// Texts one check may hold.
pub const MAX_CHECK_TEXTS: usize = 256;

/// A check as data (the server's `POST /v1/check`, the MCP tool): one
/// `text`, or `texts`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub text: Option<String>,
    pub texts: Option<Vec<String>>,
}

impl CheckRequest {
    /// The texts to check, or a usage error saying what is wrong.
    pub fn into_texts(self) -> Result<Vec<String>> {
        match (self.text, self.texts) {
            (Some(t), None) => Ok(vec![t]),
            (None, Some(ts)) if !ts.is_empty() && ts.len() <= MAX_CHECK_TEXTS => Ok(ts),
            (None, Some(ts)) => Err(Error::Usage(format!(
                "`texts` must hold 1 to {MAX_CHECK_TEXTS} texts, got {}",
                ts.len()
            ))),
            _ => Err(Error::Usage("give `text` or `texts`".into())),
        }
    }
}

/// The answer for one checked text.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Whether any stored passage duplicates the text.
    pub duplicate: bool,
    /// The stored passages it duplicates, strictest kind first.
    pub matches: Vec<CheckMatch>,
}

/// A stored passage a checked text duplicates.
#[derive(Debug, Clone, Serialize)]
pub struct CheckMatch {
    pub kind: Kind,
    pub score: f32,
    /// Where the stored copy is.
    pub canonical: Location,
    pub text: String,
    /// Why (the word diff, or the languages and shared names).
    pub explanation: Option<String>,
}

impl Engine {
    /// Checks each text against the store (nothing is written).
    pub fn check(&mut self, texts: &[String], th: &Thresholds) -> Result<Vec<CheckResult>> {
        let _span = tracing::info_span!("check", texts = texts.len()).entered();
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::Usage(format!("text {i} is empty")));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let embedded = self.model()?.embed(&refs, Role::Passage)?;
        texts
            .iter()
            .zip(embedded)
            .map(|(text, e)| self.check_one(text, &e.vector, th))
            .collect()
    }

    fn check_one(&self, text: &str, vector: &[f32], th: &Thresholds) -> Result<CheckResult> {
        let store = self.store();
        let nearest = store.nearest(vector, CHECK_CANDIDATES, &Filter::default())?;
        if nearest.is_empty() {
            return Ok(CheckResult {
                duplicate: false,
                matches: Vec::new(),
            });
        }
        let candidates: Vec<PassageId> = nearest.iter().map(|n| n.passage).collect();
        let lists = store.neighbours(&candidates, SEMANTIC_NEIGHBOURS, th.semantic_floor())?;
        // Every passage a list names is an item too: the semantic rule
        // looks at who each side's nearest passages are.
        let mut ids = candidates.clone();
        ids.extend(lists.iter().flatten().map(|n| n.passage));
        ids.sort_unstable();
        ids.dedup();
        let mut corpus = Corpus::empty();
        for (order, row) in store.passages_by_ids(&ids)?.into_iter().enumerate() {
            let norm = crate::corpus::normalize::normalize(&row.text);
            corpus.push(DedupRow {
                passage: row,
                norm,
                order: order as i64,
                lang: None,
            });
        }
        corpus.inherit_document_languages(0);
        let first_new = corpus.len();
        corpus.push(checked_row(text));
        let index_of: HashMap<PassageId, usize> = corpus
            .rows
            .iter()
            .take(first_new)
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect();
        let as_items = |list: &[crate::store::Neighbour]| -> Vec<SemanticNeighbour> {
            list.iter()
                .filter_map(|n| {
                    Some(SemanticNeighbour {
                        index: *index_of.get(&n.passage)?,
                        score: n.score,
                    })
                })
                .collect()
        };
        let mut neighbours = vec![Vec::new(); corpus.len()];
        neighbours[first_new] = as_items(&nearest);
        for (n, list) in nearest.iter().zip(&lists) {
            let Some(&i) = index_of.get(&n.passage) else {
                continue;
            };
            // The checked text is in each candidate's list, where the store
            // would put it had it been ingested.
            let mut with_text = as_items(list);
            with_text.push(SemanticNeighbour {
                index: first_new,
                score: n.score,
            });
            with_text.sort_by(|a, b| b.score.total_cmp(&a.score));
            neighbours[i] = with_text;
        }
        let items = corpus.items();
        let pairs = find_pairs_touching(&items, first_new, Some(&neighbours), th, &Kind::ALL)?;
        let mut matches: Vec<CheckMatch> = pairs
            .iter()
            .filter_map(|p| {
                let other = if p.duplicate == first_new {
                    p.canonical
                } else if p.canonical == first_new {
                    p.duplicate
                } else {
                    return None;
                };
                let row = &corpus.rows[other];
                Some(CheckMatch {
                    kind: p.kind,
                    score: p.score,
                    canonical: Location::from(row),
                    text: row.text.clone(),
                    explanation: crate::dedup::explain(p, &items, other, first_new),
                })
            })
            .collect();
        matches.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.score.total_cmp(&a.score)));
        Ok(CheckResult {
            duplicate: !matches.is_empty(),
            matches,
        })
    }
}

/// The checked text as a passage that is not stored (after every stored one).
pub(super) fn checked_row(text: &str) -> DedupRow {
    let norm = crate::corpus::normalize::normalize(text);
    DedupRow {
        passage: PassageRow {
            id: -1,
            doc_id: -1,
            path: "<checked text>".into(),
            date: None,
            idx: 0,
            line_start: 1,
            line_end: text.lines().count().max(1),
            byte_start: 0,
            byte_end: text.len(),
            text: text.to_string(),
            duplicate_of: None,
            dup_kind: None,
            dup_score: None,
            norm_hash: crate::store::sha256_hex(norm.as_bytes()),
        },
        norm,
        order: i64::MAX,
        lang: None,
    }
}
