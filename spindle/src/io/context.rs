//! Errors with context: spindle's fs and net errors name the operation and its path or address,
//! and keep the system's own error underneath.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// An error's context (`"open /etc/x"`) and the error it wraps.
#[derive(Debug)]
struct Contextual {
    context: String,
    source: io::Error,
}

impl fmt::Display for Contextual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl StdError for Contextual {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// `e` with `context` in front of its message, of the same kind, with `e` as its source (so
/// [`raw_os_error`] still finds the system's error code).
pub(crate) fn with_context(context: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), Contextual { context, source: e })
}

/// The operating system's error code behind `e` (`errno`), also when spindle added context to it.
///
/// Spindle's fs and net errors name the operation and the path or address in their message
/// (`"open /etc/x: Permission denied (os error 13)"`); an `io::Error` with a message of its own
/// no longer answers [`io::Error::raw_os_error`], so this looks through the context for the
/// system's error. Codes without a stable [`ErrorKind`](io::ErrorKind) of their own (`ELOOP` from
/// an `O_NOFOLLOW` open, for one) are told apart this way.
///
/// ```
/// spindle::block_on(async {
///     let e = spindle::fs::read("/no/such/file").await.unwrap_err();
///     assert!(e.to_string().starts_with("read /no/such/file: "));
///     assert_eq!(spindle::io::raw_os_error(&e), Some(libc::ENOENT));
/// });
/// ```
pub fn raw_os_error(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    let mut next: Option<&(dyn StdError + 'static)> = e.get_ref().map(|inner| inner as &(dyn StdError + 'static));
    while let Some(err) = next {
        if let Some(code) = err.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error) {
            return Some(code);
        }
        next = err.source();
    }
    None
}
