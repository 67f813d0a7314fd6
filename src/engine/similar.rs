//! Similar passages: resolve the query (a text, a stored passage, a
//! `file:line`) to a vector, ask the store for its nearest passages, and
//! shape the answer: filters, identical texts collapsed into one hit with
//! their other locations, and the sentence that best matches the query.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{find_document, Engine};
use crate::error::{Error, Result};
use crate::model::Role;
use crate::store::{Filter, Neighbour, PassageId, PassageRow, Store};

/// How far below the k-th shown score copies of shown hits are still looked for.
const COLLAPSE_SCORE_SLACK: f32 = 0.02;

/// What to search with.
#[derive(Debug, Clone)]
pub enum Query {
    /// Free text, embedded with the model's query prompt.
    Text(String),
    /// A stored passage by id (its own vector; it is excluded from the results).
    Passage(PassageId),
    /// The stored passage covering `line` of the document at `path` (a
    /// stored path or a unique suffix of one).
    At { path: String, line: usize },
}

#[derive(Debug, Clone)]
pub struct SimilarOptions {
    /// Number of results.
    pub k: usize,
    pub min_score: Option<f32>,
    /// Leave out passages of the query passage's own document.
    pub exclude_same_doc: bool,
    /// Only documents whose path matches this glob.
    pub doc_glob: Option<String>,
    /// Show identical passages once, listing their other locations.
    pub collapse: bool,
}

impl Default for SimilarOptions {
    fn default() -> Self {
        SimilarOptions {
            k: 10,
            min_score: None,
            exclude_same_doc: false,
            doc_glob: None,
            collapse: true,
        }
    }
}

/// A query with its options as data: a line of `similar --queries` or the
/// body of the server's `POST /v1/similar`. Exactly one of `text`, `id`,
/// `at` ("path:line"); options left out take the caller's defaults.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarRequest {
    pub text: Option<String>,
    pub id: Option<PassageId>,
    pub at: Option<String>,
    pub k: Option<usize>,
    pub min_score: Option<f32>,
    pub exclude_same_doc: Option<bool>,
    /// Glob on document paths.
    pub doc: Option<String>,
    pub collapse: Option<bool>,
}

/// Most results one query may ask for.
pub const MAX_K: usize = 1000;

impl SimilarRequest {
    /// The query and its options (`defaults` where the request is silent),
    /// or a usage error saying what is wrong.
    pub fn resolve(&self, defaults: &SimilarOptions) -> Result<(Query, SimilarOptions)> {
        let query = match (&self.text, self.id, &self.at) {
            (Some(t), None, None) if t.trim().is_empty() => {
                return Err(Error::Usage("`text` is empty".into()))
            }
            (Some(t), None, None) => Query::Text(t.clone()),
            (None, Some(id), None) => Query::Passage(id),
            (None, None, Some(at)) => {
                let (path, line) = parse_place(at)?;
                Query::At { path, line }
            }
            _ => {
                return Err(Error::Usage(
                    "give exactly one of `text`, `id` or `at`".into(),
                ))
            }
        };
        let k = self.k.unwrap_or(defaults.k);
        if !(1..=MAX_K).contains(&k) {
            return Err(Error::Usage(format!(
                "`k` must be between 1 and {MAX_K}, got {k}"
            )));
        }
        let min_score = self.min_score.or(defaults.min_score);
        if min_score.is_some_and(|s| !(-1.0..=1.0).contains(&s)) {
            return Err(Error::Usage(
                "`min_score` must be a cosine between -1 and 1".into(),
            ));
        }
        let opts = SimilarOptions {
            k,
            min_score,
            exclude_same_doc: self.exclude_same_doc.unwrap_or(defaults.exclude_same_doc),
            doc_glob: self.doc.clone().or_else(|| defaults.doc_glob.clone()),
            collapse: self.collapse.unwrap_or(defaults.collapse),
        };
        Ok((query, opts))
    }
}

