//! Property tests of the corpus layer: decoding, paragraph splitting with
//! line/byte spans, sentence spans, token windows and normalisation, on
//! random strings and on realistic generated documents (paragraphs, blank
//! lines made of spaces, CRLF, BOM, French quotes, abbreviations, a leading
//! `date` marker). Each property states what the module promises, not just
//! "no panic". Case counts keep the whole set to a few seconds in release.
//!
//! Cases a property once found are kept as named unit tests in the module
//! they exercise.

use std::path::Path;

use proptest::prelude::*;

use super::normalize::normalize;
use super::read::read_text;
use super::sentence::sentences;
use super::split::{split_passages, Split};
use super::window::{windows, MAX_BYTES_PER_TOKEN};
use crate::error::Error;
use crate::test_support::proptest_config as config;

// ---------------------------------------------------------------- generators

/// A word or punctuation mark of French/English prose, with the cases the
/// splitters special-case (abbreviations, initials, numbers, guillemets,
/// NBSP before punctuation, ligatures, NFD accents, the `date` keyword).
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zàéèêçô]{1,9}",
        2 => "[A-ZÉ][a-zéè]{0,8}",
        1 => "[0-9]{1,4}",
        3 => prop::sample::select(vec![
            "M.", "Mme.", "Dr.", "etc.", "J.", "U.S.A.", "3.5", "p.", "sept.", "«", "»", "«\u{a0}Non\u{a0}!\u{a0}»",
            "“Oui.”", "l’école", "aujourd'hui", "—", "–", "?", "!", "?!", "…", "...", ".", "fin.", "Fin.",
            "\u{a0}:", "\u{202f};", "(voir", "ici)", "[1]", "\"cité\"", "ﬁn", "ＡＢ", "İstanbul", "e\u{301}",
            "ß", "date", "2024-02", "peut-être", "C’est", "www.example.com.", "\u{ad}", "\u{200b}",
        ])
        .prop_map(String::from),
    ]
}

/// A non-blank line: words joined by spaces (sometimes NBSP or a tab), with
/// optional indentation and trailing whitespace.
fn text_line() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", "", "", " ", "  ", "\t"]),
        prop::collection::vec(
            (
                word(),
                prop::sample::select(vec![" ", " ", " ", " ", "\u{a0}", "\t", "  "]),
            ),
            1..12,
        ),
        prop::sample::select(vec!["", "", "", " ", "\t", "\u{a0}"]),
    )
        .prop_map(|(indent, words, trailing)| {
            let mut s = indent.to_string();
            for (i, (w, sep)) in words.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(w);
            }
            if s.trim().is_empty() {
                s.push('x');
            }
            s + trailing
        })
}

fn blank_line() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", " ", "  \t", "\u{a0}", "\u{3000} ", "\t"])
        .prop_map(String::from)
}

/// A realistic document in LF form: paragraphs of wrapped lines, blank lines
/// (some made of spaces), maybe a leading `date` marker, maybe a final
/// newline. Returned as its lines; see [`join_lines`].
fn doc_lines() -> impl Strategy<Value = Vec<String>> {
    (
        prop::option::weighted(
            0.2,
            prop::sample::select(vec![
                "date 2024-02",
                "date 2023-11-05 ",
                " date 2024-12 Sam Altman lors d'une conférence.",
                "date 2024-13 pas une date",
                "date limite : demain",
            ]),
        ),
        prop::collection::vec(prop_oneof![3 => text_line(), 1 => blank_line()], 0..14),
    )
        .prop_map(|(marker, mut lines)| {
            if let Some(m) = marker {
                lines.insert(0, m.to_string());
            }
            lines
        })
}

/// Joins lines with LF or CRLF (chosen per line by `crlf`) and an optional
/// final line ending.
fn join_lines(lines: &[String], crlf: &[bool], final_eol: bool) -> String {
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str(if crlf[i % crlf.len()] { "\r\n" } else { "\n" });
        }
        s.push_str(l);
    }
    if final_eol && !lines.is_empty() {
        s.push_str(if crlf[0] { "\r\n" } else { "\n" });
    }
    s
}

/// A realistic document with its line endings mixed LF/CRLF.
fn doc_text() -> impl Strategy<Value = String> {
    (
        doc_lines(),
        prop::collection::vec(any::<bool>(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, fin)| join_lines(&lines, &crlf, fin))
}

/// Short strings over the characters the splitters react to.
fn tricky_text() -> impl Strategy<Value = String> {
    "[ a-zA-Zé0-9.!?…«»“”’'\"()\\-—:;\r\n\t\u{a0}\u{202f}\u{3000}\u{2000}\u{2028}\u{301}\u{308}\u{ad}\u{200b}\u{85}\
     ¨˜΄ǅẞΩKﬀ①½ſİΣς\u{345}\u{fe58}\u{fe19}\u{1100}\u{1161}\u{11a8}가]{0,60}"
}

/// Any of: realistic documents, tricky short strings, arbitrary Unicode.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![3 => doc_text(), 3 => tricky_text(), 1 => any::<String>()]
}

