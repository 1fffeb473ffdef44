//! `spindle-bench`: scheduling workloads on spindle, tokio and smol, side by side in one process.
//!
//! Method (shared/PERF.md): every workload runs on every runtime, interleaved: one warm-up round (the
//! echo rows' at an eighth of their size), then `--rounds` rounds (default 9; the echo rows 7, see
//! `io_rows::rounds`), each running every runtime once in rotating order. Printed per workload:
//! median wall ns/op, median CPU ns/op (process CPU time, which exposes spinning), and the median of the
//! per-round ratios spindle/peer against the best peer (the peer with the lowest median ns/op).
//!
//! ```text
//! cargo run --release -p spindle-bench -- [--quick] [--only NAME[,NAME..]] [--json FILE] [--rounds N]
//! ```
//!
//! The TCP rows (`echo`, `echo_1conn`; io_rows.rs) have their own entrants: spindle on io_uring and
//! on epoll (each backend in a child process of this binary, `--io-child`, since spindle picks its
//! backend once per process from `SPINDLE_DRIVER`), tokio, smol, and a raw io_uring loop
//! (raw_uring.rs, on one thread and on two) as the reference. Beside round trips/s they report
//! syscalls per round trip, counted in extra untimed runs (three, their median, where a target
//! judges the count; one for the others) with a
//! `raw_syscalls:sys_enter` tracepoint counter (`perf_event_open`) on every thread, read just
//! before and after the measured section (syscount.rs); `strace -c` gives the same counts but
//! slows every syscall, and `--quick` needs neither strace nor perf installed.
//!
//! `http_hello` (http_rows.rs) serves hyper's HTTP/1.1 server on spindle (in the same child
//! processes) and on tokio under a load generator in a process of its own: `wrk` when it is on
//! `PATH`, else this binary's built-in one (`--http-load`). Its runs last a fixed time (~3 s;
//! `--quick`: 0.3 s and a single round), and it reports requests/s against the faster tokio.
//!
//! `memory` (mem_rows.rs) is not timed: heap bytes per idle task and per idle TCP connection on every
//! spindle flavour and backend, tokio and smol, printed in a table of its own after the timed rows.

mod http_rows;
mod io_rows;
mod mem_rows;
mod raw_uring;
mod rt;
mod rt_spindle;
mod struct_rows;
mod sync_rows;
mod sys;
mod syscount;
mod timer_rows;
mod workloads;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rt::{Rt, Smol, Tokio};
use rt_spindle::Spindle;
use workloads::{Kind, Spec};

/// Object-safe view of a runtime for the harness loop.
trait Bench: Sync {
    fn label(&self) -> &'static str;
    fn once(&self, kind: Kind) -> u64;
    /// Extra per-run measurements, in run order (timer_fire's lateness); empty for most rows.
    fn extra(&self) -> Vec<f64> {
        Vec::new()
    }
    /// A run that times itself (the I/O rows: only the round trips, not the connection setup; or
    /// a run in a child process, timed there): its sample and checksum. `None`: time `once`.
    fn once_timed(&self, _kind: Kind) -> Option<(Sample, u64)> {
        None
    }
    /// One more, untimed run counting the process's syscalls in its measured section
    /// (syscount.rs); `None` where not counted.
    fn syscalls(&self, _kind: Kind) -> Option<Result<u64, String>> {
        None
    }
    /// Why runs failed their check, where the entrant can tell (http_hello: wrk's error line, a
    /// bad response); empty for most rows.
    fn failures(&self) -> Vec<String> {
        Vec::new()
    }
    /// A reference (the raw io_uring loop): shown, never the "best peer".
    fn reference(&self) -> bool {
        false
    }
}

impl<R: Rt> Bench for R {
    fn label(&self) -> &'static str {
        self.name()
    }
    fn once(&self, kind: Kind) -> u64 {
        workloads::run(self, kind)
    }
}

struct Opts {
    quick: bool,
    only: Vec<String>,
    json: Option<String>,
    /// `--rounds`, if given (else each row's default).
    rounds: Option<usize>,
}

/// Measured rounds of a row without a default of its own, when `--rounds` is not given.
const DEFAULT_ROUNDS: usize = 9;

