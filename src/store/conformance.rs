//! The store conformance suite: what every [`Store`] implementation must do,
//! written once against the trait (tantivy's `directory/tests.rs` is the
//! model). An implementation's test module instantiates it with
//! [`store_conformance_tests!`](crate::store_conformance_tests), handing in
//! a function that opens a fresh, empty store of 4-dimensional vectors made
//! with [`test_support::meta`]; each check then runs on its own store.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::store::{
    DedupRow, DocumentId, DocumentRow, DuplicateMark, Filter, MarkTarget, Neighbour, NewChunk,
    NewDocument, NewMark, PassageId, PassageRow, PassageTraits, ReplaceOutcome, Stats, Store,
    StoreMeta,
};
use crate::test_support::{self, document, key_of, unit, vector_for};

/// Dimension of the conformance stores.
pub const DIM: usize = 4;

/// A store under test and whatever must live as long as it (a temp dir, a server).
pub struct Fixture {
    pub store: Box<dyn Store>,
    pub _guard: Box<dyn std::any::Any>,
}

/// Instantiates every conformance check as a `#[test]` for one implementation.
/// `$open` is an expression of type `fn() -> Fixture`, or `fn() ->
/// Option<Fixture>` for a backend that may be absent (a server not running
/// outside CI): `None` skips the check.
#[macro_export]
#[doc(hidden)]
macro_rules! store_conformance_tests {
    ($open:expr) => {
        $crate::store_conformance_tests!(@tests $open;
            meta_is_recorded_and_checked, documents_round_trip, replace_keeps_identity,
            remove_forgets_everything, embeddings_are_cached_by_key, nearest_ranks_and_filters,
            neighbours_are_other_passages_above_floor, filtered_neighbours_look_past_a_crowd,
            neighbours_among_a_few_candidates_are_the_nearest,
            passage_vector_is_the_mean_of_chunks,
            duplicate_references_and_restoring_them, marks_are_written_with_their_passages,
            exact_references_keep_one_canonical_copy, dedup_rows_in_ingest_order,
            dedup_rows_of_documents_and_their_last_passages, lexical_neighbours_share_a_key_or_a_text,
            passage_traits_are_kept_for_dups, search_follows_writes, generation_counts_writes, stats_count);
    };
    (@tests $open:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let fixture: Option<$crate::store::conformance::Fixture> = ($open)().into();
                let Some(mut fixture) = fixture else { return };
                $crate::store::conformance::$name(fixture.store.as_mut());
            }
        )*
    };
}

/// A store that runs [`Store::maintain`] after every write, so the suite
/// searches through the derived index of an implementation that keeps one
/// (it instantiates the suite a second time through this wrapper).
pub struct Maintained(pub Box<dyn Store>);

impl Maintained {
    fn upkeep<T>(&mut self, out: Result<T>) -> Result<T> {
        let out = out?;
        self.0.maintain(&mut |_| {})?;
        Ok(out)
    }
}

