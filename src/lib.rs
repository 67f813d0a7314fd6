//! pareil: local semantic similarity and duplicate detection over folders of
//! text, with a multilingual sentence-embedding model on CPU through candle.
//!
//! [`Engine`] is the façade: open a store and a model, then ingest, ask for
//! similar passages, list duplicates, remove, count. The `pareil` binary is a
//! thin command line over it; the library never parses arguments or prints.
//!
//! ```
//! use pareil::engine::{Engine, IngestOptions, Input, NoProgress, Query, SimilarOptions};
//! use pareil::model::Embedder;
//!
//! # fn main() -> pareil::Result<()> {
//! // The model `pareil model fetch` installed (in the user's cache).
//! let dir = pareil::provision::locate(None, pareil::model::DEFAULT_MODEL_ID,
//!                                     &pareil::provision::default_models_dir())?;
//! # let tmp = tempfile::tempdir().unwrap();
//! # let db = tmp.path().join("pareil.db");
//! let mut engine = Engine::create(&db, Embedder::load(&dir)?)?;
//! let report = engine.ingest(vec![Input::Path("seeds".into())], &IngestOptions::default(),
//!                            &mut NoProgress)?;
//! assert_eq!(report.documents_written, 5);
//! let query = Query::Text("Qui a fondé OpenAI ?".into());
//! let found = engine.similar(&query, &SimilarOptions { k: 3, ..Default::default() })?;
//! for hit in &found.results {
//!     println!("{:.3} {}:{} {}", hit.score, hit.path, hit.line_start, hit.snippet);
//! }
//! assert_eq!(found.results.len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! Module map (dependencies run downwards only): [`engine`] → [`dedup`],
//! [`store`], [`model`], [`corpus`] → `kernels` (SIMD, private); [`provision`]
//! installs models and is used by the CLI.

pub mod allocator;
pub mod corpus;
pub mod dedup;
pub mod engine;
pub mod error;
mod kernels;
pub mod model;
pub mod provision;
pub mod server;
pub mod store;
#[cfg(test)]
pub(crate) mod test_support;

pub use engine::Engine;
pub use error::{Error, Result};
#[doc(hidden)]
pub use kernels::bench;
