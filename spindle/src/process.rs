//! Child processes: [`Command`] spawns, [`Child::wait`] awaits the exit, and the child's piped
//! standard streams are async pipes ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]).
//!
//! # Contract
//!
//! - `Command` wraps `std::process::Command` (the same builder methods, and `From` one), so a
//!   child is set up exactly as with std; [`Command::spawn`] returns at once.
//! - Waiting for the exit never blocks a thread: it waits for the child's *pidfd* to become
//!   readable (Linux 5.3+), a readiness watch like a socket's, on epoll or io_uring, then reaps the
//!   child with a non-blocking `waitpid`. Where `pidfd_open` is refused (old kernels, seccomp
//!   filters), the wait polls for the exit instead, backing off from 1 ms to 50 ms.
//! - The pipes are the std pipe fds made non-blocking and watched by the current runtime's
//!   reactor (its worker's, or the fallback reactor outside a runtime), as
//!   [`net::unix::pipe`](crate::net::unix::pipe) ends; reads and writes go straight into the
//!   caller's buffer: `futures_io` traits always, tokio's under `tokio-io`.
//! - [`Child::wait`] closes the child's stdin first (a child reading its input to the end would
//!   otherwise never exit), as tokio's does.
//! - Nothing is left behind: a `Child` dropped before its exit was reaped (killed first with
//!   [`Command::kill_on_drop`]) is kept in a process-wide list, and a thread of spindle's
//!   (`spindle-reaper`, started with the first such child) reaps it, without blocking, when a
//!   `SIGCHLD` says some child exited, as tokio's orphan queue does. (Where a `SIGCHLD` handler
//!   cannot be installed, the list is reaped at each spawn and each `Child` drop instead.)

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::driver::{Direction, Registration};
use crate::net::unix::pipe::{Receiver, Sender};

/// A process builder: `std::process::Command`'s methods, with [`spawn`](Self::spawn),
/// [`status`](Self::status) and [`output`](Self::output) that never block the runtime.
///
/// ```
/// # spindle::runtime::Runtime::new().unwrap().block_on(async {
/// use spindle::process::Command;
/// let out = Command::new("echo").arg("hello").output().await.unwrap();
/// assert!(out.status.success());
/// assert_eq!(out.stdout, b"hello\n");
/// # });
/// ```
#[derive(Debug)]
pub struct Command {
    std: std::process::Command,
    /// Which streams were set through this type (for [`output`](Self::output)'s defaults).
    set: [bool; 3],
    kill_on_drop: bool,
}

impl From<std::process::Command> for Command {
    /// Takes over a std builder (whose standard streams count as unset for
    /// [`Command::output`]).
    ///
    /// ```
    /// let mut std_cmd = std::process::Command::new("true");
    /// std_cmd.env("A", "1");
    /// let cmd = spindle::process::Command::from(std_cmd);
    /// assert_eq!(cmd.as_std().get_program(), "true");
    /// ```
    fn from(std: std::process::Command) -> Command {
        Command { std, set: [false; 3], kill_on_drop: false }
    }
}

