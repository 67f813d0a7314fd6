//! Duplicates over what a store holds: the stored passages become dedup
//! items (in ingest order, so the first ingested copy is canonical, with the
//! normalised text stored at ingest), the store answers the semantic
//! neighbours, `dedup` decides, and the pairs come back as findings and
//! groups with paths and lines. Ingestion uses the same [`Corpus`] for its
//! per-document checks.

use std::collections::{BTreeSet, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::Engine;
use crate::dedup::lookup::LexicalLookup;
use crate::dedup::{
    self, find_pairs_touching, group, merge_blocks, Histogram, Item, Kind, SemanticNeighbour,
    Sketches, Thresholds, SEMANTIC_NEIGHBOURS,
};
use crate::error::Result;
use crate::store::{DedupRow, Neighbour, PassageRow, Store};

/// Neighbours in other languages fetched for a passage whose plain list is
/// crowded (full, and still at or above the floor at its end), this many
/// per other language the store holds, in one search among the passages of
/// all other languages (one call per language asking): its same-language
/// look-alikes can outnumber the list while its translation scores below
/// them ("Questo pacchetto contiene la libreria condivisa OTBIce." has more
/// than 32 Italian neighbours above its English original's 0.91). Also for
/// a passage whose list holds no other language: an approximate index finds
/// cross-language neighbours least reliably (each language is a region of
/// its own in the graph; on the development set the plain lists through the
/// index missed 6 % of long paragraphs' translations). Twice the semantic
/// rule's margin neighbours (4). Per language, because related languages
/// crowd each other out: an Italian boilerplate line's 8 nearest in other
/// languages were all French and Spanish boilerplate, its English original
/// beyond, so its margin was measured without any English neighbour (8 in
/// all: 87.9 % of short texts' translations found on the development set;
/// 8 per other language: 90.2 %, same precision, same time; a separate
/// search per other language: the same findings, 2× slower exactly, 5×
/// through the index).
pub const CROSS_LANGUAGE_NEIGHBOURS: usize = 8;

#[derive(Debug, Clone)]
pub struct DupsOptions {
    pub thresholds: Thresholds,
    pub kinds: Vec<Kind>,
    /// Only findings with a side in a document whose path matches this glob.
    pub doc_glob: Option<String>,
    /// Also compute per-kind score histograms.
    pub histograms: bool,
}

impl Default for DupsOptions {
    fn default() -> Self {
        DupsOptions {
            thresholds: Thresholds::default(),
            kinds: Kind::ALL.to_vec(),
            doc_glob: None,
            histograms: false,
        }
    }
}

/// A run of passages in one document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Place {
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
    pub passages: usize,
    /// Stored passage ids of the run, in order.
    pub ids: Vec<i64>,
    /// The first passage's text (shortened for display by the caller).
    pub text: String,
}

/// One duplicate finding: a canonical run and its copy.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateFinding {
    pub kind: Kind,
    /// Lowest pair score in the block.
    pub score: f32,
    pub mean_score: f32,
    /// Semantic findings across languages: the lowest margin of the block's
    /// pairs (cosine over the mean of each side's nearest neighbours in
    /// the other's language).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f32>,
    pub canonical: Place,
    pub duplicate: Place,
    pub explanation: Option<String>,
}

/// A member of a duplicate group.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateMember {
    pub place: Place,
    pub kind: Kind,
    pub score: f32,
    pub explanation: Option<String>,
}

/// A canonical passage and every passage that duplicates it.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    pub canonical: Place,
    pub members: Vec<DuplicateMember>,
}

/// Everything one `dups` run produces.
#[derive(Debug, Clone, Serialize)]
pub struct DupsReport {
    pub passages: usize,
    pub findings: Vec<DuplicateFinding>,
    pub groups: Vec<DuplicateGroup>,
    pub histograms: Vec<Histogram>,
}

