//! pareil: local semantic similarity and duplicate detection over folders of
//! text, with a multilingual sentence-embedding model on CPU through candle.
//!
//! The library owns the engine; `src/main.rs` and [`cli`] only parse
//! arguments, call into it and print.

pub mod cli;
pub mod corpus;
pub mod dedup;
pub mod error;
pub mod ingest;
mod kernels;
pub mod model;
pub mod provision;
pub mod search;
pub mod store;

pub use error::{Error, Result};
#[doc(hidden)]
pub use kernels::bench;
