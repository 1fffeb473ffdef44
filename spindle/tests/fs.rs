//! spindle::fs on every runtime flavour (and outside any runtime).

mod common;

use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{each_flavor, open_fds, serial};
use spindle::fs::{self, File, OpenOptions};
use spindle::io::{IoBuf, IoBufMut};

/// Every entry of `dir`, by name.
async fn listing(dir: &Path) -> Vec<fs::DirEntry> {
    let mut out = Vec::new();
    let mut entries = fs::read_dir(dir).await.unwrap();
    while let Some(e) = entries.next_entry().await.unwrap() {
        out.push(e);
    }
    out.sort_by_key(|e| e.file_name());
    out
}

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "spindle-test-fs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn whole_file_helpers() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("whole");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let p = d.join("a.txt");
            fs::write(&p, "hello").await.unwrap();
            assert_eq!(fs::read(&p).await.unwrap(), b"hello");
            assert_eq!(fs::read_to_string(&p).await.unwrap(), "hello");
            assert_eq!(fs::metadata(&p).await.unwrap().len(), 5);
            assert_eq!(fs::copy(&p, d.join("b.txt")).await.unwrap(), 5);
            fs::rename(d.join("b.txt"), d.join("c.txt")).await.unwrap();
            assert!(!fs::try_exists(d.join("b.txt")).await.unwrap());
            assert_eq!(fs::read(d.join("c.txt")).await.unwrap(), b"hello");
            fs::create_dir_all(d.join("x/y/z")).await.unwrap();
            fs::create_dir(d.join("x/w")).await.unwrap();
            let names: Vec<_> = listing(&d).await.iter().map(|e| e.file_name()).collect();
            assert_eq!(names, ["a.txt", "c.txt", "x"]);
            for e in listing(&d.join("x")).await {
                assert!(e.file_type().await.unwrap().is_dir());
            }
            fs::remove_dir(d.join("x/w")).await.unwrap();
            fs::remove_file(d.join("c.txt")).await.unwrap();
            fs::remove_dir_all(d.join("x")).await.unwrap();
            assert_eq!(listing(&d).await.len(), 1);
            // Empty and large files.
            fs::write(d.join("empty"), b"").await.unwrap();
            assert!(fs::read(d.join("empty")).await.unwrap().is_empty());
            let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            fs::write(d.join("big"), &big).await.unwrap();
            assert_eq!(fs::read(d.join("big")).await.unwrap(), big);
        });
    });
}

#[test]
fn errors_name_the_path_and_never_panic() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("errors");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let missing = d.join("missing-file");
            let e = fs::read(&missing).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert!(e.to_string().starts_with(&format!("read {}: ", missing.display())), "{e}");

            let e = File::open(&missing).await.unwrap_err();
            assert!(e.to_string().starts_with("open "), "{e}");
            assert!(e.to_string().contains("missing-file"), "{e}");

            // A NUL byte in a path.
            let e = fs::read("bad\0path").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let e = fs::write("bad\0path", "x").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

            // Directories where files are expected, and the reverse.
            assert!(fs::read(&d).await.is_err());
            assert!(fs::remove_file(&d).await.is_err());
            fs::write(d.join("f"), "x").await.unwrap();
            let e = fs::read_dir(d.join("f")).await.unwrap_err();
            assert!(e.to_string().contains("read_dir"), "{e}");
            assert!(fs::create_dir_all(d.join("f/sub")).await.is_err());
            fs::create_dir(d.join("full")).await.unwrap();
            fs::write(d.join("full/f"), "x").await.unwrap();
            assert!(fs::remove_dir(d.join("full")).await.is_err());

            // Two-path errors name both.
            let e = fs::rename(d.join("nope"), d.join("dest")).await.unwrap_err();
            assert!(e.to_string().contains("nope") && e.to_string().contains("dest"), "{e}");
            let e = fs::copy(d.join("nope"), d.join("dest")).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);

            // Not UTF-8.
            fs::write(d.join("bin"), [0xff, 0xfe]).await.unwrap();
            assert_eq!(fs::read_to_string(d.join("bin")).await.unwrap_err().kind(), ErrorKind::InvalidData);

            // Options without an access mode.
            assert_eq!(OpenOptions::new().open(d.join("f")).await.unwrap_err().kind(), ErrorKind::InvalidInput);
            // create_new on an existing file.
            assert_eq!(File::create_new(d.join("f")).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
        });
    });
}

