//! pareil's side of `scripts/bench.sh`: bulk embedding throughput and
//! single-query latency of the real model, printed as one JSON line with the
//! same fields as `scripts/bench_peers.py`.
//!
//!     cargo bench --bench encode -- --threads N --input FILE [--precision f16|f32|int8]
//!         [--query TEXT] [--query-runs 50] [--query-gap-ms 0] [--golden tests/golden/e5_small.json]
//!
//! `--query-gap-ms`: idle that long before each timed query, as a server
//! between requests (threads that slept must wake, see `kernels::placement`).

use std::time::Instant;

use pareil::model::{Embedder, EncoderOptions, Precision, Role, DEFAULT_MODEL_ID};
use pareil::provision;

/// The same allocator as the `pareil` binary, so load times compare.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The worst cosine between this engine's vectors and the reference vectors
/// of the golden file (sentence-transformers, f32), over all its texts.
fn golden_min_cosine(model: &Embedder, path: &str) -> f64 {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut worst = 1.0f64;
    for item in golden["items"].as_array().unwrap() {
        let role = match item["prefix"].as_str().unwrap() {
            "query: " => Role::Query,
            _ => Role::Passage,
        };
        let got = &model
            .embed(&[item["text"].as_str().unwrap()], role)
            .unwrap()[0]
            .vector;
        let want: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| *a as f64 * b).sum();
        let norms = want.iter().map(|b| b * b).sum::<f64>().sqrt()
            * got.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        worst = worst.min(dot / norms);
    }
    (worst * 1e6).round() / 1e6
}

fn main() {
    pareil::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads")
        .map(|t| t.parse().unwrap())
        .unwrap_or(1);
    // Read by candle's matmul and rayon before their first use.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let input = arg(&args, "--input").expect("--input FILE (one passage per line)");
    let query =
        arg(&args, "--query").unwrap_or_else(|| "Qui a fondé OpenAI et en quelle année ?".into());
    let runs: usize = arg(&args, "--query-runs")
        .map(|t| t.parse().unwrap())
        .unwrap_or(50);
    // Idle before each timed query, as a server between requests.
    let gap_ms: f64 = arg(&args, "--query-gap-ms")
        .map(|t| t.parse().unwrap())
        .unwrap_or(0.0);
    let dir = provision::locate(
        std::env::var_os("PAREIL_MODEL")
            .map(std::path::PathBuf::from)
            .as_deref(),
        DEFAULT_MODEL_ID,
        &std::env::var_os("PAREIL_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(provision::default_models_dir),
    )
    .expect("model installed (pareil model fetch)");
    let t = Instant::now();
    let precision = match arg(&args, "--precision").as_deref() {
        None => Precision::default(),
        Some("f16") => Precision::F16,
        Some("f32") => Precision::F32,
        Some("int8") => Precision::Int8,
        Some(other) => panic!("--precision {other}: f16, f32 or int8"),
    };
    let options = EncoderOptions {
        precision,
        ..EncoderOptions::default()
    };
    let model = Embedder::load_with(&dir, options).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // Warm-up, then the timed bulk run.
    model
        .embed(&lines[..lines.len().min(8)], Role::Passage)
        .unwrap();
    let t = Instant::now();
    let out = model.embed(&lines, Role::Passage).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let tokens: usize = out.iter().map(|e| e.tokens).sum();
    let mut lat = Vec::with_capacity(runs);
    model.embed(&[query.as_str()], Role::Query).unwrap();
    for _ in 0..runs {
        std::thread::sleep(std::time::Duration::from_secs_f64(gap_ms / 1000.0));
        let t = Instant::now();
        model.embed(&[query.as_str()], Role::Query).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let fidelity = arg(&args, "--golden").map(|path| golden_min_cosine(&model, &path));
    println!(
        "{}",
        serde_json::json!({
            "engine": format!("pareil-{} [{}]", precision.name(), options.kernel.name()),
            "threads": threads,
            "passages": lines.len(),
            "tokens": tokens,
            "seconds": secs,
            "passages_per_s": lines.len() as f64 / secs,
            "tokens_per_s": tokens as f64 / secs,
            "query_ms_median": lat[lat.len() / 2],
            "query_gap_ms": gap_ms,
            "model_load_s": load_s,
            "golden_min_cosine": fidelity,
        })
    );
}
