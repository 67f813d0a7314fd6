//! Ingestion: inputs → passages → chunks (windows of over-long passages) →
//! embeddings (cached by model input) → one store transaction per document,
//! with dedup on ingestion (report, skip, fail). Unchanged files are skipped
//! by content hash, so a killed run resumes where it stopped without
//! re-embedding what was committed. With `--on-duplicate report` the model
//! runs on a thread of its own, a batch gathered across documents at a
//! time, while this thread writes and splits around it.
//!
//! Dedup on ingestion keeps per-run state ([`RunState`]): the stored passages
//! are read once per run (with the normalised text stored at ingest) and
//! kept current as documents are written, so checking each document does
//! not reload the store. Skip and fail act on lexical duplicates only;
//! semantic ones are found once after the run's writes and reported.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::background::BackgroundEncoder;
use super::dups::{Corpus, DuplicateFinding};
use super::{embedding_key, Engine};
use crate::corpus;
use crate::dedup::lookup::query_keys;
use crate::dedup::{find_pairs_fetching_neighbours, find_pairs_touching, Kind, Pair, Thresholds};
use crate::error::{Error, Result};
use crate::model::{Embedder, Embedding, Role};
use crate::store::{
    DedupRow, MarkTarget, NewChunk, NewDocument, NewMark, NewPassage, PassageId, PassageRow,
    PassageTraits, StoreMeta,
};

/// Sentences of overlap between consecutive windows of an over-long passage.
pub const WINDOW_OVERLAP_SENTENCES: usize = 1;

/// The name under which text read from standard input is stored.
pub const STDIN_NAME: &str = "<stdin>";

/// One thing to ingest: a file or directory, or a named stream (the CLI
/// hands in standard input as `Reader { name: STDIN_NAME, .. }`).
pub enum Input {
    Path(PathBuf),
    Reader {
        name: String,
        reader: Box<dyn Read + Send>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Glob patterns a file inside a directory must match (all when empty).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// Store everything; report the duplicates.
    #[default]
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
    /// A document is being split and cut into windows (before
    /// `file_started`; long for a very large file).
    fn preparing(&mut self, _path: &str, _bytes: usize) {}
    fn file_started(&mut self, _path: &str, _passages_to_embed: usize) {}
    fn embedded(&mut self, _n: usize) {}
    fn warn(&mut self, _msg: &str) {}
    /// Long work other than embedding is starting (building the search index).
    fn note(&mut self, _msg: &str) {}
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
    pub duplicates: Vec<DuplicateFinding>,
    /// Passages stored as references to a canonical copy (`--on-duplicate skip`).
    pub passages_skipped_as_duplicates: usize,
    /// Documents not written because they hold duplicates (`--on-duplicate fail`).
    pub refused: Vec<(String, String)>,
    /// Passages stored as references whose canonical copy was edited away
    /// in this run, embedded so they stay searchable.
    pub references_restored: usize,
    pub seconds: f64,
}

/// A file read and split, ready to be embedded and written.
struct PreparedDocument {
    doc: NewDocument,
    /// Chunk texts by embedding key.
    chunk_texts: HashMap<String, String>,
    windowed: usize,
    /// Id and ingest order of the version already stored under this path.
    stored: Option<(i64, i64)>,
    /// Whether `embed_missing` ran: dropping chunks afterwards adds none.
    embedded: bool,
}

/// A passage of the document being ingested (by index), its canonical copy, kind and score.
struct DuplicateOf {
    passage: usize,
    canonical: MarkTarget,
    kind: Kind,
    score: f32,
}

/// Tokens of missing chunks to gather across documents before embedding
/// them together: two of the embedder's token-budget batches (a killed
/// ingest loses at most this much model work).
const AHEAD_TOKENS: usize = 2 * crate::model::TOKEN_BUDGET;
/// At most this many documents read ahead (bounds memory on tiny files).
const AHEAD_DOCS: usize = 512;

/// Documents on their way to the model together.
#[derive(Default)]
struct Batch {
    docs: Vec<PreparedDocument>,
    /// The chunks to embed, each once, with the document (index in `docs`)
    /// that gets its vector.
    order: Vec<(usize, String)>,
}

impl Batch {
    fn keys(&self) -> HashSet<String> {
        self.order.iter().map(|(_, k)| k.clone()).collect()
    }

    fn texts(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|(d, k)| self.docs[*d].chunk_texts[k].clone())
            .collect()
    }
}

/// Hands `batch` to the model, announcing each document's share.
fn submit(encoder: &BackgroundEncoder, batch: &Batch, progress: &mut dyn Progress) -> Result<()> {
    let mut counts = vec![0; batch.docs.len()];
    batch.order.iter().for_each(|(d, _)| counts[*d] += 1);
    for (doc, n) in batch.docs.iter().zip(counts) {
        progress.file_started(&doc.doc.path, n);
    }
    encoder.submit(batch.texts())
}

