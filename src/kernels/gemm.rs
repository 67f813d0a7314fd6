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
//! in registers with F16C), accumulated in f32; or as int8 with 8-bit
//! activations and i32 sums ([`int8`], the default). The 6×16 float
//! microkernel uses AVX2+FMA and the int8 one AVX-512 VNNI or AVX2, chosen at
//! run time ([`detected_kernel`](super::detected_kernel)); every other CPU, or
//! `PAREIL_KERNEL=portable`, gets the portable path, and the tests compare
//! every kernel the CPU has with a naive product and with each other.

use std::mem::MaybeUninit;

use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use self::avx2::{for_rows, kernel_f16, kernel_f32};
use super::int8;
use super::math::finish_panel;
use super::team::{Shared, Team};
use super::{dispatch, Kernel, NR};
/// Rows per microkernel call.
const MR: usize = 6;
/// Depth per pass. The encoder's depths (384, 1536) fit in one, so each
/// output tile is written once, straight from the microkernel's registers
/// through the epilogue (measured: faster than 256-deep L1 blocking here;
/// a panel slice of 1536 × 16 stays in L2).
const KC: usize = 4096;
/// Rows per parallel task when splitting by rows.
const MC: usize = 72;

/// Whether a product of `m` rows on the current rayon pool splits its work
/// by column panels: too few rows to give every thread its own blocks.
/// Such products are short, and a forward pass of them is where a
/// [`team`](super::team) beats a fork-join per product.
pub fn splits_by_columns(m: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && m.div_ceil(MC) < threads
}

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
    F16,
    /// The default: 8-bit weights (a scale per output column) times
    /// activations quantised per row to 7 bits, with each row's largest
    /// values kept exact; sums in i32 (see [`int8`]): twice the multiply
    /// rate of f32 FMA on AVX2, eight times with AVX-512 VNNI, and a quarter
    /// of the weight traffic; cosine ≥ 0.999 to the f32 vectors on the
    /// golden texts (tested; measured 0.99956), same retrieval on the eval
    /// queries. The fastest setting within the fidelity bound, for bulk and
    /// for single queries, on both CPUs measured (BENCHMARKS.md).
    #[default]
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    I8(int8::Weights),
}

/// A `[out, in]` weight matrix and its bias, packed for [`PackedLinear::forward`].
pub struct PackedLinear {
    kernel: Kernel,
    k: usize,
    n: usize,
    panels: Panels,
    bias: Vec<f32>,
}