impl Store for Maintained {
    fn location(&self) -> String {
        self.0.location()
    }
    fn meta(&self) -> &StoreMeta {
        self.0.meta()
    }
    fn check_meta(&self, wanted: &StoreMeta) -> Result<()> {
        self.0.check_meta(wanted)
    }
    fn meta_value(&self, key: &str) -> Result<Option<String>> {
        self.0.meta_value(key)
    }
    fn set_meta_value(&mut self, key: &str, value: &str) -> Result<()> {
        self.0.set_meta_value(key, value)
    }
    fn documents(&self) -> Result<Vec<DocumentRow>> {
        self.0.documents()
    }
    fn document_by_path(&self, path: &str) -> Result<Option<DocumentRow>> {
        self.0.document_by_path(path)
    }
    fn replace_document(&mut self, doc: &NewDocument) -> Result<ReplaceOutcome> {
        let out = self.0.replace_document(doc);
        self.upkeep(out)
    }
    fn remove_document(&mut self, path: &str) -> Result<bool> {
        let out = self.0.remove_document(path);
        self.upkeep(out)
    }
    fn passage(&self, id: PassageId) -> Result<Option<PassageRow>> {
        self.0.passage(id)
    }
    fn passages_by_ids(&self, ids: &[PassageId]) -> Result<Vec<PassageRow>> {
        self.0.passages_by_ids(ids)
    }
    fn passages_of(&self, doc: DocumentId) -> Result<Vec<PassageRow>> {
        self.0.passages_of(doc)
    }
    fn passage_at(&self, path: &str, line: usize) -> Result<Option<PassageRow>> {
        self.0.passage_at(path, line)
    }
    fn dedup_rows(&self) -> Result<Vec<DedupRow>> {
        self.0.dedup_rows()
    }
    fn dedup_rows_of(&self, docs: &[DocumentId]) -> Result<Vec<DedupRow>> {
        self.0.dedup_rows_of(docs)
    }
    fn lexical_neighbours(&self, keys: &[Vec<u32>]) -> Result<Option<Vec<DedupRow>>> {
        self.0.lexical_neighbours(keys)
    }
    fn last_passage_ids(&self) -> Result<HashMap<DocumentId, PassageId>> {
        self.0.last_passage_ids()
    }
    fn for_each_sketch(&self, visit: &mut dyn FnMut(PassageId, &[u8])) -> Result<()> {
        self.0.for_each_sketch(visit)
    }
    fn passages_without_traits(
        &self,
        after: PassageId,
        limit: usize,
    ) -> Result<Vec<(PassageId, String, String)>> {
        self.0.passages_without_traits(after, limit)
    }
    fn set_traits(&mut self, traits: &[(PassageId, PassageTraits)]) -> Result<()> {
        let out = self.0.set_traits(traits);
        self.upkeep(out)
    }
    fn cached_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        self.0.cached_embeddings(keys)
    }
    fn passage_vector(&self, id: PassageId) -> Result<Option<Vec<f32>>> {
        self.0.passage_vector(id)
    }
    fn nearest(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Neighbour>> {
        self.0.nearest(query, k, filter)
    }
    fn neighbours(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.0.neighbours(passages, k, floor)
    }
    fn neighbours_among(
        &self,
        passages: &[PassageId],
        k: usize,
        floor: f32,
        among: &HashSet<PassageId>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.0.neighbours_among(passages, k, floor, among)
    }
    fn maintain(&mut self, note: &mut dyn FnMut(&str)) -> Result<()> {
        self.0.maintain(note)
    }
    fn refresh(&mut self) -> Result<()> {
        self.0.refresh()
    }
    fn claim(&mut self, path: &str, wait: bool) -> Result<bool> {
        self.0.claim(path, wait)
    }
    fn release(&mut self, path: &str) -> Result<()> {
        self.0.release(path)
    }
    fn release_claims(&mut self) -> Result<()> {
        self.0.release_claims()
    }
    fn add_chunks(
        &mut self,
        passage: PassageId,
        chunks: &[NewChunk],
        embeddings: &HashMap<String, Vec<f32>>,
    ) -> Result<()> {
        let out = self.0.add_chunks(passage, chunks, embeddings);
        self.upkeep(out)
    }
    fn set_duplicates(&mut self, marks: &[DuplicateMark]) -> Result<()> {
        let out = self.0.set_duplicates(marks);
        self.upkeep(out)
    }
    fn clear_duplicate(&mut self, passage: PassageId) -> Result<()> {
        let out = self.0.clear_duplicate(passage);
        self.upkeep(out)
    }
    fn stats(&self) -> Result<Stats> {
        self.0.stats()
    }
    fn vacuum_embeddings(&mut self) -> Result<usize> {
        let out = self.0.vacuum_embeddings();
        self.upkeep(out)
    }
}

fn doc(path: &str, texts: &[&str]) -> NewDocument {
    document(path, texts, &HashSet::new(), |t| vector_for(t, DIM))
}

/// A document whose passages have the given vectors.
fn doc_with_vectors(path: &str, passages: &[(&str, Vec<f32>)]) -> NewDocument {
    let texts: Vec<&str> = passages.iter().map(|p| p.0).collect();
    let mut d = document(path, &texts, &HashSet::new(), |t| vector_for(t, DIM));
    for (text, v) in passages {
        d.embeddings.insert(key_of(text), unit(v.clone()));
    }
    d
}

pub fn meta_is_recorded_and_checked(s: &mut dyn Store) {
    let meta = test_support::meta(DIM);
    assert_eq!(s.meta(), &meta);
    s.check_meta(&meta).unwrap();
    let other = crate::store::StoreMeta {
        dim: DIM + 1,
        ..meta
    };
    assert!(matches!(
        s.check_meta(&other),
        Err(Error::StoreMismatch { .. })
    ));
    assert_eq!(s.meta_value("conformance.key").unwrap(), None);
    s.set_meta_value("conformance.key", "v1").unwrap();
    s.set_meta_value("conformance.key", "v2").unwrap();
    assert_eq!(
        s.meta_value("conformance.key").unwrap().as_deref(),
        Some("v2")
    );
}

