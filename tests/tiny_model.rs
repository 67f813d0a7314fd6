//! Fast wiring tests on a tiny BERT the test builds itself (random weights, a
//! word-level tokenizer): the encoder against a naive reference forward pass,
//! batching, truncation, and the errors for broken model files.

use std::collections::BTreeMap;
use std::path::Path;

use pareil::model::{Embedder, EncoderOptions, Kernel, Precision, Role};
use pareil::Error;

const VOCAB: &[&str] = &[
    "<s>", "<pad>", "</s>", "<unk>", "query:", "passage:", "le", "chat", "dort", "sur", "tapis",
    "der", "hund", "schläft", "a", "b",
];
const H: usize = 8;
const HEADS: usize = 2;
const FF: usize = 16;
const LAYERS: usize = 2;
const MAXP: usize = 12;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
    }
}

type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn build_tiny_model(dir: &Path) -> Weights {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut w: Weights = BTreeMap::new();
    let mut add = |name: &str, shape: Vec<usize>, rng: &mut Rng, around_one: bool| {
        let n = shape.iter().product();
        let v = (0..n)
            .map(|_| rng.next() + if around_one { 1.0 } else { 0.0 })
            .collect();
        w.insert(name.to_string(), (shape, v));
    };
    add(
        "embeddings.word_embeddings.weight",
        vec![VOCAB.len(), H],
        &mut rng,
        false,
    );
    add(
        "embeddings.position_embeddings.weight",
        vec![MAXP, H],
        &mut rng,
        false,
    );
    add(
        "embeddings.token_type_embeddings.weight",
        vec![2, H],
        &mut rng,
        false,
    );
    add("embeddings.LayerNorm.weight", vec![H], &mut rng, true);
    add("embeddings.LayerNorm.bias", vec![H], &mut rng, false);
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, o, i) in [
            ("attention.self.query", H, H),
            ("attention.self.key", H, H),
            ("attention.self.value", H, H),
            ("attention.output.dense", H, H),
            ("intermediate.dense", FF, H),
            ("output.dense", H, FF),
        ] {
            add(&format!("{p}.{name}.weight"), vec![o, i], &mut rng, false);
            add(&format!("{p}.{name}.bias"), vec![o], &mut rng, false);
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(&format!("{p}.{name}.weight"), vec![H], &mut rng, true);
            add(&format!("{p}.{name}.bias"), vec![H], &mut rng, false);
        }
    }
    let bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)> = w
        .iter()
        .map(|(k, (s, v))| {
            (
                k.clone(),
                (s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, (s, b))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "vocab_size": VOCAB.len(), "hidden_size": H, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": FF, "hidden_act": "gelu",
        "max_position_embeddings": MAXP, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    w
}

// ---- an independent, naive forward pass (plain loops, f64) ----

fn linear(w: &Weights, name: &str, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (shape, wt) = &w[&format!("{name}.weight")];
    let (_, b) = &w[&format!("{name}.bias")];
    let (o, i) = (shape[0], shape[1]);
    x.iter()
        .map(|row| {
            (0..o)
                .map(|r| b[r] as f64 + (0..i).map(|c| wt[r * i + c] as f64 * row[c]).sum::<f64>())
                .collect()
        })
        .collect()
}

fn layer_norm(w: &Weights, name: &str, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let g = &w[&format!("{name}.weight")].1;
    let b = &w[&format!("{name}.bias")].1;
    x.iter()
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            row.iter()
                .enumerate()
                .map(|(j, v)| (v - mean) / (var + 1e-12).sqrt() * g[j] as f64 + b[j] as f64)
                .collect()
        })
        .collect()
}

