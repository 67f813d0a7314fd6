//! Checks the corpus layer against the real sample articles in `seeds/`, whose
//! shapes (date marker, both paragraph styles, duplicated interview, pull
//! quote, NBSP line ends) are what it was designed around.

use std::path::Path;

use super::*;

fn load(name: &str) -> (String, Split) {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds")).join(name);
    let bytes = std::fs::read(&path).unwrap();
    let text = read_text(&path, &bytes, false).unwrap();
    let split = split_passages(&text);
    (text, split)
}

fn spans(split: &Split) -> Vec<(usize, usize)> {
    split.line_spans()
}

#[test]
fn seed_000_date_marker_and_blank_line_style() {
    let (text, s) = load("000_edaf19d688b91e06.txt");
    assert_eq!(s.date.as_deref(), Some("2024-02"));
    assert_eq!(s.passages.len(), 8);
    assert_eq!(
        s.passages[0].text,
        "Sam Altman lors d'une conférence de presse."
    );
    assert_eq!(
        spans(&s),
        [
            (1, 1),
            (3, 3),
            (5, 5),
            (7, 7),
            (9, 9),
            (11, 11),
            (13, 13),
            (15, 15)
        ]
    );
    for p in &s.passages {
        assert_eq!(&text[p.byte_start..p.byte_end], p.text);
    }
}

#[test]
fn seed_001_pull_quote_and_extra_blank_lines() {
    let (_, s) = load("001_6e736bcd7626f111.txt");
    assert_eq!(s.date.as_deref(), Some("2025-01"));
    assert_eq!(s.passages.len(), 14);
    assert!(s.passages[0]
        .text
        .starts_with("Si ce tout début de l’année 2025"));
    let quote = s.passages.iter().find(|p| p.line_start == 19).unwrap();
    let full = s.passages.iter().find(|p| p.line_start == 27).unwrap();
    // The pull quote is the first sentence of the later paragraph.
    assert!(full.text.starts_with(&quote.text));
    assert_ne!(quote.text, full.text);
    let first_sentence = sentences(&full.text)[0];
    assert_eq!(&full.text[first_sentence.0..first_sentence.1], quote.text);
    // Lines 20-22 are blank: the next paragraph starts on line 23.
    assert_eq!(s.passages[quote.index + 1].line_start, 23);
}

#[test]
fn seed_002_nbsp_line_ends_are_trimmed() {
    let (_, s) = load("002_955d434ecbd3ea88.txt");
    assert_eq!(s.date, None);
    assert_eq!(s.passages.len(), 9);
    assert!(s.passages[0].text.starts_with("[Edito]"));
    assert_eq!(s.passages[1].line_start, 3);
    assert!(s.passages.iter().all(|p| p.text.trim_end() == p.text));
}

#[test]
fn seed_003_one_paragraph_per_line() {
    let (_, s) = load("003_3fa5d57813c16a60.txt");
    assert_eq!(s.passages.len(), 20);
    assert_eq!(s.passages[0].text, "AI");
    for (i, p) in s.passages.iter().enumerate() {
        assert_eq!((p.line_start, p.line_end), (i + 1, i + 1));
    }
    assert_eq!(s.passages[16].text, "Un duel inégal");
}

#[test]
fn seed_004_duplicated_interview() {
    let (_, s) = load("004_8868146d05c9241f.txt");
    assert_eq!(s.passages.len(), 49);
    assert!(s.passages[1]
        .text
        .starts_with("Propos recueillis par Pascal Riché"));
    // Lines 2-25 are repeated verbatim as lines 26-49.
    for line in 2..=25 {
        let a = &s.passages[line - 1];
        let b = &s.passages[line - 1 + 24];
        assert_eq!((a.line_start, b.line_start), (line, line + 24));
        assert_eq!(a.text, b.text);
        assert_eq!(normalized_hash(&a.text), normalized_hash(&b.text));
    }
    assert_ne!(s.passages[0].text, s.passages[24].text);
}

#[test]
fn seeds_read_cleanly_and_sentences_cover() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = read_text(&path, &bytes, false).unwrap();
        for p in split_passages(&text).passages {
            assert!(!p.text.is_empty() && !p.text.contains('\r'));
            let mut prev = 0;
            for (a, b) in sentences(&p.text) {
                assert!(p.text[prev..a].trim().is_empty());
                prev = b;
            }
            assert!(p.text[prev..].trim().is_empty());
        }
    }
}

#[test]
#[ignore = "prints the seed passages for manual inspection"]
fn print_seed_passages() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let s = split_passages(&read_text(&path, &bytes, false).unwrap());
        println!(
            "== {} date={:?} passages={}",
            path.display(),
            s.date,
            s.passages.len()
        );
        for p in &s.passages {
            let head: String = p.text.chars().take(60).collect();
            let n = sentences(&p.text).len();
            println!(
                "  #{:<2} L{}-{} b{}..{} s={n} {head}",
                p.index, p.line_start, p.line_end, p.byte_start, p.byte_end
            );
        }
    }
}

#[test]
fn crlf_and_bom_copy_splits_identically() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/seeds/000_edaf19d688b91e06.txt"
    ));
    let bytes = std::fs::read(path).unwrap();
    let mut crlf = b"\xEF\xBB\xBF".to_vec();
    crlf.extend_from_slice(
        &String::from_utf8(bytes.clone())
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes(),
    );
    let a = split_passages(&read_text(path, &bytes, false).unwrap());
    let b = split_passages(&read_text(path, &crlf, false).unwrap());
    assert_eq!(a, b);
    // Without read_text's CRLF conversion, lines and texts still agree.
    let raw = split_passages(std::str::from_utf8(&crlf[3..]).unwrap());
    let texts = |s: &Split| {
        s.passages
            .iter()
            .map(|p| (p.line_start, p.text.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&a), texts(&raw));
}

#[test]
fn long_seed_paragraph_windows_cover_it() {
    let (_, s) = load("000_edaf19d688b91e06.txt");
    let p = &s.passages[4]; // 14 sentences, ~1600 bytes
    let count = |t: &str| t.split_whitespace().count();
    let w = windows(&p.text, 60, 1, &count);
    assert!(w.len() > 2);
    assert_eq!(w[0].0, 0);
    assert_eq!(w.last().unwrap().1, p.text.len());
    for pair in w.windows(2) {
        assert!(
            pair[1].0 > pair[0].0 && pair[1].0 < pair[0].1,
            "windows overlap"
        );
    }
    assert!(w.iter().all(|&(a, b)| count(&p.text[a..b]) <= 60));
}
