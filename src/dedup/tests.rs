//! Planted-case tests for the detectors on text taken from the seed
//! articles, block merging, grouping, semantic classification, and the
//! scale property (no stage compares all pairs).

use super::*;

// ---------------------------------------------------------------- fixtures

/// Seed `001:19`.
const Q_001_19: &str = "Peut-être avons-nous écouté la mélodie américaine pendant trop longtemps et en avons-nous conclu que le capital était un problème.";
/// Seed `001:27`.
const P_001_27: &str = "Peut-être avons-nous écouté la mélodie américaine pendant trop longtemps et en avons-nous conclu que le capital était un problème. Peut-être avons-nous par conséquent abandonné la partie sans vraiment essayer, et nous nous sommes contentés d’un avenir de sempiternels consommateurs de la technologie américaine. En avant l’Europe, nous en sommes capables.";
/// Seed `004:5`.
const P_004_5: &str = "On a parlé, à propos du choc causé aux Etats-Unis par l’irruption de l’intelligence artificielle chinoise, DeepSeek, d’« un moment Spoutnik », en référence à la sidération qui avait saisi les Américains en découvrant au-dessus de leurs têtes le satellite russe en 1957. La comparaison est-elle pertinente ?";
/// Seed `003:7`.
const P_003_7: &str = "En 2015, Musk et Altman ont fondé OpenAI comme une organisation à but non lucratif avec la vision de rendre l'IA sûre et accessible au grand public. Mais cette mission semble depuis longtemps oubliée. Musk, désormais à la tête de sa propre entreprise d'IA xAI, accuse OpenAI de pratiquer une « tromperie shakespearienne », après que l'entreprise a ouvert sa structure aux investisseurs. Altman, quant à lui, lutte pour maintenir OpenAI à la pointe face à Musk et sa nouvelle super-IA « Grok-2 ».";
/// Seed `000:5`.
const P_000_5: &str = "Sam Altman est parti à la guerre. Le génie derrière la percée de OpenAI, viré un jour et réintégré le lendemain, se sent pousser des ailes, et souhaite se donner les moyens de ses ambitions. Il cherche la modique somme de 5 trilliards de dollars, afin de révolutionner la production des « puces » (chips) dont la production massive est la condition pour développer les systèmes basés sur l’IA dont il rêve. Bien entendu, il manque un peu de vision sociétale dans ce projet, car il est plus que temps de se demander pourquoi nous voulons de l’IA à tous prix, partout, sur tous les sujets, et si les résultats seront aussi magiques qu’anticipés. Bien entendu, il va se heurter à la difficulté de l’exercice, l’argent ne fait pas tout, mais on ne fait rien sans lui. Bien entendu, il va devoir aller chercher l’argent dans des parties du monde qui l’investissent encore un peu dans les mouvements terroristes ou font partie de forces destinées à remplacer le pouvoir occidental, ce qui n’est pas le moindre paradoxe de la démarche. Mais ce qui reste remarquable, c’est la vision, l’ambition, les moyens recherchés et l’absence totale de filtres.";
/// Seed `002:9`.
const P_002_9: &str = "Le chemin paraît encore long, car pendant ce temps-là, Sam Altman, le fondateur d’OpenAI, évoque que pour soutenir la croissance de l’IA, des investissements de l’ordre de 5000 à 7000 milliards de dollars seraient nécessaires au niveau mondial pour fabriquer plus de puces. La somme faramineuse a fait réagir, car une partie de la presse, dans la lignée du Wall Street Journal, a interprété cela comme l’intention par Sam Altman d’orchestrer une levée de fonds monumentale en ce sens. Reste que les centres de données et les GPU nécessaires pour motoriser de futurs modèles AI toujours plus perfectionnés coûteront effectivement des milliards.";
/// Seed `001:23`.
const P_001_23: &str = "Mais quand même: c’est l’inquiétude qui règne dans la Silicon Valley. Car qu’en est-il du slogan, selon lequel l’innovation en matière d’IA ne peut se faire qu’en injectant d’énormes capitaux? ‘DeepSeek R1 est le moment Spoutnik de l’IA’, a réagi sur X le vétéran américain de la technologie Marc Andreessen cette semaine. ‘DeepSeek est un signal d’alarme pour les Etats-Unis’, a même affirmé le président américain Trump.";
/// Seed `004:6`.
const P_004_6: &str = "Celui qui a le premier fait ce parallèle, c’est Marc Andreessen, un investisseur pro-Trump. Il fait partie des faucons de la Silicon Valley, les bellicistes de la technologie qui ont imbriqué la rhétorique du business à celle de la guerre. Pour eux, les Etats-Unis doivent battrela Chine à plate couture sur le front technologique. Et l’IA, particulièrement, cristallise cette rivalité technologique et géostratégique entre les deux superpuissances. Evoquer Spoutnik s’intègre dans ce narratif de guerre froide.";

/// The production normaliser, as the engine applies it at ingest.
fn normalize(s: &str) -> String {
    crate::corpus::normalize(s)
}

/// One owned passage of a test corpus.
struct Row {
    doc: i64,
    pos: usize,
    text: String,
    norm: String,
}

/// Owned passages; `items()` borrows them as the detectors expect. The one
/// place the tests build [`Item`]s.
#[derive(Default)]
struct Corpus {
    rows: Vec<Row>,
}

impl Corpus {
    /// Appends a document's passages; ingest order = insertion order.
    fn doc(&mut self, doc: i64, passages: &[&str]) -> &mut Self {
        for (pos, t) in passages.iter().enumerate() {
            self.push(doc, pos, t.to_string(), normalize(t));
        }
        self
    }

    /// Appends one passage with its normalised text.
    fn push(&mut self, doc: i64, pos: usize, text: String, norm: String) {
        self.rows.push(Row {
            doc,
            pos,
            text,
            norm,
        });
    }

    /// Id and ingest order are the insertion index; language unknown.
    fn items(&self) -> Vec<Item<'_>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(k, r)| Item {
                id: k as i64,
                doc: r.doc,
                pos: r.pos,
                order: k as u64,
                text: &r.text,
                norm: &r.norm,
                lang: None,
            })
            .collect()
    }
}

