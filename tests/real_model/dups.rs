//! End-to-end duplicate detection with the real binary, model and store:
//! the seeds' own duplicates, the evaluation pairs, and planted duplicates of
//! every kind made from seed paragraphs.

use std::collections::HashSet;
use std::path::Path;

use crate::util::{pareil, repo_root, seeds_dir, stderr, stdout};
use serde_json::Value;

fn seed_line(file: &str, line: usize) -> String {
    let text = std::fs::read_to_string(seeds_dir().join(file)).unwrap();
    text.lines().nth(line - 1).unwrap().trim().to_string()
}

fn copy_seeds(dir: &Path) {
    std::fs::create_dir_all(dir.join("seeds")).unwrap();
    for e in std::fs::read_dir(seeds_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("seeds").join(e.file_name())).unwrap();
    }
}

fn dups_json(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["dups", "--json"];
    args.extend_from_slice(extra);
    let out = pareil(dir, &args);
    assert!(out.status.success(), "dups failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["findings"].as_array().unwrap().clone()
}

/// The finding whose two sides are at these (file prefix, first line) places, in either order.
fn find<'a>(findings: &'a [Value], a: (&str, u64), b: (&str, u64)) -> Option<&'a Value> {
    let at = |side: &Value, (f, l): (&str, u64)| {
        side["path"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .starts_with(f)
            && side["line_start"].as_u64() == Some(l)
    };
    findings.iter().find(|x| {
        (at(&x["canonical"], a) && at(&x["duplicate"], b))
            || (at(&x["canonical"], b) && at(&x["duplicate"], a))
    })
}

/// Whether `a` and `b` (file name prefix, first line) end up in one group
/// when every finding joins its two sides.
fn same_group(findings: &[Value], a: (&str, u64), b: (&str, u64)) -> bool {
    let key = |side: &Value| {
        let name = side["path"].as_str().unwrap().rsplit('/').next().unwrap();
        (name.to_string(), side["line_start"].as_u64().unwrap())
    };
    let mut group: Vec<HashSet<(String, u64)>> = Vec::new();
    for f in findings {
        let pair = [key(&f["canonical"]), key(&f["duplicate"])];
        let (hit, rest): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|g| pair.iter().any(|k| g.contains(k)));
        group = rest;
        group.push(hit.into_iter().flatten().chain(pair).collect());
    }
    let is = |k: &(String, u64), (f, l): (&str, u64)| k.0.starts_with(f) && k.1 == l;
    group
        .iter()
        .any(|g| g.iter().any(|k| is(k, a)) && g.iter().any(|k| is(k, b)))
}

