//! Linear-layer products at the encoder's shapes: candle's matmul plus
//! bias add (the previous path) against pareil's packed kernels.
//!
//!     cargo bench --bench gemm -- [--threads N] [--sweeps-only | --attention-only]
//!
//! `--attention-only` times the attention op alone at e5-small's shapes.

use std::time::Instant;

use candle_core::{Device, Tensor};
use pareil::bench::{detected_kernel, packed_attention, Activation, PackedLinear, Precision};

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

/// One 16-row pass through twelve layers' worth of distinct weights: the
/// query case, where the weights (85 MB in f32, 42 MB in f16) do not all fit
/// in the last-level cache and are streamed from memory on every query.
fn model_sweep(precision: Precision, distinct_layers: usize) -> f64 {
    let shapes = [(1152usize, 384usize), (384, 384), (1536, 384), (384, 1536)];
    let layers: Vec<PackedLinear> = (0..distinct_layers)
        .flat_map(|l| {
            shapes.iter().map(move |&(n, k)| {
                // Bell-shaped like trained weights (a sum of four uniforms):
                // int8's per-column scale and i16 pairing depend on the shape.
                let w: Vec<f32> = (0..n * k)
                    .map(|i| {
                        (0..4)
                            .map(|t| ((i * 31 + l + t * 7919) * (2 * t + 1) % 997) as f32 / 997.0)
                            .sum::<f32>()
                            - 2.0
                    })
                    .collect();
                PackedLinear::new(&w, vec![0.0; n], n, k, precision, detected_kernel())
            })
        })
        .collect();
    let m = 16;
    // Varied values, so int8's per-row quantisation does its real work.
    let input = |k: usize| -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5)
            .collect()
    };
    let (x384, x1536) = (input(384), input(1536));
    time(|| {
        for lin in layers.iter().cycle().take(48) {
            let x = if lin.in_features() == 384 {
                &x384
            } else {
                &x1536
            };
            std::hint::black_box(lin.forward(x, m, Activation::None, None));
        }
    })
}

/// One layer's attention (12 heads of 32, e5-small) over `seqs` packed
/// sequences of `len` tokens each.
fn attention(seqs: usize, len: usize) -> f64 {
    let h = 384;
    let qkv: Vec<f32> = (0..seqs * len * 3 * h)
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5)
        .collect();
    let qkv = Tensor::from_vec(qkv, (seqs * len, 3 * h), &Device::Cpu).unwrap();
    let lens = vec![len; seqs];
    time(|| {
        std::hint::black_box(packed_attention(&qkv, &lens, 12, detected_kernel()).unwrap());
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "1".into());
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    println!("threads {threads}");
    println!(
        "attention, one layer: 32 sequences of 188 tokens {:.2} ms, one of 16 tokens {:.3} ms",
        attention(32, 188),
        attention(1, 16)
    );
    if args.iter().any(|a| a == "--attention-only") {
        return;
    }
    println!(
        "12 layers, 16 rows, distinct weights: f32 {:.2} ms, f16 {:.2} ms, int8 {:.2} ms",
        model_sweep(Precision::F32, 12),
        model_sweep(Precision::F16, 12),
        model_sweep(Precision::Int8, 12)
    );
    println!(
        "12 layers, 16 rows, one layer's weights (cache-hot): f32 {:.2} ms, f16 {:.2} ms, int8 {:.2} ms",
        model_sweep(Precision::F32, 1),
        model_sweep(Precision::F16, 1),
        model_sweep(Precision::Int8, 1)
    );
    if args.iter().any(|a| a == "--sweeps-only") {
        return;
    }
    println!(
        "| m | n | k | candle ms | packed f32 ms | packed f16 ms | packed int8 ms | GFLOP/s f32 |"
    );
    for &m in &[16usize, 128, 2048] {
        for &(n, k) in &[(1152usize, 384usize), (384, 384), (1536, 384), (384, 1536)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let b = vec![0.1f32; n];
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap();
            let bt = Tensor::from_slice(&b, n, &Device::Cpu).unwrap();
            let candle = time(|| {
                xt.matmul(&wt).unwrap().broadcast_add(&bt).unwrap();
            });
            let p32 = PackedLinear::new(&w, b.clone(), n, k, Precision::F32, detected_kernel());
            let p16 = PackedLinear::new(&w, b.clone(), n, k, Precision::F16, detected_kernel());
            let p8 = PackedLinear::new(&w, b.clone(), n, k, Precision::Int8, detected_kernel());
            let f32_ms = time(|| {
                p32.forward(&x, m, Activation::None, None);
            });
            let f16_ms = time(|| {
                p16.forward(&x, m, Activation::None, None);
            });
            let int8_ms = time(|| {
                p8.forward(&x, m, Activation::None, None);
            });
            let gflops = 2.0 * (m * n * k) as f64 / (f32_ms * 1e-3) / 1e9;
            println!(
                "| {m} | {n} | {k} | {candle:.3} | {f32_ms:.3} | {f16_ms:.3} | {int8_ms:.3} | {gflops:.0} |"
            );
        }
    }
}
