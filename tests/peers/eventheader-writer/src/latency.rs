//! eh-latency: the EventHeader side of benchmarks/latency_user_events.py (the event -> action latency of `dyntel run`
//! on user_events). Both modes register the same tracepoint, `DyntelLatency_L4K1` (provider DyntelLatency, level 4,
//! keyword 1), with LinuxTracepoints' eventheader_dynamic crate and write `Probe` events carrying `seq` (u32) and
//! `t0` (u64, CLOCK_MONOTONIC nanoseconds when the event was made).
//!
//!     eh-latency probe INTERVAL COUNT TIMEOUT wait
//!         The probe, speaking the protocol of benchmarks/latency.py's Python probe: prints its pid, waits for a line
//!         on stdin, writes an event every 0.2 s until a SIGUSR1 comes back (dyntel is listening), drains stray
//!         signals, prints "ready", then every INTERVAL seconds reads CLOCK_MONOTONIC, writes one event and waits up to
//!         TIMEOUT seconds for SIGUSR1 in sigtimedwait; prints {"starts": [...], "latencies_ns": [...], "missed": N}.
//!     eh-latency load RATE
//!         Background load: the same event from another process, RATE a second in 1 ms slices, until SIGTERM; then
//!         prints the rate of events that reached the kernel (written while a listener had the tracepoint enabled).

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::{env, mem, process, ptr};

use eventheader_dynamic as ehd;
use ehd::{EventBuilder, FieldFormat as F, Level};

const PROVIDER: &str = "DyntelLatency";

fn now_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn block(sig: libc::c_int) -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
        set
    }
}

/// sigtimedwait for the signals of `set`: true when one arrived within `seconds`.
fn wait_signal(set: &libc::sigset_t, seconds: f64) -> bool {
    let seconds = seconds.max(0.0);
    let ts = libc::timespec {
        tv_sec: seconds.trunc() as libc::time_t,
        tv_nsec: (seconds.fract() * 1e9) as libc::c_long,
    };
    loop {
        let got = unsafe { libc::sigtimedwait(set, ptr::null_mut(), &ts) };
        if got >= 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

struct Writer {
    _provider: ehd::Provider,
    set: Arc<ehd::EventSet>,
    builder: EventBuilder,
}

impl Writer {
    fn new() -> Writer {
        let mut provider = ehd::Provider::new(PROVIDER, &ehd::Provider::new_options());
        let set = provider.register_set(Level::Informational, 0x1);
        if set.errno() != 0 {
            eprintln!("eh-latency: registering {PROVIDER}_L4K1 failed: errno {}", set.errno());
            process::exit(1);
        }
        Writer { _provider: provider, set, builder: EventBuilder::new() }
    }

    /// One Probe event; true when it reached the kernel (a listener has the tracepoint enabled).
    fn write(&mut self, seq: u32, t0: u64) -> bool {
        if !self.set.enabled() {
            return false;
        }
        self.builder
            .reset("Probe", 0)
            .add_value("seq", seq, F::Default, 0)
            .add_value("t0", t0, F::Default, 0);
        self.builder.write(&self.set, None, None) == 0
    }
}

fn probe(interval: f64, count: u32, timeout: f64) -> process::ExitCode {
    let usr1 = block(libc::SIGUSR1);
    let mut w = Writer::new();
    println!("{}", process::id());
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    // Warm-up: write until dyntel answers, as the Python probe calls getppid() until it does.
    let deadline = now_ns() + 120_000_000_000;
    let mut seq = 0u32;
    loop {
        w.write(seq, now_ns());
        seq = seq.wrapping_add(1);
        if wait_signal(&usr1, 0.2) {
            break;
        }
        if now_ns() > deadline {
            println!("{{\"error\": \"no signal within 120 s: is dyntel running?\"}}");
            return process::ExitCode::FAILURE;
        }
    }
    std::thread::sleep(std::time::Duration::from_secs_f64(interval.max(0.5)));
    while wait_signal(&usr1, 0.0) {}
    println!("ready");
    let _ = std::io::stdout().flush();
    let (mut starts, mut lat, mut missed) = (Vec::new(), Vec::new(), 0u32);
    let step = (interval * 1e9) as u64;
    let mut next = now_ns();
    for _ in 0..count {
        next += step;
        sleep_until(next);
        let t0 = now_ns();
        let sent = w.write(seq, t0);
        seq = seq.wrapping_add(1);
        starts.push(t0);
        if sent && wait_signal(&usr1, timeout) {
            lat.push(now_ns() - t0);
        } else {
            missed += 1;
        }
        while wait_signal(&usr1, 0.0) {} // a late one from a missed probe
    }
    let join = |v: &[u64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
    println!("{{\"starts\": [{}], \"latencies_ns\": [{}], \"missed\": {}}}", join(&starts), join(&lat), missed);
    process::ExitCode::SUCCESS
}

fn load(rate: f64) -> process::ExitCode {
    let term = block(libc::SIGTERM);
    let mut w = Writer::new();
    let (mut made, mut written) = (0u64, 0u64);
    let mut first: Option<u64> = None;
    let t0 = now_ns();
    loop {
        let target = ((now_ns() - t0) as f64 / 1e9 * rate) as u64;
        while made < target {
            if w.write(made as u32, now_ns()) {
                written += 1;
                first.get_or_insert_with(now_ns);
            }
            made += 1;
        }
        // The 1 ms pause between slices is also where SIGTERM is taken.
        if wait_signal(&term, 0.001) {
            break;
        }
    }
    let since = first.map_or(0.0, |f| (now_ns() - f) as f64 / 1e9);
    println!("{}", if since > 0.0 { written as f64 / since } else { 0.0 });
    process::ExitCode::SUCCESS
}

fn main() -> process::ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|v| v.parse::<f64>().ok());
    match (args.first().map(String::as_str), args.len()) {
        (Some("probe"), 5) if args[4] == "wait" => match (num(1), num(2), num(3)) {
            (Some(i), Some(c), Some(t)) => probe(i, c as u32, t),
            _ => usage(),
        },
        (Some("load"), 2) => match num(1) {
            Some(r) => load(r),
            None => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> process::ExitCode {
    eprintln!("usage: eh-latency probe INTERVAL COUNT TIMEOUT wait | eh-latency load RATE");
    process::ExitCode::from(2)
}