/// Neighbour lists from `(index, cosine)` literals.
fn neighbour_lists(lists: &[&[(usize, f32)]]) -> Vec<Vec<SemanticNeighbour>> {
    lists
        .iter()
        .map(|l| {
            l.iter()
                .map(|&(index, score)| SemanticNeighbour { index, score })
                .collect()
        })
        .collect()
}

fn lexical(items: &[Item]) -> Vec<Pair> {
    find_pairs(items, None, &Thresholds::default(), &Kind::LEXICAL).unwrap()
}

/// Each pair as `(canonical, duplicate)`, in the given order.
fn index_pairs(pairs: &[Pair]) -> Vec<(usize, usize)> {
    pairs.iter().map(|p| (p.canonical, p.duplicate)).collect()
}

fn only_pair(items: &[Item]) -> Pair {
    let p = lexical(items);
    assert_eq!(p.len(), 1, "expected one pair, got {p:?}");
    p[0]
}

/// Typos: every `every`-th character is swapped with the next one when
/// both are letters.
fn typos(s: &str, every: usize) -> String {
    let mut cs: Vec<char> = s.chars().collect();
    let mut k = every;
    while k + 1 < cs.len() {
        if cs[k].is_alphabetic() && cs[k + 1].is_alphabetic() {
            cs.swap(k, k + 1);
        }
        k += every;
    }
    cs.into_iter().collect()
}

fn strip_accents(s: &str) -> String {
    crate::corpus::fold_accents(s)
}

// ------------------------------------------------------------------ exact

#[test]
fn exact_copy_with_other_quotes_case_and_spaces() {
    let copy = Q_001_19
        .replace("Peut-être", "PEUT–ÊTRE")
        .replace(' ', "  ");
    let mut c = Corpus::default();
    c.doc(1, &[Q_001_19]).doc(2, &[copy.as_str()]);
    let items = c.items();
    let p = only_pair(&items);
    assert_eq!(
        (p.canonical, p.duplicate, p.kind, p.score),
        (0, 1, Kind::Exact, 1.0)
    );
}

#[test]
fn apostrophe_variants_are_exact() {
    let mut c = Corpus::default();
    c.doc(1, &[P_004_5]).doc(2, &[&P_004_5.replace('’', "'")]);
    assert_eq!(only_pair(&c.items()).kind, Kind::Exact);
}

// ------------------------------------------------------------------- near

#[test]
fn character_edits_are_near_with_score() {
    let edited = typos(P_000_5, 60);
    let mut c = Corpus::default();
    c.doc(1, &[P_000_5]).doc(2, &[&edited]);
    let items = c.items();
    let p = only_pair(&items);
    assert_eq!(p.kind, Kind::Near);
    assert!(p.score > 0.75 && p.score < 1.0, "score {}", p.score);
    let f = merge_blocks(&items, &[p]);
    let e = f[0].explanation.as_deref().unwrap();
    assert!(e.contains("[-") && e.contains("{+"), "{e}");
}

#[test]
fn accents_removed_is_near_at_one() {
    let mut c = Corpus::default();
    c.doc(1, &[P_004_5]).doc(2, &[&strip_accents(P_004_5)]);
    let items = c.items();
    let p = only_pair(&items);
    assert_eq!((p.kind, p.score), (Kind::Near, 1.0));
    let g = group(&items, &[p]);
    let e = g[0].members[0].explanation.as_deref().unwrap();
    assert!(e.contains("[-sidération-]{+sideration+}"), "{e}");
}

#[test]
fn guillemets_to_straight_quotes_is_exact() {
    // « moment » → "moment": the production normaliser gives quotes one form
    // and drops French spacing inside guillemets, so the texts are equal.
    let changed = P_004_5.replace("« ", "\"").replace(" »", "\"");
    let mut c = Corpus::default();
    c.doc(1, &[P_004_5]).doc(2, &[&changed]);
    let p = only_pair(&c.items());
    assert_eq!((p.kind, p.score), (Kind::Exact, 1.0));
}

#[test]
fn heavy_rewrite_is_not_near() {
    let edited = typos(P_000_5, 12);
    let mut c = Corpus::default();
    c.doc(1, &[P_000_5]).doc(2, &[&edited]);
    assert!(lexical(&c.items()).is_empty());
}

// -------------------------------------------------------------- contained

#[test]
fn pull_quote_inside_its_paragraph_is_contained() {
    let mut c = Corpus::default();
    c.doc(1, &[Q_001_19, P_001_23, P_001_27]);
    let p = only_pair(&c.items());
    assert_eq!(
        (p.canonical, p.duplicate, p.kind, p.score),
        (0, 2, Kind::Contained, 1.0)
    );
}

#[test]
fn paragraph_cut_in_half_is_contained() {
    let words: Vec<&str> = P_003_7.split_whitespace().collect();
    let half = words[..words.len() / 2].join(" ");
    let mut c = Corpus::default();
    c.doc(1, &[P_003_7]).doc(2, &[&half]);
    let p = only_pair(&c.items());
    assert_eq!((p.kind, p.score), (Kind::Contained, 1.0));
    // Truncated copy older than the full one: still one pair, canonical = older.
    let mut c = Corpus::default();
    c.doc(2, &[&half]).doc(1, &[P_003_7]);
    let p = only_pair(&c.items());
    assert_eq!((p.canonical, p.kind), (0, Kind::Contained));
}

#[test]
fn sentence_dropped_is_contained() {
    // 000:5 without its 4th and 5th sentences (≈ 25 % shorter).
    let sentences: Vec<&str> = P_000_5.split_inclusive(". ").collect();
    let dropped: String = sentences
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 3 && *k != 4)
        .map(|(_, s)| *s)
        .collect();
    let mut c = Corpus::default();
    c.doc(1, &[P_000_5]).doc(2, &[&dropped]);
    let p = only_pair(&c.items());
    assert_eq!(p.kind, Kind::Contained);
    assert!(p.score > 0.95, "{}", p.score);
}