/// Lays `weight` (`[n, k]`) out as `[n / 16][k][16]` panels (the last one
/// zero-padded), converting each value with `convert(column, value)`.
fn pack<T: Copy + Default>(
    weight: &[f32],
    n: usize,
    k: usize,
    convert: impl Fn(usize, f32) -> T,
) -> Vec<T> {
    let mut packed = vec![T::default(); n.div_ceil(NR) * k * NR];
    for j in 0..n {
        let base = (j / NR) * k * NR + j % NR;
        for (p, &w) in weight[j * k..(j + 1) * k].iter().enumerate() {
            packed[base + p * NR] = convert(j, w);
        }
    }
    packed
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
        let panels = match format {
            Precision::F32 => Panels::F32(pack(weight, n, k, |_, w| w)),
            Precision::F16 => Panels::F16(pack(weight, n, k, |_, w| half::f16::from_f32(w))),
            Precision::Int8 => Panels::I8(int8::Weights::new(weight, n, k)),
        };
        PackedLinear {
            kernel,
            k,
            n,
            panels,
            bias,
        }
    }

    /// Appends this layer's packed form (little-endian) to `out`: what the
    /// model's pack cache stores so later starts skip quantising and packing.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        put_u64(out, self.k as u64);
        put_u64(out, self.n as u64);
        match &self.panels {
            Panels::F32(v) => {
                out.push(0);
                put_u64(out, v.len() as u64);
                v.iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
            Panels::F16(v) => {
                out.push(1);
                put_u64(out, v.len() as u64);
                v.iter()
                    .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes()));
            }
            Panels::I8(w) => {
                out.push(2);
                w.write_to(out);
            }
        }
        put_u64(out, self.bias.len() as u64);
        self.bias
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }

    /// Reads back what [`write_to`](Self::write_to) wrote, for a `[n, k]`
    /// layer of `precision`; `None` unless every length is exactly what
    /// packing such a layer gives (the kernels index the panels unchecked).
    pub fn read_from(
        r: &mut ByteReader<'_>,
        n: usize,
        k: usize,
        precision: Precision,
        kernel: Kernel,
    ) -> Option<Self> {
        if r.u64()? != k as u64 || r.u64()? != n as u64 {
            return None;
        }
        let panel_len = n.div_ceil(NR) * k * NR;
        let panels = match (r.u8()?, precision) {
            (0, Precision::F32) => {
                let len = r.len_exactly(panel_len)?;
                Panels::F32(r.f32s(len)?)
            }
            (1, Precision::F16) => {
                let len = r.len_exactly(panel_len)?;
                Panels::F16(r.f16s(len)?)
            }
            (2, Precision::Int8) => Panels::I8(int8::Weights::read_from(r, n, k)?),
            _ => return None,
        };
        let bias_len = r.len_exactly(n)?;
        let bias = r.f32s(bias_len)?;
        Some(PackedLinear {
            kernel,
            k,
            n,
            panels,
            bias,
        })
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
        self.check_shapes(x, m, residual);
        // Not zeroed: every value is written before it is read, and zeroing
        // a fresh 25 MB activation costs a pass over memory per product.
        if m == 0 || self.k == 0 {
            // No depth block runs (and so nothing is written) when k = 0.
            return vec![0f32; m * self.n];
        }
        let mut out: Vec<f32> = Vec::with_capacity(m * self.n);
        let panels_n = self.n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        let quantized = match &self.panels {
            Panels::I8(_) => Some(int8::quantize(self.kernel, x, m, self.k)),
            _ => None,
        };
        let input = match &quantized {
            Some(rows) => Input::Int8(rows.view()),
            None => Input::F32(x),
        };
        let out_ptr = SendPtr(out.as_mut_ptr());
        // Split by rows when there are enough of them to feed every thread,
        // otherwise by column panels (a short query still uses all cores).
        let row_blocks = m.div_ceil(MC);
        if threads == 1 {
            // SAFETY: one task writes all of `out`.
            unsafe { self.tile(input, 0..m, 0..panels_n, act, residual, out_ptr) };
        } else if row_blocks >= threads {
            (0..row_blocks).into_par_iter().for_each(|rb| {
                let rows = rb * MC..((rb + 1) * MC).min(m);
                // SAFETY: each task writes only its own rows of `out`.
                unsafe { self.tile(input, rows, 0..panels_n, act, residual, out_ptr) };
            });
        } else {
            let per = panels_n.div_ceil(threads * 2).max(1);
            let groups = panels_n.div_ceil(per);
            (0..groups).into_par_iter().for_each(|g| {
                let panels = g * per..((g + 1) * per).min(panels_n);
                // SAFETY: each task writes only its own column panels of `out`.
                unsafe { self.tile(input, 0..m, panels, act, residual, out_ptr) };
            });
        }
        // SAFETY: the tiles above cover every row and column of `out`, and
        // each writes all its values.
        unsafe { out.set_len(m * self.n) };
        out
    }

    /// Panics unless `x` is `m` rows of `k` and `residual` `m` rows of `n`.
    fn check_shapes(&self, x: &[f32], m: usize, residual: Option<&[f32]>) {
        assert_eq!(x.len(), m * self.k, "input is not [{m}, {}]", self.k);
        if let Some(r) = residual {
            assert_eq!(r.len(), m * self.n, "residual is not [{m}, {}]", self.n);
        }
    }

    /// [`forward`](Self::forward) run by a team: the input quantised by
    /// the team into `rows` (int8 weights only), then this thread's share
    /// of the column panels written to `out` (`m` rows of `n`), the same
    /// values bit for bit. Returns when every thread's share is written.
    ///
    /// # Safety
    /// Every thread of `team` calls this together with the same arguments;
    /// nothing else reads or writes `out`'s first `m * n` values meanwhile,
    /// and `x` and `residual` are not written.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward_team(
        &self,
        team: &Team,
        x: &[f32],
        m: usize,
        act: Activation,
        residual: Option<&[f32]>,
        rows: &int8::SharedRows,
        out: &Shared<f32>,
    ) {
        self.check_shapes(x, m, residual);
        assert!(self.k > 0 && out.len() >= m * self.n);
        let input = match &self.panels {
            Panels::I8(_) => Input::Int8(rows.quantize(team, self.kernel, x, m, self.k)),
            _ => Input::F32(x),
        };
        let panels = team.share(self.n.div_ceil(NR));
        self.tile(
            input,
            0..m,
            panels,
            act,
            residual,
            SendPtr(out.as_mut_ptr()),
        );
        team.sync();
    }

    /// Computes rows `rows` × panels `panels` of the output.
    ///
    /// # Safety
    /// `out` points to room for `m * n` floats (written, never read before
    /// written) and no other thread writes this tile.
    unsafe fn tile(
        &self,
        input: Input<'_>,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        act: Activation,
        residual: Option<&[f32]>,
        out: SendPtr,
    ) {
        match (input, &self.panels) {
            (Input::Int8(x), Panels::I8(w)) => {
                let epilogue = int8::Epilogue {
                    bias: &self.bias,
                    residual,
                    gelu: act == Activation::Gelu,
                };
                for panel in panels {
                    int8::product_tile(
                        self.kernel,
                        w,
                        x,
                        self.n,
                        rows.clone(),
                        panel,
                        out.0,
                        epilogue,
                    );
                }
            }
            (Input::F32(x), _) => tile_with(self.kernel, self, x, rows, panels, act, residual, out),
            (Input::Int8(_), _) => unreachable!("quantised input for float weights"),
        }
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
                    (Panels::F32(w), Kernel::Avx2Fma | Kernel::Avx512Vnni) => for_rows!(
                        mr,
                        kernel_f32(
                            kc,
                            &a_rows,
                            w.as_ptr().add(panel * k * NR + kb * NR),
                            &mut tile
                        )
                    ),
                    #[cfg(target_arch = "x86_64")]
                    (Panels::F16(w), Kernel::Avx2Fma | Kernel::Avx512Vnni) => for_rows!(
                        mr,
                        kernel_f16(
                            kc,
                            &a_rows,
                            w.as_ptr().add(panel * k * NR + kb * NR),
                            &mut tile
                        )
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
                    (Panels::I8(_), _) => unreachable!("int8 weights take the int8 tile"),
                }
                for i in 0..mr {
                    let row = r + i;
                    let dst = std::slice::from_raw_parts_mut(
                        out.0.add(row * n + col0).cast::<MaybeUninit<f32>>(),
                        cols,
                    );
                    let t = &mut tile[i * NR..i * NR + cols];
                    if !first {
                        // Later depth blocks accumulate into the output,
                        // which the first block wrote.
                        for (v, d) in t.iter_mut().zip(dst.iter()) {
                            *v += d.assume_init();
                        }
                    }
                    if last {
                        finish_panel(
                            dst,
                            t,
                            &linear.bias[col0..col0 + cols],
                            residual.map(|res| &res[row * n + col0..row * n + col0 + cols]),
                            act == Activation::Gelu,
                        );
                    } else {
                        for (d, &v) in dst.iter_mut().zip(t.iter()) {
                            d.write(v);
                        }
                    }
                }
                r += mr;
            }
        }
        kb += kc;
    }
}