/// `path:line` → (path, line).
pub fn parse_place(at: &str) -> Result<(String, usize)> {
    at.rsplit_once(':')
        .and_then(|(p, l)| Some((p.to_string(), l.parse::<usize>().ok()?)))
        .filter(|(p, _)| !p.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "wants \"path:line\" with a line number, got {at:?}"
            ))
        })
}

/// A place a passage occurs.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub id: i64,
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
}

impl From<&PassageRow> for Location {
    fn from(row: &PassageRow) -> Self {
        Location {
            id: row.id,
            path: row.path.clone(),
            line_start: row.line_start,
            line_end: row.line_end,
        }
    }
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub rank: usize,
    pub id: i64,
    pub score: f32,
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
    pub text: String,
    /// Index of the passage's best-matching chunk (0 unless the passage was windowed).
    pub chunk: usize,
    /// The sentence of `text` that best matches the query.
    pub snippet: String,
    /// Other locations of the same (normalised) text, when collapsed.
    pub also: Vec<Location>,
}

/// The query as resolved: the passage it came from, if any.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedQuery {
    pub text: String,
    pub passage: Option<Location>,
    /// Other locations of the query passage's own text (collapsed, not results).
    pub also: Vec<Location>,
}

/// The answer to a similar-passages query.
#[derive(Debug, Clone, Serialize)]
pub struct SimilarResults {
    pub query: ResolvedQuery,
    pub results: Vec<Hit>,
}

impl Engine {
    /// The passages most similar to `query`. Stored-passage queries need no
    /// model; a text query loads it (overlapped with reading the vectors).
    pub fn similar(&mut self, query: &Query, opts: &SimilarOptions) -> Result<SimilarResults> {
        let _span = tracing::info_span!("similar", k = opts.k).entered();
        check(query, opts)?;
        let (vector, text, own) = match query {
            Query::Text(t) => {
                self.model_and_warm_store()?;
                let model = self.model()?;
                let _embed = tracing::info_span!("embed_query").entered();
                (
                    model.embed(&[t], Role::Query)?.remove(0).vector,
                    t.clone(),
                    None,
                )
            }
            Query::Passage(_) | Query::At { .. } => {
                let row = stored_query_passage(self.store(), query)?;
                let vector = self.store.passage_vector(row.id)?.ok_or_else(|| {
                    Error::NotFound(match row.duplicate_of {
                        Some(c) => format!(
                            "passage {} is stored as a duplicate of passage {c}; query that one",
                            row.id
                        ),
                        None => format!("passage {} has no vector", row.id),
                    })
                })?;
                (vector, row.text.clone(), Some(row))
            }
        };
        let filter = self.filter_for(own.as_ref(), opts)?;
        let mut shaper = Shaper::new(own.as_ref(), &text, opts);
        let _search = tracing::info_span!("search").entered();
        // Ask for more than k: collapsed copies and their locations come from
        // beyond the k-th passage. Widen until the shaping says it has seen enough.
        // The ranking is deterministic, so a wider answer starts with the
        // narrower one: only the new tail is shaped.
        let (mut want, mut seen) = (opts.k.saturating_mul(4).max(opts.k.saturating_add(32)), 0);
        loop {
            let found = tracing::info_span!("nearest", want)
                .in_scope(|| self.store.nearest(&vector, want, &filter))?;
            let _shape = tracing::info_span!("shape").entered();
            if shaper.consume(self.store(), &found[seen.min(found.len())..])? || found.len() < want
            {
                break;
            }
            seen = found.len();
            want = want.saturating_mul(4);
        }
        Ok(shaper.finish(own))
    }

