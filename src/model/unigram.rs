//! A SentencePiece Unigram model (XLM-R's, multilingual-e5's) that loads in
//! tens of milliseconds instead of most of a second.
//!
//! The `tokenizers` crate builds a byte trie of the 250k-piece vocabulary at
//! every load, one hash map per trie node (about a million of them): 0.5–0.9 s
//! on these machines, the largest part of a cold `pareil similar "TEXT"`, and
//! as long again to free at exit. This model keeps one hash map from piece to
//! id and finds the pieces starting at a position by looking up each prefix up
//! to the longest piece's length. The lattice search is the crate's
//! `encode_optimized` step for step (same candidates in the same order, same
//! strict comparisons, same unknown-character score and fused unknowns), so
//! the ids are identical — checked against the crate on real multilingual
//! text by `tests/real_model` (`fast_tokenizer_matches_tokenizers`).
//!
//! Everything around the model (added tokens, the normaliser, the
//! pre-tokeniser, the `<s> … </s>` template) is the crate's own, read from
//! the same `tokenizer.json`; [`load`] returns `None` for any file whose model
//! is not Unigram, and the caller then uses the crate's loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Model, Token, TokenizerImpl};

/// A tokenizer with this crate's Unigram model and the file's other parts.
pub type UnigramTokenizer = TokenizerImpl<
    Unigram,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Score of an unknown character below the lowest piece score (the crate's
/// and SentencePiece's `kUnkPenalty`).
const UNK_PENALTY: f64 = 10.0;

type Hasher = std::hash::BuildHasherDefault<ahash::AHasher>;

/// The vocabulary and what the lattice search needs of it.
pub struct Unigram {
    /// `(piece, log probability)` in id order, as in the file.
    vocab: Vec<(String, f64)>,
    /// Piece → id (a repeated piece keeps its last id, as in the crate).
    ids: HashMap<String, u32, Hasher>,
    unk_id: Option<u32>,
    byte_fallback: bool,
    min_score: f64,
    /// Bytes of the longest piece: no lookup past it.
    longest: usize,
}

impl Unigram {
    pub fn new(vocab: Vec<(String, f64)>, unk_id: Option<usize>, byte_fallback: bool) -> Self {
        let mut ids = HashMap::with_capacity_and_hasher(vocab.len(), Hasher::default());
        let (mut min_score, mut longest) = (f64::INFINITY, 0);
        for (id, (piece, score)) in vocab.iter().enumerate() {
            ids.insert(piece.clone(), id as u32);
            min_score = min_score.min(*score);
            longest = longest.max(piece.len());
        }
        Unigram {
            vocab,
            ids,
            unk_id: unk_id.map(|u| u as u32),
            byte_fallback,
            min_score,
            longest,
        }
    }

    /// The best segmentation of `sentence` into pieces (Viterbi over the
    /// lattice of vocabulary pieces; runs of unknown characters fused).
    fn encode<'s>(&self, sentence: &'s str) -> Vec<&'s str> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f64,
            starts_at: Option<usize>,
        }
        let size = sentence.len();
        let unk_score = self.min_score - UNK_PENALTY;
        let unk = self.unk_id.unwrap_or(u32::MAX);
        let mut best = vec![
            Best {
                id: 0,
                score: 0.0,
                starts_at: None,
            };
            size + 1
        ];
        fn offer(best: &mut [Best], end: usize, start: usize, id: u32, score: f64) {
            let node = &mut best[end];
            if node.starts_at.is_none() || score > node.score {
                *node = Best {
                    id,
                    score,
                    starts_at: Some(start),
                };
            }
        }
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let first_char = sentence[start..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            let limit = size.min(start + self.longest);
            let mut end = start + first_char;
            while end <= limit {
                if let Some(&id) = self.ids.get(&sentence[start..end]) {
                    offer(&mut best, end, start, id, here + self.vocab[id as usize].1);
                    single |= end - start == first_char;
                }
                end += sentence[end..].chars().next().map_or(1, char::len_utf8);
            }
            if !single {
                offer(&mut best, start + first_char, start, unk, here + unk_score);
            }
            start += first_char;
        }
        // Backwards along the best path; consecutive unknowns become one piece.
        let mut pieces = Vec::new();
        let mut end = size;
        let mut unknown_until = None;
        while end > 0 {
            let node = best[end];
            let start = node.starts_at.expect("every character boundary is reached");
            if self.unk_id.is_some() && node.id == unk {
                unknown_until.get_or_insert(end);
            } else {
                if let Some(until) = unknown_until.take() {
                    pieces.push(&sentence[end..until]);
                }
                pieces.push(&sentence[start..end]);
            }
            end = start;
        }
        if let Some(until) = unknown_until {
            pieces.push(&sentence[..until]);
        }
        pieces.reverse();
        pieces
    }
}