impl Command {
    /// A command running `program` (looked up in `PATH` if it has no slash), with no arguments,
    /// the parent's environment and working directory, and inherited standard streams.
    ///
    /// ```
    /// let cmd = spindle::process::Command::new("ls");
    /// assert_eq!(cmd.as_std().get_program(), "ls");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Adds an argument.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("ls");
    /// cmd.arg("-l");
    /// assert_eq!(cmd.as_std().get_args().collect::<Vec<_>>(), ["-l"]);
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("ls");
    /// cmd.args(["-l", "-a"]);
    /// assert_eq!(cmd.as_std().get_args().count(), 2);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("env");
    /// cmd.env("GREETING", "hi");
    /// assert_eq!(cmd.as_std().get_envs().count(), 1);
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets several environment variables for the child.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("env");
    /// cmd.envs([("A", "1"), ("B", "2")]);
    /// assert_eq!(cmd.as_std().get_envs().count(), 2);
    /// ```
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("env");
    /// cmd.env_remove("HOME");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Gives the child an empty environment (plus what [`env`](Self::env) adds afterwards).
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("env");
    /// cmd.env_clear().env("ONLY", "this");
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the child's working directory.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("pwd");
    /// cmd.current_dir("/");
    /// assert_eq!(cmd.as_std().get_current_dir(), Some(std::path::Path::new("/")));
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input: inherited by default; `Stdio::piped()` makes
    /// [`Child::stdin`] an async pipe.
    ///
    /// ```
    /// use std::process::Stdio;
    /// let mut cmd = spindle::process::Command::new("cat");
    /// cmd.stdin(Stdio::piped());
    /// ```
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdin(cfg);
        self.set[0] = true;
        self
    }

    /// The child's standard output: inherited by default; `Stdio::piped()` makes
    /// [`Child::stdout`] an async pipe.
    ///
    /// ```
    /// use std::process::Stdio;
    /// let mut cmd = spindle::process::Command::new("ls");
    /// cmd.stdout(Stdio::null());
    /// ```
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdout(cfg);
        self.set[1] = true;
        self
    }

    /// The child's standard error: inherited by default; `Stdio::piped()` makes
    /// [`Child::stderr`] an async pipe.
    ///
    /// ```
    /// use std::process::Stdio;
    /// let mut cmd = spindle::process::Command::new("ls");
    /// cmd.stderr(Stdio::piped());
    /// ```
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stderr(cfg);
        self.set[2] = true;
        self
    }

    /// Whether a [`Child`] dropped before its exit kills the process (`SIGKILL`); off by
    /// default, as with std: the process then runs on. Either way it is reaped once it exits
    /// (see the module contract), never left a zombie.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let child = spindle::process::Command::new("sleep").arg("60").kill_on_drop(true).spawn().unwrap();
    /// drop(child); // the sleep is killed now
    /// # });
    /// ```
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// Runs the child as user `id` (`setuid`), as `CommandExt::uid` (an inherent method, as
    /// tokio's).
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("id");
    /// cmd.uid(unsafe { libc::getuid() });
    /// ```
    pub fn uid(&mut self, id: u32) -> &mut Command {
        std::os::unix::process::CommandExt::uid(&mut self.std, id);
        self
    }

    /// Runs the child with group `id` (`setgid`), as `CommandExt::gid`.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("id");
    /// cmd.gid(unsafe { libc::getgid() });
    /// ```
    pub fn gid(&mut self, id: u32) -> &mut Command {
        std::os::unix::process::CommandExt::gid(&mut self.std, id);
        self
    }

    /// Sets the child's `argv[0]`, as `CommandExt::arg0`.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("sh");
    /// cmd.arg0("my-shell");
    /// ```
    pub fn arg0(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        std::os::unix::process::CommandExt::arg0(&mut self.std, arg);
        self
    }

    /// Puts the child in process group `pgroup` (0: a new group led by the child), as
    /// `CommandExt::process_group`: a terminal's Ctrl-C then does not reach it.
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("sleep");
    /// cmd.arg("1").process_group(0);
    /// ```
    pub fn process_group(&mut self, pgroup: i32) -> &mut Command {
        std::os::unix::process::CommandExt::process_group(&mut self.std, pgroup);
        self
    }

    /// Runs `f` in the child after `fork` and before `exec`, as `CommandExt::pre_exec`.
    ///
    /// # Safety
    /// As `CommandExt::pre_exec`: `f` runs in a forked copy of a multithreaded process, where
    /// only async-signal-safe operations are sound (no allocation, no locks).
    ///
    /// ```
    /// let mut cmd = spindle::process::Command::new("true");
    /// // SAFETY: `setsid` is async-signal-safe and touches nothing of the parent's.
    /// unsafe {
    ///     cmd.pre_exec(|| {
    ///         libc::setsid();
    ///         Ok(())
    ///     });
    /// }
    /// ```
    pub unsafe fn pre_exec<F>(&mut self, f: F) -> &mut Command
    where
        F: FnMut() -> io::Result<()> + Send + Sync + 'static,
    {
        // SAFETY: the caller upholds `CommandExt::pre_exec`'s contract (see above).
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut self.std, f) };
        self
    }

    /// The std builder inside.
    ///
    /// ```
    /// let cmd = spindle::process::Command::new("ls");
    /// assert_eq!(cmd.as_std().get_program(), "ls");
    /// ```
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// The std builder inside, for settings this type does not wrap (`CommandExt`'s `uid`,
    /// `process_group`, `pre_exec`, ...).
    ///
    /// ```
    /// use std::os::unix::process::CommandExt;
    /// let mut cmd = spindle::process::Command::new("ls");
    /// cmd.as_std_mut().process_group(0);
    /// ```
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the process. Its piped streams become [`Child`]'s async pipes. Errors: the
    /// program cannot be found or started (std's error, with the program named), or a pipe
    /// cannot be watched.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("true").spawn().unwrap();
    /// assert!(child.wait().await.unwrap().success());
    /// # });
    /// ```
    pub fn spawn(&mut self) -> io::Result<Child> {
        reap_orphans_without_reaper();
        let mut child = self.std.spawn().map_err(|e| {
            let context = match self.std.get_current_dir() {
                Some(dir) => format!("spawning {:?} in {dir:?}", self.std.get_program()),
                None => format!("spawning {:?}", self.std.get_program()),
            };
            crate::io::with_context(context, e)
        })?;
        let stdin = child.stdin.take().map(ChildStdin::from_std).transpose();
        let stdout = child.stdout.take().map(ChildStdout::from_std).transpose();
        let stderr = child.stderr.take().map(ChildStderr::from_std).transpose();
        let (stdin, stdout, stderr) = match (stdin, stdout, stderr) {
            (Ok(i), Ok(o), Ok(e)) => (i, o, e),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                // Not handed out: nobody can wait for it, so kill and reap it here.
                let _ = child.kill();
                orphan(child);
                return Err(e);
            }
        };
        let exit = Pidfd::open(child.id());
        Ok(Child { stdin, stdout, stderr, exit, child: Some(child), status: None, kill_on_drop: self.kill_on_drop })
    }

    /// Starts the process and waits for it to exit (standard streams inherited unless set).
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let status = spindle::process::Command::new("false").status().await.unwrap();
    /// assert_eq!(status.code(), Some(1));
    /// # });
    /// ```
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait().await
    }

    /// Starts the process, collects everything it writes to stdout and stderr, and waits for it
    /// to exit. As with std, stdout and stderr are piped and stdin is null unless they were set
    /// (with this type's methods: settings made through [`as_std_mut`](Self::as_std_mut) count
    /// as unset). Unlike std, these defaults then stay set on this command (std's builder
    /// cannot unset a stream), so a later [`spawn`](Self::spawn) pipes them too.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let out = spindle::process::Command::new("sh").args(["-c", "echo out; echo err >&2"]).output().await.unwrap();
    /// assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    /// # });
    /// ```
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.set[0] {
            self.stdin(Stdio::null());
        }
        if !self.set[1] {
            self.stdout(Stdio::piped());
        }
        if !self.set[2] {
            self.stderr(Stdio::piped());
        }
        self.spawn()?.wait_with_output().await
    }
}