    /// The store-side filter: the query passage itself, its document with
    /// `exclude_same_doc`, and the documents the glob admits.
    fn filter_for(&self, own: Option<&PassageRow>, opts: &SimilarOptions) -> Result<Filter> {
        let mut filter = Filter {
            min_score: opts.min_score,
            ..Filter::default()
        };
        if let Some(row) = own {
            filter.exclude_passages.insert(row.id);
            if opts.exclude_same_doc {
                filter.exclude_documents.insert(row.doc_id);
            }
        }
        if let Some(glob) = crate::corpus::doc_glob(opts.doc_glob.as_deref())? {
            let docs = self.store.documents()?;
            filter.only_documents = Some(
                docs.iter()
                    .filter(|d| glob.is_match(&d.path))
                    .map(|d| d.id)
                    .collect(),
            );
        }
        Ok(filter)
    }
}

/// Refuses what cannot be answered meaningfully: no results asked for, a
/// score floor that is not a number (NaN would switch the filter off), an
/// empty query text.
fn check(query: &Query, opts: &SimilarOptions) -> Result<()> {
    if opts.k == 0 {
        return Err(Error::Usage("k must be at least 1".into()));
    }
    if let Some(m) = opts.min_score.filter(|m| !(-1.0..=1.0).contains(m)) {
        return Err(Error::Usage(format!(
            "min_score must be a cosine, from -1 to 1, got {m}"
        )));
    }
    if matches!(query, Query::Text(t) if t.trim().is_empty()) {
        return Err(Error::Usage("the query text is empty".into()));
    }
    Ok(())
}

/// The stored passage a `Passage` or `At` query names.
fn stored_query_passage(store: &dyn Store, query: &Query) -> Result<PassageRow> {
    match query {
        Query::Passage(id) => store
            .passage(*id)?
            .ok_or_else(|| Error::NotFound(format!("no passage with id {id}"))),
        Query::At { path, line } => {
            let doc = find_document(store, path)?;
            store
                .passage_at(&doc.path, *line)?
                .ok_or_else(|| Error::NotFound(format!("no stored passage covers {path}:{line}")))
        }
        Query::Text(_) => unreachable!("text queries have no stored passage"),
    }
}

/// Turns ranked neighbours into hits: k of them, identical texts collapsed.
struct Shaper<'a> {
    opts: &'a SimilarOptions,
    query_text: &'a str,
    /// The query's words, for picking each hit's snippet.
    query_words: QueryWords,
    /// Normalised-text hash of a stored query passage: its copies are its
    /// other locations, not results.
    query_norm: Option<String>,
    hits: Vec<Hit>,
    /// Hits by the hash of their normalised text (the stored `norm_hash`).
    by_norm: HashMap<String, usize>,
    query_also: Vec<Location>,
}

impl<'a> Shaper<'a> {
    fn new(own: Option<&PassageRow>, query_text: &'a str, opts: &'a SimilarOptions) -> Self {
        Shaper {
            opts,
            query_text,
            query_words: QueryWords::new(query_text),
            query_norm: own.filter(|_| opts.collapse).map(|r| r.norm_hash.clone()),
            hits: Vec::new(),
            by_norm: HashMap::new(),
            query_also: Vec::new(),
        }
    }

