//! The name a file is stored under, and back: one name per file, whatever
//! spelling found it, and no two files under one name.
//!
//! - **One document per file.** `seeds/x.txt`, `./seeds/x.txt`,
//!   `seeds/../seeds/x.txt` and `/abs/cwd/seeds/x.txt` are one file, so one
//!   name: `.` components and `dir/..` pairs are removed (lexically, unless
//!   `dir` is a symlink, where only the file system knows where `..` leads),
//!   and an absolute path inside the working directory is made relative to
//!   it. The user's relative form is otherwise kept, so names stay readable.
//! - **No two files under one name.** A file name that is not valid UTF-8
//!   (`caf\xE9.txt` in Latin-1) keeps its bytes: each byte that is not part
//!   of valid UTF-8 is written `\xNN`, so `caf\xE9.txt` and `caf\xE8.txt`
//!   stay two documents (a lossy U+FFFD would merge them), and
//!   [`path_of_stored`] gives the bytes back (prune checks the real file).

use std::path::{Component, Path, PathBuf};

/// The name `path` is stored under (see the module docs).
pub fn stored_name(path: &Path) -> String {
    let path = relative_to_cwd(&without_dots(path));
    let name = escape_bytes(path.as_os_str());
    match name.strip_prefix("./") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => name,
    }
}

/// The file a stored name refers to: `\xNN` escapes turned back into bytes
/// when the name holds any (a name without them is the path itself).
pub fn path_of_stored(name: &str) -> PathBuf {
    match unescape_bytes(name) {
        Some(bytes) => bytes_to_path(bytes),
        None => PathBuf::from(name),
    }
}

/// `.` components dropped and `dir/..` pairs folded, except after a symlink
/// (or a component that cannot be checked), where the path is kept as is.
fn without_dots(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let foldable = matches!(out.components().next_back(), Some(Component::Normal(_)))
                    && std::fs::symlink_metadata(&out).is_ok_and(|m| !m.file_type().is_symlink());
                if foldable {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// An absolute path under the working directory, relative to it.
fn relative_to_cwd(path: &Path) -> PathBuf {
    if !path.is_absolute() {
        return path.to_path_buf();
    }
    let Ok(cwd) = std::env::current_dir() else {
        return path.to_path_buf();
    };
    match path.strip_prefix(&cwd) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

#[cfg(unix)]
fn escape_bytes(s: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in s.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(not(unix))]
fn escape_bytes(s: &std::ffi::OsStr) -> String {
    s.to_string_lossy().into_owned()
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// The bytes of a name with `\xNN` escapes, when it has any and they
/// decode to something that is not valid UTF-8 (only [`stored_name`] writes
/// such names; a real file named `a\x41` keeps its name).
fn unescape_bytes(name: &str) -> Option<Vec<u8>> {
    if !name.contains("\\x") {
        return None;
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 2..i + 4).and_then(|h| {
            let h = std::str::from_utf8(h).ok()?;
            u8::from_str_radix(h, 16).ok()
        });
        match hex {
            Some(v) if b[i] == b'\\' && b[i + 1] == b'x' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_err().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_file_get_one_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("seeds")).unwrap();
        let base = dir.path();
        let abs = stored_name(&base.join("seeds/x.txt"));
        for p in ["seeds/./x.txt", "seeds/../seeds/x.txt", "./seeds/x.txt"] {
            assert_eq!(stored_name(&base.join(p)), abs, "{p}");
        }
        assert_eq!(stored_name(Path::new("./a.txt")), "a.txt");
        assert_eq!(stored_name(Path::new("a/./b.txt")), "a/b.txt");
        assert_eq!(stored_name(Path::new("../other/x.txt")), "../other/x.txt");
    }

    #[test]
    fn an_absolute_path_under_the_working_directory_is_relative() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(stored_name(&cwd.join("seeds/x.txt")), "seeds/x.txt");
        assert_eq!(
            stored_name(Path::new("/elsewhere/x.txt")),
            "/elsewhere/x.txt"
        );
    }

    #[cfg(unix)]
    #[test]
    fn dot_dot_after_a_symlink_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("a/b");
        std::fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let p = dir.path().join("link/../x.txt");
        assert!(
            stored_name(&p).ends_with("link/../x.txt"),
            "{}",
            stored_name(&p)
        );
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_stay_distinct_and_round_trip() {
        use std::os::unix::ffi::OsStrExt;
        let e9 = Path::new(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
        let e8 = Path::new(std::ffi::OsStr::from_bytes(b"caf\xe8.txt"));
        assert_eq!(stored_name(e9), "caf\\xE9.txt");
        assert_ne!(stored_name(e9), stored_name(e8));
        assert_eq!(path_of_stored(&stored_name(e9)), e9);
        assert_eq!(path_of_stored("café.txt"), Path::new("café.txt"));
        // An escape that decodes to valid UTF-8 was a real backslash.
        assert_eq!(path_of_stored("a\\x41.txt"), Path::new("a\\x41.txt"));
    }
}