pub fn documents_round_trip(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc("dir/a.txt", &["first", "second", "third"]))
        .unwrap();
    let b = s.replace_document(&doc("b.txt", &["other"])).unwrap();
    assert_eq!(a.passage_ids.len(), 3);
    assert!(!a.replaced);
    let docs = s.documents().unwrap();
    assert_eq!(
        docs.iter()
            .map(|d| (d.path.as_str(), d.passages))
            .collect::<Vec<_>>(),
        vec![("dir/a.txt", 3), ("b.txt", 1)]
    );
    assert!(docs[0].ingest_order < docs[1].ingest_order);
    assert_eq!(s.document_by_path("b.txt").unwrap().unwrap().id, b.doc_id);
    assert!(
        s.document_by_path("a.txt").unwrap().is_none(),
        "exact paths only"
    );

    let ps = s.passages_of(a.doc_id).unwrap();
    assert_eq!(
        ps.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    assert_eq!(ps.iter().map(|p| p.id).collect::<Vec<_>>(), a.passage_ids);
    let p = s.passage(a.passage_ids[1]).unwrap().unwrap();
    assert_eq!((p.path.as_str(), p.idx, p.line_start), ("dir/a.txt", 1, 3));
    assert!(s.passage(-5).unwrap().is_none());
    let mut some = s
        .passages_by_ids(&[b.passage_ids[0], -5, a.passage_ids[0]])
        .unwrap();
    some.sort_by_key(|p| p.id);
    assert_eq!(some.len(), 2);
    assert_eq!(s.passage_at("dir/a.txt", 5).unwrap().unwrap().text, "third");
    assert!(
        s.passage_at("dir/a.txt", 4).unwrap().is_none(),
        "between passages"
    );
    assert!(
        s.passage_at("a.txt", 1).unwrap().is_none(),
        "exact paths only"
    );
}

pub fn replace_keeps_identity(s: &mut dyn Store) {
    let first = s.replace_document(&doc("a.txt", &["one", "two"])).unwrap();
    s.replace_document(&doc("b.txt", &["three"])).unwrap();
    let order = s.document_by_path("a.txt").unwrap().unwrap().ingest_order;
    let again = s.replace_document(&doc("a.txt", &["two", "four"])).unwrap();
    assert!(again.replaced);
    assert_eq!(again.doc_id, first.doc_id);
    assert_eq!(again.embeddings_reused, 1, "\"two\" was cached");
    assert_eq!(again.embeddings_written, 1);
    let d = s.document_by_path("a.txt").unwrap().unwrap();
    assert_eq!(
        d.ingest_order, order,
        "an edit does not make a document newer"
    );
    let texts: Vec<String> = s
        .passages_of(d.id)
        .unwrap()
        .into_iter()
        .map(|p| p.text)
        .collect();
    assert_eq!(texts, ["two", "four"]);
    assert!(
        s.passage(first.passage_ids[0]).unwrap().is_none(),
        "old passages are gone"
    );
}

pub fn remove_forgets_everything(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc("a.txt", &["alpha", "beta"]))
        .unwrap();
    s.replace_document(&doc("b.txt", &["gamma"])).unwrap();
    s.warm().unwrap();
    assert!(s.remove_document("a.txt").unwrap());
    assert!(!s.remove_document("a.txt").unwrap());
    assert!(s.document_by_path("a.txt").unwrap().is_none());
    assert!(s.passage(a.passage_ids[0]).unwrap().is_none());
    let hits = s
        .nearest(&vector_for("alpha", DIM), 10, &Filter::default())
        .unwrap();
    assert_eq!(hits.len(), 1, "only b.txt's passage is left: {hits:?}");
    assert_eq!(s.stats().unwrap().passages, 1);
}

pub fn embeddings_are_cached_by_key(s: &mut dyn Store) {
    s.replace_document(&doc("a.txt", &["cached"])).unwrap();
    let keys = vec![key_of("cached"), key_of("absent")];
    let found = s.cached_embeddings(&keys).unwrap();
    assert_eq!(found.len(), 1);
    let v = &found[&key_of("cached")];
    let want = vector_for("cached", DIM);
    // A store may keep vectors compactly (f16): equal within 1e-3.
    assert!(test_support::close(v, &want));
    // A chunk may use a cached key without supplying the vector.
    let cached: HashSet<String> = [key_of("cached")].into();
    let d = document("b.txt", &["cached"], &cached, |t| vector_for(t, DIM));
    assert!(d.embeddings.is_empty());
    s.replace_document(&d).unwrap();
    // A key that is neither stored nor supplied is refused, and nothing is written.
    let mut bad = doc("c.txt", &["new text"]);
    bad.embeddings.clear();
    assert!(s.replace_document(&bad).is_err());
    assert!(s.document_by_path("c.txt").unwrap().is_none());
}