const USAGE: &str = "usage: spindle-bench [--quick] [--only NAME[,NAME..]] [--json FILE] [--rounds N]";

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts { quick: false, only: Vec::new(), json: None, rounds: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value =
            |name: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--quick" => o.quick = true,
            "--only" => o.only.extend(value("--only")?.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
            "--json" => o.json = Some(value("--json")?),
            "--rounds" => {
                let n: usize = value("--rounds")?.parse().map_err(|e| format!("--rounds: {e}"))?;
                o.rounds = Some(n);
                if n == 0 {
                    return Err("--rounds must be at least 1".into());
                }
            }
            // `cargo bench` passes this; ignore it.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// One timed run.
#[derive(Clone, Copy)]
struct Sample {
    wall_ns: u64,
    cpu_ns: u64,
}

/// Watchdog: a run that hangs aborts the process with its name instead of stalling the benchmark.
static WATCH: Mutex<Option<(Instant, String)>> = Mutex::new(None);

fn start_watchdog() {
    std::thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(250));
            if let Some((deadline, what)) = &*WATCH.lock().unwrap() {
                if Instant::now() > *deadline {
                    let _ = std::io::stdout().flush();
                    eprintln!("\nHANG: {what} did not finish in time; aborting (the runtime is broken)");
                    std::process::exit(3);
                }
            }
        })
        .expect("spawn watchdog");
}

/// Arms the watchdog for `what`, which must finish within `limit` (see [`unwatch`]).
pub(crate) fn watch(limit: Duration, what: String) {
    *WATCH.lock().unwrap() = Some((Instant::now() + limit, what));
}

/// Disarms the watchdog.
pub(crate) fn unwatch() {
    *WATCH.lock().unwrap() = None;
}

fn timed(b: &dyn Bench, spec: &Spec, limit: Duration) -> (Sample, u64) {
    watch(limit, format!("{} on {}", spec.name, b.label()));
    let c0 = sys::process_cpu_ns();
    let t0 = Instant::now();
    let run = || match b.once_timed(spec.kind) {
        Some(timed) => Err(timed),
        None => Ok(b.once(spec.kind)),
    };
    let check = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(c)) => c,
        Ok(Err((sample, check))) => {
            unwatch();
            return (sample, check);
        }
        Err(_) => {
            let _ = std::io::stdout().flush();
            eprintln!("\nPANIC: {} on {} panicked (see above); aborting", spec.name, b.label());
            std::process::exit(1);
        }
    };
    let wall = t0.elapsed();
    let c1 = sys::process_cpu_ns();
    unwatch();
    (Sample { wall_ns: wall.as_nanos() as u64, cpu_ns: c1.saturating_sub(c0) }, check)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Results for one workload on one runtime.
struct RtResult {
    name: &'static str,
    spindle: bool,
    /// A reference entrant (never the best peer).
    reference: bool,
    samples: Vec<Sample>, // measured rounds only, indexed by round
    checks_ok: bool,
    bad_check: Option<u64>,
}

impl RtResult {
    fn ns_per_op(&self, ops: u64) -> Vec<f64> {
        self.samples.iter().map(|s| s.wall_ns as f64 / ops as f64).collect()
    }
    fn cpu_per_op(&self, ops: u64) -> Vec<f64> {
        self.samples.iter().map(|s| s.cpu_ns as f64 / ops as f64).collect()
    }
}

struct WorkResult {
    spec: Spec,
    rts: Vec<RtResult>,
}

struct Ratio {
    who: &'static str,
    vs: &'static str,
    median: f64,
    per_round: Vec<f64>,
}

impl WorkResult {
    fn med_ns(&self, i: usize) -> f64 {
        median(&mut self.rts[i].ns_per_op(self.spec.ops))
    }
    fn best_peer(&self) -> Option<usize> {
        (0..self.rts.len())
            .filter(|&i| !self.rts[i].spindle && !self.rts[i].reference && self.rts[i].checks_ok)
            .min_by(|&a, &b| self.med_ns(a).partial_cmp(&self.med_ns(b)).unwrap())
    }
    /// Median of per-round ratios `who / vs`.
    fn ratio(&self, who: usize, vs: usize) -> Ratio {
        let per_round: Vec<f64> = self.rts[who]
            .samples
            .iter()
            .zip(&self.rts[vs].samples)
            .map(|(a, b)| a.wall_ns as f64 / b.wall_ns as f64)
            .collect();
        Ratio { who: self.rts[who].name, vs: self.rts[vs].name, median: median(&mut per_round.clone()), per_round }
    }
}

