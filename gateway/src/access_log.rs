//! The access log: one JSON line per request, written off the request path. A request formats
//! its line into a buffer its thread reuses (no allocation per line), then appends it to one
//! shared buffer under a lock held for a copy; a writer thread takes the whole buffer every
//! [`FLUSH_EVERY`] (or sooner once [`FLUSH_AT`] bytes wait) and writes it out in one call. A
//! reader that cannot keep up never stalls the proxy: past [`MAX_PENDING`] bytes lines are
//! dropped and counted (`hermes_access_log_dropped_total`), as the original gateway dropped
//! them.
//!
//! The line has the fields and order of the `tracing` JSON lines it replaces, so collectors
//! parsing them keep working: `timestamp`, `level`, `message` ("access"), then the request's.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::digits::push_padded;

/// The writer wakes at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines waiting that wake the writer early.
pub const FLUSH_AT: usize = 256 * 1024;
/// Lines waiting beyond which new ones are dropped.
pub const MAX_PENDING: usize = 16 << 20;

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
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

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A buffer of bytes: a panic elsewhere cannot leave it harmful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the access log, written to `out` by a thread of its own. Only the first call
/// installs one; `None` if one was installed already or the thread could not start.
pub fn install(out: impl Write + Send + 'static) -> Option<Flusher> {
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    let for_writer = shared.clone();
    let writer = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_out(&for_writer, out))
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

fn write_out(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        let closed = {
            let mut p = lock(&shared.pending);
            if p.buf.is_empty() && !p.closed {
                p = shared
                    .wake
                    .wait_timeout(p, FLUSH_EVERY)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::swap(&mut p.buf, &mut spare);
            p.closed
        };
        if !spare.is_empty() {
            // Nowhere to report a failed write but the lines themselves: they are lost.
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
            // Do not keep a burst's worth of memory for ever.
            spare.shrink_to(FLUSH_AT * 2);
        }
        if closed && lock(&shared.pending).buf.is_empty() {
            return;
        }
    }
}

impl AccessLog {
    fn append(&self, line: &[u8]) {
        let mut p = lock(&self.shared.pending);
        if p.closed || p.buf.len() + line.len() > MAX_PENDING {
            drop(p);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.buf.extend_from_slice(line);
        let wake = p.buf.len() >= FLUSH_AT;
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    fn close(&self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
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

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `line` to the access log, if one is installed.
pub fn write(line: &Line<'_>) {
    let Some(log) = LOG.get() else {
        return;
    };
    SCRATCH.with(|scratch| {
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return;
        };
        buf.clear();
        format_line(&mut buf, line, SystemTime::now());
        log.append(&buf);
    });
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
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let for_writer = shared.clone();
        let out = sink.clone();
        let writer = std::thread::spawn(move || write_out(&for_writer, out));
        let log = AccessLog {
            shared,
            writer: Mutex::new(Some(writer)),
        };
        for i in 0..10_000 {
            log.append(format!("{i}\n").as_bytes());
        }
        log.close();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 10_000);
        assert_eq!(written.lines().last(), Some("9999"));
        log.append(b"late\n");
        assert_eq!(log.shared.dropped.load(Ordering::Relaxed), 1);
    }
}
