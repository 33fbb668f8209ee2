//! Durability: an acknowledged write survives `kill -9`, and the write reaches the disk with
//! `fdatasync` before the response leaves (checked with strace on the real binary).
//!
//! The nodes run without the instance registry (`--instance-registry off`): these tests
//! count store revisions, which its leased keys would move.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut c = Cluster::start_with(1, &["--instance-registry", "off"]);
    let mut acked = Vec::new();
    for i in 0..300 {
        let (status, body) = c
            .node(1)
            .put(&format!("/durable/{i:04}"), &format!("v{i}"))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        acked.push(i);
    }
    let revision = c.node(1).revision(false);
    c.node_mut(1).kill9();
    c.node_mut(1).start();
    c.node(1).wait_ready(Duration::from_secs(30));
    let stored = c.node(1).range_prefix("/durable/", false);
    for i in acked {
        assert_eq!(
            stored.get(&format!("/durable/{i:04}")),
            Some(&format!("v{i}"))
        );
    }
    assert_eq!(c.node(1).revision(false), revision);
}

/// The pid of the hermes process whose command line mentions `marker` (strace's child).
fn find_hermes(marker: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("hermes"))
            && args.iter().any(|a| a.contains(marker))
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn put_is_fdatasynced_before_the_response_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), 1);
    let trace = dir.path().join("strace.txt");
    let data_dir = node.data_dir.to_str().unwrap().to_string();
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-s", "64", "-o", trace.to_str().unwrap()])
        .args([
            "-e",
            "trace=fdatasync,fsync,read,recvfrom,write,writev,sendto,sendmsg",
        ])
        .arg(hermes_bin())
        .args(["node", "--data-dir", &data_dir])
        .args(["--peer-listen", &format!("127.0.0.1:{}", node.peer_port)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", node.admin_port)])
        .args(["--etcd-listen", &format!("127.0.0.1:{}", node.etcd_port)])
        .args(["--proxy-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace is installed by scripts/test");
    node.wait_ready(Duration::from_secs(60));
    let (status, body) = node.put("/synced", "before-the-answer").unwrap();
    assert_eq!(status, 200, "{body}");
    // strace writes a call's line when the call returns, which may be just after the client
    // has the answer: wait for the answer's write in the trace.
    wait_for(
        "the answer's write in the trace",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&trace).ok()?;
            let request = text.find("POST /v3/kv/put")?;
            text[request..].contains("HTTP/1.1 200").then_some(())
        },
    );
    if let Some(pid) = find_hermes(&data_dir) {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    let _ = strace.wait();

    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let request = lines
        .iter()
        .position(|l| l.contains("POST /v3/kv/put"))
        .expect("the request read is in the trace");
    let response = lines[request..]
        .iter()
        .position(|l| l.contains("HTTP/1.1 200"))
        .map(|i| i + request)
        .expect("the response write is in the trace");
    // A completed `fdatasync` of the raft log's segment (`raft/<first index>.wal`) that started
    // after the request was read: either one line, or strace's `<unfinished ...>` line followed
    // by `<... fdatasync resumed>) = 0` from the same thread (strace pads before the `=`).
    let returned_zero = |l: &str| l.trim_end().ends_with("= 0");
    let thread = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
    let mut started = std::collections::HashSet::new();
    let mut synced = false;
    for l in &lines[request..response] {
        if l.contains("fdatasync(") && l.contains(".wal>") {
            if l.contains("<unfinished") {
                started.insert(thread(l));
            } else if returned_zero(l) {
                synced = true;
            }
        } else if l.contains("<... fdatasync resumed>")
            && started.contains(&thread(l))
            && returned_zero(l)
        {
            synced = true;
        }
    }
    assert!(
        synced,
        "no completed fdatasync of the store between request and response:\n{}",
        lines[request..=response].join("\n")
    );
}

/// A node whose disk starts failing its writes stops (etcd's choice) instead of answering every
/// write "server stopped" while its health checks say it is fine. The failure is real: strace
/// makes every `fdatasync` of the raft log's segment fail with EIO after the first few.
#[test]
fn a_failing_disk_stops_the_node_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), 1);
    let data_dir = node.data_dir.to_str().unwrap().to_string();
    let segment = node.data_dir.join("raft").join("00000000000000000000.wal");
    let log = std::fs::File::create(&node.log_path).unwrap();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-P", segment.to_str().unwrap()])
        .args([
            "-e",
            "trace=fdatasync",
            "-e",
            // Past start-up: besides its syncs, the log writer tops up its zero-filled
            // space while idle, 64 KiB and one fdatasync at a time (15 of them on a fresh
            // segment), so the failure lands on one of the writes below.
            "inject=fdatasync:error=EIO:when=60+",
        ])
        .arg(hermes_bin())
        .args(["node", "--data-dir", &data_dir])
        .args(["--peer-listen", &format!("127.0.0.1:{}", node.peer_port)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", node.admin_port)])
        .args(["--etcd-listen", &format!("127.0.0.1:{}", node.etcd_port)])
        .args(["--proxy-listen", "127.0.0.1:0"])
        .env("HERMES_API_INITIAL_ADMIN", "off")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("strace is installed by scripts/test");
    node.wait_ready(Duration::from_secs(60));
    let mut failed = None;
    for i in 0..200 {
        match node.put(&format!("/k{i}"), "v") {
            Ok((200, _)) => continue,
            other => {
                failed = Some((i, other));
                break;
            }
        }
    }
    assert!(failed.is_some(), "every write succeeded on a failing disk");
    let status = wait_for("the node to stop", Duration::from_secs(30), || {
        strace.try_wait().unwrap()
    });
    assert!(!status.success(), "the node stops with a failure status");
    let text = node.log();
    assert!(
        text.contains("writing the raft log failed") && text.contains("Input/output error"),
        "the cause is in the log:\n{text}"
    );
}
