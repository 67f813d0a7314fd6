//! A small stop-word language guesser. The semantic duplicate layer needs to
//! know whether two passages are in the same language: this model's cosines
//! carry a same-language bonus (shared surface forms), so a translation scores
//! lower than a same-language paraphrase and needs its own threshold.

use super::normalize::{fold_accents, words};

/// Very frequent function words that are rare in the other listed languages.
const LANGUAGES: &[(&str, &[&str])] = &[
    (
        "fr",
        &[
            "le", "la", "les", "des", "est", "une", "dans", "pour", "qui", "que", "pas", "sur",
            "avec", "sont", "mais", "nous", "du", "au", "ce", "cette",
        ],
    ),
    (
        "en",
        &[
            "the", "and", "of", "to", "is", "that", "for", "with", "was", "are", "this", "by",
            "not", "but", "have", "from", "it", "which", "their", "has",
        ],
    ),
    (
        "de",
        &[
            "der", "die", "das", "und", "ist", "nicht", "mit", "sich", "auf", "fur", "ein", "eine",
            "den", "dem", "auch", "wird", "zu", "von", "nur", "doch",
        ],
    ),
    (
        "es",
        &[
            "el", "los", "las", "del", "y", "es", "por", "con", "una", "para", "como", "pero",
            "sus", "fue", "muy", "esta", "entre", "tambien", "segun", "ha",
        ],
    ),
    (
        "it",
        &[
            "il", "della", "che", "di", "gli", "per", "non", "sono", "nel", "alla", "anche",
            "come", "delle", "degli", "questo", "ha", "piu", "tra", "una", "lo",
        ],
    ),
];

/// The guesser's own spelling of a language code stored earlier (`None`
/// for a code it does not guess). Stored guesses stay valid only while the
/// stop-word lists do: a change to them must clear the stored ones (a
/// store migration setting `passages.lang` to NULL).
pub fn known_language(code: &str) -> Option<&'static str> {
    LANGUAGES.iter().map(|(l, _)| *l).find(|l| *l == code)
}

/// Fewest stop-word hits for a guess: short titles stay undecided.
const MIN_HITS: usize = 3;

/// The language of `text` (ISO 639-1), or None when it is too short or unclear.
pub fn guess_language(text: &str) -> Option<&'static str> {
    let folded = fold_accents(&text.to_lowercase());
    let ws = words(&folded);
    let mut best: Option<(&'static str, usize)> = None;
    let mut second = 0;
    for (lang, stops) in LANGUAGES {
        let hits = ws.iter().filter(|w| stops.contains(w)).count();
        match best {
            Some((_, b)) if hits <= b => second = second.max(hits),
            _ => {
                if let Some((_, b)) = best {
                    second = second.max(b);
                }
                best = Some((lang, hits));
            }
        }
    }
    let (lang, hits) = best?;
    // Require a clear winner: twice the runner-up's hits.
    (hits >= MIN_HITS && hits >= 2 * second).then_some(lang)
}

/// The language of a document from its passages' own `guesses`: the one
/// most guessed passages have, when it has at least twice the runner-up's
/// count (the guesser's own clear-winner rule, applied to votes): a French
/// file that quotes an English paragraph or two stays French. With no
/// guessed passage, a guess on `sample()` (the document's opening text,
/// where short lines add up).
pub fn document_language(
    guesses: &[Option<&'static str>],
    sample: impl FnOnce() -> String,
) -> Option<&'static str> {
    let mut votes: Vec<(&'static str, usize)> = Vec::new();
    for lang in guesses.iter().flatten() {
        match votes.iter_mut().find(|(l, _)| l == lang) {
            Some((_, n)) => *n += 1,
            None => votes.push((lang, 1)),
        }
    }
    if votes.is_empty() {
        return guess_language(&sample());
    }
    votes.sort_by_key(|v| std::cmp::Reverse(v.1));
    let runner_up = votes.get(1).map_or(0, |v| v.1);
    (votes[0].1 >= 2 * runner_up).then_some(votes[0].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_the_seed_languages() {
        assert_eq!(
            guess_language(
                "Il n’y a pas assez de puces produites dans le monde pour alimenter la machine"
            ),
            Some("fr")
        );
        assert_eq!(
            guess_language("There are not enough chips produced in the world to feed the machine"),
            Some("en")
        );
        assert_eq!(guess_language("Es gibt nicht genug Chips auf der Welt, um die Maschine mit Strom zu versorgen, und das ist ein Problem"), Some("de"));
        assert_eq!(guess_language("AI"), None);
        assert_eq!(guess_language(""), None);
    }

    #[test]
    fn a_document_takes_its_passages_majority_language() {
        let sample = || unreachable!("votes decide");
        // A French file quoting two English paragraphs stays French.
        let fr = [
            Some("fr"),
            None,
            Some("en"),
            Some("fr"),
            Some("en"),
            Some("fr"),
            Some("fr"),
        ];
        assert_eq!(document_language(&fr, sample), Some("fr"));
        // No clear winner: unknown.
        let mixed = [Some("fr"), Some("en"), Some("fr"), Some("en"), None];
        assert_eq!(document_language(&mixed, sample), None);
        // Nothing guessed: the sample decides.
        let lines = || "le chat\nla maison\nles amis pour nous".to_string();
        assert_eq!(document_language(&[None, None], lines), Some("fr"));
    }
}
