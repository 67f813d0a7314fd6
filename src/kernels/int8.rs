//! The `int8` precision of [`PackedLinear`](super::gemm::PackedLinear):
//! 8-bit weights times 7-bit activations, summed exactly in i32.
//!
//! - Weights: signed 8-bit, one scale per output column (`max |w| / 127`),
//!   packed as `[n / 16][k / 4][16][4]` so one 32-byte load holds four
//!   consecutive depths of eight columns.
//! - Activations: quantised per row as the product runs (so a row's result
//!   never depends on what else is in the batch), asymmetric — a scale and a
//!   zero point — over `0..=127`. The row's [`OUTLIERS`] largest magnitudes
//!   are taken out first and added back exactly in f32: hidden states carry a
//!   few huge features that would otherwise leave the others a handful of
//!   levels.
//!
//! Why 7 bits: AVX2's `vpmaddubsw` multiplies unsigned by signed bytes and
//! adds adjacent pairs into a *saturating* i16; `2 · 127 · 127` fits,
//! `2 · 255 · 127` does not. It then needs one `vpmaddwd` (by ones) to widen
//! four products into i32: two multiply-pipe instructions for 32
//! multiply-adds, twice what f32 FMA does on this CPU. Measured against the
//! f32 model on the golden texts (weights 8-bit in every case): symmetric
//! 8-bit activations 0.9986 worst cosine, asymmetric 7-bit 0.9970, asymmetric
//! 7-bit with four outliers per row 0.9996 — the only variant that both
//! avoids saturation and meets the 0.999 bound.
//!
//! On CPUs with AVX-512 VNNI ([`Kernel::Avx512Vnni`]) one `vpdpbusd` does
//! the multiply, the four-way sum and the i32 accumulation for 16 columns at
//! once. It runs the same 7-bit activations, so its integer sums — and the
//! vectors — are bit-identical to the AVX2 path's (tested).

use std::mem::MaybeUninit;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use self::avx2::{for_rows, kernel_u8s8, kernel_vnni};
use super::gemm::{put_u64, ByteReader};
use super::math::finish_panel;
use super::team::{Shared, Team};
use super::{dispatch, Kernel, NR};

/// What [`product_tile`] applies to each output row after the product.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// One per output column.
    pub bias: &'a [f32],
    /// `m` rows of `n`, added last.
    pub residual: Option<&'a [f32]>,
    pub gelu: bool,
}

/// Values per row kept out of the quantisation and added back in f32.
pub const OUTLIERS: usize = 4;
/// Largest quantised activation (7 bits, see the module doc).
const LEVELS: f32 = 127.0;
/// Values (rows × depth) from which a batch is quantised in parallel. A
/// 16-token query's rows (16 × 384) already are: on 2 threads the worker
/// otherwise waits while the caller quantises each layer's inputs alone
/// (measured, Zen 5, alternated runs: a 16-token query 2.16 → 1.93 ms at 2
/// threads; the old cut of 64 rows left every query serial here).
const PARALLEL_VALUES: usize = 4096;

/// A `[n, k]` weight matrix in 8 bits, packed for [`kernel`]s.
pub struct Weights {
    /// `k` rounded up to a multiple of 4 (padding weights are 0).
    k4: usize,
    /// `[n / 16][k4 / 4][16][4]`, the last panel zero-padded.
    q: Vec<i8>,
    /// Per output column: the weight of one quantisation step.
    scales: Vec<f32>,
    /// Per output column: `Σ_p q[col][p]`, to remove the activations' zero point.
    sums: Vec<i32>,
}

impl Weights {
    /// Quantises `weight` (`[n, k]`, row-major as PyTorch stores it).
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        let k4 = k.div_ceil(4) * 4;
        let padded_n = n.div_ceil(NR) * NR;
        let mut q = vec![0i8; padded_n * k4];
        let mut scales = vec![1f32; padded_n];
        let mut sums = vec![0i32; padded_n];
        for j in 0..n {
            let row = &weight[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
            if max > 0.0 {
                scales[j] = max / 127.0;
            }
            let base = (j / NR) * k4 * NR + (j % NR) * 4;
            for (p, &w) in row.iter().enumerate() {
                let v = (w / scales[j]).round().clamp(-127.0, 127.0) as i8;
                q[base + (p / 4) * NR * 4 + p % 4] = v;
                sums[j] += v as i32;
            }
        }
        Weights {
            k4,
            q,
            scales,
            sums,
        }
    }
}