fn build_runtimes() -> Vec<(Box<dyn Bench>, bool)> {
    vec![
        (Box::new(Spindle::multi_thread(2)), true),
        (Box::new(Spindle::current_thread()), true),
        (Box::new(Tokio::multi_thread(2)), false),
        (Box::new(Tokio::current_thread()), false),
        (Box::new(Smol::multi_thread(2)), false),
        (Box::new(Smol::single_thread()), false),
    ]
}

fn fmt_ns(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}", x)
    } else if x >= 100.0 {
        format!("{:.1}", x)
    } else {
        format!("{:.2}", x)
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(io_rows::CHILD_ARG) {
        return io_rows::child_main();
    }
    if std::env::args().nth(1).as_deref() == Some(http_rows::LOAD_ARG) {
        return http_rows::load_main();
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut specs = workloads::specs(opts.quick);
    specs.extend(sync_rows::specs(opts.quick));
    specs.extend(struct_rows::specs(opts.quick));
    specs.extend(timer_rows::specs(opts.quick));
    specs.extend(io_rows::specs(opts.quick));
    // The memory row is not timed: it has its own runner and table (mem_rows.rs).
    let run_memory = opts.only.is_empty() || opts.only.iter().any(|n| n == mem_rows::ROW);
    if !opts.only.is_empty() {
        for n in opts.only.iter().filter(|n| *n != mem_rows::ROW) {
            if !specs.iter().any(|s| s.name == n || s.name.starts_with(&format!("{n}_"))) {
                let names: Vec<_> = specs.iter().map(|s| s.name).chain([mem_rows::ROW]).collect();
                eprintln!("--only: no workload {n:?}; workloads: {}", names.join(", "));
                return ExitCode::from(2);
            }
        }
        specs.retain(|s| opts.only.iter().any(|n| s.name == n || s.name.starts_with(&format!("{n}_"))));
    }

    let machine = sys::Machine::detect();
    println!("spindle-bench: scheduling workloads, interleaved in one process (shared/PERF.md)");
    println!("machine: cores {} (nproc), cpu {}", machine.cores, machine.cpu);
    println!("kernel: {}", machine.kernel);
    println!("io: {}", io_rows::io_note());
    println!(
        "mode: {}, 1 warm-up round (echo rows: at 1/8 size) + {}, rotating runtime order each round",
        if opts.quick { "quick (small counts; smoke test, does not judge)" } else { "full" },
        match opts.rounds {
            Some(n) => format!("{n} rounds"),
            None => format!("{DEFAULT_ROUNDS} rounds (echo rows: {})", io_rows::ECHO_ROUNDS),
        }
    );
    if opts.rounds.is_some_and(|n| n < 7) {
        println!("WARNING: fewer than 7 rounds: not a valid measurement under PERF.md");
    }
    println!(
        "columns: ns/op = median wall time per op; min..max over rounds; cpu ns/op = median process CPU time \
         per op (all threads); cpu/wall = cores kept busy; vs best peer = median of per-round ratios \
         spindle/peer (< 1 is faster)"
    );

    let runtimes = build_runtimes();
    start_watchdog();
    let limit = Duration::from_secs(if opts.quick { 30 } else { 90 });
    let t_start = Instant::now();
    let mut results = Vec::new();
    let mut failed = Vec::new();

    for spec in &specs {
        print!("\n== {} ... ", spec.name);
        let _ = std::io::stdout().flush();
        let row_start = Instant::now();
        // Sync rows compare primitives on one executor instead of runtimes (sync_rows.rs).
        let sync_entrants;
        let runtimes: &[(Box<dyn Bench>, bool)] = match spec.kind {
            Kind::Sync(kind, exec) => {
                sync_entrants = sync_rows::entrants(kind, exec);
                &sync_entrants
            }
            Kind::Struct(kind) => {
                sync_entrants = struct_rows::entrants(kind);
                &sync_entrants
            }
            // Timer rows: each runtime with its own timers (timer_rows.rs).
            Kind::Timer(_) => {
                sync_entrants = timer_rows::entrants();
                &sync_entrants
            }
            // I/O rows: each runtime with its own sockets, spindle in child processes (io_rows.rs).
            Kind::Io(_) => {
                sync_entrants = io_rows::entrants(spec.kind);
                &sync_entrants
            }
            _ => &runtimes,
        };
        let mut rts: Vec<RtResult> = runtimes
            .iter()
            .map(|(b, sp)| RtResult {
                name: b.label(),
                spindle: *sp,
                reference: b.reference(),
                samples: Vec::new(),
                checks_ok: true,
                bad_check: None,
            })
            .collect();
        let n = runtimes.len();
        let rounds = io_rows::rounds(spec.kind, opts.rounds).unwrap_or(opts.rounds.unwrap_or(DEFAULT_ROUNDS));
        for round in 0..=rounds {
            // Round 0 warms up; an echo row's at an eighth of the size (see `io_rows::warm_up`).
            let run = if round == 0 { io_rows::warm_up(spec) } else { spec.clone() };
            for k in 0..n {
                let i = (round + k) % n;
                let (b, _) = &runtimes[i];
                // Let the previous runtime's workers go idle so they do not steal CPU from this run.
                std::thread::sleep(Duration::from_millis(2));
                let (s, check) = timed(b.as_ref(), &run, limit);
                if check != run.expect {
                    rts[i].checks_ok = false;
                    rts[i].bad_check.get_or_insert(check);
                }
                if round > 0 {
                    rts[i].samples.push(s);
                }
            }
        }
        let w = WorkResult { spec: spec.clone(), rts };
        println!("done");
        if let Kind::Io(_) = spec.kind {
            io_rows::report(&w, runtimes);
        } else {
            print_table(&w);
        }
        if let Kind::Sync(kind, _) = spec.kind {
            print_peer_ratios(&w, sync_rows::peer_targets(kind));
        }
        if let Kind::Struct(kind) = spec.kind {
            print_peer_ratios(&w, struct_rows::peer_targets(kind));
        }
        if let Kind::Timer(kind) = spec.kind {
            timer_rows::print_lateness(kind, runtimes);
        }
        // The whole row, its untimed syscall-counting runs included (PERF.md bounds the full run).
        println!("   row time: {:.1} s", row_start.elapsed().as_secs_f64());
        for r in &w.rts {
            if !r.checks_ok {
                failed.push(format!("{} on {}", spec.name, r.name));
            }
        }
        results.push(w);
    }

    if run_memory {
        for f in mem_rows::run(opts.quick) {
            failed.push(f);
        }
    }

    print_summary(&results);
    let total = t_start.elapsed();
    println!("\ntotal time: {:.1} s", total.as_secs_f64());
    if let Some(path) = &opts.json {
        let json = to_json(&machine, &opts, &results, total);
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("--json {path}: {e}");
            return ExitCode::from(2);
        }
        println!("json written to {path}");
    }
    if failed.is_empty() {
        println!("all correctness checks passed");
        ExitCode::SUCCESS
    } else {
        println!("CORRECTNESS CHECKS FAILED: {}", failed.join(", "));
        ExitCode::from(1)
    }
}

