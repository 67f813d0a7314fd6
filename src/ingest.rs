//! Ingestion: files → passages → chunks (windows of over-long passages) →
//! embeddings (cached by model input) → one store transaction per document.
//! Unchanged files are skipped by content hash, so a killed run resumes
//! where it stopped without re-embedding what was committed.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::corpus;
use crate::dedup::scan::{resolve, Corpus, DupFinding, ScanOptions};
use crate::dedup::{find_pairs_touching, Item, Kind, Pair, Thresholds};
use crate::error::{Error, Result};
use crate::model::{Embedder, Role};
use crate::search::Index;
use crate::store::{
    DuplicateMark, NewChunk, NewDocument, NewPassage, PassageRow, Store, StoreMeta,
};

/// Sentences of overlap between consecutive windows of an over-long passage.
pub const WINDOW_OVERLAP_SENTENCES: usize = 1;

/// The name under which text read from standard input is stored.
pub const STDIN_NAME: &str = "<stdin>";

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub paths: Vec<PathBuf>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Decode invalid UTF-8 with replacement characters instead of skipping the file.
    pub lossy: bool,
    /// Drop stored documents whose files no longer exist.
    pub prune: bool,
    pub on_duplicate: OnDuplicate,
    pub thresholds: Thresholds,
}

/// What ingestion does with passages that duplicate stored ones (or each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Store everything; report the duplicates.
    Report,
    /// Store exact/near/contained duplicates as references to their canonical
    /// passage (text and location kept, no vector, not returned by `similar`).
    Skip,
    /// Do not write a document containing duplicates of any kind.
    Fail,
}

/// Receives progress events; the CLI draws a bar from them.
pub trait Progress {
    fn files(&mut self, _total: usize) {}
    fn file_started(&mut self, _path: &str, _passages_to_embed: usize) {}
    fn embedded(&mut self, _n: usize) {}
    fn warn(&mut self, _msg: &str) {}
}

/// Progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What an ingest did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestReport {
    pub documents: usize,
    pub documents_unchanged: usize,
    pub documents_written: usize,
    pub passages: usize,
    /// Chunks whose vectors were computed in this run.
    pub chunks_embedded: usize,
    /// Chunks whose vectors came from the cache.
    pub chunks_reused: usize,
    /// Passages longer than the model window, split into several chunks.
    pub passages_windowed: usize,
    pub removed: Vec<String>,
    /// Files not ingested, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Stored ids of the passages of each written document, by path.
    #[serde(skip)]
    pub written: Vec<(String, Vec<i64>)>,
    /// Duplicates touching the documents of this run.
    pub duplicates: Vec<DupFinding>,
    /// Passages stored as references to a canonical copy (`--on-duplicate skip`).
    pub passages_skipped_as_duplicates: usize,
    /// Documents not written because they hold duplicates (`--on-duplicate fail`).
    pub refused: Vec<(String, String)>,
    pub seconds: f64,
}

/// The store metadata the loaded model implies.
pub fn store_meta(model: &Embedder) -> StoreMeta {
    StoreMeta {
        model_id: model.model_id(),
        revision: model.revision(),
        dim: model.dim(),
        pooling: model.pooling_name(),
        passage_prefix: model.prompt(Role::Passage).into(),
        query_prefix: model.prompt(Role::Query).into(),
    }
}

/// Cache key of a model input: the same text under the same model and
/// revision always has the same vector.
pub fn embedding_key(meta: &StoreMeta, role: Role, text: &str) -> String {
    crate::store::sha256_hex(
        format!(
            "{}\n{}\n{}{}",
            meta.model_id,
            meta.revision,
            match role {
                Role::Query => &meta.query_prefix,
                Role::Passage => &meta.passage_prefix,
            },
            text
        )
        .as_bytes(),
    )
}

