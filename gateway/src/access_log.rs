//! The access log: one JSON line per request, written off the request path. A request formats
//! its line straight into its thread's own buffer (no allocation per line, a lock nobody else
//! takes but the writer, and no cache line shared with another proxy thread); a writer thread
//! takes each buffer whole every [`FLUSH_EVERY`] (or sooner once one holds [`FLUSH_AT`] bytes)
//! and writes it out in one call. Lines of one thread stay in order; lines of different
//! threads within one flush are not interleaved by time (their timestamps say). A reader that
//! cannot keep up never stalls the proxy: past [`MAX_PENDING`] bytes lines are dropped and
//! counted (`hermes_access_log_dropped_total`), as the original gateway dropped them.
//!
//! The line has the fields and order of the `tracing` JSON lines it replaces, so collectors
//! parsing them keep working: `timestamp`, `level`, `message` ("access"), then the request's.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::digits::push_padded;

pub mod page_cache;

/// The writer wakes at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines waiting in one thread's buffer that wake the writer early.
pub const FLUSH_AT: usize = 256 * 1024;
/// Lines waiting, in all buffers together, beyond which new ones are dropped.
pub const MAX_PENDING: usize = 16 << 20;
/// The least one buffer may hold however many threads share [`MAX_PENDING`].
const MIN_SHARD_PENDING: usize = 1 << 20;

