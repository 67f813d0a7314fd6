//! `pareil serve` end to end: the real binary on `127.0.0.1:0` (it prints
//! its address first) with a tiny model, spoken to over real HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::pareil_command;
use crate::wiring::Sandbox;

/// A running server, stopped with SIGTERM when dropped.
struct Server {
    child: std::sync::Mutex<Child>,
    base: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(s: &Sandbox, extra: &[&str]) -> Server {
        Server::launch(s.path(), &s.model, extra)
    }

    fn launch(cwd: &std::path::Path, model: &std::path::Path, extra: &[&str]) -> Server {
        let mut child = pareil_command(cwd)
            .env("PAREIL_MODEL", model)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            child: std::sync::Mutex::new(child),
            base,
            agent,
        }
    }

    /// Status, headers of interest, and body as JSON (or a string).
    fn call(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
        };
        // A refused connection (the server has stopped) reads as status 0.
        let Ok(mut response) = response else {
            return Reply {
                status: 0,
                json: Value::Null,
                retry_after: None,
            };
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            json,
            retry_after,
        }
    }

    fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&body.to_string()), None)
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, None)
    }

    /// SIGTERM, then the exit status (within 20 s).
    fn stop(&self) -> std::process::ExitStatus {
        let mut child = self.child.lock().unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    json: Value,
    retry_after: Option<String>,
}

impl Reply {
    /// Asserts a JSON error with this status whose message names `word`.
    fn refused(&self, status: u16, word: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let message = self.json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(&word.to_lowercase()),
            "expected {word:?} in {self:?}"
        );
        assert_eq!(self.json["error"]["code"], status);
    }
}

fn document(name: &str, text: &str) -> Value {
    json!({"name": name, "text": text})
}

#[test]
fn every_endpoint_answers() {
    let s = Sandbox::new();
    let server = Server::start(&s, &[]);
    assert_eq!(server.get("/health").json["status"], "ok");

    let added = server.post(
        "/v1/documents",
        document("a.txt", "le chat dort sur le tapis\n\nder hund schläft\n"),
    );
    assert_eq!(added.status, 200, "{added:?}");
    assert_eq!(added.json["report"]["documents_written"], 1);
    let b = document("b.txt", "une autre histoire de chat\n");
    assert_eq!(server.post("/v1/documents", b).status, 200);

    let by_text = server.post("/v1/similar", json!({"text": "chat", "k": 2}));
    assert_eq!(by_text.status, 200, "{by_text:?}");
    let results = by_text.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let id = results[0]["id"].as_i64().unwrap();
    let by_id = server.post("/v1/similar", json!({"id": id, "k": 5}));
    assert_eq!(by_id.json["query"]["passage"]["id"], id);
    assert!(by_id.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != id));
    let by_place = server.post("/v1/similar", json!({"at": "a.txt:3"}));
    assert_eq!(by_place.json["query"]["passage"]["line_start"], 3);

    let stats = server.get("/v1/stats");
    assert_eq!(stats.json["documents"], 2, "{stats:?}");
    assert_eq!(stats.json["passages"], 3);

    let float = server.post(
        "/v1/embeddings",
        json!({"input": ["bonjour", "hello world"], "model": "tiny-model"}),
    );
    assert_eq!(float.status, 200, "{float:?}");
    assert_eq!(float.json["object"], "list");
    let data = float.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    let v: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert!(float.json["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);
    let b64 = server.post(
        "/v1/embeddings",
        json!({"input": "bonjour", "model": "tiny-model", "encoding_format": "base64"}),
    );
    let bytes = decode_base64(b64.json["data"][0]["embedding"].as_str().unwrap());
    let w: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v, w, "base64 carries the same little-endian f32 values");

    let removed = server.call("DELETE", "/v1/documents/b.txt", None, None);
    assert_eq!(removed.json["removed"], json!(["b.txt"]), "{removed:?}");
    assert_eq!(server.get("/v1/stats").json["documents"], 1);
    server
        .call("DELETE", "/v1/documents/nothing.txt", None, None)
        .refused(404, "nothing.txt");

    let metrics = server.get("/metrics").json;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("pareil_requests_total{route=\"/v1/similar\",status=\"200\"} 3"));
    assert!(metrics.contains("pareil_request_duration_seconds_count{route=\"/v1/embeddings\"} 2"));
    let api = server.get("/openapi.json").json;
    assert!(api["paths"]["/v1/embeddings"]["post"].is_object());
}

