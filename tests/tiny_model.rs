//! Fast wiring tests on tiny models the tests build themselves (random
//! weights, a word-level tokenizer), a BERT and an XLM-RoBERTa (no real
//! XLM-R checkpoint can be fetched here): the encoder against a naive f64
//! reference forward pass (positions offset by the padding index for
//! XLM-R), prompts and pooling read from the sentence-transformers files,
//! batching, truncation, and the errors for broken model files.

use std::collections::BTreeMap;
use std::path::Path;

use pareil::model::{Architecture, Embedder, EncoderOptions, Kernel, Precision, Role};
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

/// What distinguishes the tiny models: architecture and the
/// sentence-transformers files written beside the weights.
#[derive(Clone, Copy)]
pub(crate) struct Tiny {
    model_type: &'static str,
    /// Prefix of the tensor names in `model.safetensors`.
    weight_prefix: &'static str,
    /// Position id of the first token (XLM-R: `pad_token_id + 1`).
    position_offset: usize,
    type_vocab: usize,
    /// CLS pooling and no normalisation, with a prompts file giving the
    /// passage side no prompt; `None`: no sentence-transformers files
    /// (multilingual-e5's defaults).
    sentence_files: Option<SentenceFiles>,
}

#[derive(Clone, Copy)]
struct SentenceFiles {
    cls: bool,
    normalize: bool,
    query_prompt: &'static str,
    passage_prompt: &'static str,
}

pub(crate) const BERT: Tiny = Tiny {
    model_type: "bert",
    weight_prefix: "",
    position_offset: 0,
    type_vocab: 2,
    sentence_files: None,
};

const XLMR: Tiny = Tiny {
    model_type: "xlm-roberta",
    weight_prefix: "roberta.",
    position_offset: 2,
    type_vocab: 1,
    sentence_files: None,
};

impl Tiny {
    /// Tokens one sequence may hold: the position table less the offset.
    fn max_tokens(self) -> usize {
        MAXP - self.position_offset
    }

    fn prompt(self, role: Role) -> &'static str {
        match (self.sentence_files, role) {
            (Some(f), Role::Query) => f.query_prompt,
            (Some(f), Role::Passage) => f.passage_prompt,
            (None, Role::Query) => "query: ",
            (None, Role::Passage) => "passage: ",
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
    }
}

