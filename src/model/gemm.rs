//! Matrix products against weights packed once, at load: `y = act(x · Wᵀ + b)`
//! for the encoder's linear layers.
//!
//! Why not candle's `matmul`: it packs the weight matrix into panels on every
//! call. For a 16-token query that repacking is most of the work (the
//! twelve layers hold 85 MB of f32 weights, read and rewritten per call),
//! and the bias and activation are separate passes. Here the weights are
//! stored in the microkernel's panel layout (`[n / 16][k][16]`), the bias and
//! GELU are applied to each output tile while it is still in L1, and the work
//! is split over rayon's threads by row blocks (bulk) or by column panels
//! (short inputs), so both shapes keep every core busy.
//!
//! Weights are kept as f32 or as f16 (halving memory traffic, widened to f32
//! in registers with F16C); accumulation is always f32. The 6×16 microkernel
//! uses AVX2+FMA, chosen at run time; every other CPU, or `PAREIL_KERNEL=portable`,
//! gets the portable path, and the tests compare both with a naive product.

use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::model::kernels::{dispatch, finish_row};

/// Columns per packed panel (two 8-lane registers).
const NR: usize = 16;
/// Rows per microkernel call.
const MR: usize = 6;
/// Depth per pass: a panel's `KC × 16` slice (16 KiB in f32) stays in L1.
const KC: usize = 4096;
/// Rows per parallel task when splitting by rows.
const MC: usize = 72;

/// The element-wise step fused after the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    /// Exact (erf) GELU, as BERT uses.
    Gelu,
}

/// How the linear layers' weights are stored; products always accumulate in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// The checkpoint's values, exactly.
    F32,
    /// Rounded to half precision: half the memory traffic, cosine ≥ 0.9999
    /// to the f32 vectors on the golden texts (tested).
    #[default]
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

/// A `[out, in]` weight matrix and its bias, packed for [`PackedLinear::forward`].
pub struct PackedLinear {
    kernel: Kernel,
    k: usize,
    n: usize,
    panels: Panels,
    bias: Vec<f32>,
}

/// Which microkernel a [`PackedLinear`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Avx2Fma,
    Portable,
}

/// The fastest kernel this CPU supports, unless `PAREIL_KERNEL=portable`.
pub fn detected_kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        if std::env::var("PAREIL_KERNEL").is_ok_and(|v| v == "portable") {
            return Kernel::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    })
}

impl PackedLinear {
    /// Packs `weight` (`[n, k]`, row-major, as stored by PyTorch) and `bias` (`[n]`).
    pub fn new(
        weight: &[f32],
        bias: Vec<f32>,
        n: usize,
        k: usize,
        format: Precision,
        kernel: Kernel,
    ) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not [{n}, {k}]");
        assert_eq!(bias.len(), n, "bias is not [{n}]");
        let panels_n = n.div_ceil(NR);
        let mut packed = vec![0f32; panels_n * k * NR];
        for j in 0..n {
            let (panel, lane) = (j / NR, j % NR);
            let row = &weight[j * k..(j + 1) * k];
            let base = panel * k * NR;
            for (p, &w) in row.iter().enumerate() {
                packed[base + p * NR + lane] = w;
            }
        }
        let panels = match format {
            Precision::F32 => Panels::F32(packed),
            Precision::F16 => Panels::F16(packed.iter().map(|&w| half::f16::from_f32(w)).collect()),
        };
        PackedLinear {
            kernel,
            k,
            n,
            panels,
            bias,
        }
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `act(x · Wᵀ + b) + residual` for `x` of `m` rows of `k` values;
    /// returns `m` rows of `n` (`residual`, if any, is `m` rows of `n` too).
    pub fn forward(
        &self,
        x: &[f32],
        m: usize,
        act: Activation,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input is not [{m}, {}]", self.k);
        if let Some(r) = residual {
            assert_eq!(r.len(), m * self.n, "residual is not [{m}, {}]", self.n);
        }
        let mut out = vec![0f32; m * self.n];
        if m == 0 {
            return out;
        }
        let panels_n = self.n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        let out_ptr = SendPtr(out.as_mut_ptr());
        // Split by rows when there are enough of them to feed every thread,
        // otherwise by column panels (a short query still uses all cores).
        let row_blocks = m.div_ceil(MC);
        if threads == 1 {
            // SAFETY: one task writes all of `out`.
            unsafe { self.tile(x, 0..m, 0..panels_n, act, residual, out_ptr) };
        } else if row_blocks >= threads {
            (0..row_blocks).into_par_iter().for_each(|rb| {
                let rows = rb * MC..((rb + 1) * MC).min(m);
                // SAFETY: each task writes only its own rows of `out`.
                unsafe { self.tile(x, rows, 0..panels_n, act, residual, out_ptr) };
            });
        } else {
            let per = panels_n.div_ceil(threads * 2).max(1);
            let groups = panels_n.div_ceil(per);
            (0..groups).into_par_iter().for_each(|g| {
                let panels = g * per..((g + 1) * per).min(panels_n);
                // SAFETY: each task writes only its own column panels of `out`.
                unsafe { self.tile(x, 0..m, panels, act, residual, out_ptr) };
            });
        }
        out
    }

