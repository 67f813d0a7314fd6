//! The engine: the one façade that the command line, the server and Rust
//! users call alike (TEI's `Infer`). It owns a [`Store`] and, when a command
//! needs one, the embedding model, and runs the pipelines that join them:
//! [`ingest`](Engine::ingest), [`similar`](Engine::similar),
//! [`dups`](Engine::dups), [`remove`](Engine::remove), [`stats`](Engine::stats).
//! Options are plain structs with `Default`; results are typed reports.
//! Nothing here prints, parses arguments or touches process stdin: a caller
//! that wants `-` hands in a reader ([`Input::Reader`]).
//!
//! Dependencies run one way: engine → corpus, dedup, store, model.

mod background;
mod check;
mod documents;
mod dups;
mod ingest;
mod similar;

use std::path::{Path, PathBuf};

pub use check::{CheckMatch, CheckRequest, CheckResult, CHECK_CANDIDATES, MAX_CHECK_TEXTS};
pub use documents::find_document;
pub use dups::{DuplicateFinding, DuplicateGroup, DuplicateMember, DupsOptions, DupsReport, Place};
pub use ingest::{
    passage_traits, stream_name, IngestOptions, IngestReport, Input, NoProgress, OnDuplicate,
    Progress, STDIN_NAME,
};
pub use similar::{
    parse_place, Hit, Location, Query, ResolvedQuery, SimilarOptions, SimilarRequest,
    SimilarResults, MAX_K,
};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Embedder, EncoderOptions, Role};
use crate::store::{Stats, Store, StoreMeta};

/// Where to find the model, for an engine that loads it only when a command
/// needs it (a text query does; `dups`, `stats` and stored-passage queries do not).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub dir: PathBuf,
    pub options: EncoderOptions,
}

/// A store and (possibly not yet loaded) model.
pub struct Engine {
    store: Box<dyn Store>,
    /// Shared: a server's engines (one per reader, one writer) hold one model.
    model: Option<Arc<Embedder>>,
    spec: Option<ModelSpec>,
    /// The loaded model's file fingerprint (see `model::fingerprint`).
    fingerprint: Option<String>,
}

/// The store meta key holding the model's file fingerprint.
const MODEL_FINGERPRINT: &str = "model_fingerprint";

impl Engine {
    /// An engine over any store, with a loaded model or none.
    pub fn new(store: Box<dyn Store>, model: Option<Embedder>) -> Self {
        Engine {
            store,
            model: model.map(Arc::new),
            spec: None,
            fingerprint: None,
        }
    }

    /// Opens the store `db` names (a SQLite file, or a `postgres://` URL)
    /// for ingesting with `model`, creating it when missing; refuses a store
    /// made with another model setup.
    pub fn create(db: &Path, model: Embedder) -> Result<Self> {
        let store = crate::store::create_or_open(db, &store_meta(&model))?;
        let mut engine = Engine::new(store, None);
        engine.attach_model(Arc::new(model))?;
        Ok(engine)
    }

    /// Opens an existing store (a SQLite file or a `postgres://` URL;
    /// read-only unless `writable`); the model described by `model` is
    /// loaded on first need.
    pub fn open(db: &Path, writable: bool, model: Option<ModelSpec>) -> Result<Self> {
        let store = crate::store::open_existing(db, writable)?;
        Ok(Engine {
            store,
            model: None,
            spec: model,
            fingerprint: None,
        })
    }

