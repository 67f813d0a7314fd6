//! Reading a safetensors checkpoint into the encoder's building blocks:
//! named tensors checked for shape and converted to f32, linear layers
//! packed for the kernels (fused projections concatenated first), layer
//! norms, and the word-embedding table left in the memory map. The blocks
//! themselves are here too, so each architecture's loaders are only names
//! and shapes.

use std::path::Path;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::kernels::gemm::{Activation, PackedLinear};
use crate::kernels::team::{Shared, Team};
use crate::kernels::{norm, Kernel};
use crate::model::EncoderOptions;

use super::pack_cache::PackCache;

/// A memory-mapped `model.safetensors` whose tensor names share one prefix
/// (`bert.`, `roberta.`, … or none), found by looking for the word embeddings.
pub(super) struct Checkpoint<'a> {
    path: &'a Path,
    mmap: &'a Arc<memmap2::Mmap>,
    st: SafeTensors<'a>,
    prefix: &'static str,
    options: EncoderOptions,
    /// Linear layers packed by an earlier start (see [`PackCache`]).
    packs: PackCache,
}

pub(super) fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::ModelCorrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
        fix: "delete the model directory and re-run `pareil model fetch`".into(),
    }
}

/// Opens `path` read-only as a memory map.
pub(super) fn map(path: &Path) -> Result<Arc<memmap2::Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the file is opened read-only and pareil never writes model
    // files in place (provisioning writes a new directory and renames it).
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(mmap))
}

impl<'a> Checkpoint<'a> {
    /// Parses the header and picks the first of `prefixes` under which the
    /// word embeddings exist.
    pub(super) fn open(
        path: &'a Path,
        mmap: &'a Arc<memmap2::Mmap>,
        prefixes: &[&'static str],
        options: EncoderOptions,
    ) -> Result<Self> {
        let st = SafeTensors::deserialize(mmap)
            .map_err(|e| corrupt(path, format!("not a readable safetensors file: {e}")))?;
        let names = st.names();
        let prefix = prefixes
            .iter()
            .copied()
            .find(|p| {
                let word = format!("{p}embeddings.word_embeddings.weight");
                names.iter().any(|n| **n == word)
            })
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "no embeddings.word_embeddings.weight under any of the prefixes {prefixes:?}"
                    ),
                )
            })?;
        Ok(Checkpoint {
            path,
            mmap,
            st,
            prefix,
            options,
            packs: PackCache::open(path, options),
        })
    }

    /// The tensor `name` (prefix added), checked to have `shape`.
    fn view(&self, name: &str, shape: &[usize]) -> Result<TensorView<'a>> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .st
            .tensor(&full)
            .map_err(|_| corrupt(self.path, format!("tensor {full} is missing")))?;
        if view.shape() != shape {
            return Err(corrupt(
                self.path,
                format!(
                    "tensor {full} has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        Ok(view)
    }

    /// The tensor `name` as f32 values.
    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name, shape)?;
        to_f32(&view).ok_or_else(|| {
            corrupt(
                self.path,
                format!("tensor {name} has unsupported dtype {:?}", view.dtype()),
            )
        })
    }

    /// The tensor `name` as a candle tensor of `shape`.
    pub(super) fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.get(name, shape)?,
            shape,
            &Device::Cpu,
        )?)
    }

    /// `{name}.weight` and `{name}.bias` as a layer norm over `dim` values.
    pub(super) fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"), &[dim])?,
            bias: self.get(&format!("{name}.bias"), &[dim])?,
            eps: eps as f32,
            kernel: self.options.kernel,
        })
    }

    /// The linear layers `names` (each `[out_dim, in_dim]` plus bias)
    /// concatenated along the output dimension and packed once.
    pub(super) fn linear(&self, names: &[&str], out_dim: usize, in_dim: usize) -> Result<Linear> {
        let key = names.join("+");
        if let Some(packed) = self.packs.layer(&key, names.len() * out_dim, in_dim) {
            return Ok(Linear(packed));
        }
        // Read (and shape-check) every part before sizing anything: the
        // dimensions come from config.json, and a corrupt one must not
        // become a terabyte allocation before the checkpoint disagrees.
        let mut ws = Vec::with_capacity(names.len());
        let mut bs = Vec::with_capacity(names.len());
        for name in names {
            ws.push(self.get(&format!("{name}.weight"), &[out_dim, in_dim])?);
            bs.push(self.get(&format!("{name}.bias"), &[out_dim])?);
        }
        let (w, b) = (ws.concat(), bs.concat());
        let packed = PackedLinear::new(
            &w,
            b,
            names.len() * out_dim,
            in_dim,
            self.options.precision,
            self.options.kernel,
        );
        self.packs.record(&key, &packed);
        Ok(Linear(packed))
    }

    /// Ends the load: saves the layers packed this time for the next start.
    pub(super) fn finish(self) {
        self.packs.save();
    }

    /// The `[rows, dim]` table `name`, left in the memory map (see [`WordEmbeddings`]).
    pub(super) fn word_table(&self, name: &str, rows: usize, dim: usize) -> Result<WordEmbeddings> {
        let view = self.view(name, &[rows, dim])?;
        if !matches!(view.dtype(), StDtype::F32 | StDtype::F16 | StDtype::BF16) {
            return Err(corrupt(
                self.path,
                format!("{}{name} has unsupported dtype", self.prefix),
            ));
        }
        Ok(WordEmbeddings {
            mmap: Arc::clone(self.mmap),
            offset: view.data().as_ptr() as usize - self.mmap.as_ptr() as usize,
            dtype: view.dtype(),
            rows,
            hidden: dim,
        })
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

/// A linear layer whose weights are packed for the kernels at load.
pub(super) struct Linear(PackedLinear);

impl Linear {
    /// `x · Wᵀ + b`, bias added in the product's epilogue.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(&LinearOp(&self.0, Activation::None))
    }

    /// `gelu(x · Wᵀ + b)`, bias and activation in the product's epilogue.
    pub(super) fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(&LinearOp(&self.0, Activation::Gelu))
    }

    /// `x · Wᵀ + b + residual`, the residual added in the epilogue too.
    pub(super) fn forward_residual(
        &self,
        x: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        x.apply_op2_no_bwd(
            &residual.contiguous()?,
            &LinearOp(&self.0, Activation::None),
        )
    }

    /// The packed weights, for the kernels' team forms.
    pub(super) fn packed(&self) -> &PackedLinear {
        &self.0
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

/// A layer norm over the last dimension, by [`norm::layer_norm`].
pub(super) struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
    kernel: Kernel,
}

