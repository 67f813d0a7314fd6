//! Runs the detectors over what a store holds: builds the items from the
//! stored passages (in ingest order, so the first ingested copy is
//! canonical), computes semantic neighbours with blocked matrix products over
//! the stored vectors, and resolves findings to paths and lines.

use std::collections::HashMap;

use serde::Serialize;

use super::{
    find_pairs_touching, group, histogram, merge_blocks, Histogram, Item, Kind, Pair,
    SemanticNeighbour, Thresholds,
};
use crate::error::Result;
use crate::search::Index;
use crate::store::{PassageRow, Store};

/// Neighbours kept per passage for the semantic layer.
pub const SEMANTIC_NEIGHBOURS: usize = 8;

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub thresholds: Thresholds,
    pub kinds: Vec<Kind>,
    /// Only findings with a side in a document whose path matches this glob.
    pub doc_glob: Option<String>,
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
pub struct DupFinding {
    pub kind: Kind,
    /// Lowest pair score in the block.
    pub score: f32,
    pub mean_score: f32,
    pub canonical: Place,
    pub duplicate: Place,
    pub explanation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DupMember {
    pub place: Place,
    pub kind: Kind,
    pub score: f32,
    pub explanation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DupGroup {
    pub canonical: Place,
    pub members: Vec<DupMember>,
}

/// Everything one scan produces.
pub struct ScanResult {
    pub passages: usize,
    pub findings: Vec<DupFinding>,
    pub groups: Vec<DupGroup>,
    pub histograms: Vec<Histogram>,
}

/// The stored passages as dedup items, in ingest order.
pub struct Corpus {
    pub rows: Vec<PassageRow>,
    pub norms: Vec<String>,
    pub orders: Vec<u64>,
    pub langs: Vec<Option<&'static str>>,
}

impl Corpus {
    pub fn load(store: &Store) -> Result<Self> {
        let mut rows = Vec::new();
        let mut orders = Vec::new();
        for doc in store.documents()? {
            for r in store.passages_of(doc.id)? {
                orders.push(doc.ingest_order as u64);
                rows.push(r);
            }
        }
        let norms = rows
            .iter()
            .map(|r| crate::corpus::normalize(&r.text))
            .collect();
        let langs = rows
            .iter()
            .map(|r| crate::corpus::guess_language(&r.text))
            .collect();
        Ok(Corpus {
            rows,
            norms,
            orders,
            langs,
        })
    }

    fn empty() -> Self {
        Corpus {
            rows: Vec::new(),
            norms: Vec::new(),
            orders: Vec::new(),
            langs: Vec::new(),
        }
    }

    /// Adds a passage at the end.
    pub fn push(&mut self, row: PassageRow, norm: String, order: u64) {
        self.langs.push(crate::corpus::guess_language(&row.text));
        self.rows.push(row);
        self.norms.push(norm);
        self.orders.push(order);
    }

    pub fn items(&self) -> Vec<Item<'_>> {
        self.rows
            .iter()
            .zip(&self.norms)
            .zip(&self.orders)
            .zip(&self.langs)
            .map(|(((r, n), &o), &lang)| Item {
                id: r.id,
                doc: r.doc_id,
                pos: r.idx,
                order: o,
                text: &r.text,
                norm: n,
                lang,
            })
            .collect()
    }

    /// Drops the passages for which `remove` is true.
    pub fn remove_where(&mut self, remove: impl Fn(&PassageRow) -> bool) {
        let old = std::mem::replace(self, Corpus::empty());
        for ((r, n), o) in old.rows.into_iter().zip(old.norms).zip(old.orders) {
            if !remove(&r) {
                self.push(r, n, o);
            }
        }
    }

    /// Passage-level semantic neighbours (best chunk pair per passage pair),
    /// for every item, or only for items `from` onwards.
    pub fn neighbours(
        &self,
        index: &Index,
        min_score: f32,
        from: usize,
    ) -> Result<Vec<Vec<SemanticNeighbour>>> {
        let item_of: HashMap<i64, usize> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect();
        let rows: Vec<usize> = (0..index.len())
            .filter(|&r| {
                item_of
                    .get(&index.passage_ids[r])
                    .is_some_and(|&i| i >= from)
            })
            .collect();
        let chunk_neighbours = index.top_k_for_rows(&rows, SEMANTIC_NEIGHBOURS * 2, min_score)?;
        let mut out: Vec<HashMap<usize, f32>> = vec![HashMap::new(); self.rows.len()];
        for (&row, list) in rows.iter().zip(chunk_neighbours) {
            let Some(&a) = item_of.get(&index.passage_ids[row]) else {
                continue;
            };
            for (other, s) in list {
                let Some(&b) = item_of.get(&index.passage_ids[other]) else {
                    continue;
                };
                if a != b {
                    let e = out[a].entry(b).or_insert(s);
                    *e = e.max(s);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|m| {
                let mut v: Vec<(usize, f32)> = m.into_iter().collect();
                v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                v.truncate(SEMANTIC_NEIGHBOURS);
                v.into_iter()
                    .map(|(index, score)| SemanticNeighbour { index, score })
                    .collect()
            })
            .collect())
    }

    /// The same corpus with the passages of `docs` moved to the end (whole
    /// documents, in their order), and the index of the first moved item.
    pub fn with_docs_last(self, docs: &std::collections::HashSet<i64>) -> (Corpus, usize) {
        let (mut keep, mut moved) = (Vec::new(), Vec::new());
        let parts = self.rows.into_iter().zip(self.norms).zip(self.orders);
        for ((r, n), o) in parts {
            if docs.contains(&r.doc_id) {
                moved.push((r, n, o));
            } else {
                keep.push((r, n, o));
            }
        }
        let first = keep.len();
        let mut c = Corpus::empty();
        for (r, n, o) in keep.into_iter().chain(moved) {
            c.push(r, n, o);
        }
        (c, first)
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
}

/// Finds duplicates over the whole store.
pub fn scan(store: &Store, opts: &ScanOptions, with_histograms: bool) -> Result<ScanResult> {
    let corpus = Corpus::load(store)?;
    let items = corpus.items();
    let wants_semantic = opts.kinds.contains(&Kind::Semantic);
    let neighbours = if wants_semantic {
        let index = Index::new(store.load_vectors()?)?;
        // The histogram needs scores below the threshold too.
        let floor = if with_histograms {
            0.0
        } else {
            opts.thresholds.semantic_floor()
        };
        Some(corpus.neighbours(&index, floor, 0)?)
    } else {
        None
    };
    let pairs = find_pairs_touching(
        &items,
        0,
        neighbours.as_deref(),
        &opts.thresholds,
        &opts.kinds,
    )?;
    let histograms = if with_histograms {
        histogram(
            &items,
            neighbours.as_deref(),
            &opts.thresholds,
            &opts.kinds,
            20,
        )?
    } else {
        Vec::new()
    };
    resolve(&corpus, &items, &pairs, opts, histograms)
}

/// Turns item-level pairs into findings and groups with paths and lines.
pub fn resolve(
    corpus: &Corpus,
    items: &[Item],
    pairs: &[Pair],
    opts: &ScanOptions,
    histograms: Vec<Histogram>,
) -> Result<ScanResult> {
    let glob = crate::corpus::doc_glob(opts.doc_glob.as_deref())?;
    let keep = |i: usize| {
        glob.as_ref()
            .is_none_or(|g| g.is_match(&corpus.rows[i].path))
    };
    let findings = merge_blocks(items, pairs)
        .into_iter()
        .filter(|f| keep(f.canonical.first) || keep(f.duplicate.first))
        .map(|f| DupFinding {
            kind: f.kind,
            score: f.score,
            mean_score: f.mean_score,
            canonical: corpus.place(f.canonical.first, f.canonical.last),
            duplicate: corpus.place(f.duplicate.first, f.duplicate.last),
            explanation: f.explanation,
        })
        .collect();
    let groups = group(items, pairs)
        .into_iter()
        .filter(|g| keep(g.canonical) || g.members.iter().any(|m| keep(m.index)))
        .map(|g| DupGroup {
            canonical: corpus.place(g.canonical, g.canonical),
            members: g
                .members
                .into_iter()
                .map(|m| DupMember {
                    place: corpus.place(m.index, m.index),
                    kind: m.kind,
                    score: m.score,
                    explanation: m.explanation,
                })
                .collect(),
        })
        .collect();
    Ok(ScanResult {
        passages: items.len(),
        findings,
        groups,
        histograms,
    })
}
