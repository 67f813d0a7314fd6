//! The BERT-family encoder (`model_type` `bert` and `xlm-roberta`), mirroring
//! Hugging Face's `BertModel` block by block — embeddings, then layers of
//! self-attention and feed-forward, each post-layer-norm with exact GELU —
//! with one loader per block, in the style of candle's `bert.rs`.
//!
//! It runs over *packed* sequences: the linear layers see only real tokens
//! (`[total_tokens, hidden]`, no padding rows) and attention is computed per
//! sequence, so no attention mask is needed and results do not depend on
//! which texts share a batch. XLM-RoBERTa differs only in data the config
//! gives ([`ModelConfig::position_offset`], the weight prefix), as in Text
//! Embeddings Inference, so both share this code.
//!
//! Each block also has a `forward_team` form for short inputs (a query),
//! where every product splits by columns anyway: the whole stack of layers
//! then runs as one [`team`] region over a [`Workspace`] of flat buffers,
//! with the same bits as the tensor path (tested per kernel), instead of
//! a rayon fork-join per operation — on a 2-thread Zen 3, 8 % less CPU per
//! query and about 5 % less time (alternated runs, BENCHMARKS.md).

use std::path::Path;

use candle_core::{Device, Tensor};

use super::weights::{map, Checkpoint, LayerNorm, Linear, WordEmbeddings};
use crate::error::{Error, Result};
use crate::kernels::attention;
use crate::kernels::gemm::{self, Activation};
use crate::kernels::int8::SharedRows;
use crate::kernels::team::{self, Shared, Team};
use crate::model::config::ModelConfig;
use crate::model::encoder::Encoder;
use crate::model::EncoderOptions;

/// Word, position and token-type embeddings, summed and normalised.
struct Embeddings {
    word: WordEmbeddings,
    positions: Tensor,
    /// Row 0 of the token-type table: every token is of type 0.
    token_type0: Tensor,
    norm: LayerNorm,
    /// The position id of each sequence's first token.
    position_offset: usize,
}

impl Embeddings {
    fn load(ck: &Checkpoint, config: &ModelConfig) -> Result<Self> {
        let h = config.hidden_size;
        let positions = ck.tensor(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let types = ck.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        Ok(Embeddings {
            word: ck.word_table("embeddings.word_embeddings.weight", config.vocab_size, h)?,
            positions,
            token_type0: Tensor::from_vec(types[..h].to_vec(), (1, h), &Device::Cpu)?,
            norm: ck.layer_norm("embeddings.LayerNorm", h, config.layer_norm_eps)?,
            position_offset: config.position_offset(),
        })
    }

    /// `[Σ lens, hidden]` input rows for the packed sequences.
    fn forward(&self, seqs: &[Vec<u32>], total: usize, h: usize) -> Result<Tensor> {
        let mut words = Vec::with_capacity(total * h);
        let mut pos_ids = Vec::with_capacity(total);
        let first = self.position_offset as u32;
        for s in seqs {
            self.word.gather(s, &mut words)?;
            pos_ids.extend(first..first + s.len() as u32);
        }
        let words = Tensor::from_vec(words, (total, h), &Device::Cpu)?;
        let pos_ids = Tensor::from_vec(pos_ids, total, &Device::Cpu)?;
        let pos = self.positions.index_select(&pos_ids, 0)?;
        Ok(self
            .norm
            .forward(&(words + pos)?.broadcast_add(&self.token_type0)?)?)
    }
}

/// Self-attention: fused QKV projection, packed attention, output
/// projection with the residual, layer norm.
struct Attention {
    /// Query, key and value projections fused into one `[hidden, 3 * hidden]` matmul.
    qkv: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    options: EncoderOptions,
}

impl Attention {
    fn load(
        ck: &Checkpoint,
        p: &str,
        config: &ModelConfig,
        options: EncoderOptions,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let qkv = ["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}"));
        Ok(Attention {
            qkv: ck.linear(&qkv.each_ref().map(String::as_str), h, h)?,
            output: ck.linear(&[&format!("{p}.attention.output.dense")], h, h)?,
            norm: ck.layer_norm(
                &format!("{p}.attention.output.LayerNorm"),
                h,
                config.layer_norm_eps,
            )?,
            heads: config.num_attention_heads,
            options,
        })
    }