impl Weights {
    /// Appends the packed form for the pack cache (see `PackedLinear::write_to`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        put_u64(out, self.k4 as u64);
        put_u64(out, self.q.len() as u64);
        out.extend(self.q.iter().map(|&v| v as u8));
        put_u64(out, self.scales.len() as u64);
        self.scales
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        self.sums
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }

    /// Reads it back for a `[n, k]` layer; `None` unless every length is
    /// what [`Weights::new`] makes for that shape.
    pub fn read_from(r: &mut ByteReader<'_>, n: usize, k: usize) -> Option<Self> {
        let k4 = k.div_ceil(4) * 4;
        let padded_n = n.div_ceil(NR) * NR;
        r.len_exactly(k4)?;
        let q_len = r.len_exactly(padded_n * k4)?;
        let q = r.take(q_len)?.iter().map(|&b| b as i8).collect();
        let cols = r.len_exactly(padded_n)?;
        let scales = r.f32s(cols)?;
        let sums = r.i32s(cols)?;
        Some(Weights {
            k4,
            q,
            scales,
            sums,
        })
    }
}

/// Rows of activations quantised for [`Weights`].
pub struct Rows {
    k4: usize,
    /// `[m][k4]`, values `0..=127`; outliers and padding hold the zero point.
    q: Vec<u8>,
    params: Vec<RowParams>,
}

impl Rows {
    pub fn view(&self) -> RowsRef<'_> {
        RowsRef {
            k4: self.k4,
            q: &self.q,
            params: &self.params,
        }
    }
}

/// Quantised rows as the products read them, wherever they are stored.
#[derive(Clone, Copy)]
pub struct RowsRef<'a> {
    k4: usize,
    q: &'a [u8],
    params: &'a [RowParams],
}

/// Room for a team to quantise up to `m` rows of up to `k` values into,
/// reused by every product of a forward pass.
pub struct SharedRows {
    q: Shared<u8>,
    params: Shared<RowParams>,
}

impl SharedRows {
    pub fn new(m: usize, k: usize) -> Self {
        SharedRows {
            q: Shared::new(m * k.div_ceil(4) * 4),
            params: Shared::new(m),
        }
    }

    /// The team quantises `m` rows of `k` values, each thread its share of
    /// the rows (as [`quantize`] does, bit for bit), and returns them all.
    ///
    /// # Safety
    /// Every thread of `team` calls this together, and no view returned by
    /// an earlier call is used afterwards.
    pub unsafe fn quantize(
        &self,
        team: &Team,
        kernel: Kernel,
        x: &[f32],
        m: usize,
        k: usize,
    ) -> RowsRef<'_> {
        let k4 = k.div_ceil(4) * 4;
        assert!(x.len() == m * k && m * k4 <= self.q.len() && m <= self.params.len());
        let mine = team.share(m);
        let q = self.q.part_mut(mine.start * k4..mine.end * k4);
        let params = self.params.part_mut(mine.clone());
        quantize_rows(kernel, &x[mine.start * k..mine.end * k], k, k4, q, params);
        team.sync();
        RowsRef {
            k4,
            q: self.q.part(0..m * k4),
            params: self.params.part(0..m),
        }
    }
}

/// How one row was quantised: `x[p] ≈ step · (q[p] − zero)`, plus the
/// outliers, exact.
#[derive(Clone, Copy, Default)]
struct RowParams {
    step: f32,
    zero: i32,
    /// Depths and values taken out of the row (value 0 where unused).
    outliers: [(u32, f32); OUTLIERS],
}

/// Quantises `m` rows of `k` values (see the module doc).
pub fn quantize(kernel: Kernel, x: &[f32], m: usize, k: usize) -> Rows {
    assert_eq!(x.len(), m * k, "input is not [{m}, {k}]");
    let k4 = k.div_ceil(4) * 4;
    let mut q = vec![0u8; m * k4];
    let mut params = vec![RowParams::default(); m];
    // SAFETY (both branches): the kernel was chosen by run-time detection.
    let threads = rayon::current_num_threads();
    if m >= 2 && m * k >= PARALLEL_VALUES && threads > 1 {
        // A few tasks per thread: a row is too small a task on its own.
        let rows_per_task = m.div_ceil(2 * threads);
        q.par_chunks_mut(k4)
            .zip(x.par_chunks(k))
            .zip(params.par_iter_mut())
            .with_min_len(rows_per_task)
            .for_each(|((q, x), p)| unsafe { quantize_row_with(kernel, x, q, p) });
    } else {
        unsafe { quantize_rows(kernel, x, k, k4, &mut q, &mut params) };
    }
    Rows { k4, q, params }
}

