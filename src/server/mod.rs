//! `pareil serve`: the [`Engine`] over HTTP/JSON, with the model and the
//! search state kept warm between requests, for programs that look things
//! up many times (an editor plugin, a publishing pipeline, an agent).
//!
//! Shape: a pool of read-only engines (one per core) answers reads in
//! parallel, each refreshed before a request so writes made meanwhile (by
//! this server or by a separate `pareil ingest`) are seen without a restart;
//! one writable engine behind a lock serialises writes. SQLite's WAL lets
//! the readers go on while the writer writes. All engines share one loaded
//! model. Engine calls are blocking: they run on tokio's blocking threads,
//! and the engine and its permits travel into that work, so a request that
//! times out leaves nothing half-returned.
//!
//! Safety: loopback unless `--token` or `--insecure`; bearer token; body
//! limit; per-request timeout; a bounded number of admitted requests, 503
//! with `Retry-After` beyond it; every refusal is a JSON error that says
//! what is wrong (see [`api`]).

mod api;
mod mcp;
mod metrics;
mod openapi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::{Engine, ModelSpec};
use crate::error::{Error, Result};
use crate::model::Embedder;

pub use api::ApiError;
pub use mcp::serve_mcp;

/// How `pareil serve` listens and what it admits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Bearer token every request but `/health` must carry.
    pub token: Option<String>,
    /// Allow a non-loopback address without a token.
    pub insecure: bool,
    /// Directories under which `POST /v1/documents` may name server-side files.
    pub allow_dirs: Vec<PathBuf>,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Longest a request may take before it is answered 504.
    pub timeout: Duration,
    /// Requests admitted at once (running or waiting); more get 503.
    pub queue: usize,
    /// Read-only engines answering reads in parallel.
    pub readers: usize,
}

/// The default port: "pareil" has no number; 7311 is unassigned.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7311";

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: DEFAULT_ADDR.parse().expect("valid address"),
            token: None,
            insecure: false,
            allow_dirs: Vec::new(),
            body_limit: 8 << 20,
            timeout: Duration::from_secs(60),
            queue: 256,
            readers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl ServeOptions {
    /// Refuses settings that would expose the store by accident.
    pub fn check(&self) -> Result<()> {
        if !self.addr.ip().is_loopback() && self.token.is_none() && !self.insecure {
            return Err(Error::Usage(format!(
                "{} is reachable from other machines: give --token TOKEN (clients send \
                 `Authorization: Bearer TOKEN`), or --insecure to serve without one",
                self.addr
            )));
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Usage("--token must not be empty".into()));
        }
        if self.readers == 0 || self.queue == 0 || self.body_limit == 0 {
            return Err(Error::Usage(
                "--readers, --queue and --body-limit must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    readers: Mutex<Vec<Engine>>,
    reader_slots: Arc<Semaphore>,
    writer: Mutex<Engine>,
    model: Arc<Embedder>,
    admitted: Arc<Semaphore>,
    opts: ServeOptions,
    allow_dirs: Vec<PathBuf>,
    metrics: metrics::Metrics,
}

/// Opens (or creates) the store at `db`, loads the model once, binds
/// `opts.addr`, calls `ready` with the bound address, and serves until
/// SIGINT or SIGTERM; requests in flight (writes included) finish first.
pub fn serve(
    db: &Path,
    model: ModelSpec,
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    opts.check()?;
    let allow_dirs = opts
        .allow_dirs
        .iter()
        .map(|d| {
            d.canonicalize()
                .map_err(|e| Error::Usage(format!("--allow-dir {}: {e}", d.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let (writer, model) = open_writer(db, &model)?;
    let readers = (0..opts.readers)
        .map(|_| Engine::open(db, false, None)?.with_shared_model(model.clone()))
        .collect::<Result<Vec<_>>>()?;
    let shared = Arc::new(Shared {
        reader_slots: Arc::new(Semaphore::new(readers.len())),
        readers: Mutex::new(readers),
        writer: Mutex::new(writer),
        model,
        admitted: Arc::new(Semaphore::new(opts.queue)),
        allow_dirs,
        metrics: metrics::Metrics::default(),
        opts: opts.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the server runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", opts.addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("cannot read the bound address: {e}")))?;
        ready(bound);
        axum::serve(listener, api::router(shared))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::Usage(format!("server stopped: {e}")))
    })
}

/// The writable engine (creating the store when missing) and its model.
fn open_writer(db: &Path, spec: &ModelSpec) -> Result<(Engine, Arc<Embedder>)> {
    let mut writer = if db.exists() {
        Engine::open(db, true, Some(spec.clone()))?
    } else {
        Engine::create(db, Embedder::load_with(&spec.dir, spec.options)?)?
    };
    let model = writer.shared_model()?.clone();
    Ok((writer, model))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    eprintln!("pareil: stopping: finishing the requests in flight");
}

impl Shared {
    /// Admits a request, or says the server is full.
    pub(super) fn admit(&self) -> std::result::Result<OwnedSemaphorePermit, ApiError> {
        self.admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy())
    }

    /// Runs `work` on a read-only engine (refreshed first) on a blocking
    /// thread. The engine goes back to the pool when the work ends, even if
    /// the request has timed out and nobody waits for the answer.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Engine) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let slot = self
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::busy())?;
        let shared = self.clone();
        self.blocking(move || {
            let mut engine = shared
                .readers
                .lock()
                .expect("reader pool lock")
                .pop()
                .expect("a reader slot means an idle reader");
            let out = engine.refresh().and_then(|()| work(&mut engine));
            shared
                .readers
                .lock()
                .expect("reader pool lock")
                .push(engine);
            drop(slot);
            out
        })
        .await
    }

    /// Runs `work` on the writable engine, one write at a time.
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Engine) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let shared = self.clone();
        self.blocking(move || {
            // A panic in an earlier write poisons the lock; the engine itself
            // is still consistent (every write is one SQLite transaction).
            let mut engine = shared
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut engine)
        })
        .await
    }

    /// Runs `work` with the model only (no store).
    async fn compute<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Embedder) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let model = self.model.clone();
        self.blocking(move || work(&model)).await
    }

    /// Blocking work on tokio's blocking threads. If the request times out
    /// (see `api::guard`) the work still runs to its end, and a reader
    /// engine goes back to its pool then.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        match tokio::task::spawn_blocking(work).await {
            Err(join) => Err(ApiError::internal(format!("request failed: {join}"))),
            Ok(out) => out.map_err(ApiError::from),
        }
    }
}
