//! Tests that need the real model (`util::model_dir`).

mod compat;
mod dups;
mod golden;
mod ingest;
mod postgres;
mod regressions;