    /// [`forward`](Self::forward) run by a team, from `ws.hidden` to `ws.mid`.
    ///
    /// # Safety
    /// Every thread of `team` calls this together with the same arguments.
    unsafe fn forward_team(&self, team: &Team, ws: &Workspace, lens: &[usize]) {
        let x = ws.hidden.all();
        ws.project(team, &self.qkv, x, Activation::None, None, &ws.qkv);
        let kernel = self.options.kernel;
        attention::attend_team(team, ws.qkv.all(), lens, self.heads, kernel, &ws.context);
        ws.project_add_norm(team, &self.output, &self.norm, ws.context.all(), x, &ws.mid);
    }

    fn forward(&self, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let ctx = attention::packed_attention(&qkv, lens, self.heads, self.options.kernel)?;
        Ok(self.norm.forward(&self.output.forward_residual(&ctx, x)?)?)
    }
}

/// Feed-forward: intermediate projection with GELU, output projection with
/// the residual, layer norm.
struct FeedForward {
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
}

impl FeedForward {
    fn load(ck: &Checkpoint, p: &str, config: &ModelConfig) -> Result<Self> {
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        Ok(FeedForward {
            intermediate: ck.linear(&[&format!("{p}.intermediate.dense")], ff, h)?,
            output: ck.linear(&[&format!("{p}.output.dense")], h, ff)?,
            norm: ck.layer_norm(&format!("{p}.output.LayerNorm"), h, config.layer_norm_eps)?,
        })
    }

    /// [`forward`](Self::forward) run by a team, from `ws.mid` to `ws.hidden`.
    ///
    /// # Safety
    /// Every thread of `team` calls this together with the same arguments.
    unsafe fn forward_team(&self, team: &Team, ws: &Workspace) {
        let x = ws.mid.all();
        ws.project(
            team,
            &self.intermediate,
            x,
            Activation::Gelu,
            None,
            &ws.inter,
        );
        ws.project_add_norm(
            team,
            &self.output,
            &self.norm,
            ws.inter.all(),
            x,
            &ws.hidden,
        );
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inter = self.intermediate.forward_gelu(x)?;
        Ok(self
            .norm
            .forward(&self.output.forward_residual(&inter, x)?)?)
    }
}

/// One transformer layer, `encoder.layer.{N}`.
struct Layer {
    attention: Attention,
    feed_forward: FeedForward,
}

impl Layer {
    fn load(
        ck: &Checkpoint,
        n: usize,
        config: &ModelConfig,
        options: EncoderOptions,
    ) -> Result<Self> {
        let p = format!("encoder.layer.{n}");
        Ok(Layer {
            attention: Attention::load(ck, &p, config, options)?,
            feed_forward: FeedForward::load(ck, &p, config)?,
        })
    }

    fn forward(&self, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        self.feed_forward.forward(&self.attention.forward(x, lens)?)
    }

    /// [`forward`](Self::forward) run by a team on `ws.hidden`, in place.
    ///
    /// # Safety
    /// Every thread of `team` calls this together with the same arguments.
    unsafe fn forward_team(&self, team: &Team, ws: &Workspace, lens: &[usize]) {
        self.attention.forward_team(team, ws, lens);
        self.feed_forward.forward_team(team, ws);
    }
}

/// What a forward pass run by a [`team`] writes and reads, one buffer per
/// intermediate result, reused by every layer.
struct Workspace {
    rows: usize,
    /// The layers' input and output, `[rows, hidden]`.
    hidden: Shared<f32>,
    qkv: Shared<f32>,
    context: Shared<f32>,
    /// A projection plus its residual, before the layer norm.
    sum: Shared<f32>,
    /// The attention block's output, the feed-forward block's input.
    mid: Shared<f32>,
    inter: Shared<f32>,
    /// Each product's input rows, quantised (int8 weights).
    quantized: SharedRows,
}