impl LayerNorm {
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }

    /// [`norm::layer_norm_team`].
    ///
    /// # Safety
    /// As [`norm::layer_norm_team`].
    pub(super) unsafe fn forward_team(&self, team: &Team, x: &[f32], out: &Shared<f32>) {
        norm::layer_norm_team(
            team,
            self.kernel,
            x,
            &self.weight,
            &self.bias,
            self.eps,
            out,
        )
    }
}

impl CustomOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "pareil-layer-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("layer norm: contiguous f32 input only");
        };
        if layout.dims().last() != Some(&self.weight.len()) {
            candle_core::bail!(
                "layer norm: input {:?} does not end in {}",
                layout.dims(),
                self.weight.len()
            );
        }
        let x = &data[start..end];
        let out = norm::layer_norm(self.kernel, x, &self.weight, &self.bias, self.eps);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// The word-embedding table stays in the memory-mapped file: it is 96 % of
/// the weights and a batch only needs a few hundred of its 250k rows, so start-up
/// does not copy it.
pub(super) struct WordEmbeddings {
    mmap: Arc<memmap2::Mmap>,
    offset: usize,
    dtype: StDtype,
    rows: usize,
    hidden: usize,
}

impl WordEmbeddings {
    pub(super) fn gather(&self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ModelConfig;
    use crate::model::encoder;
    use crate::provision::e5s1::{write_safetensors, NamedTensor};

    /// Dimensions of a tiny BERT: hidden, intermediate, vocab, positions,
    /// token types, layers.
    #[derive(Debug, Clone, Copy)]
    struct Dims {
        h: usize,
        ff: usize,
        vocab: usize,
        pos: usize,
        types: usize,
        layers: usize,
    }

    const TINY: Dims = Dims {
        h: 8,
        ff: 16,
        vocab: 10,
        pos: 12,
        types: 1,
        layers: 1,
    };

    fn config(d: Dims) -> ModelConfig {
        ModelConfig {
            vocab_size: d.vocab,
            hidden_size: d.h,
            num_hidden_layers: d.layers,
            num_attention_heads: 2,
            intermediate_size: d.ff,
            max_position_embeddings: d.pos,
            type_vocab_size: d.types,
            ..ModelConfig::multilingual_e5_small()
        }
    }

    /// Every tensor BertModel has for `d`, under `prefix`, small values.
    fn tensors(d: Dims, prefix: &str) -> Vec<NamedTensor> {
        let Dims { h, ff, .. } = d;
        let mut t: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![d.vocab, h]),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![d.pos, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![d.types, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..d.layers {
            let p = format!("encoder.layer.{l}");
            for (name, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", ff, h),
                ("output.dense", h, ff),
            ] {
                t.push((format!("{p}.{name}.weight"), vec![out, inp]));
                t.push((format!("{p}.{name}.bias"), vec![out]));
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                t.push((format!("{p}.{name}.weight"), vec![h]));
                t.push((format!("{p}.{name}.bias"), vec![h]));
            }
        }
        t.into_iter()
            .map(|(n, shape)| {
                let len: usize = shape.iter().product();
                let values = (0..len).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
                (format!("{prefix}{n}"), shape, values)
            })
            .collect()
    }

    fn write_model(dir: &Path, d: Dims) -> std::path::PathBuf {
        let path = dir.join("model.safetensors");
        write_safetensors(&path, &tensors(d, "bert.")).unwrap();
        path
    }

    #[test]
    fn tiny_checkpoint_loads_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(dir.path(), TINY);
        let enc = encoder::load(&path, &config(TINY), EncoderOptions::default()).unwrap();
        let out = enc.forward(&[vec![1, 2, 3]]).unwrap();
        assert_eq!(out.len(), 3 * TINY.h);
        assert!(out.iter().all(|x| x.is_finite()));
    }

    /// One of `config_dims_never_abort`'s cases: an `intermediate_size` of
    /// 2⁴⁰ in config.json over a small checkpoint. `linear` used to reserve
    /// `out × in` floats (32 TiB) before reading the tensor whose shape
    /// disagrees, and the failed allocation aborted the process.
    #[test]
    fn huge_config_dimension_is_refused_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(dir.path(), TINY);
        let bad = config(Dims {
            ff: 1 << 40,
            ..TINY
        });
        let err = encoder::load(&path, &bad, EncoderOptions::default())
            .err()
            .expect("shape mismatch");
        assert!(err.to_string().contains("intermediate.dense"), "{err}");
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        use crate::test_support::proptest_config;

        /// Opens `bytes` as a checkpoint and, when that works, loads a tiny
        /// encoder from it: any error is fine, a panic is not.
        fn load_bytes(bytes: &[u8], d: Dims) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("model.safetensors");
            std::fs::write(&path, bytes).unwrap();
            let mmap = map(&path).unwrap();
            let prefixes = ["bert.", ""];
            if let Ok(ck) = Checkpoint::open(&path, &mmap, &prefixes, EncoderOptions::default()) {
                let _ = ck.get("embeddings.LayerNorm.weight", &[d.h]);
                if let Ok(w) = ck.word_table("embeddings.word_embeddings.weight", d.vocab, d.h) {
                    let mut out = Vec::new();
                    let ids: Vec<u32> = (0..d.vocab as u32 + 1).collect();
                    let _ = w.gather(&ids, &mut out);
                }
            }
            if let Ok(enc) = encoder::load(&path, &config(d), EncoderOptions::default()) {
                let out = enc.forward(&[vec![0, 1]]).unwrap();
                assert_eq!(out.len(), 2 * d.h);
            }
        }