impl Engine {
    /// Every duplicate in the store, as findings (blocks) and groups.
    pub fn dups(&self, opts: &DupsOptions) -> Result<DupsReport> {
        let _span = tracing::info_span!("dups").entered();
        let corpus = Corpus::load(self.store())?;
        let items = corpus.items();
        let detect = tracing::info_span!("detect", passages = items.len());
        if !opts.histograms {
            let fetch = || corpus.neighbours(self.store(), opts.thresholds.semantic_floor(), 0);
            let sketches = corpus.stored_sketches(self.store(), &opts.kinds)?;
            let pairs = detect.in_scope(|| {
                dedup::find_pairs_fetching_neighbours(
                    &items,
                    0,
                    fetch,
                    sketches,
                    &opts.thresholds,
                    &opts.kinds,
                )
            })?;
            return corpus.report(&items, &pairs, opts.doc_glob.as_deref(), Vec::new());
        }
        // The histogram needs scores below the threshold too, and both
        // passes need the lists: fetched once, up front.
        let neighbours = if opts.kinds.contains(&Kind::Semantic) {
            Some(corpus.neighbours(self.store(), 0.0, 0)?)
        } else {
            None
        };
        let pairs = detect.in_scope(|| {
            find_pairs_touching(
                &items,
                0,
                neighbours.as_deref(),
                &opts.thresholds,
                &opts.kinds,
            )
        })?;
        let histograms = dedup::histogram(
            &items,
            neighbours.as_deref(),
            &opts.thresholds,
            &opts.kinds,
            20,
        )?;
        corpus.report(&items, &pairs, opts.doc_glob.as_deref(), histograms)
    }
}

/// A store's neighbour list as corpus items (passages the corpus lacks dropped).
fn as_items(list: Vec<Neighbour>, item_of: &HashMap<i64, usize>) -> Vec<SemanticNeighbour> {
    list.into_iter()
        .filter_map(|n| {
            Some(SemanticNeighbour {
                index: *item_of.get(&n.passage)?,
                score: n.score,
            })
        })
        .collect()
}

/// A passage's language: as guessed at ingest when stored, else guessed now.
fn language_of(row: &DedupRow) -> Option<&'static str> {
    match &row.lang {
        Some(None) => None,
        Some(Some(code)) => crate::corpus::known_language(code)
            .or_else(|| crate::corpus::guess_language(&row.passage.text)),
        None => crate::corpus::guess_language(&row.passage.text),
    }
}

/// Bytes of a document's text read for its language guess.
const DOCUMENT_LANGUAGE_SAMPLE: usize = 4096;

/// Passages as dedup items, in ingest order.
pub(crate) struct Corpus {
    pub rows: Vec<PassageRow>,
    norms: Vec<String>,
    orders: Vec<u64>,
    langs: Vec<Option<&'static str>>,
    /// The passages by lexical key, once [`lexical_neighbourhood`]
    /// (Self::lexical_neighbourhood) made it; kept up to date as passages
    /// are added (a removed passage's keys stay, and meet nothing).
    lookup: Option<LexicalLookup>,
    /// Each passage's index by id, kept beside `lookup` as passages are
    /// added; dropped when passages move (rebuilt on the next use).
    positions: Option<HashMap<i64, usize>>,
}

impl Corpus {
    /// Every stored passage, with the normalised text stored at ingest.
    pub fn load(store: &dyn Store) -> Result<Self> {
        let _span = tracing::info_span!("load_passages").entered();
        Ok(Self::of_rows(store.dedup_rows()?))
    }

    /// These passages (in ingest order), as [`load`](Self::load) gives them.
    pub fn of_rows(rows: Vec<DedupRow>) -> Self {
        let _span = tracing::info_span!("guess_languages").entered();
        let mut corpus = Corpus::empty();
        corpus.push_rows(rows);
        corpus
    }

    /// Adds passages (whole documents, in ingest order) at the end, as
    /// [`load`](Self::load) gives them: languages stored at ingest are
    /// read, the others (passages stored by an older pareil, most of a
    /// load's time) guessed in parallel; short ones take their document's.
    pub fn push_rows(&mut self, rows: Vec<DedupRow>) {
        let langs: Vec<Option<&'static str>> = rows.par_iter().map(language_of).collect();
        let first = self.len();
        for (row, lang) in rows.into_iter().zip(langs) {
            self.push_guessed(row, lang);
        }
        self.inherit_document_languages(first);
    }