#[test]
fn positional_owned_io() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("positional");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let f = OpenOptions::new().read(true).write(true).create(true).open(d.join("f")).await.unwrap();
            let (res, buf) = f.write_at_owned(b"0123456789".to_vec(), 0).await;
            assert_eq!(res.unwrap(), 10);
            assert_eq!(buf, b"0123456789");

            // Read into a Vec's capacity: the length becomes the count.
            let (res, buf) = f.read_at_owned(Vec::with_capacity(4), 2).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"2345");
            // Reading at the end gives 0 and an empty buffer.
            let (res, buf) = f.read_at_owned(buf, 10).await;
            assert_eq!((res.unwrap(), buf.len()), (0, 0));

            // Append with a slice of the free tail.
            let mut buf = Vec::with_capacity(8);
            buf.extend_from_slice(b"ab");
            let (res, slice) = f.read_at_owned(buf.slice(2..5), 7).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(slice.into_inner(), b"ab789");

            // Write part of a buffer.
            let (res, slice) = f.write_at_owned(b"XXabcXX".to_vec().slice(2..5), 10).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(slice.into_inner(), b"XXabcXX");
            assert_eq!(fs::read(d.join("f")).await.unwrap(), b"0123456789abc");

            // Box<[u8]> and &'static str.
            let (res, b) = f.read_at_owned(vec![0u8; 3].into_boxed_slice(), 0).await;
            assert_eq!((res.unwrap(), &b[..]), (3, &b"012"[..]));
            let (res, _) = f.write_all_at_owned("end", 13).await;
            res.unwrap();

            // read_exact: success, then EOF with the partial bytes kept.
            let (res, buf) = f.read_exact_at_owned(Vec::with_capacity(6), 10).await;
            res.unwrap();
            assert_eq!(buf, b"abcend");
            let (res, buf) = f.read_exact_at_owned(Vec::with_capacity(10), 12).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            assert_eq!(buf, b"cend");

            // Large write_all and metadata/set_len/sync.
            let big = vec![7u8; 1 << 20];
            let (res, big) = f.write_all_at_owned(big, 100).await;
            res.unwrap();
            assert_eq!(big.len(), 1 << 20);
            assert_eq!(f.metadata().await.unwrap().len(), 100 + (1 << 20));
            f.set_len(5).await.unwrap();
            f.sync_all().await.unwrap();
            f.sync_data().await.unwrap();
            assert_eq!(fs::read(d.join("f")).await.unwrap(), b"01234");
            let g = f.try_clone().await.unwrap();
            let (res, buf) = g.read_at_owned(Vec::with_capacity(16), 0).await;
            assert_eq!((res.unwrap(), buf), (5, b"01234".to_vec()));
        });
    });
}

#[test]
fn failed_ops_give_the_buffer_back() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("giveback");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let f = File::create(d.join("wo")).await.unwrap(); // write-only
            let mut buf = Vec::with_capacity(32);
            buf.extend_from_slice(b"keep");
            let ptr = buf.stable_ptr();
            let (res, buf) = f.read_at_owned(buf, 0).await;
            let e = res.unwrap_err();
            assert!(e.to_string().starts_with("read_at "), "{e}");
            assert!(e.to_string().contains("wo"), "{e}");
            assert_eq!(buf, b"keep");
            assert_eq!(buf.stable_ptr(), ptr, "the same allocation comes back");

            let r = File::open(d.join("wo")).await.unwrap(); // read-only
            let (res, buf) = r.write_at_owned(buf, 0).await;
            assert!(res.is_err());
            assert_eq!(buf, b"keep");
            // Offsets past i64::MAX are rejected, not wrapped.
            let (res, buf) = r.read_at_owned(buf, u64::MAX).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(buf, b"keep");
        });
    });
}

#[test]
fn concurrent_positional_writes_from_many_tasks() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("concurrent");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let f = Arc::new(File::create(d.join("f")).await.unwrap());
            let handles: Vec<_> = (0..64u64)
                .map(|i| {
                    let f = f.clone();
                    spindle::spawn(async move {
                        let (res, _) = f.write_all_at_owned(vec![i as u8; 100], i * 100).await;
                        res.unwrap();
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
            let data = fs::read(d.join("f")).await.unwrap();
            assert_eq!(data.len(), 6400);
            for (i, chunk) in data.chunks(100).enumerate() {
                assert!(chunk.iter().all(|&b| b == i as u8));
            }
        });
    });
}

