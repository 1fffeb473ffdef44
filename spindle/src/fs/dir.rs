//! [`read_dir`], [`ReadDir`] and [`DirEntry`], with tokio's API: `read_dir(path).await?` opens
//! the listing, `next_entry().await?` yields the entries one by one.
//!
//! # Contract
//!
//! - Entries are read from the OS in batches of [`BATCH`] on the blocking pool; a batch's job
//!   also learns each entry's type there (free when the file system reports it while listing,
//!   an `lstat` otherwise), so [`DirEntry::file_type`] answers without a thread hop.
//! - A [`ReadDir`] keeps its batch job's handle in itself, so a `next_entry` future dropped while
//!   its batch is being read loses nothing: the next call picks that batch up. The job always
//!   hands the listing back, even when it could not run (runtime shutting down, no thread): that
//!   call fails, naming the directory, and the next one tries again from where the listing was.
//! - An entry that vanishes between the listing and the `lstat` of its type is still yielded
//!   (the listing said it was there); only asking for its type or metadata then fails, naming
//!   its path. One failing entry never fails the listing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::{path_error, FileType, Metadata};
use crate::io::blocking;

/// Entries read from the OS per blocking job (tokio reads 32 too).
const BATCH: usize = 32;

/// An entry of a directory listed by [`read_dir`]: its path and name, and its type as seen while
/// listing.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-entry-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(&dir).await.unwrap();
///     spindle::fs::write(dir.join("f"), "").await.unwrap();
///     let mut entries = spindle::fs::read_dir(&dir).await.unwrap();
///     let entry = entries.next_entry().await.unwrap().unwrap();
///     assert_eq!(entry.file_name(), "f");
///     assert!(entry.file_type().await.unwrap().is_file());
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
#[derive(Debug, Clone)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    /// Learned while listing; `None` if that failed (the entry vanished, or no permission).
    file_type: Option<FileType>,
}

impl DirEntry {
    /// The entry's full path (the listed directory joined with its name).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     while let Some(e) = entries.next_entry().await.unwrap() {
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
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     let first = entries.next_entry().await.unwrap().unwrap();
    ///     assert!(!first.file_name().is_empty());
    /// });
    /// ```
    pub fn file_name(&self) -> OsString {
        self.file_name.clone()
    }

    /// The entry's type, not following a symlink (as `std::fs::DirEntry::file_type`). Usually
    /// known from the listing, with no system call; else an `lstat` on the blocking pool.
    ///
    /// # Errors
    /// The `lstat`'s, naming the path (the entry was removed since it was listed, say).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     let mut dirs = 0;
    ///     while let Some(e) = entries.next_entry().await.unwrap() {
    ///         dirs += e.file_type().await.unwrap().is_dir() as usize;
    ///     }
    ///     assert!(dirs > 0);
    /// });
    /// ```
    pub async fn file_type(&self) -> io::Result<FileType> {
        match self.file_type {
            Some(t) => Ok(t),
            None => Ok(self.metadata().await?.file_type()),
        }
    }

    /// The entry's metadata, not following a symlink (as `std::fs::DirEntry::metadata`: a
    /// listing walked with it never loops through a link to a parent); a system call on the
    /// blocking pool. For a link's target, call [`fs::metadata`](super::metadata) on
    /// [`path`](Self::path).
    ///
    /// # Errors
    /// The system call's, naming the path.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     while let Some(e) = entries.next_entry().await.unwrap() {
    ///         if e.file_type().await.unwrap().is_dir() {
    ///             assert!(e.metadata().await.unwrap().is_dir());
    ///         }
    ///     }
    /// });
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        super::symlink_metadata(&self.path).await
    }
}

/// What one batch job gives back: whether the listing has more, and the entries or errors it
/// read.
type Batch = (bool, VecDeque<io::Result<DirEntry>>);

/// A batch job's future: its result, and the listing (always handed back).
type BatchJob = Pin<Box<dyn Future<Output = (io::Result<Batch>, std::fs::ReadDir)> + Send + Sync>>;

/// The entries of a directory, from [`read_dir`], as in tokio: call
/// [`next_entry`](Self::next_entry) until it gives `None`. Also a `futures_core::Stream` of
/// `io::Result<DirEntry>`.
///
/// Entries come in the order the OS lists them, without `.` and `..`.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-read-dir-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(dir.join("sub")).await.unwrap();
///     spindle::fs::write(dir.join("a.txt"), "").await.unwrap();
///     let mut names = Vec::new();
///     let mut entries = spindle::fs::read_dir(&dir).await.unwrap();
///     while let Some(entry) = entries.next_entry().await.unwrap() {
///         names.push(entry.file_name());
///     }
///     names.sort();
///     assert_eq!(names, ["a.txt", "sub"]);
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub struct ReadDir {
    path: PathBuf,
    /// Read from the OS, not yet yielded.
    ready: VecDeque<io::Result<DirEntry>>,
    state: State,
}

enum State {
    /// The listing, between batches.
    Idle(std::fs::ReadDir),
    /// A batch job is running; it hands the listing back.
    Reading(BatchJob),
    /// The OS listed everything.
    Done,
}