    /// Passages too short for a language guess, from item `from` on, take
    /// their document's ([`document_language`](crate::corpus::document_language)):
    /// a five-word line of a German file is German.
    pub fn inherit_document_languages(&mut self, from: usize) {
        let mut of_doc: HashMap<i64, Vec<usize>> = HashMap::new();
        for i in from..self.len() {
            of_doc.entry(self.rows[i].doc_id).or_default().push(i);
        }
        for members in of_doc.into_values() {
            if members.iter().all(|&i| self.langs[i].is_some()) {
                continue;
            }
            let guesses: Vec<_> = members.iter().map(|&i| self.langs[i]).collect();
            let sample = || {
                let mut t = String::new();
                for &i in members.iter() {
                    if t.len() >= DOCUMENT_LANGUAGE_SAMPLE {
                        break;
                    }
                    t.push_str(&self.rows[i].text);
                    t.push('\n');
                }
                t
            };
            let lang = crate::corpus::document_language(&guesses, sample);
            for &i in &members {
                self.langs[i] = self.langs[i].or(lang);
            }
        }
    }

    pub fn empty() -> Self {
        Corpus {
            rows: Vec::new(),
            norms: Vec::new(),
            orders: Vec::new(),
            langs: Vec::new(),
            lookup: None,
            positions: None,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Adds a passage at the end.
    pub fn push(&mut self, row: DedupRow) {
        let lang = language_of(&row);
        self.push_guessed(row, lang);
    }

    /// The sketches stored at ingest for this corpus's passages, by item
    /// (passages stored by an older pareil have none: dedup makes them);
    /// none read when no lexical stage that uses them runs.
    pub fn stored_sketches(&self, store: &dyn Store, kinds: &[Kind]) -> Result<Sketches> {
        if !kinds.contains(&Kind::Near) && !kinds.contains(&Kind::Contained) {
            return Ok(Sketches::default());
        }
        let _span = tracing::info_span!("read_sketches").entered();
        let item_of = self.item_of();
        let mut sketches = Sketches::new(self.len());
        store.for_each_sketch(&mut |passage, bytes| {
            if let Some(&i) = item_of.get(&passage) {
                sketches.insert(i, bytes);
            }
        })?;
        tracing::info!(stored = sketches.known(), "sketches");
        Ok(sketches)
    }

    /// Each stored passage's item index.
    fn item_of(&self) -> HashMap<i64, usize> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect()
    }

    /// The passages a text could be a lexical duplicate of under `th`,
    /// given the texts' `keys` (`dedup::lookup::query_keys` under `th`):
    /// those sharing a key with one ([`LexicalLookup`]) and their exact
    /// twins, as a corpus of their own in this one's order.
    /// The first call indexes the corpus (with the band keys of the
    /// sketches `store` holds), which then keeps the index up to date as
    /// passages are added.
    pub fn lexical_neighbourhood(
        &mut self,
        store: &dyn Store,
        keys: &[Vec<u32>],
        th: &Thresholds,
    ) -> Result<Corpus> {
        if self.lookup.as_ref().is_none_or(|l| l.thresholds() != th) {
            let passages: Vec<(i64, &str)> = self
                .rows
                .iter()
                .zip(&self.norms)
                .map(|(r, n)| (r.id, n.as_str()))
                .collect();
            let stored = |visit: &mut dyn FnMut(i64, &[u8])| store.for_each_sketch(visit);
            self.lookup = Some(LexicalLookup::build(&passages, th, stored)?);
        }
        let rows = &self.rows;
        let positions = self
            .positions
            .get_or_insert_with(|| rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect());
        let lookup = self.lookup.as_ref().expect("built above");
        // Keys of passages removed since stay in the lookup: no position.
        let mut met = lookup.sharing_keys(keys);
        let twins: Vec<&str> = met
            .iter()
            .filter_map(|id| positions.get(id))
            .map(|&i| self.norms[i].as_str())
            .collect();
        lookup.add_exact_twins(&twins, &mut met);
        let mut at: Vec<usize> = met
            .iter()
            .filter_map(|id| positions.get(id).copied())
            .collect();
        at.sort_unstable();
        Ok(self.copy_of(at))
    }

    /// Adds a passage at the end with its language already guessed.
    fn push_guessed(&mut self, row: DedupRow, lang: Option<&'static str>) {
        if let Some(lookup) = self.lookup.as_mut() {
            lookup.insert(row.passage.id, &row.norm);
        }
        if let Some(positions) = self.positions.as_mut() {
            positions.insert(row.passage.id, self.rows.len());
        }
        self.langs.push(lang);
        self.rows.push(row.passage);
        self.norms.push(row.norm);
        self.orders.push(row.order as u64);
    }

    /// Keeps the first `len` passages (drops a document that was checked but not kept).
    pub fn truncate(&mut self, len: usize) {
        self.positions = None;
        self.rows.truncate(len);
        self.norms.truncate(len);
        self.orders.truncate(len);
        self.langs.truncate(len);
    }

    /// Drops the passages of document `doc` (replaced by a new version).
    pub fn remove_document(&mut self, doc: i64) {
        self.remove_documents_where(|d| d == doc);
    }

    fn remove_documents_where(&mut self, gone: impl Fn(i64) -> bool) {
        let keep: Vec<bool> = self.rows.iter().map(|r| !gone(r.doc_id)).collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        self.positions = None;
        self.rows.retain_mask(&keep);
        self.norms.retain_mask(&keep);
        self.orders.retain_mask(&keep);
        self.langs.retain_mask(&keep);
    }

    /// Catches up with what other processes wrote since this corpus was
    /// read: documents whose passages changed ([`Store::last_passage_ids`])
    /// are read again and removed ones dropped, the rest kept — a
    /// document's worth of reading instead of the whole store. Returns how
    /// many documents changed.
    pub fn refresh(&mut self, store: &dyn Store) -> Result<usize> {
        let _span = tracing::info_span!("refresh_passages").entered();
        let stored = store.last_passage_ids()?;
        let mut held: HashMap<i64, i64> = HashMap::new();
        for r in &self.rows {
            let last = held.entry(r.doc_id).or_insert(r.id);
            *last = (*last).max(r.id);
        }
        let differs = |a: &HashMap<i64, i64>, b: &HashMap<i64, i64>| -> Vec<i64> {
            a.iter()
                .filter(|(doc, last)| b.get(doc) != Some(last))
                .map(|(doc, _)| *doc)
                .collect()
        };
        let changed: HashSet<i64> = differs(&held, &stored)
            .into_iter()
            .chain(differs(&stored, &held))
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        self.remove_documents_where(|doc| changed.contains(&doc));
        let still_stored: Vec<i64> = changed
            .iter()
            .copied()
            .filter(|doc| stored.contains_key(doc))
            .collect();
        self.push_rows(store.dedup_rows_of(&still_stored)?);
        tracing::info!(documents = changed.len(), "passages re-read");
        Ok(changed.len())
    }

    /// Moves the passages of document `doc` out (see [`restore`](Self::restore)).
    pub fn take_document(&mut self, doc: i64) -> Corpus {
        let taken = self.copy_of((0..self.len()).filter(|&i| self.rows[i].doc_id == doc));
        self.remove_document(doc);
        taken
    }

    /// A corpus of copies of the passages at `indices`.
    fn copy_of(&self, indices: impl IntoIterator<Item = usize>) -> Corpus {
        let mut copy = Corpus::empty();
        for i in indices {
            copy.rows.push(self.rows[i].clone());
            copy.norms.push(self.norms[i].clone());
            copy.orders.push(self.orders[i]);
            copy.langs.push(self.langs[i]);
        }
        copy
    }

    /// Appends passages moved out by [`take_document`](Self::take_document).
    pub fn restore(&mut self, taken: Corpus) {
        self.positions = None;
        self.rows.extend(taken.rows);
        self.norms.extend(taken.norms);
        self.orders.extend(taken.orders);
        self.langs.extend(taken.langs);
    }

    pub fn items(&self) -> Vec<Item<'_>> {
        (0..self.rows.len())
            .map(|i| Item {
                id: self.rows[i].id,
                doc: self.rows[i].doc_id,
                pos: self.rows[i].idx,
                order: self.orders[i],
                text: &self.rows[i].text,
                norm: &self.norms[i],
                lang: self.langs[i],
            })
            .collect()
    }