/// The input rows as a tile reads them.
#[derive(Clone, Copy)]
enum Input<'a> {
    F32(&'a [f32]),
    Int8(int8::RowsRef<'a>),
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

    /// The 6×16 (or `ROWS`×16) register block: per depth step, two 8-lane
    /// weight vectors (from `$load`) times one broadcast value per row.
    macro_rules! kernel_body {
        ($kc:expr, $a:expr, $tile:expr, $load:expr) => {{
            let mut c = [[_mm256_setzero_ps(); 2]; ROWS];
            for p in 0..$kc {
                let (b0, b1) = $load(p);
                for i in 0..ROWS {
                    let ai = _mm256_broadcast_ss(&*$a[i].add(p));
                    c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
                    c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
                }
            }
            for i in 0..ROWS {
                _mm256_storeu_ps($tile.as_mut_ptr().add(i * NR), c[i][0]);
                _mm256_storeu_ps($tile.as_mut_ptr().add(i * NR + 8), c[i][1]);
            }
        }};
    }

    /// Calls `$kernel::<ROWS>` for the run-time row count `$rows` (1..=6), so
    /// a short last row group (16 = 6 + 6 + 4) does no wasted work.
    macro_rules! for_rows {
        ($rows:expr, $kernel:ident($($arg:expr),*)) => {
            match $rows {
                1 => $kernel::<1>($($arg),*),
                2 => $kernel::<2>($($arg),*),
                3 => $kernel::<3>($($arg),*),
                4 => $kernel::<4>($($arg),*),
                5 => $kernel::<5>($($arg),*),
                _ => $kernel::<6>($($arg),*),
            }
        };
    }
    pub(super) use for_rows;

    /// # Safety
    /// AVX2 and FMA are available; each `a[i]` covers `kc` floats; `w` covers `kc × 16`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_f32<const ROWS: usize>(
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
    pub unsafe fn kernel_f16<const ROWS: usize>(
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

/// Appends `v` little-endian.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads what [`PackedLinear::write_to`] wrote; every read is bounds-checked
/// and answers `None` past the end.
pub struct ByteReader<'a>(pub &'a [u8]);

impl<'a> ByteReader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A length field that must equal `expected`.
    pub(crate) fn len_exactly(&mut self, expected: usize) -> Option<usize> {
        (self.u64()? == expected as u64).then_some(expected)
    }

    pub(crate) fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        self.values(n, f32::from_le_bytes)
    }

    pub(crate) fn i32s(&mut self, n: usize) -> Option<Vec<i32>> {
        self.values(n, i32::from_le_bytes)
    }

    pub(crate) fn f16s(&mut self, n: usize) -> Option<Vec<half::f16>> {
        self.values(n, |b| half::f16::from_bits(u16::from_le_bytes(b)))
    }

    /// `n` little-endian values of `N` bytes each.
    fn values<T, const N: usize>(&mut self, n: usize, from: fn([u8; N]) -> T) -> Option<Vec<T>> {
        let bytes = self.take(n.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|b| from(b.try_into().expect("N bytes")))
                .collect(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::detected_kernel;
    use crate::kernels::math::gelu;
    use crate::kernels::team::testing::{in_team_of_two, two_cores};

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
        let kernels = Kernel::supported();
        // Edge shapes: rows not a multiple of 6, columns not of 16, depth over KC.
        for &(m, n, k) in &[
            (1, 16, 8),
            (7, 40, 300),
            (16, 48, 384),
            (150, 33, 520),
            (5, 20, 4100),
            (5, 1, 3),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let b = values(n, 3);
            for act in [Activation::None, Activation::Gelu] {
                let want = naive(&x, m, &w, &b, n, k, act);
                for format in [Precision::F32, Precision::F16, Precision::Int8] {
                    for &kernel in &kernels {
                        let packed = PackedLinear::new(&w, b.clone(), n, k, format, kernel);
                        let got = packed.forward(&x, m, act, None);
                        for (idx, (g, want)) in got.iter().zip(&want).enumerate() {
                            let tol = match format {
                                Precision::F32 => 1e-4,
                                // Relative error 2^-11 per weight, summed over k.
                                Precision::F16 => 2e-2,
                                Precision::Int8 => int8_bound(&x, &w, k, idx / n, idx % n),
                            };
                            assert!(
                                (g - want).abs() <= tol,
                                "{m}x{n}x{k} {act:?} {format:?} {kernel:?} [{idx}]: {g} vs {want} (±{tol})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The worst error quantisation can make in `out[row][col]`: half a step
    /// of the activations (7 bits over the row's range, which always spans
    /// 0) against every weight, plus half a step of the weights (8 bits of
    /// the column's max) against every activation, plus slack for GELU's
    /// slope (< 1.13) and f32 rounding.
    fn int8_bound(x: &[f32], w: &[f32], k: usize, row: usize, col: usize) -> f32 {
        let x = &x[row * k..(row + 1) * k];
        let w = &w[col * k..(col + 1) * k];
        let mut sorted: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Without its 4 largest magnitudes the row lies within ±bound.
        let bound = sorted.get(int8::OUTLIERS).copied().unwrap_or(0.0);
        let x_half_step = bound / 127.0;
        let w_half_step = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0 / 2.0;
        let err: f32 = x
            .iter()
            .zip(w)
            .map(|(a, b)| x_half_step * b.abs() + a.abs() * w_half_step + x_half_step * w_half_step)
            .sum();
        1.13 * err + 1e-3
    }

    /// A team computes every format's product bit for bit as `forward`
    /// does, with and without residual and GELU, for short inputs of any
    /// width (one panel, a share each, uneven shares).
    #[test]
    fn a_team_gives_the_same_bits_as_forward() {
        if !two_cores() {
            return;
        }
        for &(m, n, k) in &[(1, 16, 8), (7, 40, 300), (16, 1152, 384), (16, 384, 1536)] {
            let (x, w, b, res) = (
                values(m * k, 1),
                values(n * k, 2),
                values(n, 3),
                values(m * n, 4),
            );
            for format in [Precision::F32, Precision::F16, Precision::Int8] {
                for &kernel in &Kernel::supported() {
                    let packed = PackedLinear::new(&w, b.clone(), n, k, format, kernel);
                    for (act, residual) in
                        [(Activation::None, Some(&res[..])), (Activation::Gelu, None)]
                    {
                        let want = packed.forward(&x, m, act, residual);
                        let (rows, out) = (int8::SharedRows::new(m, k), Shared::new(m * n));
                        // SAFETY: both threads call it together; nothing else touches `out`.
                        in_team_of_two(|team| unsafe {
                            packed.forward_team(team, &x, m, act, residual, &rows, &out)
                        });
                        let got = out.into_vec();
                        assert!(
                            got.iter()
                                .zip(&want)
                                .all(|(g, w)| g.to_bits() == w.to_bits()),
                            "{m}x{n}x{k} {format:?} {kernel:?} {act:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn int8_keeps_a_rows_largest_values_exact() {
        // One feature 1000× the others: quantised with the rest it would
        // leave them all in one step; taken out, they keep 7 bits.
        let (m, n, k) = (3, 32, 64);
        let mut x = values(m * k, 7);
        x[5] = 900.0;
        x[k + 17] = -1200.0;
        let w = values(n * k, 8);
        let b = values(n, 9);
        let want = naive(&x, m, &w, &b, n, k, Activation::None);
        let kernels = Kernel::supported();
        let mut results = Vec::new();
        for kernel in kernels {
            let packed = PackedLinear::new(&w, b.clone(), n, k, Precision::Int8, kernel);
            let got = packed.forward(&x, m, Activation::None, None);
            for (idx, (g, want)) in got.iter().zip(&want).enumerate() {
                let (row, col) = (idx / n, idx % n);
                let tol = int8_bound(&x, &w, k, row, col);
                assert!((g - want).abs() <= tol, "{kernel:?} [{idx}]: {g} vs {want}");
                // Half a step of a 7-bit grid spanning the outlier, against
                // every weight: what quantising the outlier with the rest costs.
                let spike = x[row * k..(row + 1) * k]
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()));
                let w_sum: f32 = w[col * k..(col + 1) * k].iter().map(|v| v.abs()).sum();
                if row < 2 {
                    assert!((g - want).abs() < 0.1 * spike / 127.0 / 2.0 * w_sum);
                }
            }
            results.push(got);
        }
        // Integer sums are exact, and the float epilogue is the same code.
        assert!(results.windows(2).all(|r| r[0] == r[1]), "kernels disagree");
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
