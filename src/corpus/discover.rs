//! Turning the paths given on the command line into the list of files to
//! read: explicit files kept, directories walked, include/exclude globs
//! applied, hidden entries skipped, order deterministic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use crate::error::{Error, Result};

/// Patterns used when `include` is empty; matched case-insensitively so
/// `NOTES.TXT` is found too.
const DEFAULT_INCLUDE: &[&str] = &["*.txt", "*.md"];

/// Files to process, in a deterministic order.
///
/// - A path naming a file is kept as given, whatever the globs say: the user
///   asked for it by name.
/// - A directory is walked recursively in file-name order. Symlinks are
///   followed; a link that loops back to an ancestor is skipped (walkdir
///   detects it). Entries whose name starts with `.` (`.git`, `.cache`,
///   `.notes.txt`) are skipped, except the root itself (so `.` works).
/// - A walked file is kept when an `include` glob matches its path relative to
///   the walked root or its file name (default `*.txt`, `*.md`), and no
///   `exclude` glob does. A directory matching `exclude` is not entered.
///   Globs use `globset` syntax with `*` not crossing `/` (use `**`).
/// - Order: the arguments' order, each directory's files sorted; a file
///   reached twice is listed once (first occurrence wins).
///
/// Errors: a missing path or an unreadable directory is [`Error::Io`]; a bad
/// glob is [`Error::Usage`].
pub fn discover(paths: &[PathBuf], include: &[String], exclude: &[String]) -> Result<Vec<PathBuf>> {
    let include_set = if include.is_empty() {
        build_set(DEFAULT_INCLUDE.iter().copied(), true)?
    } else {
        build_set(include.iter().map(String::as_str), false)?
    };
    let exclude_set = build_set(exclude.iter().map(String::as_str), false)?;

    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |p: PathBuf, out: &mut Vec<PathBuf>| {
        // Canonical key so `a.txt` and `./a.txt` are one file; fall back to
        // the path itself if canonicalisation fails (it exists, so rarely).
        let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if seen.insert(key) {
            out.push(p);
        }
    };

    for root in paths {
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            push(root.clone(), &mut out);
            continue;
        }
        let walker = WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                if e.depth() == 0 {
                    return true;
                }
                if e.file_name().to_string_lossy().starts_with('.') {
                    return false;
                }
                !(e.file_type().is_dir() && matches(&exclude_set, root, e.path()))
            });
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                // A symlink loop is a property of the tree, not a failure.
                Err(e) if e.loop_ancestor().is_some() => continue,
                Err(e) => {
                    let path = e.path().unwrap_or(root).to_path_buf();
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("directory walk failed"));
                    return Err(Error::io(path, source));
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            if matches(&include_set, root, path) && !matches(&exclude_set, root, path) {
                push(path.to_path_buf(), &mut out);
            }
        }
    }
    Ok(out)
}

fn build_set<'a>(
    patterns: impl Iterator<Item = &'a str>,
    case_insensitive: bool,
) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .case_insensitive(case_insensitive)
            .build()
            .map_err(|e| Error::Usage(format!("invalid glob {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| Error::Usage(format!("invalid glob set: {e}")))
}

/// Matches `path` by its path relative to `root` and by its file name.
fn matches(set: &GlobSet, root: &Path, path: &Path) -> bool {
    if set.is_empty() {
        return false;
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    set.is_match(rel) || path.file_name().is_some_and(|name| set.is_match(name))
}

/// The matcher of a `--doc GLOB` option (None when not given).
pub fn doc_glob(pattern: Option<&str>) -> Result<Option<globset::GlobMatcher>> {
    pattern
        .map(|g| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| Error::Usage(format!("bad --doc glob {g:?}: {e}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "b.txt",
            "a.md",
            "C.TXT",
            "skip.pdf",
            "sub/z.txt",
            "sub/deeper/y.md",
            "drafts/d.txt",
            ".git/config.txt",
            "sub/.hidden.txt",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        dir
    }

    fn rel(dir: &tempfile::TempDir, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn walks_sorted_with_defaults_skipping_hidden() {
        let dir = tree();
        let got = discover(&[dir.path().to_path_buf()], &[], &[]).unwrap();
        assert_eq!(
            rel(&dir, &got),
            [
                "C.TXT",
                "a.md",
                "b.txt",
                "drafts/d.txt",
                "sub/deeper/y.md",
                "sub/z.txt"
            ]
        );
        // Deterministic.
        assert_eq!(
            got,
            discover(&[dir.path().to_path_buf()], &[], &[]).unwrap()
        );
    }

    #[test]
    fn include_and_exclude_globs() {
        let dir = tree();
        let root = vec![dir.path().to_path_buf()];
        let got = discover(&root, &["*.md".into()], &[]).unwrap();
        assert_eq!(rel(&dir, &got), ["a.md", "sub/deeper/y.md"]);
        let got = discover(&root, &["sub/*.txt".into()], &[]).unwrap();
        assert_eq!(rel(&dir, &got), ["sub/z.txt"]);
        let got = discover(&root, &[], &["drafts".into(), "b.*".into()]).unwrap();
        assert_eq!(
            rel(&dir, &got),
            ["C.TXT", "a.md", "sub/deeper/y.md", "sub/z.txt"]
        );
        let got = discover(&root, &["**/*.pdf".into()], &[]).unwrap();
        assert_eq!(rel(&dir, &got), ["skip.pdf"]);
    }

    #[test]
    fn explicit_files_kept_in_order_and_deduplicated() {
        let dir = tree();
        let pdf = dir.path().join("skip.pdf");
        let z = dir.path().join("sub/z.txt");
        let got = discover(&[pdf.clone(), z.clone(), dir.path().join("sub")], &[], &[]).unwrap();
        assert_eq!(
            rel(&dir, &got),
            ["skip.pdf", "sub/z.txt", "sub/deeper/y.md"]
        );
    }

    #[test]
    fn errors() {
        let dir = tree();
        let missing = dir.path().join("nope");
        assert!(matches!(
            discover(&[missing], &[], &[]),
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            discover(&[dir.path().to_path_buf()], &["a[".into()], &[]),
            Err(Error::Usage(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loop_does_not_hang() {
        let dir = tree();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).unwrap();
        let got = discover(&[dir.path().to_path_buf()], &[], &[]).unwrap();
        assert_eq!(got.len(), 6);
    }
}