#[test]
fn dropped_operations_finish_in_the_background_and_leak_nothing() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("dropped");
        let d = tmp.path().to_owned();
        let before = open_fds();
        rt.block_on(async move {
            for i in 0..200 {
                let p = d.join(format!("f{i}"));
                // Poll each operation once (it is then running or queued on the blocking pool)
                // and drop it.
                let open = std::pin::pin!(File::create(p.clone()));
                let _ = futures::poll!(open);
                let f = File::create(&p).await.unwrap();
                let write = std::pin::pin!(f.write_all_at_owned(vec![1u8; 4096], 0));
                let _ = futures::poll!(write);
            }
            // The runtime still serves.
            fs::write(d.join("after"), "ok").await.unwrap();
            assert_eq!(fs::read(d.join("after")).await.unwrap(), b"ok");
        });
        // Every background job ends and closes what it opened. Waited for inside the runtime: a
        // dropped io_uring op's final completion (which releases its file) is reaped only while
        // the runtime is driven, and a current-thread runtime is not driven between `block_on`s
        // (seen once in a full run: two fds still open after 10 s of waiting outside).
        let deadline = Instant::now() + Duration::from_secs(10);
        rt.block_on(async {
            while open_fds() > before && Instant::now() < deadline {
                spindle::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(open_fds() <= before, "fds before: {before}, after: {}", open_fds());
    });
}

#[test]
fn works_outside_a_runtime() {
    let _serial = serial();
    let tmp = TempDir::new("outside");
    let d = tmp.path().to_owned();
    futures::executor::block_on(async move {
        fs::write(d.join("f"), "x").await.unwrap();
        assert_eq!(fs::read(d.join("f")).await.unwrap(), b"x");
        let f = File::open(d.join("f")).await.unwrap();
        let (res, buf) = f.read_at_owned(Vec::with_capacity(4), 0).await;
        assert_eq!((res.unwrap(), buf), (1, b"x".to_vec()));
        assert_eq!(fs::read(d.join("missing")).await.unwrap_err().kind(), ErrorKind::NotFound);
    });
}

#[test]
fn buffers_are_sent_to_the_job_not_copied() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("nocopy");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let f = File::create_new(d.join("f")).await.unwrap();
            let mut buf = vec![0u8; 64];
            let ptr = buf.stable_mut_ptr();
            let (res, buf) = f.write_at_owned(buf, 0).await;
            res.unwrap();
            assert_eq!(buf.stable_ptr(), ptr as *const u8);
        });
    });
}

/// A file op polled on a plain thread that entered an idle current-thread runtime's handle (by
/// another executor) completes: that runtime's ring is driven only in its `block_on`, so the op
/// goes to the always-driven fallback ring instead (on io_uring it waited on the idle ring).
#[test]
fn a_file_op_on_a_thread_that_entered_an_idle_current_thread_runtime_completes() {
    let dir = TempDir::new("entered-idle");
    let path = dir.path().join("f");
    std::fs::write(&path, b"hello").unwrap();
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let file = rt.block_on(File::open(&path)).unwrap();
    let handle = rt.handle().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let (res, buf) = futures::executor::block_on(file.read_at_owned(vec![0u8; 5], 0));
        let _ = tx.send(res.map(|n| buf[..n].to_vec()));
    });
    let read = rx.recv_timeout(Duration::from_secs(20)).expect("the read waited on the idle runtime's ring");
    assert_eq!(read.unwrap(), b"hello");
}

/// `read_exact_at_owned` that meets the end of the file leaves the buffer holding what was read
/// and no more, on both backends (on io_uring a buffer that came with a length kept its old bytes
/// past the end).
#[test]
fn read_exact_at_past_the_end_leaves_only_what_was_read() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("rexact-eof");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let p = d.join("f");
            fs::write(&p, "abc").await.unwrap();
            let f = File::open(&p).await.unwrap();
            let (res, buf) = f.read_exact_at_owned(vec![b'?'; 8], 0).await;
            let e = res.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
            assert!(e.to_string().starts_with("read_exact_at "), "{e}");
            assert_eq!(buf, b"abc");
        });
    });
}

/// Positional reads and writes on a FIFO fail with `ESPIPE` on both backends, as `pread` does
/// (io_uring ignores an op's offset on a stream: it consumed and appended pipe data).
#[test]
fn positional_io_on_a_fifo_is_refused_on_both_backends() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("fifo");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            let p = d.join("fifo");
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            // O_RDWR on a FIFO does not block on Linux.
            let std_file = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
            std::io::Write::write_all(&mut &std_file, b"hello").unwrap();
            let mut reader = std_file.try_clone().unwrap();
            let f = File::from_std(std_file);
            let (w, _) = f.write_at_owned(b"xyz".to_vec(), 1000).await;
            let (r, _) = f.read_at_owned(Vec::with_capacity(16), 0).await;
            let (re, _) = f.read_exact_at_owned(Vec::with_capacity(2), 0).await;
            for res in [w.map(|_| ()), r.map(|_| ()), re] {
                assert_eq!(spindle::io::raw_os_error(&res.unwrap_err()), Some(libc::ESPIPE));
            }
            // Nothing was consumed or appended (non-blocking, so a consumed pipe fails, not hangs).
            // SAFETY: fcntl on an fd we own.
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&reader), libc::F_SETFL, libc::O_NONBLOCK) };
            let mut rest = [0u8; 16];
            let n = std::io::Read::read(&mut reader, &mut rest).unwrap();
            assert_eq!(&rest[..n], b"hello");
        });
    });
}

