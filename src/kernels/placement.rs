//! Where and how eagerly the encoder's threads run: a pool with a thread
//! for every CPU the process may use puts each thread on its own CPU, for
//! good; bulk threads yield to interactive ones ([`run_in_background`]).
//!
//! Why: after the machine has been idle a moment (a server between two
//! requests), the scheduler wakes a pool's threads on the CPU of the thread
//! that woke them and moves one away only some milliseconds later. A
//! forward pass split over two threads then runs both halves on one CPU,
//! the halves waiting for each other at every step. Measured on a 2-vCPU
//! Zen 3 VM, a 16-token query at 2 threads after 50 ms idle: 13.8 ms
//! (both threads seen on CPU 0 at the start of the pass), 3.6–4.5 ms
//! pinned; back to back, 2.7–3.4 ms either way.
//!
//! Only a pool that covers every CPU is pinned: it uses them all anyway, so
//! pinning takes no CPU away from the process. A smaller pool (`--threads`
//! below the core count) is left to the scheduler, so that several such
//! processes do not all crowd onto the first CPUs. Neither is a pool on a
//! hybrid CPU (Intel's performance + efficiency cores): there the scheduler
//! puts the busiest threads on the fast cores, which pinning would forbid.

use std::sync::OnceLock;

/// The CPUs this process may run on (the main thread's affinity), in order.
/// Empty where the platform does not say (pinning is then skipped).
fn allowed_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(read_allowed_cpus)
}

#[cfg(target_os = "linux")]
fn read_allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills at
    // most `size_of::<cpu_set_t>()` bytes of it. The process id names the
    // main thread, which pareil never pins.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
fn read_allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// The number of cores the process may use, read once and before any
/// thread is pinned (`available_parallelism` reads the *calling* thread's
/// affinity, which is one CPU on a pinned thread; it also reads cgroup
/// files on Linux, too slow to repeat for every query).
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The CPU for each of a pool's `threads` threads, or `None` when the pool
/// should not be pinned: fewer than two threads, not one per usable CPU, or
/// a hybrid CPU.
pub fn plan(threads: usize) -> Option<Vec<usize>> {
    // Read before any pinned thread exists: every later caller of `cores`
    // then gets the process's count, whichever thread it runs on.
    let cores = cores();
    let cpus = allowed_cpus();
    (threads >= 2 && threads == cpus.len() && threads == cores && !hybrid()).then(|| cpus.to_vec())
}

/// Whether the CPU mixes core types, read once.
fn hybrid() -> bool {
    static HYBRID: OnceLock<bool> = OnceLock::new();
    *HYBRID.get_or_init(|| hybrid_under(std::path::Path::new("/sys")))
}

/// Linux lists a hybrid CPU's efficiency cores in
/// `devices/cpu_atom/cpus` under sysfs (`root`); the file is absent or
/// empty elsewhere.
fn hybrid_under(root: &std::path::Path) -> bool {
    std::fs::read_to_string(root.join("devices/cpu_atom/cpus"))
        .is_ok_and(|cpus| !cpus.trim().is_empty())
}

/// Pins the calling thread to `cpu`; a failure (a CPU taken away since)
/// leaves it where it was.
pub fn pin_current_thread(cpu: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: as in `read_allowed_cpus`; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

/// Lowers the calling thread's priority (nice +5, Linux; elsewhere nothing)
/// for bulk work: a query arriving meanwhile (a server ingesting while it
/// answers) gets most of a core instead of a third. Measured on a 2-vCPU
/// Zen 3 server answering `/v1/similar` during bulk `/v1/embeddings`:
/// median 17.8 → 13.2–13.6 ms; on an otherwise idle machine it changes
/// nothing. A thread cannot raise its priority back without privileges,
/// so only dedicated bulk threads call this.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call; on Linux `who = 0` with PRIO_PROCESS names
    // the calling thread. A failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
    }
}

#[cfg(target_os = "linux")]
const BACKGROUND_NICE: libc::c_int = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pool_with_a_thread_per_usable_cpu_is_pinned() {
        assert_eq!(plan(0), None);
        assert_eq!(plan(1), None);
        assert_eq!(plan(cores() + 1), None);
        if cfg!(target_os = "linux") && cores() >= 2 && allowed_cpus().len() == cores() && !hybrid()
        {
            let cpus = plan(cores()).expect("a full-width pool is pinned");
            assert_eq!(cpus.len(), cores());
            assert!(cpus.windows(2).all(|w| w[0] < w[1]), "distinct CPUs");
        }
    }

    #[test]
    fn a_cpu_with_efficiency_cores_is_hybrid() {
        let sys = tempfile::tempdir().unwrap();
        assert!(!hybrid_under(sys.path()), "no cpu_atom: not hybrid");
        std::fs::create_dir_all(sys.path().join("devices/cpu_atom")).unwrap();
        std::fs::write(sys.path().join("devices/cpu_atom/cpus"), "\n").unwrap();
        assert!(!hybrid_under(sys.path()), "no efficiency core listed");
        std::fs::write(sys.path().join("devices/cpu_atom/cpus"), "12-19\n").unwrap();
        assert!(hybrid_under(sys.path()));
    }

    /// A pinned thread runs on its CPU, and the core count stays the
    /// process's afterwards.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_on_its_cpu() {
        let cores_before = cores();
        let Some(&cpu) = allowed_cpus().last() else {
            return;
        };
        let seen = std::thread::spawn(move || {
            pin_current_thread(cpu);
            // SAFETY: no arguments, no memory touched.
            let on = unsafe { libc::sched_getcpu() };
            (on, std::thread::available_parallelism().unwrap().get())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (cpu as i32, 1));
        assert_eq!(cores(), cores_before);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_background_thread_runs_at_a_lower_priority() {
        let nice = || {
            // SAFETY: plain system call about the calling thread.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        };
        let here = nice();
        let there = std::thread::spawn(move || {
            run_in_background();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(there, (here + BACKGROUND_NICE).min(19));
        assert_eq!(nice(), here, "only the calling thread");
    }
}
