//! The approximate index beside a SQLite store: it answers like exact
//! search, and a stale, foreign, damaged or half-written index file is never
//! trusted (searches stay complete and correct; the next writer rebuilds).

use std::collections::HashSet;
use std::path::Path;

use tempfile::TempDir;

use super::ann;
use super::search::{IndexUpkeep, Searcher};
use super::SqliteStore;
use crate::store::{Filter, PassageId, Store};
use crate::test_support::{self, Rng};

const DIM: usize = 32;
const PER_DOC: usize = 50;

/// A store of `docs` documents of `PER_DOC` passages with clustered random
/// vectors (a few hundred topics, like real text), indexed from 100 chunks.
fn store_with(dir: &TempDir, name: &str, docs: usize, seed: u64) -> SqliteStore {
    let mut s =
        SqliteStore::create_or_open(dir.path().join(name), &test_support::meta(DIM)).unwrap();
    s.set_ann_min_chunks(100);
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..200).map(|_| rng.unit_vector(DIM)).collect();
    for d in 0..docs {
        add_doc(&mut s, &format!("doc{d}.txt"), &centres, &mut rng);
    }
    s
}

fn add_doc(s: &mut SqliteStore, path: &str, centres: &[Vec<f32>], rng: &mut Rng) {
    let texts: Vec<String> = (0..PER_DOC)
        .map(|i| format!("{path} passage {i}"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut vectors = std::collections::HashMap::new();
    for t in &texts {
        let c = &centres[(rng.next_u64() % centres.len() as u64) as usize];
        let v: Vec<f32> = c.iter().map(|x| x + 0.6 * rng.next_f32()).collect();
        vectors.insert(t.clone(), test_support::unit(v));
    }
    let doc = test_support::document(path, &refs, &HashSet::new(), |t| vectors[t].clone());
    s.replace_document(&doc).unwrap();
}

fn uses_index(s: &SqliteStore) -> bool {
    matches!(s.searcher().unwrap(), Searcher::Approx { .. })
}

fn all_passages(s: &SqliteStore) -> Vec<PassageId> {
    s.dedup_rows()
        .unwrap()
        .iter()
        .map(|r| r.passage.id)
        .collect()
}

fn ids(hits: &[crate::store::Neighbour]) -> Vec<PassageId> {
    hits.iter().map(|n| n.passage).collect()
}

/// Exact and indexed answers to `queries`: recall@10 of the index.
fn recall_at_10(s: &mut SqliteStore, queries: &[Vec<f32>]) -> f64 {
    s.set_exact_search(true);
    let exact: Vec<Vec<PassageId>> = queries
        .iter()
        .map(|q| ids(&s.nearest(q, 10, &Filter::default()).unwrap()))
        .collect();
    s.set_exact_search(false);
    assert!(uses_index(s));
    let mut found = 0;
    for (q, want) in queries.iter().zip(&exact) {
        let got: HashSet<PassageId> = ids(&s.nearest(q, 10, &Filter::default()).unwrap())
            .into_iter()
            .collect();
        found += want.iter().filter(|p| got.contains(p)).count();
    }
    found as f64 / (10 * queries.len()) as f64
}

fn queries(n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(77);
    (0..n).map(|_| rng.unit_vector(DIM)).collect()
}

#[test]
fn index_answers_like_exact_search() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 60, 1);
    assert!(!uses_index(&s), "no index before maintain");
    assert_eq!(s.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
    assert!(ann::path_for(s.path()).exists());
    let recall = recall_at_10(&mut s, &queries(50));
    assert!(recall >= 0.98, "recall@10 {recall}");
    // Scores are re-computed from the stored vectors: the same as exact.
    let q = &queries(1)[0];
    let approx = s.nearest(q, 3, &Filter::default()).unwrap();
    s.set_exact_search(true);
    let exact = s.nearest(q, 3, &Filter::default()).unwrap();
    for a in &approx {
        if let Some(e) = exact.iter().find(|e| e.passage == a.passage) {
            assert!((a.score - e.score).abs() < 1e-5, "{a:?} vs {e:?}");
        }
    }

    // The k-NN graph for dups: each passage's neighbours as exact search finds them.
    let all = all_passages(&s);
    let exact = s.neighbours(&all, 5, 0.3).unwrap();
    s.set_exact_search(false);
    let approx = s.neighbours(&all, 5, 0.3).unwrap();
    let (mut hit, mut total) = (0, 0);
    for (e, a) in exact.iter().zip(&approx) {
        let a: HashSet<PassageId> = ids(a).into_iter().collect();
        total += e.len();
        hit += e.iter().filter(|n| a.contains(&n.passage)).count();
    }
    assert!(hit as f64 >= 0.98 * total as f64, "{hit} of {total}");
}

#[test]
fn clustered_neighbours_answer_as_exact_search_when_every_cluster_is_probed() {
    // 3,000 passages: three clusters, fewer than a query probes, so the
    // lists must be exact search's, for the whole store and among the
    // passages of some (the cross-language searches of `dups`).
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "clustered.db", 60, 9);
    s.maintain_index(&mut |_| {}).unwrap();
    s.set_clustered_min_queries(100);
    let all = all_passages(&s);
    let among: HashSet<PassageId> = all.iter().step_by(3).copied().collect();
    let askers: Vec<PassageId> = all.iter().filter(|p| !among.contains(p)).copied().collect();
    s.set_exact_search(true);
    let exact = s.neighbours(&all, 5, 0.3).unwrap();
    let exact_among = s.neighbours_among(&askers, 5, 0.3, &among).unwrap();
    s.set_exact_search(false);
    assert!(uses_index(&s));
    let clustered = s.neighbours(&all, 5, 0.3).unwrap();
    let clustered_among = s.neighbours_among(&askers, 5, 0.3, &among).unwrap();
    for (exact, clustered) in [(exact, clustered), (exact_among, clustered_among)] {
        let total: usize = exact.iter().map(Vec::len).sum();
        assert!(total > 1_000, "lists too short to tell: {total}");
        for (e, c) in exact.iter().zip(&clustered) {
            assert_eq!(ids(e), ids(c));
            for (e, c) in e.iter().zip(c) {
                assert!((e.score - c.score).abs() < 1e-5, "{e:?} vs {c:?}");
            }
        }
    }
}

