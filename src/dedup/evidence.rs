//! What the text itself says about a semantic candidate pair, beyond the
//! cosine: the names, identifiers and numbers of each side, and whether the
//! two are one template with different fillers. Embeddings place
//! "libudev-dev: libudev development files" next to "libnewuoa-dev:
//! Development files for libnewuoa", and "Firefox ESR in Swedish" next to
//! "… in Slovenian": the vectors cannot tell, the words can.
//!
//! The evidence is chosen so that it survives translation: identifiers
//! (`libudev`, `php-intl`, `x86-64`, `C++`), words written with capitals
//! inside them (`PHP`, `OpenGL`, `ESR`), numbers, and the lowercase label
//! of a `name: synopsis` heading are kept unchanged by translators, so a
//! translation carries its original's names and a look-alike carries others.
//! A pair is vetoed on a **substitution** (each side has a name the other
//! lacks: translators add or drop an acronym, they do not swap one name for
//! another), or when a heading's label is missing on the other side (the
//! label names what the text is about). On the development set (`../shared/eval/debian-dev`) this vetoes
//! 1 % of human translations (typos, spelled-out acronyms) and 99.9 % of
//! pairs of different packages' headings.
//!
//! Two checks apply only to texts written alike (a third of their words in
//! common, which in practice means one language): capitalised words inside
//! a sentence are names there too ("Swedish" / "Slovenian"), and a pair
//! that shares at least half of the shorter side's words while each side has
//! words the other lacks is one template filled differently ("contains the
//! documentation" / "contains the development files") — not a duplicate,
//! even when the cosine is 0.97. (The semantic stage lets a template pair
//! through as a rewording from 0.98 on, "contains" / "provides the shared
//! library", unless [`opposed`] finds a negation or an opposite among the
//! words that differ.)

use std::collections::HashSet;

/// Word-set Jaccard from which two texts count as written alike.
const ALIKE_JACCARD: f32 = 0.3;
/// Share of the shorter side's words that makes a pair one template.
const TEMPLATE_SHARE: f32 = 0.5;
/// Longest all-capital acronym matched in any letter order (DNA / ADN).
const ACRONYM_MAX: usize = 5;
/// Characters that glue the parts of an identifier (`libfoo.so`, `C++`, `a_b`).
const IDENT_GLUE: &[char] = &['_', '.', '+', '#', ':'];

/// The evidence of one passage.
#[derive(Debug, Clone, Default)]
pub(super) struct Evidence {
    /// The label of a `name: synopsis` heading: the text's subject.
    label: Option<String>,
    /// Identifiers, codes and mixed-case words, lowercased.
    names: Vec<String>,
    /// Digit runs without leading zeros.
    numbers: HashSet<String>,
    /// Capitalised words inside sentences, lowercased.
    capitalised: Vec<String>,
    /// Lowercased word tokens.
    words: HashSet<String>,
    /// The cleaned text, lowercased, padded with spaces: where names are looked up.
    folded: String,
    /// Letters of each all-capital word, sorted.
    acronyms: HashSet<String>,
    /// All-capital words of letters only (`CEO`, `KI`), lowercased:
    /// translators translate these (CEO / PDG, AI / KI / IA), so they are
    /// no evidence across languages.
    translatable: HashSet<String>,
}

/// Why a pair is not a duplicate, with what differs on each side.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Veto {
    Names(Vec<String>, Vec<String>),
    Numbers(Vec<String>, Vec<String>),
    Template(Vec<String>, Vec<String>),
}

