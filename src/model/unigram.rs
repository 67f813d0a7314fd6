//! A SentencePiece Unigram model (XLM-R's, multilingual-e5's) that loads in
//! tens of milliseconds instead of most of a second.
//!
//! The `tokenizers` crate builds a byte trie of the 250k-piece vocabulary at
//! every load, one hash map per trie node (about a million of them): 0.5–0.9 s
//! on these machines, the largest part of a cold `pareil similar "TEXT"`, and
//! as long again to free at exit. This model keeps every piece in one string
//! (pieces borrowed from the JSON while parsing, so no per-piece allocation)
//! and one hash table of ids, and finds the pieces starting at a position by
//! looking up each prefix up to the longest piece's length. The lattice search is the crate's
//! `encode_optimized` step for step (same candidates in the same order, same
//! strict comparisons, same unknown-character score and fused unknowns), so
//! the ids are identical — checked against the crate on real multilingual
//! text by `tests/real_model` (`fast_tokenizer_matches_tokenizers`).
//!
//! Everything around the model (added tokens, the normaliser, the
//! pre-tokeniser, the `<s> … </s>` template) is the crate's own, read from
//! the same `tokenizer.json`; [`load`] returns `None` for any file whose model
//! is not Unigram, and the caller then uses the crate's loader.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hashbrown::HashTable;
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

/// The vocabulary and what the lattice search needs of it.
pub struct Unigram {
    /// Every piece's text, one after another, in id order: one allocation
    /// instead of 250k (building and freeing those was a third of the load).
    text: String,
    /// Piece `id`: its byte range in `text` and its log probability.
    pieces: Vec<(u32, u32, f64)>,
    /// Ids by the hash of their piece (a repeated piece keeps its last id,
    /// as in the crate).
    ids: HashTable<u32>,
    hasher: ahash::RandomState,
    unk_id: Option<u32>,
    byte_fallback: bool,
    min_score: f64,
    /// Bytes of the longest piece: no lookup past it.
    longest: usize,
}

impl Unigram {
    pub fn new<'p>(
        vocab: impl ExactSizeIterator<Item = (&'p str, f64)>,
        unk_id: Option<usize>,
        byte_fallback: bool,
    ) -> Self {
        let hasher = ahash::RandomState::new();
        let mut text = String::new();
        let mut pieces = Vec::with_capacity(vocab.len());
        let mut ids = HashTable::with_capacity(vocab.len());
        let (mut min_score, mut longest) = (f64::INFINITY, 0);
        for (id, (piece, score)) in vocab.enumerate() {
            let start = text.len() as u32;
            text.push_str(piece);
            pieces.push((start, text.len() as u32, score));
            let at = |id: u32| {
                let (s, e, _) = pieces[id as usize];
                &text[s as usize..e as usize]
            };
            let hash = hasher.hash_one(piece);
            match ids.find_mut(hash, |&other| at(other) == piece) {
                Some(slot) => *slot = id as u32,
                None => {
                    ids.insert_unique(hash, id as u32, |&other| hasher.hash_one(at(other)));
                }
            }
            min_score = min_score.min(score);
            longest = longest.max(piece.len());
        }
        Unigram {
            text,
            pieces,
            ids,
            hasher,
            unk_id: unk_id.map(|u| u as u32),
            byte_fallback,
            min_score,
            longest,
        }
    }

    fn piece(&self, id: u32) -> &str {
        let (start, end, _) = self.pieces[id as usize];
        &self.text[start as usize..end as usize]
    }

    fn id_of(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.ids.find(hash, |&id| self.piece(id) == piece).copied()
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
                if let Some(id) = self.id_of(&sentence[start..end]) {
                    offer(&mut best, end, start, id, here + self.pieces[id as usize].2);
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
            if let Some(id) = self.id_of(piece) {
                tokens.push(Token::new(id, piece.to_string(), span));
                continue;
            }
            if self.byte_fallback {
                let bytes: Option<Vec<Token>> = piece
                    .bytes()
                    .map(|b| {
                        let name = format!("<0x{b:02X}>");
                        self.id_of(&name).map(|id| Token::new(id, name, span))
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
        self.id_of(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.pieces.len()).then(|| self.piece(id).to_string())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids
            .iter()
            .map(|&id| (self.piece(id).to_string(), id))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.pieces.len()
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
            "vocab": (0..self.pieces.len() as u32)
                .map(|id| (self.piece(id), self.pieces[id as usize].2))
                .collect::<Vec<_>>(),
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
struct File<'a> {
    version: String,
    #[serde(default)]
    added_tokens: Vec<AddedTokenWithId>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    decoder: Option<DecoderWrapper>,
    #[serde(borrow)]
    model: ModelFile<'a>,
}

#[derive(Deserialize)]
struct AddedTokenWithId {
    #[allow(dead_code)]
    id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

#[derive(Deserialize)]
struct ModelFile<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    unk_id: Option<usize>,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default, borrow)]
    vocab: Vec<Piece<'a>>,
}

/// One `[piece, score]` entry, borrowed from the file when it has no escapes.
#[derive(Deserialize)]
struct Piece<'a>(#[serde(borrow)] Cow<'a, str>, f64);

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
    let pieces = vocab.iter().map(|Piece(p, score)| (p.as_ref(), *score));
    let mut tokenizer = TokenizerImpl::new(Unigram::new(pieces, unk_id, byte_fallback));
    tokenizer.with_normalizer(file.normalizer).ok()?;
    tokenizer.with_pre_tokenizer(file.pre_tokenizer);
    tokenizer.with_post_processor(file.post_processor);
    tokenizer.with_decoder(file.decoder);
    tokenizer
        .add_tokens(file.added_tokens.into_iter().map(|t| t.token))
        .ok()?;
    Some(tokenizer)
}
