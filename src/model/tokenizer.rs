//! The model's `tokenizer.json` through the `tokenizers` crate, with the two
//! settings that file leaves out: truncation at the model's token limit
//! (512 for multilingual-e5, `ModelConfig::max_tokens`; reported, never silent) and no padding (the encoder packs sequences).

use std::path::Path;

use tokenizers::Tokenizer;

use super::unigram;

use crate::error::{Error, Result};

/// Token ids of one text, as the encoder will see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    /// How many tokens were cut to fit the model's window (0 when it fits).
    pub truncated: usize,
}

pub struct TextTokenizer {
    inner: Inner,
    eos_id: u32,
    max_tokens: usize,
}

/// XLM-R-style SentencePiece files load through [`unigram`] (tens of
/// milliseconds); any other `tokenizer.json` through the crate's loader.
enum Inner {
    Unigram(Box<unigram::UnigramTokenizer>),
    Crate(Box<Tokenizer>),
}

impl TextTokenizer {
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self> {
        let corrupt = |reason: String| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason,
            fix: "re-run `pareil model fetch`".into(),
        };
        let bytes = std::fs::read(path).map_err(|e| corrupt(format!("cannot be read: {e}")))?;
        let inner = match unigram::load(&bytes) {
            Some(fast) => Inner::Unigram(Box::new(fast)),
            None => {
                let mut inner = Tokenizer::from_bytes(&bytes)
                    .map_err(|e| corrupt(format!("not a readable tokenizer.json: {e}")))?;
                inner
                    .with_truncation(None)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                inner.with_padding(None);
                Inner::Crate(Box::new(inner))
            }
        };
        let eos_id = match &inner {
            Inner::Unigram(t) => t.token_to_id("</s>"),
            Inner::Crate(t) => t.token_to_id("</s>"),
        }
        .ok_or_else(|| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: "no </s> token: not an XLM-R SentencePiece tokenizer".into(),
            fix: "use the tokenizer.json of the model (re-run `pareil model fetch`)".into(),
        })?;
        Ok(TextTokenizer {
            inner,
            eos_id,
            max_tokens,
        })
    }

    /// Tokenises `prompt + text` with `<s>`/`</s>`; an over-long input
    /// keeps its first `max_tokens - 1` tokens plus `</s>`, as Hugging Face's
    /// truncation does, and reports how many were dropped.
    pub fn tokenize(&self, text: &str, prompt: &str) -> Result<Tokenized> {
        let input = format!("{prompt}{text}");
        let enc = match &self.inner {
            Inner::Unigram(t) => t.encode(input.as_str(), true),
            Inner::Crate(t) => t.encode(input.as_str(), true),
        }
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        let mut truncated = 0;
        if ids.len() > self.max_tokens {
            truncated = ids.len() - self.max_tokens;
            ids.truncate(self.max_tokens - 1);
            ids.push(self.eos_id);
        }
        Ok(Tokenized { ids, truncated })
    }

    /// Tokens of a text (special tokens and prompt included, before truncation).
    pub fn count(&self, text: &str, prompt: &str) -> Result<usize> {
        let t = self.tokenize(text, prompt)?;
        Ok(t.ids.len() + t.truncated)
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}
