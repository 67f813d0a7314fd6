//! Multi-head self-attention over packed sequences (`[tokens, 3·hidden]`
//! QKV rows, no padding), one task per (sequence, head). candle's per-head
//! attention is a dozen small ops per sequence; this is one op whose loops
//! keep their accumulators in registers, compiled for each [`Kernel`]
//! through `dispatch!`. Softmax uses [`math::exp`](super::math::exp).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::math::{exp, lane_max, lane_sum};
use super::team::{Shared, Team};
use super::{dispatch, Kernel};

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
    /// Two blocks of [`LANES`] a step: where AVX-512's 32 registers hold
    /// the accumulators (AVX2's 16 would spill). Any kernel gives the same
    /// bits either way (tested on every CPU, not only AVX-512 ones).
    pub wide: bool,
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
        let mut out = vec![0f32; tokens * h];
        let tasks = self.tasks(&data[start..end], OutPtr(out.as_mut_ptr()));
        tasks.par_iter().for_each(|&task| {
            // SAFETY: this task alone writes these rows' columns of this head;
            // the kernel was chosen by run-time detection.
            unsafe { attend_with(self.kernel, task, self.wide) };
        });
        Ok((CpuStorage::F32(out), Shape::from((tokens, h))))
    }
}

impl<'a> PackedAttention<'a> {
    /// Steps as wide as `kernel`'s registers allow.
    pub fn new(lens: &'a [usize], heads: usize, kernel: Kernel) -> Self {
        PackedAttention {
            lens,
            heads,
            kernel,
            wide: kernel == Kernel::Avx512Vnni,
        }
    }

    /// One [`Head`] per (sequence, head) of `qkv`, writing through `out`.
    fn tasks<'q>(&self, qkv: &'q [f32], out: OutPtr) -> Vec<Head<'q>> {
        let h = qkv.len() / self.lens.iter().sum::<usize>().max(1) / 3;
        let d = h / self.heads;
        let mut tasks = Vec::with_capacity(self.lens.len() * self.heads);
        let mut first = 0;
        for &len in self.lens {
            tasks.extend((0..self.heads).map(|head| Head {
                qkv,
                h,
                d,
                first,
                len,
                head,
                out,
            }));
            first += len;
        }
        tasks
    }
}

dispatch!(
    /// [`attend`] for `kernel`.
    ///
    /// # Safety
    /// As [`attend`]; `kernel` is supported by this CPU.
    unsafe fn attend_with => attend, (task: Head<'_>, wide: bool)
);

/// One task of [`PackedAttention`]: head `head` of the sequence whose `len`
/// rows start at row `first` of `qkv` (`[tokens, 3·h]`), heads of width `d`,
/// written to the same rows of `out` (`[tokens, h]`).
#[derive(Clone, Copy)]
struct Head<'a> {
    qkv: &'a [f32],
    h: usize,
    d: usize,
    first: usize,
    len: usize,
    head: usize,
    out: OutPtr,
}

/// [`Head::part`]'s parts of a QKV row.
const QUERY: usize = 0;
const KEY: usize = 1;
const VALUE: usize = 2;

impl<'a> Head<'a> {
    /// This head's slice of part `part` ([`QUERY`], [`KEY`] or [`VALUE`])
    /// of the sequence's row `t`.
    #[inline(always)]
    fn part(&self, t: usize, part: usize) -> &'a [f32] {
        let at = (self.first + t) * 3 * self.h + part * self.h + self.head * self.d;
        &self.qkv[at..at + self.d]
    }

    /// Kᵀ as `[d][lp]` and V as `[len][dp]`, zero-padded, fetching the
    /// rows [`PREFETCH_ROWS`] ahead (their query too, read from L2 by the
    /// query loop).
    #[inline(always)]
    fn keys_and_values(&self, lp: usize, dp: usize) -> (Vec<f32>, Vec<f32>) {
        let (d, len) = (self.d, self.len);
        let mut kt = vec![0f32; d * lp];
        let mut v = vec![0f32; len * dp];
        for j in 0..len {
            if j + PREFETCH_ROWS < len {
                for part in [QUERY, KEY, VALUE] {
                    prefetch(self.part(j + PREFETCH_ROWS, part));
                }
            }
            for (c, &k) in self.part(j, KEY).iter().enumerate() {
                kt[c * lp + j] = k;
            }
            v[j * dp..j * dp + d].copy_from_slice(self.part(j, VALUE));
        }
        (kt, v)
    }
}