impl Model for Unigram {
    type Trainer = UnigramTrainer;

    /// The crate's `Unigram::tokenize`: ids of the pieces, a piece missing
    /// from the vocabulary (a fused unknown run) as bytes when the model
    /// falls back to bytes, else as the unknown id.
    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        let mut tokens = Vec::new();
        let mut offset = 0;
        for piece in self.encode(sentence) {
            let span = (offset, offset + piece.len());
            offset += piece.len();
            if let Some(&id) = self.ids.get(piece) {
                tokens.push(Token::new(id, piece.to_string(), span));
                continue;
            }
            if self.byte_fallback {
                let bytes: Option<Vec<Token>> = piece
                    .bytes()
                    .map(|b| {
                        let name = format!("<0x{b:02X}>");
                        self.ids.get(&name).map(|&id| Token::new(id, name, span))
                    })
                    .collect();
                if let Some(bytes) = bytes {
                    tokens.extend(bytes);
                    continue;
                }
            }
            let unk = self
                .unk_id
                .ok_or("unknown text and the model has no unk_id")?;
            tokens.push(Token::new(unk, piece.to_string(), span));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.vocab.get(id as usize).map(|(p, _)| p.clone())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids.iter().map(|(p, &id)| (p.clone(), id)).collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Writes `unigram.json` as the crate does (type, unk_id, vocab).
    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        let name = match prefix {
            Some(p) => format!("{p}-unigram.json"),
            None => "unigram.json".into(),
        };
        let path = folder.join(name);
        let json = serde_json::json!({
            "type": "Unigram",
            "unk_id": self.unk_id,
            "vocab": self.vocab,
            "byte_fallback": self.byte_fallback,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        Ok(vec![path])
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

/// The parts of `tokenizer.json` this loader reads.
#[derive(Deserialize)]
struct File {
    version: String,
    #[serde(default)]
    added_tokens: Vec<AddedTokenWithId>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    decoder: Option<DecoderWrapper>,
    model: ModelFile,
}

#[derive(Deserialize)]
struct AddedTokenWithId {
    #[allow(dead_code)]
    id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

#[derive(Deserialize)]
struct ModelFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    unk_id: Option<usize>,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    vocab: Vec<(String, f64)>,
}

/// The tokenizer of a `tokenizer.json` whose model is Unigram; `Ok(None)`
/// for any other model (or a file this loader does not understand), which
/// the crate's own loader then reads — and reports on, if it is damaged.
pub fn load(bytes: &[u8]) -> Option<UnigramTokenizer> {
    let file: File = serde_json::from_slice(bytes).ok()?;
    if file.version != "1.0" || file.model.kind.as_deref() != Some("Unigram") {
        return None;
    }
    let model = &file.model;
    if model.vocab.is_empty() || model.unk_id.is_some_and(|u| u >= model.vocab.len()) {
        return None;
    }
    let ModelFile {
        unk_id,
        byte_fallback,
        vocab,
        ..
    } = file.model;
    let mut tokenizer = TokenizerImpl::new(Unigram::new(vocab, unk_id, byte_fallback));
    tokenizer.with_normalizer(file.normalizer).ok()?;
    tokenizer.with_pre_tokenizer(file.pre_tokenizer);
    tokenizer.with_post_processor(file.post_processor);
    tokenizer.with_decoder(file.decoder);
    tokenizer
        .add_tokens(file.added_tokens.into_iter().map(|t| t.token))
        .ok()?;
    Some(tokenizer)
}
