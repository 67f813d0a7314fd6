//! Splitting a decoded document into passages (paragraphs) with exact line
//! numbers and byte spans, and pulling out the leading `date YYYY-MM` marker.
//!
//! Definitions used throughout:
//! - A *line* is the text between `'\n'` characters; a `'\r'` right before the
//!   `'\n'` belongs to the line ending. Lines are numbered from 1. A final
//!   `'\n'` does not start an extra line (so numbers match `grep -n`/editors).
//! - A line is *blank* when it is empty or whitespace only (Unicode White_Space,
//!   so NBSP-only lines count as blank).
//! - If a blank line separates two non-blank lines anywhere in the document,
//!   paragraphs are runs of non-blank lines (blank-line style). Otherwise every
//!   non-blank line is its own paragraph (one-paragraph-per-line style, as in
//!   many scraped articles). Blank lines only at the edges do not count.

use serde::{Deserialize, Serialize};

/// One paragraph of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passage {
    /// 0-based position among the document's passages.
    pub index: usize,
    /// 1-based line of the file where the passage starts.
    pub line_start: usize,
    /// 1-based line of the file where the passage ends (inclusive).
    pub line_end: usize,
    /// Byte offset in the decoded text of the passage's first non-whitespace
    /// character (after the date marker, if it shares the line).
    pub byte_start: usize,
    /// Byte offset in the decoded text just past its last non-whitespace character.
    pub byte_end: usize,
    /// Display text: the passage's lines, each with trailing whitespace (and
    /// any `'\r'`) removed, joined by `'\n'`; leading whitespace of the first
    /// line removed. Stray `'\r'` inside a line becomes a space. For LF text
    /// with no trailing spaces on inner lines this is exactly
    /// `&doc[byte_start..byte_end]`.
    pub text: String,
}

/// A document split into passages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The `YYYY-MM` (or `YYYY-MM-DD`) of a leading `date …` marker, if any.
    pub date: Option<String>,
    pub passages: Vec<Passage>,
}

impl Split {
    /// Each passage's (first, last) line, for tests' expectations.
    #[cfg(test)]
    pub(crate) fn line_spans(&self) -> Vec<(usize, usize)> {
        self.passages
            .iter()
            .map(|p| (p.line_start, p.line_end))
            .collect()
    }
}

/// A line as byte offsets into the document; `end` excludes `"\n"`/`"\r\n"`.
#[derive(Debug, Clone, Copy)]
struct Line {
    number: usize,
    start: usize,
    end: usize,
}

/// Splits decoded text into passages; see the module docs for the rules.
///
/// A leading marker `date YYYY-MM` (optionally `-DD`), possibly indented, on
/// the first non-blank line, becomes [`Split::date`] and is removed: if text
/// follows it on the same line, that text starts the first passage (on line
/// 1); if the marker is alone on its line, that line counts as blank.
/// Works on CRLF text too, though [`read_text`](super::read_text) already
/// converts it.
pub fn split_passages(text: &str) -> Split {
    let mut lines = lines(text);
    let is_blank = |l: &Line| text[l.start..l.end].trim().is_empty();

    let mut date = None;
    if let Some(first) = lines
        .iter_mut()
        .find(|l| !text[l.start..l.end].trim().is_empty())
    {
        if let Some((value, consumed)) = parse_date_marker(&text[first.start..first.end]) {
            date = Some(value.to_owned());
            first.start += consumed;
        }
    }

    let first_nb = lines.iter().position(|l| !is_blank(l));
    let last_nb = lines.iter().rposition(|l| !is_blank(l));
    let (first_nb, last_nb) = match (first_nb, last_nb) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Split {
                date,
                passages: Vec::new(),
            }
        }
    };
    let body = &lines[first_nb..=last_nb];
    let blank_style = body.iter().any(is_blank);

    // Group line indices (into `body`) into paragraphs.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut run_start: Option<usize> = None;
    for (i, line) in body.iter().enumerate() {
        if is_blank(line) {
            if let Some(s) = run_start.take() {
                groups.push((s, i - 1));
            }
        } else if !blank_style {
            groups.push((i, i));
        } else if run_start.is_none() {
            run_start = Some(i);
        }
    }
    if let Some(s) = run_start {
        groups.push((s, body.len() - 1));
    }

    let passages = groups
        .into_iter()
        .enumerate()
        .map(|(index, (a, b))| make_passage(text, index, &body[a..=b]))
        .collect();
    Split { date, passages }
}