fn erf(x: f64) -> f64 {
    // erfc by the Chebyshev fit of Numerical Recipes (relative error < 1.2e-7).
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

fn reference_embed(w: &Weights, ids: &[usize]) -> Vec<f64> {
    let word = &w["embeddings.word_embeddings.weight"].1;
    let pos = &w["embeddings.position_embeddings.weight"].1;
    let typ = &w["embeddings.token_type_embeddings.weight"].1;
    let x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| {
            (0..H)
                .map(|j| (word[id * H + j] + pos[p * H + j] + typ[j]) as f64)
                .collect()
        })
        .collect();
    let mut x = layer_norm(w, "embeddings.LayerNorm", &x);
    let d = H / HEADS;
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let q = linear(w, &format!("{p}.attention.self.query"), &x);
        let k = linear(w, &format!("{p}.attention.self.key"), &x);
        let v = linear(w, &format!("{p}.attention.self.value"), &x);
        let n = x.len();
        let mut ctx = vec![vec![0.0; H]; n];
        for h in 0..HEADS {
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..d)
                            .map(|t| q[i][h * d + t] * k[j][h * d + t])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..n {
                    for t in 0..d {
                        ctx[i][h * d + t] += e[j] / z * v[j][h * d + t];
                    }
                }
            }
        }
        let a = linear(w, &format!("{p}.attention.output.dense"), &ctx);
        let a: Vec<Vec<f64>> = a
            .iter()
            .zip(&x)
            .map(|(r, s)| r.iter().zip(s).map(|(u, v)| u + v).collect())
            .collect();
        let a = layer_norm(w, &format!("{p}.attention.output.LayerNorm"), &a);
        let inter: Vec<Vec<f64>> = linear(w, &format!("{p}.intermediate.dense"), &a)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|u| 0.5 * u * (1.0 + erf(u / std::f64::consts::SQRT_2)))
                    .collect()
            })
            .collect();
        let o = linear(w, &format!("{p}.output.dense"), &inter);
        let o: Vec<Vec<f64>> = o
            .iter()
            .zip(&a)
            .map(|(r, s)| r.iter().zip(s).map(|(u, v)| u + v).collect())
            .collect();
        x = layer_norm(w, &format!("{p}.output.LayerNorm"), &o);
    }
    let mut mean = [0.0; H];
    for row in &x {
        for j in 0..H {
            mean[j] += row[j] / x.len() as f64;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter().map(|v| v / norm).collect()
}

fn ids_of(text: &str, role: Role) -> Vec<usize> {
    let mut ids = vec![0];
    let prefix = if role == Role::Query {
        "query:"
    } else {
        "passage:"
    };
    for word in std::iter::once(prefix).chain(text.split_whitespace()) {
        ids.push(VOCAB.iter().position(|v| *v == word).unwrap_or(3));
    }
    ids.push(2);
    ids
}

#[test]
fn encoder_matches_naive_reference() {
    let dir = tempfile::tempdir().unwrap();
    let w = build_tiny_model(dir.path());
    // Every precision and kernel, against the f64 forward pass: f32 weights
    // within float rounding, f16 weights within their rounding, int8 within
    // 8-bit weights' and 7-bit activations' rounding.
    for (precision, bound) in [
        (Precision::F32, 1e-4),
        (Precision::F16, 2e-3),
        (Precision::Int8, 1e-2),
    ] {
        for kernel in Kernel::supported() {
            let model =
                Embedder::load_with(dir.path(), EncoderOptions { precision, kernel }).unwrap();
            check_against_reference(&model, &w, bound);
        }
    }
}

fn check_against_reference(model: &Embedder, w: &Weights, bound: f64) {
    let texts = [
        "le chat dort sur le tapis",
        "der hund schläft",
        "a",
        "",
        "zzz unknown words",
    ];
    for role in [Role::Query, Role::Passage] {
        let got = model.embed(&texts, role).unwrap();
        for (text, e) in texts.iter().zip(&got) {
            let ids = ids_of(text, role);
            let tok = model.tokenize(text, role).unwrap();
            assert_eq!(
                tok.ids.iter().map(|&i| i as usize).collect::<Vec<_>>(),
                ids,
                "{text}"
            );
            let reference = reference_embed(w, &ids);
            let max_diff = e
                .vector
                .iter()
                .zip(&reference)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(max_diff < bound, "{text:?}: max abs diff {max_diff}");
            assert_eq!(e.tokens, ids.len());
        }
    }
}

#[test]
fn batching_keeps_input_order_and_equals_single() {
    let dir = tempfile::tempdir().unwrap();
    build_tiny_model(dir.path());
    let model = Embedder::load(dir.path()).unwrap();
    let texts = [
        "a",
        "le chat dort sur le tapis le chat",
        "der hund",
        "b b b",
        "le",
    ];
    let batch = model.embed(&texts, Role::Passage).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let single = &model.embed(&[t], Role::Passage).unwrap()[0];
        assert_eq!(b.tokens, single.tokens);
        let diff = b
            .vector
            .iter()
            .zip(&single.vector)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{t}: {diff}");
        let norm: f32 = b.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert!(batch[0].vector != batch[1].vector);
}

#[test]
fn over_long_input_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    build_tiny_model(dir.path());
    let model = Embedder::load(dir.path()).unwrap();
    let long = "le chat ".repeat(10); // 20 words + prefix + 2 specials = 23 tokens > 12
    let e = &model.embed(&[long.as_str()], Role::Passage).unwrap()[0];
    assert_eq!(e.tokens, MAXP);
    assert_eq!(e.truncated_tokens, 23 - MAXP);
    let tok = model.tokenize(&long, Role::Passage).unwrap();
    assert_eq!(*tok.ids.last().unwrap(), 2, "</s> is kept at the end");
}

#[test]
fn broken_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    build_tiny_model(dir.path());
    // Truncated weights.
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = Embedder::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("model.safetensors") && err.to_string().contains("fix"),
        "{err}"
    );
    // Missing tokenizer.
    std::fs::write(&st, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = Embedder::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::ModelMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("tokenizer.json")
            && err.to_string().contains("pareil model fetch"),
        "{err}"
    );
    // Garbage config.
    std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("config.json"), b"not json").unwrap();
    let err = Embedder::load(dir.path()).err().unwrap();
    assert!(err.to_string().contains("config.json"), "{err}");
}
