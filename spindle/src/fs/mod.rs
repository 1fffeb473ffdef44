//! Files and the file system: [`File`] with positional owned-buffer I/O, [`OpenOptions`], and
//! whole-file and directory helpers ([`read`], [`write`](write()), [`create_dir_all`], [`rename`], ...).
//!
//! # Contract
//!
//! - **Completion-style API.** Every operation is an `async fn` that owns its inputs until it is
//!   done: reads and writes take buffers by value ([`IoBuf`]/[`IoBufMut`]) and give them back
//!   ([`BufResult`]); paths are copied in. On the io_uring backend the positional reads and
//!   writes of [`File`] (`read_at_owned`, `write_at_owned` and their exact/all loops) are
//!   io_uring operations (no thread hop; an operation keeps the file open until its final
//!   completion). Everything else, and everything on epoll, runs the blocking system call on the
//!   runtime's blocking pool (outside a runtime: on a new thread).
//! - **Dropping a future may or may not cancel the operation**: a blocking-pool job finishes in
//!   the background, an io_uring operation is cancelled if the kernel has not finished it; either
//!   way the buffer is dropped only once nothing uses it any more (a write may still land).
//!   Await it to know.
//! - **Errors** are `io::Error`s of the system call's kind whose message names the operation and
//!   the path (`open /tmp/x: No such file or directory (os error 2)`). Bad input (a missing file,
//!   a path with a NUL byte, a directory where a file is expected) is an error, never a panic.
//! - Positional I/O (`read_at_owned`, `write_at_owned`) does not move a file cursor, so one `File`
//!   can serve concurrent operations from several tasks (`&self` methods).
//! - **Stream-style I/O**: `File` also implements `futures_io`'s `AsyncRead`, `AsyncWrite` and
//!   `AsyncSeek` (tokio's three under `tokio-io`) at the file's own position, as std's and
//!   tokio's `File` do: one operation at a time on a buffer of the file's, the caller's slice never
//!   handed to the kernel; a write is reported once it landed, so dropping the file or the
//!   runtime right after loses nothing (see `fs::cursor` in the source for the whole contract).
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("spindle-doc-fs-{}", std::process::id()));
//! spindle::block_on(async {
//!     spindle::fs::create_dir_all(&dir).await.unwrap();
//!     let path = dir.join("hello.txt");
//!     spindle::fs::write(&path, "hello").await.unwrap();
//!     assert_eq!(spindle::fs::read_to_string(&path).await.unwrap(), "hello");
//!     let err = spindle::fs::read(dir.join("missing")).await.unwrap_err();
//!     assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
//!     assert!(err.to_string().contains("missing"), "{err}");
//!     spindle::fs::remove_dir_all(&dir).await.unwrap();
//! });
//! ```
//!
//! [`IoBuf`]: crate::io::IoBuf
//! [`IoBufMut`]: crate::io::IoBufMut
//! [`BufResult`]: crate::io::BufResult

mod cursor;
mod dir;
mod file;

pub use dir::{read_dir, DirEntry, ReadDir};
pub use file::{File, OpenOptions};
pub use std::fs::{FileType, Metadata, Permissions};

use std::io;
use std::path::{Path, PathBuf};

use crate::io::blocking;

/// An error of the system call's kind whose message names the operation and the path.
pub(crate) fn path_error(op: &str, path: &Path, e: io::Error) -> io::Error {
    crate::io::with_context(format!("{op} {}", path.display()), e)
}

/// An error naming two paths (`rename a -> b: ...`).
fn paths_error(op: &str, from: &Path, to: &Path, e: io::Error) -> io::Error {
    crate::io::with_context(format!("{op} {} -> {}", from.display(), to.display()), e)
}

/// Runs `f(path)` on the blocking pool, naming `op` and the path in its error.
async fn with_path<T: Send + 'static>(
    op: &'static str,
    path: &Path,
    f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path: PathBuf = path.to_owned();
    blocking::run(op, move || f(&path).map_err(|e| path_error(op, &path, e))).await
}

/// Reads a whole file into a `Vec`.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("spindle-doc-read-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, [1u8, 2, 3]).await.unwrap();
///     assert_eq!(spindle::fs::read(&path).await.unwrap(), [1, 2, 3]);
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    with_path("read", path.as_ref(), |p| std::fs::read(p)).await
}

/// Reads a whole UTF-8 file into a `String` (`InvalidData` if it is not UTF-8).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("spindle-doc-rts-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, "text").await.unwrap();
///     assert_eq!(spindle::fs::read_to_string(&path).await.unwrap(), "text");
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    with_path("read", path.as_ref(), |p| std::fs::read_to_string(p)).await
}