pub fn nearest_ranks_and_filters(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc_with_vectors(
            "a.txt",
            &[
                ("x", vec![1.0, 0.0, 0.0, 0.0]),
                ("xy", vec![1.0, 1.0, 0.0, 0.0]),
            ],
        ))
        .unwrap();
    let b = s
        .replace_document(&doc_with_vectors(
            "b.txt",
            &[
                ("y", vec![0.0, 1.0, 0.0, 0.0]),
                ("xz", vec![1.0, 0.0, 0.5, 0.0]),
            ],
        ))
        .unwrap();
    let q = [1.0, 0.0, 0.0, 0.0];
    let hits = s.nearest(&q, 3, &Filter::default()).unwrap();
    let ids: Vec<PassageId> = hits.iter().map(|n| n.passage).collect();
    assert_eq!(ids, [a.passage_ids[0], b.passage_ids[1], a.passage_ids[1]]);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    let f = Filter {
        exclude_passages: [a.passage_ids[0]].into(),
        exclude_documents: [b.doc_id].into(),
        ..Filter::default()
    };
    let ids: Vec<PassageId> = s
        .nearest(&q, 10, &f)
        .unwrap()
        .iter()
        .map(|n| n.passage)
        .collect();
    assert_eq!(ids, [a.passage_ids[1]]);
    let f = Filter {
        only_documents: Some([b.doc_id].into()),
        min_score: Some(0.5),
        ..Filter::default()
    };
    let ids: Vec<PassageId> = s
        .nearest(&q, 10, &f)
        .unwrap()
        .iter()
        .map(|n| n.passage)
        .collect();
    assert_eq!(ids, [b.passage_ids[1]], "y scores 0, below the floor");
}

pub fn neighbours_are_other_passages_above_floor(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc_with_vectors(
            "a.txt",
            &[
                ("p", vec![1.0, 0.0, 0.0, 0.0]),
                ("q", vec![0.9, 0.1, 0.0, 0.0]),
                ("r", vec![0.0, 0.0, 1.0, 0.0]),
            ],
        ))
        .unwrap();
    let [p, q, r] = a.passage_ids[..] else {
        panic!()
    };
    let lists = s.neighbours(&[p, r], 5, 0.5).unwrap();
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].iter().map(|n| n.passage).collect::<Vec<_>>(), [q]);
    assert!(lists[0][0].score > 0.9);
    assert!(lists[1].is_empty(), "nothing near r above 0.5");
    let all = s.neighbours(&[p], 5, -1.0).unwrap();
    assert_eq!(all[0].len(), 2, "every other passage, never itself");
}

pub fn filtered_neighbours_look_past_a_crowd(s: &mut dyn Store) {
    // p's nearest are its look-alikes q1..q3; x and y are farther, and only
    // they are admitted (another language, say).
    let a = s
        .replace_document(&doc_with_vectors(
            "a.txt",
            &[
                ("p", vec![1.0, 0.0, 0.0, 0.0]),
                ("q1", vec![0.95, 0.05, 0.0, 0.0]),
                ("q2", vec![0.9, 0.1, 0.0, 0.0]),
                ("q3", vec![0.85, 0.15, 0.0, 0.0]),
            ],
        ))
        .unwrap();
    let b = s
        .replace_document(&doc_with_vectors(
            "b.txt",
            &[
                ("x", vec![0.7, 0.0, 0.3, 0.0]),
                ("y", vec![0.5, 0.0, 0.5, 0.0]),
                ("z", vec![0.0, 0.0, 0.0, 1.0]),
            ],
        ))
        .unwrap();
    let p = a.passage_ids[0];
    let [x, y, _] = b.passage_ids[..] else {
        panic!()
    };
    let plain = s.neighbours(&[p], 2, 0.1).unwrap();
    assert!(plain[0].iter().all(|n| a.passage_ids.contains(&n.passage)));
    let other_doc: HashSet<PassageId> = b.passage_ids.iter().copied().collect();
    let lists = s.neighbours_among(&[p], 2, 0.1, &other_doc).unwrap();
    let ids: Vec<PassageId> = lists[0].iter().map(|n| n.passage).collect();
    assert_eq!(ids, [x, y], "z scores 0, below the floor");
    let x_only = HashSet::from([x, p]);
    let lists = s.neighbours_among(&[p], 5, -1.0, &x_only).unwrap();
    assert_eq!(
        lists[0].iter().map(|n| n.passage).collect::<Vec<_>>(),
        [x],
        "never the passage itself, even when among the candidates"
    );
}