impl Workspace {
    /// `act(input · Wᵀ + b) + residual` into `out`, by the team.
    ///
    /// # Safety
    /// Every thread of `team` calls this together with the same arguments;
    /// `out` is neither `input`'s buffer nor `residual`'s.
    unsafe fn project(
        &self,
        team: &Team,
        linear: &Linear,
        input: &[f32],
        act: Activation,
        residual: Option<&[f32]>,
        out: &Shared<f32>,
    ) {
        let rows = &self.quantized;
        linear
            .packed()
            .forward_team(team, input, self.rows, act, residual, rows, out)
    }

    /// `norm(input · Wᵀ + b + residual)` into `out`, through `sum`: the
    /// last two steps of either block.
    ///
    /// # Safety
    /// As [`project`](Self::project); neither `input` nor `residual` is `sum`.
    unsafe fn project_add_norm(
        &self,
        team: &Team,
        linear: &Linear,
        norm: &LayerNorm,
        input: &[f32],
        residual: &[f32],
        out: &Shared<f32>,
    ) {
        self.project(
            team,
            linear,
            input,
            Activation::None,
            Some(residual),
            &self.sum,
        );
        norm.forward_team(team, self.sum.all(), out);
    }

    fn new(hidden: Vec<f32>, config: &ModelConfig) -> Self {
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        let rows = hidden.len() / h;
        Workspace {
            rows,
            hidden: Shared::from_vec(hidden),
            qkv: Shared::new(rows * 3 * h),
            context: Shared::new(rows * h),
            sum: Shared::new(rows * h),
            mid: Shared::new(rows * h),
            inter: Shared::new(rows * ff),
            quantized: SharedRows::new(rows, h.max(ff)),
        }
    }
}

/// The encoder: embeddings and `num_hidden_layers` layers.
pub struct BertEncoder {
    config: ModelConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    options: EncoderOptions,
}

impl BertEncoder {
    /// Loads `model.safetensors` (memory-mapped) for `config`.
    pub fn load(weights: &Path, config: &ModelConfig, options: EncoderOptions) -> Result<Self> {
        let mmap = map(weights)?;
        let prefixes = config.architecture().weight_prefixes();
        let ck = Checkpoint::open(weights, &mmap, prefixes, options)?;
        let encoder = BertEncoder {
            config: config.clone(),
            embeddings: Embeddings::load(&ck, config)?,
            layers: (0..config.num_hidden_layers)
                .map(|n| Layer::load(&ck, n, config, options))
                .collect::<Result<_>>()?,
            options,
        };
        ck.finish();
        Ok(encoder)
    }
}

impl Encoder for BertEncoder {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn options(&self) -> EncoderOptions {
        self.options
    }

    fn max_tokens(&self) -> usize {
        self.config.max_tokens()
    }

    fn forward(&self, seqs: &[Vec<u32>]) -> Result<Vec<f32>> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let max = self.max_tokens();
        if let Some(&bad) = lens.iter().find(|&&l| l == 0 || l > max) {
            return Err(Error::Usage(format!(
                "sequence of {bad} tokens: must be 1..={max}"
            )));
        }
        let total: usize = lens.iter().sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        let mut x = self
            .embeddings
            .forward(seqs, total, self.config.hidden_size)?;
        if gemm::splits_by_columns(total) {
            let ws = Workspace::new(x.flatten_all()?.to_vec1::<f32>()?, &self.config);
            let ran = team::run(|team| {
                for layer in &self.layers {
                    // SAFETY: `team::run` calls this on every thread of the team.
                    unsafe { layer.forward_team(team, &ws, &lens) };
                }
            });
            if ran {
                return Ok(ws.hidden.into_vec());
            }
        }
        for layer in &self.layers {
            x = layer.forward(&x, &lens)?;
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }
}
