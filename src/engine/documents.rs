//! Finding a stored document the way users name it: by its stored path, or
//! by a unique suffix of whole path components (`b/c.txt` or `c.txt` for
//! `a/b/c.txt`). Shared by `remove`, `similar --at` and any store.

use crate::error::{Error, Result};
use crate::store::{DocumentRow, Store};

/// The document `query` names. `NotFound` when nothing matches, `Usage`
/// naming the candidates when several do.
pub fn find_document(store: &dyn Store, query: &str) -> Result<DocumentRow> {
    if let Some(doc) = store.document_by_path(query)? {
        return Ok(doc);
    }
    let wanted = query.trim_start_matches("./").replace('\\', "/");
    let docs = store.documents()?;
    let mut matches: Vec<&DocumentRow> = docs
        .iter()
        .filter(|d| is_suffix_of(&wanted, &d.path))
        .collect();
    matches.sort_by(|a, b| a.path.cmp(&b.path));
    match matches.as_slice() {
        [] => Err(Error::NotFound(format!(
            "no document matching {query:?} in the store"
        ))),
        [one] => Ok((*one).clone()),
        many => {
            let shown: Vec<&str> = many.iter().take(10).map(|d| d.path.as_str()).collect();
            let more = if many.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            Err(Error::Usage(format!(
                "{query:?} matches {} documents: {}{more}; give more of the path",
                many.len(),
                shown.join(", "),
            )))
        }
    }
}

/// Whether `wanted` is `path` or a suffix of it made of whole components.
fn is_suffix_of(wanted: &str, path: &str) -> bool {
    let p = path.replace('\\', "/");
    let p = p.trim_start_matches("./");
    p == wanted
        || (p.len() > wanted.len()
            && p.ends_with(wanted)
            && p.as_bytes()[p.len() - wanted.len() - 1] == b'/')
}

#[cfg(test)]
mod tests {
    use super::{find_document, is_suffix_of};
    use crate::error::Error;
    use crate::store::SqliteStore;
    use crate::test_support::{document, meta, vector_for};

    #[test]
    fn documents_are_found_by_path_or_unique_suffix() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut s = SqliteStore::create_or_open(dir.path().join("s.db"), &meta(4)).unwrap();
        for path in ["notes/a/b.txt", "other/b.txt"] {
            let d = document(path, &["text"], &Default::default(), |t| vector_for(t, 4));
            s.replace_document(&d).unwrap();
        }
        let found = |q: &str| find_document(&s, q).map(|d| d.path);
        assert_eq!(found("notes/a/b.txt").unwrap(), "notes/a/b.txt");
        assert_eq!(found("a/b.txt").unwrap(), "notes/a/b.txt");
        assert_eq!(found("./a/b.txt").unwrap(), "notes/a/b.txt");
        match found("b.txt") {
            Err(Error::Usage(m)) => {
                assert!(m.contains("notes/a/b.txt") && m.contains("other/b.txt"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(found("x.txt"), Err(Error::NotFound(_))));
        assert!(
            matches!(found("r/b.txt"), Err(Error::NotFound(_))),
            "whole components only"
        );
    }

    #[test]
    fn suffixes_are_whole_components() {
        assert!(is_suffix_of("c.txt", "a/b/c.txt"));
        assert!(is_suffix_of("b/c.txt", "./a/b/c.txt"));
        assert!(!is_suffix_of("c.txt", "a/bc.txt"));
        assert!(is_suffix_of("a/b/c.txt", "a/b/c.txt"));
    }
}