impl Evidence {
    pub fn of(text: &str) -> Evidence {
        let clean = clean(text);
        let tokens = tokens(&clean);
        let label = heading_label(text);
        let mut names: Vec<String> = label.iter().cloned().collect();
        for t in &tokens {
            if t.contains(IDENT_GLUE) || t.ends_with("++") {
                names.extend(identifier(t));
            } else {
                names.extend(t.split(['-', '/']).filter_map(identifier));
            }
        }
        dedup(&mut names);
        let mut capitalised = capitalised(&clean);
        dedup(&mut capitalised);
        let translatable = tokens
            .iter()
            .filter(|t| is_acronym(t) && t.chars().count() <= ACRONYM_MAX)
            .map(|t| t.to_lowercase())
            .collect();
        Evidence {
            label,
            translatable,
            names,
            numbers: numbers(&clean),
            capitalised,
            words: tokens.iter().map(|t| t.to_lowercase()).collect(),
            folded: format!(" {} ", clean.to_lowercase()),
            acronyms: tokens
                .iter()
                .filter(|t| is_acronym(t))
                .map(|t| sorted_letters(&t.to_lowercase()))
                .collect(),
        }
    }

    /// Whether `name` (lowercase) occurs in this text, an acronym in any letter order.
    fn mentions(&self, name: &str) -> bool {
        self.folded.contains(name)
            || (name.chars().count() <= ACRONYM_MAX
                && name.chars().all(char::is_alphabetic)
                && self.acronyms.contains(&sorted_letters(name)))
    }

    /// Why `self` and `other` are not duplicates, if the words say so.
    /// `across` says the two are known to be in different languages: the
    /// checks of texts written alike are then left out (a translation that
    /// keeps most words, names mostly, is not a template).
    pub fn veto(&self, other: &Evidence, across: bool) -> Option<Veto> {
        let missing = |list: &[String], b: &Evidence| -> Vec<String> {
            list.iter().filter(|n| !b.mentions(n)).cloned().collect()
        };
        let kept = |e: &Evidence| -> Vec<String> {
            e.names
                .iter()
                .filter(|n| !(across && e.translatable.contains(*n)))
                .cloned()
                .collect()
        };
        let (a, b) = (missing(&kept(self), other), missing(&kept(other), self));
        let label_missing =
            |e: &Evidence, o: &Evidence| e.label.as_ref().is_some_and(|l| !o.mentions(l));
        if (!a.is_empty() && !b.is_empty())
            || label_missing(self, other)
            || label_missing(other, self)
        {
            return Some(Veto::Names(a, b));
        }
        let (a, b) = (
            diff(&self.numbers, &other.numbers),
            diff(&other.numbers, &self.numbers),
        );
        if !a.is_empty() && !b.is_empty() {
            return Some(Veto::Numbers(a, b));
        }
        let shared = self.words.intersection(&other.words).count();
        let union = self.words.len() + other.words.len() - shared;
        if across || union == 0 || (shared as f32) < ALIKE_JACCARD * union as f32 {
            return None;
        }
        let (a, b) = (
            missing(&self.capitalised, other),
            missing(&other.capitalised, self),
        );
        if !a.is_empty() && !b.is_empty() {
            return Some(Veto::Names(a, b));
        }
        let (a, b) = (
            diff(&self.words, &other.words),
            diff(&other.words, &self.words),
        );
        let shorter = self.words.len().min(other.words.len());
        if !(a.is_empty() && b.is_empty()) && shared as f32 >= TEMPLATE_SHARE * shorter as f32 {
            return Some(Veto::Template(a, b));
        }
        None
    }

    /// The words each side has and the other lacks (a few of each), for
    /// explanations: `wording differs: provides / contains`.
    pub fn wording_difference(&self, other: &Evidence) -> Option<String> {
        const SHOWN: usize = 5;
        let (mut a, mut b) = (
            diff(&self.words, &other.words),
            diff(&other.words, &self.words),
        );
        if a.is_empty() && b.is_empty() {
            return None;
        }
        a.truncate(SHOWN);
        b.truncate(SHOWN);
        Some(format!(
            "wording differs: {} / {}",
            a.join(", "),
            b.join(", ")
        ))
    }

    /// The names both sides mention, for explanations.
    pub fn shared_names(&self, other: &Evidence) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| other.mentions(n))
            .cloned()
            .collect()
    }
}

