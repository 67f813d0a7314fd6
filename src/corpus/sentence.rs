//! Sentence segmentation for passages that must be cut into model-sized
//! windows. Rule-based and tuned for French and English prose; it only needs to
//! find *reasonable* cut points, never to be linguistically perfect, because
//! windows overlap and a wrong cut costs a little context, not text.

/// Lower-cased words that end with a period without ending a sentence.
/// French words that are also abbreviations (`sept`, `art`, `vol`, `col`…) are
/// left out on purpose: as words they end sentences far more often.
const ABBREVIATIONS: &[&str] = &[
    "m", "mm", "mme", "mmes", "mlle", "mlles", "mgr", "dr", "drs", "pr", "prof", "st", "ste",
    "sts", "etc", "cf", "p", "pp", "no", "av", "bd", "env", "fig", "vs", "inc", "ltd", "co",
    "corp", "jr", "sr", "mr", "mrs", "ms", "lt", "sgt", "capt", "gouv", "dept", "chap", "éd", "ed",
    "coll", "ibid", "op", "cit", "approx", "tél", "janv", "févr", "fév", "avr", "juil", "oct",
    "nov", "déc", "dec", "jan", "feb", "apr", "aug",
];

/// Abbreviations are short; looking further back than this is wasted work
/// (and would be quadratic on pathological input).
const MAX_ABBREV_CHARS: usize = 8;

/// Byte spans `(start, end)` of the sentences of `text`, in order.
///
/// A sentence ends after a run of `. ! ? …` plus any closing quotes/brackets
/// (`» ” ’ " ' ) ]`, including a `»` preceded by French spacing), when that is
/// followed by whitespace and then an uppercase letter, a digit, an opening
/// quote (`« “ " ‘ ' „`) or a dialogue dash (`— –`). A single `.` does not end
/// a sentence after a known abbreviation (`M.`, `Dr.`, `etc.`, …) or a single
/// capital (initials: `J. Saget`, `U.S.`). Numbers such as `3.5` never split
/// (no whitespace). Spans cover every byte except the whitespace between
/// sentences and at the ends; whitespace-only text has no sentences.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let Some(mut start) = text.find(|c: char| !c.is_whitespace()) else {
        return out;
    };
    let mut pos = start;
    while let Some(c) = char_at(text, pos) {
        if !is_terminator(c) {
            pos += c.len_utf8();
            continue;
        }
        let term_start = pos;
        let mut end = pos;
        let mut run = 0;
        let mut only_periods = true;
        while let Some(t) = char_at(text, end).filter(|&t| is_terminator(t)) {
            run += 1;
            only_periods &= t == '.';
            end += t.len_utf8();
        }
        let lone_period = only_periods && run == 1;
        end = skip_closers(text, end);
        pos = end;

        // A boundary needs whitespace, then something that can open a sentence.
        match char_at(text, end) {
            Some(w) if w.is_whitespace() => {}
            _ => continue,
        }
        let next = skip_whitespace(text, end);
        let Some(n) = char_at(text, next) else { break };
        if !opens_sentence(n) {
            continue;
        }
        if lone_period && is_abbreviation(&text[start..term_start]) {
            continue;
        }
        out.push((start, end));
        start = next;
        pos = next;
    }
    let end = text.trim_end().len();
    if start < end {
        out.push((start, end));
    }
    out
}

fn char_at(text: &str, pos: usize) -> Option<char> {
    text[pos..].chars().next()
}