/// Standard base64 (the alphabet OpenAI's clients decode).
fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[test]
fn bad_requests_get_json_errors_that_say_what_is_wrong() {
    let s = Sandbox::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.txt"), "dehors\n").unwrap();
    std::fs::create_dir(s.path().join("inbox")).unwrap();
    std::fs::write(s.path().join("inbox/in.txt"), "dedans\n").unwrap();
    let server = Server::start(&s, &["--body-limit", "2000", "--allow-dir", "inbox"]);
    let raw = |body: &str| server.call("POST", "/v1/similar", Some(body), None);
    raw("{\"text\": ").refused(400, "");
    raw("{\"text\": 3}").refused(422, "text");
    raw("{\"text\": \"x\", \"kk\": 3}").refused(422, "unknown field `kk`");
    raw(&format!("{{\"text\": \"{}\"}}", "a".repeat(3000))).refused(413, "");
    server
        .post("/v1/similar", json!({"text": "x", "id": 1}))
        .refused(400, "exactly one");
    server
        .post("/v1/similar", json!({"text": "x", "k": 0}))
        .refused(400, "`k`");
    server
        .post("/v1/similar", json!({"at": "a.txt"}))
        .refused(400, "path:line");
    server
        .post("/v1/similar", json!({"id": 999}))
        .refused(404, "999");
    server.get("/v1/nothing").refused(404, "no such route");
    server.get("/v1/similar").refused(405, "method");
    let embed = |body: Value| server.post("/v1/embeddings", body);
    embed(json!({"input": "x", "model": "text-embedding-3-small"})).refused(404, "tiny-model");
    embed(json!({"input": [[1, 2, 3]], "model": "tiny-model"})).refused(400, "token ids");
    embed(json!({"input": [], "model": "tiny-model"})).refused(400, "1 to 2048");
    embed(json!({"input": "x", "model": "tiny-model", "dimensions": 3})).refused(400, "dimensions");
    let docs = |body: Value| server.post("/v1/documents", body);
    docs(json!({"name": "n"})).refused(400, "`text`");
    let outside_file = outside.path().join("x.txt");
    docs(json!({"path": outside_file})).refused(403, "not under an --allow-dir");
    docs(json!({"path": s.path().join("inbox/../../etc/passwd")})).refused(400, "");
    let inside = docs(json!({"path": s.path().join("inbox/in.txt")}));
    assert_eq!(inside.status, 200, "{inside:?}");
    // Nothing above was stored but the allowed file.
    assert_eq!(server.get("/v1/stats").json["documents"], 1);
}

