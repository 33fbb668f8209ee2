//! A damaged or missing raft log is never rebuilt silently: each kind of damage keeps the node
//! from starting with a message naming the file and the way out; a single node comes back with
//! `hermes recover`; a three-node cluster with a damaged follower keeps every acknowledged
//! write and takes the follower back once it is re-added with an empty data directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const KEYS: usize = 100;

/// The oldest segment of a node's raft log.
fn first_segment(data_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("raft"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    segments.into_iter().next().expect("a segment")
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate,
    FlipBit,
    Zero,
    DeleteSegment,
    DeleteLog,
    DeleteVote,
}

/// Bytes of a segment up to its last non-zero one: about where its records end (the newest
/// segment is zero-filled beyond them, and damage there touches no entry).
fn records_len(segment: &Path) -> usize {
    let bytes = std::fs::read(segment).unwrap();
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Damages the log and says which path the refusal must name.
fn damage(data_dir: &Path, how: Damage) -> PathBuf {
    let segment = first_segment(data_dir);
    match how {
        Damage::Truncate => {
            let used = records_len(&segment);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .unwrap();
            f.set_len(used as u64 / 2).unwrap();
            segment
        }
        Damage::FlipBit => {
            let at = records_len(&segment) / 2;
            let mut bytes = std::fs::read(&segment).unwrap();
            bytes[at] ^= 0x04;
            std::fs::write(&segment, bytes).unwrap();
            segment
        }
        Damage::Zero => {
            let len = std::fs::metadata(&segment).unwrap().len() as usize;
            std::fs::write(&segment, vec![0u8; len]).unwrap();
            segment
        }
        Damage::DeleteSegment => {
            std::fs::remove_file(&segment).unwrap();
            data_dir.join("raft")
        }
        Damage::DeleteLog => {
            std::fs::remove_dir_all(data_dir.join("raft")).unwrap();
            data_dir.join("raft")
        }
        Damage::DeleteVote => {
            std::fs::remove_file(data_dir.join("raft").join("vote")).unwrap();
            data_dir.join("raft").join("vote")
        }
    }
}

fn write_keys(node: &Node, prefix: &str, n: usize) {
    for i in 0..n {
        let (s, b) = node
            .put(&format!("{prefix}{i:04}"), &format!("v{i}"))
            .unwrap();
        assert_eq!(s, 200, "{b}");
    }
}

/// Starts `node` and waits for it to give up, returning its log.
fn refused_start(node: &mut Node) -> String {
    node.start();
    wait_for(
        "the node to refuse to start",
        Duration::from_secs(30),
        || (!node.is_running()).then_some(()),
    );
    // Reaps the exited process, so the node can be started again.
    node.kill9();
    node.log()
}

#[test]
fn each_kind_of_log_damage_keeps_the_node_from_starting() {
    for how in [
        Damage::Truncate,
        Damage::FlipBit,
        Damage::Zero,
        Damage::DeleteSegment,
        Damage::DeleteLog,
        Damage::DeleteVote,
    ] {
        let mut c = Cluster::start(1);
        write_keys(c.node(1), "/damage/", KEYS);
        assert!(c.node_mut(1).terminate().success());
        let data_dir = c.node(1).data_dir.clone();
        let named = damage(&data_dir, how);
        std::fs::write(&c.node(1).log_path, "").unwrap();
        let log = refused_start(c.node_mut(1));
        assert!(
            log.contains(&named.display().to_string()),
            "{how:?}: the refusal names {}:\n{log}",
            named.display()
        );
        assert!(
            log.contains("hermes recover") && log.contains("member remove"),
            "{how:?}: the refusal says what to do:\n{log}"
        );
        assert!(
            !log.contains("\"ready\"") && !log.contains(" ready "),
            "{how:?}:\n{log}"
        );
    }
}

#[test]
fn a_single_node_comes_back_with_hermes_recover() {
    let mut c = Cluster::start(1);
    write_keys(c.node(1), "/kept/", KEYS);
    assert!(c.node_mut(1).terminate().success());
    let data_dir = c.node(1).data_dir.clone();
    damage(&data_dir, Damage::Truncate);
    refused_start(c.node_mut(1));

    let out = Command::new(hermes_bin())
        .args([
            "recover",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--id",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("moved to"), "{text}");
    let wrong = Command::new(hermes_bin())
        .args([
            "recover",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--id",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "another node's id is refused");

    c.node_mut(1).start();
    c.node(1).wait_ready(Duration::from_secs(30));
    let kept = c.node(1).range_prefix("/kept/", false);
    assert_eq!(
        kept.len(),
        KEYS,
        "the state machine had applied every write"
    );
    write_keys(c.node(1), "/after/", 10);
    assert!(c.node_mut(1).terminate().success());
    c.node_mut(1).start();
    c.node(1).wait_ready(Duration::from_secs(30));
    assert_eq!(c.node(1).range_prefix("/after/", false).len(), 10);
}

#[test]
fn a_damaged_follower_costs_the_cluster_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    // Acknowledged writes through every node, the damaged one too.
    for id in 1..=3 {
        write_keys(c.node(id), &format!("/acked/{id}/"), 70);
    }
    assert!(c.node_mut(follower).terminate().success());
    let data_dir = c.node(follower).data_dir.clone();
    damage(&data_dir, Damage::Truncate);
    refused_start(c.node_mut(follower));

    // The two healthy nodes hold every acknowledged write and go on taking writes.
    for id in [leader, other] {
        assert_eq!(
            c.node(id).range_prefix("/acked/", false).len(),
            210,
            "node {id}"
        );
    }
    write_keys(c.node(other), "/while-down/", 20);

    // The way back: remove the member, empty its data directory, re-add it.
    let out = Command::new(hermes_bin())
        .args(["member", "remove", &follower.to_string()])
        .args(["--endpoint", &c.node(leader).admin()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&data_dir, data_dir.with_extension("damaged")).unwrap();
    let join = c.node(other).admin();
    let node = c.node_mut(follower);
    node.extra_args = vec!["--join".into(), join];
    node.start();
    node.wait_ready(Duration::from_secs(60));
    wait_for(
        "the re-added node to catch up",
        Duration::from_secs(30),
        || {
            let n = c.node(follower);
            (n.range_prefix("/acked/", true).len() == 210
                && n.range_prefix("/while-down/", true).len() == 20)
                .then_some(())
        },
    );
    for id in 1..=3 {
        assert_eq!(
            c.node(id).range_prefix("/acked/", false).len(),
            210,
            "node {id}"
        );
    }
}
