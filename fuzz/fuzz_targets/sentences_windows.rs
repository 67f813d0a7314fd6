//! Any text → `sentences` and `windows` (word-count tokens, budget and
//! overlap from the first byte): ordered spans, only whitespace outside
//! sentences, every non-whitespace byte inside some window, budgets kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pareil::corpus::{sentences, windows};

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut prev = 0;
    for (a, b) in sentences(text) {
        assert!(prev <= a && a < b);
        assert!(text[prev..a].trim().is_empty());
        prev = b;
    }
    assert!(text[prev..].trim().is_empty());

    let (max, overlap) = ((knobs & 0x1f) as usize, (knobs >> 5) as usize);
    let spans = windows(text, max, overlap, &words);
    assert!(!spans.is_empty());
    let mut covered = 0;
    let mut last_start = None;
    for &(a, b) in &spans {
        assert!(last_start.is_none_or(|s| a > s));
        last_start = Some(a);
        assert!(a <= covered || text[covered..a].trim().is_empty());
        covered = covered.max(b);
        let piece = &text[a..b];
        assert!(
            words(piece) <= max || piece.chars().count() == 1 || spans.len() == 1,
            "over budget: {piece:?}"
        );
    }
    assert!(text[covered..].trim().is_empty());
});