#[test]
fn token_is_required_and_other_addresses_need_one() {
    let s = Sandbox::new();
    let o = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token"));

    let server = Server::start(&s, &["--token", "s3cret"]);
    server.get("/v1/stats").refused(401, "bearer");
    server
        .call("GET", "/v1/stats", None, Some("wrong"))
        .refused(401, "bearer");
    assert_eq!(
        server.call("GET", "/v1/stats", None, Some("s3cret")).status,
        200
    );
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn full_queue_is_503_and_slow_requests_504() {
    let s = Sandbox::new();
    let long: Vec<String> = (0..2048)
        .map(|i| format!("{i} {}", "mot ".repeat(120)))
        .collect();
    let big = json!({"input": long, "model": "tiny-model"}).to_string();
    let server = Server::start(&s, &["--timeout", "0.001"]);
    server
        .call("POST", "/v1/embeddings", Some(&big), None)
        .refused(504, "--timeout");
    drop(server);

    // A client that sends half a body holds the one admission: the next
    // request is refused at once, and /health still answers.
    let server = Server::start(&s, &["--queue", "1", "--timeout", "30"]);
    let mut slow = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    use std::io::Write;
    slow.write_all(
        b"POST /v1/similar HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"text\":",
    )
    .unwrap();
    // Wait until it holds the admission (/metrics is never refused), then
    // any other request is refused at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .get("/metrics")
        .json
        .as_str()
        .unwrap()
        .contains("pareil_requests_in_flight 1")
    {
        assert!(
            Instant::now() < deadline,
            "the half-sent request was not admitted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused = server.get("/v1/stats");
    refused.refused(503, "retry");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(server.get("/health").status, 200);
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/v1/stats").status != 200 {
        assert!(
            Instant::now() < deadline,
            "the admission was not given back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn writes_from_elsewhere_are_seen_and_sigterm_loses_nothing() {
    let s = Sandbox::new();
    std::fs::write(s.path().join("first.txt"), "premier texte\n").unwrap();
    let o = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["ingest", "first.txt"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let server = std::sync::Arc::new(Server::start(&s, &[]));
    assert_eq!(server.get("/v1/stats").json["documents"], 1);

    // A separate `pareil ingest` into the same store: seen without restart.
    std::fs::write(s.path().join("second.txt"), "second texte\n").unwrap();
    let o = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["ingest", "second.txt"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let found = server.post("/v1/similar", json!({"at": "second.txt:1", "k": 5}));
    assert_eq!(found.status, 200, "{found:?}");

    // Queries while documents are written through the API.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| server.post("/v1/similar", json!({"text": "texte"})).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let writer = {
        let server = server.clone();
        std::thread::spawn(move || {
            (0..10)
                .map(|i| {
                    let text = format!("document numéro {i}\n\nun paragraphe de plus {i}\n");
                    server
                        .post("/v1/documents", document(&format!("api-{i}.txt"), &text))
                        .status
                })
                .collect::<Vec<u16>>()
        })
    };
    for r in readers {
        assert!(r.join().unwrap().iter().all(|&s| s == 200));
    }
    assert!(writer.join().unwrap().iter().all(|&s| s == 200));
    assert_eq!(server.get("/v1/stats").json["documents"], 12);

    // SIGTERM during a write: the write finishes, the server exits 0.
    let slow = {
        let server = server.clone();
        let text: String = (0..400).map(|i| format!("paragraphe {i}\n\n")).collect();
        std::thread::spawn(move || {
            server
                .post("/v1/documents", document("big.txt", &text))
                .status
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let answered = slow.join().unwrap();
    let stats = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    // Either the write was admitted before the signal (then it completed and
    // was answered 200) or it was not started; never half-written.
    let documents = stats["stats"]["documents"].as_u64().unwrap();
    match answered {
        200 => assert_eq!(documents, 13),
        _ => assert!(documents == 12 || documents == 13),
    }
}

#[test]
fn check_judges_texts_as_dups_would_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = crate::util::copy_seeds(dir.path());
    let model = crate::util::model_dir();
    let o = pareil_command(dir.path())
        .env("PAREIL_MODEL", &model)
        .args(["ingest", seeds.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let server = Server::launch(dir.path(), &model, &[]);
    let before = server.get("/v1/stats").json;
    let file = std::fs::read_dir(&seeds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("001_"))
        .unwrap();
    let stored = std::fs::read_to_string(&file).unwrap();
    let line = stored.lines().nth(24).unwrap().to_string();
    let edited = line.replacen("Surtout", "En tout cas", 1);
    assert_ne!(edited, line, "the seed line changed; pick another edit");
    let half = line[..line.char_indices().nth(line.chars().count() / 2).unwrap().0].to_string();
    let new = "Les manchots de Patagonie migrent vers le nord chaque hiver.".to_string();
    let r = server.post("/v1/check", json!({"texts": [line, edited, half, new]}));
    assert_eq!(r.status, 200, "{r:?}");
    let results = r.json["results"].as_array().unwrap();
    let first = |i: usize| &results[i]["matches"][0];
    assert_eq!(first(0)["kind"], "exact");
    assert_eq!(first(0)["canonical"]["line_start"], 25);
    assert!(first(0)["canonical"]["path"]
        .as_str()
        .unwrap()
        .contains("001_"));
    assert_eq!(first(1)["kind"], "near");
    assert!(first(1)["explanation"]
        .as_str()
        .unwrap()
        .contains("Surtout"));
    assert_eq!(first(2)["kind"], "contained");
    assert_eq!(results[3]["duplicate"], false, "{}", results[3]);
    assert_eq!(
        server.get("/v1/stats").json,
        before,
        "a check writes nothing"
    );
    server
        .post("/v1/check", json!({"texts": []}))
        .refused(400, "1 to 256");
    server
        .post("/v1/check", json!({"text": "  "}))
        .refused(400, "empty");
    server
        .post("/v1/check", json!({"text": "a", "texts": ["b"]}))
        .refused(400, "`text` or `texts`");
}

/// One JSON-RPC exchange with `pareil mcp` over its stdio.
struct Mcp {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    next_id: u64,
}

impl Mcp {
    fn start(s: &Sandbox) -> Mcp {
        let mut child = pareil_command(s.path())
            .env("PAREIL_MODEL", &s.model)
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Mcp {
            child,
            out,
            next_id: 0,
        }
    }

    fn send(&mut self, message: Value) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(reply["id"], id, "{reply}");
        reply
    }

    /// A tool's answer: (is it an error, its text).
    fn call(&mut self, tool: &str, arguments: Value) -> (bool, String) {
        let reply = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let result = &reply["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        (result["isError"] == true, text.to_string())
    }
}

#[test]
fn mcp_tools_over_stdio() {
    let s = Sandbox::new();
    let mut mcp = Mcp::start(&s);
    let init = mcp.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "test", "version": "0"}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "pareil", "{init}");
    mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let listed = mcp.request("tools/list", json!({}));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["similar", "check_duplicate", "ingest_text", "stats"]
    );

    let (err, text) = mcp.call(
        "ingest_text",
        json!({"name": "notes.txt", "text": "le chat dort\n\nder hund schläft\n"}),
    );
    assert!(!err, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["documents_written"], 1);
    let (err, text) = mcp.call("similar", json!({"text": "chat", "k": 1}));
    assert!(!err, "{text}");
    let found: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(found["results"][0]["path"], "notes.txt");
    let (err, text) = mcp.call("check_duplicate", json!({"text": "le chat dort"}));
    assert!(!err, "{text}");
    let checked: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        checked["results"][0]["matches"][0]["kind"], "exact",
        "{checked}"
    );
    let (err, text) = mcp.call("stats", json!({}));
    assert!(!err);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["passages"], 2);

    // A bad call is a tool error the agent can read; an unknown tool is a
    // protocol error.
    let (err, text) = mcp.call("similar", json!({"k": 1}));
    assert!(err && text.contains("exactly one"), "{text}");
    let (err, text) = mcp.call("ingest_text", json!({"name": "x"}));
    assert!(err && text.contains("text"), "{text}");
    let unknown = mcp.request("tools/call", json!({"name": "nope", "arguments": {}}));
    assert!(unknown["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));

    drop(mcp.child.stdin.take());
    assert!(mcp.child.wait().unwrap().success());
}

/// The Python interpreter of `scripts/setup-openai.sh`'s environment
/// (`PAREIL_OPENAI_VENV` or `.cache/venv-openai`), or `None` with a note
/// outside CI. In CI (`CI` set) a missing environment fails the test: a
/// skipped compatibility check must not pass as a passed one.
fn openai_python() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("PAREIL_OPENAI_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::util::repo_root().join(".cache/venv-openai"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    let why = format!(
        "no `openai` client environment at {} (run scripts/setup-openai.sh)",
        venv.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// Existing OpenAI clients work by changing the base URL: the official
/// Python client (its default base64 encoding, floats, one string, usage,
/// a wrong model → `NotFoundError`, a wrong key → `AuthenticationError`),
/// with the vectors equal to what the server's own JSON says.
#[test]
fn openai_python_client_embeds_through_serve() {
    let Some(python) = openai_python() else {
        return;
    };
    let s = Sandbox::new();
    let server = Server::start(&s, &["--token", "sesame"]);
    let script = crate::util::repo_root().join("tests/clients/openai_embeddings.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([server.base.as_str(), "sesame", "tiny-model"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = server
        .call(
            "POST",
            "/v1/embeddings",
            Some(&json!({"input": ["bonjour", "hello world"], "model": "tiny-model"}).to_string()),
            Some("sesame"),
        )
        .json;
    assert_eq!(seen["object"], "list");
    assert_eq!(seen["indexes"], json!([0, 1]));
    assert_eq!(seen["prompt_tokens"], ours["usage"]["prompt_tokens"]);
    assert!(seen["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(seen["total_tokens"], seen["prompt_tokens"]);
    for (i, expected) in ours["data"].as_array().unwrap().iter().enumerate() {
        let expected = expected["embedding"].as_array().unwrap();
        assert!(!expected.is_empty());
        for form in ["default", "float"] {
            let got = seen[form][i].as_array().unwrap();
            assert_eq!(got.len(), expected.len(), "{form}");
            for (g, e) in got.iter().zip(expected) {
                // base64 carries the f32 bits; floats go through decimal text.
                let (g, e) = (g.as_f64().unwrap(), e.as_f64().unwrap());
                assert!((g - e).abs() < 1e-6, "{form}[{i}]: {g} vs {e}");
            }
        }
    }
    assert_eq!(seen["single"], seen["float"][0]);
    assert_eq!(seen["wrong_model"]["status"], 404, "{seen}");
    assert!(seen["wrong_model"]["message"]
        .as_str()
        .unwrap()
        .contains("not served here"));
    assert_eq!(seen["wrong_token"]["status"], 401, "{seen}");
}

#[test]
fn serve_on_postgres_sees_writes_from_the_api_and_from_other_processes() {
    let Some(db) = pareil::store::postgres::scratch::ScratchDatabase::create() else {
        return;
    };
    let url = db.url();
    let s = Sandbox::new();
    let server = Server::start(&s, &["--db", &url]);
    for i in 0..3 {
        let text = format!("document numéro {i}\n\nun paragraphe de plus {i}\n");
        let r = server.post("/v1/documents", document(&format!("api-{i}.txt"), &text));
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A separate `pareil ingest` into the same database: seen without restart.
    std::fs::write(s.path().join("other.txt"), "un texte venu d'ailleurs\n").unwrap();
    let o = pareil_command(s.path())
        .env("PAREIL_MODEL", &s.model)
        .args(["--db", &url, "ingest", "other.txt"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.get("/v1/stats").json["documents"], 4);
    let found = server.post("/v1/similar", json!({"at": "other.txt:1", "k": 5}));
    assert_eq!(found.status, 200, "{found:?}");
    let gone = server.call("DELETE", "/v1/documents/api-0.txt", None, None);
    assert_eq!(gone.status, 200, "{gone:?}");
    assert_eq!(server.get("/v1/stats").json["documents"], 3);
    assert!(server.stop().success());
}
