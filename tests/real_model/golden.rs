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

/// The fast Unigram loader (`src/model/unigram.rs`) gives the same ids as
/// the `tokenizers` crate's own loader of the same `tokenizer.json`, on every
/// line of the real multilingual corpus (debian-dev: EN, FR, DE, IT, ES …),
/// every seed line, and hand-made hard cases: unknown characters (fused),
/// scripts, emoji, added tokens written in the text, spaces and controls.
#[test]
fn fast_tokenizer_matches_tokenizers() {
    let path = model_dir().join("tokenizer.json");
    let ours = pareil::model::tokenizer::TextTokenizer::load(&path, usize::MAX / 2).unwrap();
    let reference = tokenizers::Tokenizer::from_file(&path).unwrap();
    let mut texts: Vec<String> = [
        "",
        " ",
        "   a  b   ",
        "\t\n\r",
        "Qui a fondé OpenAI ?",
        "<s> hidden </s> <mask> tokens <unk> in text",
        "日本語のテキストと中文文本와 한국어",
        "emoji 🤖🧠👩🏽‍💻 and ️ variation",
        "\u{1F9EC}\u{E000}\u{10FFFD}\u{0378}\u{FFFF} unknown runs \u{E000}\u{E001}x\u{E002}",
        "ﬁ ﬂ ＡＢＣ １２３ Ⅻ ㎏ ½ – — … « » “ ” ‘ ’",
        "e\u{301}le\u{300}ve Cafe\u{301} ÅÄÖ ß ẞ İstanbul ǅ",
        "libudev-dev: libudev development files (8.2-1~bpo12+1) amd64/arm64",
        "https://example.org/a?b=c&d=e#f user@example.com 0x7fff_ffff 3.14159e-10",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\u{0}\u{1}\u{7f}\u{200b}\u{feff}zero width",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sources = vec![repo_root().join("seeds")];
    sources.push(repo_root().join("../shared/eval/debian-dev/corpus"));
    for dir in sources {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            texts.extend(text.lines().map(str::to_string));
        }
    }
    assert!(texts.len() > 10_000, "only {} texts", texts.len());
    for prompt in ["", "query: "] {
        for text in &texts {
            let expected = reference
                .encode(format!("{prompt}{text}").as_str(), true)
                .unwrap();
            let got = ours.tokenize(text, prompt).unwrap();
            assert_eq!(got.ids, expected.get_ids(), "{prompt}{text:?}");
        }
    }
}