/// fs errors name the operation and the path, and keep the system's error code underneath:
/// `spindle::io::raw_os_error` finds it (`ELOOP` from an `O_NOFOLLOW` open has no stable kind).
#[test]
fn fs_errors_keep_the_system_error_code() {
    let _serial = serial();
    each_flavor(|rt| {
        let tmp = TempDir::new("errno");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            std::fs::create_dir(d.join("full")).unwrap();
            std::fs::write(d.join("full/x"), "x").unwrap();
            let e = fs::remove_dir(d.join("full")).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DirectoryNotEmpty);
            assert!(e.to_string().starts_with("remove_dir "), "{e}");
            assert_eq!(spindle::io::raw_os_error(&e), Some(libc::ENOTEMPTY));
            std::os::unix::fs::symlink(d.join("full/x"), d.join("link")).unwrap();
            let e =
                OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(d.join("link")).await.unwrap_err();
            assert_eq!(spindle::io::raw_os_error(&e), Some(libc::ELOOP), "{e}");
            let ro = File::open(d.join("full/x")).await.unwrap();
            let (res, _) = ro.write_all_at_owned(b"xyz".to_vec(), 0).await;
            let e = res.unwrap_err();
            assert!(e.to_string().starts_with("write_all_at "), "{e}");
            assert_eq!(spindle::io::raw_os_error(&e), Some(libc::EBADF));
        });
    });
}