/// Rows ahead whose query, key and value are fetched while this one's key
/// and value are copied. QKV rows are `3·h` floats apart (4.6 KB for
/// e5-small), more than a page, and the hardware prefetchers stop at page
/// boundaries: without this, each head's first read of a row waited on
/// memory (in a `perf` profile of a bulk encode on Zen 3, the key copy took
/// 12 % of the attention's time and, once keys and values were fetched
/// ahead, the query's first read 14 %; 3 % with all three fetched).
const PREFETCH_ROWS: usize = 8;

/// Floats per 64-byte cache line.
const LINE: usize = 16;

/// Asks for the cache lines holding `s` (a head's slice of one row).
#[inline(always)]
fn prefetch(s: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..s.len())
        .step_by(LINE)
        .chain([s.len().saturating_sub(1)])
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it reads nothing and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().wrapping_add(at).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

/// Query rows scored together (one key load feeds this many FMAs).
const QROWS: usize = 4;
/// Lanes per block: one AVX-512 register of f32, two AVX2 ones. Against 8
/// (one AVX2 register, which the AVX-512 build also used), alternated on Zen
/// 5, bulk on 188-token paragraphs: +21–27 % tokens/s with AVX-512 (3,584–
/// 3,841 → 4,607–4,861 at 1 thread), +9–13 % on the AVX2 path; the same
/// vectors bit for bit (each lane still sums in the same order). 32 lanes
/// and 6 query rows spilled registers (3× slower); two 16-lane blocks a
/// step fit AVX-512's registers (`wide` in [`attend`]: +1–11 % more).
const LANES: usize = 16;

/// One head of one sequence; see [`PackedAttention`]. Keys and values are
/// copied zero-padded to multiples of [`LANES`] so both products run on
/// whole blocks held in registers for [`QROWS`] query rows at a time.
///
/// # Safety
/// `task.out` holds `[tokens, h]` floats and no other task writes rows
/// `task.first..task.first + task.len`, columns of `task.head`.
#[inline(always)]
unsafe fn attend(task: Head<'_>, wide: bool) {
    if wide {
        attend_in::<2>(task)
    } else {
        attend_in::<1>(task)
    }
}

/// [`attend`] stepping by `WIDE` blocks of [`LANES`].
///
/// # Safety
/// As [`attend`].
#[inline(always)]
unsafe fn attend_in<const WIDE: usize>(task: Head<'_>) {
    let Head {
        h,
        d,
        first,
        len,
        head,
        out,
        ..
    } = task;
    let scale = 1.0 / (d as f32).sqrt();
    let (lp, dp) = (len.next_multiple_of(LANES), d.next_multiple_of(LANES));
    let (kt, v) = task.keys_and_values(lp, dp);
    // Queries as [d][QROWS]: the values one step of a block multiplies by
    // sit side by side.
    let mut qt = vec![0f32; d * QROWS];
    let mut scores = vec![0f32; QROWS * lp];
    let mut i0 = 0;
    while i0 < len {
        let rows = QROWS.min(len - i0);
        // Rows past the end stay zero; their results are dropped.
        qt.fill(0.0);
        for r in 0..rows {
            for (c, &x) in task.part(i0 + r, QUERY).iter().enumerate() {
                qt[c * QROWS + r] = x * scale;
            }
        }
        // scores[r][j] = q_r · k_j, WIDE × LANES keys at a time, then the
        // last blocks one at a time.
        let mut jb = 0;
        while jb + WIDE * LANES <= lp {
            score_block::<WIDE>(&qt, &kt, d, lp, jb, &mut scores);
            jb += WIDE * LANES;
        }
        while jb < lp {
            score_block::<1>(&qt, &kt, d, lp, jb, &mut scores);
            jb += LANES;
        }
        // Softmax over the real keys; 1/sum is applied to the context.
        let mut inv = [0f32; QROWS];
        for (r, inv) in inv.iter_mut().enumerate() {
            let s = &mut scores[r * lp..r * lp + len];
            let max = lane_max(s);
            for x in s.iter_mut() {
                *x = exp(*x - max);
            }
            *inv = 1.0 / lane_sum(s);
        }
        // ctx_r = Σ_j p_rj · v_j, WIDE × LANES columns at a time.
        let mut cb = 0;
        while cb < dp {
            let ctx = |acc: &[[f32; LANES]; QROWS], at: usize| {
                let cols = LANES.min(d - at);
                for r in 0..rows {
                    let dst = std::slice::from_raw_parts_mut(
                        out.0.add((first + i0 + r) * h + head * d + at),
                        cols,
                    );
                    for (o, &x) in dst.iter_mut().zip(&acc[r]) {
                        *o = x * inv[r];
                    }
                }
            };
            if cb + WIDE * LANES <= dp {
                let acc = context_block::<WIDE>(&scores, &v, len, lp, dp, cb);
                for (w, acc) in acc.iter().enumerate() {
                    ctx(acc, cb + w * LANES);
                }
                cb += WIDE * LANES;
            } else {
                ctx(&context_block::<1>(&scores, &v, len, lp, dp, cb)[0], cb);
                cb += LANES;
            }
        }
        i0 += rows;
    }
}

