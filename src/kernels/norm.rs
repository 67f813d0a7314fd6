//! Layer normalisation of rows: `(x − mean) / √(var + ε) · w + b`, per row.
//!
//! candle's CPU layer norm sums each row in one running float (which the
//! compiler may not reorder, so it stays scalar), zeroes its output first
//! and makes one rayon task of every row: 3 % of a bulk encode on Zen 5, as
//! much as the GELU epilogue. Here the sums run in eight independent lanes
//! (vectorised, the same order on every kernel, so all kernels give the
//! same bits), the variance is taken about the mean in a second pass (no
//! cancellation, unlike candle's `E[x²] − mean²`), rows go in blocks per
//! thread, and the output is written once.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::math::{lane_sum, lane_sum_by};
use super::team::{Shared, Team};
use super::{dispatch, Kernel};

/// Rows × values below which one thread normalises everything (a query's
/// few rows are not worth waking the pool for).
const PARALLEL_VALUES: usize = 1 << 15;

/// `x` is rows of `weight.len()` values; returns them normalised.
pub fn layer_norm(kernel: Kernel, x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let dim = weight.len();
    assert!(dim > 0 && bias.len() == dim, "layer norm over {dim} values");
    assert_eq!(x.len() % dim, 0, "input is not rows of {dim}");
    let rows = x.len() / dim;
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    let spare = &mut out.spare_capacity_mut()[..x.len()];
    let threads = rayon::current_num_threads();
    if threads > 1 && rows >= 2 && x.len() >= PARALLEL_VALUES {
        let rows_per_task = rows.div_ceil(2 * threads);
        spare
            .par_chunks_mut(rows_per_task * dim)
            .zip(x.par_chunks(rows_per_task * dim))
            // SAFETY: the kernel was chosen by run-time detection.
            .for_each(|(o, x)| unsafe { norm_rows_with(kernel, x, weight, bias, eps, o) });
    } else {
        // SAFETY: as above.
        unsafe { norm_rows_with(kernel, x, weight, bias, eps, spare) };
    }
    // SAFETY: `norm_rows` wrote every value of the first `x.len()`.
    unsafe { out.set_len(x.len()) };
    out
}

/// [`layer_norm`] run by a team, each thread its share of the rows, into
/// `out`, the same values bit for bit. Returns when every row is written.
///
/// # Safety
/// Every thread of `team` calls this together with the same arguments;
/// nothing else reads or writes `out`'s first `x.len()` values meanwhile,
/// and `x` is not written.
pub unsafe fn layer_norm_team(
    team: &Team,
    kernel: Kernel,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: &Shared<f32>,
) {
    let dim = weight.len();
    assert!(dim > 0 && bias.len() == dim && x.len().is_multiple_of(dim) && out.len() >= x.len());
    let rows = team.share(x.len() / dim);
    let values = rows.start * dim..rows.end * dim;
    let mine = out.part_mut(values.clone());
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and `norm_rows` only writes.
    let mine = &mut *(mine as *mut [f32] as *mut [MaybeUninit<f32>]);
    norm_rows_with(kernel, &x[values], weight, bias, eps, mine);
    team.sync();
}

dispatch!(
    /// [`norm_rows`] for `kernel`.
    ///
    /// # Safety
    /// `kernel` is supported by this CPU.
    unsafe fn norm_rows_with => norm_rows, (
        x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [MaybeUninit<f32>],
    )
);

#[inline(always)]
fn norm_rows(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    let dim = weight.len();
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let n = dim as f32;
        let mean = lane_sum(x) / n;
        let var = lane_sum_by(x, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
            o.write((v - mean) * inv * w + b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::team::testing::{in_team_of_two, two_cores};
    use candle_core::{Device, Tensor};

    fn rows(m: usize, dim: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = Device::Cpu;
        let v = |n: usize, mean: f32| {
            Tensor::randn(mean, 1.5, n, &d)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        // Rows with a large common offset: where `E[x²] − mean²` loses digits.
        (v(m * dim, 40.0), v(dim, 1.0), v(dim, 0.0))
    }

    /// Against the textbook formula in f64.
    #[test]
    fn normalises_like_the_definition() {
        let (dim, eps) = (384, 1e-12f32);
        let (x, w, b) = rows(70, dim);
        let got = layer_norm(Kernel::Portable, &x, &w, &b, eps);
        for (r, row) in x.chunks(dim).enumerate() {
            let n = dim as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            for c in 0..dim {
                let want =
                    (row[c] as f64 - mean) / (var + eps as f64).sqrt() * w[c] as f64 + b[c] as f64;
                let g = got[r * dim + c] as f64;
                assert!((g - want).abs() < 1e-4, "row {r} col {c}: {g} vs {want}");
            }
        }
    }

    /// Every kernel, threaded, by a team or not, gives the portable build's bits
    /// (dimensions with and without a remainder after the eight lanes).
    #[test]
    fn every_kernel_gives_the_same_bits() {
        for dim in [384, 37] {
            let (x, w, b) = rows(300, dim);
            let want = layer_norm(Kernel::Portable, &x, &w, &b, 1e-5);
            for kernel in Kernel::supported() {
                assert!(
                    layer_norm(kernel, &x, &w, &b, 1e-5) == want,
                    "{kernel:?}, {dim}"
                );
                let one_row = layer_norm(kernel, &x[..dim], &w, &b, 1e-5);
                assert!(one_row == want[..dim], "{kernel:?}, {dim}, one row");
                if two_cores() {
                    let out = Shared::new(x.len());
                    // SAFETY: both threads call it together; nothing else touches `out`.
                    in_team_of_two(|team| unsafe {
                        layer_norm_team(team, kernel, &x, &w, &b, 1e-5, &out)
                    });
                    assert!(out.into_vec() == want, "{kernel:?}, {dim}, team");
                }
            }
        }
    }
}