pub(crate) type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Writes `config.json`, `tokenizer.json`, `model.safetensors` (and the
/// sentence-transformers files `tiny` asks for) to `dir`; returns the weights
/// by their unprefixed names for the reference.
pub(crate) fn build(dir: &Path, tiny: Tiny) -> Weights {
    let w = random_weights(tiny);
    write_safetensors(dir, &w, tiny);
    write_config(dir, tiny);
    write_tokenizer(dir);
    w
}

/// Random weights of every tensor a BERT/XLM-R encoder has, by unprefixed name.
fn random_weights(tiny: Tiny) -> Weights {
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
        vec![tiny.type_vocab, H],
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
    w
}

/// `model.safetensors`, with the architecture's weight prefix.
fn write_safetensors(dir: &Path, w: &Weights, tiny: Tiny) {
    let bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)> = w
        .iter()
        .map(|(k, (s, v))| {
            (
                format!("{}{k}", tiny.weight_prefix),
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
}

/// `config.json` (and the sentence-transformers files, if any).
fn write_config(dir: &Path, tiny: Tiny) {
    let config = serde_json::json!({
        "vocab_size": VOCAB.len(), "hidden_size": H, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": FF, "hidden_act": "gelu",
        "max_position_embeddings": MAXP, "type_vocab_size": tiny.type_vocab,
        "layer_norm_eps": 1e-12, "pad_token_id": tiny.position_offset.saturating_sub(1),
        "model_type": tiny.model_type
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    if let Some(files) = tiny.sentence_files {
        write_sentence_files(dir, files);
    }
}

/// A word-level `tokenizer.json` over [`VOCAB`].
fn write_tokenizer(dir: &Path) {
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
}

fn write_sentence_files(dir: &Path, files: SentenceFiles) {
    let mut modules = vec![
        serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if files.normalize {
        modules.push(serde_json::json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    let pooling = serde_json::json!({
        "word_embedding_dimension": H, "pooling_mode_cls_token": files.cls,
        "pooling_mode_mean_tokens": !files.cls, "pooling_mode_max_tokens": false
    });
    let prompts = serde_json::json!({
        "prompts": {"query": files.query_prompt, "passage": files.passage_prompt},
        "default_prompt_name": null
    });
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for (name, value) in [
        ("modules.json", serde_json::Value::from(modules)),
        ("1_Pooling/config.json", pooling),
        ("config_sentence_transformers.json", prompts),
    ] {
        std::fs::write(dir.join(name), value.to_string()).unwrap();
    }
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

fn reference_embed(w: &Weights, ids: &[usize], tiny: Tiny) -> Vec<f64> {
    let word = &w["embeddings.word_embeddings.weight"].1;
    let pos = &w["embeddings.position_embeddings.weight"].1;
    let typ = &w["embeddings.token_type_embeddings.weight"].1;
    let x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| {
            (0..H)
                .map(|j| {
                    (word[id * H + j] + pos[(p + tiny.position_offset) * H + j] + typ[j]) as f64
                })
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
    let files = tiny.sentence_files;
    let pooled: Vec<f64> = if files.is_some_and(|f| f.cls) {
        x[0].clone()
    } else {
        (0..H)
            .map(|j| x.iter().map(|row| row[j]).sum::<f64>() / x.len() as f64)
            .collect()
    };
    let norm = if files.is_none_or(|f| f.normalize) {
        pooled.iter().map(|v| v * v).sum::<f64>().sqrt()
    } else {
        1.0
    };
    pooled.iter().map(|v| v / norm).collect()
}

fn ids_of(text: &str, role: Role, tiny: Tiny) -> Vec<usize> {
    let mut ids = vec![0];
    let input = format!("{}{text}", tiny.prompt(role));
    for word in input.split_whitespace() {
        ids.push(VOCAB.iter().position(|v| *v == word).unwrap_or(3));
    }
    ids.push(2);
    ids
}

#[test]
fn encoder_matches_naive_reference() {
    check_every_precision_and_kernel(BERT);
}

#[test]
fn xlm_roberta_matches_naive_reference_with_offset_positions() {
    check_every_precision_and_kernel(XLMR);
}

fn check_every_precision_and_kernel(tiny: Tiny) {
    let dir = tempfile::tempdir().unwrap();
    let w = build(dir.path(), tiny);
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
            check_against_reference(&model, &w, tiny, bound);
        }
    }
}

fn check_against_reference(model: &Embedder, w: &Weights, tiny: Tiny, bound: f64) {
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
            let ids = ids_of(text, role, tiny);
            let tok = model.tokenize(text, role).unwrap();
            assert_eq!(
                tok.ids.iter().map(|&i| i as usize).collect::<Vec<_>>(),
                ids,
                "{text}"
            );
            let reference = reference_embed(w, &ids, tiny);
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
fn model_type_prompts_and_pooling_come_from_the_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
    let model = Embedder::load(dir.path()).unwrap();
    // No sentence-transformers files: multilingual-e5's conventions, and the
    // pooling string stores have always recorded.
    assert_eq!(model.architecture(), Architecture::Bert);
    assert_eq!(model.prompt(Role::Query), "query: ");
    assert_eq!(model.prompt(Role::Passage), "passage: ");
    assert_eq!(model.pooling_name(), "mean+l2");
    assert_eq!(model.max_tokens(), MAXP);

    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), XLMR);
    let model = Embedder::load(dir.path()).unwrap();
    assert_eq!(model.architecture(), Architecture::XlmRoberta);
    assert_eq!(model.max_tokens(), MAXP - 2);
}

#[test]
fn xlm_roberta_with_cls_pooling_and_its_own_prompts() {
    for normalize in [true, false] {
        let tiny = Tiny {
            sentence_files: Some(SentenceFiles {
                cls: true,
                normalize,
                query_prompt: "query: ",
                passage_prompt: "",
            }),
            ..XLMR
        };
        let dir = tempfile::tempdir().unwrap();
        let w = build(dir.path(), tiny);
        let model = Embedder::load_with(
            dir.path(),
            EncoderOptions {
                precision: Precision::F32,
                ..EncoderOptions::default()
            },
        )
        .unwrap();
        assert_eq!(model.prompt(Role::Passage), "");
        let want = if normalize { "cls+l2" } else { "cls" };
        assert_eq!(model.pooling_name(), want);
        check_against_reference(&model, &w, tiny, 1e-4);
    }
}

#[test]
fn xlm_roberta_truncates_at_max_positions_minus_two() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), XLMR);
    let model = Embedder::load(dir.path()).unwrap();
    let long = "le chat ".repeat(10); // 20 words + prefix + 2 specials = 23 tokens
    let e = &model.embed(&[long.as_str()], Role::Passage).unwrap()[0];
    assert_eq!(e.tokens, XLMR.max_tokens());
    assert_eq!(e.truncated_tokens, 23 - XLMR.max_tokens());
}

#[test]
fn unknown_model_type_and_wrong_weight_prefix_are_corrupt_models() {
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        Tiny {
            model_type: "gpt2",
            ..BERT
        },
    );
    let err = Embedder::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("gpt2"), "{err}");
    // XLM-R weights under `bert.` are not an XLM-R checkpoint.
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        Tiny {
            weight_prefix: "bert.",
            ..XLMR
        },
    );
    let err = Embedder::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    // ...while BERT weights under `bert.` (BertForX checkpoints) load.
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        Tiny {
            weight_prefix: "bert.",
            ..BERT
        },
    );
    assert!(Embedder::load(dir.path()).is_ok());
}