/// Quantises the rows of `x` (`k` values each) one after another into `q`
/// (`k4` bytes each) and `params`.
///
/// # Safety
/// `kernel` was chosen by run-time detection.
unsafe fn quantize_rows(
    kernel: Kernel,
    x: &[f32],
    k: usize,
    k4: usize,
    q: &mut [u8],
    params: &mut [RowParams],
) {
    for ((q, x), p) in q.chunks_mut(k4).zip(x.chunks(k)).zip(params) {
        quantize_row_with(kernel, x, q, p);
    }
}

/// Quantises one row into `q` (`k4` long) and `params`.
///
/// # Safety
/// `kernel` was chosen by run-time detection.
unsafe fn quantize_row_with(kernel: Kernel, x: &[f32], q: &mut [u8], params: &mut RowParams) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma | Kernel::Avx512Vnni => avx2::quantize_row(x, q, params),
        _ => quantize_row::<Portable>(x, q, params),
    }
}

/// The passes over a row that dominate quantising it; the AVX2 versions
/// give bit-identical results (same operations, same order).
trait RowPasses {
    /// `(max |v|, min v, max v)` over `x` (`(0, +inf, -inf)` for an empty
    /// slice).
    fn extremes(x: &[f32]) -> (f32, f32, f32);
    /// `q[p] = clamp(round_ties_even(x[p] · inv + zero), 0, 127)`.
    fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]);
    /// Calls `f(p, |x[p]|)` for each `p` where `|x[p]| ≥ cut`, in order.
    fn each_at_least(x: &[f32], cut: f32, f: impl FnMut(usize, f32));
}

struct Portable;

impl RowPasses for Portable {
    #[inline(always)]
    fn extremes(x: &[f32]) -> (f32, f32, f32) {
        x.iter().fold(
            (0f32, f32::INFINITY, f32::NEG_INFINITY),
            |(m, lo, hi), &v| (m.max(v.abs()), lo.min(v), hi.max(v)),
        )
    }

    #[inline(always)]
    fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
        for (d, &v) in q.iter_mut().zip(x) {
            *d = (v * inv + zero).round_ties_even().clamp(0.0, LEVELS) as u8;
        }
    }

    #[inline(always)]
    fn each_at_least(x: &[f32], cut: f32, mut f: impl FnMut(usize, f32)) {
        for (p, &v) in x.iter().enumerate() {
            if v.abs() >= cut {
                f(p, v.abs());
            }
        }
    }
}

/// Values per block of the outlier scan. The few candidate blocks are
/// scanned eight values at a time, so long blocks cost little there, and
/// fewer blocks mean fewer maxima to rank (64 against 32, alternated 1-thread
/// queries on Zen 5: 2.50 vs 2.54 ms median; value-by-value scan of 32:
/// 2.55 ms).
const SCAN: usize = 64;
/// Blocks kept on the stack (rows up to 4096 values); longer rows allocate.
const MAX_BLOCKS: usize = 64;

