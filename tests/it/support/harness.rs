//! Starting and stopping real `hermes` nodes and a real etcd on free loopback ports in temp dirs,
//! plus small HTTP helpers. A failing test prints the logs of every process it started.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The `hermes` binary under test.
pub fn hermes_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HERMES_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/it-xxxx → target/<profile>/hermes
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("hermes");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p hermes-node` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Ports are handed out from below Linux's ephemeral range (32768+), so that a port a test
/// node gives up while restarting cannot be taken by some process's outgoing connection.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
static NEXT_PORT: Mutex<u16> = Mutex::new(0);

/// A loopback port that is free now and not handed out before by this process, for a child
/// process to bind.
pub fn free_port() -> u16 {
    bound_free_port().local_addr().unwrap().port()
}

/// A listener on a loopback port not handed out before by this process, for servers the test
/// runs itself: holding the socket leaves no moment between choosing the port and binding it
/// in which something else could take it.
pub fn bound_free_port() -> TcpListener {
    let mut next = NEXT_PORT.lock().unwrap();
    if *next == 0 {
        // Spread concurrent test processes over the range.
        let span = PORT_RANGE.end - PORT_RANGE.start;
        *next = PORT_RANGE.start + (std::process::id() % u32::from(span)) as u16;
    }
    loop {
        let port = *next;
        *next = if port + 1 >= PORT_RANGE.end {
            PORT_RANGE.start
        } else {
            port + 1
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn unb64(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build()
}

/// POSTs JSON; returns (status, body) for any status.
pub fn post(url: &str, body: &Value) -> Result<(u16, Value), String> {
    post_raw(url, &body.to_string())
}

pub fn post_raw(url: &str, body: &str) -> Result<(u16, Value), String> {
    match agent()
        .post(url)
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) => {
            let status = r.status();
            let text = r.into_string().map_err(|e| e.to_string())?;
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        }
        Err(ureq::Error::Status(status, r)) => {
            let text = r.into_string().unwrap_or_default();
            Ok((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

pub fn get(url: &str) -> Result<(u16, String), String> {
    match agent().get(url).call() {
        Ok(r) => {
            let status = r.status();
            Ok((status, r.into_string().map_err(|e| e.to_string())?))
        }
        Err(ureq::Error::Status(status, r)) => Ok((status, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `hermes node` process.
pub struct Node {
    pub id: u64,
    pub peer_port: u16,
    pub admin_port: u16,
    pub etcd_port: u16,
    pub proxy_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub extra_args: Vec<String>,
    /// Address the admin API listens on (loopback unless a test needs another).
    pub admin_host: String,
    /// Whether the node runs the embedded raft store (and so is given peer and etcd ports);
    /// false for a node whose stores are external (compat mode).
    pub embedded_store: bool,
    /// Whether the node runs the proxy (and so is given a proxy port); false for a node
    /// without the gateway role.
    pub proxies: bool,
    child: Option<Child>,
}

impl Node {
    pub fn new(root: &Path, id: u64) -> Node {
        Node {
            id,
            peer_port: free_port(),
            admin_port: free_port(),
            etcd_port: free_port(),
            proxy_port: free_port(),
            data_dir: root.join(format!("node{id}")),
            log_path: root.join(format!("node{id}.log")),
            extra_args: Vec::new(),
            admin_host: "127.0.0.1".into(),
            embedded_store: true,
            proxies: true,
            child: None,
        }
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn etcd(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = Command::new(hermes_bin());
        command
            .arg("node")
            .args(["--id", &self.id.to_string()])
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args([
                "--admin-listen",
                &format!("{}:{}", self.admin_host, self.admin_port),
            ]);
        if self.proxies {
            command.args(["--proxy-listen", &format!("127.0.0.1:{}", self.proxy_port)]);
        }
        if self.embedded_store {
            command
                .args(["--peer-listen", &format!("127.0.0.1:{}", self.peer_port)])
                .args(["--etcd-listen", &format!("127.0.0.1:{}", self.etcd_port)]);
        }
        let child = command
            .args(&self.extra_args)
            // No built-in admin unless a test asks: its first-start writes would move revisions.
            .env("HERMES_API_INITIAL_ADMIN", "off")
            .env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1")
            // Tests read the node's own lines as text (the JSON format has its own test).
            .env("HERMES_LOG_FORMAT", "text")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn hermes");
        self.child = Some(child);
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("node not running");
        // The kill command keeps the tests free of unsafe signal calls.
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not stop after SIGTERM",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn proxy(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid().unwrap())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Writes a key through the etcd JSON API, as the original controller would.
    pub fn put_key(&self, key: &str, value: &str) {
        let (status, body) = self.put(key, value).unwrap();
        assert_eq!(status, 200, "put {key}: {body}");
    }

    pub fn delete_key(&self, key: &str) {
        let (status, body) = post(
            &format!("{}/v3/kv/deleterange", self.etcd()),
            &json!({"key": b64(key)}),
        )
        .unwrap();
        assert_eq!(status, 200, "delete {key}: {body}");
    }

    /// A GET through this node's proxy with the given Host header.
    pub fn proxy_get(&self, host: &str, path: &str) -> ProxyAnswer {
        proxy_request(&self.proxy(), "GET", host, path, &[])
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The value of one series of the node's `/metrics` (`name{labels}` as printed, labels in
    /// name order), if it is there.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = get(&format!("{}/metrics", self.admin())).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// The last 200 lines of the node's log, on the test's stderr.
    pub fn print_log(&self) {
        eprintln!(
            "===== node {} log ({}) =====",
            self.id,
            self.log_path.display()
        );
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(200)..] {
            eprintln!("{line}");
        }
    }

    pub fn readyz(&self) -> Option<(u16, Value)> {
        let (status, body) = get(&format!("{}/readyz", self.admin())).ok()?;
        Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    pub fn wait_ready(&self, timeout: Duration) {
        wait_for(&format!("node {} ready", self.id), timeout, || {
            self.readyz().filter(|(s, _)| *s == 200).map(|_| ())
        });
    }

    /// `/api/v1/cluster/status` of this node.
    pub fn status(&self) -> Option<Value> {
        let (status, body) = get(&format!("{}/api/v1/cluster/status", self.admin())).ok()?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    pub fn leader(&self) -> Option<u64> {
        self.status()?["node"]["leader"].as_u64()
    }

    pub fn put(&self, key: &str, value: &str) -> Result<(u16, Value), String> {
        post(
            &format!("{}/v3/kv/put", self.etcd()),
            &json!({"key": b64(key), "value": b64(value)}),
        )
    }

    /// All keys under `prefix` as (key, value); `serializable` reads local state only.
    pub fn range_prefix(&self, prefix: &str, serializable: bool) -> BTreeMap<String, String> {
        let end = prefix_end(prefix);
        let (status, body) = post(
            &format!("{}/v3/kv/range", self.etcd()),
            &json!({"key": b64(prefix), "range_end": b64(&end), "serializable": serializable}),
        )
        .unwrap();
        assert_eq!(status, 200, "range on node {}: {body}", self.id);
        body["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (unb64(&kv["key"]), unb64(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn revision(&self, serializable: bool) -> i64 {
        let (_, body) = post(
            &format!("{}/v3/kv/range", self.etcd()),
            &json!({"key": b64("\u{0}"), "count_only": true, "serializable": serializable}),
        )
        .unwrap();
        body["header"]["revision"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        // Whoever owns the node (a test or a `Cluster`), a failing test shows what it said.
        if std::thread::panicking() {
            self.print_log();
        }
    }
}

/// What the proxy answered.
#[derive(Debug)]
pub struct ProxyAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ProxyAnswer {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.body.trim()).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Which test upstream answered.
    pub fn upstream(&self) -> String {
        self.json()["upstream"].as_str().unwrap_or("").to_string()
    }
}

pub fn proxy_request(
    base: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> ProxyAnswer {
    let mut req = agent()
        .request(method, &format!("{base}{path}"))
        .set("Host", host);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("proxy request {method} {host}{path}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    ProxyAnswer {
        status,
        headers,
        body: resp.into_string().unwrap_or_default(),
    }
}

pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    let last = bytes.pop().unwrap();
    bytes.push(last + 1);
    String::from_utf8(bytes).unwrap()
}

/// A set of nodes in one temp dir; prints every log if the test panics.
pub struct Cluster {
    /// Declared before `dir`: nodes drop (and print their logs on failure) while it exists.
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes bootstrapped with `--initial-cluster` and waits until all are ready.
    pub fn start(n: u64) -> Cluster {
        Self::start_with(n, &[])
    }

    pub fn start_with(n: u64, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=n).map(|id| Node::new(dir.path(), id)).collect();
        let initial: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer_url()))
            .collect();
        let initial = initial.join(",");
        for node in &mut nodes {
            if n > 1 {
                node.extra_args = vec!["--initial-cluster".into(), initial.clone()];
            }
            node.extra_args.extend(extra.iter().map(|s| s.to_string()));
            node.start();
        }
        let cluster = Cluster { dir, nodes };
        for node in &cluster.nodes {
            node.wait_ready(Duration::from_secs(30));
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// The leader as seen by a running node.
    pub fn leader(&mut self) -> u64 {
        let ids: Vec<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(n.id))
            .collect();
        wait_for("a leader", Duration::from_secs(20), || {
            ids.iter().find_map(|id| self.node(*id).leader())
        })
    }
}

/// Debian's etcd 3.4, started for a comparison.
pub struct Etcd {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client = free_port();
        let peer = free_port();
        let url = format!("http://127.0.0.1:{client}");
        let log = fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd is not installed: scripts/test installs etcd-server");
        let etcd = Etcd {
            url,
            child,
            _dir: dir,
        };
        wait_for("etcd to answer", Duration::from_secs(20), || {
            post(&format!("{}/v3/maintenance/status", etcd.url), &json!({}))
                .ok()
                .filter(|(s, _)| *s == 200)
        });
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads newline-delimited JSON objects from a streaming response in a background thread.
pub struct LineStream {
    pub rx: std::sync::mpsc::Receiver<Value>,
}

impl LineStream {
    pub fn open(url: &str, body: &str) -> LineStream {
        let resp = ureq::AgentBuilder::new()
            .build()
            .post(url)
            .send_string(body)
            .expect("open stream");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(resp.into_reader());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.trim().is_empty() {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    return;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        LineStream { rx }
    }

    pub fn next(&self, timeout: Duration) -> Option<Value> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// Announces a phase of a multi-phase test, so that a failure's output says which one failed.
pub fn phase(n: u32, what: impl std::fmt::Display) {
    eprintln!("phase {n}: {what}");
}