/// A file read and split, ready to be embedded and written.
pub struct PreparedDocument {
    pub path: String,
    pub content_hash: String,
    pub size: u64,
    pub mtime: Option<i64>,
    pub date: Option<String>,
    pub passages: Vec<NewPassage>,
    /// Chunk texts by embedding key.
    pub chunk_texts: HashMap<String, String>,
    pub windowed: usize,
    /// Vectors computed in this run but not stored yet, by embedding key.
    pub computed: HashMap<String, Vec<f32>>,
}

/// Splits a document's text into passages and chunks.
pub fn prepare(
    model: &Embedder,
    meta: &StoreMeta,
    path: &str,
    bytes: &[u8],
    text: &str,
    mtime: Option<i64>,
) -> Result<PreparedDocument> {
    let split = corpus::split_passages(text);
    let max = model.max_tokens();
    let mut passages = Vec::with_capacity(split.passages.len());
    let mut chunk_texts = HashMap::new();
    let mut windowed = 0;
    for p in split.passages {
        let count = |s: &str| model.count_tokens(s, Role::Passage).unwrap_or(usize::MAX);
        let spans = if count(&p.text) <= max {
            vec![(0, p.text.len())]
        } else {
            windowed += 1;
            corpus::windows(&p.text, max, WINDOW_OVERLAP_SENTENCES, &count)
        };
        let mut chunks = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            let chunk = &p.text[s..e];
            let key = embedding_key(meta, Role::Passage, chunk);
            chunks.push(NewChunk {
                byte_start: s,
                byte_end: e,
                tokens: count(chunk).min(max),
                emb_key: key.clone(),
            });
            chunk_texts.insert(key, chunk.to_string());
        }
        passages.push(NewPassage {
            line_start: p.line_start,
            line_end: p.line_end,
            byte_start: p.byte_start,
            byte_end: p.byte_end,
            norm: corpus::normalize(&p.text),
            text: p.text,
            chunks,
        });
    }
    Ok(PreparedDocument {
        path: path.to_string(),
        content_hash: corpus::content_hash(bytes),
        size: bytes.len() as u64,
        mtime,
        date: split.date,
        passages,
        chunk_texts,
        windowed,
        computed: HashMap::new(),
    })
}

/// The path string a file is stored under: as given, without a leading "./".
pub fn display_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.strip_prefix("./").unwrap_or(&s).to_string()
}