#[inline(always)]
fn quantize_row<P: RowPasses>(x: &[f32], q: &mut [u8], params: &mut RowParams) {
    // The largest magnitudes, descending, and the next one (`bound`): every
    // value left in the row lies within ±bound. The OUTLIERS + 1 largest
    // values all lie in blocks whose maximum is at least `cut`, the
    // (OUTLIERS + 1)-th largest block maximum (those blocks' maxima are
    // OUTLIERS + 1 values ≥ cut), so only those blocks — about OUTLIERS + 1
    // of a row's 6 or 24 — are read. (Sorting the blocks instead was a
    // tenth of a query's time.)
    let mut top = [(0u32, -1f32); OUTLIERS + 1];
    let mut stack = [0f32; MAX_BLOCKS];
    let mut heap: Vec<f32> = Vec::new();
    let count = x.len().div_ceil(SCAN);
    let maxima: &mut [f32] = if count <= MAX_BLOCKS {
        &mut stack[..count]
    } else {
        heap.resize(count, 0.0);
        &mut heap
    };
    // The OUTLIERS + 1 largest block maxima, descending, and the row's
    // smallest and largest values.
    let mut largest = [(0u32, -1f32); OUTLIERS + 1];
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for (c, (block, slot)) in x.chunks(SCAN).zip(maxima.iter_mut()).enumerate() {
        let (abs, lo, hi) = P::extremes(block);
        *slot = abs;
        (min, max) = (min.min(lo), max.max(hi));
        keep_largest(&mut largest, c as u32, abs);
    }
    let cut = largest[OUTLIERS].1;
    for (c, &max) in maxima.iter().enumerate() {
        if max < cut || max <= top[OUTLIERS].1 {
            continue;
        }
        let first = c * SCAN;
        // Values below `cut` cannot be among the largest (see above): the
        // few at or above it are inserted, the rest skipped eight at a time.
        P::each_at_least(&x[first..(first + SCAN).min(x.len())], cut, |i, a| {
            keep_largest(&mut top, (first + i) as u32, a)
        });
    }
    let bound = top[OUTLIERS].1.max(0.0);
    // The range of the row clamped to ±bound, and 0: clamping is monotone,
    // so that is the row's extremes clamped (no second pass over the row).
    let clamp = |v: f32| v.max(-bound).min(bound);
    let (lo, hi) = (0f32.min(clamp(min)), 0f32.max(clamp(max)));
    let step = if hi > lo { (hi - lo) / LEVELS } else { 1.0 };
    let zero = (-lo / step).round_ties_even().clamp(0.0, LEVELS);
    P::quantize(x, 1.0 / step, zero, q);
    for d in &mut q[x.len()..] {
        *d = zero as u8;
    }
    params.step = step;
    params.zero = zero as i32;
    params.outliers = [(0, 0.0); OUTLIERS];
    for (slot, &(p, a)) in params.outliers.iter_mut().zip(&top[..OUTLIERS]) {
        // Unused entries (rows of fewer than OUTLIERS + 1 values) stay at -1.
        if a >= 0.0 {
            *slot = (p, x[p as usize]);
            q[p as usize] = zero as u8;
        }
    }
}

/// Inserts `(index, value)` into `top` (descending by value) if `value` is
/// larger than its last entry; an equal value stays behind the earlier one.
#[inline(always)]
fn keep_largest<const N: usize>(top: &mut [(u32, f32); N], index: u32, value: f32) {
    if value > top[N - 1].1 {
        let mut at = N - 1;
        while at > 0 && top[at - 1].1 < value {
            top[at] = top[at - 1];
            at -= 1;
        }
        top[at] = (index, value);
    }
}

/// Rows per microkernel call (4 rows × 2 accumulators fit the 16 AVX2
/// registers beside the weights, the broadcast and the constant).
const MR: usize = 4;

/// `out[r][c] = act(Σ_p x[r][p] · w[c][p] + bias[c]) + residual[r][c]` for
/// rows `rows` and the 16 columns of panel `panel`; rows are `n` long.
///
/// # Safety
/// `out` points to room for `m * n` floats (only written here), no other
/// thread writes this tile, and
/// `kernel` was chosen by run-time detection.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product_tile(
    kernel: Kernel,
    w: &Weights,
    x: RowsRef<'_>,
    n: usize,
    rows: std::ops::Range<usize>,
    panel: usize,
    out: *mut f32,
    epilogue: Epilogue<'_>,
) {
    assert_eq!(x.k4, w.k4, "input rows and weights differ in depth");
    tile_with(kernel, kernel, w, x, n, rows, panel, out, epilogue)
}

dispatch!(
    /// [`tile`] compiled for `kernel`.
    ///
    /// # Safety
    /// As [`product_tile`].
    unsafe fn tile_with => tile, (
        kernel: Kernel,
        w: &Weights,
        x: RowsRef<'_>,
        n: usize,
        rows: std::ops::Range<usize>,
        panel: usize,
        out: *mut f32,
        epilogue: Epilogue<'_>,
    )
);