/// `scores[r][jb + w·LANES + l] = q_r · k_{jb + w·LANES + l}` for `W`
/// blocks of keys, `qt` being `[d][QROWS]` and `kt` `[d][lp]`: `W` key
/// loads feed `W × QROWS` fused multiply-adds per depth. Pointers step
/// through both, so the loop is its loads and FMAs: with indexing, the
/// bounds checks and reloaded row offsets took more instructions than the
/// arithmetic, and the loop ran at the front end's pace (measured: fused
/// multiply-adds in place of multiplies and adds made no difference).
#[inline(always)]
fn score_block<const W: usize>(
    qt: &[f32],
    kt: &[f32],
    d: usize,
    lp: usize,
    jb: usize,
    scores: &mut [f32],
) {
    assert!(qt.len() >= d * QROWS && jb + W * LANES <= lp && kt.len() >= d * lp);
    let mut acc = [[[0f32; LANES]; QROWS]; W];
    let (mut qp, mut kp) = (qt.as_ptr(), kt[jb..].as_ptr());
    for _ in 0..d {
        // SAFETY: `d` steps of QROWS through `qt` and of `lp` through `kt`
        // (from column `jb`, `W × LANES` wide) stay inside them (asserted).
        let (qc, keys) = unsafe {
            let qc: [f32; QROWS] = qp.cast::<[f32; QROWS]>().read();
            let keys: [[f32; LANES]; W] = kp.cast::<[[f32; LANES]; W]>().read();
            qp = qp.add(QROWS);
            kp = kp.add(lp);
            (qc, keys)
        };
        for (acc, kv) in acc.iter_mut().zip(&keys) {
            for r in 0..QROWS {
                for l in 0..LANES {
                    acc[r][l] = qc[r].mul_add(kv[l], acc[r][l]);
                }
            }
        }
    }
    for (w, acc) in acc.iter().enumerate() {
        for (r, a) in acc.iter().enumerate() {
            let at = r * lp + jb + w * LANES;
            scores[at..at + LANES].copy_from_slice(a);
        }
    }
}

/// `Σ_j p_rj · v_j[cb + w·LANES ..]` for `W` blocks of columns, the
/// probabilities being `scores` (`[QROWS][lp]`) and `v` `[len][dp]`;
/// pointers step as in [`score_block`].
#[inline(always)]
fn context_block<const W: usize>(
    scores: &[f32],
    v: &[f32],
    len: usize,
    lp: usize,
    dp: usize,
    cb: usize,
) -> [[[f32; LANES]; QROWS]; W] {
    assert!(len <= lp && scores.len() >= QROWS * lp && cb + W * LANES <= dp);
    assert!(v.len() >= len * dp);
    let mut acc = [[[0f32; LANES]; QROWS]; W];
    let (mut pp, mut vp) = (scores.as_ptr(), v[cb..].as_ptr());
    for _ in 0..len {
        // SAFETY: `len` steps of 1 through each of the QROWS rows of
        // `scores` and of `dp` through `v` (from column `cb`, `W × LANES`
        // wide) stay inside them (asserted).
        let (p, values) = unsafe {
            let p: [f32; QROWS] = std::array::from_fn(|r| pp.add(r * lp).read());
            let values: [[f32; LANES]; W] = vp.cast::<[[f32; LANES]; W]>().read();
            pp = pp.add(1);
            vp = vp.add(dp);
            (p, values)
        };
        for (acc, vv) in acc.iter_mut().zip(&values) {
            for r in 0..QROWS {
                for l in 0..LANES {
                    acc[r][l] = p[r].mul_add(vv[l], acc[r][l]);
                }
            }
        }
    }
    acc
}

