//! The model's `config.json`, with the Hugging Face field names, and the
//! sentence-embedding conventions pareil applies on top of it.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};

/// The default model: small, multilingual, 384 dimensions.
pub const DEFAULT_MODEL_ID: &str = "intfloat/multilingual-e5-small";

/// The subset of a Hugging Face `BertConfig` that the encoder needs.
/// Field names are exactly those of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub model_type: Option<String>,
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!("not a BERT config.json: {e}"),
            fix: "re-run `pareil model fetch`".into(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason,
            fix:
                "pareil runs BertModel encoders (model_type \"bert\"); re-run `pareil model fetch`"
                    .into(),
        };
        if let Some(t) = &self.model_type {
            if t != "bert" {
                return Err(bad(format!("model_type is {t:?}, expected \"bert\"")));
            }
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(bad(format!(
                "hidden_act {:?} is not supported (expected exact \"gelu\")",
                self.hidden_act
            )));
        }
        Ok(())
    }

    /// The configuration of multilingual-e5-small (also what the PyPI import writes).
    pub fn multilingual_e5_small() -> Self {
        BertConfig {
            vocab_size: 250037,
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            model_type: Some("bert".into()),
        }
    }
}

/// Which side of an asymmetric retrieval task a text is on: E5 models are
/// trained with these prefixes and lose quality without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Query,
    Passage,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Query => "query: ",
            Role::Passage => "passage: ",
        }
    }
}

/// Pooling recorded in the store and the manifest: mean over the attention mask, then L2.
pub const POOLING: &str = "mean+l2";