    /// Computes rows `rows` × panels `panels` of the output.
    ///
    /// # Safety
    /// `out` points to `m * n` floats and no other thread writes this tile.
    unsafe fn tile(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        act: Activation,
        residual: Option<&[f32]>,
        out: SendPtr,
    ) {
        tile_with(self.kernel, self, x, rows, panels, act, residual, out)
    }
}

dispatch!(
    /// [`tile_inner`] for `kernel`.
    ///
    /// # Safety
    /// As [`PackedLinear::tile`].
    unsafe fn tile_with => tile_inner, (
        linear: &PackedLinear,
        x: &[f32],
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        act: Activation,
        residual: Option<&[f32]>,
        out: SendPtr,
    )
);

/// The body of [`PackedLinear::tile`], inlined into each kernel's version.
///
/// # Safety
/// As [`PackedLinear::tile`].
#[inline(always)]
unsafe fn tile_inner(
    linear: &PackedLinear,
    x: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    act: Activation,
    residual: Option<&[f32]>,
    out: SendPtr,
) {
    let kernel = linear.kernel;
    let (k, n) = (linear.k, linear.n);
    let mut tile = [0f32; MR * NR];
    let mut widened: Vec<f32> = Vec::new();
    let mut kb = 0;
    while kb < k {
        let kc = KC.min(k - kb);
        let first = kb == 0;
        let last = kb + kc == k;
        for panel in panels.clone() {
            let col0 = panel * NR;
            let cols = NR.min(n - col0);
            let mut r = rows.start;
            while r < rows.end {
                let mr = MR.min(rows.end - r);
                let a = x.as_ptr().add(r * k + kb);
                // Rows past the end re-read the first row; their results are dropped.
                let mut a_rows = [a; MR];
                for (i, p) in a_rows.iter_mut().enumerate().take(mr) {
                    *p = a.add(i * k);
                }
                match (&linear.panels, kernel) {
                    #[cfg(target_arch = "x86_64")]
                    (Panels::F32(w), Kernel::Avx2Fma) => avx2::kernel_f32(
                        kc,
                        &a_rows,
                        w.as_ptr().add(panel * k * NR + kb * NR),
                        &mut tile,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    (Panels::F16(w), Kernel::Avx2Fma) => avx2::kernel_f16(
                        kc,
                        &a_rows,
                        w.as_ptr().add(panel * k * NR + kb * NR),
                        &mut tile,
                    ),
                    (Panels::F32(w), _) => {
                        portable_kernel(kc, &a_rows, &w[(panel * k + kb) * NR..], &mut tile)
                    }
                    (Panels::F16(w), _) => {
                        // Widened once per panel slice, reused by every row group.
                        if r == rows.start {
                            let src = &w[(panel * k + kb) * NR..(panel * k + kb + kc) * NR];
                            widened.resize(src.len(), 0.0);
                            src.convert_to_f32_slice(&mut widened);
                        }
                        portable_kernel(kc, &a_rows, &widened, &mut tile)
                    }
                }
                for i in 0..mr {
                    let row = r + i;
                    let dst = std::slice::from_raw_parts_mut(out.0.add(row * n + col0), cols);
                    let src = &tile[i * NR..i * NR + cols];
                    if first {
                        dst.copy_from_slice(src);
                    } else {
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d += v;
                        }
                    }
                    if last {
                        finish_row(
                            dst,
                            &linear.bias[col0..col0 + cols],
                            residual.map(|res| &res[row * n + col0..row * n + col0 + cols]),
                            act == Activation::Gelu,
                        );
                    }
                }
                r += mr;
            }
        }
        kb += kc;
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint tiles (see `tile`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `tile[i][j] = Σ_p a_rows[i][p] · w[p][j]` over `kc`, in plain Rust
/// (fixed-size rows so the compiler vectorises it for the baseline target).
fn portable_kernel(kc: usize, a_rows: &[*const f32; MR], w: &[f32], tile: &mut [f32; MR * NR]) {
    let mut acc = [[0f32; NR]; MR];
    for (p, wp) in w[..kc * NR].chunks_exact(NR).enumerate() {
        let wp: &[f32; NR] = wp.try_into().unwrap();
        for (row, &a) in acc.iter_mut().zip(a_rows) {
            // SAFETY: the caller's row pointers cover `kc` values each.
            let av = unsafe { *a.add(p) };
            for (t, &wv) in row.iter_mut().zip(wp) {
                *t += av * wv;
            }
        }
    }
    for (dst, row) in tile.chunks_exact_mut(NR).zip(&acc) {
        dst.copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    macro_rules! kernel_body {
        ($kc:expr, $a:expr, $tile:expr, $load:expr) => {{
            let mut c = [[_mm256_setzero_ps(); 2]; MR];
            for p in 0..$kc {
                let (b0, b1) = $load(p);
                for i in 0..MR {
                    let ai = _mm256_broadcast_ss(&*$a[i].add(p));
                    c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
                    c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
                }
            }
            for i in 0..MR {
                _mm256_storeu_ps($tile.as_mut_ptr().add(i * NR), c[i][0]);
                _mm256_storeu_ps($tile.as_mut_ptr().add(i * NR + 8), c[i][1]);
            }
        }};
    }

    /// # Safety
    /// AVX2 and FMA are available; each `a[i]` covers `kc` floats; `w` covers `kc × 16`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_f32(
        kc: usize,
        a: &[*const f32; MR],
        w: *const f32,
        tile: &mut [f32; MR * NR],
    ) {
        kernel_body!(kc, a, tile, |p: usize| {
            (
                _mm256_loadu_ps(w.add(p * NR)),
                _mm256_loadu_ps(w.add(p * NR + 8)),
            )
        })
    }

    /// # Safety
    /// As [`kernel_f32`], plus F16C; `w` holds f16 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn kernel_f16(
        kc: usize,
        a: &[*const f32; MR],
        w: *const half::f16,
        tile: &mut [f32; MR * NR],
    ) {
        let w = w as *const u16;
        kernel_body!(kc, a, tile, |p: usize| {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(w.add(p * NR) as *const __m128i)),
                _mm256_cvtph_ps(_mm_loadu_si128(w.add(p * NR + 8) as *const __m128i)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::gelu;

    fn naive(
        x: &[f32],
        m: usize,
        w: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        act: Activation,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += x[i * k + p] as f64 * w[j * k + p] as f64;
                }
                let y = s as f32 + b[j];
                out[i * n + j] = if act == Activation::Gelu { gelu(y) } else { y };
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn packed_products_match_naive_for_every_kernel_format_and_shape() {
        let mut kernels = vec![Kernel::Portable];
        if detected_kernel() == Kernel::Avx2Fma {
            kernels.push(Kernel::Avx2Fma);
        }
        // Edge shapes: rows not a multiple of 6, columns not of 16, depth over KC.
        for &(m, n, k) in &[
            (1, 16, 8),
            (7, 40, 300),
            (16, 48, 384),
            (150, 33, 520),
            (5, 1, 3),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let b = values(n, 3);
            for act in [Activation::None, Activation::Gelu] {
                let want = naive(&x, m, &w, &b, n, k, act);
                for format in [Precision::F32, Precision::F16] {
                    // f16 weights: relative error 2^-11 per weight, summed over k.
                    let tol = match format {
                        Precision::F32 => 1e-4,
                        Precision::F16 => 2e-2,
                    };
                    for &kernel in &kernels {
                        let packed = PackedLinear::new(&w, b.clone(), n, k, format, kernel);
                        let got = packed.forward(&x, m, act, None);
                        let worst = got
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0f32, f32::max);
                        assert!(
                            worst < tol,
                            "{m}x{n}x{k} {act:?} {format:?} {kernel:?}: {worst}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn split_by_columns_and_by_rows_agree() {
        let (n, k) = (64, 100);
        let w = values(n * k, 4);
        let b = values(n, 5);
        let packed = PackedLinear::new(&w, b.clone(), n, k, Precision::F32, detected_kernel());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for m in [2, 300] {
            let x = values(m * k, 6);
            let one = packed.forward(&x, m, Activation::Gelu, None);
            let three = pool.install(|| packed.forward(&x, m, Activation::Gelu, None));
            assert_eq!(one, three, "m = {m}");
        }
    }
}
