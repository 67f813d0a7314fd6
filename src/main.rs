//! The `pareil` binary: parse arguments, run the command, map errors to exit codes.

use clap::Parser;
use pareil::cli::{self, args::Cli, Outcome};

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
    let cli = Cli::parse();
    if let Some(n) = cli.global.threads {
        // candle's matmuls and rayon both read this before their first use.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    match cli::run(cli) {
        Ok(Outcome::Ok) => {}
        Ok(Outcome::Exit(code)) => std::process::exit(code),
        Err(err) => {
            eprintln!("pareil: error: {err}");
            std::process::exit(cli::exit_code(&err));
        }
    }
}