#[test]
fn batching_keeps_input_order_and_equals_single() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
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

/// A bulk job (thousands of tokens: each thread encodes its own batches)
/// gives every text the bits it gets alone, in input order, and reports
/// progress for every text once.
#[test]
fn bulk_jobs_equal_texts_alone_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
    let model = Embedder::load(dir.path()).unwrap();
    let words = &VOCAB[6..14];
    let texts: Vec<String> = (0..600)
        .map(|i| {
            (0..1 + i % 9)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut reported = 0;
    let bulk = model
        .embed_with_progress(&refs, Role::Passage, &mut |n| reported += n)
        .unwrap();
    assert_eq!(reported, texts.len());
    assert!(bulk.iter().map(|e| e.tokens).sum::<usize>() > 4096);
    for (t, b) in refs.iter().zip(&bulk) {
        let alone = &model.embed(&[t], Role::Passage).unwrap()[0];
        assert!(b.vector == alone.vector, "{t}");
    }
}

/// Short inputs embedded while a bulk job holds the cores (a server asked
/// a query while it ingests: they then run on a thread of their own) give
/// the bits they give alone.
#[test]
fn short_inputs_during_a_bulk_job_equal_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
    let model = Embedder::load(dir.path()).unwrap();
    let texts: Vec<String> = (0..20_000)
        .map(|i| VOCAB[6 + i % 8..14].join(" "))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = ["le chat", "der hund schläft", "tapis"];
    let alone: Vec<_> = queries
        .iter()
        .map(|q| model.embed(&[q], Role::Query).unwrap().remove(0).vector)
        .collect();
    let bulk_done = std::sync::atomic::AtomicBool::new(false);
    // 20,000 texts keep the lanes busy for a few hundred milliseconds:
    // hundreds of these queries run meanwhile (counted while writing it).
    std::thread::scope(|scope| {
        scope.spawn(|| {
            model.embed(&refs, Role::Passage).unwrap();
            bulk_done.store(true, std::sync::atomic::Ordering::Release);
        });
        while !bulk_done.load(std::sync::atomic::Ordering::Acquire) {
            for (q, want) in queries.iter().zip(&alone) {
                let got = model.embed(&[q], Role::Query).unwrap().remove(0).vector;
                assert!(&got == want, "{q}");
            }
        }
    });
}

