//! The model's `config.json`, with the Hugging Face field names, keyed on
//! `model_type` as Text Embeddings Inference does: the encoder families
//! pareil runs ([`Architecture`]), and what each one derives from the
//! config (position offset, token limit, weight-name prefixes).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};

/// The default model: small, multilingual, 384 dimensions.
pub const DEFAULT_MODEL_ID: &str = "intfloat/multilingual-e5-small";

/// The encoder families pareil runs, by `config.json`'s `model_type`. Both
/// are post-layer-norm BERT blocks with exact GELU; XLM-RoBERTa numbers
/// positions from `pad_token_id + 1` (as fairseq did) and saves its weights
/// under `roberta.` instead of `bert.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `model_type: "bert"` (multilingual-e5-small is one): positions from 0.
    Bert,
    /// `model_type: "xlm-roberta"`: positions from `pad_token_id + 1`.
    XlmRoberta,
}

impl Architecture {
    /// The `model_type` values pareil accepts, for error messages.
    pub const SUPPORTED: &'static str = "\"bert\", \"xlm-roberta\"";

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Architecture::Bert),
            "xlm-roberta" => Some(Architecture::XlmRoberta),
            _ => None,
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "xlm-roberta",
        }
    }

    /// Prefixes a checkpoint's tensor names may carry, tried in order
    /// (`BertForX` saves under `bert.`, `BertModel` under none).
    pub fn weight_prefixes(self) -> &'static [&'static str] {
        match self {
            Architecture::Bert => &["bert.", ""],
            Architecture::XlmRoberta => &["roberta.", "xlm-roberta.", ""],
        }
    }

    /// `pad_token_id` when `config.json` does not say (the transformers defaults).
    fn default_pad_token_id(self) -> usize {
        match self {
            Architecture::Bert => 0,
            Architecture::XlmRoberta => 1,
        }
    }
}

/// The subset of a Hugging Face config that the encoder needs. Field names
/// are exactly those of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(default = "bert_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<usize>,
}

