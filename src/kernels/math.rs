//! Branch-free element-wise math for the kernels: `exp` (softmax), `erf`
//! and exact GELU, and the products' epilogue (`act(x + bias) + residual`)
//! on a row or one panel. candle's generic broadcast add and its scalar
//! `erf` cost about as much as the matrix products they follow (measured:
//! 18 ms and 44 ms for a 2048×1536 activation on one core, against 42 ms for
//! its matmul), so these loops are written to vectorise and are inlined into
//! each kernel's version of the products.

use std::mem::MaybeUninit;

use super::NR;

/// eˣ with relative error below 2e-7 (Cephes' expf polynomial), without
/// branches or library calls so loops over it vectorise. Inputs below −87
/// give ~1e-38 instead of denormals, which is below what any caller can see.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    // n as an integer, read from the shifted value's low mantissa bits
    // (|n| ≤ 127 < 2²²): `n as i32` is a saturating cast, which the
    // compiler turns into sixteen scalar conversions with range checks in
    // every vector of a GELU loop.
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    // Fused multiply-adds: half the instructions of a softmax's exp, and
    // one rounding each (libm's `fmaf` on the portable path, so every
    // kernel gives the same bits).
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ]
    .iter()
    .fold(1.987_569_1e-4f32, |p, &c| p.mul_add(r, c));
    let e = (p * r).mul_add(r, r) + 1.0;
    e * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// erf with absolute error below 3.5e-7 over all of f32 (measured against
/// Python's `math.erf` on a grid of two million points in ±6): a rational
/// function `x · P(x²) / Q(x²)` on `x` clamped to ±4, where erf is ±1 to f32
/// precision (Eigen's single-precision erf, from TensorFlow). Every GELU
/// runs it, so it is the cheapest accurate form measured: one division and
/// twelve fused multiply-adds, where Abramowitz & Stegun 7.1.26 needs the
/// same division plus an `exp` and was about a tenth of a 16-token query on
/// a Zen 3 core (6.4 vs 5.8 ms with GELU left out). `mul_add` keeps the
/// kernels bit-identical: one rounding on every CPU (an FMA instruction with
/// AVX2, libm's `fmaf` on the portable path).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_15e-5,
        -2.133_740_5e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_473_9e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &c| p.mul_add(x2, c));
    let q = BETA[1..].iter().fold(BETA[0], |q, &c| q.mul_add(x2, c));
    x * p / q
}

/// Exact GELU: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Sum of a slice in eight independent lanes (vectorisable, unlike a
/// single running float sum).
#[inline(always)]
pub fn lane_sum(s: &[f32]) -> f32 {
    lane_sum_by(s, |x| x)
}

/// The largest value of a non-empty slice (NaNs aside), in eight lanes
/// so the loop vectorises (`f32::max` carries NaN rules that keep it
/// scalar).
#[inline(always)]
pub fn lane_max(s: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    lanes
        .into_iter()
        .chain(chunks.remainder().iter().copied())
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// `Σ f(x)` over a slice in eight independent lanes.
#[inline(always)]
pub fn lane_sum_by(s: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    // Eight, not the attention's block width: the order of this sum is part
    // of the model's output, kept as it was when blocks were eight lanes.
    const SUM_LANES: usize = 8;
    let mut lanes = [0f32; SUM_LANES];
    let mut chunks = s.chunks_exact(SUM_LANES);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&x| f(x)).sum::<f32>()
}

/// The end of a linear layer on one output row, in one pass:
/// `dst = act(src + bias) + residual`. `dst` is only written, so it may be
/// fresh memory (the int8 product's output is never zeroed first).
#[inline(always)]
pub fn finish_into(
    dst: &mut [MaybeUninit<f32>],
    src: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    gelu_act: bool,
) {
    let n = dst.len();
    let (src, bias) = (&src[..n], &bias[..n]);
    // One branch-free loop per case, so each vectorises.
    match (gelu_act, residual) {
        (false, None) => {
            for ((d, &s), &b) in dst.iter_mut().zip(src).zip(bias) {
                d.write(s + b);
            }
        }
        (true, None) => {
            for ((d, &s), &b) in dst.iter_mut().zip(src).zip(bias) {
                d.write(gelu(s + b));
            }
        }
        (false, Some(res)) => {
            for (((d, &s), &b), &r) in dst.iter_mut().zip(src).zip(bias).zip(&res[..n]) {
                d.write(s + b + r);
            }
        }
        (true, Some(res)) => {
            for (((d, &s), &b), &r) in dst.iter_mut().zip(src).zip(bias).zip(&res[..n]) {
                d.write(gelu(s + b) + r);
            }
        }
    }
}

/// [`finish_into`] for one panel's slice of a row (`dst.len() <= NR`). A
/// whole panel goes through a copy of the loop whose length is the constant
/// [`NR`], so it compiles to a few straight vector instructions; on a slice
/// of unknown length the vectoriser's main loop wants more than 16 values
/// and a panel would run the scalar remainder (measured: an int8 query went
/// from 6.6 to 5.35 ms). Same operations in the same order, so the results
/// are identical.
#[inline(always)]
pub fn finish_panel(
    dst: &mut [MaybeUninit<f32>],
    src: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    gelu_act: bool,
) {
    let Ok(out) = <&mut [MaybeUninit<f32>; NR]>::try_from(&mut *dst) else {
        return finish_into(dst, src, bias, residual, gelu_act);
    };
    let fixed = |s: &[f32]| -> [f32; NR] { s[..NR].try_into().unwrap() };
    let residual = residual.map(fixed);
    finish_into(
        out,
        &fixed(src),
        &fixed(bias),
        residual.as_ref().map(|r| &r[..]),
        gelu_act,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{dispatch, Kernel};
    use candle_core::{Device, Tensor};

    dispatch!(
        /// [`finish_into`] for `kernel` (the products inline `finish_into` themselves).
        ///
        /// # Safety
        /// `kernel` is supported by this CPU.
        unsafe fn finish_into_with => finish_into, (
            dst: &mut [MaybeUninit<f32>], src: &[f32], bias: &[f32], residual: Option<&[f32]>,
            gelu_act: bool,
        )
    );

    fn kernels() -> Vec<Kernel> {
        Kernel::supported()
    }

    #[test]
    fn erf_matches_reference_values() {
        // Reference values of erf to 7+ digits.
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-1.5, -0.966_105_2),
            (3.0, 0.999_977_9),
            (-6.0, -1.0),
        ] {
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }

    /// Every length around the eight lanes, the largest value anywhere
    /// (remainder included), all values negative.
    #[test]
    fn lane_max_finds_the_largest_value() {
        for len in 1..=25 {
            for top in 0..len {
                let s: Vec<f32> = (0..len)
                    .map(|i| if i == top { -0.5 } else { -1.0 - i as f32 })
                    .collect();
                assert_eq!(lane_max(&s), -0.5, "length {len}, largest at {top}");
            }
        }
    }

    #[test]
    fn exp_matches_std_within_two_ulps_scale() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, std {want}"
            );
            x += 0.0137;
        }
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn gelu_matches_candle_for_every_kernel() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, 4096, &d).unwrap();
        let want = x.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        let bias = vec![0f32; 4096];
        for kernel in kernels() {
            let src = x.to_vec1::<f32>().unwrap();
            let mut got = vec![MaybeUninit::uninit(); src.len()];
            unsafe { finish_into_with(kernel, &mut got, &src, &bias, None, true) };
            // SAFETY: `finish_into` wrote every value.
            let got: Vec<f32> = got
                .into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 2e-6, "{kernel:?}: {worst}");
        }
    }
}
