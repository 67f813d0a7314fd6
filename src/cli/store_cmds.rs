//! The store commands: ingest, similar, dups, remove, stats. Each turns its
//! arguments into library options, runs the engine, and prints.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::args::{
    DupsArgs, DupsFormat, GlobalArgs, IngestArgs, OnDuplicateArg, ProgressArg, RemoveArgs,
    SimilarArgs, StatsArgs,
};
use super::{exit, load_model, model_spec, Outcome, Ui};
use pareil::dedup::{Kind, Thresholds};
use pareil::engine::{
    parse_place, stream_name, DuplicateFinding, DuplicateGroup, DupsOptions, DupsReport, Engine,
    IngestOptions, Input, OnDuplicate, Place, Progress, Query, SimilarOptions, SimilarRequest,
};
use pareil::error::{Error, Result};

/// A progress bar on stderr, drawn only when stderr is a terminal and not --quiet.
struct Bar {
    bar: Option<ProgressBar>,
    plain: Option<PlainProgress>,
    quiet: bool,
}

/// Progress as a line on stderr every [`PLAIN_EVERY`], for logs.
struct PlainProgress {
    started: Instant,
    last: Instant,
    files: usize,
    files_started: usize,
    to_embed: usize,
    embedded: usize,
    path: String,
}

/// Default interval of plain progress lines; `PAREIL_PROGRESS_EVERY`
/// (seconds) sets another.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

fn plain_every() -> Duration {
    std::env::var("PAREIL_PROGRESS_EVERY")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PLAIN_EVERY, Duration::from_secs_f64)
}

impl PlainProgress {
    fn maybe_print(&mut self) {
        if self.last.elapsed() < plain_every() {
            return;
        }
        self.last = Instant::now();
        eprintln!(
            "pareil: [{:.0} s] file {}/{} ({}), chunks embedded {}/{}",
            self.started.elapsed().as_secs_f64(),
            self.files_started,
            self.files,
            self.path,
            self.embedded,
            self.to_embed
        );
    }
}

impl Bar {
    fn new(quiet: bool, mode: ProgressArg) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, plain) = match mode {
            _ if quiet => (false, false),
            ProgressArg::Auto => (terminal, !terminal),
            ProgressArg::Bar => (terminal, false),
            ProgressArg::Plain => (false, true),
            ProgressArg::None => (false, false),
        };
        let bar = bar.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} chunks  {per_sec}  eta {eta}  {msg}")
                    .expect("valid template"),
            );
            b
        });
        let plain = plain.then(|| PlainProgress {
            started: Instant::now(),
            last: Instant::now(),
            files: 0,
            files_started: 0,
            to_embed: 0,
            embedded: 0,
            path: String::new(),
        });
        Bar { bar, plain, quiet }
    }
}

/// Files from this size on get a line when their splitting starts.
const LARGE_FILE: usize = 1 << 20;