#[test]
fn short_sentence_dropped_is_near() {
    // Dropping the 7-word opening of a 197-word paragraph: the longer side
    // is not ≥ 1.2× longer, it is the same text lightly edited.
    let sentences: Vec<&str> = P_000_5.split_inclusive(". ").collect();
    assert!(sentences[0].split_whitespace().count() < 10);
    let dropped: String = sentences[1..].concat();
    let mut c = Corpus::default();
    c.doc(1, &[P_000_5]).doc(2, &[&dropped]);
    let p = only_pair(&c.items());
    assert_eq!(p.kind, Kind::Near);
}

#[test]
fn short_fragments_are_not_contained() {
    // A 5-word fragment lies entirely inside 001:23 but is below the minimum length.
    let mut c = Corpus::default();
    c.doc(1, &[P_001_23])
        .doc(2, &["le moment Spoutnik de l’IA"]);
    assert!(lexical(&c.items()).is_empty());
}

// --------------------------------------------------- same topic, not dups

#[test]
fn same_fact_in_different_words_is_not_a_lexical_duplicate() {
    for (x, y) in [(P_000_5, P_002_9), (P_001_23, P_004_6)] {
        let mut c = Corpus::default();
        c.doc(1, &[x]).doc(2, &[y]);
        let items = c.items();
        assert!(lexical(&items).is_empty());
        // And far from the thresholds, not just under them.
        let w = |t: &str| shingle::fold(&normalize(t));
        let j = shingle::jaccard(
            &shingle::char_shingles(&w(x)),
            &shingle::char_shingles(&w(y)),
        );
        let (wx, wy) = (shingle::word_shingles(&w(x)), shingle::word_shingles(&w(y)));
        let cont = shingle::intersect_len(&wx, &wy) as f32 / wx.len().min(wy.len()) as f32;
        assert!(j < 0.3 && cont < 0.2, "jaccard {j}, containment {cont}");
    }
}

// ----------------------------------------------------------------- blocks

#[test]
fn twenty_four_duplicated_passages_are_one_finding() {
    let (rows, _) = synthetic(24, 0, 7);
    let paras: Vec<String> = rows.into_iter().map(|(t, _)| t).collect();
    let mut doc: Vec<&str> = vec!["Un chapeau en tête d'article qui ne se répète pas du tout."];
    doc.extend(paras.iter().map(String::as_str));
    doc.extend(paras.iter().map(String::as_str));
    let mut c = Corpus::default();
    c.doc(7, &doc);
    let items = c.items();
    let pairs = lexical(&items);
    assert_eq!(pairs.len(), 24);
    let f = merge_blocks(&items, &pairs);
    assert_eq!(f.len(), 1, "{f:?}");
    let f = &f[0];
    assert_eq!(
        (f.kind, f.canonical.passages, f.duplicate.passages),
        (Kind::Exact, 24, 24)
    );
    assert_eq!(
        (items[f.canonical.first].pos, items[f.canonical.last].pos),
        (1, 24)
    );
    assert_eq!(
        (items[f.duplicate.first].pos, items[f.duplicate.last].pos),
        (25, 48)
    );
}

#[test]
fn block_across_documents_with_an_edit_stays_one_block_of_loosest_kind() {
    let a = [Q_001_19, P_001_23, P_001_27, P_004_5, P_004_6];
    let edited = typos(P_001_23, 80);
    let b = [Q_001_19, edited.as_str(), P_001_27, P_004_5, P_004_6];
    // Document 2 starts with its own header, so its copy sits at positions 1–5.
    let mut bdoc = vec!["en-tête différent du document deux"];
    bdoc.extend(b);
    let mut c2 = Corpus::default();
    c2.doc(1, &a).doc(2, &bdoc);
    let items = c2.items();
    let pairs = lexical(&items);
    let f = merge_blocks(&items, &pairs);
    let big: Vec<&Finding> = f
        .iter()
        .filter(|f| f.canonical.doc == 1 && f.duplicate.doc == 2)
        .collect();
    assert_eq!(big.len(), 1, "{f:?}");
    assert_eq!(big[0].canonical.passages, 5);
    assert_eq!(big[0].kind, Kind::Near);
    assert!(big[0].explanation.as_deref().unwrap().starts_with("#2: "));
}

#[test]
fn out_of_order_copies_are_separate_findings() {
    let mut c = Corpus::default();
    c.doc(1, &[P_004_5, P_004_6]).doc(2, &[P_004_6, P_004_5]);
    let items = c.items();
    assert_eq!(merge_blocks(&items, &lexical(&items)).len(), 2);
}

// --------------------------------------------------------------- grouping

#[test]
fn groups_take_the_oldest_as_canonical() {
    let near = typos(P_004_5, 70);
    let mut c = Corpus::default();
    c.doc(1, &[P_004_6])
        .doc(2, &[&near])
        .doc(3, &[P_004_5])
        .doc(4, &[P_004_5]);
    let mut items = c.items();
    // Ingest order is not index order: the exact copy in doc 4 is oldest.
    items[3].order = 0;
    items[0].order = 9;
    let pairs = lexical(&items);
    let g = group(&items, &pairs);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].canonical, 3);
    let kinds: Vec<(usize, Kind)> = g[0].members.iter().map(|m| (m.index, m.kind)).collect();
    assert_eq!(kinds, vec![(1, Kind::Near), (2, Kind::Exact)]);
    assert!(g[0].members[0].explanation.is_some());
    assert!(g[0].members[1].explanation.is_none());
}

#[test]
fn transitive_members_name_their_partner() {
    // A ⊂ B (contained) and B ≈ C (near), but A and C are no pair.
    let words: Vec<&str> = P_003_7.split_whitespace().collect();
    let half = words[..words.len() / 2].join(" ");
    let c_text = typos(P_003_7, 50);
    let mut c = Corpus::default();
    c.doc(1, &[&half]).doc(2, &[P_003_7]).doc(3, &[&c_text]);
    let items = c.items();
    let pairs = lexical(&items);
    let g = group(&items, &pairs);
    assert_eq!(g.len(), 1);
    let m = g[0].members.iter().find(|m| m.index == 2).unwrap();
    if !pairs.iter().any(|p| p.canonical == 0 && p.duplicate == 2) {
        assert_eq!((m.via, m.kind), (1, Kind::Near));
    }
}

// --------------------------------------------------------------- semantic