        fn valid_bytes(d: Dims) -> Vec<u8> {
            let dir = tempfile::tempdir().unwrap();
            std::fs::read(write_model(dir.path(), d)).unwrap()
        }

        proptest! {
            #![proptest_config(proptest_config(128))]

            /// Arbitrary bytes, sometimes behind a plausible header length.
            #[test]
            fn safetensors_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256),
                                           len in prop::option::of(0u64..300)) {
                let mut bytes = len.map(|l| l.to_le_bytes().to_vec()).unwrap_or_default();
                bytes.extend(body);
                load_bytes(&bytes, TINY);
            }

            /// A valid checkpoint with bytes overwritten (header JSON: names,
            /// dtypes, shapes, offsets; or data) or cut short.
            #[test]
            fn safetensors_mutated(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                                   in_header in any::<bool>(), cut in prop::option::of(any::<prop::sample::Index>())) {
                let mut bytes = valid_bytes(TINY);
                let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                for (at, v) in edits {
                    let i = if in_header { 8 + at.index(header - 8) } else { at.index(bytes.len()) };
                    bytes[i] = v;
                }
                if let Some(c) = cut {
                    bytes.truncate(c.index(bytes.len()));
                }
                load_bytes(&bytes, TINY);
            }

            /// config.json dimensions that disagree with the checkpoint, huge
            /// ones included: an error, never a panic or an abort.
            #[test]
            fn config_dims_never_abort(edits in prop::collection::vec(prop::option::weighted(0.3,
                prop::sample::select(vec![0usize, 1, 2, 9, 16, 1 << 20, 1 << 40, usize::MAX / 2, usize::MAX])), 6),
            ) {
                // Mostly the checkpoint's own dimensions, so that loading gets
                // past the embeddings to the layer it disagrees with.
                let v = |i: usize, tiny: usize| edits[i].unwrap_or(tiny);
                let d = Dims { h: v(0, TINY.h), ff: v(1, TINY.ff), vocab: v(2, TINY.vocab), pos: v(3, TINY.pos),
                               types: v(4, TINY.types), layers: v(5, TINY.layers) };
                let dir = tempfile::tempdir().unwrap();
                let path = write_model(dir.path(), TINY);
                let mut c = config(d);
                c.num_attention_heads = 1;
                if let Ok(enc) = encoder::load(&path, &c, EncoderOptions::default()) {
                    prop_assert_eq!(enc.config().hidden_size, TINY.h);
                }
            }
        }
    }
}