pub fn neighbours_among_a_few_candidates_are_the_nearest(s: &mut dyn Store) {
    // Two candidates among 42 passages: few enough that a store may compare
    // them exactly instead of walking an index past every other passage.
    let many: Vec<(String, Vec<f32>)> = (0..40)
        .map(|i| {
            let t = i as f32 / 40.0;
            (format!("m{i}"), vec![1.0 - t, t, 0.2, 0.1 * t])
        })
        .collect();
    let refs: Vec<(&str, Vec<f32>)> = many.iter().map(|(t, v)| (t.as_str(), v.clone())).collect();
    let a = s
        .replace_document(&doc_with_vectors("a.txt", &refs))
        .unwrap();
    let (vx, vy) = (vec![0.9, 0.1, 0.4, 0.0], vec![0.1, 0.9, 0.0, 0.3]);
    let b = s
        .replace_document(&doc_with_vectors(
            "b.txt",
            &[("x", vx.clone()), ("y", vy.clone())],
        ))
        .unwrap();
    let among: HashSet<PassageId> = b.passage_ids.iter().copied().collect();
    let lists = s.neighbours_among(&a.passage_ids, 1, -1.0, &among).unwrap();
    assert_eq!(lists.len(), 40);
    let cos = |u: &[f32], v: &[f32]| {
        let (u, v) = (unit(u.to_vec()), unit(v.to_vec()));
        u.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>()
    };
    for ((_, v), list) in many.iter().zip(&lists) {
        let (sx, sy) = (cos(v, &vx), cos(v, &vy));
        let (want, score) = if sx >= sy {
            (b.passage_ids[0], sx)
        } else {
            (b.passage_ids[1], sy)
        };
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].passage, want, "{v:?}: {sx} vs {sy}");
        assert!((list[0].score - score).abs() < 1e-2, "{list:?} vs {score}");
    }
    // The candidates' own lists hold only the other candidate.
    let lists = s.neighbours_among(&b.passage_ids, 5, -1.0, &among).unwrap();
    assert_eq!(
        lists[0].iter().map(|n| n.passage).collect::<Vec<_>>(),
        [b.passage_ids[1]]
    );
}

pub fn passage_vector_is_the_mean_of_chunks(s: &mut dyn Store) {
    let mut d = doc("w.txt", &["windowed passage"]);
    let (k1, k2) = (key_of("window one"), key_of("window two"));
    d.passages[0].chunks = vec![
        NewChunk {
            byte_start: 0,
            byte_end: 8,
            tokens: 1,
            emb_key: k1.clone(),
        },
        NewChunk {
            byte_start: 5,
            byte_end: 16,
            tokens: 2,
            emb_key: k2.clone(),
        },
    ];
    d.embeddings.clear();
    d.embeddings.insert(k1, vec![1.0, 0.0, 0.0, 0.0]);
    d.embeddings.insert(k2, vec![0.0, 1.0, 0.0, 0.0]);
    let w = s.replace_document(&d).unwrap();
    let v = s.passage_vector(w.passage_ids[0]).unwrap().unwrap();
    let h = std::f32::consts::FRAC_1_SQRT_2;
    assert!(
        v.iter()
            .zip([h, h, 0.0, 0.0])
            .all(|(a, b)| (a - b).abs() < 1e-5),
        "{v:?}"
    );
    // A passage's best chunk is what search reports.
    let hit = s
        .nearest(&[0.0, 1.0, 0.0, 0.0], 1, &Filter::default())
        .unwrap()[0];
    assert_eq!((hit.passage, hit.chunk), (w.passage_ids[0], 1));
}

pub fn duplicate_references_and_restoring_them(s: &mut dyn Store) {
    let a = s.replace_document(&doc("a.txt", &["original"])).unwrap();
    let mut copy = doc("b.txt", &["original copy"]);
    copy.passages[0].chunks.clear();
    copy.embeddings.clear();
    let b = s.replace_document(&copy).unwrap();
    let (canonical, reference) = (a.passage_ids[0], b.passage_ids[0]);
    let mark = DuplicateMark {
        passage_id: reference,
        canonical_id: canonical,
        kind: "near".into(),
        score: 0.9,
    };
    s.set_duplicates(std::slice::from_ref(&mark)).unwrap();
    let p = s.passage(reference).unwrap().unwrap();
    assert_eq!(
        (p.duplicate_of, p.dup_kind.as_deref()),
        (Some(canonical), Some("near"))
    );
    assert_eq!(
        s.passage_vector(reference).unwrap(),
        None,
        "a reference has no vector"
    );
    assert!(s
        .set_duplicates(&[DuplicateMark {
            canonical_id: -9,
            ..mark.clone()
        }])
        .is_err());
    assert_eq!(s.stats().unwrap().duplicates, 1);

    // Editing the canonical away unlinks the reference ...
    let edited = s.replace_document(&doc("a.txt", &["rewritten"])).unwrap();
    assert_eq!(edited.unlinked_duplicates, [reference]);
    assert_eq!(s.passage(reference).unwrap().unwrap().duplicate_of, None);
    // ... and giving it chunks makes it searchable again.
    let chunk = NewChunk {
        byte_start: 0,
        byte_end: 13,
        tokens: 2,
        emb_key: key_of("original copy"),
    };
    let vectors = [(key_of("original copy"), vector_for("original copy", DIM))].into();
    s.add_chunks(reference, &[chunk], &vectors).unwrap();
    let hit = s
        .nearest(&vector_for("original copy", DIM), 1, &Filter::default())
        .unwrap();
    assert_eq!(hit[0].passage, reference);

    let mark = DuplicateMark {
        canonical_id: edited.passage_ids[0],
        ..mark
    };
    s.set_duplicates(&[mark]).unwrap();
    s.clear_duplicate(reference).unwrap();
    assert_eq!(s.passage(reference).unwrap().unwrap().dup_kind, None);
}