/// What one ingest run keeps between documents.
struct RunState {
    meta: StoreMeta,
    /// Stored passages, current as documents are written; loaded on the
    /// first document that needs a duplicate check (`skip` and `fail`).
    corpus: Option<Corpus>,
    /// Documents that were already stored when their new version was written.
    seen: HashSet<String>,
    /// Documents another process sharing the store had claimed when this
    /// run reached them; taken up, waiting for the claim, at the end.
    claimed_elsewhere: Vec<(String, Source)>,
    /// The store's write generation after this run's last checked write:
    /// `corpus` is current while the store still has it.
    corpus_generation: Option<String>,
}

/// The claim held while a duplicate check and its write run (see
/// [`Engine::decide_alone`]); no file walk produces this name.
const DEDUP_CLAIM: &str = "<pareil: duplicate decisions>";

impl Engine {
    /// Ingests files, directories and streams. Per document: unchanged files
    /// are skipped by hash, the rest split, embedded (only what the vector
    /// cache lacks) and written in one transaction, duplicates handled per
    /// `opts.on_duplicate`.
    ///
    /// Each document is claimed first ([`Store::claim`]), so ingest
    /// processes sharing one store (PostgreSQL workers) split the work; the
    /// run's claims end with it, a failed run included.
    pub fn ingest(
        &mut self,
        inputs: Vec<Input>,
        opts: &IngestOptions,
        progress: &mut dyn Progress,
    ) -> Result<IngestReport> {
        let outcome = self.ingest_claimed(inputs, opts, progress);
        let released = self.store.release_claims();
        let report = outcome?;
        released?;
        Ok(report)
    }