    /// Takes neighbours best first; true once nothing further can change the answer.
    fn consume(&mut self, store: &dyn Store, found: &[Neighbour]) -> Result<bool> {
        // Rows are read a page at a time: the first just past k (most
        // answers end there), later ones wider.
        const PAGE: usize = 64;
        let mut rest = found;
        while !rest.is_empty() {
            let size = if self.hits.is_empty() {
                self.opts.k + 8
            } else {
                PAGE
            };
            let (page, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let ids: Vec<i64> = page.iter().map(|n| n.passage).collect();
            let rows: HashMap<i64, PassageRow> = store
                .passages_by_ids(&ids)?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            for n in page {
                let Some(row) = rows.get(&n.passage) else {
                    continue;
                };
                if self.take(row, n) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Takes one neighbour; true when the answer is complete.
    fn take(&mut self, row: &PassageRow, n: &Neighbour) -> bool {
        let k = self.opts.k;
        // Once k hits are shown, keep scanning only as far as copies of them
        // can score (identical texts score alike), to list their locations.
        if self.hits.len() == k
            && self
                .hits
                .last()
                .is_some_and(|h| n.score < h.score - COLLAPSE_SCORE_SLACK)
        {
            return true;
        }
        let key = self.opts.collapse.then(|| row.norm_hash.clone());
        if key.is_some() && key == self.query_norm {
            self.query_also.push(row.into());
            return false;
        }
        if let Some(&i) = key.as_ref().and_then(|k| self.by_norm.get(k)) {
            self.hits[i].also.push(row.into());
            return false;
        }
        if self.hits.len() == k {
            // With collapse, still collecting other locations of shown hits.
            return !self.opts.collapse;
        }
        if let Some(key) = key {
            self.by_norm.insert(key, self.hits.len());
        }
        let (s, e) = self.query_words.best_sentence(&row.text);
        self.hits.push(Hit {
            rank: self.hits.len() + 1,
            id: row.id,
            score: n.score,
            path: row.path.clone(),
            line_start: row.line_start,
            line_end: row.line_end,
            snippet: row.text[s..e].to_string(),
            text: row.text.clone(),
            chunk: n.chunk,
            also: Vec::new(),
        });
        self.hits.len() == k && !self.opts.collapse
    }

    fn finish(self, own: Option<PassageRow>) -> SimilarResults {
        SimilarResults {
            query: ResolvedQuery {
                text: self.query_text.to_string(),
                passage: own.as_ref().map(Location::from),
                also: self.query_also,
            },
            results: self.hits,
        }
    }
}

/// The words of a query (accent-folded, normalised, longer than two
/// characters), computed once per query.
struct QueryWords(HashSet<String>);

impl QueryWords {
    fn new(query: &str) -> Self {
        QueryWords(
            folded_words(query)
                .filter(|w| w.chars().count() > 2)
                .collect(),
        )
    }

    /// The sentence of `text` sharing the most words with the query, as a
    /// byte span: the snippet shown beside a result.
    fn best_sentence(&self, text: &str) -> (usize, usize) {
        let spans = crate::corpus::sentences(text);
        if spans.len() <= 1 {
            return (0, text.len());
        }
        let mut best = (0usize, spans[0]);
        for &(s, e) in &spans {
            let hits = folded_words(&text[s..e])
                .filter(|w| self.0.contains(w))
                .count();
            if hits > best.0 {
                best = (hits, (s, e));
            }
        }
        best.1
    }
}

/// The words of `text`, each lower-cased and accent-folded on its own.
/// Word by word, so the common ASCII word costs a lower-casing, not the
/// Unicode normalisation passes (this runs on every sentence of every hit).
fn folded_words(text: &str) -> impl Iterator<Item = String> + '_ {
    crate::corpus::words(text).into_iter().map(|w| {
        if w.is_ascii() {
            w.to_ascii_lowercase()
        } else {
            crate::corpus::fold_accents(&crate::corpus::normalize(w))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library refuses what the CLI refuses (issue 13): k = 0, a NaN or
    /// out-of-range score floor, an empty or blank text.
    #[test]
    fn similar_options_are_checked() {
        let ok = SimilarOptions::default();
        let text = |t: &str| Query::Text(t.into());
        assert!(check(&text("chat"), &ok).is_ok());
        assert!(check(&Query::Passage(1), &ok).is_ok());
        for blank in ["", "  \n\t"] {
            assert!(matches!(check(&text(blank), &ok), Err(Error::Usage(_))));
        }
        let k0 = SimilarOptions { k: 0, ..ok.clone() };
        assert!(matches!(
            check(&Query::Passage(1), &k0),
            Err(Error::Usage(_))
        ));
        for m in [f32::NAN, 1.5, -2.0, f32::INFINITY] {
            let o = SimilarOptions {
                min_score: Some(m),
                ..ok.clone()
            };
            assert!(
                matches!(check(&text("chat"), &o), Err(Error::Usage(_))),
                "{m}"
            );
        }
    }
}