/// A spawned child process (from [`Command::spawn`]).
///
/// ```
/// # spindle::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_io::AsyncWrite;
/// use std::process::Stdio;
/// use spindle::process::Command;
/// let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
/// let mut stdin = child.stdin.take().unwrap();
/// std::future::poll_fn(|cx| std::pin::Pin::new(&mut stdin).poll_write(cx, b"ping")).await.unwrap();
/// drop(stdin); // end of input: cat exits
/// let out = child.wait_with_output().await.unwrap();
/// assert_eq!(out.stdout, b"ping");
/// # });
/// ```
#[derive(Debug)]
pub struct Child {
    /// The write end of the child's stdin, if it was piped.
    pub stdin: Option<ChildStdin>,
    /// The read end of the child's stdout, if it was piped.
    pub stdout: Option<ChildStdout>,
    /// The read end of the child's stderr, if it was piped.
    pub stderr: Option<ChildStderr>,
    /// How the exit is awaited (see the module contract).
    exit: Option<Pidfd>,
    /// `None` only while being dropped.
    child: Option<std::process::Child>,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
    kill_on_drop: bool,
}

impl Child {
    fn std(&mut self) -> &mut std::process::Child {
        self.child.as_mut().expect("spindle: child used during its drop")
    }

    /// The process id, until the process was reaped (by a wait that saw its exit); `None`
    /// after, when the id may already name another process (as tokio's).
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("true").spawn().unwrap();
    /// assert!(child.id().is_some());
    /// child.wait().await.unwrap();
    /// assert_eq!(child.id(), None);
    /// # });
    /// ```
    pub fn id(&self) -> Option<u32> {
        match self.status {
            Some(_) => None,
            None => Some(self.pid()),
        }
    }

