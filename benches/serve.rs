//! Load on `pareil serve`: latency p50/p99 and requests/s at several
//! concurrency levels, for `POST /v1/similar` (stored-passage queries, the
//! index-backed path) and `POST /v1/embeddings` (a 16-token text); the same
//! text from one client pausing 50 ms between requests (the server's
//! threads fall asleep between them) and while another client embeds
//! paragraphs in bulk; and batch `similar --queries` against one process
//! per query.
//!
//! ```sh
//! cargo bench --bench serve -- [--db STORE] [--seconds 5] [--clients 1,8,64]
//! ```
//! `PAREIL_BIN=path/to/pareil` serves with another build (before/after).
//! The default store is the scale bench's synthetic 100k store
//! (`cargo bench --bench scale -- --sizes 100000` makes it). The clients are
//! threads of this process with keep-alive connections: they share the
//! machine's cores with the server, which the table says.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    db: PathBuf,
    seconds: f64,
    clients: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        db: PathBuf::from("target/scale-bench/store-100000-100-0.01.db"),
        seconds: 5.0,
        clients: vec![1, 8, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--db" => a.db = it.next().expect("--db STORE").into(),
            "--seconds" => a.seconds = it.next().expect("--seconds N").parse().expect("seconds"),
            "--clients" => {
                a.clients = it
                    .next()
                    .expect("--clients 1,8,64")
                    .split(',')
                    .map(|c| c.parse().expect("client count"))
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &std::path::Path) -> Server {
        let bin = std::env::var_os("PAREIL_BIN").unwrap_or(env!("CARGO_BIN_EXE_pareil").into());
        let mut child = Command::new(bin)
            .arg("--db")
            .arg(db)
            .args(["serve", "--addr", "127.0.0.1:0", "--queue", "1024"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting pareil serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().trim_start_matches("listening on ").to_string();
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Latencies of every request `clients` threads made in `seconds`.
fn load(base: &str, path: &str, clients: usize, seconds: f64, body: fn(u64) -> String) -> Row {
    load_paced(base, path, clients, seconds, Duration::ZERO, body)
}

/// [`load`], each client idle `pause` before each request.
fn load_paced(
    base: &str,
    path: &str,
    clients: usize,
    seconds: f64,
    pause: Duration,
    body: fn(u64) -> String,
) -> Row {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let url = format!("{base}{path}");
    let started = Instant::now();
    let per_thread: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                let url = url.clone();
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mut lat = Vec::new();
                    let mut errors = 0;
                    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                    while Instant::now() < deadline {
                        std::thread::sleep(pause);
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let t0 = Instant::now();
                        let r = agent
                            .post(&url)
                            .header("content-type", "application/json")
                            .send(body(seed >> 11));
                        match r {
                            Ok(mut r) if r.status() == 200 => {
                                let _ = r.body_mut().read_to_vec();
                                lat.push(t0.elapsed().as_secs_f64());
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = per_thread.iter().flat_map(|(l, _)| l.clone()).collect();
    let errors = per_thread.iter().map(|(_, e)| e).sum();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] * 1000.0;
    Row {
        clients,
        requests: lat.len(),
        errors,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        per_s: lat.len() as f64 / wall,
    }
}

struct Row {
    clients: usize,
    requests: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    per_s: f64,
}

fn print_rows(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| clients | requests | errors | p50 ms | p99 ms | requests/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.0} |",
            r.clients, r.requests, r.errors, r.p50_ms, r.p99_ms, r.per_s
        );
    }
}

static PASSAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn similar_body(r: u64) -> String {
    let n = PASSAGES.load(std::sync::atomic::Ordering::Relaxed);
    format!("{{\"id\": {}, \"k\": 10}}", 1 + r % n)
}

fn embeddings_body(_: u64) -> String {
    // 16 tokens with the e5 tokenizer and its "query: " prompt.
    r#"{"input": "le prix de l'électricité en France cet hiver", "model": "multilingual-e5-small"}"#
        .to_string()
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let a = args();
    assert!(
        a.db.exists(),
        "{} missing: run the scale bench first",
        a.db.display()
    );
    let server = Server::start(&a.db);
    let stats: serde_json::Value = ureq::get(format!("{}/v1/stats", server.base))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let passages = stats["passages"].as_u64().unwrap();
    PASSAGES.store(passages, std::sync::atomic::Ordering::Relaxed);
    println!(
        "pareil serve, {} passages ({}), {} logical CPUs: {}, clients on the same machine",
        passages,
        a.db.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu()
    );
    // Warm: map the index pages, load the model.
    load(&server.base, "/v1/similar", 2, 1.0, similar_body);
    load(&server.base, "/v1/embeddings", 1, 0.5, embeddings_body);
    let rows: Vec<Row> = a
        .clients
        .iter()
        .map(|&c| load(&server.base, "/v1/similar", c, a.seconds, similar_body))
        .collect();
    print_rows("`POST /v1/similar` (`{\"id\": random, \"k\": 10}`)", &rows);
    let rows: Vec<Row> = a
        .clients
        .iter()
        .map(|&c| {
            load(
                &server.base,
                "/v1/embeddings",
                c,
                a.seconds,
                embeddings_body,
            )
        })
        .collect();
    print_rows("`POST /v1/embeddings` (one 16-token text)", &rows);
    one_text_after_pauses_and_during_bulk(&server.base, a.seconds);
    drop(server);
    batch_against_processes(&a.db, passages);
}

/// One client embedding the 16-token text: pausing 50 ms before each
/// request, then back to back while another client embeds 64 paragraphs of
/// about 180 tokens per request, again and again.
fn one_text_after_pauses_and_during_bulk(base: &str, seconds: f64) {
    let pause = Duration::from_millis(50);
    let paced = load_paced(base, "/v1/embeddings", 1, seconds, pause, embeddings_body);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (during, bulk_requests) = std::thread::scope(|s| {
        let bulk = s.spawn(|| {
            let url = format!("{base}/v1/embeddings");
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = ureq::post(&url)
                    .header("content-type", "application/json")
                    .send(bulk_body())
                    .expect("bulk embeddings");
                let _ = r.body_mut().read_to_vec();
                done += 1;
            }
            done
        });
        // Let the first bulk request get going.
        std::thread::sleep(Duration::from_millis(500));
        let row = load(base, "/v1/embeddings", 1, seconds, embeddings_body);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (row, bulk.join().unwrap())
    });
    println!("\n### `POST /v1/embeddings` (one 16-token text), one client\n");
    println!("| while | requests | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (how, r) in [
        ("idle 50 ms before each request".to_string(), paced),
        (
            format!("another client embeds 64 paragraphs per request ({bulk_requests} requests)"),
            during,
        ),
    ] {
        println!(
            "| {how} | {} | {:.2} | {:.2} |",
            r.requests, r.p50_ms, r.p99_ms
        );
    }
}

/// 64 paragraphs of about 180 tokens: bulk work (lanes) for the server.
fn bulk_body() -> String {
    let paragraph = "le prix de l'électricité en France cet hiver dépendra du nucléaire, \
        du gaz et de la météo, disent les opérateurs du réseau. "
        .repeat(6);
    let inputs: Vec<String> = (0..64).map(|i| format!("{i} {paragraph}")).collect();
    serde_json::json!({"input": inputs, "model": "multilingual-e5-small"}).to_string()
}

/// `similar --queries` (one process) against one `pareil similar --id`
/// process per query.
fn batch_against_processes(db: &std::path::Path, passages: u64) {
    let queries = 200u64;
    let file = std::env::temp_dir().join("pareil-serve-bench-queries.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..queries {
        writeln!(f, "{{\"id\": {}}}", 1 + (i * 7919) % passages).unwrap();
    }
    drop(f);
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_pareil"))
        .arg("--db")
        .arg(db)
        .args(["similar", "--queries"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success());
    let batch = t.elapsed().as_secs_f64();
    let singles = 20u64;
    let t = Instant::now();
    for i in 0..singles {
        let id = (1 + (i * 7919) % passages).to_string();
        let o = Command::new(env!("CARGO_BIN_EXE_pareil"))
            .arg("--db")
            .arg(db)
            .args(["similar", "--json", "--id", &id])
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    let single = t.elapsed().as_secs_f64() / singles as f64;
    println!("\n### Batch queries\n");
    println!("| how | per query |");
    println!("|---|---:|");
    println!(
        "| `similar --queries` ({queries} stored-passage queries, one process) | {:.2} ms |",
        1000.0 * batch / queries as f64
    );
    println!(
        "| one `pareil similar --id N --json` process per query ({singles} runs) | {:.1} ms |",
        1000.0 * single
    );
}