/// # Safety
/// As [`product_tile`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    kernel: Kernel,
    w: &Weights,
    x: RowsRef<'_>,
    n: usize,
    rows: std::ops::Range<usize>,
    panel: usize,
    out: *mut f32,
    epilogue: Epilogue<'_>,
) {
    let k4 = w.k4;
    let col0 = panel * NR;
    let cols = NR.min(n - col0);
    let panel_q = &w.q[panel * k4 * NR..(panel + 1) * k4 * NR];
    let scales: &[f32; NR] = w.scales[col0..col0 + NR].try_into().unwrap();
    let sums: &[i32; NR] = w.sums[col0..col0 + NR].try_into().unwrap();
    let mut acc = [0i32; MR * NR];
    let mut r = rows.start;
    while r < rows.end {
        let mr = MR.min(rows.end - r);
        let a = x.q.as_ptr().add(r * k4);
        // Rows past the end re-read the first row; their results are dropped.
        let mut a_rows = [a; MR];
        for (i, p) in a_rows.iter_mut().enumerate().take(mr) {
            *p = a.add(i * k4);
        }
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                for_rows!(mr, kernel_u8s8(k4 / 4, &a_rows, panel_q.as_ptr(), &mut acc))
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                for_rows!(mr, kernel_vnni(k4 / 4, &a_rows, panel_q.as_ptr(), &mut acc))
            }
            _ => portable_kernel(k4 / 4, &a_rows, panel_q, &mut acc),
        }
        for i in 0..mr {
            let row = r + i;
            let acc_row: &[i32; NR] = acc[i * NR..(i + 1) * NR].try_into().unwrap();
            let mut y = [0f32; NR];
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512Vnni => {
                    avx2::dequantize16(acc_row, sums, scales, &x.params[row], panel_q, &mut y)
                }
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2Fma => {
                    avx2::dequantize(acc_row, sums, scales, &x.params[row], panel_q, &mut y)
                }
                _ => dequantize(acc_row, sums, scales, &x.params[row], panel_q, &mut y),
            }
            let dst = std::slice::from_raw_parts_mut(
                out.add(row * n + col0).cast::<MaybeUninit<f32>>(),
                cols,
            );
            finish_panel(
                dst,
                &y[..cols],
                &epilogue.bias[col0..col0 + cols],
                epilogue
                    .residual
                    .map(|res| &res[row * n + col0..row * n + col0 + cols]),
                epilogue.gelu,
            );
        }
        r += mr;
    }
}

/// One row of a tile back to real numbers (each outlier added with one fused
/// multiply-add, in order, on every kernel): `y[c] = scales[c] · (step ·
/// (acc[c] − zero · sums[c]) + Σ_outliers v · w[c][p])`, the weights at
/// depth `p` read from the panel (`w[c][p]` is byte `p % 4` of column `c`'s
/// word in group `p / 4`).
#[inline(always)]
fn dequantize(
    acc: &[i32; NR],
    sums: &[i32; NR],
    scales: &[f32; NR],
    params: &RowParams,
    panel_q: &[i8],
    y: &mut [f32; NR],
) {
    for c in 0..NR {
        y[c] = (acc[c] - params.zero * sums[c]) as f32 * params.step;
    }
    for &(p, v) in &params.outliers {
        if v != 0.0 {
            let group = &panel_q[(p as usize / 4) * NR * 4..];
            for (c, y) in y.iter_mut().enumerate() {
                *y = v.mul_add(group[c * 4 + p as usize % 4] as f32, *y);
            }
        }
    }
    for (y, &s) in y.iter_mut().zip(scales) {
        *y *= s;
    }
}