    /// Passage-level semantic neighbours from the store, as item indices,
    /// for items `from` onwards (empty lists before).
    pub fn neighbours(
        &self,
        store: &dyn Store,
        floor: f32,
        from: usize,
    ) -> Result<Vec<Vec<SemanticNeighbour>>> {
        let _span = tracing::info_span!("semantic_neighbours").entered();
        let item_of = self.item_of();
        let mut out = vec![Vec::new(); self.rows.len()];
        let wanted: Vec<usize> = (from..self.rows.len()).collect();
        self.fill_neighbours(store, floor, &wanted, &item_of, &mut out)?;
        // The semantic rule compares a pair with each side's best matches,
        // so the older partners need their lists too.
        let mut partners: Vec<usize> = out[from..]
            .iter()
            .flatten()
            .map(|n| n.index)
            .filter(|&j| j < from)
            .collect();
        partners.sort_unstable();
        partners.dedup();
        self.fill_neighbours(store, floor, &partners, &item_of, &mut out)?;
        Ok(out)
    }

    /// Sets `out[i]` to the store's neighbour list of item `i`, for each of `items`.
    fn fill_neighbours(
        &self,
        store: &dyn Store,
        floor: f32,
        items: &[usize],
        item_of: &HashMap<i64, usize>,
        out: &mut [Vec<SemanticNeighbour>],
    ) -> Result<()> {
        if items.is_empty() {
            // A whole-store run has no older partners: no second store pass
            // (the index-backed store maps every chunk for each call).
            return Ok(());
        }
        let ids: Vec<i64> = items.iter().map(|&i| self.rows[i].id).collect();
        let lists = store.neighbours(&ids, SEMANTIC_NEIGHBOURS, floor)?;
        for (&i, list) in items.iter().zip(lists) {
            out[i] = as_items(list, item_of);
        }
        self.add_cross_language_neighbours(store, floor, items, item_of, out)
    }