/// `doc` with passage `i` marked as a duplicate of `canonical`, written as
/// a reference (no chunks).
fn with_mark(mut doc: NewDocument, i: usize, canonical: MarkTarget, kind: &str) -> NewDocument {
    doc.passages[i].chunks.clear();
    doc.passages[i].duplicate_of = Some(NewMark {
        canonical,
        kind: kind.into(),
        score: 0.9,
    });
    doc
}

/// The `(duplicate_of, dup_kind)` stored for passage `id`.
fn mark_of(s: &dyn Store, id: PassageId) -> (Option<PassageId>, Option<String>) {
    let p = s.passage(id).unwrap().unwrap();
    (p.duplicate_of, p.dup_kind)
}

pub fn marks_are_written_with_their_passages(s: &mut dyn Store) {
    let a = s.replace_document(&doc("a.txt", &["original"])).unwrap();
    let b = doc("b.txt", &["original, copied", "mine", "mine"]);
    let b = with_mark(b, 0, MarkTarget::Stored(a.passage_ids[0]), "near");
    let b = with_mark(b, 2, MarkTarget::Earlier(1), "exact");
    let written = s.replace_document(&b).unwrap();
    let ids = &written.passage_ids;
    assert_eq!(
        mark_of(s, ids[0]),
        (Some(a.passage_ids[0]), Some("near".into()))
    );
    assert_eq!(mark_of(s, ids[1]), (None, None));
    assert_eq!(mark_of(s, ids[2]), (Some(ids[1]), Some("exact".into())));
    assert_eq!(s.passage_vector(ids[2]).unwrap(), None, "a reference");
    assert_eq!(written.late_references, [] as [PassageId; 0]);

    // A mark pointing nowhere, or forward, writes nothing of the document.
    let counts = |s: &dyn Store| {
        let st = s.stats().unwrap();
        (
            st.documents,
            st.passages,
            st.chunks,
            st.embeddings,
            st.duplicates,
        )
    };
    let before = counts(s);
    let dangling = with_mark(doc("c.txt", &["x"]), 0, MarkTarget::Stored(-9), "near");
    assert!(matches!(
        s.replace_document(&dangling),
        Err(Error::NotFound(_))
    ));
    let forward = with_mark(doc("c.txt", &["x", "y"]), 0, MarkTarget::Earlier(1), "near");
    assert!(matches!(s.replace_document(&forward), Err(Error::Usage(_))));
    assert_eq!(s.document_by_path("c.txt").unwrap(), None);
    assert_eq!(counts(s), before);
}

pub fn exact_references_keep_one_canonical_copy(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc("a.txt", &["shared text", "a's own"]))
        .unwrap();
    // Without the flag an exact copy is stored as its own passage (`report`).
    let c = s.replace_document(&doc("c.txt", &["shared text"])).unwrap();
    assert_eq!(mark_of(s, c.passage_ids[0]), (None, None));

    // With it, each unmarked passage whose text is stored becomes an exact
    // reference to the oldest canonical copy: another document's, or an
    // earlier one of its own.
    let mut b = doc("b.txt", &["shared text", "new", "new", "b's own"]);
    b.exact_references = true;
    let b = s.replace_document(&b).unwrap();
    let ids = &b.passage_ids;
    assert_eq!(b.late_references, [ids[0], ids[2]]);
    assert_eq!(
        mark_of(s, ids[0]),
        (Some(a.passage_ids[0]), Some("exact".into()))
    );
    assert_eq!(mark_of(s, ids[2]), (Some(ids[1]), Some("exact".into())));
    assert_eq!(mark_of(s, ids[3]), (None, None));
    assert_eq!(s.passage_vector(ids[0]).unwrap(), None, "a reference");
    assert!(s.passage_vector(ids[1]).unwrap().is_some());

    // When the copy referred to goes, the next write refers to the oldest
    // canonical copy left: `c.txt`'s (b's reference was unlinked, and is
    // younger).
    let removed = s.replace_document(&doc("a.txt", &["rewritten"])).unwrap();
    assert_eq!(removed.unlinked_duplicates, [ids[0]]);
    let mut d = doc("d.txt", &["shared text", "new"]);
    d.exact_references = true;
    let d = s.replace_document(&d).unwrap();
    assert_eq!(mark_of(s, d.passage_ids[0]).0, Some(c.passage_ids[0]));
    assert_eq!(mark_of(s, d.passage_ids[1]).0, Some(ids[1]));
}