fn target_str(t: Option<f64>) -> String {
    match t {
        Some(t) => format!("<= {t}x best peer"),
        None => "none in PERF.md".into(),
    }
}

/// One line per workload: spindle's ratios against the best peer and whether the target is met.
fn print_summary(all: &[WorkResult]) {
    let (sync, results): (Vec<&WorkResult>, Vec<&WorkResult>) =
        all.iter().partition(|w| matches!(w.spec.kind, Kind::Sync(..) | Kind::Struct(..)));
    // The I/O rows have their own entrants and summary lines (io_rows.rs).
    let results: Vec<&WorkResult> = results.into_iter().filter(|w| !matches!(w.spec.kind, Kind::Io(..))).collect();
    print_runtime_summary(&results);
    print_sync_summary(&sync);
    io_rows::print_summary();
}

/// Spindle's primitive against every peer primitive, per sync row, with PERF.md's named targets.
fn print_peer_ratios(w: &WorkResult, targets: &[(&str, f64)]) {
    let Some(si) = w.rts.iter().position(|r| r.spindle) else { return };
    let mut line = String::from("   spindle vs each peer (median of per-round ratios):");
    for pi in (0..w.rts.len()).filter(|&p| !w.rts[p].spindle) {
        let ra = w.ratio(si, pi);
        let _ = write!(line, " {} {:.2}x", ra.vs, ra.median);
        if let Some((_, t)) = targets.iter().find(|(n, _)| *n == ra.vs) {
            let _ = write!(line, " (target <= {t}x: {})", if ra.median <= *t { "met" } else { "MISS" });
        }
        line.push(';');
    }
    line.pop();
    println!("{line}");
}