/// `attention(qkv)` for packed sequences (see [`PackedAttention`]).
pub fn packed_attention(
    qkv: &Tensor,
    lens: &[usize],
    heads: usize,
    kernel: Kernel,
) -> candle_core::Result<Tensor> {
    qkv.contiguous()?
        .apply_op1_no_bwd(&PackedAttention::new(lens, heads, kernel))
}

/// [`packed_attention`] run by a team over `qkv` (`[Σ lens, 3·h]`), each
/// thread its share of the (sequence, head) tasks, into `out` (`[Σ lens,
/// h]`), the same values bit for bit. Returns when every task is written.
///
/// # Safety
/// Every thread of `team` calls this together with the same arguments;
/// nothing else reads or writes `out`'s first `Σ lens · h` values
/// meanwhile, and `qkv` is not written.
pub unsafe fn attend_team(
    team: &Team,
    qkv: &[f32],
    lens: &[usize],
    heads: usize,
    kernel: Kernel,
    out: &Shared<f32>,
) {
    let tokens: usize = lens.iter().sum();
    assert!(tokens > 0 && qkv.len().is_multiple_of(3 * heads * tokens));
    assert!(out.len() >= qkv.len() / 3);
    let op = PackedAttention::new(lens, heads, kernel);
    let tasks = op.tasks(qkv, OutPtr(out.as_mut_ptr()));
    for &task in &tasks[team.share(tasks.len())] {
        attend_with(kernel, task, op.wide);
    }
    team.sync();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::team::testing::{in_team_of_two, two_cores};
    use candle_core::Device;

    fn kernels() -> Vec<Kernel> {
        Kernel::supported()
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
        let heads = 4;
        let qkv = random_qkv(64);
        let want = reference_attention(&qkv, &LENS, heads);
        for kernel in kernels() {
            let got = packed_attention(&qkv, &LENS, heads, kernel).unwrap();
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
        let total: usize = LENS.iter().sum();
        let bad = packed_attention(&qkv, &[total - 1], heads, Kernel::Portable);
        assert!(bad.is_err());
    }

    /// Sequences shorter than a block and spanning several.
    const LENS: [usize; 4] = [1, 7, 33, 130];

    /// QKV rows of width `3·h` for [`LENS`], random.
    fn random_qkv(h: usize) -> Tensor {
        let total: usize = LENS.iter().sum();
        Tensor::randn(0f32, 2.0, (total, 3 * h), &Device::Cpu).unwrap()
    }

    /// Every kernel, whatever width of block it steps by, run by a team or
    /// not, sums each value in the same order: the same bits as the portable
    /// build. Head widths of
    /// 32 (e5-small's) and 80 (wide steps then a narrow one), sequences
    /// shorter than a block and spanning several.
    #[test]
    fn every_kernel_gives_the_same_bits() {
        for (h, heads) in [(64, 2), (80, 1)] {
            let qkv = random_qkv(h);
            let want = packed_attention(&qkv, &LENS, heads, Kernel::Portable)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for kernel in kernels() {
                let got = packed_attention(&qkv, &LENS, heads, kernel)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert!(got == want, "{kernel:?}, head width {}", h / heads);
                if two_cores() {
                    let qkv = qkv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let out = Shared::new(want.len());
                    // SAFETY: both threads call it together; nothing else touches `out`.
                    in_team_of_two(|team| unsafe {
                        attend_team(team, &qkv, &LENS, heads, kernel, &out)
                    });
                    assert!(
                        out.into_vec() == want,
                        "{kernel:?}, head width {}, team",
                        h / heads
                    );
                }
            }
        }
    }

    /// The AVX-512 kernel's two-block steps, checked on any CPU: the
    /// portable build stepping by two blocks gives the bits it gives by one.
    #[test]
    fn wide_steps_give_the_same_bits() {
        for (h, heads) in [(384, 12), (80, 1)] {
            let qkv = random_qkv(h);
            let run = |wide| {
                let op = PackedAttention {
                    lens: &LENS,
                    heads,
                    kernel: Kernel::Portable,
                    wide,
                };
                let t = qkv.apply_op1_no_bwd(&op).unwrap();
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            assert!(run(true) == run(false), "head width {}", h / heads);
        }
    }
}