impl ReadDir {
    /// The next entry, or `None` once every entry was yielded.
    ///
    /// Cancel-safe: if the future is dropped before it finishes, no entry is lost; the next
    /// call yields it.
    ///
    /// # Errors
    /// An entry the OS could not read, or a batch that could not be read (the runtime is
    /// shutting down), naming the directory. After the second kind the next call tries again;
    /// after the first the OS's listing may have ended (std's does on Linux).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     let mut n = 0;
    ///     while let Some(_) = entries.next_entry().await.unwrap() {
    ///         n += 1;
    ///     }
    ///     assert!(n > 0);
    ///     assert!(entries.next_entry().await.unwrap().is_none());
    /// });
    /// ```
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        std::future::poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// Polls for the next entry (see [`next_entry`](Self::next_entry)): `Ready(Ok(None))` at the
    /// end.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut entries = spindle::fs::read_dir("/").await.unwrap();
    ///     let first = std::future::poll_fn(|cx| entries.poll_next_entry(cx)).await.unwrap();
    ///     assert!(first.is_some());
    /// });
    /// ```
    pub fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<DirEntry>>> {
        loop {
            if let Some(next) = self.ready.pop_front() {
                return Poll::Ready(next.map(Some));
            }
            match &mut self.state {
                State::Done => return Poll::Ready(Ok(None)),
                State::Reading(job) => {
                    let (batch, listing) = ready!(job.as_mut().poll(cx));
                    match batch {
                        Ok((more, entries)) => {
                            self.ready = entries;
                            self.state = if more { State::Idle(listing) } else { State::Done };
                        }
                        // The job could not run: the next call tries again.
                        Err(e) => {
                            self.state = State::Idle(listing);
                            return Poll::Ready(Err(path_error("read_dir", &self.path, e)));
                        }
                    }
                }
                State::Idle(_) => {
                    let State::Idle(listing) = std::mem::replace(&mut self.state, State::Done) else { unreachable!() };
                    let path = self.path.clone();
                    let job = blocking::run_buf("read_dir", listing, move |listing| Ok(read_batch(listing, &path)));
                    self.state = State::Reading(Box::pin(job));
                }
            }
        }
    }
}

/// Up to [`BATCH`] entries of `listing`, with their types (see the module docs), and whether
/// it has more.
fn read_batch(listing: &mut std::fs::ReadDir, dir: &Path) -> Batch {
    let mut entries = VecDeque::with_capacity(BATCH);
    for _ in 0..BATCH {
        match listing.next() {
            None => return (false, entries),
            Some(Ok(e)) => entries.push_back(Ok(DirEntry {
                path: e.path(),
                file_name: e.file_name(),
                file_type: e.file_type().ok(),
            })),
            Some(Err(e)) => entries.push_back(Err(path_error("read_dir", dir, e))),
        }
    }
    (true, entries)
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir").field("path", &self.path).field("buffered", &self.ready.len()).finish()
    }
}

impl futures_core::Stream for ReadDir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<DirEntry>>> {
        self.get_mut().poll_next_entry(cx).map(Result::transpose)
    }
}

/// Opens a directory's listing (without `.` and `..`), as in tokio; see [`ReadDir`].
///
/// # Errors
/// Opening it failed (missing, not a directory, no permission); the error names the path.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("spindle-doc-read-dir-fn-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::create_dir_all(&dir).await.unwrap();
///     spindle::fs::write(dir.join("a.txt"), "").await.unwrap();
///     let e = spindle::fs::read_dir(dir.join("a.txt")).await.unwrap_err();
///     assert!(e.to_string().contains("a.txt"), "{e}");
///     let mut entries = spindle::fs::read_dir(&dir).await.unwrap();
///     assert_eq!(entries.next_entry().await.unwrap().unwrap().file_name(), "a.txt");
///     assert!(entries.next_entry().await.unwrap().is_none());
///     spindle::fs::remove_dir_all(&dir).await.unwrap();
/// });
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_owned();
    let opened = path.clone();
    let (listing, (more, ready)) = blocking::run("read_dir", move || {
        let mut listing = std::fs::read_dir(&opened).map_err(|e| path_error("read_dir", &opened, e))?;
        // The first batch in the same job: a small directory is listed in one thread hop.
        let batch = read_batch(&mut listing, &opened);
        Ok((listing, batch))
    })
    .await?;
    Ok(ReadDir { path, ready, state: if more { State::Idle(listing) } else { State::Done } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry whose type could not be learned while listing (it vanished before the
    /// `lstat`, on a file system without `d_type`) is still yielded; asking its type then
    /// fails with the `lstat`'s error, naming the path.
    #[test]
    fn an_entry_that_vanished_is_listed_and_its_type_names_it() {
        crate::block_on(async {
            let gone = std::env::temp_dir().join(format!("spindle-vanished-{}", std::process::id()));
            let e = DirEntry { path: gone.clone(), file_name: "x".into(), file_type: None };
            let err = e.file_type().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert!(err.to_string().contains(&*gone.to_string_lossy()), "{err}");
        });
    }
}