impl Progress for Bar {
    fn note(&mut self, msg: &str) {
        match (&self.bar, &self.plain) {
            (Some(b), _) => b.println(format!("pareil: {msg}")),
            (None, Some(_)) => eprintln!("pareil: {msg}"),
            _ => {}
        }
    }
    fn preparing(&mut self, path: &str, bytes: usize) {
        if bytes < LARGE_FILE {
            return;
        }
        let msg = format!(
            "splitting {path} ({:.0} MB) into model windows",
            bytes as f64 / 1e6
        );
        match (&self.bar, &self.plain) {
            (Some(b), _) => b.set_message(msg),
            (None, Some(_)) => eprintln!("pareil: {msg}"),
            _ => {}
        }
    }
    fn files(&mut self, total: usize) {
        if let Some(p) = &mut self.plain {
            p.files = total;
        }
    }
    fn file_started(&mut self, path: &str, to_embed: usize) {
        if let Some(b) = &self.bar {
            b.inc_length(to_embed as u64);
            b.set_message(path.to_string());
        }
        if let Some(p) = &mut self.plain {
            p.files_started += 1;
            p.to_embed += to_embed;
            p.path = path.to_string();
            p.maybe_print();
        }
    }
    fn embedded(&mut self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        if let Some(p) = &mut self.plain {
            p.embedded += n;
            p.maybe_print();
        }
    }
    fn warn(&mut self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("pareil: warning: {msg}")),
            None if !self.quiet => eprintln!("pareil: warning: {msg}"),
            None => {}
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn ingest(g: &GlobalArgs, a: IngestArgs, ui: &Ui) -> Result<Outcome> {
    let mut engine = Engine::create(&g.db, load_model(g)?)?;
    let opts = IngestOptions {
        include: a.include,
        exclude: a.exclude,
        lossy: a.lossy,
        prune: a.prune,
        on_duplicate: match a.on_duplicate {
            OnDuplicateArg::Report => OnDuplicate::Report,
            OnDuplicateArg::Skip => OnDuplicate::Skip,
            OnDuplicateArg::Fail => OnDuplicate::Fail,
        },
        thresholds: Thresholds::default(),
    };
    // `-` is standard input, read once however often it is named.
    let mut inputs: Vec<Input> = a
        .paths
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .map(|p| Input::Path(p.clone()))
        .collect();
    if a.name.is_some() && !a.paths.iter().any(|p| p.as_os_str() == "-") {
        return Err(Error::Usage(
            "--name names the document read from standard input; add `-` to the paths".into(),
        ));
    }
    if a.paths.iter().any(|p| p.as_os_str() == "-") {
        inputs.push(Input::Reader {
            name: stream_name(a.name.as_deref())?,
            reader: Box::new(std::io::stdin()),
        });
    }
    let report = {
        let mut bar = Bar::new(g.quiet, a.progress);
        engine.ingest(inputs, &opts, &mut bar)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        ui.info(&format!(
            "{} documents ({} unchanged, {} written, {} skipped, {} refused), {} passages; chunks embedded {} / reused {}; {} removed; {:.1} s",
            report.documents,
            report.documents_unchanged,
            report.documents_written,
            report.skipped.len(),
            report.refused.len(),
            report.passages,
            report.chunks_embedded,
            report.chunks_reused,
            report.removed.len(),
            report.seconds
        ));
        if !report.duplicates.is_empty() {
            println!(
                "duplicates found while ingesting ({}):",
                report.duplicates.len()
            );
            print_findings(&report.duplicates);
        }
        for (path, why) in &report.refused {
            eprintln!("pareil: refused {path}: {why}");
        }
    }
    if !report.refused.is_empty() {
        return Ok(Outcome::Exit(exit::DUPLICATES));
    }
    if !report.skipped.is_empty() {
        return Ok(Outcome::Exit(exit::INPUT_SKIPPED));
    }
    Ok(Outcome::Ok)
}

/// `similar --queries FILE|-`: one engine (model loaded once) for every
/// line; a bad line is answered with an error object and the rest go on.
/// Exit 5 (input skipped) when any line failed.
fn similar_batch(
    g: &GlobalArgs,
    a: &SimilarArgs,
    file: &Path,
    defaults: &SimilarOptions,
) -> Result<Outcome> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut engine = open_engine(g, false, true)?;
    engine.set_exact_search(a.exact);
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::io(file, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = batch_request(&line)
            .and_then(|r| r.resolve(defaults))
            .and_then(|(query, opts)| engine.similar(&query, &opts));
        let v = match answer {
            Ok(found) => serde_json::to_value(found)?,
            Err(e) => {
                failed += 1;
                serde_json::json!({"line": n + 1, "error": e.to_string()})
            }
        };
        writeln!(out, "{v}").map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(if failed > 0 {
        eprintln!(
            "pareil: {failed} quer{} failed (see their error lines)",
            if failed == 1 { "y" } else { "ies" }
        );
        Outcome::Exit(exit::INPUT_SKIPPED)
    } else {
        Outcome::Ok
    })
}

/// A `--queries` line: a JSON object, or else the query text itself.
fn batch_request(line: &str) -> Result<SimilarRequest> {
    if line.trim_start().starts_with('{') {
        serde_json::from_str(line).map_err(|e| Error::Usage(format!("not a query object: {e}")))
    } else {
        Ok(SimilarRequest {
            text: Some(line.to_string()),
            ..SimilarRequest::default()
        })
    }
}

/// An engine over the existing store, with the model (loaded on first use)
/// when the command may need it.
fn open_engine(g: &GlobalArgs, writable: bool, with_model: bool) -> Result<Engine> {
    let engine = Engine::open(&g.db, writable, None)?;
    Ok(if with_model {
        engine.with_model(model_spec(g)?)
    } else {
        engine
    })
}

/// Whether a query text reads as `FILE:LINE` of an existing file: then the
/// user most likely meant `--at`.
fn reads_as_file_line(text: &str) -> bool {
    parse_place(text).is_ok_and(|(path, _)| Path::new(&path).is_file())
}

pub fn similar(g: &GlobalArgs, a: SimilarArgs) -> Result<Outcome> {
    let opts = SimilarOptions {
        k: a.k,
        min_score: a.min_score,
        exclude_same_doc: a.exclude_same_doc,
        doc_glob: a.doc.clone(),
        collapse: !a.no_collapse,
    };
    if let Some(file) = &a.queries {
        return similar_batch(g, &a, file, &opts);
    }
    let mut engine = open_engine(g, false, a.text.is_some())?;
    let query = match (&a.text, &a.at, a.id) {
        (Some(t), _, _) => {
            if !g.quiet && reads_as_file_line(t) {
                eprintln!(
                    "pareil: note: searching for the text {t:?}; for the stored passage at \
                     that line, give --at {t}"
                );
            }
            Query::Text(t.clone())
        }
        (_, Some(at), _) => {
            let (path, line) = parse_place(at).map_err(|e| Error::Usage(format!("--at {e}")))?;
            Query::At { path, line }
        }
        (_, _, Some(id)) => Query::Passage(id),
        _ => return Err(Error::Usage("give a TEXT, --at FILE:LINE or --id N".into())),
    };
    engine.set_exact_search(a.exact);
    let found = engine.similar(&query, &opts)?;
    let (query, hits) = (found.query, found.results);
    if a.json {
        let v = serde_json::json!({"query": query, "results": hits});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if a.jsonl {
        for h in &hits {
            println!("{}", serde_json::to_string(h)?);
        }
    } else {
        if let Some(p) = &query.passage {
            println!(
                "query: passage {} at {}:{} — {}",
                p.id,
                p.path,
                p.line_start,
                shorten(&query.text, 100)
            );
            for o in &query.also {
                println!(
                    "       same text also at {}:{}",
                    o.path,
                    lines(o.line_start, o.line_end)
                );
            }
        }
        if hits.is_empty() {
            println!("no results");
        }
        println!("{:>4}  {:>6}  {:<34}  snippet", "rank", "score", "location");
        for h in &hits {
            let loc = format!(
                "{}:{}",
                short_path(&h.path),
                lines(h.line_start, h.line_end)
            );
            println!(
                "{:>4}  {:>6.3}  {:<34}  {}",
                h.rank,
                h.score,
                loc,
                shorten(&h.snippet, 90)
            );
            for o in &h.also {
                println!(
                    "{:>4}  {:>6}  {:<34}  (same text)",
                    "",
                    "",
                    format!(
                        "{}:{}",
                        short_path(&o.path),
                        lines(o.line_start, o.line_end)
                    )
                );
            }
        }
    }
    Ok(Outcome::Ok)
}

fn lines(a: usize, b: usize) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

fn short_path(p: &str) -> String {
    p.to_string()
}

/// At most `max` characters, on one line.
pub fn shorten(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn parse_kinds(kinds: &[String]) -> Result<Vec<Kind>> {
    kinds.iter().map(|k| k.parse::<Kind>()).collect()
}

fn print_findings(findings: &[DuplicateFinding]) {
    for (i, f) in findings.iter().enumerate() {
        let span = |p: &Place| {
            format!(
                "{}:{}",
                short_path(&p.path),
                lines(p.line_start, p.line_end)
            )
        };
        let n = if f.duplicate.passages > 1 {
            format!(" ({} passages)", f.duplicate.passages)
        } else {
            String::new()
        };
        println!(
            "{:>3}. {:<9} {:.3}  {}  duplicates  {}{}",
            i + 1,
            f.kind,
            f.score,
            span(&f.duplicate),
            span(&f.canonical),
            n
        );
        match (&f.explanation, f.kind) {
            (Some(e), _) => println!("      {}", shorten(e, 160)),
            (None, Kind::Semantic) => {
                println!("      canonical: {}", shorten(&f.canonical.text, 110));
                println!("      duplicate: {}", shorten(&f.duplicate.text, 110));
            }
            _ => println!("      {}", shorten(&f.duplicate.text, 110)),
        }
    }
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn dups(g: &GlobalArgs, a: DupsArgs) -> Result<Outcome> {
    let mut engine = open_engine(g, false, false)?;
    engine.set_exact_search(a.exact);
    let mut thresholds = Thresholds::default();
    if let Some(v) = a.near {
        thresholds.near_jaccard = v;
    }
    if let Some(v) = a.contained {
        thresholds.contained = v;
    }
    if let Some(v) = a.semantic {
        thresholds.semantic = v;
    }
    let opts = DupsOptions {
        thresholds,
        kinds: parse_kinds(&a.kinds)?,
        doc_glob: a.doc.clone(),
        histograms: a.histogram,
    };
    let result = engine.dups(&opts)?;
    let format = if a.json {
        DupsFormat::Json
    } else if a.csv {
        DupsFormat::Csv
    } else {
        a.format
    };
    if a.histogram {
        match format {
            DupsFormat::Json => println!("{}", serde_json::to_string_pretty(&result.histograms)?),
            _ => {
                for h in &result.histograms {
                    println!("{h}");
                }
            }
        }
        return Ok(Outcome::Ok);
    }
    match format {
        DupsFormat::Json => print_dups_json(&result, a.groups)?,
        DupsFormat::Csv => print_dups_csv(&result.findings),
        DupsFormat::Table if a.groups => print_groups(&result.groups),
        DupsFormat::Table => {
            if result.findings.is_empty() {
                println!("no duplicates among {} passages", result.passages);
            } else {
                println!(
                    "{} finding(s) among {} passages:",
                    result.findings.len(),
                    result.passages
                );
                print_findings(&result.findings);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn print_dups_json(result: &DupsReport, groups: bool) -> Result<()> {
    let v = if groups {
        serde_json::json!({"passages": result.passages, "groups": result.groups})
    } else {
        serde_json::json!({"passages": result.passages, "findings": result.findings})
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn print_dups_csv(findings: &[DuplicateFinding]) {
    println!("kind,score,duplicate_path,duplicate_lines,canonical_path,canonical_lines,passages,explanation");
    for f in findings {
        println!(
            "{},{:.4},{},{},{},{},{},{}",
            f.kind,
            f.score,
            csv_field(&f.duplicate.path),
            lines(f.duplicate.line_start, f.duplicate.line_end),
            csv_field(&f.canonical.path),
            lines(f.canonical.line_start, f.canonical.line_end),
            f.duplicate.passages,
            csv_field(f.explanation.as_deref().unwrap_or(""))
        );
    }
}

fn print_groups(groups: &[DuplicateGroup]) {
    for (i, grp) in groups.iter().enumerate() {
        println!(
            "group {}: canonical {}:{}  {}",
            i + 1,
            grp.canonical.path,
            grp.canonical.line_start,
            shorten(&grp.canonical.text, 80)
        );
        for m in &grp.members {
            println!(
                "    {:<9} {:.3}  {}:{}",
                m.kind, m.score, m.place.path, m.place.line_start
            );
        }
    }
}

pub fn remove(g: &GlobalArgs, a: RemoveArgs, ui: &Ui) -> Result<Outcome> {
    let mut engine = open_engine(g, true, false)?;
    for path in engine.remove(&a.paths)? {
        ui.info(&format!("removed {path}"));
    }
    Ok(Outcome::Ok)
}

pub fn stats(g: &GlobalArgs, a: StatsArgs) -> Result<Outcome> {
    let engine = open_engine(g, false, false)?;
    let s = engine.stats()?;
    let docs = if a.documents {
        engine.store().documents()?
    } else {
        Vec::new()
    };
    if a.json {
        let v = serde_json::json!({"stats": s, "documents": docs});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Outcome::Ok);
    }
    println!("store       {}", Path::new(&s.path).display());
    println!(
        "model       {} ({}), dim {}, {}",
        s.meta.model_id, s.meta.revision, s.meta.dim, s.meta.pooling
    );
    println!("documents   {}", s.documents);
    println!(
        "passages    {} ({} stored as duplicates)",
        s.passages, s.duplicates
    );
    println!("chunks      {}", s.chunks);
    println!(
        "vectors     {} ({} unused)",
        s.embeddings, s.orphan_embeddings
    );
    println!(
        "size        {:.1} MiB",
        s.file_size_bytes as f64 / (1024.0 * 1024.0)
    );
    match &s.search_index {
        Some(i) => println!(
            "index       {} vectors, {:.1} MiB ({}); {} chunks written since, searched exactly",
            i.vectors,
            i.file_size_bytes as f64 / (1024.0 * 1024.0),
            i.path.display(),
            i.chunks_after
        ),
        None => println!(
            "index       none: exact search (ingest builds one from {} vectors)",
            pareil::store::ANN_MIN_CHUNKS
        ),
    }
    for d in &docs {
        println!(
            "  {:<50} {:>4} passages  {}",
            d.path,
            d.passages,
            d.date.as_deref().unwrap_or("")
        );
    }
    Ok(Outcome::Ok)
}