    /// The pid, for error messages.
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Waits for the process to exit and reaps it; returns its status (the same one again on
    /// later calls). Closes the child's stdin first. Cancel-safe: dropping the future loses
    /// nothing, a later wait still sees the exit.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    /// assert_eq!(child.wait().await.unwrap().code(), Some(3));
    /// # });
    /// ```
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        let id = self.pid();
        while let Some(pidfd) = &mut self.exit {
            // Watched by the reactor of the runtime that spawned the child, or, once that
            // runtime is gone, by the current one's.
            if pidfd.reg.as_ref().is_none_or(Registration::is_shut_down) {
                pidfd.reg = None;
                pidfd.reg = Registration::new(pidfd.fd.as_raw_fd()).ok().filter(|r| !r.is_shut_down());
            }
            let Some(reg) = &pidfd.reg else { break };
            let child = self.child.as_mut().expect("spindle: child used during its drop");
            let r = std::future::poll_fn(|cx| {
                reg.poll_io(cx, Direction::Read, || match child.try_wait() {
                    Ok(Some(s)) => Ok(s),
                    Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(e),
                })
            })
            .await;
            match r {
                // Its runtime shut down meanwhile: watch again (above).
                Err(_) if reg.is_shut_down() => continue,
                Ok(s) => {
                    self.status = Some(s);
                    return Ok(s);
                }
                Err(e) => return Err(wait_error(id, e)),
            }
        }
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            crate::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("sleep").arg("60").spawn().unwrap();
    /// assert!(child.try_wait().unwrap().is_none());
    /// child.kill().await.unwrap();
    /// assert!(child.try_wait().unwrap().is_some());
    /// # });
    /// ```
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let id = self.pid();
            self.status = self.std().try_wait().map_err(|e| wait_error(id, e))?;
        }
        Ok(self.status)
    }

    /// Sends `SIGKILL` to the process, unless it was already reaped (then nothing happens).
    /// Does not wait: [`kill`](Self::kill) does.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("sleep").arg("60").spawn().unwrap();
    /// child.start_kill().unwrap();
    /// assert!(!child.wait().await.unwrap().success());
    /// # });
    /// ```
    pub fn start_kill(&mut self) -> io::Result<()> {
        let id = self.pid();
        self.std().kill().map_err(|e| crate::io::with_context(format!("killing child process {id}"), e))
    }

    /// Kills the process (`SIGKILL`) and waits for it to exit.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut child = spindle::process::Command::new("sleep").arg("60").spawn().unwrap();
    /// child.kill().await.unwrap();
    /// # });
    /// ```
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Waits for the exit while reading the piped stdout and stderr to their ends (all three at
    /// once, so a child filling a pipe never blocks forever); streams not piped give empty
    /// vectors.
    ///
    /// ```
    /// # spindle::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::process::Stdio;
    /// let child = spindle::process::Command::new("seq").arg("3").stdout(Stdio::piped()).spawn().unwrap();
    /// let out = child.wait_with_output().await.unwrap();
    /// assert_eq!(out.stdout, b"1\n2\n3\n");
    /// # });
    /// ```
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        let stdout = self.stdout.take().map(|s| s.0);
        let stderr = self.stderr.take().map(|s| s.0);
        let (status, stdout, stderr) =
            crate::future::join((self.wait(), read_to_end(stdout), read_to_end(stderr))).await;
        Ok(Output { status: status?, stdout: stdout?, stderr: stderr? })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop((self.stdin.take(), self.stdout.take(), self.stderr.take(), self.exit.take()));
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                if self.kill_on_drop {
                    let _ = child.kill();
                }
                orphan(child);
            }
        }
        reap_orphans_without_reaper();
    }
}

fn wait_error(id: u32, e: io::Error) -> io::Error {
    crate::io::with_context(format!("waiting for child process {id}"), e)
}

/// Children dropped before their exit was reaped (see the module contract).
static ORPHANS: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());