fn make_passage(text: &str, index: usize, lines: &[Line]) -> Passage {
    let first = lines[0];
    let last = lines[lines.len() - 1];
    let first_content = &text[first.start..first.end];
    let byte_start = first.start + (first_content.len() - first_content.trim_start().len());
    let byte_end = last.start + text[last.start..last.end].trim_end().len();

    let mut out = String::with_capacity(byte_end - byte_start);
    for (i, line) in lines.iter().enumerate() {
        let start = if i == 0 { byte_start } else { line.start };
        let content = text[start..line.end].trim_end();
        if i > 0 {
            out.push('\n');
        }
        if content.contains('\r') {
            out.extend(content.chars().map(|c| if c == '\r' { ' ' } else { c }));
        } else {
            out.push_str(content);
        }
    }
    Passage {
        index,
        line_start: first.number,
        line_end: last.number,
        byte_start,
        byte_end,
        text: out,
    }
}

/// Splits `text` into lines (see module docs); an empty text has no lines.
fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    while start < text.len() {
        let nl = memchr_nl(&bytes[start..]).map(|i| start + i);
        let line_end = nl.unwrap_or(text.len());
        let end = if line_end > start && bytes[line_end - 1] == b'\r' && nl.is_some() {
            line_end - 1
        } else {
            line_end
        };
        out.push(Line {
            number: out.len() + 1,
            start,
            end,
        });
        match nl {
            Some(i) => start = i + 1,
            None => break,
        }
    }
    out
}

