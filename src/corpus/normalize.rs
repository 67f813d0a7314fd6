//! Text normalisation for exact hashing and lexical near-duplicate detection:
//! one canonical form per visually-equivalent text, accent folding, and the
//! word tokens used for shingling. Display text is never normalised.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Canonical form of `text` for hashing and lexical comparison.
///
/// Steps, in order:
/// 1. Typographic variants folded to ASCII: quotes `’ ‘ ‚ ‛ ´ ` ′ ‹ ›` → `'`,
///    `« » “ ” „ ″` → `"`, dashes `‐ ‑ ‒ – — ― −` → `-`, `…` → `...`; soft
///    hyphens and zero-width characters dropped. Done before NFKC because
///    NFKC would turn `´` into a space plus a combining accent and `″` into
///    two primes, and again after it for characters NFKC produces (e.g. the
///    small em dash becomes `—`).
/// 2. Unicode NFKC (also maps NBSP, thin and other compatibility spaces to
///    U+0020, ligatures to letters, full-width forms to ASCII).
/// 3. `to_lowercase` (approximates full case folding; `ß` is kept).
/// 4. French typographic spacing removed: no space after `«`/before `»`, nor
///    before `! ? ; :`, so `« Oui » ?` and `"Oui"?` agree.
/// 5. Whitespace runs collapsed to one space, ends trimmed.
pub fn normalize(text: &str) -> String {
    let premapped = map_typography(text);
    let nfkc: String = premapped.nfkc().collect();
    let lower = nfkc.to_lowercase();
    // Lowercasing can leave a non-NFC sequence (e.g. `İ` → `i` + U+0307).
    let lower: String = lower.nfc().collect();
    let mapped = map_typography(&lower);
    collapse_spaces(&mapped)
}

/// Removes accents: NFD, drop combining marks, recompose what is left.
/// `"Élève"` → `"Eleve"`. Letters without a decomposition (`ø`, `ł`, `æ`) stay.
pub fn fold_accents(text: &str) -> String {
    text.nfd()
        .filter(|&c| !is_combining_mark(c))
        .nfc()
        .collect()
}

/// Word tokens for shingling: maximal runs of letters, digits and combining
/// marks (so NFD text is not cut inside a word). Apostrophes, hyphens and all
/// punctuation separate words: `"l'IA"` → `["l", "IA"]`.
pub fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// One replacement per typographic variant; `None` drops the character.
fn map_char(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{2019}' | '\u{2018}' | '\u{201A}' | '\u{201B}' | '\u{00B4}' | '`' | '\u{2032}'
        | '\u{2039}' | '\u{203A}' => "'",
        '\u{00AB}' | '\u{00BB}' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}'
        | '\u{2033}' => "\"",
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' => "-",
        '\u{2026}' => "...",
        // Soft hyphen, zero-width space/joiners, word joiner, BOM: invisible.
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' => "",
        _ => return None,
    })
}

/// Applies [`map_char`] and, since guillemets are still distinguishable here,
/// removes the French spacing inside them (`« x »` → `"x"`).
fn map_typography(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{00AB}' {
            out.push('"');
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            continue;
        }
        if c == '\u{00BB}' {
            trim_end_in_place(&mut out);
            out.push('"');
            continue;
        }
        match map_char(c) {
            Some(rep) => out.push_str(rep),
            None => out.push(c),
        }
    }
    out
}

fn trim_end_in_place(s: &mut String) {
    let keep = s.trim_end().len();
    s.truncate(keep);
}

/// Collapses whitespace runs to one space, trims, and drops the space French
/// typography puts before `! ? ; :`.
fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space && !matches!(c, '!' | '?' | ';' | ':') {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfd_and_nfc_accents_are_equal() {
        let nfc = "Élève à l’école";
        let nfd: String = nfc.nfd().collect();
        assert_ne!(nfc, nfd);
        assert_eq!(normalize(nfc), normalize(&nfd));
        assert_eq!(normalize(nfc), "élève à l'école");
    }

    #[test]
    fn quotes_dashes_ellipsis_spaces() {
        assert_eq!(normalize("L’IA ‘x’ ‚y‛ ´z` ‹w›"), "l'ia 'x' 'y' 'z' 'w'");
        assert_eq!(normalize("“a” „b“ ″c″"), "\"a\" \"b\" \"c\"");
        assert_eq!(normalize("a‐b‑c‒d–e—f―g−h"), "a-b-c-d-e-f-g-h");
        assert_eq!(normalize("Et puis…"), "et puis...");
        assert_eq!(normalize("\u{a0} a\u{202f}b\u{2009}c \t\n d  "), "a b c d");
        assert_eq!(normalize("ﬁn ＡＢ"), "fin ab");
        assert_eq!(normalize("in\u{ad}vi\u{200b}sible"), "invisible");
    }

    #[test]
    fn french_spacing_is_canonical() {
        assert_eq!(
            normalize("De façon « étrange », oui ?"),
            normalize("De façon \"étrange\", oui?")
        );
        assert_eq!(normalize("Note\u{202f}: fin\u{a0}!"), "note: fin!");
        assert_eq!(
            normalize("«\u{a0}Swindly Sam\u{a0}» – ainsi"),
            "\"swindly sam\" - ainsi"
        );
    }

    #[test]
    fn case_is_folded() {
        assert_eq!(normalize("ÉTATS-UNIS"), normalize("États-Unis"));
        assert_eq!(normalize("İstanbul"), "i\u{307}stanbul");
    }

    #[test]
    fn fold_accents_drops_marks() {
        assert_eq!(fold_accents("Élève à l'école, ça"), "Eleve a l'ecole, ca");
        let nfd: String = "déjà".nfd().collect();
        assert_eq!(fold_accents(&nfd), "deja");
        assert_eq!(fold_accents("øæ"), "øæ");
    }

    #[test]
    fn words_split_on_punctuation() {
        assert_eq!(
            words("L’IA d'OpenAI, en 2025 : 5,5 M$ — peut-être!"),
            ["L", "IA", "d", "OpenAI", "en", "2025", "5", "5", "M", "peut", "être"]
        );
        let nfd: String = "élève".nfd().collect();
        assert_eq!(words(&nfd), [nfd.as_str()]);
        assert!(words(" ,;! ").is_empty());
    }

    #[test]
    fn huge_text_is_fast() {
        let doc = "Élève « x » — y… ".repeat(60_000); // ~1 MB
        let t = std::time::Instant::now();
        let n = normalize(&doc);
        assert!(n.starts_with("élève \"x\" - y..."));
        assert!(t.elapsed().as_secs() < 5);
    }
}
