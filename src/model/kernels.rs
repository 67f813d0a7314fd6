//! Fused kernels for the encoder: exact (erf) GELU and softmax on a
//! branch-free `exp` the compiler can vectorise, bias/activation epilogues,
//! and per-sequence attention over packed `[tokens, 3·hidden]` QKV rows.
//! candle's generic broadcast add and its scalar `erf` cost about as much as
//! the matrix products they follow (measured: 18 ms and 44 ms for a
//! 2048×1536 activation on one core, against 42 ms for its matmul), and its
//! per-head attention is a dozen small ops per sequence.
//!
//! Each loop is written once and compiled three times: for AVX-512, for
//! AVX2+FMA (chosen at run time through the `dispatch!` macro) and for the
//! baseline target.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::gemm::{Kernel, NR};

/// Defines `$name(kernel, args…)`, which runs the `#[inline(always)]`
/// function `$inner(args…)` compiled for AVX-512 (F/BW/VL/VNNI) when
/// `kernel` is [`Kernel::Avx512Vnni`], for AVX2+FMA when it has them
/// ([`Kernel::has_avx2`]) and for the baseline target otherwise. Each
/// version does the same IEEE operations per value (wider vectors, no
/// reassociation), so they agree bit for bit. (A closure
/// would not do: it is a function of its own, compiled without the feature.)
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis unsafe fn $name:ident => $inner:path, ($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name(kernel: $crate::model::gemm::Kernel, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if kernel == $crate::model::gemm::Kernel::Avx512Vnni {
                    return avx512($($arg),*);
                }
                if kernel.has_avx2() {
                    return avx2($($arg),*);
                }
            }
            let _ = kernel;
            $inner($($arg),*)
        }
    };
}
pub(crate) use dispatch;

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
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// erf with absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26), which
/// is below f32 resolution around GELU's working range; branch-free so the
/// compiler can vectorise the loop around it.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    const P: f32 = 0.327_591_1;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let y = 1.0 - (((((A5 * t + A4) * t) + A3) * t + A2) * t + A1) * t * exp(-a * a);
    y.copysign(x)
}

/// Exact GELU: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The end of a linear layer on one output row, in one pass:
/// `dst = act(src + bias) + residual`.
#[inline(always)]
pub fn finish_into(
    dst: &mut [f32],
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
                *d = s + b;
            }
        }
        (true, None) => {
            for ((d, &s), &b) in dst.iter_mut().zip(src).zip(bias) {
                *d = gelu(s + b);
            }
        }
        (false, Some(res)) => {
            for (((d, &s), &b), &r) in dst.iter_mut().zip(src).zip(bias).zip(&res[..n]) {
                *d = s + b + r;
            }
        }
        (true, Some(res)) => {
            for (((d, &s), &b), &r) in dst.iter_mut().zip(src).zip(bias).zip(&res[..n]) {
                *d = gelu(s + b) + r;
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
    dst: &mut [f32],
    src: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    gelu_act: bool,
) {
    let Ok(out) = <&mut [f32; NR]>::try_from(&mut *dst) else {
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

/// Multi-head self-attention over packed sequences, as one candle op.
///
/// The input is the fused projection's `[tokens, 3·hidden]` output (queries,
/// keys, values side by side); `lens` are the sequences' lengths in order.
/// Each (sequence, head) pair is one task: keys are copied transposed so the
/// scores for one query are `Σ_c q_c · Kᵀ[c]` (contiguous, vectorised, no
/// horizontal sums), softmax uses [`exp`], and the context is a running
/// `Σ_j p_j · V[j]`. Output: `[tokens, hidden]`, heads side by side as
/// BERT's reshape expects.
pub struct PackedAttention<'a> {
    pub lens: &'a [usize],
    pub heads: usize,
    pub kernel: Kernel,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (rows of one sequence) × (columns of one head) blocks.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl CustomOp1 for PackedAttention<'_> {
    fn name(&self) -> &'static str {
        "pareil-packed-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{}: f32 only", self.name());
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: contiguous input only", self.name());
        };
        let (tokens, three_h) = layout.shape().dims2()?;
        let h = three_h / 3;
        if three_h % 3 != 0 || h % self.heads != 0 || self.lens.iter().sum::<usize>() != tokens {
            candle_core::bail!(
                "{}: [{tokens}, {three_h}] does not hold {} heads over sequences {:?}",
                self.name(),
                self.heads,
                self.lens
            );
        }
        let qkv = &data[start..end];
        let d = h / self.heads;
        let mut out = vec![0f32; tokens * h];
        let out_ptr = OutPtr(out.as_mut_ptr());
        let mut starts = Vec::with_capacity(self.lens.len());
        let mut offset = 0;
        for &len in self.lens {
            starts.push(offset);
            offset += len;
        }
        let tasks: Vec<(usize, usize)> = (0..self.lens.len())
            .flat_map(|s| (0..self.heads).map(move |head| (s, head)))
            .collect();
        tasks.par_iter().for_each(|&(s, head)| {
            let (first, len) = (starts[s], self.lens[s]);
            // SAFETY: this task alone writes these rows' columns of this head;
            // the kernel was chosen by run-time detection.
            unsafe { attend_with(self.kernel, qkv, h, d, first, len, head, out_ptr) };
        });
        Ok((CpuStorage::F32(out), Shape::from((tokens, h))))
    }
}