/// Writes `contents` as the whole file, creating it or truncating it. The bytes are copied once
/// into the operation (as tokio's `fs::write` does); [`File::write_all_at_owned`] takes an owned
/// buffer instead.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("spindle-doc-write-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, b"bytes").await.unwrap();
///     spindle::fs::write(&path, String::from("str")).await.unwrap();
///     assert_eq!(spindle::fs::read(&path).await.unwrap(), b"str");
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let contents = contents.as_ref().to_vec();
    with_path("write", path.as_ref(), move |p| std::fs::write(p, contents)).await
}

/// Creates a directory (its parent must exist; `AlreadyExists` if it does).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-mkdir-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir(&dir).await.unwrap();
///     let e = spindle::fs::create_dir(&dir).await.unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
///     spindle::fs::remove_dir(&dir).await.unwrap();
/// });
/// ```
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    with_path("create_dir", path.as_ref(), |p| std::fs::create_dir(p)).await
}

/// Creates a directory and every missing parent (succeeds if it exists).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-mkdirs-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(dir.join("a/b/c")).await.unwrap();
///     assert!(spindle::fs::metadata(dir.join("a/b/c")).await.unwrap().is_dir());
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    with_path("create_dir_all", path.as_ref(), |p| std::fs::create_dir_all(p)).await
}

/// Removes a file (not a directory).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("spindle-doc-rm-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, "x").await.unwrap();
///     spindle::fs::remove_file(&path).await.unwrap();
///     assert!(spindle::fs::remove_file(&path).await.is_err());
/// });
/// ```
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    with_path("remove_file", path.as_ref(), |p| std::fs::remove_file(p)).await
}

/// Removes an empty directory.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-rmdir-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir(&dir).await.unwrap();
///     spindle::fs::remove_dir(&dir).await.unwrap();
/// });
/// ```
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    with_path("remove_dir", path.as_ref(), |p| std::fs::remove_dir(p)).await
}

/// Removes a directory and everything in it.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-rmall-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(dir.join("sub")).await.unwrap();
///     spindle::fs::write(dir.join("sub/f"), "x").await.unwrap();
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
///     assert!(spindle::fs::metadata(&dir).await.is_err());
/// });
/// ```
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    with_path("remove_dir_all", path.as_ref(), |p| std::fs::remove_dir_all(p)).await
}

/// Renames a file or directory, replacing `to` if it is a file.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-mv-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(&dir).await.unwrap();
///     spindle::fs::write(dir.join("a"), "x").await.unwrap();
///     spindle::fs::rename(dir.join("a"), dir.join("b")).await.unwrap();
///     assert_eq!(spindle::fs::read(dir.join("b")).await.unwrap(), b"x");
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    blocking::run("rename", move || std::fs::rename(&from, &to).map_err(|e| paths_error("rename", &from, &to, e))).await
}

/// Copies a file's contents (and permissions) to `to`, returning the number of bytes copied.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-cp-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(&dir).await.unwrap();
///     spindle::fs::write(dir.join("a"), "abc").await.unwrap();
///     assert_eq!(spindle::fs::copy(dir.join("a"), dir.join("b")).await.unwrap(), 3);
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    blocking::run("copy", move || std::fs::copy(&from, &to).map_err(|e| paths_error("copy", &from, &to, e))).await
}

/// Metadata of a path, following symlinks.
///
/// ```
/// spindle::block_on(async {
///     assert!(spindle::fs::metadata(std::env::temp_dir()).await.unwrap().is_dir());
/// });
/// ```
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    with_path("metadata", path.as_ref(), |p| std::fs::metadata(p)).await
}

/// Metadata of a path without following a final symlink.
///
/// ```
/// spindle::block_on(async {
///     assert!(spindle::fs::symlink_metadata(std::env::temp_dir()).await.is_ok());
/// });
/// ```
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    with_path("symlink_metadata", path.as_ref(), |p| std::fs::symlink_metadata(p)).await
}

/// Whether the path exists (`Ok(false)` if not; errors other than "not found" are returned).
///
/// ```
/// spindle::block_on(async {
///     assert!(spindle::fs::try_exists(std::env::temp_dir()).await.unwrap());
///     assert!(!spindle::fs::try_exists("/no/such/spindle/path").await.unwrap());
/// });
/// ```
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    with_path("try_exists", path.as_ref(), |p| p.try_exists()).await
}
