//! Teams: every thread of the current rayon pool runs the same sequence of
//! steps, each on its share of the work, meeting at a spinning barrier
//! between steps — one parallel region for a whole forward pass instead of a
//! fork-join per operation.
//!
//! Why: a 16-token query is about a hundred operations of a few
//! microseconds each. Split by rayon one at a time, each costs a fork, a
//! steal and a join, and the idle thread yields to the kernel between them:
//! in a `perf` profile of 2-thread queries on Zen 3, the kernels took the
//! same CPU time as at 1 thread and the 16 % more was rayon's idle loop,
//! `sched_yield` and futex wake-ups. A barrier between two busy threads is
//! a few hundred nanoseconds.
//!
//! A team needs every pool thread at once, spinning: two teams in one pool
//! would each hold a thread the other waits for. [`run`] therefore forms at
//! most one team at a time in the process and returns `false` when one is
//! already running, when the pool has one thread, when it has more threads
//! than the machine has cores, or while a [`StandAside`] lives (bulk work
//! holding the cores): spinning would then steal the cores from the threads
//! it waits for. The caller falls back to rayon. Measured on a 2-vCPU Zen 3
//! server answering `/v1/similar` while embedding in bulk: median 33–38 ms
//! with teams, 17.6 ms standing aside.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Spins at a barrier before yielding the core: a step of the smallest
/// operation (a few microseconds) is over well within it.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// Whether a team is running somewhere in the process.
static TEAM_RUNNING: AtomicBool = AtomicBool::new(false);

/// How many [`StandAside`] guards live.
static STANDING_ASIDE: AtomicUsize = AtomicUsize::new(0);

/// While one lives, [`run`] forms no team (see the module doc): held by
/// work that keeps every core busy for a while, such as bulk lanes.
pub struct StandAside(());

impl StandAside {
    pub fn new() -> Self {
        STANDING_ASIDE.fetch_add(1, Ordering::AcqRel);
        StandAside(())
    }
}

impl Default for StandAside {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StandAside {
    fn drop(&mut self) {
        STANDING_ASIDE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a [`StandAside`] lives: bulk work holds the cores.
pub fn standing_aside() -> bool {
    STANDING_ASIDE.load(Ordering::Acquire) > 0
}

/// One thread's view of a running team.
pub struct Team<'a> {
    index: usize,
    size: usize,
    barrier: &'a Barrier,
}

impl Team<'_> {
    /// This thread's share of `n` items: contiguous, sizes differing by at
    /// most one, in thread order.
    pub fn share(&self, n: usize) -> Range<usize> {
        share(n, self.index, self.size)
    }

    /// Waits until every thread of the team has called `sync` as often as
    /// this one: what any of them wrote before is then visible to all.
    pub fn sync(&self) {
        self.barrier.wait();
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

/// Part `index` of `n` items split into `parts` contiguous shares.
fn share(n: usize, index: usize, parts: usize) -> Range<usize> {
    let (base, extra) = (n / parts, n % parts);
    let start = index * base + index.min(extra);
    start..start + base + usize::from(index < extra)
}

/// Runs `step` on every thread of the current rayon pool as one team and
/// returns `true`, or returns `false` without running it (see the module
/// doc). A panic on any thread releases the others and is re-raised.
pub fn run(step: impl Fn(&Team) + Sync) -> bool {
    let size = rayon::current_num_threads();
    if size < 2 || size > super::placement::cores() || standing_aside() {
        return false;
    }
    if TEAM_RUNNING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            TEAM_RUNNING.store(false, Ordering::Release);
        }
    }
    let _release = Release;
    let barrier = Barrier::new(size);
    let results = rayon::broadcast(|ctx| {
        let team = Team {
            index: ctx.index(),
            size,
            barrier: &barrier,
        };
        let result = catch_unwind(AssertUnwindSafe(|| step(&team)));
        if result.is_err() {
            barrier.poison();
        }
        result
    });
    for result in results {
        if let Err(panic) = result {
            resume_unwind(panic);
        }
    }
    true
}

/// A sense-reversing spin barrier for a fixed number of threads.
struct Barrier {
    size: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl Barrier {
    fn new(size: usize) -> Self {
        Barrier {
            size,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.size {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Relaxed) {
                panic!("another thread of the team panicked");
            }
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }
}

/// A buffer that a team's threads write in disjoint parts and read whole
/// after a [`Team::sync`].
pub struct Shared<T> {
    cells: Box<[UnsafeCell<T>]>,
}

// SAFETY: access goes through the unsafe methods below, whose callers
// promise that no two threads touch the same elements between syncs unless
// both only read.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T: Copy + Default> Shared<T> {
    pub fn new(len: usize) -> Self {
        Shared {
            cells: (0..len).map(|_| UnsafeCell::new(T::default())).collect(),
        }
    }

    pub fn from_vec(values: Vec<T>) -> Self {
        Shared {
            cells: values.into_iter().map(UnsafeCell::new).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The first element, for writes the caller splits further (tiles).
    /// Creates no reference: safe to call while other threads hold parts.
    pub fn as_mut_ptr(&self) -> *mut T {
        UnsafeCell::raw_get(self.cells.as_ptr())
    }

    /// Elements `range`, to write.
    ///
    /// # Safety
    /// No other thread reads or writes any of them until the next sync.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part_mut(&self, range: Range<usize>) -> &mut [T] {
        let cells = &self.cells[range];
        // SAFETY: `UnsafeCell<T>` has `T`'s layout; exclusive per the caller.
        std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), cells.len())
    }