pub fn dedup_rows_of_documents_and_their_last_passages(s: &mut dyn Store) {
    let a = s
        .replace_document(&doc("a.txt", &["a one", "a two"]))
        .unwrap();
    let b = s.replace_document(&doc("b.txt", &["b one"])).unwrap();
    s.replace_document(&doc("empty.txt", &[])).unwrap();
    let last = s.last_passage_ids().unwrap();
    assert_eq!(
        last,
        [(a.doc_id, a.passage_ids[1]), (b.doc_id, b.passage_ids[0])].into(),
        "a document without passages has none"
    );
    let of_a: Vec<PassageId> = s
        .dedup_rows_of(&[a.doc_id])
        .unwrap()
        .iter()
        .map(|r| r.passage.id)
        .collect();
    assert_eq!(of_a, a.passage_ids);
    let all = s.dedup_rows().unwrap();
    assert_eq!(s.dedup_rows_of(&[b.doc_id, a.doc_id]).unwrap(), all);
    assert_eq!(s.dedup_rows_of(&[]).unwrap(), []);

    // A rewrite with the same texts still moves the value; a removal drops it.
    let a2 = s
        .replace_document(&doc("a.txt", &["a one", "a two"]))
        .unwrap();
    s.remove_document("b.txt").unwrap();
    let last = s.last_passage_ids().unwrap();
    assert_eq!(last, [(a.doc_id, a2.passage_ids[1])].into());
    assert!(a2.passage_ids[1] > b.passage_ids[0]);
}

pub fn lexical_neighbours_share_a_key_or_a_text(s: &mut dyn Store) {
    let original = "the committee met on tuesday and voted for the new budget of the city";
    let a = s
        .replace_document(&doc(
            "a.txt",
            &[original, "an unrelated line about gardens"],
        ))
        .unwrap();
    let b = s.replace_document(&doc("b.txt", &[original])).unwrap();
    let copy = "the committee met on tuesday and voted against the new budget of the city";
    let th = crate::dedup::Thresholds::default();
    let keys = [crate::dedup::lookup::query_keys(
        &crate::corpus::normalize(copy),
        &th,
    )];
    let Some(rows) = s.lexical_neighbours(&keys).unwrap() else {
        return; // a store that leaves this to the caller
    };
    let ids: Vec<PassageId> = rows.iter().map(|r| r.passage.id).collect();
    assert_eq!(ids, [a.passage_ids[0], b.passage_ids[0]], "in ingest order");
    assert_eq!(s.lexical_neighbours(&[]).unwrap(), Some(vec![]));
    // A passage stored without keys: the store can no longer answer.
    let mut older = doc("c.txt", &["written by an older pareil"]);
    older.passages[0].traits = None;
    s.replace_document(&older).unwrap();
    assert_eq!(s.lexical_neighbours(&keys).unwrap(), None);
}

pub fn dedup_rows_in_ingest_order(s: &mut dyn Store) {
    s.replace_document(&doc("a.txt", &["Même  «texte»", "a only"]))
        .unwrap();
    s.replace_document(&doc("b.txt", &["b only"])).unwrap();
    // Rewriting a.txt keeps its place in ingest order.
    s.replace_document(&doc("a.txt", &["Même  «texte»", "a again"]))
        .unwrap();
    let rows = s.dedup_rows().unwrap();
    let got: Vec<(&str, usize)> = rows
        .iter()
        .map(|r| (r.passage.path.as_str(), r.passage.idx))
        .collect();
    assert_eq!(got, [("a.txt", 0), ("a.txt", 1), ("b.txt", 0)]);
    assert_eq!(
        rows[0].norm,
        crate::corpus::normalize("Même  «texte»"),
        "the stored norm"
    );
    assert!(rows[0].order < rows[2].order);
}