struct Shared {
    /// One buffer per proxy thread and one for every other thread
    /// ([`crate::proxy::threads::shard`]).
    shards: Box<[Mutex<Vec<u8>>]>,
    /// Bytes one buffer may hold.
    limit: usize,
    /// Set before the writer's last pass; a line appended after it is dropped, not lost.
    closed: AtomicBool,
    /// Whether the writer has been woken early; it sleeps on `wake`.
    signal: Mutex<bool>,
    wake: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    fn new(shards: usize) -> Shared {
        let shards = shards.max(1);
        Shared {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            limit: (MAX_PENDING / shards).max(MIN_SHARD_PENDING),
            closed: AtomicBool::new(false),
            signal: Mutex::new(false),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn wake_writer(&self) {
        *lock(&self.signal) = true;
        self.wake.notify_one();
    }
}

/// The process's access log, once installed.
static LOG: OnceLock<AccessLog> = OnceLock::new();

pub struct AccessLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Keeps the writer going; dropping it writes what is left and stops it.
pub struct Flusher;

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(log) = LOG.get() {
            log.close();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Bytes and a flag: a panic elsewhere cannot leave them harmful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the access log, written to `out` by a thread of its own, with a buffer for each
/// of `shards` threads ([`crate::proxy::threads::count`] + 1). A regular file is kept out of
/// the page cache behind the writer ([`page_cache`]). Only the first call installs one;
/// `None` if one was installed already or the thread could not start.
pub fn install(
    out: impl Write + std::os::fd::AsFd + Send + 'static,
    shards: usize,
) -> Option<Flusher> {
    let shared = Arc::new(Shared::new(shards));
    let for_writer = shared.clone();
    let trim = page_cache::Trim::for_fd(&out);
    let writer = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_out(&for_writer, out, trim))
        .ok()?;
    let log = AccessLog {
        shared,
        writer: Mutex::new(Some(writer)),
    };
    LOG.set(log).ok()?;
    Some(Flusher)
}

/// Whether an access log is installed (requests skip formatting otherwise).
pub fn enabled() -> bool {
    LOG.get().is_some()
}

/// Lines dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    LOG.get()
        .map_or(0, |l| l.shared.dropped.load(Ordering::Relaxed))
}

fn write_out(shared: &Shared, mut out: impl Write, mut trim: Option<page_cache::Trim>) {
    let mut spare = Vec::new();
    loop {
        {
            let mut woken = lock(&shared.signal);
            if !*woken && !shared.closed.load(Ordering::Acquire) {
                woken = shared
                    .wake
                    .wait_timeout(woken, FLUSH_EVERY)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            *woken = false;
        }
        // Read before the pass: once set, every line appended before it is in this pass.
        let closed = shared.closed.load(Ordering::Acquire);
        let mut wrote = false;
        for shard in shared.shards.iter() {
            std::mem::swap(&mut *lock(shard), &mut spare);
            if !spare.is_empty() {
                // Nowhere to report a failed write but the lines themselves: they are lost.
                let _ = out.write_all(&spare);
                spare.clear();
                // Do not keep a burst's worth of memory for ever.
                spare.shrink_to(FLUSH_AT * 2);
                wrote = true;
            }
        }
        // An idle pass costs no syscall.
        if wrote {
            let _ = out.flush();
            if let Some(trim) = trim.as_mut() {
                trim.after_write();
            }
        }
        if closed {
            return;
        }
    }
}

impl AccessLog {
    /// Appends what `format` writes to the calling thread's buffer, unless the log is closed
    /// or the buffer full (then the line is counted as dropped).
    fn append_with(&self, format: impl FnOnce(&mut Vec<u8>)) {
        let shared = &*self.shared;
        let shard = &shared.shards[crate::proxy::threads::shard() % shared.shards.len()];
        let mut buf = lock(shard);
        // Checked under the buffer's lock, which the writer's last pass takes after setting it.
        if shared.closed.load(Ordering::Acquire) {
            drop(buf);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buf.len();
        format(&mut buf);
        if buf.len() > shared.limit {
            buf.truncate(before);
            drop(buf);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let wake = buf.len() >= FLUSH_AT && before < FLUSH_AT;
        drop(buf);
        if wake {
            shared.wake_writer();
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_writer();
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

/// One request's fields.
pub struct Line<'a> {
    pub client_ip: std::net::IpAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub domain: &'a str,
    pub route: &'a str,
    pub cluster: &'a str,
    pub upstream: &'a str,
    pub bytes: u64,
    pub latency_ms: f64,
    pub upstream_ms: Option<f64>,
    pub failure: Option<&'a str>,
    pub failed_by: Option<&'a str>,
}

/// Writes `line` to the access log, if one is installed.
pub fn write(line: &Line<'_>) {
    if let Some(log) = LOG.get() {
        let now = SystemTime::now();
        log.append_with(|buf| format_line(buf, line, now));
    }
}

thread_local! {
    /// The second last formatted (`YYYY-MM-DDTHH:MM:SS`), and its Unix time: lines of the
    /// same second share it instead of converting the date again.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// Appends `now` as RFC 3339 with microseconds, UTC (`2026-12-05T04:59:59.434509Z`).
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = humantime::format_rfc3339_seconds(now).to_string();
            // `YYYY-MM-DDTHH:MM:SSZ`: the 19 bytes before the `Z`.
            if let Some(prefix) = text.as_bytes().get(..19) {
                cached.1.copy_from_slice(prefix);
                cached.0 = secs;
            }
        }
        buf.extend_from_slice(&cached.1);
    });
    buf.push(b'.');
    push_padded(buf, u64::from(since.subsec_micros()), 6);
    buf.push(b'Z');
}

/// Appends milliseconds with microsecond precision (`3.088`), without float formatting.
fn push_millis(buf: &mut Vec<u8>, ms: f64) {
    let micros = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    push_padded(buf, micros / 1000, 1);
    buf.push(b'.');
    push_padded(buf, micros % 1000, 3);
}

fn format_line(buf: &mut Vec<u8>, l: &Line<'_>, now: SystemTime) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\",\"client_ip\":\"");
    // Writes into a Vec cannot fail.
    let _ = write!(buf, "{}", l.client_ip);
    buf.push(b'"');
    for (key, value) in [("method", l.method), ("host", l.host), ("path", l.path)] {
        string_field(buf, key, value);
    }
    buf.extend_from_slice(b",\"status\":");
    push_padded(buf, u64::from(l.status), 1);
    for (key, value) in [
        ("domain", l.domain),
        ("route", l.route),
        ("cluster", l.cluster),
        ("upstream", l.upstream),
    ] {
        string_field(buf, key, value);
    }
    buf.extend_from_slice(b",\"bytes\":");
    push_padded(buf, l.bytes, 1);
    buf.extend_from_slice(b",\"latency_ms\":");
    push_millis(buf, l.latency_ms);
    if let Some(ms) = l.upstream_ms {
        buf.extend_from_slice(b",\"upstream_ms\":");
        push_millis(buf, ms);
    }
    if let Some(f) = l.failure {
        string_field(buf, "failure", f);
    }
    if let Some(f) = l.failed_by {
        string_field(buf, "failed_by", f);
    }
    buf.extend_from_slice(b"}\n");
}

fn string_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":\"");
    escape(buf, value);
    buf.push(b'"');
}

/// JSON string escaping: quotes, backslashes and control characters.
fn escape(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => {
                buf.extend_from_slice(&bytes[start..i]);
                let _ = write!(buf, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escaped);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, failure: Option<&'a str>) -> Line<'a> {
        Line {
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            method: "GET",
            host: "h.test",
            path,
            status: 502,
            domain: "d",
            route: "r",
            cluster: "c",
            upstream: "10.0.0.1:80",
            bytes: 27,
            latency_ms: 1.5,
            upstream_ms: None,
            failure,
            failed_by: failure.map(|_| "upstream"),
        }
    }

    #[test]
    fn lines_are_json_with_the_tracing_fields() {
        let mut buf = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        format_line(&mut buf, &line("/a\"b\\c\u{1}", Some("connect")), at);
        assert_eq!(*buf.last().unwrap(), b'\n');
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "access");
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(v["status"], 502);
        assert_eq!(v["latency_ms"], 1.5);
        let mut buf = Vec::new();
        let mut slow = line("/", None);
        slow.latency_ms = 1234.0005;
        slow.upstream_ms = Some(0.0004);
        format_line(&mut buf, &slow, at + Duration::from_micros(7));
        let v2: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v2["timestamp"], "2023-11-14T22:13:20.123463Z");
        assert_eq!(v2["latency_ms"], 1234.001);
        assert_eq!(v2["upstream_ms"], 0.0);
        assert_eq!(v["failure"], "connect");
        assert_eq!(v["failed_by"], "upstream");
        assert!(v.get("upstream_ms").is_none());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(&keys[..3], ["timestamp", "level", "message"]);
    }

