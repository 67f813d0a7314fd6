//! Arbitrary bytes as config.json: an error or a config whose derived
//! numbers are consistent (positions inside the table).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pareil::model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, data).unwrap();
    if let Ok(c) = ModelConfig::from_file(&path) {
        assert!(c.num_attention_heads > 0 && c.max_tokens() >= 2);
        let end = c.position_offset() as u128 + c.max_tokens() as u128;
        assert!(end <= c.max_position_embeddings as u128);
    }
});