fn skip_whitespace(text: &str, pos: usize) -> usize {
    pos + (text[pos..].len() - text[pos..].trim_start().len())
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

/// Consumes closing quotes and brackets after a terminator. `»` and `”` may be
/// preceded by (non-breaking) spaces, as French typography wants.
fn skip_closers(text: &str, mut end: usize) -> usize {
    loop {
        match char_at(text, end) {
            Some(c) if matches!(c, '»' | '”' | '’' | '"' | '\'' | ')' | ']') => {
                end += c.len_utf8()
            }
            Some(c) if c.is_whitespace() => {
                let after = skip_whitespace(text, end);
                match char_at(text, after) {
                    Some(q @ ('»' | '”')) => end = after + q.len_utf8(),
                    _ => return end,
                }
            }
            _ => return end,
        }
    }
}

fn opens_sentence(c: char) -> bool {
    c.is_uppercase()
        || c.is_ascii_digit()
        || matches!(
            c,
            '«' | '“' | '"' | '‘' | '\'' | '„' | '—' | '–' | '¿' | '¡'
        )
}

/// True when `before` (the sentence so far, up to the period) ends with a
/// known abbreviation or a single capital letter (an initial).
fn is_abbreviation(before: &str) -> bool {
    let mut word: Vec<char> = Vec::new();
    for c in before.chars().rev() {
        if !c.is_alphabetic() {
            break;
        }
        if word.len() == MAX_ABBREV_CHARS {
            return false;
        }
        word.push(c);
    }
    match word.as_slice() {
        [] => false,
        [c] if c.is_uppercase() => true,
        _ => {
            let w: String = word.iter().rev().flat_map(|c| c.to_lowercase()).collect();
            ABBREVIATIONS.contains(&w.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<&str> {
        let spans = sentences(text);
        check_cover(text, &spans);
        spans.iter().map(|&(a, b)| &text[a..b]).collect()
    }

    /// Spans are ordered, non-overlapping, and only whitespace lies outside them.
    fn check_cover(text: &str, spans: &[(usize, usize)]) {
        let mut prev = 0;
        for &(a, b) in spans {
            assert!(a >= prev && a < b, "bad span {a}..{b} in {text:?}");
            assert!(
                text[prev..a].trim().is_empty(),
                "gap not whitespace: {:?}",
                &text[prev..a]
            );
            prev = b;
        }
        assert!(text[prev..].trim().is_empty());
    }

    #[test]
    fn basic_french() {
        assert_eq!(
            split("La partie était-elle donc déjà jouée? Et bien non! Pendant longtemps, on a dit que la Chine n’était nulle part."),
            ["La partie était-elle donc déjà jouée?", "Et bien non!", "Pendant longtemps, on a dit que la Chine n’était nulle part."]
        );
        assert_eq!(
            split("Comment un homme peut-il réussir ? Comment"),
            ["Comment un homme peut-il réussir ?", "Comment"]
        );
    }

    #[test]
    fn abbreviations_initials_numbers() {
        assert_eq!(
            split("M. Altman et Mme. Dupont ont vu le Dr. House, etc. Ils ont signé. J. Saget a pris la photo. Le taux est de 3.5 pour cent. En 2022. Ensuite."),
            [
                "M. Altman et Mme. Dupont ont vu le Dr. House, etc. Ils ont signé.",
                "J. Saget a pris la photo.",
                "Le taux est de 3.5 pour cent.",
                "En 2022.",
                "Ensuite."
            ]
        );
        // A French word that looks like an abbreviation still ends a sentence.
        assert_eq!(
            split("Ils étaient sept. Le reste a suivi."),
            ["Ils étaient sept.", "Le reste a suivi."]
        );
        assert_eq!(split("Aux U.S.A. Il pleut."), ["Aux U.S.A. Il pleut."]);
    }

    #[test]
    fn guillemets_and_quotes() {
        assert_eq!(
            split(
                "Il a dit : « Non ! » Puis il est parti. « Personne ne le croit », déclare-t-il."
            ),
            [
                "Il a dit : « Non ! »",
                "Puis il est parti.",
                "« Personne ne le croit », déclare-t-il."
            ]
        );
        assert_eq!(
            split("Elle répond «\u{a0}Oui.\u{a0}» Ensuite “Non.” Fin… Et « encore »."),
            [
                "Elle répond «\u{a0}Oui.\u{a0}»",
                "Ensuite “Non.”",
                "Fin…",
                "Et « encore »."
            ]
        );
        assert_eq!(split("Quoi?! «Vraiment»"), ["Quoi?!", "«Vraiment»"]);
    }

    #[test]
    fn no_split_without_space_or_before_lowercase() {
        assert_eq!(
            split("l’Europe.Ce que la Chine a fait."),
            ["l’Europe.Ce que la Chine a fait."]
        );
        assert_eq!(
            split("Il hésite… puis avance."),
            ["Il hésite… puis avance."]
        );
        assert_eq!(
            split("Voir www.example.com. Fin"),
            ["Voir www.example.com.", "Fin"]
        );
    }

    #[test]
    fn whitespace_edges_and_empty() {
        assert!(sentences("").is_empty());
        assert!(sentences(" \n\t").is_empty());
        assert_eq!(split("  Un.\n\n Deux.  "), ["Un.", "Deux."]);
        assert_eq!(split("..."), ["..."]);
    }

    #[test]
    fn huge_line_is_fast() {
        let text =
            "Un mot. ".repeat(130_000) + "Z" + &"a".repeat(100_000) + ".".repeat(100_000).as_str();
        let t = std::time::Instant::now();
        let spans = sentences(&text);
        assert_eq!(spans.len(), 130_001);
        check_cover(&text, &spans);
        assert!(t.elapsed().as_secs() < 3);
    }
}
