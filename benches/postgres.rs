//! The PostgreSQL store against the SQLite store, side by side in one run.
//!
//!     cargo bench --bench postgres -- [--passages 100000] [--queries 200]
//!                                     [--no-dups] [--workers-corpus DIR] [--workers-files 20]
//!
//! Needs `PAREIL_TEST_POSTGRES` (a server with pgvector; `scripts/pg-server.sh
//! start DIR PORT` starts one) and writes into fresh databases there.
//!
//! - **build**: the same synthetic documents (100 passages each, one chunk,
//!   384-dimensional topical vectors — no model) written through
//!   `Store::replace_document` into a new SQLite file and a new PostgreSQL
//!   database; then `Store::maintain` (SQLite's approximate index; on
//!   PostgreSQL the HNSW index is kept by every insert);
//! - **similar**: `Store::nearest` (k = 10) for `--queries` stored passages'
//!   vectors, in process, median and p99 latency; recall@10 of each against
//!   SQLite's exact search;
//! - **dups**: `Engine::dups` in process on each store (wall time, findings);
//! - **workers** (with `--workers-corpus`): 1, 2 and 3 `pareil ingest`
//!   processes of the real binary and model on the same folder into a fresh
//!   database each time (threads per worker: 2 / workers, at least 1 — the
//!   workers share the machine's cores with the server), wall time and
//!   passages per second, against one process into a SQLite file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pareil::engine::{embedding_key, DupsOptions, Engine};
use pareil::model::Role;
use pareil::store::postgres::scratch::ScratchDatabase;
use pareil::store::{
    Filter, NewChunk, NewDocument, NewPassage, PostgresStore, SqliteStore, Store, StoreMeta,
};

const DIM: usize = 384;
const PER_DOC: usize = 100;
const TOPICS: usize = 2000;

struct Args {
    passages: usize,
    queries: usize,
    dups: bool,
    workers_corpus: Option<PathBuf>,
    workers_files: usize,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let val = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let num = |name: &str, d: usize| val(name).map_or(d, |v| v.parse().expect(name));
    Args {
        passages: num("--passages", 100_000),
        queries: num("--queries", 200),
        dups: !argv.iter().any(|a| a == "--no-dups"),
        workers_corpus: val("--workers-corpus").map(PathBuf::from),
        workers_files: num("--workers-files", 20),
    }
}

/// xorshift64*, fixed seed: the same data on every run and for both stores.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn gauss(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    fn unit(&mut self, around: Option<&[f32]>, noise: f32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM)
            .map(|i| around.map_or(0.0, |c| c[i]) + noise * self.gauss())
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

fn meta() -> StoreMeta {
    StoreMeta {
        model_id: "bench/synthetic".into(),
        revision: "1".into(),
        dim: DIM,
        pooling: "mean".into(),
        passage_prefix: "passage: ".into(),
        query_prefix: "query: ".into(),
    }
}

/// The synthetic documents: passages around `TOPICS` topic centres.
fn documents(n: usize) -> Vec<NewDocument> {
    let mut rng = Rng(0x5ca1_ab1e);
    let centres: Vec<Vec<f32>> = (0..TOPICS).map(|_| rng.unit(None, 1.0)).collect();
    let meta = meta();
    (0..n.div_ceil(PER_DOC))
        .map(|d| {
            let mut doc = NewDocument {
                path: format!("synth/doc{d:06}.txt"),
                content_hash: format!("{d}"),
                ..Default::default()
            };
            for k in 0..PER_DOC.min(n - d * PER_DOC) {
                let i = d * PER_DOC + k;
                let topic = (rng.next() % TOPICS as u64) as usize;
                let text = format!("passage {i} on topic {topic}, words {}", rng.next() % 1000);
                let key = embedding_key(&meta, Role::Passage, &text);
                doc.embeddings
                    .insert(key.clone(), rng.unit(Some(&centres[topic]), 0.06));
                doc.passages.push(NewPassage {
                    line_start: 2 * k + 1,
                    line_end: 2 * k + 1,
                    byte_start: 0,
                    byte_end: text.len(),
                    norm: pareil::corpus::normalize(&text),
                    traits: Some(pareil::engine::passage_traits(
                        &text,
                        &pareil::corpus::normalize(&text),
                    )),
                    chunks: vec![NewChunk {
                        byte_start: 0,
                        byte_end: text.len(),
                        tokens: 12,
                        emb_key: key,
                    }],
                    text,
                    duplicate_of: None,
                });
            }
            doc
        })
        .collect()
}

