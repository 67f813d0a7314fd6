//! Exact nearest-neighbour search over the stored, L2-normalised chunk
//! vectors: scores are one matrix product (gemm through candle), passages
//! take their best chunk's score, and results are filtered, collapsed and
//! ranked here. Also the blocked all-against-all top-k used by dedup.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::store::VectorSet;

/// The loaded vectors as one `[rows, dim]` matrix.
pub struct Index {
    pub chunk_ids: Vec<i64>,
    pub passage_ids: Vec<i64>,
    pub dim: usize,
    matrix: Tensor,
}

impl Index {
    /// Takes ownership of the vectors (no copy).
    pub fn new(set: VectorSet) -> Result<Self> {
        let rows = set.len();
        let matrix = Tensor::from_vec(set.data, (rows, set.dim), &Device::Cpu)?;
        Ok(Index {
            chunk_ids: set.chunk_ids,
            passage_ids: set.passage_ids,
            dim: set.dim,
            matrix,
        })
    }

    pub fn len(&self) -> usize {
        self.chunk_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunk_ids.is_empty()
    }

    /// Cosine of `query` (unit vector) with every row.
    pub fn scores(&self, query: &[f32]) -> Result<Vec<f32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let q = Tensor::from_slice(query, (self.dim, 1), &Device::Cpu)?;
        Ok(self.matrix.matmul(&q)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Passages ranked by their best chunk's score, best first.
    pub fn ranked_passages(&self, query: &[f32]) -> Result<Vec<(i64, f32)>> {
        let scores = self.scores(query)?;
        let mut best: HashMap<i64, f32> = HashMap::with_capacity(scores.len());
        for (&pid, &s) in self.passage_ids.iter().zip(&scores) {
            let e = best.entry(pid).or_insert(f32::NEG_INFINITY);
            if s > *e {
                *e = s;
            }
        }
        let mut ranked: Vec<(i64, f32)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked)
    }

    /// For every row, its `k` most similar other rows with cosine ≥ `min_score`.
    /// The similarity matrix is symmetric, so each block of rows is compared
    /// only with itself and the rows after it, and every score found is
    /// credited to both sides: half the multiply-adds of the all-rows product.
    pub fn top_k_neighbours(&self, k: usize, min_score: f32) -> Result<Vec<Vec<(usize, f32)>>> {
        let n = self.len();
        let mut cand: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
        let block = (64 * 1024 * 1024 / 4 / n.max(1)).clamp(16, 1024);
        // Lists are cut back to their best k once they hold this many.
        let spill = k + block.max(256);
        let mut start = 0;
        while start < n {
            let len = block.min(n - start);
            let width = n - start;
            let cols = self.matrix.narrow(0, start, width)?;
            let sims = self
                .matrix
                .narrow(0, start, len)?
                .matmul(&cols.t()?)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for i in 0..len {
                let me = start + i;
                let row = &sims[i * width..(i + 1) * width];
                for (jj, &s) in row.iter().enumerate().skip(i + 1) {
                    if s >= min_score {
                        let j = start + jj;
                        cand[me].push((j, s));
                        cand[j].push((me, s));
                    }
                }
            }
            for list in cand.iter_mut().filter(|l| l.len() > spill) {
                keep_best(list, k);
            }
            start += len;
        }
        for list in cand.iter_mut() {
            keep_best(list, k);
        }
        Ok(cand)
    }

    /// For each of `rows`, its `k` most similar other rows with cosine ≥
    /// `min_score`, computed block by block (`[block, dim] × [dim, n]`) so
    /// memory stays at `block × n` scores however large the store.
    pub fn top_k_for_rows(
        &self,
        rows: &[usize],
        k: usize,
        min_score: f32,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        let n = self.len();
        let mut out = Vec::with_capacity(rows.len());
        if n == 0 || rows.is_empty() {
            return Ok(vec![Vec::new(); rows.len()]);
        }
        let block = (64 * 1024 * 1024 / 4 / n).clamp(16, 1024);
        let mt = self.matrix.t()?;
        for chunk in rows.chunks(block) {
            let ids = Tensor::from_vec(
                chunk.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                chunk.len(),
                &Device::Cpu,
            )?;
            let sims = self
                .matrix
                .index_select(&ids, 0)?
                .matmul(&mt)?
                .to_vec2::<f32>()?;
            for (&me, row) in chunk.iter().zip(sims) {
                let mut cand: Vec<(usize, f32)> = row
                    .into_iter()
                    .enumerate()
                    .filter(|&(j, s)| j != me && s >= min_score)
                    .collect();
                keep_best(&mut cand, k);
                out.push(cand);
            }
        }
        Ok(out)
    }
}

