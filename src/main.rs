//! The `pareil` binary: parse arguments, run the command, map errors to exit codes.

use clap::Parser;
mod cli;

use cli::{
    args::{Cli, Command},
    Outcome,
};

/// mimalloc instead of glibc malloc: building the tokenizer's 250k-entry
/// vocabulary is a storm of small allocations, and start-up is most of a
/// one-shot `pareil similar "…"` (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Die quietly on a closed pipe (`pareil similar … | head`), like other
    // Unix tools, instead of panicking in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal at start-up,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    init_tracing();
    let cli = Cli::parse();
    // Bulk embedding only: elsewhere the reset pages only add to the peak
    // RSS (see `allocator`).
    if matches!(cli.command, Command::Ingest(_) | Command::Embed(_)) {
        pareil::allocator::keep_freed_pages();
    }
    // candle's matmuls and rayon both read this before their first use. Set
    // even for the default (every core): without it, candle counts the
    // physical cores by parsing /proc/cpuinfo on every matmul (the store's
    // searches: once per query, seen in `strace` of `pareil serve`), a read
    // that grows with the machine's CPU count.
    let threads = cli::worker_threads(&cli.global);
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    match cli::run(cli) {
        Ok(Outcome::Ok) => {}
        Ok(Outcome::Exit(code)) => std::process::exit(code),
        Err(err) => {
            eprintln!("pareil: error: {err}");
            std::process::exit(cli::exit_code(&err));
        }
    }
}

/// Spans of the pipeline stages (ingest, read, split, embed, write, search,
/// dups, ...) with their timings, on stderr, when `PAREIL_LOG` (or
/// `RUST_LOG`) asks for them, e.g. `PAREIL_LOG=pareil=debug`.
fn init_tracing() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = std::env::var("PAREIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let Some(filter) = filter else { return };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!(
            "pareil: warning: PAREIL_LOG={filter:?} is not a valid filter ({e}); logging off"
        );
        tracing_subscriber::EnvFilter::new("off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