fn build(store: &mut dyn Store, docs: &[NewDocument]) -> f64 {
    let t = Instant::now();
    for (i, d) in docs.iter().enumerate() {
        store.replace_document(d).unwrap();
        if i % 100 == 99 {
            eprintln!("  {} passages", (i + 1) * PER_DOC);
        }
    }
    store.maintain(&mut |m| eprintln!("  {m}")).unwrap();
    t.elapsed().as_secs_f64()
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Median and p99 latency (ms) of `nearest` for the query vectors, and the
/// result lists.
fn search(store: &dyn Store, queries: &[Vec<f32>]) -> (f64, f64, Vec<Vec<i64>>) {
    let mut times = Vec::new();
    let mut lists = Vec::new();
    for q in queries {
        let t = Instant::now();
        let found = store.nearest(q, 10, &Filter::default()).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        lists.push(found.iter().map(|n| n.passage).collect());
    }
    (
        percentile(times.clone(), 0.5),
        percentile(times, 0.99),
        lists,
    )
}

fn recall(got: &[Vec<i64>], exact: &[Vec<i64>]) -> f64 {
    let hits: usize = got
        .iter()
        .zip(exact)
        .map(|(g, e)| g.iter().filter(|id| e.contains(id)).count())
        .sum();
    hits as f64 / exact.iter().map(Vec::len).sum::<usize>() as f64
}

fn dups(store: Box<dyn Store>) -> (f64, usize) {
    let engine = Engine::new(store, None);
    let t = Instant::now();
    let report = engine.dups(&DupsOptions::default()).unwrap();
    (t.elapsed().as_secs_f64(), report.findings.len())
}

fn main() {
    let args = parse_args();
    let Some(db) = ScratchDatabase::create() else {
        eprintln!("set PAREIL_TEST_POSTGRES to a server with pgvector");
        std::process::exit(2);
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "machine: {} cores, {cpu}; {} passages",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.passages
    );
    let docs = documents(args.passages);
    let dir = tempfile::tempdir().unwrap();
    let lite_path = dir.path().join("bench.db");

    eprintln!("building the SQLite store");
    let mut lite = SqliteStore::create_or_open(&lite_path, &meta()).unwrap();
    let lite_build = build(&mut lite, &docs);
    eprintln!("building the PostgreSQL store");
    let mut pg = PostgresStore::create_or_open(&db.url(), &meta()).unwrap();
    let pg_build = build(&mut pg, &docs);
    drop(docs);

    let ids: Vec<i64> = lite
        .dedup_rows()
        .unwrap()
        .iter()
        .map(|r| r.passage.id)
        .collect();
    let step = (ids.len() / args.queries.max(1)).max(1);
    let queries: Vec<Vec<f32>> = ids
        .iter()
        .step_by(step)
        .take(args.queries)
        .map(|&id| lite.passage_vector(id).unwrap().unwrap())
        .collect();
    lite.set_exact_search(true);
    lite.warm().unwrap();
    let (_, _, exact) = search(&lite, &queries);
    lite.set_exact_search(false);
    let (lite_p50, lite_p99, lite_lists) = search(&lite, &queries);
    let (pg_p50, pg_p99, pg_lists) = search(&pg, &queries);
    pg.set_exact_search(true);
    let (pgx_p50, pgx_p99, pgx_lists) = search(&pg, &queries);
    pg.set_exact_search(false);
    let n = args.passages;
    println!("\n| store | build (passages/s) | size MiB | `nearest` p50 ms | p99 ms | recall@10 |");
    println!("|---|---|---|---|---|---|");
    for (name, store, build_s, p50, p99, lists) in [
        (
            "SQLite + usearch index",
            &lite as &dyn Store,
            lite_build,
            lite_p50,
            lite_p99,
            &lite_lists,
        ),
        (
            "PostgreSQL + pgvector HNSW",
            &pg as &dyn Store,
            pg_build,
            pg_p50,
            pg_p99,
            &pg_lists,
        ),
        (
            "PostgreSQL, `--exact` (sequential scan)",
            &pg as &dyn Store,
            pg_build,
            pgx_p50,
            pgx_p99,
            &pgx_lists,
        ),
    ] {
        let st = store.stats().unwrap();
        let mib = (st.file_size_bytes + st.search_index.as_ref().map_or(0, |i| i.file_size_bytes))
            as f64
            / 1048576.0;
        println!(
            "| {name} | {:.0} ({build_s:.1} s) | {mib:.0} | {p50:.2} | {p99:.2} | {:.3} |",
            n as f64 / build_s,
            recall(lists, &exact)
        );
    }
    drop(pg);
    drop(lite);

    if args.dups {
        let (lite_s, lite_found) = dups(Box::new(
            SqliteStore::open_existing(&lite_path, true).unwrap(),
        ));
        let (pg_s, pg_found) = dups(Box::new(
            PostgresStore::open_existing(&db.url(), true).unwrap(),
        ));
        println!("\n| store | `dups` in process, s | findings |");
        println!("|---|---|---|");
        println!("| SQLite + usearch index | {lite_s:.1} | {lite_found} |");
        println!("| PostgreSQL + pgvector HNSW | {pg_s:.1} | {pg_found} |");
    }
    if let Some(corpus) = &args.workers_corpus {
        workers(corpus, args.workers_files, dir.path());
    }
}

/// 1, 2 and 3 ingest processes on one folder into one fresh database.
fn workers(corpus: &Path, files: usize, scratch: &Path) {
    let folder = scratch.join("corpus");
    std::fs::create_dir_all(&folder).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for f in names.iter().take(files) {
        std::fs::copy(f, folder.join(f.file_name().unwrap())).unwrap();
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pareil");
    let run = |db: &str, workers: usize| -> (f64, u64) {
        let threads = (2 / workers).max(1).to_string();
        let t = Instant::now();
        let children: Vec<_> = (0..workers)
            .map(|_| {
                std::process::Command::new(&bin)
                    .args(["--db", db, "--threads", &threads, "-q", "ingest"])
                    .arg(&folder)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let wall = t.elapsed().as_secs_f64();
        let out = std::process::Command::new(&bin)
            .args(["--db", db, "stats", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (wall, v["stats"]["passages"].as_u64().unwrap())
    };
    println!("\n| ingest of {files} files | workers | threads each | wall s | passages/s |");
    println!("|---|---|---|---|---|");
    let lite = scratch.join("workers.db");
    let (wall, passages) = run(lite.to_str().unwrap(), 1);
    println!(
        "| SQLite | 1 | 2 | {wall:.1} | {:.0} |",
        passages as f64 / wall
    );
    for workers in 1..=3 {
        let db = ScratchDatabase::create().unwrap();
        let (wall, passages) = run(&db.url(), workers);
        println!(
            "| PostgreSQL | {workers} | {} | {wall:.1} | {:.0} |",
            (2 / workers).max(1),
            passages as f64 / wall
        );
    }
}