    fn ingest_claimed(
        &mut self,
        inputs: Vec<Input>,
        opts: &IngestOptions,
        progress: &mut dyn Progress,
    ) -> Result<IngestReport> {
        let _span = tracing::info_span!("ingest").entered();
        let started = Instant::now();
        self.model()?;
        self.record_fingerprint()?;
        let mut report = IngestReport::default();
        let mut state = RunState {
            meta: self.store.meta().clone(),
            corpus: None,
            seen: HashSet::new(),
            claimed_elsewhere: Vec::new(),
            corpus_generation: None,
        };
        let sources = resolve_inputs(inputs, opts)?;
        progress.files(sources.len());
        let mut sources = sources.into_iter();
        if opts.on_duplicate == OnDuplicate::Report {
            self.ingest_pipelined(&mut sources, opts, &mut state, progress, &mut report)?;
        } else {
            // Skip and fail check each document against the ones before it
            // first, so that duplicates cost no model time: one at a time.
            while let Some(doc) =
                self.next_prepared(&mut sources, true, opts, &mut state, progress, &mut report)?
            {
                if opts.on_duplicate == OnDuplicate::Skip {
                    self.write_skipping_duplicates(doc, opts, &mut state, progress, &mut report)?;
                } else {
                    self.write_unless_duplicates(doc, opts, &mut state, progress, &mut report)?;
                }
            }
        }
        if opts.prune {
            report.removed = self.prune(&state.seen)?;
        }
        self.fill_traits(progress)?;
        // The index first: the report below searches every new passage's
        // neighbours, exactly (single-threaded, quadratic: 195 s at 119k
        // real passages) until the index exists.
        self.store.maintain(&mut |msg| progress.note(msg))?;
        if !report.written.is_empty() {
            // Skip and fail act on lexical duplicates only (found per
            // document above); semantic ones are reported, never skipped.
            let kinds: &[Kind] = match opts.on_duplicate {
                OnDuplicate::Report => &Kind::ALL,
                OnDuplicate::Skip | OnDuplicate::Fail => &[Kind::Semantic],
            };
            let corpus = state.corpus.take();
            let found = self.duplicates_touching_run(&report, corpus, &opts.thresholds, kinds)?;
            report.duplicates.extend(found);
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Reads sources until one yields a document to write (unchanged,
    /// unreadable and undecodable files are counted and passed over).
    ///
    /// Documents another process had claimed come last, waiting for their
    /// claim — but only when `may_wait`, i.e. this run holds no claim of its
    /// own (nothing read ahead and unwritten): two workers each waiting for
    /// a document the other holds would wait for ever.
    fn next_prepared(
        &mut self,
        sources: &mut impl Iterator<Item = (String, Source)>,
        may_wait: bool,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<Option<PreparedDocument>> {
        for (name, source) in sources {
            state.seen.insert(name.clone());
            // Another process sharing the store is on this document: come
            // back to it when the rest is done (it is then unchanged).
            if !self.store.claim(&name, false)? {
                state.claimed_elsewhere.push((name, source));
                continue;
            }
            if let Some(doc) = self.read_claimed(name, source, opts, progress, report)? {
                return Ok(Some(doc));
            }
        }
        if !may_wait {
            return Ok(None);
        }
        while let Some((name, source)) = state.claimed_elsewhere.pop() {
            self.store.claim(&name, true)?;
            if let Some(doc) = self.read_claimed(name, source, opts, progress, report)? {
                return Ok(Some(doc));
            }
        }
        Ok(None)
    }

    /// Reads and stages a document this process has claimed; the claim
    /// ends here unless there is something to write.
    fn read_claimed(
        &mut self,
        name: String,
        source: Source,
        opts: &IngestOptions,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<Option<PreparedDocument>> {
        report.documents += 1;
        let read = {
            let _span = tracing::info_span!("read", path = %name).entered();
            read_source(source)
        };
        let staged = match read {
            Ok((bytes, mtime)) => self.stage(&name, &bytes, mtime, opts, progress, report)?,
            Err(e) => {
                self.store.release(&name)?;
                skip(report, progress, name, e);
                return Ok(None);
            }
        };
        if staged.is_none() {
            self.store.release(&name)?;
        }
        Ok(staged)
    }

    /// `--on-duplicate report`: documents go to the model in batches
    /// gathered across files (until [`AHEAD_TOKENS`] tokens are missing), so
    /// a folder of small files fills the model's batches instead of running
    /// one tiny batch per file. The model runs on a thread of its own
    /// ([`BackgroundEncoder`]): while it embeds one batch, this thread
    /// writes the batch before and reads and splits the batch after.
    fn ingest_pipelined(
        &mut self,
        sources: &mut impl Iterator<Item = (String, Source)>,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        let model = Arc::clone(self.shared_model()?);
        let parent = tracing::Span::current();
        std::thread::scope(|scope| {
            let encoder = BackgroundEncoder::start(scope, model, Role::Passage, parent);
            let mut in_flight: Option<Batch> = None;
            loop {
                let pending = in_flight.as_ref().map(Batch::keys).unwrap_or_default();
                let holding = in_flight.is_some();
                let next =
                    self.gather_batch(sources, &pending, !holding, opts, state, progress, report)?;
                if let Some(batch) = in_flight.take() {
                    let vectors = encoder.receive(&mut |n| progress.embedded(n))?;
                    if !next.docs.is_empty() {
                        submit(&encoder, &next, progress)?;
                    }
                    self.write_batch(batch, vectors, state, progress, report)?;
                } else if !next.docs.is_empty() {
                    submit(&encoder, &next, progress)?;
                }
                if next.docs.is_empty() {
                    if holding {
                        // Now that nothing is held: documents another
                        // process had claimed, waiting for their claims.
                        continue;
                    }
                    return Ok(());
                }
                in_flight = Some(next);
            }
        })
    }

    /// Reads documents until their missing chunks reach [`AHEAD_TOKENS`]
    /// tokens (or [`AHEAD_DOCS`] documents). Chunks the store's cache holds,
    /// or that `pending` (the batch being embedded) will bring, are not
    /// missing; each missing chunk goes to the first document that needs
    /// it, and later ones find it stored when they are written. Waits for
    /// another process's claims only when `may_wait` (this run holds none:
    /// see [`next_prepared`](Self::next_prepared)).
    #[allow(clippy::too_many_arguments)]
    fn gather_batch(
        &mut self,
        sources: &mut impl Iterator<Item = (String, Source)>,
        pending: &HashSet<String>,
        may_wait: bool,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<Batch> {
        let mut batch = Batch::default();
        let mut wanted: HashSet<String> = HashSet::new();
        let mut tokens = 0;
        while tokens < AHEAD_TOKENS && batch.docs.len() < AHEAD_DOCS {
            let wait = may_wait && batch.docs.is_empty();
            let Some(doc) = self.next_prepared(sources, wait, opts, state, progress, report)?
            else {
                break;
            };
            let missing = self.missing_chunks(&doc)?;
            for (key, n) in missing {
                if !pending.contains(&key) && wanted.insert(key.clone()) {
                    tokens += n;
                    batch.order.push((batch.docs.len(), key));
                }
            }
            batch.docs.push(doc);
        }
        Ok(batch)
    }

    /// Gives a batch's documents their vectors and writes them, in order.
    fn write_batch(
        &mut self,
        mut batch: Batch,
        vectors: Vec<Embedding>,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        report.chunks_embedded += vectors.len();
        for ((d, key), e) in batch.order.into_iter().zip(vectors) {
            batch.docs[d].doc.embeddings.insert(key, e.vector);
        }
        for mut doc in batch.docs {
            doc.embedded = true;
            self.write(doc, state, progress, report)?;
        }
        Ok(())
    }

    /// The chunks of `doc` that neither the store's cache nor the document
    /// holds, with their tokens.
    fn missing_chunks(&self, doc: &PreparedDocument) -> Result<Vec<(String, usize)>> {
        let keys: Vec<String> = doc
            .chunk_texts
            .keys()
            .filter(|k| !doc.doc.embeddings.contains_key(*k))
            .cloned()
            .collect();
        let cached = self.store.cached_embeddings(&keys)?;
        let tokens_of: HashMap<&str, usize> = doc
            .doc
            .passages
            .iter()
            .flat_map(|p| &p.chunks)
            .map(|c| (c.emb_key.as_str(), c.tokens))
            .collect();
        Ok(keys
            .into_iter()
            .filter(|k| !cached.contains_key(k))
            .map(|k| {
                let n = tokens_of.get(k.as_str()).copied().unwrap_or(0);
                (k, n)
            })
            .collect())
    }

    /// Reads a source's text and splits it, unless it is stored unchanged or
    /// cannot be decoded (counted in the report).
    fn stage(
        &mut self,
        name: &str,
        bytes: &[u8],
        mtime: Option<i64>,
        opts: &IngestOptions,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<Option<PreparedDocument>> {
        let hash = corpus::content_hash(bytes);
        let existing = self.store.document_by_path(name)?;
        if existing.as_ref().is_some_and(|d| d.content_hash == hash) {
            report.documents_unchanged += 1;
            progress.file_started(name, 0);
            return Ok(None);
        }
        let text = match corpus::read_text(Path::new(name), bytes, opts.lossy) {
            Ok(t) => t,
            Err(e @ (Error::InvalidUtf8 { .. } | Error::Binary { .. })) => {
                skip(report, progress, name.to_string(), e);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if existing.is_some() && is_stream_name(name) {
            progress.warn(&format!(
                "{name}: replaces the document an earlier ingest read from standard input \
                 under this name (use --name NAME to keep both)"
            ));
        }
        progress.preparing(name, bytes.len());
        let meta = self.store.meta().clone();
        let mut doc = self.prepare(&meta, name, bytes, &text, mtime)?;
        doc.stored = existing.map(|d| (d.id, d.ingest_order));
        Ok(Some(doc))
    }

    /// `--on-duplicate skip`, the check and the write as one step for every
    /// process sharing the store (see [`Engine::decide_alone`]).
    fn write_skipping_duplicates(
        &mut self,
        doc: PreparedDocument,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        self.decide_alone(state, |engine, state| {
            engine.write_skipping_duplicates_now(doc, opts, state, progress, report)
        })
    }

    /// `--on-duplicate fail`, the check and the write as one step for every
    /// process sharing the store (see [`Engine::decide_alone`]).
    fn write_unless_duplicates(
        &mut self,
        doc: PreparedDocument,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        self.decide_alone(state, |engine, state| {
            engine.write_unless_duplicates_now(doc, opts, state, progress, report)
        })
    }

    /// Runs a duplicate check and the write it decides while no other
    /// process sharing the store does the same ([`DEDUP_CLAIM`]), on a
    /// corpus that holds what they wrote: two workers storing the same
    /// passage at the same moment give one canonical copy and one reference,
    /// never two canonicals. When the store's write generation moved since
    /// this run last wrote (another process wrote), the corpus catches up
    /// with the documents that changed ([`Corpus::refresh`]).
    fn decide_alone(
        &mut self,
        state: &mut RunState,
        step: impl FnOnce(&mut Self, &mut RunState) -> Result<()>,
    ) -> Result<()> {
        self.store.claim(DEDUP_CLAIM, true)?;
        let decided = self.catch_up(state).and_then(|()| {
            step(self, state)?;
            state.corpus_generation = self.store.meta_value("generation")?;
            Ok(())
        });
        let released = self.store.release(DEDUP_CLAIM);
        decided.and(released)
    }

    /// Brings the run's corpus up to date with writes of other processes.
    fn catch_up(&self, state: &mut RunState) -> Result<()> {
        if self.store.meta_value("generation")? == state.corpus_generation {
            return Ok(());
        }
        match state.corpus.as_mut() {
            Some(corpus) => corpus.refresh(self.store()).map(|_| ()),
            None => Ok(()),
        }
    }

    /// `--on-duplicate skip`: duplicate passages are stored as references to
    /// their canonical copy. Only lexical duplicates are skipped: their text
    /// shows the content is stored, while a semantic finding is a judgement
    /// of meaning that could drop a passage `similar` should still return.
    /// They are found before embedding, so they cost no model time.
    fn write_skipping_duplicates_now(
        &mut self,
        mut doc: PreparedDocument,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        let (mut findings, marks) = self.lexical_duplicates(&doc, state, &opts.thresholds)?;
        report.passages_skipped_as_duplicates += marks.len();
        doc.write_as_references(marks);
        let ids = self.write(doc, state, progress, report)?;
        // The findings were made before the write, with placeholder ids.
        for f in &mut findings {
            for place in [&mut f.canonical, &mut f.duplicate] {
                for id in place.ids.iter_mut().filter(|id| **id < 0) {
                    *id = ids[(-1 - *id) as usize];
                }
            }
        }
        report.duplicates.extend(findings);
        Ok(())
    }

    /// `--on-duplicate fail`: a document holding a lexical duplicate is not
    /// written (semantic ones are reported, as with skip).
    fn write_unless_duplicates_now(
        &mut self,
        doc: PreparedDocument,
        opts: &IngestOptions,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        // Lexical duplicates refuse the document before any embedding.
        let (findings, _) = self.lexical_duplicates(&doc, state, &opts.thresholds)?;
        if refuse(report, &doc.doc.path, findings) {
            return self.store.release(&doc.doc.path);
        }
        self.write(doc, state, progress, report).map(|_| ())
    }

    /// Splits a document's text into passages and chunks.
    fn prepare(
        &self,
        meta: &StoreMeta,
        path: &str,
        bytes: &[u8],
        text: &str,
        mtime: Option<i64>,
    ) -> Result<PreparedDocument> {
        let _span = tracing::info_span!("split", path).entered();
        let model = self.model.as_ref().expect("ingest loads the model first");
        let split = corpus::split_passages(text);
        let mut chunk_texts = HashMap::new();
        let mut windowed = 0;
        let mut passages = Vec::with_capacity(split.passages.len());
        for p in split.passages {
            let chunks = chunk_passage(model, meta, &p.text, &mut chunk_texts);
            windowed += usize::from(chunks.len() > 1);
            let norm = corpus::normalize(&p.text);
            passages.push(NewPassage {
                line_start: p.line_start,
                line_end: p.line_end,
                byte_start: p.byte_start,
                byte_end: p.byte_end,
                traits: Some(passage_traits(&p.text, &norm)),
                norm,
                text: p.text,
                chunks,
                duplicate_of: None,
            });
        }
        Ok(PreparedDocument {
            doc: NewDocument {
                path: path.to_string(),
                content_hash: corpus::content_hash(bytes),
                size: bytes.len() as u64,
                mtime,
                date: split.date,
                passages,
                embeddings: HashMap::new(),
                exact_references: false,
            },
            chunk_texts,
            windowed,
            stored: None,
            embedded: false,
        })
    }

    /// Embeds the chunks of `doc` that neither the store's cache nor
    /// `doc.doc.embeddings` holds, adding them to the latter.
    fn embed_missing(
        &self,
        doc: &mut PreparedDocument,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        if doc.embedded {
            return Ok(());
        }
        doc.embedded = true;
        let computed = &doc.doc.embeddings;
        let keys: Vec<String> = doc
            .chunk_texts
            .keys()
            .filter(|k| !computed.contains_key(*k))
            .cloned()
            .collect();
        let cached = self.store.cached_embeddings(&keys)?;
        let missing: Vec<&String> = keys.iter().filter(|k| !cached.contains_key(*k)).collect();
        progress.file_started(&doc.doc.path, missing.len());
        let texts: Vec<&str> = missing
            .iter()
            .map(|k| doc.chunk_texts[*k].as_str())
            .collect();
        let model = self.model.as_ref().expect("ingest loads the model first");
        let vectors = {
            let _span = tracing::info_span!("embed", chunks = texts.len()).entered();
            model.embed_with_progress(&texts, Role::Passage, &mut |n| progress.embedded(n))?
        };
        report.chunks_embedded += vectors.len();
        for (k, e) in missing.into_iter().zip(vectors) {
            doc.doc.embeddings.insert(k.clone(), e.vector);
        }
        Ok(())
    }

    /// Embeds what the cache lacks and writes the document in one
    /// transaction; restores the references its old version's passages
    /// were canonical for. Returns the new passage ids.
    fn write(
        &mut self,
        mut doc: PreparedDocument,
        state: &mut RunState,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<Vec<PassageId>> {
        self.embed_missing(&mut doc, progress, report)?;
        // Only vectors the document uses are written; `embeddings` may hold
        // vectors of chunks dropped since (duplicates stored as references).
        let mut doc = doc;
        doc.doc
            .embeddings
            .retain(|k, _| doc.chunk_texts.contains_key(k));
        let total_chunks: usize = doc.doc.passages.iter().map(|p| p.chunks.len()).sum();
        // Chunks repeated inside the document, or cached, count as reused.
        report.chunks_reused += total_chunks.saturating_sub(doc.doc.embeddings.len());
        report.passages_windowed += doc.windowed;
        report.passages += doc.doc.passages.len();
        let outcome = {
            let _span = tracing::info_span!("write", path = %doc.doc.path).entered();
            self.store.replace_document(&doc.doc)?
        };
        self.store.release(&doc.doc.path)?;
        report.documents_written += 1;
        report
            .written
            .push((doc.doc.path.clone(), outcome.passage_ids.clone()));
        // Texts another writer stored meanwhile (see `exact_references`).
        report.passages_skipped_as_duplicates += outcome.late_references.len();
        if let Some(corpus) = state.corpus.as_mut() {
            corpus.remove_document(outcome.doc_id);
            // A replaced document keeps its place in ingest order; a new
            // one's was given by the store.
            let order = match doc.stored {
                Some((_, order)) => order,
                None => self
                    .store
                    .document_by_path(&doc.doc.path)?
                    .map_or(i64::MAX, |d| d.ingest_order),
            };
            corpus.push_rows(
                doc.rows(outcome.doc_id, &outcome.passage_ids)
                    .map(|(row, p)| dedup_row(row, p, order))
                    .collect(),
            );
        }
        for id in outcome.unlinked_duplicates {
            self.restore_reference(id, &state.meta, progress, report)?;
        }
        Ok(outcome.passage_ids)
    }

    /// A passage stored as a reference whose canonical copy is gone gets its
    /// own chunks and vectors back, so it stays searchable.
    fn restore_reference(
        &mut self,
        id: PassageId,
        meta: &StoreMeta,
        progress: &mut dyn Progress,
        report: &mut IngestReport,
    ) -> Result<()> {
        let Some(row) = self.store.passage(id)? else {
            return Ok(());
        };
        let model = self.model.as_ref().expect("ingest loads the model first");
        let mut chunk_texts = HashMap::new();
        let chunks = chunk_passage(model, meta, &row.text, &mut chunk_texts);
        let mut prepared = PreparedDocument {
            doc: NewDocument {
                path: row.path.clone(),
                ..NewDocument::default()
            },
            chunk_texts,
            windowed: 0,
            stored: None,
            embedded: false,
        };
        self.embed_missing(&mut prepared, progress, report)?;
        self.store
            .add_chunks(id, &chunks, &prepared.doc.embeddings)?;
        report.references_restored += 1;
        Ok(())
    }

    /// The stored corpus for duplicate checks, loaded once per run.
    fn corpus<'s>(&self, state: &'s mut RunState) -> Result<&'s mut Corpus> {
        if state.corpus.is_none() {
            state.corpus = Some(Corpus::load(self.store())?);
        }
        Ok(state.corpus.as_mut().expect("loaded above"))
    }

    /// Exact, near and contained duplicates of `doc`'s passages among the
    /// stored passages (other than its own old version) and earlier passages
    /// of `doc`: the findings, and each duplicate passage of `doc` with its
    /// canonical copy.
    fn lexical_duplicates(
        &self,
        doc: &PreparedDocument,
        state: &mut RunState,
        th: &Thresholds,
    ) -> Result<(Vec<DuplicateFinding>, Vec<DuplicateOf>)> {
        let _span = tracing::info_span!("lexical_check", path = %doc.doc.path).entered();
        let old = doc.stored.map(|(id, _)| id);
        // Only the stored passages that share a lexical key with this
        // document's can pair with them: the stages run on those, found by
        // the store when it indexes the keys, else in the run's corpus.
        let keys: Vec<Vec<u32>> = doc
            .doc
            .passages
            .iter()
            .map(|p| query_keys(&p.norm, th))
            .collect();
        let mut near = match self.store.lexical_neighbours(&keys)? {
            Some(rows) => Corpus::of_rows(rows),
            None => self
                .corpus(state)?
                .lexical_neighbourhood(self.store(), &keys, th)?,
        };
        with_candidate(&mut near, doc, old, |corpus, first_new| {
            let items = corpus.items();
            let pairs = find_pairs_touching(&items, first_new, None, th, &Kind::LEXICAL)?;
            let marks = duplicate_marks(corpus, first_new, &pairs);
            let report = corpus.report(&items, &pairs, None, Vec::new())?;
            Ok((report.findings, marks))
        })
    }

    /// All kinds of duplicates that involve a document written in this run,
    /// in the run's `corpus` (brought up to date) when it has one.
    fn duplicates_touching_run(
        &self,
        report: &IngestReport,
        corpus: Option<Corpus>,
        th: &Thresholds,
        kinds: &[Kind],
    ) -> Result<Vec<DuplicateFinding>> {
        let _span = tracing::info_span!("duplicate_report").entered();
        let written: HashSet<&str> = report.written.iter().map(|(p, _)| p.as_str()).collect();
        let docs: HashSet<i64> = self
            .store
            .documents()?
            .into_iter()
            .filter(|d| written.contains(d.path.as_str()))
            .map(|d| d.id)
            .collect();
        let corpus = match corpus {
            Some(mut corpus) => {
                corpus.refresh(self.store())?;
                corpus
            }
            None => Corpus::load(self.store())?,
        };
        let (corpus, first_new) = corpus.with_docs_last(&docs);
        let items = corpus.items();
        let fetch = || corpus.neighbours(self.store(), th.semantic_floor(), first_new);
        let sketches = corpus.stored_sketches(self.store(), kinds)?;
        let pairs = find_pairs_fetching_neighbours(&items, first_new, fetch, sketches, th, kinds)?;
        Ok(corpus.report(&items, &pairs, None, Vec::new())?.findings)
    }

    /// Works out the traits `dups` reads ([`passage_traits`]) for passages
    /// an older pareil stored without them, a batch at a time; returns how
    /// many. Once per store: a meta key records that every passage has them
    /// (every write since stores them, and an older pareil refuses this
    /// format), so later ingests do not scan the store for none.
    fn fill_traits(&mut self, progress: &mut dyn Progress) -> Result<usize> {
        const BATCH: usize = 20_000;
        const COMPLETE: &str = "passage_traits_complete";
        if self.store.meta_value(COMPLETE)?.is_some() {
            return Ok(0);
        }
        let mut after = PassageId::MIN;
        let mut filled = 0;
        loop {
            let batch = self.store.passages_without_traits(after, BATCH)?;
            let Some(&(last, ..)) = batch.last() else {
                break;
            };
            if filled == 0 {
                progress.note(
                    "storing language guesses and lexical sketches for passages \
                               an older pareil stored (once)",
                );
            }
            let traits: Vec<(PassageId, PassageTraits)> = batch
                .par_iter()
                .map(|(id, text, norm)| (*id, passage_traits(text, norm)))
                .collect();
            self.store.set_traits(&traits)?;
            filled += traits.len();
            after = last;
        }
        self.store.set_meta_value(COMPLETE, "1")?;
        Ok(filled)
    }

    /// Removes stored documents whose files no longer exist (and that this
    /// run did not see); returns their paths.
    fn prune(&mut self, seen: &HashSet<String>) -> Result<Vec<String>> {
        let gone: Vec<String> = self
            .store
            .documents()?
            .into_iter()
            .map(|d| d.path)
            .filter(|p| !is_stream_name(p) && !seen.contains(p) && file_is_gone(p))
            .collect();
        for p in &gone {
            self.store.remove_document(p)?;
        }
        Ok(gone)
    }
}

/// The stored name of a document read from a stream: `<stdin>`, or
/// `<NAME>` for `--name NAME`. No file walk produces it, so prune leaves it.
pub fn stream_name(name: Option<&str>) -> Result<String> {
    match name {
        None => Ok(STDIN_NAME.to_string()),
        Some(n) if n.trim().is_empty() || n.contains(['\n', '\r', '<', '>']) => Err(Error::Usage(
            format!("--name {n:?}: give a non-empty name on one line, without < or >"),
        )),
        Some(n) => Ok(format!("<{n}>")),
    }
}

fn is_stream_name(name: &str) -> bool {
    name.starts_with('<') && name.ends_with('>')
}

/// Whether a stored document's file is gone: only "not found" counts, so a
/// file that cannot be checked (permissions, a dangling link) is kept.
fn file_is_gone(name: &str) -> bool {
    std::fs::symlink_metadata(corpus::path_of_stored(name))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// A passage's chunks: the whole passage, or windows on sentence boundaries
/// when it is longer than the model's window; their texts go into `texts`.
fn chunk_passage(
    model: &Embedder,
    meta: &StoreMeta,
    text: &str,
    texts: &mut HashMap<String, String>,
) -> Vec<NewChunk> {
    let max = model.max_tokens();
    let count = |s: &str| model.count_tokens(s, Role::Passage).unwrap_or(usize::MAX);
    let spans = if corpus::fits_in(text, max, &count) {
        vec![(0, text.len())]
    } else {
        corpus::windows(text, max, WINDOW_OVERLAP_SENTENCES, &count)
    };
    spans
        .into_iter()
        .map(|(s, e)| {
            let chunk = &text[s..e];
            let key = embedding_key(meta, Role::Passage, chunk);
            texts.insert(key.clone(), chunk.to_string());
            NewChunk {
                byte_start: s,
                byte_end: e,
                tokens: count(chunk).min(max),
                emb_key: key,
            }
        })
        .collect()
}

/// Runs `check` on the corpus with `doc`'s old version left out and `doc`'s
/// passages appended (from the returned index on), then restores the corpus.
fn with_candidate<T>(
    corpus: &mut Corpus,
    doc: &PreparedDocument,
    old: Option<i64>,
    check: impl FnOnce(&Corpus, usize) -> Result<T>,
) -> Result<T> {
    // Passages of the old version stay in the corpus (the write will replace
    // them) but must not be compared: move them out for the check.
    let saved = old.map(|id| corpus.take_document(id));
    let first_new = corpus.len();
    corpus.push_rows(
        doc.rows(NEW_DOC, &[])
            .map(|(row, p)| dedup_row(row, p, i64::MAX))
            .collect(),
    );
    let result = check(corpus, first_new);
    corpus.truncate(first_new);
    if let Some(rows) = saved {
        corpus.restore(rows);
    }
    result
}

/// A passage about to be written as the dedup record a stored one would
/// give (`DedupRow`), in ingest order `order`.
fn dedup_row(passage: PassageRow, p: &NewPassage, order: i64) -> DedupRow {
    DedupRow {
        passage,
        norm: p.norm.clone(),
        order,
        lang: p.traits.as_ref().map(|t| t.lang.clone()),
    }
}

/// What `dups` needs of a passage, worked out once at ingest and stored
/// beside it: its language guess and lexical sketch.
pub fn passage_traits(text: &str, norm: &str) -> PassageTraits {
    let sketch = crate::dedup::sketch::encode(norm);
    PassageTraits {
        lang: corpus::guess_language(text).map(str::to_string),
        keys: crate::dedup::lookup::stored_keys(norm, &sketch),
        sketch,
    }
}

/// Reads a source's bytes, and a file's modification time.
fn read_source(source: Source) -> Result<(Vec<u8>, Option<i64>)> {
    match source {
        Source::File(p) => {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            Ok((bytes, mtime_of(&p)))
        }
        Source::Bad(p, why) => Err(Error::io(&p, std::io::Error::other(why))),
        Source::Reader(name, mut r) => {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map_err(|e| Error::io(&name, e))?;
            Ok((buf, None))
        }
    }
}

/// Where a document's bytes come from.
enum Source {
    File(PathBuf),
    /// An entry the directory walk could not use, and why: reported as
    /// skipped, like an unreadable file.
    Bad(PathBuf, String),
    Reader(String, Box<dyn Read + Send>),
}

/// Expands directories (with the include/exclude globs) into files, each
/// under the name it is stored with; streams keep their name.
fn resolve_inputs(inputs: Vec<Input>, opts: &IngestOptions) -> Result<Vec<(String, Source)>> {
    let mut paths = Vec::new();
    let mut readers = Vec::new();
    for input in inputs {
        match input {
            Input::Path(p) => paths.push(p),
            Input::Reader { name, reader } => {
                readers.push((name.clone(), Source::Reader(name, reader)))
            }
        }
    }
    let found = if paths.is_empty() {
        corpus::discover::Discovery::default()
    } else {
        corpus::discover(&paths, &opts.include, &opts.exclude)?
    };
    let mut out: Vec<(String, Source)> = found
        .skipped
        .into_iter()
        .map(|(p, why)| (corpus::stored_name(&p), Source::Bad(p, why)))
        .collect();
    out.extend(
        found
            .files
            .into_iter()
            .map(|p| (corpus::stored_name(&p), Source::File(p))),
    );
    out.extend(readers);
    Ok(out)
}

fn skip(report: &mut IngestReport, progress: &mut dyn Progress, name: String, e: Error) {
    progress.warn(&e.to_string());
    report.skipped.push((name, e.to_string()));
}

fn mtime_of(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Placeholder document id of a document not yet written.
const NEW_DOC: i64 = -1;

impl PreparedDocument {
    /// Removes the chunks of passages stored as references, and their texts.
    /// `--on-duplicate skip`: each marked passage is written as a reference
    /// to its canonical copy, without chunks (nothing of it is embedded),
    /// and the store turns any other passage whose text it already holds
    /// into one too ([`NewDocument::exact_references`]).
    fn write_as_references(&mut self, marks: Vec<DuplicateOf>) {
        self.doc.exact_references = true;
        for m in marks {
            let p = &mut self.doc.passages[m.passage];
            p.chunks.clear();
            p.duplicate_of = Some(NewMark {
                canonical: m.canonical,
                kind: m.kind.as_str().into(),
                score: m.score as f64,
            });
        }
        let used: HashSet<String> = self
            .doc
            .passages
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| c.emb_key.clone()))
            .collect();
        self.chunk_texts.retain(|k, _| used.contains(k));
    }

    /// The document's passages as stored rows: with `ids` once written,
    /// else with placeholder ids.
    fn rows<'d>(
        &'d self,
        doc_id: i64,
        ids: &[PassageId],
    ) -> impl Iterator<Item = (PassageRow, &'d NewPassage)> + 'd {
        let ids = ids.to_vec();
        self.doc.passages.iter().enumerate().map(move |(i, p)| {
            let row = PassageRow {
                id: ids.get(i).copied().unwrap_or(-1 - i as i64),
                doc_id,
                path: self.doc.path.clone(),
                date: self.doc.date.clone(),
                idx: i,
                line_start: p.line_start,
                line_end: p.line_end,
                byte_start: p.byte_start,
                byte_end: p.byte_end,
                text: p.text.clone(),
                duplicate_of: p.duplicate_of.as_ref().and_then(|m| match m.canonical {
                    MarkTarget::Stored(id) => Some(id),
                    MarkTarget::Earlier(i) => ids.get(i).copied(),
                }),
                dup_kind: p.duplicate_of.as_ref().map(|m| m.kind.clone()),
                dup_score: p.duplicate_of.as_ref().map(|m| m.score),
                norm_hash: crate::store::sha256_hex(p.norm.as_bytes()),
            };
            (row, p)
        })
    }
}

/// Records `name` as refused for `findings`, if there are any; says whether it was.
fn refuse(report: &mut IngestReport, name: &str, findings: Vec<DuplicateFinding>) -> bool {
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

/// For each pair whose duplicate side is a passage of the new document
/// (items from `first_new` on), that passage and its canonical copy, once.
fn duplicate_marks(corpus: &Corpus, first_new: usize, pairs: &[Pair]) -> Vec<DuplicateOf> {
    let mut marks = Vec::new();
    let mut marked = HashSet::new();
    for p in pairs {
        if p.duplicate >= first_new && marked.insert(p.duplicate) {
            let canonical = if p.canonical >= first_new {
                MarkTarget::Earlier(p.canonical - first_new)
            } else {
                MarkTarget::Stored(corpus.rows[p.canonical].id)
            };
            marks.push(DuplicateOf {
                passage: p.duplicate - first_new,
                canonical,
                kind: p.kind,
                score: p.score,
            });
        }
    }
    marks
}