#[test]
fn restricted_neighbours_answer_like_exact_search_for_few_and_many_candidates() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "among.db", 60, 5);
    s.maintain_index(&mut |_| {}).unwrap();
    let all = all_passages(&s);
    // 100 candidates of 3,000 (searched exactly beside the index) and every
    // other passage (a filtered walk of the graph).
    let few: HashSet<PassageId> = all.iter().step_by(30).copied().collect();
    let many: HashSet<PassageId> = all.iter().step_by(2).copied().collect();
    assert!(few.len() * 16 < all.len() && many.len() * 16 > all.len());
    let queries: Vec<PassageId> = all.iter().skip(1).step_by(7).copied().collect();
    for (among, least) in [(&few, 1.0), (&many, 0.95)] {
        s.set_exact_search(true);
        let exact = s.neighbours_among(&queries, 5, 0.3, among).unwrap();
        s.set_exact_search(false);
        assert!(uses_index(&s));
        let approx = s.neighbours_among(&queries, 5, 0.3, among).unwrap();
        let (mut hit, mut total) = (0, 0);
        for (e, a) in exact.iter().zip(&approx) {
            assert!(a.iter().all(|n| among.contains(&n.passage)), "{a:?}");
            let a: HashSet<PassageId> = ids(a).into_iter().collect();
            total += e.len();
            hit += e.iter().filter(|n| a.contains(&n.passage)).count();
        }
        assert!(total > queries.len(), "lists too short to tell: {total}");
        assert!(hit as f64 >= least * total as f64, "{hit} of {total}");
    }
}

#[test]
fn a_copy_in_memory_answers_like_the_mapped_file() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "s.db", 20, 5);
    assert_eq!(s.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
    let passages = all_passages(&s);
    let before = s.search_neighbours(&passages, 8, 0.0, None).unwrap();
    assert_eq!(before.len(), passages.len());
    let Searcher::Approx { ann, .. } = s.searcher().unwrap() else {
        panic!("the store should be indexed");
    };
    // The copy is of the file that was opened, whatever a writer has
    // renamed over its name since.
    let path = ann::path_for(&dir.path().join("s.db"));
    std::fs::write(dir.path().join("other"), b"another index").unwrap();
    std::fs::rename(dir.path().join("other"), &path).unwrap();
    ann.view_copy().unwrap();
    assert_eq!(
        s.search_neighbours(&passages, 8, 0.0, None).unwrap(),
        before
    );
}