#[test]
fn seeds_report_the_interview_block_and_the_pull_quote_only() {
    let dir = tempfile::tempdir().unwrap();
    copy_seeds(dir.path());
    let out = pareil(dir.path(), &["ingest", "seeds"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The ingest report already names both findings.
    let report = stdout(&out);
    assert!(
        report.contains("004_8868146d05c9241f.txt:26-49"),
        "{report}"
    );
    let findings = dups_json(dir.path(), &[]);
    let block = find(&findings, ("004", 2), ("004", 26)).expect("interview block found");
    assert_eq!(block["kind"], "exact");
    assert_eq!(block["duplicate"]["passages"], 24);
    assert_eq!(block["duplicate"]["line_end"], 49);
    assert_eq!(block["canonical"]["line_end"], 25);
    let quote = find(&findings, ("001", 19), ("001", 27)).expect("pull quote found");
    assert_eq!(quote["kind"], "contained");
    // The evaluation set's not-duplicate pairs (same facts, other words).
    for line in std::fs::read_to_string(repo_root().join("../shared/eval/duplicates.jsonl"))
        .map(|s| s.lines().map(String::from).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let case: Value = serde_json::from_str(&line).unwrap();
        let parse = |s: &str| -> (String, u64) {
            let (f, l) = s.split_once(':').unwrap();
            (f.to_string(), l.split('-').next().unwrap().parse().unwrap())
        };
        let (a, b) = (
            parse(case["a"].as_str().unwrap()),
            parse(case["b"].as_str().unwrap()),
        );
        let hit = find(&findings, (&a.0, a.1), (&b.0, b.1));
        if case["expect"] == "dup" {
            assert!(hit.is_some(), "expected duplicate not found: {line}");
        } else {
            assert!(
                hit.is_none(),
                "not-duplicate pair reported: {line}: {hit:?}"
            );
        }
    }
    // Nothing else: the seeds hold exactly these two findings.
    assert_eq!(findings.len(), 2, "{findings:#?}");
}

#[test]
fn planted_duplicates_of_every_kind_are_found() {
    let dir = tempfile::tempdir().unwrap();
    copy_seeds(dir.path());
    let p = seed_line("002_955d434ecbd3ea88.txt", 15);
    let q = seed_line("003_3fa5d57813c16a60.txt", 5);
    let r = seed_line("000_edaf19d688b91e06.txt", 7);
    let s = seed_line("001_6e736bcd7626f111.txt", 25);
    let planted = dir.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    let write = |name: &str, text: &str| std::fs::write(planted.join(name), text).unwrap();
    // near: a few character edits.
    write(
        "near-edits.txt",
        &p.replacen("investissements", "investisements", 1)
            .replacen("attendus", "atendus", 1)
            .replacen("talonnent", "talonent", 1),
    );
    // near: accents removed.
    let folded: String = unicode_normalization::UnicodeNormalization::nfd(r.as_str())
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    write("near-accents.txt", &folded);
    // exact: other quotes, case and spacing only.
    write(
        "exact-quotes.txt",
        &q.replace("« ", "\"")
            .replace(" »", "\"")
            .replace('\'', "’")
            .to_uppercase()
            .replace(' ', "  "),
    );
    // contained: a sentence dropped (the copy lies inside the original).
    let sentences: Vec<&str> = s.split_inclusive(". ").collect();
    assert!(sentences.len() >= 3);
    write(
        "contained-sentence-dropped.txt",
        &sentences[..sentences.len() - 1].concat(),
    );
    // contained: a paragraph cut in half.
    let half = r.char_indices().nth(r.chars().count() / 2).unwrap().0;
    write("contained-half.txt", &r[..half]);
    // semantic: hand-written translations and paraphrases.
    for e in std::fs::read_dir(repo_root().join("tests/data/rewrites")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), planted.join(e.file_name())).unwrap();
    }
    assert!(pareil(dir.path(), &["ingest", "--quiet", "seeds"])
        .status
        .success());
    let out = pareil(dir.path(), &["ingest", "--quiet", "planted"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let findings = dups_json(dir.path(), &[]);
    let kind_of = |file: &str, seed: (&str, u64)| -> String {
        match find(&findings, seed, (file, 1)) {
            Some(f) => f["kind"].as_str().unwrap().to_string(),
            None => panic!("{file} not found as a duplicate of {seed:?}; findings: {findings:#?}"),
        }
    };
    assert_eq!(kind_of("near-edits", ("002", 15)), "near");
    assert_eq!(kind_of("near-accents", ("000", 7)), "near");
    assert_eq!(kind_of("exact-quotes", ("003", 5)), "exact");
    // One sentence of five dropped: the copy lies inside the original
    // (contained) but is also most of it (near); either names it truthfully.
    let k = kind_of("contained-sentence-dropped", ("001", 25));
    assert!(k == "contained" || k == "near", "{k}");
    assert_eq!(kind_of("contained-half", ("000", 7)), "contained");
    // Translations join their original (or a near copy of it): one to one,
    // each side the other's best match in its language, so where a
    // paragraph exists twice in French (original and paraphrase), a
    // translation joins one of them.
    let joined = |a: (&str, u64), b: (&str, u64)| same_group(&findings, a, b);
    assert!(joined(("003-5.en", 1), ("003", 5)));
    assert!(joined(("003-5.de", 1), ("003", 5)));
    assert!(joined(("002-15.de", 1), ("002", 15)));
    assert!(joined(("002-15.en", 1), ("002-15.fr-paraphrase", 1)));
    // Every semantic finding stays within one paragraph's family: the seed
    // paragraph and its rewrites.
    let family = |side: &Value| -> String {
        let name = side["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let stem = name.split('.').next().unwrap();
        match stem {
            "near-edits" => "002-15",
            "exact-quotes" => "003-5",
            "near-accents" | "contained-half" => "000-7",
            "contained-sentence-dropped" => "001-25",
            _ if stem.contains('-') => stem,
            _ => return format!("{}-{}", &name[..3], side["line_start"]),
        }
        .to_string()
    };
    for f in findings.iter().filter(|f| f["kind"] == "semantic") {
        assert_eq!(family(&f["canonical"]), family(&f["duplicate"]), "{f:#}");
    }
    // Distinct same-topic seed paragraphs are still not reported.
    assert!(find(&findings, ("000", 5), ("002", 9)).is_none());
    assert!(find(&findings, ("001", 23), ("004", 6)).is_none());
    // --kinds restricts; --csv has a header and one row per finding.
    let lexical = dups_json(dir.path(), &["--kinds", "exact,near,contained"]);
    assert!(lexical.iter().all(|f| f["kind"] != "semantic"));
    let csv = stdout(&pareil(dir.path(), &["dups", "--csv"]));
    assert_eq!(csv.lines().count(), findings.len() + 1, "{csv}");
}

#[test]
fn on_duplicate_skip_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    copy_seeds(dir.path());
    // fail: 004 holds the interview twice, so it is refused (exit 6) and not written.
    let out = pareil(dir.path(), &["ingest", "--on-duplicate", "fail", "seeds"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let stats: Value = serde_json::from_str(&stdout(&pareil(
        dir.path(),
        &["stats", "--json", "--documents"],
    )))
    .unwrap();
    let paths: Vec<&str> = stats["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(!paths.iter().any(|p| p.contains("004_")), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.contains("001_")),
        "001 holds the pull quote twice: {paths:?}"
    );
    assert_eq!(paths.len(), 3);
    // skip: the copies are stored as references, and similar shows the text once.
    let dir = tempfile::tempdir().unwrap();
    copy_seeds(dir.path());
    let out = pareil(
        dir.path(),
        &["ingest", "--on-duplicate", "skip", "--json", "seeds"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        report["passages_skipped_as_duplicates"], 25,
        "24 interview copies + the pull quote"
    );
    let stats: Value =
        serde_json::from_str(&stdout(&pareil(dir.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["stats"]["passages"], 100, "nothing lost");
    assert_eq!(stats["stats"]["duplicates"], 25);
    let out = pareil(
        dir.path(),
        &[
            "similar",
            "--json",
            "--no-collapse",
            "-k",
            "100",
            "Propos recueillis par Pascal Riché",
        ],
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let riche = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["text"].as_str().unwrap().contains("Pascal Riché"))
        .count();
    assert_eq!(riche, 1, "the skipped copy is not returned twice");
    // Translations and paraphrases are reported, not skipped: skip acts on
    // lexical duplicates only (a semantic finding is a judgement, and a
    // wrong one would hide a passage).
    let rewrites = dir.path().join("rewrites");
    std::fs::create_dir_all(&rewrites).unwrap();
    for e in std::fs::read_dir(repo_root().join("tests/data/rewrites")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), rewrites.join(e.file_name())).unwrap();
    }
    let out = pareil(
        dir.path(),
        &["ingest", "--on-duplicate", "skip", "--json", "rewrites"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["passages_skipped_as_duplicates"], 0, "{report}");
    let reported = report["duplicates"].as_array().unwrap();
    assert!(
        reported.iter().any(|f| f["kind"] == "semantic"
            && f["duplicate"]["path"]
                .as_str()
                .unwrap()
                .contains("rewrites/")),
        "{report}"
    );
    let stats: Value =
        serde_json::from_str(&stdout(&pareil(dir.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["stats"]["passages"], 106);
    assert_eq!(stats["stats"]["duplicates"], 25);
}

#[test]
fn a_short_heading_takes_its_documents_language_at_ingest_and_in_dups() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["en", "fr"] {
        let to = dir.path().join(lang);
        std::fs::create_dir_all(&to).unwrap();
        let from = repo_root().join("tests/data/translations").join(lang);
        std::fs::copy(from.join("imapproxy.txt"), to.join("imapproxy.txt")).unwrap();
    }
    let out = pareil(dir.path(), &["ingest", "en"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pareil(dir.path(), &["ingest", "--json", "fr"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // "imapproxy: mandataire pour le protocole IMAP" (two stop words) is
    // French because its file is: a translation of the English heading
    // (cosine 0.968, under the same-language cut of 0.97).
    let heading = |findings: &[Value]| {
        findings.iter().any(|f| {
            f["kind"] == "semantic"
                && f["duplicate"]["path"].as_str().unwrap().contains("fr/")
                && f["duplicate"]["line_start"] == 1
                && f["canonical"]["line_start"] == 1
        })
    };
    let reported = report["duplicates"].as_array().unwrap();
    assert!(heading(reported), "ingest: {report}");
    let findings = dups_json(dir.path(), &[]);
    assert!(heading(&findings), "dups: {findings:?}");
    assert!(
        !findings.iter().any(|f| f["duplicate"]["line_start"] == 7
            || f["canonical"]["line_start"] == 7
            || f["duplicate"]["line_start"] == 9),
        "the quoted English paragraphs have no partner: {findings:?}"
    );
}

#[test]
fn a_sentence_that_renders_two_originals_joins_both() {
    // Debian's German translators render "the runtime library" and "the
    // shared library" alike ("die Laufzeitbibliothek"): the German sentence
    // is the runtime line's best English match both ways, and the shared
    // line's best German match one way only. It joins both, as a second
    // rendering; the two packages' headings stay apart.
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("docs");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(repo_root().join("tests/data/second-rendering")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let out = pareil(dir.path(), &["ingest", "--quiet", "docs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let findings = dups_json(dir.path(), &[]);
    assert!(
        same_group(&findings, ("en_b", 5), ("de_b", 5)),
        "{findings:#?}"
    );
    assert!(
        same_group(&findings, ("en_a", 5), ("de_a", 5)),
        "{findings:#?}"
    );
    let second = find(&findings, ("en_b", 5), ("de_a", 5)).expect("the shared line joined");
    let why = second["explanation"].as_str().unwrap();
    assert!(
        why.contains("a second rendering beside \"This package contains the runtime library.\""),
        "{why}"
    );
    let margin = second["margin"]
        .as_f64()
        .expect("a margin across languages");
    assert!(
        margin >= 1.0 && why.contains(&format!("margin {margin:.3}")),
        "{second:#}"
    );
    let exact = find(&findings, ("de_a", 5), ("de_b", 5)).expect("the German copies");
    assert!(exact.get("margin").is_none(), "{exact:#}");
    assert!(
        !same_group(&findings, ("en_a", 1), ("en_b", 1)),
        "{findings:#?}"
    );
}