/// Keeps the `k` highest-scoring entries, best first (ties by index).
fn keep_best(list: &mut Vec<(usize, f32)>, k: usize) {
    let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if list.len() > k && k > 0 {
        list.select_nth_unstable_by(k - 1, order);
    }
    list.truncate(k);
    list.sort_by(order);
}

/// Index of the sentence of `text` sharing the most words with `query`,
/// as a byte span: the snippet shown beside a result.
pub fn best_sentence(text: &str, query: &str) -> (usize, usize) {
    let spans = crate::corpus::sentences(text);
    if spans.len() <= 1 {
        return (0, text.len());
    }
    let qn = crate::corpus::fold_accents(&crate::corpus::normalize(query));
    let qwords: std::collections::HashSet<&str> = crate::corpus::words(&qn)
        .into_iter()
        .filter(|w| w.chars().count() > 2)
        .collect();
    let mut best = (0usize, spans[0]);
    for &(s, e) in &spans {
        let sn = crate::corpus::fold_accents(&crate::corpus::normalize(&text[s..e]));
        let hits = crate::corpus::words(&sn)
            .into_iter()
            .filter(|w| qwords.contains(w))
            .count();
        if hits > best.0 {
            best = (hits, (s, e));
        }
    }
    best.1
}

/// How far below the k-th shown score copies of shown hits are still looked for.
const COLLAPSE_SCORE_SLACK: f32 = 0.02;

/// What to search with.
#[derive(Debug, Clone)]
pub enum QuerySource {
    /// Free text, embedded with the "query: " prefix.
    Text(String),
    /// A stored passage by id (its own vector; it is excluded from the results).
    Passage(i64),
    /// The stored passage covering `line` of the document at `path`.
    At { path: String, line: usize },
}

#[derive(Debug, Clone)]
pub struct SimilarOptions {
    pub k: usize,
    pub min_score: Option<f32>,
    pub exclude_same_doc: bool,
    /// Only documents whose path matches this glob.
    pub doc_glob: Option<String>,
    /// Show identical passages once, listing their other locations.
    pub collapse: bool,
}

/// A place a passage occurs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Location {
    pub id: i64,
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
}

/// One result of `pareil similar`.
#[derive(Debug, Clone, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResolvedQuery {
    pub text: String,
    pub passage: Option<Location>,
    /// Other locations of the query passage's own text (collapsed, not results).
    pub also: Vec<Location>,
}