    /// Sets where the model is, to be loaded on first need.
    pub fn with_model(mut self, spec: ModelSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The store, for reads the façade does not wrap.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The model, loading it (and checking it against the store) on first use.
    pub fn model(&mut self) -> Result<&Embedder> {
        Ok(self.shared_model()?.as_ref())
    }

    /// The model as a handle other engines can share
    /// ([`with_shared_model`](Self::with_shared_model)).
    pub fn shared_model(&mut self) -> Result<&Arc<Embedder>> {
        if self.model.is_none() {
            let model = self.load_model()?;
            self.attach_model(Arc::new(model))?;
        }
        Ok(self.model.as_ref().expect("loaded above"))
    }

    /// Uses a model another engine loaded (checked against this store).
    pub fn with_shared_model(mut self, model: Arc<Embedder>) -> Result<Self> {
        self.attach_model(model)?;
        Ok(self)
    }

    /// Notices writes made through other handles since the last call
    /// (another engine on the same store, another process): what the store
    /// cached for searching is rebuilt on the next search. A long-lived
    /// reader calls it before each request.
    pub fn refresh(&mut self) -> Result<()> {
        self.store.refresh()
    }

    fn load_model(&self) -> Result<Embedder> {
        load(self.spec.as_ref())
    }

    fn attach_model(&mut self, model: Arc<Embedder>) -> Result<()> {
        self.store.check_meta(&store_meta(&model))?;
        let fingerprint = model.fingerprint()?;
        self.check_fingerprint(&fingerprint, model.dir())?;
        self.fingerprint = Some(fingerprint);
        self.model = Some(model);
        Ok(())
    }

    /// Refuses model files whose fingerprint differs from the one the store
    /// recorded (a store without one accepts any).
    fn check_fingerprint(&self, fingerprint: &str, dir: &Path) -> Result<()> {
        match self.store.meta_value(MODEL_FINGERPRINT)? {
            Some(stored) if stored != fingerprint => Err(Error::StoreMismatch {
                path: PathBuf::from(self.store.location()),
                reason: format!(
                    "its vectors were made by other model files under the same model id \
                     (fingerprint {stored}; the files in {} give {fingerprint}): a config or \
                     weights file changed, and mixing vectors would give wrong scores\n  \
                     fix: restore the model (`pareil model fetch --force`), pass another --db, \
                     or remove the store and run `pareil ingest` again",
                    dir.display()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Checks the model's fingerprint against the store's and records it in
    /// a store that has none yet (new, or made before fingerprints): called
    /// before the first write.
    fn record_fingerprint(&mut self) -> Result<()> {
        let Some(model) = self.model.as_ref() else {
            return Ok(());
        };
        let f = match &self.fingerprint {
            Some(f) => f.clone(),
            None => model.fingerprint()?,
        };
        self.check_fingerprint(&f, model.dir())?;
        if self.store.meta_value(MODEL_FINGERPRINT)?.is_none() {
            self.store.set_meta_value(MODEL_FINGERPRINT, &f)?;
        }
        Ok(())
    }

    /// Loads the model on a second thread while the store warms up (reads
    /// its vectors): a one-shot text query pays for the slower of the two,
    /// not their sum.
    fn model_and_warm_store(&mut self) -> Result<()> {
        if self.model.is_some() {
            return self.store.warm();
        }
        let spec = self.spec.clone();
        let (warmed, model) = std::thread::scope(|scope| {
            let loading = scope.spawn(|| load(spec.as_ref()));
            let warmed = self.store.warm();
            let model = loading
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (warmed, model)
        });
        warmed?;
        self.attach_model(Arc::new(model?))
    }

    /// Counts, size and the recorded model.
    pub fn stats(&self) -> Result<Stats> {
        let _span = tracing::info_span!("stats").entered();
        self.store.stats()
    }

    /// Removes the documents matching each of `paths` (a stored path or a
    /// unique path suffix); returns the removed paths. Fails, before
    /// removing anything, naming every path that matched nothing or several
    /// documents.
    pub fn remove(&mut self, paths: &[String]) -> Result<Vec<String>> {
        let _span = tracing::info_span!("remove", paths = paths.len()).entered();
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for p in paths {
            match find_document(self.store.as_ref(), p) {
                Ok(doc) => found.push(doc.path),
                Err(e @ (Error::NotFound(_) | Error::Usage(_))) => problems.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        if !problems.is_empty() {
            return Err(Error::NotFound(problems.join("; ")));
        }
        for path in &found {
            self.store.remove_document(path)?;
        }
        self.store.vacuum_embeddings()?;
        self.store.maintain(&mut |msg| tracing::info!("{msg}"))?;
        Ok(found)
    }

    /// Search exactly even where the store keeps an approximate index
    /// (`--exact`): slower on large stores, and the reference the index is
    /// measured against.
    pub fn set_exact_search(&mut self, exact: bool) {
        self.store.set_exact_search(exact);
    }
}

/// Loads the model `spec` describes.
fn load(spec: Option<&ModelSpec>) -> Result<Embedder> {
    let spec = spec.ok_or_else(|| Error::ModelMissing {
        what: "this engine was opened without a model".into(),
        fix: "open the engine with a model (`Engine::create`, or `Engine::with_model`)".into(),
    })?;
    Embedder::load_with(&spec.dir, spec.options)
}

/// The store metadata a loaded model implies.
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
    let prefix = match role {
        Role::Query => &meta.query_prefix,
        Role::Passage => &meta.passage_prefix,
    };
    crate::store::sha256_hex(
        format!("{}\n{}\n{prefix}{text}", meta.model_id, meta.revision).as_bytes(),
    )
}