/// `acc[i][c] = Σ_p a_rows[i][p] · w[c][p]` over `groups` groups of 4 depths.
fn portable_kernel(groups: usize, a_rows: &[*const u8; MR], w: &[i8], acc: &mut [i32; MR * NR]) {
    *acc = [0; MR * NR];
    for (g, wg) in w[..groups * NR * 4].chunks_exact(NR * 4).enumerate() {
        for (i, &a) in a_rows.iter().enumerate() {
            // SAFETY: the caller's row pointers cover `groups * 4` bytes each.
            let av = unsafe { std::slice::from_raw_parts(a.add(g * 4), 4) };
            for c in 0..NR {
                let wc = &wg[c * 4..c * 4 + 4];
                acc[i * NR + c] += (0..4).map(|t| av[t] as i32 * wc[t] as i32).sum::<i32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{quantize_row as quantize_row_for, Portable, RowParams, RowPasses, LEVELS, MR, NR};
    use std::arch::x86_64::*;

    /// [`super::quantize_row`] with AVX2 passes.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_row(x: &[f32], q: &mut [u8], params: &mut RowParams) {
        quantize_row_for::<Avx2>(x, q, params)
    }

    struct Avx2;

    /// Horizontal maximum / minimum of 8 lanes.
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)))
    }

    #[inline(always)]
    unsafe fn hmin(v: __m256) -> f32 {
        let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)))
    }

    impl RowPasses for Avx2 {
        #[inline(always)]
        fn extremes(x: &[f32]) -> (f32, f32, f32) {
            // SAFETY: only called from `quantize_row` above (AVX2 enabled);
            // loads stay within `x`.
            unsafe {
                let sign = _mm256_set1_ps(-0.0);
                let mut m = _mm256_setzero_ps();
                let mut lo = _mm256_set1_ps(f32::INFINITY);
                let mut hi = _mm256_set1_ps(f32::NEG_INFINITY);
                let mut chunks = x.chunks_exact(8);
                for c in &mut chunks {
                    let v = _mm256_loadu_ps(c.as_ptr());
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
                    lo = _mm256_min_ps(lo, v);
                    hi = _mm256_max_ps(hi, v);
                }
                let (rm, rlo, rhi) = Portable::extremes(chunks.remainder());
                (hmax(m).max(rm), hmin(lo).min(rlo), hmax(hi).max(rhi))
            }
        }

        #[inline(always)]
        fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
            // SAFETY: as `extremes`; stores stay within `q` (32 per step).
            unsafe {
                let (vi, vz) = (_mm256_set1_ps(inv), _mm256_set1_ps(zero));
                let (top, bottom) = (_mm256_set1_ps(LEVELS), _mm256_setzero_ps());
                let one = |p: *const f32| {
                    let v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(p), vi), vz);
                    let v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, bottom), top))
                };
                let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                let whole = x.len() / 32 * 32;
                for (src, dst) in x[..whole].chunks_exact(32).zip(q.chunks_exact_mut(32)) {
                    let p = src.as_ptr();
                    let ab = _mm256_packs_epi32(one(p), one(p.add(8)));
                    let cd = _mm256_packs_epi32(one(p.add(16)), one(p.add(24)));
                    let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
                    _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, bytes);
                }
                Portable::quantize(&x[whole..], inv, zero, &mut q[whole..]);
            }
        }

        #[inline(always)]
        fn each_at_least(x: &[f32], cut: f32, mut f: impl FnMut(usize, f32)) {
            // SAFETY: as `extremes`.
            unsafe {
                let (sign, vc) = (_mm256_set1_ps(-0.0), _mm256_set1_ps(cut));
                let mut chunks = x.chunks_exact(8);
                for (c, v) in (&mut chunks).enumerate() {
                    let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(v.as_ptr()));
                    let mut bits = _mm256_movemask_ps(_mm256_cmp_ps(a, vc, _CMP_GE_OQ)) as u32;
                    while bits != 0 {
                        let lane = bits.trailing_zeros() as usize;
                        f(c * 8 + lane, v[lane].abs());
                        bits &= bits - 1;
                    }
                }
                let done = x.len() / 8 * 8;
                Portable::each_at_least(chunks.remainder(), cut, |p, a| f(done + p, a));
            }
        }
    }

    /// Where the weights of outlier depth `p` sit in a panel: the byte
    /// offset of its group of four depths, and the left shift (as `vpslld`
    /// takes it) that moves byte `p % 4` of each column's word to the top,
    /// so an arithmetic shift right by 24 sign-extends it. Shared by both
    /// dequantisers so they pick the same bytes.
    #[inline(always)]
    unsafe fn outlier_word(p: u32) -> (usize, __m128i) {
        (
            (p as usize / 4) * NR * 4,
            _mm_cvtsi32_si128(24 - 8 * (p % 4) as i32),
        )
    }

    /// [`super::dequantize`], eight columns at a time.
    ///
    /// # Safety
    /// AVX2 and FMA are available; `panel_q` is the tile's whole panel.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn dequantize(
        acc: &[i32; NR],
        sums: &[i32; NR],
        scales: &[f32; NR],
        params: &RowParams,
        panel_q: &[i8],
        y: &mut [f32; NR],
    ) {
        let step = _mm256_set1_ps(params.step);
        let zero = _mm256_set1_epi32(params.zero);
        let mut f = [0, 8].map(|c| {
            let a = _mm256_loadu_si256(acc.as_ptr().add(c) as *const __m256i);
            let s = _mm256_loadu_si256(sums.as_ptr().add(c) as *const __m256i);
            let d = _mm256_sub_epi32(a, _mm256_mullo_epi32(zero, s));
            _mm256_mul_ps(_mm256_cvtepi32_ps(d), step)
        });
        // Outliers outside, halves inside: each outlier's group and shift
        // are worked out once per row, not once per half (these few
        // instructions run for every row of every panel: on Zen 3 the
        // outliers were 8 % of a query, 0.45 ms).
        for &(p, v) in &params.outliers {
            if v != 0.0 {
                let (group, up) = outlier_word(p);
                debug_assert!(group + NR * 4 <= panel_q.len());
                let words = panel_q.as_ptr().add(group) as *const __m256i;
                let v = _mm256_set1_ps(v);
                for (h, f) in f.iter_mut().enumerate() {
                    let w = _mm256_srai_epi32(
                        _mm256_sll_epi32(_mm256_loadu_si256(words.add(h)), up),
                        24,
                    );
                    *f = _mm256_fmadd_ps(v, _mm256_cvtepi32_ps(w), *f);
                }
            }
        }
        for (h, f) in f.iter().enumerate() {
            let f = _mm256_mul_ps(*f, _mm256_loadu_ps(scales.as_ptr().add(h * 8)));
            _mm256_storeu_ps(y.as_mut_ptr().add(h * 8), f);
        }
    }

    /// [`super::dequantize`] in one 16-lane pass: the same operations in the same
    /// order, so the same values. Kept beside the 8-lane [`dequantize`]
    /// because it pays: using that one on VNNI CPUs too made the tile's
    /// dequantise-and-epilogue share of a query 40 % larger (perf, measured).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL are available; `panel_q` is the tile's whole panel.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    #[inline]
    pub unsafe fn dequantize16(
        acc: &[i32; NR],
        sums: &[i32; NR],
        scales: &[f32; NR],
        params: &RowParams,
        panel_q: &[i8],
        y: &mut [f32; NR],
    ) {
        let a = _mm512_loadu_si512(acc.as_ptr() as *const __m512i);
        let s = _mm512_loadu_si512(sums.as_ptr() as *const __m512i);
        let d = _mm512_sub_epi32(a, _mm512_mullo_epi32(_mm512_set1_epi32(params.zero), s));
        let mut f = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(params.step));
        for &(p, v) in &params.outliers {
            if v != 0.0 {
                let (group, up) = outlier_word(p);
                let group = &panel_q[group..group + NR * 4];
                let words = _mm512_loadu_si512(group.as_ptr() as *const __m512i);
                let w = _mm512_srai_epi32(_mm512_sll_epi32(words, up), 24);
                f = _mm512_fmadd_ps(_mm512_set1_ps(v), _mm512_cvtepi32_ps(w), f);
            }
        }
        f = _mm512_mul_ps(f, _mm512_loadu_ps(scales.as_ptr()));
        _mm512_storeu_ps(y.as_mut_ptr(), f);
    }

    /// Calls `$kernel::<ROWS>` for the run-time row count `$rows` (1..=4).
    macro_rules! for_rows {
        ($rows:expr, $kernel:ident($($arg:expr),*)) => {
            match $rows {
                1 => $kernel::<1>($($arg),*),
                2 => $kernel::<2>($($arg),*),
                3 => $kernel::<3>($($arg),*),
                _ => $kernel::<4>($($arg),*),
            }
        };
    }
    pub(super) use for_rows;

    /// The `ROWS`×16 integer block: per group of 4 depths, one 4-byte
    /// broadcast per row times two 32-byte weight vectors (`vpmaddubsw`, then
    /// `vpmaddwd` by ones to sum the four products into i32 lanes).
    ///
    /// # Safety
    /// AVX2 is available; each `a[i]` covers `groups * 4` bytes (values
    /// `0..=127`); `w` covers `groups * 64` bytes.
    #[target_feature(enable = "avx2")]
    pub unsafe fn kernel_u8s8<const ROWS: usize>(
        groups: usize,
        a: &[*const u8; MR],
        w: *const i8,
        acc: &mut [i32; MR * NR],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut c = [[_mm256_setzero_si256(); 2]; ROWS];
        for g in 0..groups {
            // The next panel, one cache line per step, as in `kernel_vnni`
            // (Zen 3, 16-row products through twelve layers' distinct
            // weights: 5.03 → 4.59 ms, level with cache-hot weights).
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(groups * 64 + g * 64));
            let b0 = _mm256_loadu_si256(w.add(g * 64) as *const __m256i);
            let b1 = _mm256_loadu_si256(w.add(g * 64 + 32) as *const __m256i);
            for i in 0..ROWS {
                let ai = _mm256_set1_epi32((a[i].add(g * 4) as *const i32).read_unaligned());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ai, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(ai, b1), ones);
                c[i][0] = _mm256_add_epi32(c[i][0], p0);
                c[i][1] = _mm256_add_epi32(c[i][1], p1);
            }
        }
        for (i, [c0, c1]) in c.iter().enumerate() {
            _mm256_storeu_si256(acc.as_mut_ptr().add(i * NR) as *mut __m256i, *c0);
            _mm256_storeu_si256(acc.as_mut_ptr().add(i * NR + 8) as *mut __m256i, *c1);
        }
    }

    /// [`kernel_u8s8`] with AVX-512 VNNI: per group of 4 depths, one
    /// 64-byte weight vector (all 16 columns) and, per row, one `vpdpbusd`
    /// that multiplies, sums four products and accumulates in i32 — one
    /// instruction where AVX2 needs three, and the same exact integer sums
    /// (values `0..=127` times `-127..=127`: no saturation on either path).
    /// Two accumulators per row (even and odd groups) hide the instruction's
    /// latency.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and VNNI are available; pointers as [`kernel_u8s8`].
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn kernel_vnni<const ROWS: usize>(
        groups: usize,
        a: &[*const u8; MR],
        w: *const i8,
        acc: &mut [i32; MR * NR],
    ) {
        let mut c = [[_mm512_setzero_si512(); 2]; ROWS];
        let pairs = groups / 2;
        for g in 0..pairs {
            // The next panel (it starts `groups * 64` bytes on), two cache
            // lines per step: a query streams each weight once, and waiting
            // on memory cost a third of the product's time (measured).
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(groups * 64 + g * 128));
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(groups * 64 + g * 128 + 64));
            let b0 = _mm512_loadu_si512(w.add(g * 128) as *const __m512i);
            let b1 = _mm512_loadu_si512(w.add(g * 128 + 64) as *const __m512i);
            for i in 0..ROWS {
                let p = a[i].add(g * 8) as *const i32;
                let a0 = _mm512_set1_epi32(p.read_unaligned());
                let a1 = _mm512_set1_epi32(p.add(1).read_unaligned());
                c[i][0] = _mm512_dpbusd_epi32(c[i][0], a0, b0);
                c[i][1] = _mm512_dpbusd_epi32(c[i][1], a1, b1);
            }
        }
        if groups % 2 == 1 {
            let g = groups - 1;
            let b0 = _mm512_loadu_si512(w.add(g * 64) as *const __m512i);
            for i in 0..ROWS {
                let a0 = _mm512_set1_epi32((a[i].add(g * 4) as *const i32).read_unaligned());
                c[i][0] = _mm512_dpbusd_epi32(c[i][0], a0, b0);
            }
        }
        for (i, [c0, c1]) in c.iter().enumerate() {
            _mm512_storeu_si512(
                acc.as_mut_ptr().add(i * NR) as *mut __m512i,
                _mm512_add_epi32(*c0, *c1),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of every length class (shorter than a block, one block, many,
    /// longer than the stack's blocks) with ties at the top, spikes in
    /// several blocks and negative extremes: every kernel's quantiser picks
    /// the same outliers and gives the same bytes.
    #[test]
    fn every_kernel_quantises_alike() {
        let mut s = 0x2545_f491u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        };
        for k in [3usize, 5, 64, 100, 384, 1536, 5000] {
            let m = 3;
            let mut x: Vec<f32> = (0..m * k).map(|_| next()).collect();
            // Row 0: equal spikes in different blocks; row 1: a negative
            // extreme and a run of ties just under it; row 2: plain.
            for p in (0..k).step_by(k.div_ceil(6).max(1)) {
                x[p] = 7.5;
            }
            x[k + k / 2] = -40.0;
            for p in 0..k.min(8) {
                x[k + p] = 9.0;
            }
            let reference = quantize(Kernel::Portable, &x, m, k);
            for kernel in Kernel::supported() {
                let got = quantize(kernel, &x, m, k);
                assert_eq!(got.q, reference.q, "{kernel:?}, k = {k}");
                for (a, b) in got.params.iter().zip(&reference.params) {
                    assert_eq!((a.step, a.zero), (b.step, b.zero), "{kernel:?}, k = {k}");
                    assert_eq!(a.outliers, b.outliers, "{kernel:?}, k = {k}");
                }
            }
        }
    }
}