/// Runs a similar-passages query. `embed_query` is only called for text queries,
/// so stored-passage queries need no model.
pub fn similar(
    store: &crate::store::Store,
    index: &Index,
    source: &QuerySource,
    opts: &SimilarOptions,
    embed_query: &mut dyn FnMut(&str) -> Result<Vec<f32>>,
) -> Result<(ResolvedQuery, Vec<Hit>)> {
    use crate::error::Error;
    let (query_vec, query_text, self_row) = match source {
        QuerySource::Text(t) => (embed_query(t)?, t.clone(), None),
        QuerySource::Passage(_) | QuerySource::At { .. } => {
            let row = match source {
                QuerySource::Passage(id) => store
                    .passage(*id)?
                    .ok_or_else(|| Error::NotFound(format!("no passage with id {id}")))?,
                QuerySource::At { path, line } => {
                    store.passage_at(path, *line)?.ok_or_else(|| {
                        Error::NotFound(format!("no stored passage covers {path}:{line}"))
                    })?
                }
                QuerySource::Text(_) => unreachable!(),
            };
            // The passage's own vector: the mean of its chunk vectors, renormalised.
            let mut v = vec![0f32; index.dim];
            let mut n = 0;
            for (i, &pid) in index.passage_ids.iter().enumerate() {
                if pid == row.id {
                    let r = index.matrix.get(i)?.to_vec1::<f32>()?;
                    v.iter_mut().zip(r).for_each(|(a, b)| *a += b);
                    n += 1;
                }
            }
            if n == 0 {
                let why = match row.duplicate_of {
                    Some(c) => format!(
                        "passage {} is stored as a duplicate of passage {c}; query that one",
                        row.id
                    ),
                    None => format!("passage {} has no vector", row.id),
                };
                return Err(Error::NotFound(why));
            }
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            (v, row.text.clone(), Some(row))
        }
    };
    let glob = crate::corpus::doc_glob(opts.doc_glob.as_deref())?;
    let scores = index.scores(&query_vec)?;
    // Best chunk per passage, and that chunk's index within its passage.
    let mut best: HashMap<i64, (f32, usize)> = HashMap::new();
    let mut chunk_no: HashMap<i64, usize> = HashMap::new();
    for (&pid, &s) in index.passage_ids.iter().zip(&scores) {
        let c = chunk_no.entry(pid).or_insert(0);
        let e = best.entry(pid).or_insert((f32::NEG_INFINITY, 0));
        if s > e.0 {
            *e = (s, *c);
        }
        *c += 1;
    }
    let mut ranked: Vec<(i64, f32, usize)> =
        best.into_iter().map(|(p, (s, c))| (p, s, c)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let self_id = self_row.as_ref().map(|r| r.id);
    let self_doc = self_row.as_ref().map(|r| r.doc_id);
    let mut hits: Vec<Hit> = Vec::new();
    let mut by_norm: HashMap<String, usize> = HashMap::new();
    // Copies of a stored query passage are its other locations, not results.
    let query_norm = self_row
        .as_ref()
        .filter(|_| opts.collapse)
        .map(|r| crate::corpus::normalize(&r.text));
    let mut query_also = Vec::new();
    const PAGE: usize = 64;
    'pages: for page in ranked.chunks(PAGE) {
        let ids: Vec<i64> = page.iter().map(|r| r.0).collect();
        let rows = store.passages_by_ids(&ids)?;
        let rows: HashMap<i64, crate::store::PassageRow> =
            rows.into_iter().map(|r| (r.id, r)).collect();
        for &(pid, score, chunk) in page {
            if opts.min_score.is_some_and(|m| score < m) {
                break 'pages;
            }
            let Some(row) = rows.get(&pid) else { continue };
            if Some(pid) == self_id
                || (opts.exclude_same_doc && Some(row.doc_id) == self_doc)
                || glob.as_ref().is_some_and(|g| !g.is_match(&row.path))
            {
                continue;
            }
            // Once k hits are shown, keep scanning only as far as copies of them
            // can score (identical texts score alike), to list their locations.
            if hits.len() == opts.k
                && hits
                    .last()
                    .is_some_and(|h| score < h.score - COLLAPSE_SCORE_SLACK)
            {
                break 'pages;
            }
            let loc = Location {
                id: row.id,
                path: row.path.clone(),
                line_start: row.line_start,
                line_end: row.line_end,
            };
            let key = opts.collapse.then(|| crate::corpus::normalize(&row.text));
            if key.is_some() && key == query_norm {
                query_also.push(loc);
                continue;
            }
            if let Some(&i) = key.as_ref().and_then(|k| by_norm.get(k)) {
                hits[i].also.push(loc);
                continue;
            }
            if hits.len() == opts.k {
                if opts.collapse {
                    continue; // still collecting other locations of shown hits
                }
                break 'pages;
            }
            if let Some(k) = key {
                by_norm.insert(k, hits.len());
            }
            let (s, e) = best_sentence(&row.text, &query_text);
            hits.push(Hit {
                rank: hits.len() + 1,
                id: row.id,
                score,
                path: row.path.clone(),
                line_start: row.line_start,
                line_end: row.line_end,
                snippet: row.text[s..e].to_string(),
                text: row.text.clone(),
                chunk,
                also: Vec::new(),
            });
        }
        if hits.len() == opts.k && !opts.collapse {
            break;
        }
    }
    let resolved = ResolvedQuery {
        text: query_text,
        passage: self_row.map(|r| Location {
            id: r.id,
            path: r.path,
            line_start: r.line_start,
            line_end: r.line_end,
        }),
        also: query_also,
    };
    Ok((resolved, hits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_index(n: usize, dim: usize) -> Index {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let row: Vec<f32> = (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.3
                })
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(row.iter().map(|x| x / norm));
        }
        Index::new(VectorSet {
            chunk_ids: (0..n as i64).collect(),
            passage_ids: (0..n as i64).collect(),
            dim,
            data,
        })
        .unwrap()
    }

    #[test]
    fn symmetric_top_k_equals_row_by_row() {
        // More rows than one block, so several blocks and the spill path run.
        let index = random_index(2100, 8);
        let all: Vec<usize> = (0..index.len()).collect();
        for (k, min) in [(5, 0.0), (3, 0.8), (40, -1.0)] {
            let sym = index.top_k_neighbours(k, min).unwrap();
            let full = index.top_k_for_rows(&all, k, min).unwrap();
            for (a, b) in sym.iter().zip(&full) {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    // Same neighbours; scores equal up to summation order.
                    assert!((x.1 - y.1).abs() < 1e-5, "{x:?} vs {y:?}");
                }
            }
        }
    }
}
