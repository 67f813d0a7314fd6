//! Token-budgeted windows over a long passage, so that every byte of a
//! passage reaches the embedding model even when the passage is longer than
//! the model's input limit. The token counter is supplied by the caller (the
//! real tokenizer in production, a word count in tests).

use super::sentence::sentences;

/// Byte spans of windows over `text`, each costing at most `max_tokens`
/// according to `count_tokens` (for text that can be split that finely).
///
/// - If the whole text fits, or is whitespace only, the result is
///   `[(0, text.len())]`.
/// - Otherwise consecutive sentences are packed greedily into windows; each
///   window after the first starts `overlap_sentences` sentences before the
///   previous one ended (fewer if the overlap would leave no room for a new
///   sentence, so windows always make progress).
/// - A sentence that alone exceeds the budget is cut at word boundaries, and a
///   single word that exceeds it is cut between characters. A single
///   character over budget becomes its own window: text is never dropped.
///
/// Spans are ordered with strictly increasing starts; together they cover
/// every non-whitespace byte. Windows start and end on non-whitespace (except
/// the single whole-text window). `count_tokens` is called a few times per
/// window on spans near the window size, so the cost stays close to linear in
/// the text length even for a 1 MB single line.
pub fn windows(
    text: &str,
    max_tokens: usize,
    overlap_sentences: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<(usize, usize)> {
    if text.trim().is_empty() || fits_in(text, max_tokens, count_tokens) {
        return vec![(0, text.len())];
    }
    let fits = |a: usize, b: usize| fits_in(&text[a..b], max_tokens, count_tokens);

    // Units: sentences, with over-budget ones cut into word- or char-pieces.
    let mut units: Vec<(usize, usize)> = Vec::new();
    for (a, b) in sentences(text) {
        if fits(a, b) {
            units.push((a, b));
        } else {
            units.extend(cut(text, &word_spans(text, a, b), &fits));
        }
    }

    let mut out = Vec::new();
    let mut i = 0;
    let mut hint = 1;
    while i < units.len() {
        let j = longest_fit(&units, i, hint, &fits).max(i + 1);
        hint = j - i;
        out.push((units[i].0, units[j - 1].1));
        if j == units.len() {
            break;
        }
        // Overlap, shrunk until the next window can take at least unit j.
        let mut k = j.saturating_sub(overlap_sentences).max(i + 1);
        while k < j && !fits(units[k].0, units[j].1) {
            k += 1;
        }
        i = k;
    }
    out
}

/// Bytes per token above which a span is taken not to fit without asking
/// the tokenizer. Subword tokens are a few bytes long, so a span over
/// `max_tokens × 32` bytes cannot fit in practice; the cap keeps the
/// tokenizer (and its memory: ~80 bytes per token) off a 50 MB single line,
/// which is then cut by words. Being wrong only makes more windows.
pub const MAX_BYTES_PER_TOKEN: usize = 32;

/// Whether `span` costs at most `max_tokens`, tokenizing only spans that can.
pub fn fits_in(span: &str, max_tokens: usize, count_tokens: &dyn Fn(&str) -> usize) -> bool {
    span.len() <= max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN) && count_tokens(span) <= max_tokens
}

/// Packs `atoms` greedily into pieces that fit; an atom that does not fit
/// alone is cut into characters (and a character that does not fit is kept
/// as its own piece).
fn cut(
    text: &str,
    atoms: &[(usize, usize)],
    fits: &dyn Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut hint = 1;
    while i < atoms.len() {
        let j = longest_fit(atoms, i, hint, fits);
        if j > i {
            hint = j - i;
            out.push((atoms[i].0, atoms[j - 1].1));
            i = j;
            continue;
        }
        let (a, b) = atoms[i];
        let chars: Vec<(usize, usize)> = text[a..b]
            .char_indices()
            .map(|(o, c)| (a + o, a + o + c.len_utf8()))
            .collect();
        if chars.len() == 1 {
            out.push((a, b));
        } else {
            out.extend(cut(text, &chars, fits));
        }
        i += 1;
    }
    out
}