/// With a thread for every CPU (the default), each encoder thread is
/// pinned to one CPU (`kernels::placement`): every `pareil-encoder-` thread
/// of this process allows one CPU only. Linux, two CPUs or more, not hybrid.
#[cfg(target_os = "linux")]
#[test]
fn a_full_width_encoder_pins_each_thread_to_one_cpu() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let cpus_allowed = |status: &str| -> Option<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string())
    };
    let process = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    let hybrid =
        std::fs::read_to_string("/sys/devices/cpu_atom/cpus").is_ok_and(|c| !c.trim().is_empty());
    // A contiguous "0-N" list of `cores` CPUs: the default pool covers it.
    if cores < 2 || hybrid || process != format!("0-{}", cores - 1) {
        eprintln!("skipped: {cores} cores, allowed {process}, hybrid {hybrid}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
    let model = Embedder::load(dir.path()).unwrap();
    let mut pinned = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).ok();
        // Threads of other tests come and go: skip what has gone.
        let (Some(comm), Some(status)) = (read("comm"), read("status")) else {
            continue;
        };
        if comm.trim() == "pareil-encoder-" {
            pinned.push(cpus_allowed(&status).unwrap());
        }
    }
    drop(model);
    assert!(pinned.len() >= cores, "encoder threads seen: {pinned:?}");
    for allowed in &pinned {
        assert!(
            allowed.parse::<usize>().is_ok(),
            "an encoder thread allows {allowed}"
        );
    }
}

#[test]
fn over_long_input_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), BERT);
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
    build(dir.path(), BERT);
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

/// The packed layers saved beside the model (`pareil-packed-<precision>.bin`)
/// give the same vectors, bit for bit, as packing at load; a damaged file, a
/// changed `config.json` or changed weights are noticed and the file is
/// written again, never used.
#[test]
fn packed_layers_are_cached_and_never_trusted_blindly() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = build(dir.path(), BERT);
    let texts = ["le chat dort", "the cat sleeps on the mat", "x"];
    for precision in [Precision::F32, Precision::F16, Precision::Int8] {
        let options = EncoderOptions {
            precision,
            ..EncoderOptions::default()
        };
        let cache = dir
            .path()
            .join(format!("pareil-packed-{}.bin", precision.name()));
        let vectors = || {
            let model = Embedder::load_with(dir.path(), options).unwrap();
            model
                .embed(&texts, Role::Query)
                .unwrap()
                .into_iter()
                .map(|e| e.vector)
                .collect::<Vec<_>>()
        };
        let packed_at_load = vectors();
        let written = std::fs::read(&cache).expect("the first load writes the cache");
        assert_eq!(
            vectors(),
            packed_at_load,
            "{precision:?} read from the cache"
        );
        assert_eq!(
            std::fs::read(&cache).unwrap(),
            written,
            "a valid cache is kept"
        );

        // One flipped byte in the payload: ignored, then written again.
        let mut damaged = written.clone();
        let at = damaged.len() - 100;
        damaged[at] ^= 0x40;
        std::fs::write(&cache, &damaged).unwrap();
        assert_eq!(
            vectors(),
            packed_at_load,
            "{precision:?} with a damaged cache"
        );
        assert_eq!(std::fs::read(&cache).unwrap(), written, "rewritten");

        // Cut short: ignored too.
        std::fs::write(&cache, &written[..written.len() / 2]).unwrap();
        assert_eq!(vectors(), packed_at_load);
        assert_eq!(std::fs::read(&cache).unwrap(), written);
    }

    // A different config.json (same meaning, other bytes): a new key.
    let options = EncoderOptions {
        precision: Precision::Int8,
        ..EncoderOptions::default()
    };
    let cache = dir.path().join("pareil-packed-int8.bin");
    let before = std::fs::read(&cache).unwrap();
    let config = dir.path().join("config.json");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    std::fs::write(&config, text).unwrap();
    Embedder::load_with(dir.path(), options).unwrap();
    assert_ne!(
        std::fs::read(&cache).unwrap(),
        before,
        "config change → new cache"
    );

    // Changed weights of the same shapes: the cache must not answer for them.
    let name = w
        .keys()
        .find(|k| k.ends_with("attention.self.query.weight"))
        .unwrap()
        .clone();
    w.get_mut(&name)
        .unwrap()
        .1
        .iter_mut()
        .for_each(|v| *v = -*v);
    write_safetensors(dir.path(), &w, BERT);
    let fresh_dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.to_string_lossy().contains("pareil-packed") {
            std::fs::copy(&path, fresh_dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let embed = |d: &std::path::Path| {
        Embedder::load_with(d, options)
            .unwrap()
            .embed(&texts, Role::Query)
            .unwrap()
            .into_iter()
            .map(|e| e.vector)
            .collect::<Vec<_>>()
    };
    assert_eq!(embed(dir.path()), embed(fresh_dir.path()));
}