/// A directory of several batches is listed whole, each entry once, even when most `next_entry`
/// calls are cancelled while their batch is being read (the batch is kept for the next call);
/// the `Stream` impl yields the same entries. An entry's metadata does not follow a symlink, as
/// in std and tokio (a link to the directory itself is a link, not a directory).
#[test]
fn read_dir_is_cancel_safe_and_does_not_follow_links() {
    const FILES: usize = 300;
    let _serial = serial();
    // How many calls were cancelled, over every flavour (a batch job can finish before its first
    // poll, so one flavour alone may see none).
    static CANCELLED: AtomicUsize = AtomicUsize::new(0);
    each_flavor(|rt| {
        let tmp = TempDir::new("read-dir");
        let d = tmp.path().to_owned();
        rt.block_on(async move {
            for i in 0..FILES {
                fs::write(d.join(format!("f{i:03}")), "").await.unwrap();
            }
            std::os::unix::fs::symlink(&d, d.join("loop")).unwrap();
            let mut entries = fs::read_dir(&d).await.unwrap();
            let mut names = Vec::new();
            loop {
                // One poll, then the future is dropped if it is not done.
                let mut next = std::pin::pin!(entries.next_entry());
                let once = std::future::poll_fn(|cx| std::task::Poll::Ready(next.as_mut().poll(cx))).await;
                match once {
                    std::task::Poll::Ready(Ok(Some(e))) => names.push(e),
                    std::task::Poll::Ready(Ok(None)) => break,
                    std::task::Poll::Ready(Err(e)) => panic!("{e}"),
                    std::task::Poll::Pending => {
                        CANCELLED.fetch_add(1, Ordering::Relaxed);
                        // Let the batch job run.
                        spindle::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            let mut got: Vec<String> = names.iter().map(|e| e.file_name().into_string().unwrap()).collect();
            got.sort();
            let mut want: Vec<String> = (0..FILES).map(|i| format!("f{i:03}")).collect();
            want.push("loop".into());
            assert_eq!(got, want);
            let link = names.iter().find(|e| e.file_name() == "loop").unwrap();
            assert!(link.file_type().await.unwrap().is_symlink());
            assert!(link.metadata().await.unwrap().file_type().is_symlink());
            assert!(fs::metadata(link.path()).await.unwrap().is_dir());

            let mut stream = fs::read_dir(&d).await.unwrap();
            let mut streamed = 0;
            while let Some(e) =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)).await
            {
                e.unwrap();
                streamed += 1;
            }
            assert_eq!(streamed, FILES + 1);
        });
    });
    assert!(CANCELLED.load(Ordering::Relaxed) > 0, "no call was cancelled: the test did not test that");
}

/// A batch that cannot be read (the listing's runtime is gone, so its blocking job never runs)
/// fails that call, naming the directory, and loses nothing: once a job can run again (here:
/// outside any runtime, on a thread of its own) the listing goes on from where it was.
#[test]
fn read_dir_survives_a_batch_job_that_could_not_run() {
    let _serial = serial();
    let tmp = TempDir::new("read-dir-gone");
    let d = tmp.path().to_owned();
    for i in 0..100 {
        std::fs::write(d.join(format!("f{i:03}")), "").unwrap();
    }
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let handle = rt.handle().clone();
    let (mut entries, mut names) = rt.block_on(async {
        let mut entries = fs::read_dir(&d).await.unwrap();
        let mut names = Vec::new();
        for _ in 0..10 {
            names.push(entries.next_entry().await.unwrap().unwrap().file_name());
        }
        (entries, names)
    });
    drop(rt);
    {
        let _in = handle.enter();
        // Past the first batch (read with the opening): a job is needed, and cannot run.
        let mut failed = false;
        for _ in 0..40 {
            match futures::executor::block_on(entries.next_entry()) {
                Ok(Some(e)) => names.push(e.file_name()),
                Ok(None) => panic!("the listing ended early after {} entries", names.len()),
                Err(e) => {
                    assert!(e.to_string().contains(&*d.to_string_lossy()), "{e}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "no batch job failed: the test did not test that");
    }
    drop(handle);
    while let Some(e) = futures::executor::block_on(entries.next_entry()).unwrap() {
        names.push(e.file_name());
    }
    names.sort();
    let want: Vec<_> = (0..100).map(|i| std::ffi::OsString::from(format!("f{i:03}"))).collect();
    assert_eq!(names, want);
}

/// The stream-style traits (`fs::cursor`): what is written through them reads back through
/// them, across several chunks, with seeks in between; positional I/O does not move the cursor.
#[test]
fn cursor_traits_write_read_and_seek() {
    use futures::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    use std::io::SeekFrom;
    let dir = TempDir::new("cursor");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    each_flavor(|rt| {
        let path = dir.0.join("f");
        let data = data.clone();
        rt.block_on(async move {
            let mut f =
                OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).await.unwrap();
            // More than one chunk (1 MiB) in one write_all, then a small one.
            f.write_all(&data).await.unwrap();
            f.write_all(b"tail").await.unwrap();
            f.flush().await.unwrap();
            assert_eq!(f.seek(SeekFrom::Current(0)).await.unwrap(), data.len() as u64 + 4);
            // A positional read does not move the cursor.
            let (res, buf) = f.read_at_owned(vec![0u8; 4], 0).await;
            res.unwrap();
            assert_eq!(buf, &data[..4]);
            assert_eq!(f.seek(SeekFrom::Start(0)).await.unwrap(), 0);
            let mut back = Vec::new();
            f.read_to_end(&mut back).await.unwrap();
            assert_eq!(back.len(), data.len() + 4);
            assert!(back[..data.len()] == data[..] && &back[data.len()..] == b"tail");
            // End of file, then a seek back and a read of exactly what is there.
            let mut more = [0u8; 8];
            assert_eq!(f.read(&mut more).await.unwrap(), 0);
            assert_eq!(f.seek(SeekFrom::End(-4)).await.unwrap(), data.len() as u64);
            f.read_exact(&mut more[..4]).await.unwrap();
            assert_eq!(&more[..4], b"tail");
            // Overwrite in the middle.
            f.seek(SeekFrom::Start(10)).await.unwrap();
            f.write_all(b"XYZ").await.unwrap();
            f.flush().await.unwrap();
            let (res, buf) = f.read_at_owned(vec![0u8; 16], 8).await;
            res.unwrap();
            assert_eq!(&buf[2..5], b"XYZ");
            assert_eq!(buf[..2], data[8..10]);
            assert_eq!(buf[5..], data[13..24]);
        });
    });
}

/// A read that finished for a longer slice than the caller then polls with keeps the rest, and
/// a write or seek after it goes where the caller is (not where the kernel read up to); a read
/// polled once and abandoned loses nothing.
#[test]
fn cursor_read_ahead_is_given_back_and_abandoned_reads_lose_nothing() {
    use futures::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    use std::io::SeekFrom;
    use std::pin::Pin;
    use std::task::Poll;
    let dir = TempDir::new("cursor-ahead");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            fs::write(&path, "0123456789abcdefghijklmnopqrstuvwxyzABCD").await.unwrap();
            let mut f = OpenOptions::new().read(true).write(true).open(&path).await.unwrap();
            // A read for 16 bytes, polled once and then abandoned (whatever it returned).
            let mut big = [0u8; 16];
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll_read(cx, &mut big))).await;
            let got = match first {
                Poll::Ready(r) => r.unwrap(),
                Poll::Pending => 0,
            };
            // The next reads, with a smaller slice, see the bytes right after what was returned.
            let mut small = [0u8; 4];
            f.read_exact(&mut small).await.unwrap();
            let seen = got + 4;
            assert_eq!(&small, &b"0123456789abcdefghijklmnopqrstuvwxyzABCD"[got..seen]);
            // A write lands at the caller's position, not past the read-ahead.
            f.write_all(b"__").await.unwrap();
            f.flush().await.unwrap();
            assert_eq!(f.seek(SeekFrom::Current(0)).await.unwrap(), seen as u64 + 2);
            // And a seek relative to the caller's position, with bytes read ahead again.
            let mut one = [0u8; 1];
            f.read_exact(&mut one).await.unwrap();
            assert_eq!(f.seek(SeekFrom::Current(-1)).await.unwrap(), seen as u64 + 2);
            let mut rest = String::new();
            f.read_to_string(&mut rest).await.unwrap();
            let mut expect = b"0123456789abcdefghijklmnopqrstuvwxyzABCD".to_vec();
            expect[seen..seen + 2].copy_from_slice(b"__");
            assert_eq!(rest.as_bytes(), &expect[seen + 2..]);
            assert_eq!(fs::read(&path).await.unwrap(), expect);
        });
    });
}