/// Largest `j` in `i..=atoms.len()` such that `atoms[i..j]` fits (as one span),
/// assuming fitting is monotone in `j`. Starts at `i + hint` (the previous
/// window's size: neighbouring windows are usually about as long), gallops
/// up or down from there (1, 2, 4, … atoms) and then bisects. So a typical
/// window costs a handful of tokenizer calls on spans near the budget, and
/// spans far larger than the budget are never tokenized.
fn longest_fit(
    atoms: &[(usize, usize)],
    i: usize,
    hint: usize,
    fits: &dyn Fn(usize, usize) -> bool,
) -> usize {
    let n = atoms.len();
    let ok = |j: usize| j == i || fits(atoms[i].0, atoms[j - 1].1);
    let first = (i + hint.max(1)).min(n);
    // Invariant once found: atoms[i..good] fits, atoms[i..bad] does not.
    let (mut good, mut bad);
    let mut step = 1;
    if ok(first) {
        good = first;
        loop {
            if good == n {
                return n;
            }
            let probe = (good + step).min(n);
            if !ok(probe) {
                bad = probe;
                break;
            }
            good = probe;
            step *= 2;
        }
    } else {
        bad = first;
        loop {
            let probe = bad.saturating_sub(step).max(i);
            if ok(probe) {
                good = probe;
                break;
            }
            bad = probe;
            step *= 2;
        }
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

/// Spans of the whitespace-separated words within `text[a..b]`.
fn word_spans(text: &str, a: usize, b: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (o, c) in text[a..b].char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((a + s, a + o));
                start = None;
            }
            (false, None) => start = Some(o),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((a + s, b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_count(s: &str) -> usize {
        s.split_whitespace().count()
    }

    /// Ordered, strictly advancing, every non-whitespace byte covered, all within budget.
    fn check(text: &str, spans: &[(usize, usize)], max: usize, count: &dyn Fn(&str) -> usize) {
        assert!(!spans.is_empty());
        let mut covered = 0;
        let mut prev_start = None;
        for &(a, b) in spans {
            assert!(a < b || text.is_empty());
            if let Some(p) = prev_start {
                assert!(a > p, "starts must increase");
            }
            prev_start = Some(a);
            assert!(
                a <= covered || text[covered..a].trim().is_empty(),
                "gap {:?}",
                &text[covered..a]
            );
            covered = covered.max(b);
            let piece = &text[a..b];
            assert!(
                count(piece) <= max || piece.chars().count() == 1,
                "over budget: {piece:?}"
            );
        }
        assert!(text[covered..].trim().is_empty());
    }

    #[test]
    fn within_budget_is_one_window() {
        assert_eq!(windows(" Un deux. ", 10, 1, &word_count), [(0, 10)]);
        assert_eq!(windows("", 10, 1, &word_count), [(0, 0)]);
        assert_eq!(windows("  \n", 0, 1, &word_count), [(0, 3)]);
    }

    #[test]
    fn sentences_grouped_with_overlap() {
        let text =
            "Un deux trois. Quatre cinq six. Sept huit neuf. Dix onze douze. Treize quatorze.";
        let w = windows(text, 6, 1, &word_count);
        check(text, &w, 6, &word_count);
        let got: Vec<&str> = w.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(
            got,
            [
                "Un deux trois. Quatre cinq six.",
                "Quatre cinq six. Sept huit neuf.",
                "Sept huit neuf. Dix onze douze.",
                "Dix onze douze. Treize quatorze."
            ]
        );
        // No overlap: plain partition.
        let w = windows(text, 6, 0, &word_count);
        check(text, &w, 6, &word_count);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn overlap_shrinks_when_it_would_block_progress() {
        let text = "Un deux trois. Quatre cinq six sept. Huit.";
        let w = windows(text, 4, 2, &word_count);
        check(text, &w, 4, &word_count);
        let got: Vec<&str> = w.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(got, ["Un deux trois.", "Quatre cinq six sept.", "Huit."]);
    }

    #[test]
    fn long_sentence_cut_on_words_and_long_word_on_chars() {
        let text = "Un deux trois quatre cinq six sept. Fin.";
        let w = windows(text, 3, 1, &word_count);
        check(text, &w, 3, &word_count);
        let got: Vec<&str> = w.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(got[0], "Un deux trois");
        assert_eq!(*got.last().unwrap(), "sept. Fin.");

        let chars = |s: &str| s.chars().count();
        let text = "éèàùç".repeat(10);
        let w = windows(&text, 7, 0, &chars);
        check(&text, &w, 7, &chars);
        assert_eq!(w.len(), 8);
        // A budget of zero still covers the text, one character per window.
        let w = windows("abc", 0, 0, &chars);
        assert_eq!(w, [(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn huge_single_line_is_fast() {
        let text = "mot ".repeat(250_000) + &"x".repeat(50_000);
        let t = std::time::Instant::now();
        let w = windows(&text, 512, 1, &word_count);
        check(&text, &w, 512, &word_count);
        assert!(w.len() > 400);
        assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
    }

    #[test]
    fn french_passage_windows() {
        let text = "M. Altman est parti à la guerre. Le génie derrière OpenAI se sent pousser des ailes. \
                    Il n’y a pas assez de puces ? Alors il faut en produire ! « C’est la clé », dit-il.";
        let w = windows(text, 12, 1, &word_count);
        check(text, &w, 12, &word_count);
        assert!(w.len() >= 3);
        assert!(text[w[0].0..w[0].1].starts_with("M. Altman est parti"));
    }
}