fn print_sync_summary(results: &[&WorkResult]) {
    if results.is_empty() {
        return;
    }
    println!("\n== summary of sync rows: spindle's primitive vs each peer on the same executor (< 1 is faster)");
    for w in results {
        let Some(si) = w.rts.iter().position(|r| r.spindle) else { continue };
        let targets = match w.spec.kind {
            Kind::Sync(kind, _) => sync_rows::peer_targets(kind),
            Kind::Struct(kind) => struct_rows::peer_targets(kind),
            _ => &[],
        };
        let mut line = format!("   {:<24} spindle {:>8} ns/op", w.spec.name, fmt_ns(w.med_ns(si)));
        for pi in (0..w.rts.len()).filter(|&p| !w.rts[p].spindle) {
            let ra = w.ratio(si, pi);
            let verdict = match targets.iter().find(|(n, _)| *n == ra.vs) {
                Some((_, t)) if ra.median <= *t => format!(" met <= {t}"),
                Some((_, t)) => format!(" MISS > {t}"),
                None => String::new(),
            };
            let _ = write!(line, "  {} {:.2}x{}", ra.vs, ra.median, verdict);
        }
        if !w.rts.iter().all(|r| r.checks_ok) {
            line.push_str("  CHECK FAILED");
        }
        println!("{line}");
    }
}

fn print_runtime_summary(results: &[&WorkResult]) {
    let spindles: Vec<usize> = match results.first() {
        Some(w) => (0..w.rts.len()).filter(|&i| w.rts[i].spindle).collect(),
        None => return,
    };
    if spindles.is_empty() {
        return;
    }
    println!("\n== summary: median of per-round ratios spindle/best peer (< 1 is faster)");
    let mut head = format!("   {:<18} {:<10}", "workload", "best peer");
    for &i in &spindles {
        let _ = write!(head, " {:>18}", results[0].rts[i].name);
    }
    println!("{head}   target");
    for w in results.iter().copied() {
        let best = w.best_peer();
        let mut line = format!("   {:<18} {:<10}", w.spec.name, best.map(|b| w.rts[b].name).unwrap_or("-"));
        for &i in &spindles {
            let cell = match best {
                Some(b) if w.rts[i].checks_ok => {
                    let r = w.ratio(i, b).median;
                    let verdict = match w.spec.target {
                        Some(t) if r <= t => " met",
                        Some(_) => " MISS",
                        None => "",
                    };
                    format!("{r:.2}x{verdict}")
                }
                _ => "CHECK FAILED".into(),
            };
            let _ = write!(line, " {cell:>18}");
        }
        let t = w.spec.target.map(|t| format!("<= {t}x")).unwrap_or("-".into());
        println!("{line}   {t}");
    }
}

/// The correctness line of a workload: "ok on every `who`", or one line per entrant whose
/// result was wrong (its times are then meaningless).
fn print_checks(w: &WorkResult, who: &str) {
    let s = &w.spec;
    if w.rts.iter().all(|r| r.checks_ok) {
        println!("   check: {} = {} on every {who}: ok", s.check, s.expect);
        return;
    }
    for r in w.rts.iter().filter(|r| !r.checks_ok) {
        println!(
            "   CHECK FAILED on {}: {} expected {}, got {} -- its times are meaningless",
            r.name,
            s.check,
            s.expect,
            r.bad_check.unwrap()
        );
    }
}

