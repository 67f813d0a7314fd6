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

/// What a walk found: the files to read, and the entries it passed over.
#[derive(Debug, Default)]
pub struct Discovery {
    pub files: Vec<PathBuf>,
    /// Entries left out, with why ("dangling symlink", "not a regular file").
    pub skipped: Vec<(PathBuf, String)>,
}

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
/// - Inside a walked directory, every bad entry is treated alike: a dangling
///   symlink, a symlink loop, an unreadable directory, a FIFO, socket or
///   device is listed in [`Discovery::skipped`] with the reason, and the walk
///   goes on (the caller warns and exits with "some inputs skipped").
///
/// Errors: a path named on the command line that is missing, or is not a
/// regular file or directory (a FIFO would block forever), is refused before
/// anything is read ([`Error::Io`], [`Error::Usage`]); so is a bad glob.
pub fn discover(paths: &[PathBuf], include: &[String], exclude: &[String]) -> Result<Discovery> {
    let include_set = if include.is_empty() {
        build_set(DEFAULT_INCLUDE.iter().copied(), true)?
    } else {
        build_set(include.iter().map(String::as_str), false)?
    };
    let exclude_set = build_set(exclude.iter().map(String::as_str), false)?;

    let mut out = Vec::new();
    let mut skipped = Vec::new();
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
            if !meta.is_file() {
                return Err(Error::Usage(format!(
                    "{} is not a regular file or directory (a FIFO, socket or device would \
                     block or never end); pass files or folders, or `-` to read standard input",
                    root.display()
                )));
            }
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
                Err(e) => {
                    let path = e.path().unwrap_or(root).to_path_buf();
                    skipped.push((path, walk_error_reason(&e)));
                    continue;
                }
            };
            let path = entry.path();
            let wanted = matches(&include_set, root, path) && !matches(&exclude_set, root, path);
            if entry.file_type().is_file() {
                if wanted {
                    push(path.to_path_buf(), &mut out);
                }
            } else if !entry.file_type().is_dir() && wanted {
                skipped.push((
                    path.to_path_buf(),
                    "not a regular file (a FIFO, socket or device)".into(),
                ));
            }
        }
    }
    Ok(Discovery {
        files: out,
        skipped,
    })
}

/// Why a walk could not use an entry, in words.
fn walk_error_reason(e: &walkdir::Error) -> String {
    if let Some(ancestor) = e.loop_ancestor() {
        return format!("symlink loop (leads back to {})", ancestor.display());
    }
    let dangling = e
        .path()
        .is_some_and(|p| std::fs::symlink_metadata(p).is_ok() && std::fs::metadata(p).is_err());
    match e.io_error() {
        _ if dangling => "dangling symlink (its target does not exist)".into(),
        Some(io) => io.to_string(),
        None => e.to_string(),
    }
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
        let got = discover(&[dir.path().to_path_buf()], &[], &[])
            .unwrap()
            .files;
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
            discover(&[dir.path().to_path_buf()], &[], &[])
                .unwrap()
                .files
        );
    }

    #[test]
    fn include_and_exclude_globs() {
        let dir = tree();
        let root = vec![dir.path().to_path_buf()];
        let got = discover(&root, &["*.md".into()], &[]).unwrap().files;
        assert_eq!(rel(&dir, &got), ["a.md", "sub/deeper/y.md"]);
        let got = discover(&root, &["sub/*.txt".into()], &[]).unwrap().files;
        assert_eq!(rel(&dir, &got), ["sub/z.txt"]);
        let got = discover(&root, &[], &["drafts".into(), "b.*".into()])
            .unwrap()
            .files;
        assert_eq!(
            rel(&dir, &got),
            ["C.TXT", "a.md", "sub/deeper/y.md", "sub/z.txt"]
        );
        let got = discover(&root, &["**/*.pdf".into()], &[]).unwrap().files;
        assert_eq!(rel(&dir, &got), ["skip.pdf"]);
    }

    #[test]
    fn explicit_files_kept_in_order_and_deduplicated() {
        let dir = tree();
        let pdf = dir.path().join("skip.pdf");
        let z = dir.path().join("sub/z.txt");
        let got = discover(&[pdf.clone(), z.clone(), dir.path().join("sub")], &[], &[])
            .unwrap()
            .files;
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
        let got = discover(&[dir.path().to_path_buf()], &[], &[])
            .unwrap()
            .files;
        assert_eq!(got.len(), 6);
    }

    #[cfg(unix)]
    #[test]
    fn bad_entries_are_listed_and_the_walk_goes_on() {
        let dir = tree();
        let root = dir.path();
        std::os::unix::fs::symlink(root.join("gone.txt"), root.join("dangling.txt")).unwrap();
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        let fifo = root.join("pipe.txt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let found = discover(&[root.to_path_buf()], &[], &[]).unwrap();
        assert_eq!(found.files.len(), 6, "{found:?}");
        let reason = |name: &str| {
            found
                .skipped
                .iter()
                .find(|(p, _)| p.ends_with(name))
                .map(|(_, r)| r.clone())
        };
        assert!(reason("dangling.txt").unwrap().contains("dangling symlink"));
        assert!(reason("loop").unwrap().contains("symlink loop"));
        if made.is_ok_and(|s| s.success()) {
            assert!(reason("pipe.txt").unwrap().contains("not a regular file"));
            // Named on the command line, a FIFO is refused before any read.
            assert!(matches!(
                discover(&[fifo], &[], &[]),
                Err(Error::Usage(m)) if m.contains("not a regular file")
            ));
        }
    }
}
