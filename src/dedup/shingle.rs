//! Text → shingle sets for the lexical detectors: accent folding on top of the
//! corpus normalisation, word tokenisation, character 5-shingles (for `near`)
//! and word 3-shingles (for `contained`), all hashed to `u64` with a fixed,
//! platform-independent hash so results are reproducible run to run.

use unicode_normalization::char::decompose_canonical;
use unicode_normalization::char::is_combining_mark;

/// Characters per character shingle. 5 is the usual choice for European
/// languages: long enough that unrelated paragraphs share few shingles, short
/// enough that one typo only disturbs 5 of them.
pub const CHAR_K: usize = 5;
/// Words per word shingle. 3 words make a shingle rare enough to index
/// (most 3-word sequences occur once in a corpus) without making a single
/// substituted word cost more than 3 shingles.
pub const WORD_K: usize = 3;

/// A text folded for shingling: its words, lowercased and without accents
/// or punctuation, joined by single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub text: String,
    pub nwords: usize,
}

impl Folded {
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.text.split(' ').filter(|w| !w.is_empty())
    }
}

/// Folds an already-normalised text for shingling: canonical decomposition
/// with combining marks dropped (so "éléments" == "elements"), lowercased
/// again (cheap, and keeps this module correct if handed raw text), every
/// non-alphanumeric character a word break.
///
/// Ideographs and kana are one-character words: those scripts do not
/// separate words with spaces, and without this a whole Chinese paragraph
/// would be a single "word" and could never be `contained`.
///
/// One pass, one allocation, ASCII fast path: this runs on every passage
/// of every scan.
pub fn fold(norm: &str) -> Folded {
    let mut f = Folded {
        text: String::with_capacity(norm.len()),
        nwords: 0,
    };
    let mut in_word = false;
    let mut put = |c: char, f: &mut Folded| {
        if !c.is_alphanumeric() {
            in_word = false;
        } else if is_ideographic(c) {
            if !f.text.is_empty() {
                f.text.push(' ');
            }
            f.text.push(c);
            f.nwords += 1;
            in_word = false;
        } else {
            if !in_word {
                if !f.text.is_empty() {
                    f.text.push(' ');
                }
                f.nwords += 1;
                in_word = true;
            }
            f.text.extend(c.to_lowercase());
        }
    };
    for c in norm.chars() {
        if c.is_ascii() {
            put(c.to_ascii_lowercase(), &mut f);
        } else {
            decompose_canonical(c, |d| {
                if !is_combining_mark(d) {
                    put(d, &mut f);
                }
            });
        }
    }
    f
}

/// The folded words of a text (convenience for tests and callers).
pub fn fold_words(norm: &str) -> Vec<String> {
    fold(norm).words().map(str::to_string).collect()
}

fn is_ideographic(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified
        | 0xF900..=0xFAFF    // CJK compatibility
        | 0x20000..=0x2FA1F) // CJK extensions B+
}

/// Character `CHAR_K`-shingles of the folded text (words joined by single
/// spaces, so word boundaries take part and "a bc" != "ab c"). Sorted,
/// deduplicated. A text shorter than `CHAR_K` characters yields one
/// shingle (itself).
pub fn char_shingles(f: &Folded) -> Vec<u64> {
    let mut out = char_shingles_unsorted(f);
    out.sort_unstable();
    out.dedup();
    out
}

/// The same hashes in text order, repeats included: enough for MinHash
/// (a repeated element competes for the same minimum), and skipping the
/// sort is a good part of the sketching cost.
pub fn char_shingles_unsorted(f: &Folded) -> Vec<u64> {
    let chars: Vec<u32> = f.text.chars().map(|c| c as u32).collect();
    if chars.is_empty() {
        Vec::new()
    } else if chars.len() <= CHAR_K {
        vec![hash_u32s(&chars)]
    } else {
        chars.windows(CHAR_K).map(hash_u32s).collect()
    }
}

/// Word `WORD_K`-shingles, sorted and deduplicated. A text with fewer than
/// `WORD_K` words yields one shingle of all its words.
pub fn word_shingles(f: &Folded) -> Vec<u64> {
    let hs: Vec<u64> = f.words().map(|w| hash_bytes(w.as_bytes())).collect();
    let mut out: Vec<u64> = if hs.is_empty() {
        Vec::new()
    } else if hs.len() <= WORD_K {
        vec![combine(&hs)]
    } else {
        hs.windows(WORD_K).map(combine).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// splitmix64 finaliser: a cheap bijection with good avalanche, used to turn
/// the weak Fx-style accumulations below into well-spread 64-bit values
/// (MinHash and LSH rely on every bit being usable).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const FX: u64 = 0x517C_C1B7_2722_0A95;

#[inline]
fn hash_u32s(cs: &[u32]) -> u64 {
    let mut h = 0u64;
    for &c in cs {
        h = (h.rotate_left(5) ^ c as u64).wrapping_mul(FX);
    }
    mix64(h)
}

/// Fixed 64-bit hash of a byte string (Fx accumulation over 8-byte chunks,
/// then `mix64`). Not `std`'s `DefaultHasher`, whose output may change
/// between Rust releases.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for ch in &mut chunks {
        let v = u64::from_le_bytes(ch.try_into().expect("8-byte chunk"));
        h = (h.rotate_left(5) ^ v).wrapping_mul(FX);
    }
    for &x in chunks.remainder() {
        h = (h.rotate_left(5) ^ x as u64).wrapping_mul(FX);
    }
    mix64(h)
}

#[inline]
fn combine(hs: &[u64]) -> u64 {
    let mut h = 0u64;
    for &x in hs {
        h = mix64(h ^ x);
    }
    h
}

/// |a ∩ b| for two sorted, deduplicated slices.
pub fn intersect_len<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Jaccard similarity of two sorted, deduplicated shingle sets (0 when both empty).
pub fn jaccard(a: &[u64], b: &[u64]) -> f32 {
    let inter = intersect_len(a, b);
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_accents_and_punctuation() {
        assert_eq!(
            fold_words("Les éléments, l’État « ici »!"),
            vec!["les", "elements", "l", "etat", "ici"]
        );
        assert_eq!(
            fold_words("人工智能 AI"),
            vec!["人", "工", "智", "能", "ai"]
        );
    }

    #[test]
    fn shingles_equal_for_accent_and_quote_variants() {
        let a = fold("l’Europe a « toujours » été là");
        let b = fold("l'Europe a \"toujours\" ete la");
        assert_eq!(a, b);
        assert_eq!(char_shingles(&a), char_shingles(&b));
        assert_eq!(word_shingles(&a), word_shingles(&b));
    }

    #[test]
    fn short_texts_have_one_shingle() {
        assert_eq!(char_shingles(&fold("ai")).len(), 1);
        assert_eq!(word_shingles(&fold("deux mots")).len(), 1);
        assert!(word_shingles(&fold(" ... ")).is_empty());
        assert_eq!(fold("Ça, c'est ÉNORME").nwords, 4);
    }
}
