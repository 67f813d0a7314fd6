//! Arbitrary bytes as a tiny BERT's model.safetensors: loading returns an
//! error (or, for a well-formed checkpoint, an encoder that runs); no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pareil::model::{encoder, EncoderOptions, ModelConfig};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, data).unwrap();
    let config = ModelConfig {
        vocab_size: 10,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 12,
        type_vocab_size: 1,
        ..ModelConfig::multilingual_e5_small()
    };
    if let Ok(enc) = encoder::load(&path, &config, EncoderOptions::default()) {
        assert_eq!(enc.forward(&[vec![0, 1]]).unwrap().len(), 16);
    }
});