fn bert_model_type() -> String {
    "bert".into()
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: ModelConfig = serde_json::from_str(&text).map_err(|e| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!("not an encoder config.json: {e}"),
            fix: "re-run `pareil model fetch`".into(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| {
            Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason,
            fix: format!(
                "pareil runs encoders with model_type {}; use such a model or re-run `pareil model fetch`",
                Architecture::SUPPORTED
            ),
        }
        };
        if Architecture::from_model_type(&self.model_type).is_none() {
            return Err(bad(format!(
                "model_type {:?} is not supported (supported: {})",
                self.model_type,
                Architecture::SUPPORTED
            )));
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
        if self.type_vocab_size == 0 || self.max_tokens() < 2 {
            return Err(bad(format!(
                "type_vocab_size {} / max_position_embeddings {} leave no room for a sequence",
                self.type_vocab_size, self.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// The encoder family; [`from_file`](Self::from_file) has checked it.
    pub fn architecture(&self) -> Architecture {
        Architecture::from_model_type(&self.model_type).unwrap_or(Architecture::Bert)
    }

    /// The padding token id, with the family's default when absent.
    pub fn pad_token_id(&self) -> usize {
        self.pad_token_id
            .unwrap_or_else(|| self.architecture().default_pad_token_id())
    }

    /// The position id of a sequence's first token: 0 for BERT,
    /// `pad_token_id + 1` for XLM-RoBERTa.
    pub fn position_offset(&self) -> usize {
        match self.architecture() {
            Architecture::Bert => 0,
            // Saturating: a corrupt pad_token_id of usize::MAX must give no
            // room for positions (refused by `validate`), not wrap to 0.
            Architecture::XlmRoberta => self.pad_token_id().saturating_add(1),
        }
    }

    /// The longest sequence (special tokens included) the position table
    /// holds: `max_position_embeddings` for BERT, `max_position_embeddings − 2`
    /// for XLM-RoBERTa (its usual `pad_token_id` of 1 plus one).
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    /// The configuration of multilingual-e5-small (also what the PyPI import writes).
    pub fn multilingual_e5_small() -> Self {
        ModelConfig {
            model_type: "bert".into(),
            vocab_size: 250037,
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
        }
    }
}

/// Which side of an asymmetric retrieval task a text is on; the prompt each
/// side gets is the model's ([`Prompts`](super::sentence::Prompts)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Query,
    Passage,
}

impl Role {
    /// The prompt name in `config_sentence_transformers.json`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Query => "query",
            Role::Passage => "passage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<ModelConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json.to_string()).unwrap();
        ModelConfig::from_file(&path)
    }

    fn base(model_type: &str) -> serde_json::Value {
        serde_json::json!({
            "model_type": model_type, "vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "hidden_act": "gelu", "max_position_embeddings": 20, "type_vocab_size": 1,
            "layer_norm_eps": 1e-5
        })
    }

    #[test]
    fn model_type_selects_positions_and_token_limit() {
        let bert = parse(base("bert")).unwrap();
        assert_eq!(bert.architecture(), Architecture::Bert);
        assert_eq!((bert.position_offset(), bert.max_tokens()), (0, 20));
        let xlmr = parse(base("xlm-roberta")).unwrap();
        assert_eq!(xlmr.architecture(), Architecture::XlmRoberta);
        // pad_token_id defaults to 1: positions from 2, two fewer tokens.
        assert_eq!((xlmr.position_offset(), xlmr.max_tokens()), (2, 18));
        let mut explicit = base("xlm-roberta");
        explicit["pad_token_id"] = 1.into();
        assert_eq!(parse(explicit).unwrap().max_tokens(), 18);
    }

    #[test]
    fn unknown_model_type_is_a_clear_corrupt_model_error() {
        let err = parse(base("gpt2")).unwrap_err();
        assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("gpt2") && msg.contains("xlm-roberta"), "{msg}");
    }

    #[test]
    fn e5_config_round_trips_with_the_same_json() {
        let json = serde_json::to_value(ModelConfig::multilingual_e5_small()).unwrap();
        assert_eq!(json["model_type"], "bert");
        assert_eq!(json["pad_token_id"], 0);
        assert_eq!(parse(json).unwrap(), ModelConfig::multilingual_e5_small());
    }

    /// A `pad_token_id` of `usize::MAX` (one of `config_json_invariants`'
    /// values; its offset check fails on it) overflowed `pad_token_id + 1`: a
    /// panic in debug builds and under the fuzzer, and in release an offset
    /// of 0 that accepted the config with XLM-R positions from row 0.
    #[test]
    fn huge_pad_token_id_is_refused_not_wrapped() {
        let mut json = base("xlm-roberta");
        json["pad_token_id"] = u64::MAX.into();
        let err = parse(json).unwrap_err();
        assert!(err.to_string().contains("no room"), "{err}");
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        use crate::test_support::proptest_config;

        /// A value for a numeric field: sensible, edge, or the wrong type.
        fn number() -> impl Strategy<Value = Option<Value>> {
            prop::option::weighted(
                0.95,
                prop::sample::select(vec![
                    json!(0),
                    json!(1),
                    json!(2),
                    json!(3),
                    json!(8),
                    json!(20),
                    json!(512),
                    json!(u64::MAX),
                    json!(u64::MAX - 1),
                    json!(-1),
                    json!(1.5),
                    json!("8"),
                    Value::Null,
                ]),
            )
        }

        fn config_json() -> impl Strategy<Value = Value> {
            let text = |v: Vec<Value>| prop::option::weighted(0.95, prop::sample::select(v));
            (
                text(vec![
                    json!("bert"),
                    json!("xlm-roberta"),
                    json!("gpt2"),
                    json!(5),
                    Value::Null,
                ]),
                prop::collection::vec(number(), 7),
                text(vec![json!("gelu"), json!("relu"), json!("gelu_new")]),
                text(vec![json!(1e-12), json!(0.0), json!(-1.0), json!("x")]),
                prop::option::of(prop::sample::select(vec![
                    json!(0),
                    json!(1),
                    json!(u64::MAX),
                    json!(u64::MAX - 1),
                    json!(-1),
                    Value::Null,
                ])),
            )
                .prop_map(|(model_type, numbers, act, eps, pad)| {
                    let mut o = serde_json::Map::new();
                    let names = [
                        "vocab_size",
                        "hidden_size",
                        "num_hidden_layers",
                        "num_attention_heads",
                        "intermediate_size",
                        "max_position_embeddings",
                        "type_vocab_size",
                    ];
                    for (name, v) in names.iter().zip(numbers) {
                        if let Some(v) = v {
                            o.insert(name.to_string(), v);
                        }
                    }
                    for (name, v) in [
                        ("model_type", model_type),
                        ("hidden_act", act),
                        ("layer_norm_eps", eps),
                        ("pad_token_id", pad),
                    ] {
                        if let Some(v) = v {
                            o.insert(name.to_string(), v);
                        }
                    }
                    Value::Object(o)
                })
        }

        /// What an accepted config promises to the encoder.
        fn check_accepted(c: &ModelConfig) -> std::result::Result<(), TestCaseError> {
            let arch = Architecture::from_model_type(&c.model_type);
            prop_assert!(arch.is_some());
            prop_assert!(
                c.num_attention_heads > 0 && c.hidden_size.is_multiple_of(c.num_attention_heads)
            );
            prop_assert!(c.type_vocab_size > 0 && c.max_tokens() >= 2);
            // Positions offset..offset + max_tokens are rows of the table.
            let (offset, max) = (c.position_offset() as u128, c.max_tokens() as u128);
            prop_assert!(offset + max <= c.max_position_embeddings as u128);
            if arch == Some(Architecture::XlmRoberta) {
                prop_assert_eq!(offset, c.pad_token_id() as u128 + 1);
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(proptest_config(256))]

            #[test]
            fn config_json_invariants(json in config_json()) {
                if let Ok(c) = parse(json) {
                    check_accepted(&c)?;
                }
            }

            /// Arbitrary bytes as config.json: an error, never a panic.
            #[test]
            fn config_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("config.json");
                std::fs::write(&path, &bytes).unwrap();
                if let Ok(c) = ModelConfig::from_file(&path) {
                    check_accepted(&c)?;
                }
            }
        }
    }
}
