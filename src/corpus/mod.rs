//! The corpus layer: everything between a path on disk and the passages that
//! get embedded and compared. It owns file discovery, decoding (BOM, UTF-8,
//! binary detection, CRLF), splitting a document into passages with exact line
//! numbers, text normalisation for hashing and lexical dedup, sentence
//! segmentation, and token-budgeted windows over long passages.
//!
//! Everything here is pure Rust with no model or store dependency, so it can be
//! tested in isolation. Positions are always byte offsets into a `&str` (always
//! on `char` boundaries) and line numbers are 1-based.

pub mod discover;
pub mod hash;
pub mod language;
pub mod normalize;
pub mod paths;
pub mod read;
pub mod sentence;
pub mod split;
pub mod window;

pub use discover::{discover, doc_glob};
pub use hash::{content_hash, normalized_hash, text_hash};
pub use language::{document_language, guess_language, known_language};
pub use normalize::{fold_accents, normalize, words};
pub use paths::{path_of_stored, stored_name};
pub use read::read_text;
pub use sentence::sentences;
pub use split::{split_passages, Passage, Split};
pub use window::{fits_in, windows};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod seed_tests;
