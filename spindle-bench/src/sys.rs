//! Machine facts and process CPU time (libc).

/// What the header records.
pub struct Machine {
    /// Online CPUs (what `nproc` prints).
    pub cores: usize,
    /// `uname -srvm`.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
}

fn cstr(b: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = b.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Machine {
    /// Reads the machine facts.
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        // SAFETY: `utsname` is plain old data; `uname` fills it and returns 0 on success.
        let kernel = unsafe {
            let mut u: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut u) == 0 {
                format!("{} {} {} {}", cstr(&u.sysname), cstr(&u.release), cstr(&u.version), cstr(&u.machine))
            } else {
                "unknown".into()
            }
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine { cores, kernel, cpu }
    }
}

/// CPU time consumed by the whole process (all threads) so far, in ns.
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