    /// Elements `range`, to read.
    ///
    /// # Safety
    /// No thread writes any of them until the next sync.
    pub unsafe fn part(&self, range: Range<usize>) -> &[T] {
        let cells = &self.cells[range];
        // SAFETY: as in `part_mut`; shared per the caller.
        std::slice::from_raw_parts(UnsafeCell::raw_get(cells.as_ptr()), cells.len())
    }

    /// Every element, to read.
    ///
    /// # Safety
    /// As [`part`](Self::part).
    pub unsafe fn all(&self) -> &[T] {
        self.part(0..self.len())
    }

    /// The values, once the team is done.
    pub fn into_vec(self) -> Vec<T> {
        self.cells
            .into_vec()
            .into_iter()
            .map(UnsafeCell::into_inner)
            .collect()
    }
}

/// Helpers for the tests of the team versions of each kernel.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::placement::cores;
    use super::*;

    /// Whether this machine can run a team of two (the tests of team
    /// kernels pass trivially where it cannot, and say so).
    pub(crate) fn two_cores() -> bool {
        if cores() < 2 {
            eprintln!("one core: no team of two can run here");
        }
        cores() >= 2
    }

    /// [`run`], retried while another test's team holds the process's one.
    pub(crate) fn run_when_free(step: impl Fn(&Team) + Sync) -> bool {
        for _ in 0..10_000 {
            if run(&step) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    pub(crate) fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Runs `step` as a team of two, asserting that the team formed.
    pub(crate) fn in_team_of_two(step: impl Fn(&Team) + Sync) {
        let step = &step;
        assert!(pool(2).install(|| run_when_free(step)), "no team formed");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn shares_cover_every_item_once_in_order() {
        for parts in 1..6 {
            for n in 0..40 {
                let shares: Vec<_> = (0..parts).map(|i| share(n, i, parts)).collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[parts - 1].end, n);
                for pair in shares.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                let sizes: Vec<_> = shares.iter().map(|s| s.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    /// Each step reads what every thread wrote in the step before: without
    /// the barrier, some thread would read a stale value.
    #[test]
    fn a_sync_makes_every_write_before_it_visible() {
        if !two_cores() {
            return;
        }
        let steps = 2000;
        let ran = pool(2).install(|| {
            let cells = Shared::<usize>::new(2);
            let ok = AtomicBool::new(true);
            let ran = run_when_free(|team| {
                let me = team.share(2);
                for step in 1..=steps {
                    // SAFETY: each thread writes its own cell, then syncs.
                    unsafe { team_write(&cells, me.clone(), step) };
                    team.sync();
                    // SAFETY: nobody writes until the next sync.
                    if unsafe { cells.part(0..2) } != [step, step] {
                        ok.store(false, Ordering::Relaxed);
                    }
                    team.sync();
                }
            });
            assert!(ok.load(Ordering::Relaxed), "a thread read a stale value");
            ran
        });
        assert!(ran);
    }

    unsafe fn team_write(cells: &Shared<usize>, range: Range<usize>, value: usize) {
        cells.part_mut(range).fill(value);
    }

    #[test]
    fn one_thread_or_a_running_team_means_no_team() {
        assert!(!pool(1).install(|| run(|_| {})));
        if !two_cores() {
            return;
        }
        let inner = pool(2);
        let nested = pool(2).install(|| {
            let nested = AtomicBool::new(true);
            assert!(run_when_free(|team| {
                if team.share(2).start == 0 {
                    nested.store(inner.install(|| run(|_| {})), Ordering::Relaxed);
                }
            }));
            nested.load(Ordering::Relaxed)
        });
        assert!(!nested, "a second team formed while one ran");
    }

    #[test]
    fn no_team_forms_while_work_stands_aside() {
        if !two_cores() {
            return;
        }
        let aside = StandAside::new();
        assert!(!pool(2).install(|| run(|_| {})), "a team formed");
        drop(aside);
        assert!(pool(2).install(|| run_when_free(|_| {})), "no team after");
    }

    #[test]
    fn a_panic_in_one_thread_reaches_the_caller() {
        if !two_cores() {
            return;
        }
        let caught = catch_unwind(|| {
            pool(2).install(|| {
                run_when_free(|team| {
                    if team.share(2).start == 0 {
                        panic!("boom");
                    }
                    team.sync();
                })
            })
        });
        assert!(caught.is_err());
    }
}
