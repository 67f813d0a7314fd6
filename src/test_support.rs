//! Test support shared by the library's unit tests: one deterministic RNG,
//! one `NewDocument` builder (with the production normaliser, not a
//! stand-in), unit vectors, and the store metadata tests use. Compiled only
//! for tests.

use std::collections::HashSet;

use crate::store::{sha256_hex, NewChunk, NewDocument, NewPassage, StoreMeta};

/// xorshift64: deterministic, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-0.5, 0.5).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// A random unit vector.
    pub fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        unit((0..dim).map(|_| self.next_f32()).collect())
    }
}

/// `v` scaled to length 1.
pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Store metadata of a made-up model with `dim` dimensions.
pub fn meta(dim: usize) -> StoreMeta {
    StoreMeta {
        model_id: "test/model".into(),
        revision: "r1".into(),
        dim,
        pooling: "mean".into(),
        passage_prefix: "passage: ".into(),
        query_prefix: "query: ".into(),
    }
}

/// The embedding key tests use for a passage text.
pub fn key_of(text: &str) -> String {
    sha256_hex(format!("passage: {text}").as_bytes())
}

/// A deterministic unit vector for a text, so tests can check what was stored.
pub fn vector_for(text: &str, dim: usize) -> Vec<f32> {
    let seed = u64::from_le_bytes(
        sha256_hex(text.as_bytes()).as_bytes()[..8]
            .try_into()
            .unwrap(),
    );
    Rng::new(seed).unit_vector(dim)
}

/// A document with one passage (and one chunk) per text, one line each with
/// a blank line between, carrying `vector(text)` for every chunk whose key
/// is not in `cached`.
pub fn document(
    path: &str,
    texts: &[&str],
    cached: &HashSet<String>,
    vector: impl Fn(&str) -> Vec<f32>,
) -> NewDocument {
    let mut doc = NewDocument {
        path: path.into(),
        content_hash: sha256_hex(texts.join("\n\n").as_bytes()),
        size: texts.iter().map(|t| t.len() as u64 + 2).sum(),
        mtime: Some(1_700_000_000),
        date: None,
        ..Default::default()
    };
    let mut offset = 0;
    for (i, t) in texts.iter().enumerate() {
        let key = key_of(t);
        if !cached.contains(&key) {
            doc.embeddings.insert(key.clone(), vector(t));
        }
        doc.passages.push(NewPassage {
            line_start: 2 * i + 1,
            line_end: 2 * i + 1,
            byte_start: offset,
            byte_end: offset + t.len(),
            text: t.to_string(),
            norm: crate::corpus::normalize(t),
            traits: Some(crate::engine::passage_traits(
                t,
                &crate::corpus::normalize(t),
            )),
            chunks: vec![NewChunk {
                byte_start: 0,
                byte_end: t.len(),
                tokens: t.split_whitespace().count(),
                emb_key: key,
            }],
            duplicate_of: None,
        });
        offset += t.len() + 2;
    }
    doc
}

/// Property-test settings: `cases` cases (the `PROPTEST_CASES` environment
/// variable overrides, for a longer hunt) and no regression files written
/// into the source tree: a failure prints its shrunk input, which becomes a
/// named unit test next to the fix.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Whether two vectors agree within what a compact store keeps: f16 holds
/// a unit vector's components to within 2.5e-4.
pub fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3)
}