fn orphan(child: std::process::Child) {
    ORPHANS.lock().unwrap_or_else(|p| p.into_inner()).push(child);
    static REAPER: std::sync::Once = std::sync::Once::new();
    REAPER.call_once(|| {
        // The reaper's SIGCHLD listener exists before it first reaps, so an orphan that exits
        // after that reap raises a delivery it sees. If the thread cannot start (or `SIGCHLD`
        // cannot be watched), spawns and drops still reap.
        let _ = std::thread::Builder::new().name("spindle-reaper".to_string()).spawn(reaper);
    });
}

/// Whether the `spindle-reaper` thread watches `SIGCHLD` (then spawns and drops leave the
/// orphans to it).
static REAPER_WATCHES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The `spindle-reaper` thread: reaps the orphans that exited at every `SIGCHLD`.
fn reaper() {
    let Ok(mut sigchld) = crate::signal::signal(crate::signal::SignalKind::child()) else { return };
    REAPER_WATCHES.store(true, std::sync::atomic::Ordering::Release);
    crate::rt::park_on(
        async move {
            loop {
                reap_orphans();
                if sigchld.recv().await.is_none() {
                    REAPER_WATCHES.store(false, std::sync::atomic::Ordering::Release);
                    return;
                }
            }
        },
        None,
    )
}

/// Reaps the orphans that have exited (a non-blocking `waitpid` each).
fn reap_orphans() {
    let mut list = ORPHANS.lock().unwrap_or_else(|p| p.into_inner());
    list.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
}

/// [`reap_orphans`] at a spawn or a `Child` drop, unless the reaper thread does it.
fn reap_orphans_without_reaper() {
    if !REAPER_WATCHES.load(std::sync::atomic::Ordering::Acquire) {
        reap_orphans();
    }
}

/// A pidfd watched for the child's exit (readable once it exited).
#[derive(Debug)]
struct Pidfd {
    /// `None` when no reactor can watch it now (the wait polls then).
    reg: Option<Registration>,
    /// Closed after `reg` deregisters it (field order).
    fd: OwnedFd,
}

impl Pidfd {
    /// `None` where `pidfd_open` is refused: the wait polls instead.
    fn open(pid: u32) -> Option<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd (close-on-exec) or -1;
        // the pid is our un-reaped child's, so it cannot name another process.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let reg = Registration::new(fd.as_raw_fd()).ok();
        Some(Pidfd { reg, fd })
    }
}

async fn read_to_end<R: futures_io::AsyncRead + Unpin>(pipe: Option<R>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else { return Ok(out) };
    let mut chunk = [0u8; 4096];
    loop {
        let n = std::future::poll_fn(|cx| Pin::new(&mut pipe).poll_read(cx, &mut chunk)).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The write end of a child's stdin (`Child::stdin`): `futures_io::AsyncWrite`, and tokio's
/// `AsyncWrite` under `tokio-io`. Dropping it closes the pipe (the child sees end of input);
/// `poll_close` does nothing more than flush, which has nothing to do.
///
/// ```
/// # spindle::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_io::AsyncWrite;
/// use std::process::Stdio;
/// let mut child = spindle::process::Command::new("wc").arg("-c")
///     .stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
/// let mut stdin = child.stdin.take().unwrap();
/// let n = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stdin).poll_write(cx, b"12345")).await.unwrap();
/// assert_eq!(n, 5);
/// drop(stdin);
/// let out = child.wait_with_output().await.unwrap();
/// assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "5");
/// # });
/// ```
#[derive(Debug)]
pub struct ChildStdin(Sender);

/// The read end of a child's stdout (`Child::stdout`): `futures_io::AsyncRead`, and tokio's
/// `AsyncRead` under `tokio-io`; a read of 0 bytes is the end (the child closed it or exited).
///
/// ```
/// # spindle::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_io::AsyncRead;
/// use std::process::Stdio;
/// let mut child = spindle::process::Command::new("echo").arg("hi").stdout(Stdio::piped()).spawn().unwrap();
/// let mut out = child.stdout.take().unwrap();
/// let mut buf = [0u8; 16];
/// let n = std::future::poll_fn(|cx| std::pin::Pin::new(&mut out).poll_read(cx, &mut buf)).await.unwrap();
/// assert_eq!(&buf[..n], b"hi\n");
/// child.wait().await.unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct ChildStdout(Receiver);

/// The read end of a child's stderr (`Child::stderr`); as [`ChildStdout`].
///
/// ```
/// # spindle::runtime::Runtime::new().unwrap().block_on(async {
/// use std::process::Stdio;
/// let child = spindle::process::Command::new("sh").args(["-c", "echo oops >&2"])
///     .stderr(Stdio::piped()).spawn().unwrap();
/// assert_eq!(child.wait_with_output().await.unwrap().stderr, b"oops\n");
/// # });
/// ```
#[derive(Debug)]
pub struct ChildStderr(Receiver);

impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for ChildStdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `futures_io::AsyncRead` and (under `tokio-io`) tokio's `AsyncRead` for a read end: its
/// [`Receiver`]'s.
macro_rules! read_end {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                futures_io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf)
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf)
            }
        }
    };
}