/// Paraphrases without names or numbers, and little wording in common.
const PARAPHRASES: [(&str, &str); 2] = [
    (
        "Le modèle répond très vite aux questions.",
        "Cet outil donne rapidement des réponses aux demandes.",
    ),
    (
        "Les chercheurs ont publié leurs résultats hier soir.",
        "Hier, l'équipe scientifique a rendu publiques ses conclusions.",
    ),
];

#[test]
fn semantic_from_neighbour_lists_keeps_lexical_kinds() {
    let [(a, a2), (b, b2)] = PARAPHRASES;
    let mut c = Corpus::default();
    c.doc(1, &[a, b, Q_001_19]).doc(2, &[a2, b2, P_001_27]);
    let items = c.items();
    // 0~3 and 1~4 are paraphrases (high cosine); 2⊂5 is lexical and also
    // close in embedding space; 0~4 is below the threshold.
    let nb = neighbour_lists(&[
        &[(0, 1.0), (3, 0.985), (4, 0.81)],
        &[(4, 0.975)],
        &[(5, 0.975)],
        &[(0, 0.985)],
        &[(1, 0.975), (0, 0.81)],
        &[(2, 0.975)],
    ]);
    let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
    let got: Vec<(usize, usize, Kind)> = pairs
        .iter()
        .map(|p| (p.canonical, p.duplicate, p.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 3, Kind::Semantic),
            (1, 4, Kind::Semantic),
            (2, 5, Kind::Contained)
        ]
    );
    assert_eq!(pairs[0].score, 0.985);
    // Only semantic requested: the paraphrases are found, but not the
    // contained passage: it shares most of its words with the longer one
    // and says less, which the template veto treats as another text (below
    // the cosine of a mere rewording).
    let sem = find_pairs(&items, Some(&nb), &Thresholds::default(), &[Kind::Semantic]).unwrap();
    assert_eq!(sem.len(), 2);
    assert!(sem.iter().all(|p| p.kind == Kind::Semantic));
    // Bad neighbour lists are reported, not panicked on.
    assert!(find_pairs(&items, Some(&nb[..2]), &Thresholds::default(), &Kind::ALL).is_err());
    let bad = neighbour_lists(&[&[(99, 0.99)][..]; 6]);
    assert!(find_pairs(&items, Some(&bad), &Thresholds::default(), &Kind::ALL).is_err());

    // Lists fetched after the lexical stages give the same pairs; they are
    // not fetched when the semantic kind is not asked for, and bad fetched
    // lists are refused too.
    // Sketches stored at ingest stand in for computed ones.
    let th = Thresholds::default();
    let mut stored = Sketches::new(items.len());
    for (i, item) in items.iter().enumerate() {
        assert!(stored.insert(i, &super::sketch::encode(item.norm)));
    }
    let fetched =
        find_pairs_fetching_neighbours(&items, 0, || Ok(nb.clone()), stored, &th, &Kind::ALL);
    assert_eq!(fetched.unwrap(), pairs);
    let never = || -> crate::error::Result<_> { panic!("fetched without the semantic kind") };
    let none = Sketches::default();
    let lexical =
        find_pairs_fetching_neighbours(&items, 0, never, none, &th, &Kind::LEXICAL).unwrap();
    assert_eq!(
        lexical,
        find_pairs(&items, None, &th, &Kind::LEXICAL).unwrap()
    );
    let none = Sketches::default();
    let bad_fetch =
        find_pairs_fetching_neighbours(&items, 0, || Ok(bad.clone()), none, &th, &Kind::ALL);
    assert!(bad_fetch.is_err());
}

#[test]
fn close_texts_that_differ_in_a_name_or_number_are_not_semantic() {
    let mut c = Corpus::default();
    c.doc(
        1,
        &[
            "php-intl: Internationalisation module for PHP",
            "Bowtie needs 3.2 GB of memory.",
        ],
    )
    .doc(
        2,
        &[
            "php-interbase: Interbase module for PHP",
            "Bowtie needs 4.5 GB of memory.",
        ],
    );
    let items = c.items();
    let nb = neighbour_lists(&[&[(2, 0.99)], &[(3, 0.99)], &[(0, 0.99)], &[(1, 0.99)]]);
    let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &[Kind::Semantic]).unwrap();
    assert!(pairs.is_empty(), "{pairs:?}");
}

#[test]
fn a_template_reworded_is_one_text_a_template_refilled_is_two() {
    // Same wording but a verb or an article (cosine >= 0.98 on debian-dev),
    // against the same template with another filler (0.965-0.975 there).
    let cases = [
        (
            "This package contains the shared library.",
            "This package provides the shared library.",
            "This package contains the development files.",
        ),
        (
            "Ce paquet contient la bibliothèque partagée.",
            "Ce paquet fournit la bibliothèque partagée.",
            "Ce paquet contient la documentation.",
        ),
        (
            "Dieses Paket enthält die Entwicklungsdateien.",
            "Dieses Paket stellt die Entwicklungsdateien bereit.",
            "Dieses Paket enthält die Dokumentation.",
        ),
    ];
    // A negation is no rewording, however close the vectors (0.995).
    let negated = [
        (
            "This package contains the architecture-independent files.",
            "This package contains the architecture-dependent files.",
        ),
        (
            "Ce paquet contient les fichiers indépendants de l'architecture.",
            "Ce paquet contient les fichiers dépendants de l'architecture.",
        ),
        (
            "Dieses Paket enthält architekturunabhängige Dateien.",
            "Dieses Paket enthält architekturabhängige Dateien.",
        ),
        (
            "This feature is supported.",
            "This feature is not supported.",
        ),
        (
            "This package contains the input plugins.",
            "This package contains the output plugins.",
        ),
        (
            "Dieses Modul liest die Dateneingabe.",
            "Dieses Modul liest die Datenausgabe.",
        ),
    ];
    for (text, negation) in negated {
        let mut c = Corpus::default();
        c.doc(1, &[text]).doc(2, &[negation]);
        let items = c.items();
        let nb = neighbour_lists(&[&[(1, 0.995)], &[(0, 0.995)]]);
        let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &[Kind::Semantic]);
        assert!(pairs.unwrap().is_empty(), "{text}");
    }
    for (text, reworded, refilled) in cases {
        let mut c = Corpus::default();
        c.doc(1, &[text]).doc(2, &[reworded]).doc(3, &[refilled]);
        let items = c.items();
        let run = |rewording: f32, refill: f32| {
            let nb = neighbour_lists(&[
                &[(1, rewording), (2, refill)],
                &[(0, rewording)],
                &[(0, refill)],
            ]);
            let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &[Kind::Semantic]);
            let pairs = pairs.unwrap();
            let got = index_pairs(&pairs);
            let why = pairs
                .first()
                .and_then(|p| explain(p, &items, p.canonical, p.duplicate));
            (got, why)
        };
        let (got, why) = run(0.99, 0.975);
        assert_eq!(got, [(0, 1)], "{text}");
        assert!(why.unwrap().contains("wording differs"), "{text}");
        assert_eq!(
            run(0.975, 0.975).0,
            [],
            "a rewording scored like a refill: {text}"
        );
    }
}