fn memchr_nl(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Recognises `date YYYY-MM[-DD]` at the start of `line` (after indentation),
/// followed by whitespace or the end of the line. Returns the date and how
/// many bytes of `line` the marker plus the whitespace after it take.
///
/// Strict on purpose: only the lowercase keyword and a valid month, so an
/// article that happens to begin with the word "date" keeps its first words.
fn parse_date_marker(line: &str) -> Option<(&str, usize)> {
    let indent = line.len() - line.trim_start().len();
    let rest = line[indent..].strip_prefix("date")?;
    let gap = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    if gap == 0 {
        return None;
    }
    let value_start = indent + 4 + gap;
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let s = value_start;
    if !(digits(s..s + 4) && b.get(s + 4) == Some(&b'-') && digits(s + 5..s + 7)) {
        return None;
    }
    let month = (b[s + 5] - b'0') * 10 + (b[s + 6] - b'0');
    if !(1..=12).contains(&month) {
        return None;
    }
    let mut value_end = s + 7;
    if b.get(value_end) == Some(&b'-') && digits(value_end + 1..value_end + 3) {
        value_end += 3;
    }
    let after = &line[value_end..];
    if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
        return None;
    }
    let trailing_ws = after.len() - after.trim_start().len();
    Some((&line[s..value_end], value_end + trailing_ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(split: &Split) -> Vec<&str> {
        split.passages.iter().map(|p| p.text.as_str()).collect()
    }

    fn lines_of(split: &Split) -> Vec<(usize, usize)> {
        split.line_spans()
    }

    #[test]
    fn blank_line_style_joins_wrapped_lines() {
        let doc = "Titre\n\nPremier paragraphe\nsur deux lignes.\n\n\n  Second.  \n";
        let s = split_passages(doc);
        assert_eq!(
            texts(&s),
            ["Titre", "Premier paragraphe\nsur deux lignes.", "Second."]
        );
        assert_eq!(lines_of(&s), [(1, 1), (3, 4), (7, 7)]);
        for p in &s.passages {
            assert_eq!(&doc[p.byte_start..p.byte_end], p.text);
        }
        assert_eq!(
            s.passages.iter().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn line_style_when_no_blank_lines() {
        let doc = "Titre\nUn.\nDeux.";
        let s = split_passages(doc);
        assert_eq!(texts(&s), ["Titre", "Un.", "Deux."]);
        assert_eq!(lines_of(&s), [(1, 1), (2, 2), (3, 3)]);
        // Blank lines only at the edges do not switch to blank-line style.
        let s = split_passages("\n\nUn\nDeux\n\n");
        assert_eq!(lines_of(&s), [(3, 3), (4, 4)]);
    }

    #[test]
    fn whitespace_only_lines_are_blank() {
        let s = split_passages("a\n \u{a0}\t\nb\nc");
        assert_eq!(texts(&s), ["a", "b\nc"]);
        assert_eq!(lines_of(&s), [(1, 1), (3, 4)]);
    }

    #[test]
    fn crlf_gives_same_lines_and_no_cr() {
        let s = split_passages("a\r\nb\r\n\r\nc\r\n");
        assert_eq!(texts(&s), ["a\nb", "c"]);
        assert_eq!(lines_of(&s), [(1, 2), (4, 4)]);
        let s = split_passages("x\ry\r\n");
        assert_eq!(texts(&s), ["x y"]);
    }

    #[test]
    fn date_marker_on_first_line_with_text() {
        let doc = " date 2024-02 Sam Altman lors d'une conférence.\n\nCorps.";
        let s = split_passages(doc);
        assert_eq!(s.date.as_deref(), Some("2024-02"));
        assert_eq!(texts(&s), ["Sam Altman lors d'une conférence.", "Corps."]);
        assert_eq!(lines_of(&s), [(1, 1), (3, 3)]);
        assert_eq!(s.passages[0].byte_start, 14);
    }

    #[test]
    fn date_marker_on_own_line() {
        let s = split_passages("date 2023-11\nTitre\nCorps");
        assert_eq!(s.date.as_deref(), Some("2023-11"));
        assert_eq!(texts(&s), ["Titre", "Corps"]);
        assert_eq!(lines_of(&s), [(2, 2), (3, 3)]);

        let s = split_passages("\ndate 2023-11-05\n\nTitre\n\nCorps\nsuite");
        assert_eq!(s.date.as_deref(), Some("2023-11-05"));
        assert_eq!(texts(&s), ["Titre", "Corps\nsuite"]);

        let s = split_passages("date 2023-11");
        assert_eq!(s.date.as_deref(), Some("2023-11"));
        assert!(s.passages.is_empty());
    }

    #[test]
    fn not_a_date_marker() {
        for doc in [
            "date limite: demain",
            "date 2024-13 x",
            "date 2024-0",
            "dates 2024-01",
            "date 2024-01x",
            "Date 2024-01",
        ] {
            let s = split_passages(doc);
            assert_eq!(s.date, None, "{doc}");
            assert_eq!(texts(&s), [doc.trim()], "{doc}");
        }
        // Only a leading marker counts.
        let s = split_passages("Intro\ndate 2024-01 x");
        assert_eq!(s.date, None);
    }

    #[test]
    fn empty_and_blank_documents() {
        assert_eq!(split_passages(""), Split::default());
        assert_eq!(split_passages("\n \n\t\n"), Split::default());
    }

    #[test]
    fn huge_single_line_is_one_passage() {
        let doc = "mot ".repeat(256 * 1024); // 1 MiB, one line
        let t = std::time::Instant::now();
        let s = split_passages(&doc);
        assert_eq!(s.passages.len(), 1);
        assert_eq!(s.passages[0].byte_end, doc.len() - 1);
        assert!(t.elapsed().as_secs() < 2);
    }
}