#[test]
fn writes_after_the_index_are_searched_and_removals_dropped() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 10, 2);
    s.maintain_index(&mut |_| {}).unwrap();
    // Written after the index, without maintaining it (another process, or a
    // run killed before its upkeep): the tail.
    let mut rng = Rng::new(9);
    let centres: Vec<Vec<f32>> = (0..5).map(|_| rng.unit_vector(DIM)).collect();
    add_doc(&mut s, "late.txt", &centres, &mut rng);
    s.remove_document("doc3.txt").unwrap();
    let index = s
        .stats()
        .unwrap()
        .search_index
        .expect("stats see the index");
    assert_eq!((index.vectors, index.chunks_after), (10 * PER_DOC, PER_DOC));
    let late = s
        .passages_of(s.document_by_path("late.txt").unwrap().unwrap().id)
        .unwrap();
    let path = s.path().to_path_buf();
    drop(s);
    let s = SqliteStore::open_existing(&path, true).unwrap();
    assert!(uses_index(&s));
    let v = s.passage_vector(late[7].id).unwrap().unwrap();
    let hits = s.nearest(&v, 10, &Filter::default()).unwrap();
    assert_eq!(
        hits[0].passage, late[7].id,
        "a passage written after the index is found"
    );
    let removed: HashSet<String> = (0..PER_DOC)
        .map(|i| format!("doc3.txt passage {i}"))
        .collect();
    let all = all_passages(&s);
    let found: HashSet<PassageId> = s
        .neighbours(&all, 10, -1.0)
        .unwrap()
        .into_iter()
        .flatten()
        .map(|n| n.passage)
        .chain(ids(&s.nearest(&v, 500, &Filter::default()).unwrap()))
        .collect();
    let found: Vec<PassageId> = found.into_iter().collect();
    let texts = s.passages_by_ids(&found).unwrap();
    assert_eq!(texts.len(), found.len(), "every passage returned exists");
    assert!(texts.iter().all(|p| !removed.contains(&p.text)));
}

/// Runs `maintain_index`: what it did, and the notes it gave.
fn maintain_noting(s: &mut SqliteStore) -> (IndexUpkeep, Vec<String>) {
    let mut notes = Vec::new();
    let upkeep = s
        .maintain_index(&mut |m| notes.push(m.to_string()))
        .unwrap();
    (upkeep, notes)
}

#[test]
fn maintain_folds_a_grown_tail_and_rebuilds_after_removals() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 4, 3);
    s.maintain_index(&mut |_| {}).unwrap();
    assert_eq!(
        s.maintain_index(&mut |_| {}).unwrap(),
        IndexUpkeep::Unchanged
    );
    let mut rng = Rng::new(4);
    let centres = vec![rng.unit_vector(DIM)];
    for d in 0..50 {
        add_doc(&mut s, &format!("more{d}.txt"), &centres, &mut rng);
    }
    let (upkeep, notes) = maintain_noting(&mut s);
    assert_eq!(upkeep, IndexUpkeep::Extended);
    assert!(notes[0].contains("adding 2500 vectors"), "{notes:?}");
    for d in 0..50 {
        s.remove_document(&format!("more{d}.txt")).unwrap();
    }
    assert_eq!(s.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
    assert!(uses_index(&s));
}

/// A graph begun below the wide-list size and growing past it is rebuilt
/// once with the wide list; from then on it is extended.
#[test]
fn a_narrow_graph_growing_past_the_small_size_is_rebuilt_wide_once() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 4, 10);
    s.set_small_graph(1_000);
    assert_eq!(s.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
    let header = |s: &SqliteStore| {
        let id = s.store_id().unwrap().unwrap();
        ann::header_of(&ann::path_for(s.path()), &id, DIM).unwrap()
    };
    assert_eq!(header(&s).expansion_add, 128, "200 vectors: narrow");
    let mut rng = Rng::new(11);
    let centres: Vec<Vec<f32>> = (0..50).map(|_| rng.unit_vector(DIM)).collect();
    for d in 0..50 {
        add_doc(&mut s, &format!("more{d}.txt"), &centres, &mut rng);
    }
    let (upkeep, notes) = maintain_noting(&mut s);
    assert_eq!(upkeep, IndexUpkeep::Built);
    assert!(
        notes[0].contains("over 2700 vectors with a wider"),
        "{notes:?}"
    );
    assert_eq!(header(&s).expansion_add, 256);
    assert!(recall_at_10(&mut s, &queries(20)) >= 0.9);
    for d in 50..100 {
        add_doc(&mut s, &format!("more{d}.txt"), &centres, &mut rng);
    }
    assert_eq!(
        s.maintain_index(&mut |_| {}).unwrap(),
        IndexUpkeep::Extended,
        "rebuilt once, then extended"
    );
    assert_eq!(header(&s).expansion_add, 256);
}

