//! Regression tests for the bugs the old layout caused (issue 11), on the
//! real binary, model and SQLite file.

use std::path::Path;

use crate::util::{pareil, pareil_command, pareil_json, stderr};
use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const SHARED: &str =
    "Le conseil municipal a voté le budget de la médiathèque après trois heures de débat.";

/// A copy stored as a reference keeps a vector when its canonical copy is
/// edited away: it is embedded again in the same run.
#[test]
fn skipped_copy_is_embedded_again_when_its_canonical_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.txt",
        &format!("Premier paragraphe sur la météo de demain.\n\n{SHARED}\n"),
    );
    write(
        d,
        "b.txt",
        &format!("Un article sur tout autre chose, le sport.\n\n{SHARED}\n"),
    );
    pareil_json(d, &["ingest", "--on-duplicate", "skip", "--json", "a.txt"]);
    let r = pareil_json(d, &["ingest", "--on-duplicate", "skip", "--json", "b.txt"]);
    assert_eq!(r["passages_skipped_as_duplicates"], 1, "{r}");
    let out = pareil(d, &["similar", "--at", "b.txt:3", "--json"]);
    assert!(
        !out.status.success(),
        "a reference has no vector of its own yet"
    );

    write(
        d,
        "a.txt",
        "Premier paragraphe sur la météo de demain.\n\nUn tout autre texte.\n",
    );
    let r = pareil_json(d, &["ingest", "--on-duplicate", "skip", "--json", "a.txt"]);
    assert_eq!(r["references_restored"], 1, "{r}");
    let found = pareil_json(d, &["similar", "--at", "b.txt:3", "--json"]);
    assert_eq!(found["query"]["passage"]["path"], "b.txt");
    let stats = pareil_json(d, &["stats", "--json"]);
    assert_eq!(stats["stats"]["duplicates"], 0);
    // b.txt's copy is now found by a text query, as any passage.
    let hits = pareil_json(d, &["similar", SHARED, "--json", "-k", "1"]);
    assert_eq!(hits["results"][0]["path"], "b.txt", "{hits}");
}

/// `remove` says why a name matched nothing or several documents, and
/// removes nothing then.
#[test]
fn remove_names_ambiguous_and_unknown_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["one", "two"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        write(&d.join(sub), "x.txt", &format!("Texte du dossier {sub}.\n"));
    }
    pareil_json(d, &["ingest", "--json", "one", "two"]);
    let out = pareil(d, &["remove", "x.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("matches 2 documents") && err.contains("one/x.txt"),
        "{err}"
    );
    let out = pareil(d, &["remove", "one/x.txt", "nowhere.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere.txt"), "{}", stderr(&out));
    assert_eq!(
        pareil_json(d, &["stats", "--json"])["stats"]["documents"],
        2
    );
    let out = pareil(d, &["remove", "one/x.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        pareil_json(d, &["stats", "--json"])["stats"]["documents"],
        1
    );
}

/// Dedup on ingestion reads the stored passages twice per run, not once per
/// document (seen through the tracing spans).
#[test]
fn skip_reads_the_store_once_per_run_not_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let firsts = [
        "La récolte de pommes a été abondante cette année en Normandie.",
        "Le train de nuit entre Paris et Vienne reprend du service en décembre.",
        "Une exposition de photographies ouvre ses portes au musée de Lyon.",
        "Les chercheurs ont observé une nouvelle espèce de grenouille en Guyane.",
    ];
    for (i, first) in firsts.iter().enumerate() {
        write(
            d,
            &format!("f{i}.txt"),
            &format!("{first}\n\nUn paragraphe commun à tous.\n"),
        );
    }
    let out = pareil_command(d)
        .env("PAREIL_MODEL", crate::util::model_dir())
        .env("PAREIL_LOG", "pareil=info")
        .args(["ingest", "--on-duplicate", "skip", "--json", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passages_skipped_as_duplicates"], 3, "{report}");
    let log = stderr(&out);
    let loads = log
        .lines()
        .filter(|l| l.contains("load_passages: ") && l.contains("close"))
        .count();
    // Once for the lexical checks, and the report after the run uses what
    // they read: never once per document.
    assert_eq!(loads, 1, "{log}");
    let checks = log
        .lines()
        .filter(|l| l.contains("lexical_check{") && l.contains("engine::ingest: close"))
        .count();
    assert_eq!(checks, 4, "{log}");
}
