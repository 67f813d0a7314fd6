//! The embedding model: [`Embedder`], which turns texts into vectors in
//! input order, and what it is made of — the config keyed on `model_type`
//! ([`config`]), the tokenizer, an [`Encoder`] chosen by architecture
//! ([`encoder`], `bert`) built from checkpoint blocks (`weights`), and the
//! sentence-transformers prompts and pooling read from the model directory
//! ([`sentence`]). The SIMD loops live in `crate::kernels`, getting a model
//! onto the machine in `provision`, which depends on this module, not the
//! reverse.

mod batches;
mod bert;
pub mod config;
pub mod encoder;
mod fingerprint;
pub mod manifest;
mod pack_cache;
pub mod sentence;
pub mod tokenizer;
mod unigram;
mod weights;

pub use fingerprint::fingerprint;

use std::path::{Path, PathBuf};

pub use crate::kernels::{Kernel, Precision};
pub use config::{Architecture, ModelConfig, Role, DEFAULT_MODEL_ID};
pub use encoder::Encoder;
pub use manifest::Manifest;
pub use sentence::{Pool, Pooling, Prompts};
use tokenizer::{TextTokenizer, Tokenized};

use crate::error::{Error, Result};
use crate::kernels::{placement, team};

/// Upper bound on the tokens encoded in one forward pass: large enough for
/// efficient matrix products, small enough to keep memory flat. A batch
/// that one thread runs alone is smaller still (see [`batches`]).
pub const TOKEN_BUDGET: usize = 4096;

/// How the encoder computes: weight precision and matrix kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderOptions {
    pub precision: Precision,
    pub kernel: Kernel,
}

impl Default for EncoderOptions {
    /// int8 (the fastest setting within the fidelity bound) and the best
    /// kernel this CPU supports.
    fn default() -> Self {
        EncoderOptions {
            precision: Precision::default(),
            kernel: crate::kernels::detected_kernel(),
        }
    }
}

impl EncoderOptions {
    /// The defaults, with the kernel `PAREIL_KERNEL` asks for; an unknown
    /// value is an [`Error::Usage`] naming the valid ones (where
    /// [`Default`] falls back to the fastest kernel).
    pub fn from_env() -> Result<Self> {
        let kernel = crate::kernels::requested_kernel()
            .map_err(|e| Error::Usage(format!("PAREIL_KERNEL: {e}")))?;
        Ok(EncoderOptions {
            precision: Precision::default(),
            kernel,
        })
    }
}

/// One embedded text.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens the model saw, special tokens and prefix included.
    pub tokens: usize,
    /// Tokens cut off because the text exceeded the model's window.
    pub truncated_tokens: usize,
}