    #[test]
    fn the_writer_writes_everything_before_it_stops() {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let shared = Arc::new(Shared::new(3));
        let for_writer = shared.clone();
        let out = sink.clone();
        let writer = std::thread::spawn(move || write_out(&for_writer, out, None));
        let log = AccessLog {
            shared,
            writer: Mutex::new(Some(writer)),
        };
        let log = Arc::new(log);
        // Three threads: this one, and two that count as proxy threads 1 and 2.
        let others: Vec<_> = (1..=2)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    crate::proxy::threads::enter_for_test(t);
                    for i in 0..1_000 {
                        log.append_with(|b| b.extend_from_slice(format!("t{t} {i}\n").as_bytes()));
                    }
                })
            })
            .collect();
        for i in 0..10_000 {
            log.append_with(|b| b.extend_from_slice(format!("{i}\n").as_bytes()));
        }
        for t in others {
            t.join().unwrap();
        }
        log.close();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 12_000);
        // Each thread's lines in its order.
        for prefix in ["t1 ", "t2 "] {
            let mine: Vec<&str> = written.lines().filter(|l| l.starts_with(prefix)).collect();
            assert_eq!(mine.len(), 1_000);
            assert!(mine
                .iter()
                .enumerate()
                .all(|(i, l)| *l == format!("{prefix}{i}")));
        }
        let main: Vec<&str> = written.lines().filter(|l| !l.starts_with('t')).collect();
        assert_eq!(main.last(), Some(&"9999"));
        log.append_with(|b| b.extend_from_slice(b"late\n"));
        assert_eq!(log.shared.dropped.load(Ordering::Relaxed), 1);
    }
}