fn print_table(w: &WorkResult) {
    let s = &w.spec;
    println!("   op = {}; {} ops/run; target {}", s.op, s.ops, target_str(s.target));
    print_checks(w, "runtime");
    let best = w.best_peer();
    println!(
        "   {:<12} {:>11} {:>23} {:>11} {:>9}   vs best peer",
        "runtime", "ns/op", "min..max", "cpu ns/op", "cpu/wall"
    );
    for (i, r) in w.rts.iter().enumerate() {
        let ns = r.ns_per_op(s.ops);
        let mut sorted = ns.clone();
        let med = median(&mut sorted);
        let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
        let cpu = median(&mut r.cpu_per_op(s.ops));
        let note = if r.spindle {
            match best {
                Some(b) => {
                    let ra = w.ratio(i, b);
                    format!("{:.2}x vs {}", ra.median, ra.vs)
                }
                None => String::new(),
            }
        } else if Some(i) == best {
            "* best peer".to_string()
        } else {
            String::new()
        };
        let flag = if r.checks_ok { "" } else { "  CHECK FAILED" };
        println!(
            "   {:<12} {:>11} {:>23} {:>11} {:>9.2}   {}{}",
            r.name,
            fmt_ns(med),
            format!("{}..{}", fmt_ns(lo), fmt_ns(hi)),
            fmt_ns(cpu),
            cpu / med,
            note,
            flag
        );
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

fn json_arr(v: &[f64]) -> String {
    format!("[{}]", v.iter().map(|&x| json_f(x)).collect::<Vec<_>>().join(", "))
}

/// The I/O rows' extra fields of an entrant: whether it is the reference, its syscalls per op.
fn io_json(row: &str, r: &RtResult) -> String {
    let mut o = String::new();
    if r.reference {
        o.push_str(", \"reference\": true");
    }
    if let Some(x) = io_rows::syscalls_per_op(row, r.name) {
        let _ = write!(o, ", \"syscalls_per_op\": {}", json_f(x));
    }
    o
}

fn to_json(m: &sys::Machine, o: &Opts, results: &[WorkResult], total: Duration) -> String {
    let mut j = String::new();
    let _ = write!(
        j,
        "{{\n  \"machine\": {{\"cores\": {}, \"cpu\": {}, \"kernel\": {}, \"io\": {}}},\n",
        m.cores,
        json_str(&m.cpu),
        json_str(&m.kernel),
        json_str(&io_rows::io_note())
    );
    let _ = write!(
        j,
        "  \"config\": {{\"quick\": {}, \"rounds\": {}, \"warmup_rounds\": 1}},\n  \"total_seconds\": {},\n  \"workloads\": [",
        o.quick,
        o.rounds.unwrap_or(DEFAULT_ROUNDS),
        json_f(total.as_secs_f64())
    );
    for (wi, w) in results.iter().enumerate() {
        let s = &w.spec;
        let best = w.best_peer();
        let _ = write!(
            j,
            "{}\n    {{\"name\": {}, \"op\": {}, \"ops_per_run\": {}, \"rounds\": {}, \"target_vs_best_peer\": {}, \"check\": {}, \"expected\": {},\n     \"best_peer\": {},\n     \"runtimes\": [",
            if wi > 0 { "," } else { "" },
            json_str(s.name),
            json_str(s.op),
            s.ops,
            // This row's measured rounds (the echo rows and http_hello have their own counts).
            w.rts.first().map_or(0, |r| r.samples.len()),
            s.target.map(json_f).unwrap_or("null".into()),
            json_str(s.check),
            s.expect,
            best.map(|b| json_str(w.rts[b].name)).unwrap_or("null".into())
        );
        for (ri, r) in w.rts.iter().enumerate() {
            let ns = r.ns_per_op(s.ops);
            let cpu = r.cpu_per_op(s.ops);
            let _ = write!(
                j,
                "{}\n       {{\"name\": {}, \"spindle\": {}, \"check_ok\": {}, \"ns_per_op_median\": {}, \"cpu_ns_per_op_median\": {}, \"ns_per_op\": {}, \"cpu_ns_per_op\": {}{}}}",
                if ri > 0 { "," } else { "" },
                json_str(r.name),
                r.spindle,
                r.checks_ok,
                json_f(median(&mut ns.clone())),
                json_f(median(&mut cpu.clone())),
                json_arr(&ns),
                json_arr(&cpu),
                io_json(s.name, r)
            );
        }
        j.push_str("],\n     \"ratios\": [");
        let mut first = true;
        for si in (0..w.rts.len()).filter(|&i| w.rts[i].spindle) {
            for pi in (0..w.rts.len()).filter(|&p| !w.rts[p].spindle) {
                let ra = w.ratio(si, pi);
                let _ = write!(
                    j,
                    "{}\n       {{\"spindle\": {}, \"peer\": {}, \"best_peer\": {}, \"median\": {}, \"per_round\": {}}}",
                    if first { "" } else { "," },
                    json_str(ra.who),
                    json_str(ra.vs),
                    Some(pi) == best,
                    json_f(ra.median),
                    json_arr(&ra.per_round)
                );
                first = false;
            }
        }
        j.push_str("]}");
    }
    j.push_str("\n  ]\n}\n");
    j
}
