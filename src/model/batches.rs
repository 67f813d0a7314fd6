//! How inputs become forward passes: batches of at most a token budget over
//! length-sorted inputs (similar lengths together, as the encoder packs
//! sequences without padding anyway), run in one of two ways.
//!
//! - Few tokens (a query, a short check): one batch after another, every
//!   thread of the encoder's pool splitting each operation.
//! - Bulk: *lanes*. Each thread encodes whole batches on its own, in a
//!   one-thread pool, taking the next batch when it is done. Splitting
//!   every operation of a bulk batch cost a fifth of the throughput: on a
//!   Zen 3 with 2 cores, two 1-thread encodes of the 188-token synthetic
//!   paragraphs side by side ran at 2,557 tokens/s each (as fast as one
//!   alone), the 2-thread encode at 3,700–4,300 tokens/s in all.
//!
//! A batch one thread runs alone (a lane's, or any batch of a one-thread
//! encoder) holds at most [`THREAD_BATCH_TOKENS`]: its activations then
//! stay in that core's caches from one operation to the next, where a
//! [`TOKEN_BUDGET`] batch's (25 MB for the feed-forward layer's) go to
//! memory and back at every step.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::tokenizer::Tokenized;
use super::TOKEN_BUDGET;
use crate::error::Result;
use crate::kernels::team::StandAside;

/// Tokens per batch when one thread runs it. Measured on a Zen 4 (1 MB
/// L2 per core), `cargo bench --bench encode`, int8, alternated rounds:
/// at 1 thread, against 4,096-token batches, the 188-token synthetic
/// paragraphs +10–20 % (256 ≈ 384 > 512 > 768 > 4,096), 3,000 debian-dev
/// paragraphs of 42 tokens +27–35 %, f32 weights +5–15 %; as 2 lanes,
/// against 2,048, synthetic +5–16 %, debian-dev level.
pub(super) const THREAD_BATCH_TOKENS: usize = 256;

/// Input indices, longest first, cut into batches of at most `budget`
/// tokens (a longer input alone); returned as ranges of that order.
pub(super) fn plan(inputs: &[Tokenized], budget: usize) -> (Vec<usize>, Vec<Range<usize>>) {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].ids.len()));
    let mut batches = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < order.len() && (end == start || tokens + inputs[order[end]].ids.len() <= budget)
        {
            tokens += inputs[order[end]].ids.len();
            end += 1;
        }
        batches.push(start..end);
        start = end;
    }
    (order, batches)
}

/// Whether a job of `total` tokens runs as lanes on `threads` threads:
/// only with two threads or more, and tokens enough for at least two
/// batches per lane (so the last ones even out).
pub(super) fn runs_as_lanes(total: usize, threads: usize) -> bool {
    threads >= 2 && total >= 2 * threads * THREAD_BATCH_TOKENS
}

/// Tokens per batch: [`THREAD_BATCH_TOKENS`] when one thread runs each
/// batch (lanes, or a one-thread encoder), [`TOKEN_BUDGET`] when every
/// thread splits each operation of a batch (a short job: fewer tokens than
/// lanes need).
pub(super) fn budget(threads: usize, lanes: bool) -> usize {
    if lanes || threads <= 1 {
        THREAD_BATCH_TOKENS
    } else {
        TOKEN_BUDGET
    }
}

/// Runs `forward(i)` for every batch `i < batches`, one lane (a one-thread
/// pool) per batch at a time, and calls `done(i, result)` on this thread as
/// each finishes. After an error no batch starts; the first error is
/// returned. No team forms meanwhile (see [`StandAside`]).
pub(super) fn run_on_lanes<T: Send>(
    lanes: &[rayon::ThreadPool],
    batches: usize,
    forward: impl Fn(usize) -> Result<T> + Sync,
    mut done: impl FnMut(usize, T),
) -> Result<()> {
    let _busy = StandAside::new();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for lane in lanes {
            let (tx, next, forward) = (tx.clone(), &next, &forward);
            scope.spawn(move || {
                lane.install(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        break;
                    }
                    let result = forward(i);
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        next.store(batches, Ordering::Relaxed);
                        break;
                    }
                })
            });
        }
        drop(tx);
        let mut first_error = None;
        for (i, result) in rx {
            match result {
                Ok(value) if first_error.is_none() => done(i, value),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn inputs(lens: &[usize]) -> Vec<Tokenized> {
        lens.iter()
            .map(|&n| Tokenized {
                ids: vec![1; n],
                truncated: 0,
            })
            .collect()
    }

    #[test]
    fn batches_hold_the_budget_longest_first_and_every_input_once() {
        let lens = [5, 300, 40, 700, 40, 1, 299];
        let (order, batches) = plan(&inputs(&lens), 340);
        assert_eq!(order, [3, 1, 6, 2, 4, 0, 5]);
        let sizes: Vec<usize> = batches
            .iter()
            .map(|b| order[b.clone()].iter().map(|&i| lens[i]).sum())
            .collect();
        // 700 alone (over the budget); 300 and 299 do not fit together.
        assert_eq!(sizes, [700, 300, 299 + 40, 40 + 5 + 1]);
        assert_eq!(batches.last().unwrap().end, lens.len());
    }

    #[test]
    fn lanes_only_for_enough_tokens_and_threads() {
        assert!(!runs_as_lanes(100_000, 1));
        assert!(!runs_as_lanes(2 * 2 * THREAD_BATCH_TOKENS - 1, 2));
        assert!(runs_as_lanes(2 * 2 * THREAD_BATCH_TOKENS, 2));
        assert!(!runs_as_lanes(100_000, 200));
    }

    #[test]
    fn one_thread_per_batch_takes_small_batches() {
        assert_eq!(budget(1, false), THREAD_BATCH_TOKENS);
        assert_eq!(budget(2, true), THREAD_BATCH_TOKENS);
        assert_eq!(budget(2, false), TOKEN_BUDGET);
    }

    fn lanes(n: usize) -> Vec<rayon::ThreadPool> {
        (0..n)
            .map(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_batch_runs_once_on_a_one_thread_pool() {
        let mut seen = [0; 50];
        run_on_lanes(
            &lanes(3),
            seen.len(),
            |i| Ok((i, rayon::current_num_threads())),
            |i, (j, threads)| {
                assert_eq!((i, threads), (j, 1));
                seen[i] += 1;
            },
        )
        .unwrap();
        assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn an_error_stops_the_lanes_and_is_returned() {
        let started = AtomicUsize::new(0);
        let result = run_on_lanes(
            &lanes(2),
            1000,
            |i| {
                started.fetch_add(1, Ordering::Relaxed);
                if i == 3 {
                    return Err(Error::Usage("batch 3".into()));
                }
                // Slow enough that the other lane cannot run through every
                // batch before the error stops it, even on a loaded machine.
                std::thread::sleep(std::time::Duration::from_millis(2));
                Ok(())
            },
            |_, ()| {},
        );
        assert!(matches!(result, Err(Error::Usage(m)) if m == "batch 3"));
        assert!(started.load(Ordering::Relaxed) < 1000);
    }
}