    /// Extends the lists among `items`' that are crowded or hold no other
    /// language (see [`CROSS_LANGUAGE_NEIGHBOURS`]) with their nearest
    /// passages in other known languages.
    fn add_cross_language_neighbours(
        &self,
        store: &dyn Store,
        floor: f32,
        items: &[usize],
        item_of: &HashMap<i64, usize>,
        out: &mut [Vec<SemanticNeighbour>],
    ) -> Result<()> {
        let languages: BTreeSet<&str> = self.langs.iter().flatten().copied().collect();
        if languages.len() < 2 {
            return Ok(()); // one language: nobody to translate
        }
        let searched: Vec<usize> = items
            .iter()
            .copied()
            .filter(|&i| {
                let list = &out[i];
                let crowded = list.len() >= SEMANTIC_NEIGHBOURS
                    && list.last().is_some_and(|n| n.score >= floor);
                let alone = !list
                    .iter()
                    .any(|n| self.langs[n.index].is_some_and(|l| Some(l) != self.langs[i]));
                self.langs[i].is_some() && (crowded || alone)
            })
            .collect();
        if searched.is_empty() {
            return Ok(());
        }
        let _span =
            tracing::info_span!("cross_language_neighbours", passages = searched.len()).entered();
        // One search per language of the passages asked about, among the
        // passages of every other language (a separate search per pair of
        // languages costs 5× more through an index), long enough for each.
        let k = CROSS_LANGUAGE_NEIGHBOURS * (languages.len() - 1);
        for lang in languages {
            let asking: Vec<usize> = searched
                .iter()
                .copied()
                .filter(|&i| self.langs[i] == Some(lang))
                .collect();
            if asking.is_empty() {
                continue;
            }
            let among: HashSet<i64> = (0..self.rows.len())
                .filter(|&j| self.langs[j].is_some_and(|l| l != lang))
                .map(|j| self.rows[j].id)
                .collect();
            let ids: Vec<i64> = asking.iter().map(|&i| self.rows[i].id).collect();
            let _span =
                tracing::info_span!("among", lang, asking = ids.len(), candidates = among.len())
                    .entered();
            let lists = store.neighbours_among(&ids, k, floor, &among)?;
            for (&i, list) in asking.iter().zip(lists) {
                for n in as_items(list, item_of) {
                    if !out[i].iter().any(|m| m.index == n.index) {
                        out[i].push(n);
                    }
                }
            }
        }
        Ok(())
    }