/// Words that negate, in the languages pareil guesses: one side having
/// such a word the other lacks turns a statement into its opposite.
const NEGATIONS: &[&str] = &[
    "not", "no", "non", "without", "never", "nicht", "kein", "keine", "keinen", "ohne", "nie",
    "pas", "ne", "sans", "jamais", "senza", "mai", "sin", "nunca",
];
/// Affixes that negate a word, inside German compounds too
/// (`architekturunabhängig` / `architekturabhängig`).
const NEGATING_AFFIXES: &[&str] = &["un", "in", "im", "il", "ir", "non-", "non", "dis"];

/// Pairs of morphemes that make a word its opposite in place (`input` /
/// `output`, `upload` / `download`, `Eingabe` / `Ausgabe`).
const OPPOSING_MORPHEMES: &[(&str, &str)] = &[
    ("in", "out"),
    ("up", "down"),
    ("en", "de"),
    ("im", "ex"),
    ("min", "max"),
    ("pre", "post"),
    ("over", "under"),
    ("ein", "aus"),
];

/// Whether the words only one side of a template has make it say the
/// opposite of the other ("architecture-independent" / "architecture-
/// dependent", "supported" / "not supported", "input" / "output plugins"):
/// the vectors barely see it (those score 0.995, 0.982), so a rewording
/// must not have one.
pub(super) fn opposed(a: &[String], b: &[String]) -> bool {
    let negation = |w: &String| NEGATIONS.contains(&w.as_str());
    // A negating affix is an opposing morpheme whose other side is nothing.
    let mut morphemes = NEGATING_AFFIXES
        .iter()
        .map(|&affix| (affix, ""))
        .chain(OPPOSING_MORPHEMES.iter().copied());
    a.iter().chain(b).any(negation)
        || morphemes.any(|(p, q)| {
            a.iter().any(|x| {
                b.iter()
                    .any(|y| one_morpheme_apart(x, y, p, q) || one_morpheme_apart(y, x, p, q))
            })
        })
}

/// Whether `x` and `y` are one word with `p` in `x` where `y` has `q`.
fn one_morpheme_apart(x: &str, y: &str, p: &str, q: &str) -> bool {
    let (x, y, p, q) = (x.as_bytes(), y.as_bytes(), p.as_bytes(), q.as_bytes());
    x.len() + q.len() == y.len() + p.len()
        && (0..=x.len().min(y.len())).any(|at| {
            x[at..].starts_with(p)
                && y[at..].starts_with(q)
                && x[..at] == y[..at]
                && x[at + p.len()..] == y[at + q.len()..]
        })
}

/// Sorted elements of `a` not in `b`.
fn diff(a: &HashSet<String>, b: &HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = a.difference(b).cloned().collect();
    v.sort();
    v
}

fn dedup(v: &mut Vec<String>) {
    v.sort();
    v.dedup();
}

/// A word of capital letters only (`CEO`, `PDG`, `KI`).
fn is_acronym(t: &str) -> bool {
    t.chars().all(char::is_alphabetic) && t.chars().all(char::is_uppercase)
}

fn sorted_letters(s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c.sort_unstable();
    c.into_iter().collect()
}

/// Spaces unified (the typographic ones, and Debian's `⋅`), French and
/// Italian elisions (`l'`, `d’`, `dell'`) and English possessives dropped,
/// so `d’Xmonad` and `OGC's` read as `Xmonad` and `OGC`.
fn clean(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '\u{22c5}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut out = String::with_capacity(spaced.len());
    for word in spaced.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(without_elision(word));
    }
    out
}

fn without_elision(word: &str) -> &str {
    let word = word
        .strip_suffix("'s")
        .or_else(|| word.strip_suffix("’s"))
        .unwrap_or(word);
    match word.find(['\'', '’']) {
        Some(p) if (1..=4).contains(&p) && word[..p].chars().all(|c| c.is_ascii_alphabetic()) => {
            let rest = &word[p..];
            let rest = &rest[rest.chars().next().map_or(0, char::len_utf8)..];
            if rest.is_empty() {
                word
            } else {
                rest
            }
        }
        _ => word,
    }
}