dispatch!(
    /// [`attend`] for `kernel`.
    ///
    /// # Safety
    /// As [`attend`]; `kernel` is supported by this CPU.
    unsafe fn attend_with => attend, (
        qkv: &[f32], h: usize, d: usize, first: usize, len: usize, head: usize, out: OutPtr,
    )
);

/// Query rows scored together (one key load feeds this many FMAs).
const QROWS: usize = 4;
/// Lanes per register block (one AVX2 register of f32).
const LANES: usize = 8;

/// One head of one sequence; see [`PackedAttention`]. Keys and values are
/// copied zero-padded to multiples of 8 so both products run on whole
/// 8-lane blocks held in registers for [`QROWS`] query rows at a time.
///
/// # Safety
/// `out` holds `[tokens, h]` floats and no other task writes rows
/// `first..first + len`, columns of `head`.
#[inline(always)]
unsafe fn attend(
    qkv: &[f32],
    h: usize,
    d: usize,
    first: usize,
    len: usize,
    head: usize,
    out: OutPtr,
) {
    let row = |t: usize| &qkv[(first + t) * 3 * h..(first + t + 1) * 3 * h];
    let scale = 1.0 / (d as f32).sqrt();
    let (lp, dp) = (len.next_multiple_of(LANES), d.next_multiple_of(LANES));
    // Kᵀ as [d][lp] and V as [len][dp].
    let mut kt = vec![0f32; d * lp];
    let mut v = vec![0f32; len * dp];
    for j in 0..len {
        let r = row(j);
        for (c, &k) in r[h + head * d..h + (head + 1) * d].iter().enumerate() {
            kt[c * lp + j] = k;
        }
        v[j * dp..j * dp + d].copy_from_slice(&r[2 * h + head * d..2 * h + (head + 1) * d]);
    }
    let mut q = vec![0f32; QROWS * d];
    let mut scores = vec![0f32; QROWS * lp];
    let mut i0 = 0;
    while i0 < len {
        let rows = QROWS.min(len - i0);
        // Rows past the end stay zero; their results are dropped.
        q.fill(0.0);
        for r in 0..rows {
            for (dst, &x) in q[r * d..(r + 1) * d]
                .iter_mut()
                .zip(&row(i0 + r)[head * d..(head + 1) * d])
            {
                *dst = x * scale;
            }
        }
        // scores[r][j] = q_r · k_j, eight keys at a time.
        for jb in (0..lp).step_by(LANES) {
            let mut acc = [[0f32; LANES]; QROWS];
            for c in 0..d {
                let kv: &[f32; LANES] = kt[c * lp + jb..c * lp + jb + LANES].try_into().unwrap();
                // Constant trip counts, so the accumulators stay in registers
                // (iterating `q.chunks_exact(d)` kept them in memory: a
                // store-to-load round trip per FMA, measured 8 % of a query).
                let qc: [f32; QROWS] = std::array::from_fn(|r| q[r * d + c]);
                for r in 0..QROWS {
                    for l in 0..LANES {
                        acc[r][l] += qc[r] * kv[l];
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                scores[r * lp + jb..r * lp + jb + LANES].copy_from_slice(a);
            }
        }
        // Softmax over the real keys; 1/sum is applied to the context.
        let mut inv = [0f32; QROWS];
        for (r, inv) in inv.iter_mut().enumerate() {
            let s = &mut scores[r * lp..r * lp + len];
            let max = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            for x in s.iter_mut() {
                *x = exp(*x - max);
            }
            *inv = 1.0 / lane_sum(s);
        }
        // ctx_r = Σ_j p_rj · v_j, eight columns at a time.
        for cb in (0..dp).step_by(LANES) {
            let mut acc = [[0f32; LANES]; QROWS];
            for j in 0..len {
                let vv: &[f32; LANES] = v[j * dp + cb..j * dp + cb + LANES].try_into().unwrap();
                let p: [f32; QROWS] = std::array::from_fn(|r| scores[r * lp + j]);
                for r in 0..QROWS {
                    for l in 0..LANES {
                        acc[r][l] += p[r] * vv[l];
                    }
                }
            }
            let cols = LANES.min(d - cb);
            for r in 0..rows {
                let dst = std::slice::from_raw_parts_mut(
                    out.0.add((first + i0 + r) * h + head * d + cb),
                    cols,
                );
                for (o, &x) in dst.iter_mut().zip(&acc[r]) {
                    *o = x * inv[r];
                }
            }
        }
        i0 += rows;
    }
}

/// Sum of a slice in eight independent lanes (vectorisable, unlike a
/// single running float sum).
#[inline(always)]
fn lane_sum(s: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `attention(qkv)` for packed sequences (see [`PackedAttention`]).
pub fn packed_attention(
    qkv: &Tensor,
    lens: &[usize],
    heads: usize,
    kernel: Kernel,
) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&PackedAttention {
        lens,
        heads,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    dispatch!(
        /// [`finish_into`] for `kernel` (the products inline `finish_into` themselves).
        ///
        /// # Safety
        /// `kernel` is supported by this CPU.
        unsafe fn finish_into_with => finish_into, (
            dst: &mut [f32], src: &[f32], bias: &[f32], residual: Option<&[f32]>, gelu_act: bool,
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
            let mut got = vec![0f32; src.len()];
            unsafe { finish_into_with(kernel, &mut got, &src, &bias, None, true) };
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 2e-6, "{kernel:?}: {worst}");
        }
    }

    /// Plain candle attention, one sequence at a time, as the reference.
    fn reference_attention(qkv: &Tensor, lens: &[usize], heads: usize) -> Tensor {
        let h = qkv.dim(1).unwrap() / 3;
        let d = h / heads;
        let mut outs = Vec::new();
        let mut offset = 0;
        for &len in lens {
            let s = qkv.narrow(0, offset, len).unwrap();
            offset += len;
            let split = |i: usize| {
                s.narrow(1, i * h, h)
                    .unwrap()
                    .reshape((len, heads, d))
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let (q, k, v) = (split(0), split(1), split(2));
            let scores = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
            let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
            let ctx = probs.matmul(&v).unwrap().transpose(0, 1).unwrap();
            outs.push(ctx.reshape((len, h)).unwrap());
        }
        Tensor::cat(&outs, 0).unwrap()
    }

    #[test]
    fn packed_attention_matches_per_sequence_candle_attention() {
        let d = Device::Cpu;
        let lens = [1usize, 7, 33, 130];
        let total: usize = lens.iter().sum();
        let heads = 4;
        let qkv = Tensor::randn(0f32, 2.0, (total, 3 * 64), &d).unwrap();
        let want = reference_attention(&qkv, &lens, heads);
        for kernel in kernels() {
            let got = packed_attention(&qkv, &lens, heads, kernel).unwrap();
            let worst = (&got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(worst < 1e-5, "{kernel:?}: {worst}");
        }
        let bad = packed_attention(&qkv, &[total - 1], heads, Kernel::Portable);
        assert!(bad.is_err());
    }
}