// -------------------------------------------------------------------- reader

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn read(bytes: &[u8], lossy: bool) -> crate::error::Result<String> {
    read_text(Path::new("p.txt"), bytes, lossy)
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid UTF-8 text, LF or CRLF per line, with or without a BOM, reads
    /// back as its LF form: the same lines, so the same line numbers.
    #[test]
    fn reader_round_trips_text(lines in doc_lines(), crlf in prop::collection::vec(any::<bool>(), 1..4),
                               fin in any::<bool>(), bom in any::<bool>(), lossy in any::<bool>()) {
        let lf = join_lines(&lines, &[false], fin);
        let file = join_lines(&lines, &crlf, fin);
        let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
        bytes.extend_from_slice(file.as_bytes());
        let got = read(&bytes, lossy).unwrap();
        prop_assert_eq!(&got, &lf);
        prop_assert_eq!(got.matches('\n').count(), file.matches('\n').count());
    }

    /// One invalid byte (or truncated sequence) in otherwise valid text is
    /// reported at its offset in the file, BOM included; lossy mode turns
    /// it into U+FFFD instead.
    #[test]
    fn reader_reports_invalid_utf8_offset(text in doc_text(), cut in any::<prop::sample::Index>(),
                                         bad in prop::sample::select(vec![
                                             &b"\xFF"[..], b"\xC3", b"\xE2\x82", b"\xF0\x9F\x98",
                                             b"\x80", b"\xC0\xAF", b"\xED\xA0\x80"]),
                                         bom in any::<bool>()) {
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let prefix = if bom { BOM } else { b"" };
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&text.as_bytes()[..at]);
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(&text.as_bytes()[at..]);
        match read(&bytes, false) {
            Err(Error::InvalidUtf8 { offset, .. }) => prop_assert_eq!(offset, prefix.len() + at),
            other => prop_assert!(false, "expected InvalidUtf8, got {:?}", other),
        }
        let lossy = read(&bytes, true).unwrap();
        prop_assert!(lossy.contains(char::REPLACEMENT_CHARACTER), "no U+FFFD in {:?}", lossy);
        prop_assert_eq!(lossy.matches('\n').count(), text.matches('\n').count());
    }

    /// Arbitrary bytes: only the two refusals, lossy decoding never fails on
    /// text-like bytes, line count (LF) is preserved, and a NUL in the
    /// sniffed prefix is always "binary".
    #[test]
    fn reader_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300), lossy in any::<bool>()) {
        match read(&bytes, lossy) {
            Ok(s) => {
                prop_assert!(!bytes.contains(&0));
                let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
                prop_assert_eq!(s.matches('\n').count(), body.iter().filter(|&&b| b == b'\n').count());
                // Only CR bytes that precede an LF are dropped.
                let no_cr = |t: &str| t.replace('\r', "");
                prop_assert_eq!(no_cr(&s), no_cr(&String::from_utf8_lossy(body)));
                if !lossy {
                    prop_assert!(std::str::from_utf8(body).is_ok());
                }
            }
            Err(Error::Binary { .. }) => {}
            Err(Error::InvalidUtf8 { offset, .. }) => {
                prop_assert!(!lossy);
                prop_assert!(offset < bytes.len());
                let start = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
                prop_assert!(offset >= start);
                prop_assert!(std::str::from_utf8(&bytes[start..offset]).is_ok());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        if bytes.contains(&0) {
            let binary = matches!(read(&bytes, lossy), Err(Error::Binary { .. }));
            prop_assert!(binary, "NUL but not binary");
        }
    }
}

// ------------------------------------------------------------------ splitter

/// The splitter's notion of a blank line: whitespace only, or (for the first
/// non-blank line) nothing but the `date` marker the split reported.
fn line_is_blank(line: &str, is_marker_line: bool, date: Option<&str>) -> bool {
    if line.trim().is_empty() {
        return true;
    }
    match (is_marker_line, date) {
        (true, Some(d)) => {
            let rest = line
                .trim_start()
                .strip_prefix("date")
                .map(|r| r.trim_start_matches([' ', '\t']))
                .and_then(|r| r.strip_prefix(d));
            rest.is_some_and(|r| r.trim().is_empty())
        }
        _ => false,
    }
}

/// Every promise of [`split_passages`] about spans, lines and coverage.
fn check_split(text: &str, split: &Split) -> Result<(), TestCaseError> {
    // The file's lines, 1-based: text between '\n's ('\r' before '\n' and a
    // final '\n' making no extra line do not matter to blankness).
    let lines: Vec<&str> = text.split('\n').collect();
    let first_nb = lines.iter().position(|l| !l.trim().is_empty());
    if let Some(d) = &split.date {
        let l = lines[first_nb.expect("a marker is on a non-blank line")];
        prop_assert!(l.trim_start().starts_with("date"), "date {d:?} from {l:?}");
        prop_assert!(d.len() == 7 || d.len() == 10);
    }
    let blank: Vec<bool> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| line_is_blank(l, Some(i) == first_nb, split.date.as_deref()))
        .collect();

    let mut prev_end = 0;
    let mut prev_line = 0;
    for (i, p) in split.passages.iter().enumerate() {
        prop_assert_eq!(p.index, i);
        prop_assert!(p.byte_start < p.byte_end && p.byte_end <= text.len());
        prop_assert!(text.is_char_boundary(p.byte_start) && text.is_char_boundary(p.byte_end));
        prop_assert!(p.byte_start >= prev_end, "spans overlap or go backwards");
        let span = &text[p.byte_start..p.byte_end];
        prop_assert!(
            !span.starts_with(char::is_whitespace) && !span.ends_with(char::is_whitespace),
            "span not trimmed: {:?}",
            span
        );
        // Line numbers are the bytes' lines.
        let line_of = |b: usize| text[..b].matches('\n').count() + 1;
        prop_assert_eq!(p.line_start, line_of(p.byte_start));
        prop_assert_eq!(p.line_end, line_of(p.byte_end));
        prop_assert!(p.line_start > prev_line);
        // The display text is the span, line by line, trailing whitespace
        // (and the CR of a CRLF) removed, stray CRs as spaces.
        let expected: Vec<String> = span
            .split('\n')
            .map(|l| l.trim_end().replace('\r', " "))
            .collect();
        prop_assert_eq!(&p.text, &expected.join("\n"));
        if !span.contains('\r') && span.split('\n').all(|l| l.trim_end() == l) {
            prop_assert_eq!(&p.text, span);
        }
        // A passage is a run of non-blank lines.
        for n in p.line_start..=p.line_end {
            prop_assert!(!blank[n - 1], "blank line {} inside passage {:?}", n, p);
        }
        prev_end = p.byte_end;
        prev_line = p.line_end;
    }

    // Every non-blank line is in exactly one passage.
    for (i, &b) in blank.iter().enumerate() {
        let n = i + 1;
        let holders = split
            .passages
            .iter()
            .filter(|p| (p.line_start..=p.line_end).contains(&n))
            .count();
        prop_assert_eq!(holders, usize::from(!b), "line {} ({:?})", n, lines[i]);
    }

    // Style: blank-line paragraphs are maximal runs when a blank line sits
    // between two non-blank lines; otherwise one passage per line.
    let nb: Vec<usize> = (0..blank.len()).filter(|&i| !blank[i]).collect();
    let blank_style = match (nb.first(), nb.last()) {
        (Some(&a), Some(&b)) => (a..=b).any(|i| blank[i]),
        _ => false,
    };
    for p in &split.passages {
        if blank_style {
            let before = p.line_start.checked_sub(2).map(|i| blank[i]);
            let after = blank.get(p.line_end).copied();
            prop_assert!(
                before.unwrap_or(true) && after.unwrap_or(true),
                "paragraph {:?} not maximal",
                p
            );
        } else {
            prop_assert_eq!(p.line_start, p.line_end);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn split_spans_lines_and_coverage(text in any_text()) {
        check_split(&text, &split_passages(&text))?;
    }

    /// Reading a CRLF file then splitting gives the same passages (lines,
    /// texts) as splitting the CRLF text directly, and as its LF form.
    #[test]
    fn split_ignores_line_ending_style(lines in doc_lines(), crlf in prop::collection::vec(any::<bool>(), 1..4),
                                       fin in any::<bool>()) {
        let file = join_lines(&lines, &crlf, fin);
        let lf = join_lines(&lines, &[false], fin);
        let view = |s: &Split| (s.date.clone(), s.passages.iter()
            .map(|p| (p.line_start, p.line_end, p.text.clone())).collect::<Vec<_>>());
        let direct = split_passages(&file);
        check_split(&file, &direct)?;
        prop_assert_eq!(view(&direct), view(&split_passages(&lf)));
        let read = read_text(Path::new("p"), file.as_bytes(), false).unwrap();
        prop_assert_eq!(view(&split_passages(&read)), view(&direct));
    }
}

// ----------------------------------------------------------------- sentences

/// Ordered, non-overlapping, trimmed spans on char boundaries, with only
/// whitespace outside them.
fn check_sentences(text: &str, spans: &[(usize, usize)]) -> Result<(), TestCaseError> {
    let mut prev = 0;
    for &(a, b) in spans {
        prop_assert!(prev <= a && a < b && b <= text.len(), "bad span {a}..{b}");
        prop_assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
        prop_assert!(
            text[prev..a].trim().is_empty(),
            "gap not whitespace: {:?}",
            &text[prev..a]
        );
        let s = &text[a..b];
        prop_assert!(
            !s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace),
            "sentence not trimmed: {:?}",
            s
        );
        prev = b;
    }
    prop_assert!(text[prev..].trim().is_empty());
    prop_assert_eq!(spans.is_empty(), text.trim().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn sentences_cover_text(text in any_text()) {
        check_sentences(&text, &sentences(&text))?;
    }

    /// Sentences of a paragraph never straddle a whitespace-free run: every
    /// word lies inside one sentence.
    #[test]
    fn sentences_never_cut_words(text in any_text()) {
        let spans = sentences(&text);
        for (o, w) in word_spans(&text) {
            let end = o + w.len();
            prop_assert!(spans.iter().any(|&(a, b)| a <= o && end <= b), "word {:?} cut", w);
        }
    }
}

// ------------------------------------------------------------------- windows

/// `(offset, word)` of every whitespace-separated word.
fn word_spans(text: &str) -> Vec<(usize, &str)> {
    text.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
        .collect()
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// The promises of [`windows`]: ordered with strictly increasing starts,
/// within budget (or a single character), trimmed, every non-whitespace
/// byte covered.
fn check_windows(
    text: &str,
    spans: &[(usize, usize)],
    max: usize,
    count: &dyn Fn(&str) -> usize,
) -> Result<(), TestCaseError> {
    prop_assert!(!spans.is_empty());
    if spans == [(0, text.len())] && (text.trim().is_empty() || count(text) <= max) {
        return Ok(()); // the whole text fits: one window, whitespace included
    }
    let mut prev_start = None;
    let mut covered = 0;
    for &(a, b) in spans {
        prop_assert!(a < b && b <= text.len());
        prop_assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
        prop_assert!(prev_start.is_none_or(|p| a > p), "starts must increase");
        prev_start = Some(a);
        prop_assert!(
            a <= covered || text[covered..a].trim().is_empty(),
            "gap {:?}",
            &text[covered..a]
        );
        covered = covered.max(b);
        let piece = &text[a..b];
        prop_assert!(
            !piece.starts_with(char::is_whitespace) && !piece.ends_with(char::is_whitespace)
        );
        prop_assert!(
            count(piece) <= max || piece.chars().count() == 1,
            "over budget: {:?}",
            piece
        );
    }
    prop_assert!(text[covered..].trim().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    /// Word-count tokens: windows cover every token (a word is never split
    /// when the budget holds at least one word, unless it is longer than
    /// the bytes-per-token cap lets a span of that budget be).
    #[test]
    fn windows_cover_every_word(text in any_text(), max in 0usize..12, overlap in 0usize..4) {
        let spans = windows(&text, max, overlap, &word_count);
        check_windows(&text, &spans, max, &word_count)?;
        if max >= 1 {
            let cap = max * MAX_BYTES_PER_TOKEN;
            for (o, w) in word_spans(&text).into_iter().filter(|(_, w)| w.len() <= cap) {
                let end = o + w.len();
                prop_assert!(spans.iter().any(|&(a, b)| a <= o && end <= b), "word {:?} split", w);
            }
        }
    }

    /// Character-count tokens: long words are cut between characters and
    /// still every character is covered.
    #[test]
    fn windows_cover_every_char(text in any_text(), max in 0usize..40, overlap in 0usize..3) {
        let spans = windows(&text, max, overlap, &char_count);
        check_windows(&text, &spans, max, &char_count)?;
    }
}

// ---------------------------------------------------------------- normaliser

proptest! {
    #![proptest_config(config(1024))]

    /// normalize(normalize(x)) == normalize(x), and the result is trimmed
    /// with single spaces.
    #[test]
    fn normalize_is_idempotent(text in any_text()) {
        let once = normalize(&text);
        prop_assert_eq!(&normalize(&once), &once, "input {:?}", text);
        prop_assert_eq!(once.trim(), once.as_str());
        prop_assert!(!once.contains("  "));
        prop_assert!(!once.chars().any(|c| c.is_whitespace() && c != ' '));
    }

    /// Canonically equivalent inputs (NFC vs NFD) normalise the same.
    #[test]
    fn normalize_ignores_canonical_form(text in any_text()) {
        use unicode_normalization::UnicodeNormalization;
        let nfd: String = text.nfd().collect();
        let nfc: String = text.nfc().collect();
        prop_assert_eq!(normalize(&nfd), normalize(&nfc));
    }
}
