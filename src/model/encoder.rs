//! The [`Encoder`] seam: what the [`Embedder`](super::Embedder) needs from a
//! transformer (token ids in, last hidden states out), and [`load`], which
//! picks the implementation from `config.json`'s `model_type` — TEI's
//! switch. Pooling, prompts and normalisation are not the encoder's: they
//! are the model directory's sentence-transformers data ([`super::sentence`]).

use std::path::Path;

use super::bert::BertEncoder;
use super::config::{Architecture, ModelConfig};
use super::EncoderOptions;
use crate::error::Result;

/// A transformer encoder over packed sequences.
pub trait Encoder: Send + Sync {
    fn config(&self) -> &ModelConfig;

    fn options(&self) -> EncoderOptions;

    /// The longest sequence (special tokens included) one forward pass takes.
    fn max_tokens(&self) -> usize;

    /// The last hidden states of `seqs` (each 1..=[`max_tokens`](Self::max_tokens)
    /// ids), packed: `[Σ lens, hidden_size]` row-major, sequences in order.
    fn forward(&self, seqs: &[Vec<u32>]) -> Result<Vec<f32>>;
}

/// Loads `weights` with the encoder `config.model_type` names.
pub fn load(
    weights: &Path,
    config: &ModelConfig,
    options: EncoderOptions,
) -> Result<Box<dyn Encoder>> {
    Ok(match config.architecture() {
        // The BERT block serves both: XLM-RoBERTa's differences (position
        // offset, weight prefix) are read from the config.
        Architecture::Bert | Architecture::XlmRoberta => {
            Box::new(BertEncoder::load(weights, config, options)?)
        }
    })
}
