//! A BERT encoder on candle tensors, mirroring Hugging Face's `BertModel`
//! (weight names as in `model.safetensors`, positions from 0, exact GELU,
//! post-layer-norm), run over *packed* sequences: the linear layers see only
//! real tokens (`[total_tokens, hidden]`, no padding rows) and attention is
//! computed per sequence, so no attention mask is needed and results do not
//! depend on which texts share a batch.

use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::kernels::attention;
use crate::kernels::gemm::{Activation, PackedLinear};
use crate::model::config::BertConfig;
use crate::model::EncoderOptions;

/// A linear layer whose weights are packed for `kernels::gemm`'s kernels at load.
struct Linear(PackedLinear);

impl Linear {
    /// `x · Wᵀ + b`, bias added in the product's epilogue.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(&LinearOp(&self.0, Activation::None))
    }

    /// `gelu(x · Wᵀ + b)`, bias and activation in the product's epilogue.
    fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(&LinearOp(&self.0, Activation::Gelu))
    }

    /// `x · Wᵀ + b + residual`, the residual added in the epilogue too.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op2_no_bwd(
            &residual.contiguous()?,
            &LinearOp(&self.0, Activation::None),
        )
    }
}

/// [`PackedLinear::forward`] as a candle op, reading and producing tensor storage in place.
struct LinearOp<'a>(&'a PackedLinear, Activation);

impl LinearOp<'_> {
    fn run(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed linear: f32 input only");
        };
        let (m, k) = layout.shape().dims2()?;
        if k != self.0.in_features() {
            candle_core::bail!(
                "packed linear: input has {k} features, weights {}",
                self.0.in_features()
            );
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed linear: contiguous input only");
        };
        let n = self.0.out_features();
        if residual.is_some_and(|r| r.len() != m * n) {
            candle_core::bail!("packed linear: residual is not [{m}, {n}]");
        }
        let out = self.0.forward(&data[start..end], m, self.1, residual);
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "pareil-packed-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(storage, layout, None)
    }
}

impl CustomOp2 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "pareil-packed-linear-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(res), Some((start, end))) = (s2, l2.contiguous_offsets()) else {
            candle_core::bail!("packed linear: contiguous f32 residual only");
        };
        self.run(s1, l1, Some(&res[start..end]))
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    /// Query, key and value projections fused into one `[hidden, 3 * hidden]` matmul.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// The word-embedding table stays in the memory-mapped file: it is 96 % of
/// the weights and a batch only needs a few hundred of its 250k rows, so start-up
/// does not copy it.
struct WordEmbeddings {
    mmap: memmap2::Mmap,
    offset: usize,
    dtype: StDtype,
    rows: usize,
    hidden: usize,
}

impl WordEmbeddings {
    fn gather(&self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        let elt = self.dtype.bitsize() / 8;
        let row_bytes = self.hidden * elt;
        for &id in ids {
            let id = id as usize;
            if id >= self.rows {
                return Err(Error::Tokenizer(format!(
                    "token id {id} is outside the embedding table ({} rows): tokenizer.json does not match the weights",
                    self.rows
                )));
            }
            let start = self.offset + id * row_bytes;
            let raw = &self.mmap[start..start + row_bytes];
            match self.dtype {
                StDtype::F32 => out.extend(
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
                ),
                StDtype::F16 => out.extend(
                    raw.chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
                ),
                StDtype::BF16 => out.extend(
                    raw.chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
                ),
                _ => unreachable!("checked at load"),
            }
        }
        Ok(())
    }
}

/// The encoder: embeddings, `num_hidden_layers` transformer layers, mean pooling.
pub struct BertEncoder {
    config: BertConfig,
    word: WordEmbeddings,
    positions: Tensor,
    token_type0: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    device: Device,
    options: EncoderOptions,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::ModelCorrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
        fix: "delete the model directory and re-run `pareil model fetch`".into(),
    }
}

fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    Some(match view.dtype() {
        StDtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        StDtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StDtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

impl BertEncoder {
    /// Loads `model.safetensors` (memory-mapped) for `config`.
    pub fn load(weights: &Path, config: &BertConfig, options: EncoderOptions) -> Result<Self> {
        let file = std::fs::File::open(weights).map_err(|e| Error::io(weights, e))?;
        // SAFETY: the file is opened read-only and pareil never writes model
        // files in place (provisioning writes a new directory and renames it).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(weights, e))?;
        let st = SafeTensors::deserialize(&mmap)
            .map_err(|e| corrupt(weights, format!("not a readable safetensors file: {e}")))?;
        // Checkpoints saved from BertForX carry a "bert." prefix; BertModel's do not.
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.embeddings.")) {
            "bert."
        } else {
            ""
        };
        let device = Device::Cpu;
        let h = config.hidden_size;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let full = format!("{prefix}{name}");
            let view = st
                .tensor(&full)
                .map_err(|_| corrupt(weights, format!("tensor {full} is missing")))?;
            if view.shape() != shape {
                return Err(corrupt(
                    weights,
                    format!(
                        "tensor {full} has shape {:?}, expected {shape:?}",
                        view.shape()
                    ),
                ));
            }
            to_f32(&view).ok_or_else(|| {
                corrupt(
                    weights,
                    format!("tensor {full} has unsupported dtype {:?}", view.dtype()),
                )
            })
        };
        let vector = |name: &str, n: usize| -> Result<Tensor> {
            Ok(Tensor::from_vec(get(name, &[n])?, n, &device)?)
        };
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: vector(&format!("{name}.weight"), h)?,
                bias: vector(&format!("{name}.bias"), h)?,
                eps: config.layer_norm_eps as f32,
            })
        };
        // Concatenates fused projections along the output dimension and packs them once.
        let linear = |names: &[&str], out_dim: usize, in_dim: usize| -> Result<Linear> {
            let mut w = Vec::with_capacity(names.len() * out_dim * in_dim);
            let mut b = Vec::with_capacity(names.len() * out_dim);
            for name in names {
                w.extend(get(&format!("{name}.weight"), &[out_dim, in_dim])?);
                b.extend(get(&format!("{name}.bias"), &[out_dim])?);
            }
            let total_out = names.len() * out_dim;
            Ok(Linear(PackedLinear::new(
                &w,
                b,
                total_out,
                in_dim,
                options.precision,
                options.kernel,
            )))
        };

        let word_name = format!("{prefix}embeddings.word_embeddings.weight");
        let word_view = st
            .tensor(&word_name)
            .map_err(|_| corrupt(weights, format!("tensor {word_name} is missing")))?;
        if word_view.shape() != [config.vocab_size, h] {
            return Err(corrupt(
                weights,
                format!(
                    "{word_name} has shape {:?}, expected [{}, {h}]",
                    word_view.shape(),
                    config.vocab_size
                ),
            ));
        }
        if !matches!(
            word_view.dtype(),
            StDtype::F32 | StDtype::F16 | StDtype::BF16
        ) {
            return Err(corrupt(
                weights,
                format!("{word_name} has unsupported dtype"),
            ));
        }
        let word_offset = word_view.data().as_ptr() as usize - mmap.as_ptr() as usize;
        let word_dtype = word_view.dtype();

        let positions = Tensor::from_vec(
            get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            (config.max_position_embeddings, h),
            &device,
        )?;
        let types = get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let token_type0 = Tensor::from_vec(types[..h].to_vec(), (1, h), &device)?;
        let emb_norm = norm("embeddings.LayerNorm")?;

        let ff = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                qkv: linear(
                    &[
                        &format!("{p}.attention.self.query"),
                        &format!("{p}.attention.self.key"),
                        &format!("{p}.attention.self.value"),
                    ],
                    h,
                    h,
                )?,
                attn_out: linear(&[&format!("{p}.attention.output.dense")], h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&[&format!("{p}.intermediate.dense")], ff, h)?,
                output: linear(&[&format!("{p}.output.dense")], h, ff)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        drop(st);
        Ok(BertEncoder {
            config: config.clone(),
            word: WordEmbeddings {
                mmap,
                offset: word_offset,
                dtype: word_dtype,
                rows: config.vocab_size,
                hidden: h,
            },
            positions,
            token_type0,
            emb_norm,
            layers,
            device,
            options,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Encodes a batch of token-id sequences (each ≤ max positions, non-empty)
    /// and returns one mean-pooled, L2-normalised vector per sequence.
    pub fn embed_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let h = self.config.hidden_size;
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        if let Some(&bad) = lens
            .iter()
            .find(|&&l| l == 0 || l > self.config.max_position_embeddings)
        {
            return Err(Error::Usage(format!(
                "sequence of {bad} tokens: must be 1..={}",
                self.config.max_position_embeddings
            )));
        }
        let total: usize = lens.iter().sum();
        let mut words = Vec::with_capacity(total * h);
        let mut pos_ids = Vec::with_capacity(total);
        for s in seqs {
            self.word.gather(s, &mut words)?;
            pos_ids.extend(0..s.len() as u32);
        }
        let words = Tensor::from_vec(words, (total, h), &self.device)?;
        let pos_ids = Tensor::from_vec(pos_ids, total, &self.device)?;
        let pos = self.positions.index_select(&pos_ids, 0)?;
        let mut x = self
            .emb_norm
            .forward(&(words + pos)?.broadcast_add(&self.token_type0)?)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &lens)?;
        }
        // Mean pooling per sequence over its own (all real) tokens, then L2.
        let mut out = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        let rows = x.to_vec2::<f32>()?;
        for &len in &lens {
            let mut v = vec![0f32; h];
            for row in &rows[offset..offset + len] {
                for (a, b) in v.iter_mut().zip(row) {
                    *a += b;
                }
            }
            offset += len;
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            out.push(v);
        }
        Ok(out)
    }

    fn layer_forward(&self, layer: &Layer, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let qkv = layer.qkv.forward(x)?;
        let ctx = attention::packed_attention(
            &qkv,
            lens,
            self.config.num_attention_heads,
            self.options.kernel,
        )?;
        let attn = layer
            .attn_norm
            .forward(&layer.attn_out.forward_residual(&ctx, x)?)?;
        let inter = layer.intermediate.forward_gelu(&attn)?;
        let out = layer
            .out_norm
            .forward(&layer.output.forward_residual(&inter, &attn)?)?;
        Ok(out)
    }

    /// The compute dtype (f32 activations and accumulation; see [`EncoderOptions`] for weights).
    pub fn dtype(&self) -> DType {
        DType::F32
    }

    pub fn options(&self) -> EncoderOptions {
        self.options
    }
}

/// Tensor names and shapes a BertModel checkpoint must hold, for validation and tests.
pub fn expected_tensor_count(config: &BertConfig) -> usize {
    5 + 16 * config.num_hidden_layers
}