pub fn passage_traits_are_kept_for_dups(s: &mut dyn Store) {
    let english = "This is the text of a passage, and it is in English for the test.";
    let mut a = doc("a.txt", &[english, "zz"]);
    a.passages[1].traits = Some(PassageTraits {
        lang: None,
        sketch: vec![1, 0, 255],
        keys: vec![],
    });
    s.replace_document(&a).unwrap();
    let mut b = doc("b.txt", &["written by an older pareil"]);
    b.passages[0].traits = None;
    s.replace_document(&b).unwrap();

    let rows = s.dedup_rows().unwrap();
    let langs: Vec<_> = rows.iter().map(|r| r.lang.clone()).collect();
    assert_eq!(langs, [Some(Some("en".to_string())), Some(None), None]);
    let mut sketches = HashMap::new();
    s.for_each_sketch(&mut |id, bytes| {
        assert!(sketches.insert(id, bytes.to_vec()).is_none(), "once each");
    })
    .unwrap();
    let expected = a.passages[0].traits.as_ref().unwrap();
    assert_eq!(sketches.len(), 2, "the passage without traits has none");
    assert_eq!(sketches[&rows[0].passage.id], expected.sketch);
    assert_eq!(sketches[&rows[1].passage.id], [1, 0, 255]);
    // Traits worked out later for the passage stored without them.
    let old = rows[2].passage.id;
    let missing = s.passages_without_traits(PassageId::MIN, 10).unwrap();
    let norm = crate::corpus::normalize("written by an older pareil");
    assert_eq!(missing, [(old, "written by an older pareil".into(), norm)]);
    assert_eq!(s.passages_without_traits(old, 10).unwrap(), []);
    let later = PassageTraits {
        lang: Some("de".into()),
        sketch: vec![7; 3],
        keys: vec![7],
    };
    s.set_traits(&[(old, later), (old + 1000, PassageTraits::default())])
        .unwrap();
    assert_eq!(s.passages_without_traits(PassageId::MIN, 10).unwrap(), []);
    assert_eq!(s.dedup_rows().unwrap()[2].lang, Some(Some("de".into())));
    let mut seen = None;
    s.for_each_sketch(&mut |id, bytes| {
        if id == old {
            seen = Some(bytes.to_vec());
        }
    })
    .unwrap();
    assert_eq!(seen, Some(vec![7; 3]));
    // A removed document's sketches go with it.
    s.remove_document("b.txt").unwrap();
    s.remove_document("a.txt").unwrap();
    let mut left = 0;
    s.for_each_sketch(&mut |_, _| left += 1).unwrap();
    assert_eq!(left, 0);
}

pub fn search_follows_writes(s: &mut dyn Store) {
    s.replace_document(&doc_with_vectors(
        "a.txt",
        &[("old", vec![1.0, 0.0, 0.0, 0.0])],
    ))
    .unwrap();
    let q = [1.0, 0.0, 0.0, 0.0];
    assert_eq!(s.nearest(&q, 5, &Filter::default()).unwrap().len(), 1);
    let a = s
        .replace_document(&doc_with_vectors(
            "a.txt",
            &[("new", vec![0.0, 1.0, 0.0, 0.0])],
        ))
        .unwrap();
    let b = s
        .replace_document(&doc_with_vectors(
            "b.txt",
            &[("more", vec![1.0, 0.1, 0.0, 0.0])],
        ))
        .unwrap();
    let ids: Vec<PassageId> = s
        .nearest(&q, 5, &Filter::default())
        .unwrap()
        .iter()
        .map(|n| n.passage)
        .collect();
    assert_eq!(
        ids,
        [b.passage_ids[0], a.passage_ids[0]],
        "the old version is gone"
    );
}

pub fn generation_counts_writes(s: &mut dyn Store) {
    let generation = |s: &dyn Store| -> u64 {
        s.meta_value("generation")
            .unwrap()
            .map_or(0, |v| v.parse().unwrap())
    };
    let g0 = generation(s);
    s.replace_document(&doc("a.txt", &["one"])).unwrap();
    let g1 = generation(s);
    assert!(g1 > g0);
    s.remove_document("a.txt").unwrap();
    assert!(generation(s) > g1);
}

pub fn stats_count(s: &mut dyn Store) {
    s.replace_document(&doc("a.txt", &["one", "two", "one"]))
        .unwrap();
    s.replace_document(&doc("a.txt", &["one"])).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.passages, st.chunks), (1, 1, 1));
    assert_eq!(st.embeddings, 2, "\"two\" stays cached until vacuum");
    assert_eq!(st.orphan_embeddings, 1);
    assert_eq!(s.vacuum_embeddings().unwrap(), 1);
    assert_eq!(s.stats().unwrap().embeddings, 1);
}
