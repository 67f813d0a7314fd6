//! File bytes → `read_text` (strict and lossy) → `split_passages`: refusals
//! are only "binary" / "invalid UTF-8 at an offset inside the file", and
//! passages' byte spans slice back to their text with matching line numbers.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pareil::corpus::{read_text, split_passages};
use pareil::Error;

fuzz_target!(|data: &[u8]| {
    for lossy in [false, true] {
        let text = match read_text(Path::new("f.txt"), data, lossy) {
            Ok(t) => t,
            Err(Error::Binary { .. }) => continue,
            Err(Error::InvalidUtf8 { offset, .. }) => {
                assert!(!lossy && offset < data.len());
                continue;
            }
            Err(e) => panic!("unexpected error {e}"),
        };
        assert_eq!(
            text.matches('\n').count(),
            data.iter().filter(|&&b| b == b'\n').count()
        );
        let split = split_passages(&text);
        let mut prev_end = 0;
        for (i, p) in split.passages.iter().enumerate() {
            assert_eq!(p.index, i);
            assert!(prev_end <= p.byte_start && p.byte_start < p.byte_end);
            let span = &text[p.byte_start..p.byte_end];
            let expected: Vec<String> = span
                .split('\n')
                .map(|l| l.trim_end().replace('\r', " "))
                .collect();
            assert_eq!(p.text, expected.join("\n"));
            assert_eq!(p.line_start, text[..p.byte_start].matches('\n').count() + 1);
            assert_eq!(p.line_end, text[..p.byte_end].matches('\n').count() + 1);
            prev_end = p.byte_end;
        }
    }
});