/// Word tokens: split on spaces, brackets, quotes and sentence punctuation,
/// with dots, colons, dashes and slashes trimmed from the ends.
fn tokens(clean: &str) -> Vec<&str> {
    const SPLIT: &[char] = &[
        ' ', '(', ')', '[', ']', '{', '}', '<', '>', ',', ';', '!', '?', '«', '»', '"', '“', '”',
        '„', '‘', '’', '\'', '`', '|', '=',
    ];
    const EDGE: &[char] = &['.', ':', ';', ',', '-', '–', '—', '*', '…', '/', '\\'];
    clean
        .split(SPLIT)
        .map(|t| t.trim_matches(EDGE))
        .filter(|t| !t.is_empty())
        .collect()
}

/// The token as a name, if it looks like one: at least two letters, and a
/// digit, a glue character between letters, or a capital after the first
/// letter.
fn identifier(t: &str) -> Option<String> {
    if t.chars().filter(|c| c.is_alphabetic()).count() < 2 {
        return None;
    }
    let glued = t.ends_with("++")
        || t.split(IDENT_GLUE).filter(|s| !s.is_empty()).count() > 1
            && t.split(IDENT_GLUE).any(|s| s.chars().count() >= 2)
            && !t.starts_with(IDENT_GLUE);
    let digit = t.chars().any(|c| c.is_ascii_digit());
    let inner_capital = t.chars().skip(1).any(char::is_uppercase);
    (glued || digit || inner_capital).then(|| t.to_lowercase())
}

/// The label of a `name: synopsis` heading when it is a lowercase
/// identifier (a package or command: a word at the start of a sentence
/// would be capitalised).
fn heading_label(text: &str) -> Option<String> {
    let (label, rest) = text.trim_start().split_once(':')?;
    let label = label.trim_end();
    let ok = label.len() >= 2
        && rest.starts_with(char::is_whitespace)
        && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".+_-".contains(c));
    ok.then(|| label.to_string())
}

fn numbers(clean: &str) -> HashSet<String> {
    clean
        .split(|c: char| !c.is_ascii_digit())
        .filter(|d| !d.is_empty())
        .map(|d| {
            let t = d.trim_start_matches('0');
            if t.is_empty() { "0" } else { t }.to_string()
        })
        .collect()
}