/// Opens `db` after replacing its index file with `bytes`.
fn with_index_bytes(db: &Path, bytes: &[u8]) -> SqliteStore {
    std::fs::write(ann::path_for(db), bytes).unwrap();
    let mut s = SqliteStore::open_existing(db, false).unwrap();
    s.set_ann_min_chunks(100);
    s
}

#[test]
fn foreign_damaged_or_torn_index_files_are_ignored_then_rebuilt() {
    let dir = TempDir::new().unwrap();
    let mut a = store_with(&dir, "a.db", 4, 5);
    a.maintain_index(&mut |_| {}).unwrap();
    let a_index = std::fs::read(ann::path_for(a.path())).unwrap();
    let b = store_with(&dir, "b.db", 4, 6);
    let b_path = b.path().to_path_buf();
    drop(b);
    let q = &queries(1)[0];
    for bytes in [
        a_index.clone(),                       // another store's index
        a_index[..a_index.len() / 2].to_vec(), // cut short
        b"PARLANN1 garbage".to_vec(),          // a header and nothing else
        vec![0u8; 10_000],                     // not an index at all
    ] {
        let mut b = with_index_bytes(&b_path, &bytes);
        assert!(!uses_index(&b), "an untrusted index is not used");
        let exact = b.nearest(q, 5, &Filter::default()).unwrap();
        assert_eq!(b.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
        assert!(uses_index(&b));
        // Approximate: most of the exact five (recall is measured above).
        let got: HashSet<PassageId> = ids(&b.nearest(q, 5, &Filter::default()).unwrap())
            .into_iter()
            .collect();
        assert!(ids(&exact).iter().filter(|p| got.contains(p)).count() >= 4);
    }
    // A temporary file left by a killed build is neither read nor in the way.
    let mut tmp = ann::path_for(&b_path).into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, b"half written").unwrap();
    std::fs::remove_file(ann::path_for(&b_path)).unwrap();
    let mut b = SqliteStore::open_existing(&b_path, false).unwrap();
    b.set_ann_min_chunks(100);
    assert!(!uses_index(&b));
    assert_eq!(b.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
    assert!(uses_index(&b));
}

/// An index whose header was written before it recorded the insertion list
/// (the same format otherwise) is still used, as a graph built with the
/// narrow list: were it large, it would keep the longer search list.
#[test]
fn an_index_header_from_before_the_insertion_list_is_still_used() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 4, 9);
    s.maintain_index(&mut |_| {}).unwrap();
    let path = ann::path_for(s.path());
    let db = s.path().to_path_buf();
    drop(s);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[12..12 + len]).unwrap();
    assert_eq!(
        header["expansion_add"], 128,
        "a small graph: the narrow list"
    );
    header.as_object_mut().unwrap().remove("expansion_add");
    let old = serde_json::to_vec(&header).unwrap();
    bytes[12..12 + len].fill(0);
    bytes[8..12].copy_from_slice(&(old.len() as u32).to_le_bytes());
    bytes[12..12 + old.len()].copy_from_slice(&old);
    let mut s = with_index_bytes(&db, &bytes);
    assert!(uses_index(&s));
    assert_eq!(
        s.maintain_index(&mut |_| {}).unwrap(),
        IndexUpkeep::Unchanged
    );
    assert_eq!(ann::expansion_search(1_000_000, 128), 384);
    assert_eq!(ann::expansion_search(1_000_000, 256), 256);
    assert_eq!(ann::expansion_search(10_000, 256), 128);
}

#[test]
fn small_stores_build_no_index() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 1, 8);
    s.set_ann_min_chunks(super::ANN_MIN_CHUNKS);
    assert_eq!(
        s.maintain_index(&mut |_| {}).unwrap(),
        IndexUpkeep::Unchanged
    );
    assert!(!ann::path_for(s.path()).exists());
    let mut lock = ann::path_for(s.path()).into_os_string();
    lock.push(".lock");
    assert!(
        !std::path::Path::new(&lock).exists(),
        "no lock file beside a small store"
    );
    assert!(s.stats().unwrap().search_index.is_none());
}

#[test]
fn a_second_writer_leaves_the_index_to_the_first() {
    let dir = TempDir::new().unwrap();
    let mut s = store_with(&dir, "a.db", 4, 10);
    let held = ann::try_lock(&ann::path_for(s.path()))
        .unwrap()
        .expect("free");
    assert_eq!(
        s.maintain_index(&mut |_| {}).unwrap(),
        IndexUpkeep::Unchanged
    );
    assert!(!ann::path_for(s.path()).exists());
    drop(held);
    assert_eq!(s.maintain_index(&mut |_| {}).unwrap(), IndexUpkeep::Built);
}
