//! Golden tests: pareil's tokenizer and encoder against reference token ids
//! and vectors written by sentence-transformers (`scripts/golden.py`) on the
//! same model directory.

use crate::util::{cosine, model_dir, repo_root};
use pareil::model::{Embedder, EncoderOptions, Kernel, Precision, Role};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    header: serde_json::Value,
    items: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    prefix: String,
    text: String,
    token_ids: Vec<u32>,
    n_tokens_untruncated: usize,
    embedding: Vec<f32>,
}

fn role(prefix: &str) -> Role {
    match prefix {
        "query: " => Role::Query,
        "passage: " => Role::Passage,
        other => panic!("unknown prefix {other:?}"),
    }
}

fn load() -> (Embedder, Golden) {
    load_with(EncoderOptions::default())
}

fn load_with(options: EncoderOptions) -> (Embedder, Golden) {
    let path = repo_root().join("tests/golden/e5_small.json");
    let golden: Golden = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let model = Embedder::load_with(&model_dir(), options).unwrap();
    (model, golden)
}

/// The exact path: f32 weights, within float rounding of PyTorch.
#[test]
fn golden_vectors_match_sentence_transformers() {
    check_golden(
        EncoderOptions {
            precision: Precision::F32,
            ..EncoderOptions::default()
        },
        0.9999,
        usize::MAX,
    );
}

/// The default fast path (int8) stays within the fidelity bound the issue
/// sets (0.999; measured worst 0.99956).
#[test]
fn default_precision_meets_the_fidelity_bound() {
    assert_eq!(EncoderOptions::default().precision, Precision::Int8);
    check_golden(EncoderOptions::default(), 0.999, usize::MAX);
}

#[test]
fn f16_precision() {
    check_golden(
        EncoderOptions {
            precision: Precision::F16,
            ..EncoderOptions::default()
        },
        0.9999,
        usize::MAX,
    );
}

/// The portable kernel (what a CPU without AVX2/FMA runs) gives the same
/// vectors. Texts up to 64 tokens keep this slower path's test short.
#[test]
fn portable_kernel_matches_golden_vectors() {
    for (precision, bound) in [
        (Precision::F32, 0.9999),
        (Precision::F16, 0.9999),
        (Precision::Int8, 0.999),
    ] {
        check_golden(
            EncoderOptions {
                precision,
                kernel: Kernel::Portable,
            },
            bound,
            64,
        );
    }
}

/// Checks the golden cases of at most `max_tokens` tokens against `bound`.
fn check_golden(options: EncoderOptions, bound: f32, max_tokens: usize) {
    let (model, golden) = load_with(options);
    assert!(
        golden.items.len() >= 25,
        "golden file has {} cases",
        golden.items.len()
    );
    // The reference was computed on the same weights file.
    if let Some(expected) = golden
        .header
        .get("model_safetensors_sha256")
        .and_then(|v| v.as_str())
    {
        let manifest = pareil::provision::read_manifest(&model_dir()).unwrap();
        assert_eq!(
            manifest.files["model.safetensors"], expected,
            "golden vectors were made on other weights"
        );
    }
    let mut worst = (1.0f32, String::new());
    let cases: Vec<&Case> = golden
        .items
        .iter()
        .filter(|c| c.n_tokens_untruncated <= max_tokens)
        .collect();
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    for case in cases {
        let r = role(&case.prefix);
        let tok = model.tokenize(&case.text, r).unwrap();
        assert_eq!(
            tok.ids, case.token_ids,
            "token ids differ for case {}",
            case.name
        );
        assert_eq!(
            tok.ids.len() + tok.truncated,
            case.n_tokens_untruncated,
            "untruncated token count differs for case {}",
            case.name
        );
        let e = &model.embed(&[case.text.as_str()], r).unwrap()[0];
        let norm: f32 = e.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "case {}: norm {norm}", case.name);
        let c = cosine(&e.vector, &case.embedding);
        if c < worst.0 {
            worst = (c, case.name.clone());
        }
        assert!(
            c >= bound,
            "{options:?} case {}: cosine {c} < {bound}",
            case.name
        );
    }
    eprintln!(
        "{options:?}: worst golden cosine {:.7} ({})",
        worst.0, worst.1
    );
}

#[test]
fn long_inputs_report_truncation() {
    let (model, golden) = load();
    let long = golden
        .items
        .iter()
        .find(|c| c.n_tokens_untruncated > 512)
        .expect("the golden set has a text over 512 tokens");
    let e = &model
        .embed(&[long.text.as_str()], role(&long.prefix))
        .unwrap()[0];
    assert_eq!(e.tokens, 512);
    assert_eq!(e.truncated_tokens, long.n_tokens_untruncated - 512);
}

#[test]
fn batch_equals_one_by_one() {
    let (model, golden) = load();
    for prefix in ["query: ", "passage: "] {
        let cases: Vec<&Case> = golden.items.iter().filter(|c| c.prefix == prefix).collect();
        let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
        let batch = model.embed(&texts, role(prefix)).unwrap();
        assert_eq!(batch.len(), texts.len());
        for (case, b) in cases.iter().zip(&batch) {
            let single = &model.embed(&[case.text.as_str()], role(prefix)).unwrap()[0];
            let c = cosine(&b.vector, &single.vector);
            assert!(
                c >= 0.99999,
                "case {}: batch vs single cosine {c}",
                case.name
            );
        }
    }
}