/// Capitalised words (two letters or more) that do not open a sentence.
fn capitalised(clean: &str) -> Vec<String> {
    const QUOTES: &[char] = &[
        '(', ')', '[', ']', '{', '}', '<', '>', ',', ';', '«', '»', '"', '“', '”', '„', '‘', '’',
        '\'', '`', '*',
    ];
    let mut out = Vec::new();
    let mut sentence_start = true;
    for raw in clean.split(' ') {
        let t = raw.trim_matches(QUOTES);
        if !sentence_start
            && t.starts_with(char::is_uppercase)
            && t.chars().filter(|c| c.is_alphabetic()).count() >= 2
        {
            out.push(t.trim_end_matches(['.', ':', '!', '?']).to_lowercase());
        }
        sentence_start = t.is_empty()
            || t.ends_with(['.', '!', '?', ':'])
            || matches!(t, "-" | "–" | "—" | "*" | "•");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veto(a: &str, b: &str) -> Option<Veto> {
        Evidence::of(a).veto(&Evidence::of(b), false)
    }

    fn veto_across(a: &str, b: &str) -> Option<Veto> {
        Evidence::of(a).veto(&Evidence::of(b), true)
    }

    #[test]
    fn a_word_added_to_a_template_is_another_text() {
        let v = veto(
            "This package contains the library.",
            "This package contains the development library.",
        );
        assert!(matches!(v, Some(Veto::Template(..))), "{v:?}");
    }

    #[test]
    fn headings_of_different_packages_differ_in_their_names() {
        let v = veto(
            "libudev-dev: libudev development files",
            "libnewuoa-dev: Development files for libnewuoa",
        );
        assert!(matches!(v, Some(Veto::Names(..))), "{v:?}");
        assert!(veto("xcompmgr: X composition manager", "xdm: X display manager").is_some());
        assert!(veto(
            "php-intl: Internationalisation module for PHP",
            "php-interbase: Interbase module for PHP"
        )
        .is_some());
    }

    #[test]
    fn translations_keep_their_names() {
        for (en, other) in [
            (
                "libudev-dev: libudev development files",
                "libudev-dev : fichiers de développement de libudev",
            ),
            (
                "libudev-dev: libudev development files",
                "libudev-dev: Entwicklungsdateien für libudev",
            ),
            (
                "QApt is a wrapper around APT.",
                "QApt est une enveloppe autour d'APT.",
            ),
            ("Bowtie 2 needs 3.2 GB", "Bowtie 2 a besoin de 3,2 Go"),
            (
                "sibsim4: align RNA sequences on a DNA template",
                "sibsim4: alinea secuencias de ARN en una plantilla de ADN",
            ),
            (
                "Elon Musk calls OpenAI's CEO a swindler; the AI sector watches.",
                "Elon Musk nennt den OpenAI-Chef einen Betrüger; die KI-Branche schaut zu.",
            ),
            (
                "Elon Musk calls OpenAI's CEO a swindler.",
                "Elon Musk traite le PDG d'OpenAI d'escroc.",
            ),
            (
                "localisation of Firefox ESR in Swedish",
                "Schwedische Lokalisierung von Firefox ESR",
            ),
        ] {
            assert_eq!(veto_across(en, other), None, "{en} / {other}");
        }
    }

    #[test]
    fn a_heading_label_must_appear_on_the_other_side() {
        let v = veto_across(
            "hdf4-tools: HDF data format -- tools",
            "Ce greffon applique un filtre.",
        );
        assert!(matches!(v, Some(Veto::Names(..))), "{v:?}");
    }

    #[test]
    fn numbers_and_versions_differ() {
        let v = veto(
            "Python 3.11 bindings for libfoo",
            "Python 3.12 bindings for libfoo",
        );
        assert!(v.is_some(), "{v:?}");
        let v = veto("Le compilateur GCC 12", "Le compilateur GCC 13");
        assert!(matches!(v, Some(Veto::Numbers(..))), "{v:?}");
    }

    #[test]
    fn same_language_look_alikes_differ_in_a_word() {
        let v = veto(
            "This package contains the localisation of Firefox ESR in Swedish.",
            "This package contains the localisation of Firefox ESR in Slovenian.",
        );
        assert!(matches!(v, Some(Veto::Names(..))), "{v:?}");
        let v = veto(
            "Ce paquet contient la documentation.",
            "Ce paquet contient les fichiers de développement.",
        );
        assert!(matches!(v, Some(Veto::Template(..))), "{v:?}");
        let v = veto(
            "Dieses Paket enthält die Dokumentation.",
            "Dieses Paket enthält die Übersetzungen.",
        );
        assert!(v.is_some(), "{v:?}");
        let v = veto("the GNU Objective-C++ compiler", "the GNU D compiler");
        assert!(v.is_some(), "{v:?}");
    }

    #[test]
    fn paraphrases_with_other_wording_pass() {
        assert_eq!(
            veto(
                "Dieses Paket stellt Laufzeitbibliotheken bereit.",
                "Dieses Paket enthält die Laufzeitbibliothek."
            ),
            None
        );
        assert!(veto_across(
            "libmfx-tools: Intel Media SDK -- tools",
            "libmfx-tools: Intel Media SDK -- Werkzeuge"
        )
        .is_none());
    }

    #[test]
    fn describes_what_differs() {
        let v = veto(
            "aspell-el: Greek dictionary",
            "aspell-eu: Basque dictionary",
        );
        assert_eq!(
            v,
            Some(Veto::Names(
                vec!["aspell-el".into()],
                vec!["aspell-eu".into()]
            ))
        );
        let (a, b) = (
            Evidence::of("This package provides the documentation."),
            Evidence::of("This package contains the documentation."),
        );
        assert_eq!(
            a.wording_difference(&b).as_deref(),
            Some("wording differs: provides / contains")
        );
    }
}