fn mtime_of(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Embeds the chunks of `doc` that neither the store's cache nor
/// `doc.computed` holds, adding them to `doc.computed`.
fn embed_missing(
    store: &Store,
    model: &Embedder,
    doc: &mut PreparedDocument,
    progress: &mut dyn Progress,
    report: &mut IngestReport,
) -> Result<()> {
    let keys: Vec<String> = doc
        .chunk_texts
        .keys()
        .filter(|k| !doc.computed.contains_key(*k))
        .cloned()
        .collect();
    let cached = store.cached_embeddings(&keys)?;
    let missing: Vec<&String> = keys.iter().filter(|k| !cached.contains_key(*k)).collect();
    progress.file_started(&doc.path, missing.len());
    let texts: Vec<&str> = missing
        .iter()
        .map(|k| doc.chunk_texts[*k].as_str())
        .collect();
    let vectors =
        model.embed_with_progress(&texts, Role::Passage, &mut |n| progress.embedded(n))?;
    report.chunks_embedded += vectors.len();
    for (k, e) in missing.into_iter().zip(vectors) {
        doc.computed.insert(k.clone(), e.vector);
    }
    Ok(())
}

/// Embeds what the cache lacks and writes the document in one transaction.
pub fn write_document(
    store: &mut Store,
    model: &Embedder,
    mut doc: PreparedDocument,
    progress: &mut dyn Progress,
    report: &mut IngestReport,
) -> Result<Vec<i64>> {
    embed_missing(store, model, &mut doc, progress, report)?;
    // Only vectors the store lacks are written; `computed` may hold vectors of
    // chunks dropped since (duplicates stored as references).
    let embeddings: HashMap<String, Vec<f32>> = doc
        .computed
        .into_iter()
        .filter(|(k, _)| doc.chunk_texts.contains_key(k))
        .collect();
    let total_chunks: usize = doc.passages.iter().map(|p| p.chunks.len()).sum();
    // Chunks repeated inside the document, or cached, count as reused.
    report.chunks_reused += total_chunks.saturating_sub(embeddings.len());
    report.passages_windowed += doc.windowed;
    report.passages += doc.passages.len();
    let outcome = store.replace_document(&NewDocument {
        path: doc.path.clone(),
        content_hash: doc.content_hash,
        size: doc.size,
        mtime: doc.mtime,
        date: doc.date,
        passages: doc.passages,
        embeddings,
    })?;
    report.documents_written += 1;
    report.written.push((doc.path, outcome.passage_ids.clone()));
    Ok(outcome.passage_ids)
}

/// Ingests files and directories into `store`.
pub fn ingest(
    store: &mut Store,
    model: &Embedder,
    opts: &IngestOptions,
    progress: &mut dyn Progress,
) -> Result<IngestReport> {
    let started = Instant::now();
    let meta = store.meta().clone();
    let mut report = IngestReport::default();
    let (stdin, files): (Vec<&PathBuf>, Vec<&PathBuf>) =
        opts.paths.iter().partition(|p| p.as_os_str() == "-");
    let files: Vec<PathBuf> = files.into_iter().cloned().collect();
    let files = if files.is_empty() {
        Vec::new()
    } else {
        corpus::discover(&files, &opts.include, &opts.exclude)?
    };
    progress.files(files.len() + stdin.len().min(1));
    let mut seen = HashSet::new();
    let mut inputs: Vec<(String, Option<PathBuf>)> = files
        .iter()
        .map(|p| (display_path(p), Some(p.clone())))
        .collect();
    if !stdin.is_empty() {
        inputs.push((STDIN_NAME.to_string(), None));
    }
    for (name, path) in inputs {
        report.documents += 1;
        seen.insert(name.clone());
        let bytes = match &path {
            Some(p) => std::fs::read(p).map_err(|e| Error::io(p, e)),
            None => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map(|_| buf)
                    .map_err(|e| Error::io(STDIN_NAME, e))
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                progress.warn(&e.to_string());
                report.skipped.push((name, e.to_string()));
                continue;
            }
        };
        let hash = corpus::content_hash(&bytes);
        if let Some(existing) = store.document_by_path(&name)? {
            if existing.content_hash == hash {
                report.documents_unchanged += 1;
                progress.file_started(&name, 0);
                continue;
            }
        }
        let text = match corpus::read_text(Path::new(&name), &bytes, opts.lossy) {
            Ok(t) => t,
            Err(e @ (Error::InvalidUtf8 { .. } | Error::Binary { .. })) => {
                progress.warn(&e.to_string());
                report.skipped.push((name, e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut doc = prepare(
            model,
            &meta,
            &name,
            &bytes,
            &text,
            path.as_deref().and_then(mtime_of),
        )?;
        match opts.on_duplicate {
            OnDuplicate::Report => {
                write_document(store, model, doc, progress, &mut report)?;
            }
            OnDuplicate::Skip => {
                // Lexical duplicates are found before embedding, so they cost no model time;
                // semantic ones need the document's vectors, computed once and reused for the write.
                let (findings, mut marks) = lexical_duplicates(store, &doc, &opts.thresholds)?;
                report.duplicates.extend(findings);
                drop_chunks_of(&mut doc, &marks);
                embed_missing(store, model, &mut doc, progress, &mut report)?;
                let (findings, semantic) = semantic_duplicates(store, &doc, &opts.thresholds)?;
                report.duplicates.extend(findings);
                drop_chunks_of(&mut doc, &semantic);
                marks.extend(semantic);
                report.passages_skipped_as_duplicates += marks.len();
                let ids = write_document(store, model, doc, progress, &mut report)?;
                let marks: Vec<DuplicateMark> = marks
                    .into_iter()
                    .map(|(dup, canonical, kind, score)| DuplicateMark {
                        passage_id: ids[dup],
                        canonical_id: match canonical {
                            Canonical::Stored(id) => id,
                            Canonical::SameDocument(i) => ids[i],
                        },
                        kind: kind.as_str().into(),
                        score: score as f64,
                    })
                    .collect();
                store.set_duplicates(&marks)?;
            }
            OnDuplicate::Fail => {
                // Lexical duplicates refuse the document before any embedding.
                let (findings, _) = lexical_duplicates(store, &doc, &opts.thresholds)?;
                if refuse(&mut report, &name, findings) {
                    continue;
                }
                embed_missing(store, model, &mut doc, progress, &mut report)?;
                let (findings, _) = semantic_duplicates(store, &doc, &opts.thresholds)?;
                if refuse(&mut report, &name, findings) {
                    continue;
                }
                write_document(store, model, doc, progress, &mut report)?;
            }
        }
    }
    if opts.on_duplicate == OnDuplicate::Report && !report.written.is_empty() {
        report.duplicates = duplicates_touching_run(store, &report, &opts.thresholds)?;
    }
    if opts.prune {
        report.removed = store
            .prune_where(|p| p != STDIN_NAME && !seen.contains(p) && !Path::new(p).exists())?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

impl PreparedDocument {
    /// Drops chunk texts no passage refers to any more.
    fn retain_used_chunks(&mut self) {
        let used: HashSet<&String> = self
            .passages
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| &c.emb_key))
            .collect();
        let used: HashSet<String> = used.into_iter().cloned().collect();
        self.chunk_texts.retain(|k, _| used.contains(k));
    }

    /// The document's passages as they would be stored (ids are placeholders).
    fn rows(&self) -> Vec<PassageRow> {
        self.passages
            .iter()
            .enumerate()
            .map(|(i, p)| PassageRow {
                id: -1 - i as i64,
                doc_id: NEW_DOC,
                path: self.path.clone(),
                date: self.date.clone(),
                idx: i,
                line_start: p.line_start,
                line_end: p.line_end,
                byte_start: p.byte_start,
                byte_end: p.byte_end,
                text: p.text.clone(),
                duplicate_of: None,
                dup_kind: None,
                dup_score: None,
            })
            .collect()
    }
}

/// Placeholder document id of a document not yet written.
const NEW_DOC: i64 = -1;

/// A passage of the document being ingested (by index), its canonical copy, kind and score.
type DuplicateOf = (usize, Canonical, Kind, f32);

/// The canonical side of a duplicate found before writing.
enum Canonical {
    Stored(i64),
    SameDocument(usize),
}

/// The stored corpus, minus the document being replaced, plus `doc` at the end.
fn corpus_with(store: &Store, doc: &PreparedDocument) -> Result<(Corpus, usize)> {
    let mut corpus = Corpus::load(store)?;
    if let Some(old) = store.document_by_path(&doc.path)? {
        corpus.remove_where(|r| r.doc_id == old.id);
    }
    let first_new = corpus.rows.len();
    for (row, p) in doc.rows().into_iter().zip(&doc.passages) {
        corpus.push(row, p.norm.clone(), u64::MAX);
    }
    Ok((corpus, first_new))
}

/// Exact, near and contained duplicates of `doc`'s passages among the stored
/// passages and earlier passages of `doc`: the findings, and for each
/// duplicate passage of `doc` its canonical copy.
fn lexical_duplicates(
    store: &Store,
    doc: &PreparedDocument,
    th: &Thresholds,
) -> Result<(Vec<DupFinding>, Vec<DuplicateOf>)> {
    let (corpus, first_new) = corpus_with(store, doc)?;
    let items = corpus.items();
    let pairs = find_pairs_touching(&items, first_new, None, th, &Kind::LEXICAL)?;
    let marks = duplicate_marks(&corpus, first_new, &pairs);
    Ok((findings(&corpus, &items, &pairs, th)?, marks))
}

/// Semantic duplicates of `doc` among the stored passages and earlier
/// passages of `doc` (whose vectors must be in the cache or `doc.computed`):
/// the findings, and each duplicate passage of `doc` with its canonical copy.
fn semantic_duplicates(
    store: &Store,
    doc: &PreparedDocument,
    th: &Thresholds,
) -> Result<(Vec<DupFinding>, Vec<DuplicateOf>)> {
    let (corpus, first_new) = corpus_with(store, doc)?;
    let mut set = store.load_vectors()?;
    // Append the new document's chunk vectors under its placeholder passage ids.
    let keys: Vec<String> = doc.chunk_texts.keys().cloned().collect();
    let cached = store.cached_embeddings(&keys)?;
    for (i, p) in doc.passages.iter().enumerate() {
        for c in &p.chunks {
            let v = doc
                .computed
                .get(&c.emb_key)
                .or_else(|| cached.get(&c.emb_key))
                .expect("embed_missing ran first");
            set.chunk_ids.push(0);
            set.passage_ids.push(-1 - i as i64);
            set.data.extend_from_slice(v);
        }
    }
    let index = Index::new(set)?;
    let neighbours = corpus.neighbours(&index, th.semantic_floor(), first_new)?;
    let items = corpus.items();
    let pairs = find_pairs_touching(&items, first_new, Some(&neighbours), th, &[Kind::Semantic])?;
    let marks = duplicate_marks(&corpus, first_new, &pairs);
    Ok((findings(&corpus, &items, &pairs, th)?, marks))
}

/// Records `name` as refused for `findings`, if there are any; says whether it was.
fn refuse(report: &mut IngestReport, name: &str, findings: Vec<DupFinding>) -> bool {
    if findings.is_empty() {
        return false;
    }
    report.refused.push((
        name.to_string(),
        format!("{} duplicate finding(s)", findings.len()),
    ));
    report.duplicates.extend(findings);
    true
}

/// Pairs resolved into findings with paths and lines.
fn findings(
    corpus: &Corpus,
    items: &[Item],
    pairs: &[Pair],
    th: &Thresholds,
) -> Result<Vec<DupFinding>> {
    let opts = ScanOptions {
        thresholds: th.clone(),
        kinds: Kind::ALL.to_vec(),
        doc_glob: None,
    };
    Ok(resolve(corpus, items, pairs, &opts, Vec::new())?.findings)
}

/// Removes the chunks of passages stored as references, and their texts.
fn drop_chunks_of(doc: &mut PreparedDocument, marks: &[DuplicateOf]) {
    for (dup, ..) in marks {
        doc.passages[*dup].chunks.clear();
    }
    doc.retain_used_chunks();
}

/// For each pair whose duplicate side is a passage of the new document
/// (items from `first_new` on), that passage and its canonical copy, once.
fn duplicate_marks(
    corpus: &Corpus,
    first_new: usize,
    pairs: &[crate::dedup::Pair],
) -> Vec<DuplicateOf> {
    let mut marks = Vec::new();
    let mut marked = HashSet::new();
    for p in pairs {
        if p.b >= first_new && marked.insert(p.b) {
            let canonical = if p.a >= first_new {
                Canonical::SameDocument(p.a - first_new)
            } else {
                Canonical::Stored(corpus.rows[p.a].id)
            };
            marks.push((p.b - first_new, canonical, p.kind, p.score));
        }
    }
    marks
}

/// All kinds of duplicates that involve a document written in this run.
fn duplicates_touching_run(
    store: &Store,
    report: &IngestReport,
    th: &Thresholds,
) -> Result<Vec<DupFinding>> {
    let written: HashSet<&str> = report.written.iter().map(|(p, _)| p.as_str()).collect();
    let docs: HashSet<i64> = store
        .documents()?
        .into_iter()
        .filter(|d| written.contains(d.path.as_str()))
        .map(|d| d.id)
        .collect();
    let (corpus, first_new) = Corpus::load(store)?.with_docs_last(&docs);
    let index = Index::new(store.load_vectors()?)?;
    let neighbours = corpus.neighbours(&index, th.semantic_floor(), first_new)?;
    let items = corpus.items();
    let pairs = find_pairs_touching(&items, first_new, Some(&neighbours), th, &Kind::ALL)?;
    findings(&corpus, &items, &pairs, th)
}