    fn place(&self, first: usize, last: usize) -> Place {
        let rows = &self.rows[first..=last];
        Place {
            path: rows[0].path.clone(),
            line_start: rows[0].line_start,
            line_end: rows[rows.len() - 1].line_end,
            passages: rows.len(),
            ids: rows.iter().map(|r| r.id).collect(),
            text: rows[0].text.clone(),
        }
    }

    /// Item-level pairs as findings and groups with paths and lines, keeping
    /// those with a side in a document the glob admits.
    pub fn report(
        &self,
        items: &[Item],
        pairs: &[dedup::Pair],
        doc_glob: Option<&str>,
        histograms: Vec<Histogram>,
    ) -> Result<DupsReport> {
        let glob = crate::corpus::doc_glob(doc_glob)?;
        let keep = |i: usize| glob.as_ref().is_none_or(|g| g.is_match(&self.rows[i].path));
        let findings = merge_blocks(items, pairs)
            .into_iter()
            .filter(|f| keep(f.canonical.first) || keep(f.duplicate.first))
            .map(|f| DuplicateFinding {
                kind: f.kind,
                score: f.score,
                mean_score: f.mean_score,
                margin: f.pairs.iter().filter_map(|p| p.margin).reduce(f32::min),
                canonical: self.place(f.canonical.first, f.canonical.last),
                duplicate: self.place(f.duplicate.first, f.duplicate.last),
                explanation: f.explanation,
            })
            .collect();
        let groups = group(items, pairs)
            .into_iter()
            .filter(|g| keep(g.canonical) || g.members.iter().any(|m| keep(m.index)))
            .map(|g| DuplicateGroup {
                canonical: self.place(g.canonical, g.canonical),
                members: g
                    .members
                    .into_iter()
                    .map(|m| DuplicateMember {
                        place: self.place(m.index, m.index),
                        kind: m.kind,
                        score: m.score,
                        explanation: m.explanation,
                    })
                    .collect(),
            })
            .collect();
        Ok(DupsReport {
            passages: items.len(),
            findings,
            groups,
            histograms,
        })
    }