read_end!(ChildStdout);
read_end!(ChildStderr);

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a pidfd (refused by the kernel or a seccomp filter) the wait polls, and still
    /// sees the exit and the code.
    #[test]
    fn the_wait_polls_without_a_pidfd() {
        let rt = crate::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut child = Command::new("sh").args(["-c", "sleep 0.02; exit 5"]).spawn().unwrap();
            child.exit = None;
            assert_eq!(child.wait().await.unwrap().code(), Some(5));
        });
    }
}

/// The conversions of a child's pipe end: from std's, to an fd or a `Stdio` (to connect it to
/// another child, as a shell pipe does), and its fd.
macro_rules! pipe_conversions {
    ($ty:ident, $inner:ident, $std:ty, $doc:literal) => {
        impl $ty {
            /// Takes over std's pipe end (made non-blocking and watched by the current runtime).
            ///
            /// ```
            #[doc = $doc]
            /// ```
            pub fn from_std(pipe: $std) -> io::Result<$ty> {
                // std's pipes are pipes, opened for their direction: no check needed.
                $inner::from_owned_fd_unchecked(pipe.into()).map($ty)
            }

            /// The pipe's fd, blocking again and no longer watched.
            ///
            /// ```
            #[doc = $doc]
            /// ```
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                self.0.into_blocking_fd()
            }
        }

        impl TryFrom<$ty> for Stdio {
            type Error = io::Error;
            /// The pipe end as another child's standard stream (blocking again, as a child
            /// expects).
            fn try_from(pipe: $ty) -> io::Result<Stdio> {
                pipe.into_owned_fd().map(Stdio::from)
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.0)
            }
        }
    };
}

pipe_conversions!(
    ChildStdin,
    Sender,
    std::process::ChildStdin,
    "let mut c = std::process::Command::new(\"cat\").stdin(std::process::Stdio::piped()).spawn().unwrap();\n# spindle::runtime::Runtime::new().unwrap().block_on(async {\nlet stdin = spindle::process::ChildStdin::from_std(c.stdin.take().unwrap()).unwrap();\ndrop(stdin.into_owned_fd().unwrap()); // closed: cat sees end of input\n# });\nassert!(c.wait().unwrap().success());"
);
pipe_conversions!(
    ChildStdout,
    Receiver,
    std::process::ChildStdout,
    "# spindle::runtime::Runtime::new().unwrap().block_on(async {\nuse std::process::Stdio;\nuse spindle::process::Command;\n// echo hi | tr a-z A-Z\nlet mut echo = Command::new(\"echo\").arg(\"hi\").stdout(Stdio::piped()).spawn().unwrap();\nlet pipe: Stdio = echo.stdout.take().unwrap().try_into().unwrap();\nlet out = Command::new(\"tr\").args([\"a-z\", \"A-Z\"]).stdin(pipe).output().await.unwrap();\nassert_eq!(out.stdout, b\"HI\\n\");\necho.wait().await.unwrap();\n# });"
);
pipe_conversions!(
    ChildStderr,
    Receiver,
    std::process::ChildStderr,
    "# spindle::runtime::Runtime::new().unwrap().block_on(async {\nlet mut c = std::process::Command::new(\"true\").stderr(std::process::Stdio::piped()).spawn().unwrap();\nlet err = spindle::process::ChildStderr::from_std(c.stderr.take().unwrap()).unwrap();\nuse std::os::fd::AsRawFd;\nassert!(err.as_raw_fd() >= 0);\nc.wait().unwrap();\n# });"
);