/// A loaded model, ready to embed.
pub struct Embedder {
    tokenizer: TextTokenizer,
    encoder: Box<dyn Encoder>,
    prompts: Prompts,
    pooling: Pooling,
    dir: PathBuf,
    manifest: Option<Manifest>,
    /// The encoder runs inside its own pool, entered once per batch: every
    /// operation of the forward pass then splits work from a worker thread
    /// instead of waking the pool from outside (a futex round trip per
    /// operation, a fifth of a short query's time). Each thread is pinned
    /// to its own CPU when the pool covers them all ([`placement`]).
    pool: rayon::ThreadPool,
    /// One one-thread pool per thread of `pool`, for bulk jobs (see
    /// [`batches`]); made on the first.
    lanes: std::sync::OnceLock<Vec<rayon::ThreadPool>>,
    /// One thread for short work while lanes hold the cores (see
    /// [`Embedder::pool_for_short_work`]); made on first need.
    solo: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    /// The model files' fingerprint, hashed once per loaded model: every
    /// engine sharing it (a server's readers and writer) checks its store
    /// against the same value without reading the files again.
    fingerprint: std::sync::OnceLock<String>,
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `dir`, with the default (fastest) options.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, EncoderOptions::default())
    }

    /// [`load`](Self::load) with explicit weight precision and kernel.
    pub fn load_with(dir: &Path, options: EncoderOptions) -> Result<Self> {
        let missing = manifest::missing_files(dir);
        if !missing.is_empty() {
            return Err(Error::ModelMissing {
                what: format!("{} lacks {}", dir.display(), missing.join(", ")),
                fix: "run `pareil model fetch` to (re)install the model".into(),
            });
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let (pooling, pooled_dim) = Pooling::read(dir)?;
        if pooled_dim.is_some_and(|d| d != config.hidden_size) {
            return Err(Error::ModelCorrupt {
                path: dir.join("1_Pooling/config.json"),
                reason: format!(
                    "word_embedding_dimension {} differs from config.json's hidden_size {}",
                    pooled_dim.unwrap_or_default(),
                    config.hidden_size
                ),
                fix: "use the files of one model (re-run `pareil model fetch`)".into(),
            });
        }
        let prompts = Prompts::read(dir)?;
        // The tokenizer (a 17 MB JSON vocabulary, ~0.5 s to build) and the
        // weights (read, converted and packed) load on two threads at once.
        let (tokenizer, encoder, fingerprint) = std::thread::scope(|scope| {
            let tokenizer = scope
                .spawn(|| TextTokenizer::load(&dir.join("tokenizer.json"), config.max_tokens()));
            let encoder = encoder::load(&dir.join("model.safetensors"), &config, options);
            // The store checks the fingerprint next; the tokenizer is the
            // longer load, so hash the files while it finishes.
            let fingerprint = fingerprint(dir).ok();
            let tokenizer = tokenizer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (tokenizer, encoder, fingerprint)
        });
        let (tokenizer, encoder, fingerprint) = (tokenizer?, encoder?, fingerprint);
        let manifest = manifest::read_manifest(dir).ok();
        // Default size: RAYON_NUM_THREADS (set by `--threads`), else every core.
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("pareil-encoder-{i}"))
            .build()
            .map_err(|e| Error::Usage(format!("cannot start encoder threads: {e}")))?;
        if let Some(cpus) = placement::plan(pool.current_num_threads()) {
            pool.broadcast(|thread| placement::pin_current_thread(cpus[thread.index()]));
        }
        Ok(Embedder {
            pool,
            lanes: std::sync::OnceLock::new(),
            solo: std::sync::OnceLock::new(),
            tokenizer,
            encoder,
            prompts,
            pooling,
            dir: dir.to_path_buf(),
            manifest,
            fingerprint: fingerprint
                .map(std::sync::OnceLock::from)
                .unwrap_or_default(),
        })
    }

    pub fn options(&self) -> EncoderOptions {
        self.encoder.options()
    }

    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// [`fingerprint`] of the model's directory, computed on first use.
    pub fn fingerprint(&self) -> Result<String> {
        if let Some(f) = self.fingerprint.get() {
            return Ok(f.clone());
        }
        let f = fingerprint(&self.dir)?;
        Ok(self.fingerprint.get_or_init(|| f).clone())
    }

    /// Model id and revision as recorded at install time.
    pub fn model_id(&self) -> String {
        self.manifest
            .as_ref()
            .map(|m| m.model_id.clone())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    pub fn revision(&self) -> String {
        self.manifest
            .as_ref()
            .map(|m| m.revision.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// The prompt prepended to a text of `role` (`query: ` / `passage: ` for
    /// multilingual-e5; from `config_sentence_transformers.json`).
    pub fn prompt(&self, role: Role) -> &str {
        self.prompts.get(role)
    }

    /// The pooling as stores and manifests record it: `mean+l2` for
    /// multilingual-e5 (see [`Pooling::name`]).
    pub fn pooling_name(&self) -> String {
        self.pooling.name()
    }

    /// The encoder family (`model_type`) of this model.
    pub fn architecture(&self) -> Architecture {
        self.encoder.config().architecture()
    }

    pub fn tokenize(&self, text: &str, role: Role) -> Result<Tokenized> {
        self.tokenizer.tokenize(text, self.prompt(role))
    }

    /// Token count of `prompt(role) + text` with special tokens, before truncation.
    pub fn count_tokens(&self, text: &str, role: Role) -> Result<usize> {
        self.tokenizer.count(text, self.prompt(role))
    }

    /// Embeds texts; results come back in input order.
    pub fn embed(&self, texts: &[&str], role: Role) -> Result<Vec<Embedding>> {
        self.embed_with_progress(texts, role, &mut |_| {})
    }

    /// Like [`embed`](Self::embed), calling `progress(n)` after each batch of `n` texts.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        role: Role,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Embedding>> {
        let tokenized = {
            let _span = tracing::info_span!("tokenize", texts = texts.len()).entered();
            texts
                .iter()
                .map(|t| self.tokenize(t, role))
                .collect::<Result<Vec<_>>>()?
        };
        let vectors = self.embed_tokenized(&tokenized, progress)?;
        Ok(vectors
            .into_iter()
            .zip(tokenized)
            .map(|(vector, t)| Embedding {
                vector,
                tokens: t.ids.len(),
                truncated_tokens: t.truncated,
            })
            .collect())
    }

    /// Encodes pre-tokenised inputs in batches of at most [`TOKEN_BUDGET`]
    /// tokens (fewer where one thread runs each), formed over length-sorted
    /// inputs, every thread on each batch or, in bulk, each thread on its
    /// own batches ([`batches`]); returns vectors in input order.
    pub fn embed_tokenized(
        &self,
        inputs: &[Tokenized],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let total = inputs.iter().map(|t| t.ids.len()).sum();
        let threads = self.pool.current_num_threads();
        let as_lanes = batches::runs_as_lanes(total, threads);
        let (order, plan) = batches::plan(inputs, batches::budget(threads, as_lanes));
        let ids = |i: usize| -> Vec<Vec<u32>> {
            order[plan[i].clone()]
                .iter()
                .map(|&j| inputs[j].ids.clone())
                .collect()
        };
        let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        let mut finish = |i: usize, hidden: Vec<f32>| {
            let batch = &order[plan[i].clone()];
            let lens: Vec<usize> = batch.iter().map(|&j| inputs[j].ids.len()).collect();
            let vectors = self.pooling.apply(&hidden, &lens, self.dim());
            for (&j, v) in batch.iter().zip(vectors) {
                out[j] = Some(v);
            }
            progress(batch.len());
        };
        let lanes = as_lanes
            .then(|| self.lanes.get_or_init(|| self.make_lanes()))
            .filter(|lanes| !lanes.is_empty());
        if let Some(lanes) = lanes {
            batches::run_on_lanes(lanes, plan.len(), |i| self.encoder.forward(&ids(i)), finish)?;
        } else {
            let pool = self.pool_for_short_work();
            for i in 0..plan.len() {
                let hidden = pool.install(|| self.encoder.forward(&ids(i)))?;
                finish(i, hidden);
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.expect("every input is in one batch"))
            .collect())
    }

    /// The encoder's pool, or, while bulk lanes hold the cores (a server
    /// embedding in bulk for one request while another asks a query), one
    /// thread of its own: split over threads that share their cores with
    /// the lanes, every step waits for the one descheduled. Measured on a
    /// 2-vCPU Zen 3 server, `/v1/similar` during bulk `/v1/embeddings`:
    /// p99 50–53 → 23–30 ms, median 18–19 → 17–18 ms.
    fn pool_for_short_work(&self) -> &rayon::ThreadPool {
        if !team::standing_aside() {
            return &self.pool;
        }
        let solo = self.solo.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "pareil-solo".into())
                .build()
                .ok()
        });
        solo.as_ref().unwrap_or(&self.pool)
    }

    /// One one-thread pool per thread of the encoder's pool; none if the
    /// threads cannot be started (bulk then splits each operation).
    /// Not pinned: a lane runs for as long as the job, long enough for the
    /// scheduler to spread them (pinned, 2-thread bulk ran 1 % slower on a
    /// Zen 3, alternated runs: the thread collecting results shares a core).
    /// Run in the background: a query meanwhile goes first.
    fn make_lanes(&self) -> Vec<rayon::ThreadPool> {
        (0..self.pool.current_num_threads())
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("pareil-lane-{i}"))
                    .start_handler(|_| placement::run_in_background())
                    .build()
            })
            .collect::<std::result::Result<_, _>>()
            .unwrap_or_default()
    }
}

/// Cosine similarity of two unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