/// A write's failure is reported (here: the file is read-only), by the write or by the flush.
#[test]
fn cursor_write_errors_are_reported() {
    use futures::AsyncWriteExt;
    let dir = TempDir::new("cursor-err");
    each_flavor(|rt| {
        let path = dir.0.join("ro");
        rt.block_on(async {
            fs::write(&path, "x").await.unwrap();
            let mut f = File::open(&path).await.unwrap();
            let r = match f.write_all(b"no").await {
                Ok(()) => f.flush().await,
                e => e,
            };
            let e = r.expect_err("a write to a read-only file succeeded");
            assert_eq!(spindle::io::raw_os_error(&e), Some(libc::EBADF), "{e}");
            assert!(e.to_string().contains("ro"), "{e}");
        });
    });
}

/// Appending files append through the traits (the writes use the file position, as write(2)).
#[test]
fn cursor_writes_append_with_o_append() {
    use futures::AsyncWriteExt;
    let dir = TempDir::new("cursor-append");
    each_flavor(|rt| {
        let path = dir.0.join("log");
        rt.block_on(async {
            fs::write(&path, "start;").await.unwrap();
            let mut f = OpenOptions::new().append(true).open(&path).await.unwrap();
            f.write_all(b"one;").await.unwrap();
            f.write_all(b"two;").await.unwrap();
            f.flush().await.unwrap();
            assert_eq!(fs::read(&path).await.unwrap(), b"start;one;two;");
        });
    });
}

#[cfg(feature = "tokio-io")]
#[test]
fn cursor_tokio_traits() {
    use std::future::poll_fn;
    use std::io::SeekFrom;
    use std::pin::Pin;
    use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
    let dir = TempDir::new("cursor-tokio");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            let mut f =
                OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).await.unwrap();
            let n = poll_fn(|cx| AsyncWrite::poll_write(Pin::new(&mut f), cx, b"hello tokio")).await.unwrap();
            assert_eq!(n, 11);
            poll_fn(|cx| AsyncWrite::poll_flush(Pin::new(&mut f), cx)).await.unwrap();
            Pin::new(&mut f).start_seek(SeekFrom::Start(6)).unwrap();
            assert!(Pin::new(&mut f).start_seek(SeekFrom::Start(0)).is_err(), "second start_seek");
            assert_eq!(poll_fn(|cx| Pin::new(&mut f).poll_complete(cx)).await.unwrap(), 6);
            let mut storage = [0u8; 16];
            let mut rb = ReadBuf::new(&mut storage);
            poll_fn(|cx| AsyncRead::poll_read(Pin::new(&mut f), cx, &mut rb)).await.unwrap();
            assert_eq!(rb.filled(), b"tokio");
        });
    });
}

/// The kernel's position of `f`'s fd.
fn kernel_pos(f: &File) -> i64 {
    use std::os::fd::AsRawFd;
    // SAFETY: `lseek` by 0 from the current position only reads it.
    unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_CUR) }
}