#[test]
fn cross_lingual_pairs_use_their_own_threshold() {
    let mut c = Corpus::default();
    c.doc(1, &["Le chat dort sur le canapé."])
        .doc(2, &["The cat sleeps on the sofa."]);
    let mut items = c.items();
    // Cosine between the two thresholds (cross-lingual, same language).
    let nb = neighbour_lists(&[&[(1, 0.9)], &[(0, 0.9)]]);
    let th = Thresholds::default();
    assert!(th.semantic_cross_lingual < 0.9 && 0.9 < th.semantic);
    let run = |items: &[Item]| find_pairs(items, Some(&nb), &th, &Kind::ALL).unwrap().len();
    assert_eq!(run(&items), 0, "unknown languages: same-language threshold");
    items[0].lang = Some("fr");
    items[1].lang = Some("fr");
    assert_eq!(run(&items), 0, "same language");
    items[1].lang = Some("en");
    assert_eq!(run(&items), 1, "a translation");
}

#[test]
fn a_translation_carries_its_margin_into_the_explanation() {
    let mut c = Corpus::default();
    c.doc(1, &["Le chat dort sur le canapé."]).doc(
        2,
        &[
            "The cat sleeps on the sofa.",
            "A dog runs in the park.",
            "Birds sing at dawn.",
        ],
    );
    let mut items = c.items();
    for (item, lang) in items.iter_mut().zip(["fr", "en", "en", "en"]) {
        item.lang = Some(lang);
    }
    let nb = neighbour_lists(&[&[(1, 0.93), (2, 0.70), (3, 0.60)], &[(0, 0.93)], &[], &[]]);
    let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    // Crowds: the French side's 4 nearest English texts, the list's last
    // score (below the floor) standing in for the missing one, (0.93 + 0.70
    // + 0.60 + 0.60) / 4; the English side's, its one neighbour and the
    // floor the lists were fetched down to for the three beyond it (a short
    // list holds every neighbour above the floor). Margin: 0.93 over their mean.
    let floor = Thresholds::default().semantic_floor();
    let want = 0.93 / ((0.7075 + (0.93 + 3.0 * floor) / 4.0) / 2.0);
    let got = pairs[0].margin.expect("a cross-language pair has a margin");
    assert!((got - want).abs() < 1e-4, "margin {got}, want {want}");
    let findings = merge_blocks(&items, &pairs);
    let e = findings[0].explanation.as_deref().unwrap();
    assert!(e.contains(&format!("margin {want:.3}")), "{e}");
}

#[test]
fn a_translation_alone_in_both_lists_stands_out_of_its_crowd() {
    let mut c = Corpus::default();
    c.doc(1, &["Le chat dort sur le canapé."])
        .doc(2, &["The cat sleeps on the sofa."]);
    let mut items = c.items();
    items[0].lang = Some("fr");
    items[1].lang = Some("en");
    // Each is the other's only neighbour: nothing else scores above the
    // floor, so the margin is well above 1, not 1 up to rounding.
    let nb = neighbour_lists(&[&[(1, 0.91)], &[(0, 0.91)]]);
    let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let margin = pairs[0].margin.unwrap();
    assert!(margin > 1.01, "margin {margin}");
}

#[test]
fn a_translation_must_be_the_best_match_both_ways() {
    let mut c = Corpus::default();
    c.doc(1, &["Le chat dort sur le canapé."]).doc(
        2,
        &[
            "The cat sleeps on the sofa.",
            "The cat is asleep on the couch.",
        ],
    );
    let mut items = c.items();
    items[0].lang = Some("fr");
    items[1].lang = Some("en");
    items[2].lang = Some("en");
    // 0's best English match is 2, so 0~1 is not accepted; 0~2 is.
    let nb = neighbour_lists(&[&[(1, 0.9), (2, 0.93)], &[(0, 0.9)], &[(0, 0.93)]]);
    let pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
    assert_eq!(index_pairs(&pairs), vec![(0, 2)]);
}

/// `texts`, one document each.
fn corpus_of(texts: &[(&str, &str)]) -> Corpus {
    let mut c = Corpus::default();
    for (d, (text, _)) in texts.iter().enumerate() {
        c.doc(d as i64, &[text]);
    }
    c
}

/// The items of `corpus_of(texts)`, in the languages `texts` give.
fn items_in_languages<'a>(c: &'a Corpus, texts: &[(&'a str, &'a str)]) -> Vec<Item<'a>> {
    let mut items = c.items();
    for (item, (_, lang)) in items.iter_mut().zip(texts) {
        item.lang = Some(lang);
    }
    items
}

