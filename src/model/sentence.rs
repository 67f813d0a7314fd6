//! The sentence-embedding layer on top of the encoder, read as data from the
//! model directory the way sentence-transformers reads it: the prompts
//! (`config_sentence_transformers.json`), the pooling (`1_Pooling/config.json`)
//! and the normalisation (a `Normalize` module in `modules.json`).
//!
//! Directories without these files — installs made before pareil wrote
//! them, or a bare Hugging Face checkpoint — get multilingual-e5's
//! conventions: `query: `/`passage: ` prompts, mean pooling, L2.

use std::path::Path;

use serde::Deserialize;

use super::config::Role;
use crate::error::{Error, Result};

/// The prompts multilingual-e5 was trained with; E5 models lose quality without them.
pub const E5_PROMPTS: [(&str, &str); 2] = [("query", "query: "), ("passage", "passage: ")];

/// What is prepended to a text before tokenising it, per [`Role`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    pub query: String,
    pub passage: String,
}

impl Prompts {
    /// multilingual-e5's `query: ` / `passage: `.
    pub fn e5() -> Self {
        Prompts {
            query: E5_PROMPTS[0].1.into(),
            passage: E5_PROMPTS[1].1.into(),
        }
    }

    pub fn get(&self, role: Role) -> &str {
        match role {
            Role::Query => &self.query,
            Role::Passage => &self.passage,
        }
    }

    /// `config_sentence_transformers.json`'s `prompts`. A missing file or a
    /// file without `prompts` means multilingual-e5's; a `prompts` object
    /// gives each role its entry (`passage` falls back to `document`), or
    /// no prompt when it has none.
    pub fn read(dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            prompts: Option<std::collections::BTreeMap<String, String>>,
        }
        let path = dir.join("config_sentence_transformers.json");
        let Some(file) = read_json::<File>(&path)? else {
            return Ok(Prompts::e5());
        };
        let Some(prompts) = file.prompts else {
            return Ok(Prompts::e5());
        };
        let entry = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| prompts.get(*n).cloned())
                .unwrap_or_default()
        };
        Ok(Prompts {
            query: entry(&["query"]),
            passage: entry(&["passage", "document"]),
        })
    }
}

/// How the token vectors of a sequence become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Mean over every token, `<s>` and `</s>` included.
    Mean,
    /// The first token's (`<s>`/`[CLS]`) vector.
    Cls,
}

/// Pooling followed, or not, by L2 normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    pub pool: Pool,
    pub normalize: bool,
}

impl Pooling {
    /// multilingual-e5's: mean, then L2.
    pub const E5: Pooling = Pooling {
        pool: Pool::Mean,
        normalize: true,
    };

    /// The name recorded in stores and manifests: `mean+l2` (multilingual-e5,
    /// the string stores have always held), `cls+l2`, `mean`, `cls`.
    pub fn name(&self) -> String {
        let pool = match self.pool {
            Pool::Mean => "mean",
            Pool::Cls => "cls",
        };
        if self.normalize {
            format!("{pool}+l2")
        } else {
            pool.into()
        }
    }

    /// Reads the pooling from `modules.json` and the pooling module's
    /// `config.json`; returns it with the `word_embedding_dimension` that
    /// config states, if any (for the caller to check against the encoder).
    pub fn read(dir: &Path) -> Result<(Self, Option<usize>)> {
        #[derive(Deserialize)]
        struct Module {
            #[serde(default)]
            path: String,
            #[serde(rename = "type", default)]
            kind: String,
        }
        let modules = read_json::<Vec<Module>>(&dir.join("modules.json"))?;
        let (pool_dir, normalize) = match &modules {
            None => ("1_Pooling".to_string(), true),
            Some(modules) => (
                modules
                    .iter()
                    .find(|m| m.kind.ends_with("Pooling"))
                    .map(|m| m.path.clone())
                    .unwrap_or_else(|| "1_Pooling".into()),
                modules.iter().any(|m| m.kind.ends_with("Normalize")),
            ),
        };
        let path = dir.join(pool_dir).join("config.json");
        let Some(config) = read_json::<PoolingConfig>(&path)? else {
            return Ok((
                Pooling {
                    pool: Pool::Mean,
                    normalize,
                },
                None,
            ));
        };
        let pool = config.pool().map_err(|reason| Error::ModelCorrupt {
            path: path.clone(),
            reason,
            fix: "pareil pools by mean or CLS token; set one of pooling_mode_mean_tokens / pooling_mode_cls_token".into(),
        })?;
        Ok((Pooling { pool, normalize }, config.word_embedding_dimension))
    }