/// What `write_all` reported written is in the file when it returns: dropping the `File` or the
/// whole runtime right after loses nothing (a write is reported once it landed), and `sync_all`,
/// `set_len` and a flush on another runtime see it done.
#[test]
fn cursor_writes_have_landed_when_reported() {
    use futures::AsyncWriteExt;
    let dir = TempDir::new("cursor-landed");
    let data: Vec<u8> = (0..(1 << 20) + 77).map(|i: u32| (i % 251) as u8).collect();
    for round in 0..3 {
        for (name, rt) in common::flavors() {
            let path = dir.0.join(format!("f{round}-{name}"));
            let (f, len_at_sync) = rt.block_on(async {
                let mut f = File::create(&path).await.unwrap();
                f.write_all(&data).await.unwrap();
                assert_eq!(std::fs::metadata(&path).unwrap().len(), data.len() as u64, "{name}: after write_all");
                f.sync_all().await.unwrap();
                (f, std::fs::metadata(&path).unwrap().len())
            });
            assert_eq!(len_at_sync, data.len() as u64, "{name}");
            drop(rt); // with the file still open: nothing is in flight to lose
                      // A flush on another runtime has nothing to wait for.
            let mut f = f;
            spindle::block_on(async { f.flush().await.unwrap() });
            drop(f);
            assert_eq!(std::fs::read(&path).unwrap(), data, "{name}");
        }
    }
    each_flavor(|rt| {
        let path = dir.0.join("setlen");
        rt.block_on(async {
            let mut f = File::create(&path).await.unwrap();
            f.write_all(&data).await.unwrap();
            f.set_len(0).await.unwrap();
            assert_eq!(f.metadata().await.unwrap().len(), 0);
        });
    });
}

/// A read takes no more than the caller's slice, so the position (shared with a clone, and
/// what the next read sees after a positional write) is where the caller is; on a FIFO a write
/// after a short read works (no position to give back).
#[test]
fn cursor_reads_take_only_the_callers_slice() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("cursor-slice");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            fs::write(&path, b"0123456789abcdefghijklmnopqrstuvwxyz").await.unwrap();
            let mut f = OpenOptions::new().read(true).write(true).open(&path).await.unwrap();
            let mut b = [0u8; 4];
            f.read_exact(&mut b).await.unwrap();
            assert_eq!((&b, kernel_pos(&f)), (b"0123", 4));
            let (r, _) = f.write_at_owned(b"WXYZ".to_vec(), 4).await;
            r.unwrap();
            f.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"WXYZ", "a stream read returned bytes read before a positional write");
            let mut g = f.try_clone().await.unwrap();
            let n = g.read(&mut b).await.unwrap();
            assert_eq!(&b[..n], b"89ab", "the clone continues where the caller is");
        });
        let fifo = dir.0.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut f = File::from_std(std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap());
        rt.block_on(async {
            f.write_all(b"hello").await.unwrap();
            let mut one = [0u8; 1];
            f.read_exact(&mut one).await.unwrap();
            assert_eq!(&one, b"h");
            f.write_all(b"!").await.unwrap();
            let mut rest = [0u8; 5];
            f.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"ello!");
        });
    });
}

/// Polls `fut` once with a no-op waker.
fn poll_once<T>(fut: impl Future<Output = T>) -> std::task::Poll<T> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx)
}

/// A poll_write left Pending, then polled again with a longer slice at the same address (what
/// tokio's io::copy does when its reader gave more meanwhile): each byte must be written once.
#[test]
fn cursor_pending_write_polled_again_with_a_longer_slice_writes_once() {
    use futures::AsyncWrite;
    let dir = TempDir::new("cursor-longer");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            let mut f = File::create(&path).await.unwrap();
            let buf: Vec<u8> = (0..200u8).collect();
            let first = poll_once(std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll_write(cx, &buf[..100]))
            }));
            let first = match first {
                std::task::Poll::Ready(p) => p,
                _ => unreachable!(),
            };
            let was_pending = first.is_pending();
            let mut done = match first {
                std::task::Poll::Ready(n) => n.unwrap(),
                std::task::Poll::Pending => 0,
            };
            while done < 200 {
                let n = std::future::poll_fn(|cx| std::pin::Pin::new(&mut f).poll_write(cx, &buf[done..200]))
                    .await
                    .unwrap();
                done += n;
            }
            assert_eq!(fs::read(&path).await.unwrap(), buf, "first poll Pending: {was_pending}");
        });
    });
}