/// The pairs `find_pairs` accepts among `texts` (one document each, in
/// the given languages) from neighbour lists `nb`, sorted.
fn pairs_in_languages(texts: &[(&str, &str)], nb: &[&[(usize, f32)]]) -> Vec<Pair> {
    let c = corpus_of(texts);
    let items = items_in_languages(&c, texts);
    let nb = neighbour_lists(nb);
    let mut pairs = find_pairs(&items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
    pairs.sort_by_key(|p| (p.canonical, p.duplicate));
    pairs
}

#[test]
fn one_translation_of_two_originals_joins_both() {
    // Debian's German translators write "Laufzeitbibliothek" for both
    // "runtime library" and "shared library": the German sentence is the
    // runtime one's best match, and the best match of the shared one,
    // whose own German sentence is one of its copies.
    let texts = [
        ("Dieses Paket enthält die Laufzeitbibliothek.", "de"),
        ("Dieses Paket enthält die Laufzeitbibliothek.", "de"),
        ("This package contains the runtime library.", "en"),
        ("This package contains the shared library.", "en"),
    ];
    let nb: &[&[(usize, f32)]] = &[
        &[(1, 1.0), (2, 0.92), (3, 0.90)],
        &[(0, 1.0), (2, 0.92), (3, 0.90)],
        &[(0, 0.92), (1, 0.92), (3, 0.95)],
        &[(0, 0.90), (1, 0.90), (2, 0.95)],
    ];
    let pairs = pairs_in_languages(&texts, nb);
    let semantic: Vec<&Pair> = pairs.iter().filter(|p| p.kind == Kind::Semantic).collect();
    assert!(
        semantic
            .iter()
            .any(|p| p.duplicate == 2 && p.second_to.is_none()),
        "{pairs:?}"
    );
    let second = semantic
        .iter()
        .find(|p| p.duplicate == 3)
        .expect("shared library joined");
    assert_eq!(second.second_to, Some(2), "{pairs:?}");
    let c = corpus_of(&texts);
    let items = items_in_languages(&c, &texts);
    let e = explain(second, &items, second.canonical, second.duplicate).unwrap();
    assert!(
        e.contains(
            "best match one way, a second rendering beside \"This package contains the runtime"
        ),
        "{e}"
    );
}

#[test]
fn one_original_translated_two_ways_joins_both() {
    // Two French renderings of one English sentence stored twice: the
    // second is a best match one way, beside the first.
    let texts = [
        ("This package is part of the KDE education module.", "en"),
        ("This package is part of the KDE education module.", "en"),
        ("Ce paquet fait partie du module éducatif de KDE.", "fr"),
        (
            "Ce programme fait partie du module d'éducation de KDE.",
            "fr",
        ),
    ];
    let nb: &[&[(usize, f32)]] = &[
        &[(1, 1.0), (2, 0.93), (3, 0.91)],
        &[(0, 1.0), (2, 0.93), (3, 0.91)],
        &[(0, 0.93), (1, 0.93), (3, 0.96)],
        &[(0, 0.91), (1, 0.91), (2, 0.96)],
    ];
    let pairs = pairs_in_languages(&texts, nb);
    let to_3: Vec<&Pair> = pairs.iter().filter(|p| p.duplicate == 3).collect();
    assert!(to_3.iter().any(|p| p.second_to == Some(2)), "{pairs:?}");
    // With one English copy, that copy is the first rendering's: the
    // second is left out, as before.
    let nb: &[&[(usize, f32)]] = &[
        &[(1, 0.93), (2, 0.91)],
        &[(0, 0.93), (2, 0.96)],
        &[(0, 0.91), (1, 0.96)],
    ];
    assert_eq!(index_pairs(&pairs_in_languages(&texts[1..], nb)), [(0, 1)]);
}

#[test]
fn a_second_rendering_needs_spare_copies_and_the_same_names() {
    // "The documentation" has no German sentence of its own; its best
    // German match is the development files' translation, which has no
    // copy to spare: not joined.
    let texts = [
        ("This package contains the development files.", "en"),
        ("This package contains the documentation.", "en"),
        ("Dieses Paket enthält die Entwicklungsdateien.", "de"),
    ];
    let nb: &[&[(usize, f32)]] = &[
        &[(2, 0.93), (1, 0.95)],
        &[(2, 0.90), (0, 0.95)],
        &[(0, 0.93), (1, 0.90)],
    ];
    assert_eq!(index_pairs(&pairs_in_languages(&texts, nb)), [(0, 2)]);
    // Copies to spare, but "Slovenian" is not "Swedish": a name differs
    // between the two English texts, so the German one renders only one.
    let texts = [
        (
            "This package contains the Swedish localisation of Firefox.",
            "en",
        ),
        (
            "This package contains the Slovenian localisation of Firefox.",
            "en",
        ),
        (
            "Dieses Paket enthält die schwedische Lokalisierung von Firefox.",
            "de",
        ),
        (
            "Dieses Paket enthält die schwedische Lokalisierung von Firefox.",
            "de",
        ),
    ];
    let nb: &[&[(usize, f32)]] = &[
        &[(2, 0.93), (3, 0.93), (1, 0.96)],
        &[(2, 0.91), (3, 0.91), (0, 0.96)],
        &[(3, 1.0), (0, 0.93), (1, 0.91)],
        &[(2, 1.0), (0, 0.93), (1, 0.91)],
    ];
    let semantic: Vec<(usize, usize)> = pairs_in_languages(&texts, nb)
        .iter()
        .filter(|p| p.kind == Kind::Semantic)
        .map(|p| (p.canonical, p.duplicate))
        .collect();
    assert!(
        !semantic.iter().any(|&(a, b)| a == 1 || b == 1),
        "{semantic:?}"
    );
    assert!(semantic.contains(&(0, 2)), "{semantic:?}");
}

#[test]
fn translations_of_different_originals_are_not_joined() {
    // A French and an Italian text, each the translation of its own English
    // look-alike, are each other's best French/Italian match (their true
    // partners are missing): their English originals tell them apart.
    let mut c = Corpus::default();
    c.doc(
        1,
        &[
            "This package contains the documentation.",
            "This package contains the examples.",
        ],
    )
    .doc(2, &["Ce paquet contient la documentation."])
    .doc(3, &["Questo pacchetto contiene gli esempi."]);
    let mut items = c.items();
    for (i, lang) in ["en", "en", "fr", "it"].into_iter().enumerate() {
        items[i].lang = Some(lang);
    }
    let nb = neighbour_lists(&[
        &[(2, 0.95), (3, 0.9)],
        &[(3, 0.95), (2, 0.9)],
        &[(0, 0.95), (3, 0.93), (1, 0.9)],
        &[(1, 0.95), (2, 0.93), (0, 0.9)],
    ]);
    let run = |items: &[Item]| {
        let pairs = find_pairs(items, Some(&nb), &Thresholds::default(), &Kind::ALL).unwrap();
        let mut got = index_pairs(&pairs);
        got.sort();
        got
    };
    assert_eq!(run(&items), [(0, 2), (1, 3)]);
    // Without the English texts' languages known, nothing tells them apart.
    items[0].lang = None;
    items[1].lang = None;
    assert_eq!(run(&items), [(2, 3)]);
}

// -------------------------------------------------- thresholds, kinds, api

#[test]
fn kinds_filter_and_thresholds_apply() {
    let mut c = Corpus::default();
    c.doc(1, &[Q_001_19, P_001_27, P_004_5]).doc(2, &[P_004_5]);
    let items = c.items();
    let th = Thresholds::default();
    let only = |k: &[Kind]| find_pairs(&items, None, &th, k).unwrap();
    assert_eq!(only(&[Kind::Exact]).len(), 1);
    assert_eq!(only(&[Kind::Contained]).len(), 1);
    assert!(only(&[Kind::Near]).is_empty());
    assert!(only(&[]).is_empty());
    let strict = Thresholds {
        contained: 1.0,
        min_words_contained: 30,
        ..th.clone()
    };
    assert!(find_pairs(&items, None, &strict, &[Kind::Contained])
        .unwrap()
        .is_empty());
    let bad = Thresholds {
        near_jaccard: 1.5,
        ..th
    };
    assert!(find_pairs(&items, None, &bad, &Kind::ALL).is_err());
    assert_eq!("Near".parse::<Kind>().unwrap(), Kind::Near);
    assert!("fuzzy".parse::<Kind>().is_err());
    assert_eq!(
        serde_json::to_string(&Kind::Contained).unwrap(),
        "\"contained\""
    );
}

#[test]
fn touching_returns_only_pairs_with_new_passages() {
    let mut c = Corpus::default();
    c.doc(1, &[P_004_5, Q_001_19])
        .doc(2, &[P_004_5, P_001_27])
        .doc(3, &[P_004_5]);
    let items = c.items();
    let all = find_pairs(&items, None, &Thresholds::default(), &Kind::LEXICAL).unwrap();
    assert_eq!(all.len(), 4); // 0=2, 0=4, 2=4, 1⊂3
    let new = find_pairs_touching(&items, 4, None, &Thresholds::default(), &Kind::LEXICAL).unwrap();
    assert_eq!(index_pairs(&new), vec![(0, 4), (2, 4)]);
}

#[test]
fn histogram_counts_best_scores() {
    let edited = typos(P_000_5, 40);
    let mut c = Corpus::default();
    c.doc(1, &[P_000_5, Q_001_19, P_001_23, P_004_6])
        .doc(2, &[&edited, P_001_27, P_002_9, P_004_6]);
    let items = c.items();
    let h = histogram(&items, None, &Thresholds::default(), &Kind::LEXICAL, 10).unwrap();
    assert_eq!(h.len(), 3);
    let exact = &h[0];
    assert_eq!(
        (exact.kind, exact.scored, exact.at_or_above),
        (Kind::Exact, 2, 2)
    );
    let near = &h[1];
    assert!(near.scored >= 2 && near.at_or_above == 2, "{near:?}");
    assert_eq!(near.counts.iter().sum::<usize>(), near.scored);
    assert_eq!(near.scored + near.unscored, items.len());
    let cont = &h[2];
    assert!(cont.at_or_above >= 1);
    assert!(format!("{cont}").contains("contained (threshold 0.80)"));
}

// ------------------------------------------------------------------ seeds

/// Passages of a seed file as ingest splits them: (first line number, text).
fn seed_passages(text: &str) -> Vec<(usize, String)> {
    crate::corpus::split_passages(text)
        .passages
        .into_iter()
        .map(|p| (p.line_start, p.text))
        .collect()
}

#[test]
fn seeds_lexical_findings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let rd = std::fs::read_dir(&dir).expect("the seeds are part of the repository");
    let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    let mut c = Corpus::default();
    // (file number, first line) of each passage, for the messages.
    let mut lines: Vec<(i64, usize)> = Vec::new();
    for (d, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        for (pos, (line, t)) in seed_passages(&text).into_iter().enumerate() {
            let norm = normalize(&t);
            c.push(d as i64, pos, t, norm);
            lines.push((d as i64, line));
        }
    }
    let items = c.items();
    let at = |i: usize| format!("{:03}:{}", lines[i].0, lines[i].1);
    let pairs = lexical(&items);
    let findings = merge_blocks(&items, &pairs);
    for f in &findings {
        eprintln!(
            "{:9} {:.3} {}-{} → {}-{} ({} passages) {}",
            f.kind.as_str(),
            f.score,
            at(f.canonical.first),
            at(f.canonical.last),
            at(f.duplicate.first),
            at(f.duplicate.last),
            f.canonical.passages,
            f.explanation.as_deref().unwrap_or("")
        );
    }
    let h = histogram(&items, None, &Thresholds::default(), &Kind::LEXICAL, 10).unwrap();
    for x in &h {
        eprint!("{x}");
    }
    let has = |a: &str, b: &str, n: usize, k: Kind| {
        findings.iter().any(|f| {
            at(f.canonical.first) == a
                && at(f.duplicate.first) == b
                && f.canonical.passages == n
                && f.kind == k
        })
    };
    assert!(
        has("004:2", "004:26", 24, Kind::Exact),
        "the Mhalla interview block"
    );
    assert!(
        has("001:19", "001:27", 1, Kind::Contained),
        "the pull quote"
    );
    let pair_at = |a: &str, b: &str| {
        pairs.iter().any(|p| {
            (at(p.canonical) == a && at(p.duplicate) == b)
                || (at(p.canonical) == b && at(p.duplicate) == a)
        })
    };
    assert!(!pair_at("000:5", "002:9"));
    assert!(!pair_at("001:23", "004:6"));
    assert_eq!(
        findings.len(),
        2,
        "no other lexical duplicates in the seeds"
    );
}

