//! The integration tests, in one test binary (ripgrep's `tests/tests.rs`
//! layout: one link step, shared helpers in [`util`]).
//!
//! Two tiers:
//! - `tiny_model::` and `wiring::` run on tiny BERT / XLM-R models the tests
//!   build themselves: the encoder against a naive reference, and the real
//!   `pareil` binary end to end. No download, a few seconds.
//! - `real_model::` needs the installed multilingual-e5-small (`bash
//!   scripts/test.sh` installs it first): golden vectors against
//!   sentence-transformers, the seeds end to end, format compatibility and
//!   regressions. Run one tier with `cargo test --test tests wiring` or
//!   `cargo test --test tests real_model`.

mod inputs;
mod real_model;
mod server;
mod tiny_model;
mod util;
mod wiring;