    /// The corpus with the passages of `docs` moved to the end (whole
    /// documents, in their order), and the index of the first moved item.
    pub fn with_docs_last(self, docs: &HashSet<i64>) -> (Corpus, usize) {
        let mut parts: Vec<(DedupRow, Option<&'static str>)> = Vec::with_capacity(self.len());
        let Corpus {
            rows,
            norms,
            orders,
            langs,
            lookup,
            positions,
        } = self;
        drop((lookup, positions));
        let rows = rows.into_iter().zip(norms).zip(orders);
        for (((passage, norm), order), lang) in rows.zip(langs) {
            let row = DedupRow {
                passage,
                norm,
                order: order as i64,
                lang: Some(lang.map(str::to_string)),
            };
            parts.push((row, lang));
        }
        let (moved, kept): (Vec<_>, Vec<_>) = parts
            .into_iter()
            .partition(|(r, _)| docs.contains(&r.passage.doc_id));
        let first = kept.len();
        let mut c = Corpus::empty();
        for (row, lang) in kept.into_iter().chain(moved) {
            c.langs.push(lang);
            c.rows.push(row.passage);
            c.norms.push(row.norm);
            c.orders.push(row.order as u64);
        }
        (c, first)
    }
}

/// Keeps the entries of a column whose mask entry is true.
trait Retain {
    fn retain_mask(&mut self, keep: &[bool]);
}

impl<T> Retain for Vec<T> {
    fn retain_mask(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.retain(|_| (keep[i], i += 1).0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::lookup::query_keys;
    use crate::store::{NewDocument, SqliteStore};
    use crate::test_support::{document, meta, vector_for};

    fn doc(path: &str, texts: &[&str]) -> NewDocument {
        document(path, texts, &HashSet::new(), |t| vector_for(t, 4))
    }

    /// What the duplicate decisions read of a corpus, in ingest order.
    type Content = (u64, usize, i64, String, Option<&'static str>);
    fn contents(c: &Corpus) -> Vec<Content> {
        let mut v: Vec<Content> = (0..c.len())
            .map(|i| {
                let r = &c.rows[i];
                (c.orders[i], r.idx, r.id, c.norms[i].clone(), c.langs[i])
            })
            .collect();
        v.sort();
        v
    }

    /// Passage `idx` of document `doc` (ingested `doc`-th), not stored.
    fn row(id: i64, doc: i64, idx: usize, text: &str) -> DedupRow {
        let mut row = crate::engine::check::checked_row(text);
        (row.passage.id, row.passage.doc_id, row.passage.idx) = (id, doc, idx);
        row.order = doc;
        row
    }

    /// The lexical pairs touching `new` (a document appended to `corpus`),
    /// as `(canonical id, duplicate id, kind)`.
    fn lexical_pairs(corpus: &Corpus, new: &[DedupRow]) -> Vec<(i64, i64, Kind)> {
        let mut c = corpus.copy_of(0..corpus.len());
        let first_new = c.len();
        c.push_rows(new.to_vec());
        let items = c.items();
        let pairs = find_pairs_touching(
            &items,
            first_new,
            None,
            &Thresholds::default(),
            &Kind::LEXICAL,
        )
        .unwrap();
        let mut out: Vec<_> = pairs
            .iter()
            .map(|p| (items[p.canonical].id, items[p.duplicate].id, p.kind))
            .collect();
        out.sort();
        out
    }

    /// Judging a new document against its lexical neighbourhood gives the
    /// pairs judging it against the whole corpus gives: exact copies of a
    /// text stored twice (the older copy is canonical), near copies,
    /// quotes inside stored passages and stored passages inside new ones.
    /// The store holds sketches for half the documents (the others as an
    /// older pareil left them), so stored and computed band keys both serve.
    #[test]
    fn a_documents_lexical_neighbourhood_finds_what_the_whole_corpus_does() {
        let mut rng = crate::test_support::Rng::new(20261205);
        let mut words = |n: usize| -> String {
            (0..n)
                .map(|_| format!("w{}", rng.next_u64() % 400))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let boilerplate = "All rights reserved by the authors.";
        let texts: Vec<Vec<String>> = (0..60)
            .map(|_| {
                let mut t: Vec<String> = [4, 12, 30, 60, 90].map(&mut words).into();
                t.push(boilerplate.into());
                // Too short for word shingles: met by band keys alone.
                t.push(format!("the {} of the {} said yes", words(1), words(1)));
                t
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::create_or_open(dir.path().join("s.db"), &meta(4)).unwrap();
        for (d, t) in texts.iter().enumerate() {
            // Document 7 holds document 3's third text again.
            let mut t: Vec<&str> = t.iter().map(String::as_str).collect();
            if d == 7 {
                t[2] = &texts[3][2];
            }
            let mut new = doc(&format!("doc{d:02}.txt"), &t);
            if d % 2 == 1 {
                new.passages.iter_mut().for_each(|p| p.traits = None);
            }
            store.replace_document(&new).unwrap();
        }
        let mut corpus = Corpus::load(&store).unwrap();
        let near_copy = {
            let mut w: Vec<&str> = texts[4][4].split(' ').collect();
            (w[10], w[50]) = ("changed", "edited");
            w.join(" ")
        };
        let quote: Vec<&str> = texts[9][3].split(' ').skip(20).take(25).collect();
        let container = format!("{} {} {}", words(30), texts[11][1], words(40));
        let new: Vec<DedupRow> = [
            texts[3][2].clone(),
            near_copy,
            quote.join(" "),
            container,
            words(50),
            boilerplate.to_string(),
            texts[6][6].replace(" said yes", " said yes!"),
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| row(-1 - i as i64, 999, i, t))
        .collect();
        let whole = lexical_pairs(&corpus, &new);
        let th = Thresholds::default();
        let keys: Vec<Vec<u32>> = new.iter().map(|r| query_keys(&r.norm, &th)).collect();
        let near = corpus.lexical_neighbourhood(&store, &keys, &th).unwrap();
        assert!(
            near.len() < corpus.len() / 3,
            "{} of {}",
            near.len(),
            corpus.len()
        );
        assert_eq!(lexical_pairs(&near, &new), whole);
        let kinds: HashSet<Kind> = whole.iter().map(|p| p.2).collect();
        assert_eq!(
            kinds,
            HashSet::from([Kind::Exact, Kind::Near, Kind::Contained])
        );
        let short_near = whole.iter().filter(|p| p.1 == -7 && p.2 == Kind::Near);
        assert_eq!(short_near.count(), 1, "{whole:?}");
        // The text stored twice: the older copy is canonical.
        let older = corpus
            .rows
            .iter()
            .find(|r| r.doc_id == 4 && r.idx == 2)
            .unwrap()
            .id;
        assert!(whole.contains(&(older, -1, Kind::Exact)), "{whole:?}");

        // Passages added later are found too.
        let later = row(5000, 500, 0, &words(40));
        corpus.push_rows(vec![later.clone()]);
        let again = row(-1, 999, 0, &later.passage.text);
        let near = corpus
            .lexical_neighbourhood(&store, &[query_keys(&again.norm, &th)], &th)
            .unwrap();
        let pairs = lexical_pairs(&near, std::slice::from_ref(&again));
        assert_eq!(pairs, [(5000, -1, Kind::Exact)]);
    }

    #[test]
    fn a_refreshed_corpus_holds_what_a_fresh_load_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut writer = SqliteStore::create_or_open(&path, &meta(4)).unwrap();
        let german = "Ein längerer Satz auf Deutsch, der über das Wetter von morgen spricht.";
        writer
            .replace_document(&doc("a.txt", &[german, "Kurz."]))
            .unwrap();
        writer
            .replace_document(&doc("b.txt", &["b one", "b two"]))
            .unwrap();
        writer.replace_document(&doc("c.txt", &["c one"])).unwrap();
        let reader = SqliteStore::open_existing(&path, true).unwrap();
        let mut corpus = Corpus::load(&reader).unwrap();
        assert_eq!(corpus.refresh(&reader).unwrap(), 0, "nothing changed");

        // Another process rewrites one document, removes one, adds one.
        writer
            .replace_document(&doc("b.txt", &["b one, edited", "b two"]))
            .unwrap();
        writer.remove_document("c.txt").unwrap();
        let rain = "Noch ein Satz auf Deutsch, der von dem Regen der letzten Woche erzählt.";
        writer
            .replace_document(&doc("d.txt", &[rain, "Ja."]))
            .unwrap();
        assert_eq!(corpus.refresh(&reader).unwrap(), 3);
        let fresh = Corpus::load(&reader).unwrap();
        assert_eq!(contents(&corpus), contents(&fresh));
        assert!(contents(&corpus)
            .iter()
            .any(|c| c.3 == "ja." && c.4 == Some("de")));
    }
}