// ------------------------------------------------------------------ scale

/// Deterministic synthetic corpus: `n` random passages of 20–150 words drawn
/// from a Zipf-like vocabulary of made-up words (so common words repeat as
/// in real text), plus `planted` (exact, near, contained) copies of random
/// earlier passages. Returns the rows and the planted (source, copy, kind).
/// (original text, normalised text) per passage.
type Rows = Vec<(String, String)>;
/// (source index, copy index, planted kind).
type Plants = Vec<(usize, usize, Kind)>;

fn synthetic(n: usize, planted: usize, seed: u64) -> (Rows, Plants) {
    let mut s = seed;
    let mut rnd = move || {
        s = shingle::mix64(s);
        s
    };
    // ~420 syllables (onset × vowel × optional coda) give a character
    // 5-gram diversity close to real French prose (see
    // `synthetic_is_as_hard_as_real_text` for the measured Jaccard of
    // unrelated pairs, vs median 0.04 / p99 0.10 between seed paragraphs).
    let (onsets, vowels, codas) = ("bcdfglmnprstvz", "aeiouy", ["", "n", "r", "s", "l"]);
    let mut syll: Vec<String> = Vec::new();
    for o in onsets.chars() {
        for v in vowels.chars() {
            for c in codas {
                syll.push(format!("{o}{v}{c}"));
            }
        }
    }
    let vocab: Vec<String> = (0..20_000)
        .map(|_| {
            let k = 1 + (rnd() % 3) as usize;
            (0..k)
                .map(|_| syll[(rnd() % syll.len() as u64) as usize].as_str())
                .collect()
        })
        .collect();
    let mut rows: Vec<(String, String)> = Vec::with_capacity(n + planted);
    for _ in 0..n {
        let len = 20 + (rnd() % 131) as usize;
        let t: Vec<&str> = (0..len)
            .map(|_| {
                // Zipf-ish: rank ≈ V^u, so low ranks are much more frequent.
                let u = (rnd() % 1_000_000) as f64 / 1_000_000.0;
                let r = ((vocab.len() as f64).powf(u) as usize).saturating_sub(1);
                vocab[r].as_str()
            })
            .collect();
        let t = t.join(" ");
        rows.push((t.clone(), t));
    }
    let mut plants = Vec::new();
    let mut used = std::collections::HashSet::new();
    for k in 0..planted {
        // Distinct sources, so two plants never become exact twins of each other.
        let mut src = (rnd() % n as u64) as usize;
        while !used.insert(src) {
            src = (rnd() % n as u64) as usize;
        }
        let text = rows[src].0.clone();
        let (copy, kind) = match k % 3 {
            0 => (text.to_uppercase(), Kind::Exact),
            1 => {
                // Swapping two equal letters changes nothing: retry until edited.
                let mut every = 55 + k % 20;
                while typos(&text, every) == text {
                    every -= 1;
                }
                (typos(&text, every), Kind::Near)
            }
            _ => {
                let w: Vec<&str> = text.split_whitespace().collect();
                (w[..w.len() / 2].join(" "), Kind::Contained)
            }
        };
        plants.push((src, rows.len(), kind));
        let norm = normalize(&copy);
        rows.push((copy, norm));
    }
    (rows, plants)
}

