//! [`read_dir`] and [`DirEntry`].

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use super::{path_error, FileType, Metadata};
use crate::io::blocking;

/// An entry of a directory listed by [`read_dir`]: its path, name and type, read while listing.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-entry-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(&dir).await.unwrap();
///     spindle::fs::write(dir.join("f"), "").await.unwrap();
///     let entries = spindle::fs::read_dir(&dir).await.unwrap();
///     assert_eq!(entries[0].file_name(), "f");
///     assert!(entries[0].file_type().is_file());
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
#[derive(Debug, Clone)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    file_type: FileType,
}

impl DirEntry {
    /// The entry's full path (the listed directory joined with its name).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     for e in spindle::fs::read_dir("/").await.unwrap() {
    ///         assert!(e.path().starts_with("/"));
    ///     }
    /// });
    /// ```
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The entry's name inside its directory.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let names: Vec<_> = spindle::fs::read_dir("/").await.unwrap().iter().map(|e| e.file_name()).collect();
    ///     assert!(!names.is_empty());
    /// });
    /// ```
    pub fn file_name(&self) -> OsString {
        self.file_name.clone()
    }

    /// The entry's type (not following a symlink).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let entries = spindle::fs::read_dir("/").await.unwrap();
    ///     assert!(entries.iter().any(|e| e.file_type().is_dir()));
    /// });
    /// ```
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The entry's metadata, following a symlink (a system call, on the blocking pool).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let entries = spindle::fs::read_dir("/").await.unwrap();
    ///     let dir = entries.iter().find(|e| e.file_type().is_dir()).unwrap();
    ///     assert!(dir.metadata().await.unwrap().is_dir());
    /// });
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        super::metadata(&self.path).await
    }
}

/// Lists a directory (without `.` and `..`), sorted by name so the order is reproducible.
///
/// The whole listing is read in one blocking job and returned as a `Vec`; for directories with
/// millions of entries, list them with `std::fs::read_dir` inside `spawn_blocking` instead.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-read-dir-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(dir.join("sub")).await.unwrap();
///     spindle::fs::write(dir.join("a.txt"), "").await.unwrap();
///     let names: Vec<_> = spindle::fs::read_dir(&dir).await.unwrap().iter().map(|e| e.file_name()).collect();
///     assert_eq!(names, ["a.txt", "sub"]);
///     let e = spindle::fs::read_dir(dir.join("a.txt")).await.unwrap_err();
///     assert!(e.to_string().contains("a.txt"), "{e}");
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
    let path = path.as_ref().to_owned();
    blocking::run("read_dir", move || {
        let list = || -> io::Result<Vec<DirEntry>> {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                out.push(DirEntry { path: entry.path(), file_name: entry.file_name(), file_type: entry.file_type()? });
            }
            out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
            Ok(out)
        };
        list().map_err(|e| path_error("read_dir", &path, e))
    })
    .await
}