/// tokio::io::copy from a reader that gives small chunks into a File.
#[cfg(feature = "tokio-io")]
#[test]
fn cursor_tokio_copy_in_small_chunks_writes_each_byte_once() {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Chunks(Vec<u8>, usize);
    impl tokio::io::AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = 100.min(self.0.len() - self.1).min(b.remaining());
            let s = self.1;
            b.put_slice(&self.0[s..s + n]);
            self.1 += n;
            Poll::Ready(Ok(()))
        }
    }
    let dir = TempDir::new("cursor-copy");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            let mut f = File::create(&path).await.unwrap();
            let n = tokio::io::copy(&mut Chunks(data.clone(), 0), &mut f).await.unwrap();
            assert_eq!(n, data.len() as u64);
            let got = fs::read(&path).await.unwrap();
            assert_eq!(got.len(), data.len(), "tokio::io::copy reported {n} but the file has {}", got.len());
            assert!(got == data);
        });
    });
}

/// A write polled once and dropped (cancelled), then the same buffer refilled with other bytes
/// and written: the new bytes must be in the file once write_all returns.
#[test]
fn cursor_a_refilled_buffer_is_written_anew() {
    use futures::{AsyncWrite, AsyncWriteExt};
    let dir = TempDir::new("cursor-refill");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            let mut f = File::create(&path).await.unwrap();
            let mut buf = [b'A'; 64];
            let first = poll_once(std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll_write(cx, &buf))
            }));
            let pending = matches!(first, std::task::Poll::Ready(std::task::Poll::Pending));
            buf.fill(b'B');
            f.write_all(&buf).await.unwrap();
            let got = fs::read(&path).await.unwrap();
            assert!(got.ends_with(&[b'B'; 64]), "first Pending: {pending}; file: {:?}", String::from_utf8_lossy(&got));
        });
    });
}

/// Two tasks waiting in sync_data on a shared File for an op a dropped call left running: both
/// must wake when it ends.
#[test]
fn cursor_every_task_waiting_for_an_abandoned_operation_wakes() {
    use futures::AsyncWrite;
    let dir = TempDir::new("cursor-settle");
    each_flavor(|rt| {
        let fifo = dir.0.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut f = File::from_std(std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap());
        let fifo2 = fifo.clone();
        common::bounded(rt, 20, async move {
            let big = vec![7u8; 1 << 20];
            // Abandon a 1 MiB write into a 64 KiB pipe: it blocks until drained.
            let _ = poll_once(std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll_write(cx, &big))
            }));
            let f = Arc::new(f);
            let (a, b) = (f.clone(), f.clone());
            let done = Arc::new(AtomicUsize::new(0));
            let waiters = 2;
            for w in [a, b] {
                let done = done.clone();
                spindle::spawn(async move {
                    let _ = w.sync_data().await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            spindle::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(done.load(Ordering::SeqCst), 0);
            let drain = std::thread::spawn(move || {
                use std::io::Read;
                let mut r = std::fs::File::open(&fifo2).unwrap();
                let mut got = 0;
                let mut b = vec![0u8; 65536];
                while got < (1 << 20) {
                    got += r.read(&mut b).unwrap();
                }
            });
            // Both finish once the drain lets the write end (a lost wakeup leaves one waiting).
            let deadline = Instant::now() + Duration::from_secs(10);
            while done.load(Ordering::SeqCst) < waiters {
                assert!(
                    Instant::now() < deadline,
                    "{} of {waiters} sync_data waiters finished",
                    done.load(Ordering::SeqCst)
                );
                spindle::time::sleep(Duration::from_millis(5)).await;
            }
            drain.join().unwrap();
        });
    });
}

/// A clone made while bytes are read ahead (a read abandoned after one poll) starts where the
/// caller is: the shared position does not run ahead of what the caller saw.
#[test]
fn cursor_a_clone_starts_where_the_caller_is() {
    use futures::{AsyncRead, AsyncReadExt};
    let dir = TempDir::new("cursor-clone");
    each_flavor(|rt| {
        let path = dir.0.join("f");
        rt.block_on(async {
            fs::write(&path, b"0123456789abcdefghij").await.unwrap();
            let mut f = File::open(&path).await.unwrap();
            let mut big = [0u8; 16];
            let got = match poll_once(std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll_read(cx, &mut big))
            })) {
                std::task::Poll::Ready(std::task::Poll::Ready(r)) => r.unwrap(),
                _ => 0,
            };
            let mut g = f.try_clone().await.unwrap();
            let mut rest = Vec::new();
            g.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, &b"0123456789abcdefghij"[got..]);
        });
    });
}