fn run_synthetic(n: usize, planted: usize) -> std::time::Duration {
    let (rows, plants) = synthetic(n, planted, 42);
    let mut c = Corpus::default();
    for (k, (text, norm)) in rows.into_iter().enumerate() {
        c.push(k as i64, 0, text, norm);
    }
    let items = c.items();
    let t0 = std::time::Instant::now();
    let pairs = lexical(&items);
    let dt = t0.elapsed();
    let found: std::collections::HashSet<(usize, usize, Kind)> = pairs
        .iter()
        .map(|p| (p.canonical, p.duplicate, p.kind))
        .collect();
    let missing: Vec<_> = plants.iter().filter(|p| !found.contains(p)).collect();
    // Every planted duplicate is found with the planted kind (near copies
    // have ~1 typo per 50 chars: Jaccard ≈ 0.8, LSH recall > 0.9999).
    for &&(a, b, _) in &missing {
        let w = |i: usize| shingle::char_shingles(&shingle::fold(items[i].norm));
        let (x, y) = (w(a), w(b));
        eprintln!(
            "missed {a} {b}: jaccard {} sizes {} {} found {:?}",
            shingle::jaccard(&x, &y),
            x.len(),
            y.len(),
            pairs.iter().find(|p| p.canonical == a && p.duplicate == b)
        );
    }
    assert!(
        missing.is_empty(),
        "missed {} of {}: {:?}",
        missing.len(),
        plants.len(),
        &missing[..missing.len().min(5)]
    );
    // And almost nothing else: random passages are not duplicates.
    let extra = pairs.len() - plants.len();
    assert!(extra <= n / 1000 + 2, "{extra} unplanted pairs");
    dt
}

#[test]
fn scale_without_all_pairs() {
    // Debug builds are ~20× slower; keep the default test run light and
    // check the time bound where it means something.
    let n = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let dt = run_synthetic(n, 150);
    eprintln!("{n} passages + 150 planted: {dt:?}");
    if !cfg!(debug_assertions) {
        assert!(dt.as_secs_f32() < 3.0, "{dt:?}");
    }
}

/// `cargo test --release -- --ignored --nocapture timings`
#[test]
#[ignore]
fn timings() {
    for n in [10_000, 100_000] {
        let dt = run_synthetic(n, 300);
        eprintln!("TIMING {n} passages: {:.2} s", dt.as_secs_f64());
    }
}

#[test]
fn synthetic_is_as_hard_as_real_text() {
    let (rows, _) = synthetic(400, 0, 3);
    let sets: Vec<Vec<u64>> = rows
        .iter()
        .map(|r| shingle::char_shingles(&shingle::fold(&r.1)))
        .collect();
    let mut js: Vec<f32> = Vec::new();
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            js.push(shingle::jaccard(&sets[i], &sets[j]));
        }
    }
    js.sort_by(f32::total_cmp);
    let q = |f: f64| js[(js.len() as f64 * f) as usize];
    eprintln!(
        "synthetic unrelated char-5 Jaccard: median {} p99 {} max {}",
        q(0.5),
        q(0.99),
        js[js.len() - 1]
    );
    // At least as similar as unrelated real paragraphs (median 0.04), so
    // the LSH false-candidate load measured here is not flattering.
    assert!(q(0.5) >= 0.03 && q(0.99) < 0.3);
}