    /// Pools `hidden` (`[Σ lens, dim]` row-major, sequences one after the
    /// other) into one vector per sequence.
    pub fn apply(&self, hidden: &[f32], lens: &[usize], dim: usize) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(lens.len());
        let mut offset = 0;
        for &len in lens {
            let rows = &hidden[offset * dim..(offset + len) * dim];
            offset += len;
            let mut v = vec![0f32; dim];
            match self.pool {
                Pool::Cls => v.copy_from_slice(&rows[..dim]),
                // Summed, then scaled once: by the L2 norm (the mean's 1/len
                // cancels out) or by 1/len.
                Pool::Mean => {
                    for row in rows.chunks_exact(dim) {
                        for (a, b) in v.iter_mut().zip(row) {
                            *a += b;
                        }
                    }
                    if !self.normalize {
                        v.iter_mut().for_each(|a| *a /= len as f32);
                    }
                }
            }
            if self.normalize {
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
            }
            out.push(v);
        }
        out
    }
}

/// sentence-transformers' `1_Pooling/config.json`.
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl PoolingConfig {
    fn pool(&self) -> std::result::Result<Pool, String> {
        let modes = [
            (self.pooling_mode_mean_tokens, "mean_tokens"),
            (self.pooling_mode_cls_token, "cls_token"),
            (self.pooling_mode_max_tokens, "max_tokens"),
            (
                self.pooling_mode_mean_sqrt_len_tokens,
                "mean_sqrt_len_tokens",
            ),
        ];
        let on: Vec<&str> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
        match on.as_slice() {
            ["mean_tokens"] => Ok(Pool::Mean),
            ["cls_token"] => Ok(Pool::Cls),
            [] => Err("no pooling mode is enabled".into()),
            modes => Err(format!(
                "pooling mode {} is not supported",
                modes.join(" + ")
            )),
        }
    }
}

/// A JSON file of the model directory, `None` when it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!("not valid sentence-transformers JSON: {e}"),
            fix: "fix or delete the file (pareil then uses multilingual-e5's defaults)".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, value: serde_json::Value) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value.to_string()).unwrap();
    }

    #[test]
    fn absent_files_give_multilingual_e5_conventions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Prompts::read(dir.path()).unwrap(), Prompts::e5());
        let (pooling, dim) = Pooling::read(dir.path()).unwrap();
        assert_eq!((pooling, dim), (Pooling::E5, None));
        assert_eq!(pooling.name(), "mean+l2");
        // A config without `prompts` (as older sentence-transformers wrote) too.
        write(
            dir.path(),
            "config_sentence_transformers.json",
            serde_json::json!({"__version__": {}}),
        );
        assert_eq!(Prompts::read(dir.path()).unwrap(), Prompts::e5());
    }

    #[test]
    fn files_set_prompts_pooling_and_normalisation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "config_sentence_transformers.json",
            serde_json::json!({"prompts": {"query": "Q: "}}),
        );
        let p = Prompts::read(d).unwrap();
        assert_eq!((p.get(Role::Query), p.get(Role::Passage)), ("Q: ", ""));
        write(
            d,
            "modules.json",
            serde_json::json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}
            ]),
        );
        write(
            d,
            "pool/config.json",
            serde_json::json!({"word_embedding_dimension": 8, "pooling_mode_cls_token": true}),
        );
        let (pooling, dim) = Pooling::read(d).unwrap();
        assert_eq!(
            (pooling.pool, pooling.normalize, dim),
            (Pool::Cls, false, Some(8))
        );
        assert_eq!(pooling.name(), "cls");
        write(
            d,
            "pool/config.json",
            serde_json::json!({"pooling_mode_max_tokens": true}),
        );
        let err = Pooling::read(d).unwrap_err();
        assert!(err.to_string().contains("max_tokens"), "{err}");
    }

    #[test]
    fn pooling_of_packed_rows() {
        let hidden = [1.0, 0.0, 3.0, 4.0, /* second sequence */ 0.0, 2.0];
        let mean = Pooling {
            pool: Pool::Mean,
            normalize: false,
        };
        assert_eq!(
            mean.apply(&hidden, &[2, 1], 2),
            vec![vec![2.0, 2.0], vec![0.0, 2.0]]
        );
        let cls = Pooling {
            pool: Pool::Cls,
            normalize: true,
        };
        assert_eq!(
            cls.apply(&hidden, &[2, 1], 2),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        let e5 = Pooling::E5.apply(&hidden, &[2], 2);
        assert!((e5[0][0] - 0.70710677).abs() < 1e-6 && (e5[0][1] - 0.70710677).abs() < 1e-6);
    }
}
