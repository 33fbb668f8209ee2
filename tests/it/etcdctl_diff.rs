//! One script of `etcdctl` (Debian's 3.4) commands, run against a three-member etcd 3.4 and a
//! three-node Hermes cluster over gRPC: the outputs must match once ids, revisions, addresses,
//! sizes and timings are normalised.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::harness::*;
use hermes_compat::testing::etcd::TestEtcd;

/// A three-member etcd 3.4 cluster (`hermes_compat::testing`), and every member's client URL.
fn etcd_cluster() -> (TestEtcd, Vec<String>) {
    let etcd = TestEtcd::start_with(3, &[]);
    let urls = etcd
        .endpoints()
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    (etcd, urls)
}

#[derive(Debug, PartialEq, Eq)]
struct Output {
    code: i32,
    stdout: String,
    /// etcdctl's own messages, without its client library's timestamped JSON logging.
    errors: String,
}

fn command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoint.replace("http://", "")))
        .arg("--command-timeout=5s")
        .args(args);
    cmd
}

fn collect(out: std::process::Output) -> Output {
    let stderr = String::from_utf8_lossy(&out.stderr);
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        errors: stderr
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command(endpoint, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is not installed: scripts/test installs etcd-client");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    collect(child.wait_with_output().unwrap())
}

/// Runs a command that does not end by itself (watch, elect, lock holders) until it printed
/// `lines` lines, then stops it; answers those lines.
fn until_lines(endpoint: &str, args: &[&str], lines: usize) -> (Child, String) {
    let mut child = command(endpoint, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    while got.len() < lines {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(_) => panic!("etcdctl {args:?} printed only {got:?} in 15 s"),
        }
    }
    (child, got.join("\n") + "\n")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Replaces what differs between two servers by nature.
fn normalise(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"https?://127\.0\.0\.1:\d+", "<url>"),
        (r"127\.0\.0\.1:\d+", "<endpoint>"),
        (r"\b[0-9a-f]{1,16}\b, (started|unstarted)", "<id>, $1"),
        (r"(<url>|<endpoint>), [0-9a-f]{1,16},", "$1, <id>,"),
        (r"lease [0-9a-f]+", "lease <id>"),
        (
            r"transferred from [0-9a-f]+ to [0-9a-f]+",
            "transferred from <id> to <id>",
        ),
        (r"/[0-9a-f]{8,16}\b", "/<lease>"),
        (r"\b(m\d|hermes-\d+)\b", "<name>"),
        (r"took = [0-9.]+[µnm]?s", "took = <t>"),
        (r"remaining\(\d+s\)", "remaining(<n>s)"),
        (r"compacted revision \d+", "compacted revision <n>"),
        (
            r"<id>, [0-9.]+, [0-9.]+ [kMG]?B, (true|false), (true|false), \d+, \d+, \d+,",
            "<id>, <version>, <size>, $1, $2, <term>, <index>, <applied>,",
        ),
    ];
    let mut out = text.to_string();
    for (pattern, with) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, *with)
            .into_owned();
    }
    // Members and endpoints come in each server's own order.
    let mut lines: Vec<&str> = out.lines().collect();
    if lines.iter().all(|l| l.contains("<id>, ")) && !lines.is_empty() {
        lines.sort();
    }
    lines.join("\n")
}

/// The revision of `key` as the server reports it (`get -w json`).
fn mod_revision(endpoint: &str, key: &str) -> i64 {
    let out = etcdctl(endpoint, &["get", key, "-w", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["kvs"][0]["mod_revision"].as_i64().unwrap()
}

/// The leader's member id and a follower's, from `endpoint status` of every member.
fn leader_and_follower(endpoints: &str) -> (u64, u64) {
    let out = etcdctl(endpoints, &["endpoint", "status", "-w", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let statuses = v.as_array().unwrap();
    let leader = statuses[0]["Status"]["leader"].as_u64().unwrap();
    let follower = statuses
        .iter()
        .map(|s| s["Status"]["header"]["member_id"].as_u64().unwrap())
        .find(|id| *id != leader)
        .unwrap();
    (leader, follower)
}

/// The whole script against one server's endpoint; every step's normalised output.
fn script(endpoints: &[String]) -> Vec<(String, String)> {
    let endpoint = endpoints[0].as_str();
    let results = std::cell::RefCell::new(Vec::new());
    let run = |name: &str, args: &[&str], stdin: Option<&str>| {
        let out = etcdctl(endpoint, args, stdin);
        let shown = format!(
            "exit {}\n{}\n{}",
            out.code,
            normalise(&out.stdout),
            normalise(&out.errors)
        );
        results.borrow_mut().push((name.to_string(), shown));
        out
    };
    run("put a", &["put", "/diff/a", "1"], None);
    run("put b", &["put", "/diff/b", "22"], None);
    run("put c", &["put", "/diff/c", "333"], None);
    let rev_b = mod_revision(endpoint, "/diff/b");
    run(
        "put a again",
        &["put", "/diff/a", "1111", "--prev-kv"],
        None,
    );
    run("get", &["get", "/diff/a"], None);
    run("get missing", &["get", "/diff/none"], None);
    run("get prefix", &["get", "/diff/", "--prefix"], None);
    run(
        "get limit",
        &["get", "/diff/", "--prefix", "--limit=2"],
        None,
    );
    run(
        "get sort",
        &[
            "get",
            "/diff/",
            "--prefix",
            "--sort-by=VALUE",
            "--order=DESCEND",
        ],
        None,
    );
    run(
        "get sort by modify",
        &[
            "get",
            "/diff/",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=ASCEND",
        ],
        None,
    );
    run(
        "get keys only",
        &["get", "/diff/", "--prefix", "--keys-only"],
        None,
    );
    // etcdctl 3.4 has no --count-only; the etcd-client tests ask for counts.
    let at_b = rev_b.to_string();
    run("get at revision", &["get", "/diff/a", "--rev", &at_b], None);
    run("get range", &["get", "/diff/a", "/diff/c"], None);
    run(
        "txn succeeds",
        &["txn", "-i"],
        Some("value(\"/diff/a\") = \"1111\"\n\nput /diff/t yes\nget /diff/b\n\nput /diff/t no\n\n"),
    );
    run(
        "txn fails",
        &["txn", "-i"],
        Some("mod(\"/diff/a\") < \"1\"\n\nput /diff/t yes\n\nget /diff/t\ndel /diff/c\n\n"),
    );
    run("del", &["del", "/diff/t"], None);
    run(
        "del prefix with prev",
        &["del", "/diff/", "--prefix", "--prev-kv"],
        None,
    );
    run("del missing", &["del", "/diff/none"], None);
    run("put x", &["put", "/diff/x", "1"], None);

    // Watch from a past revision, with the previous values.
    let first = mod_revision(endpoint, "/diff/x").to_string();
    run("put x again", &["put", "/diff/x", "2"], None);
    run("del x", &["del", "/diff/x"], None);
    let (child, lines) = until_lines(
        endpoint,
        &["watch", "/diff/", "--prefix", "--rev", &first, "--prev-kv"],
        13,
    );
    stop(child);
    results
        .borrow_mut()
        .push(("watch".into(), normalise(&lines)));

    // Leases.
    let grant = run("lease grant", &["lease", "grant", "60"], None);
    let id = Regex::new(r"lease ([0-9a-f]+) granted")
        .unwrap()
        .captures(&grant.stdout)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("no lease id in {grant:?}"));
    run(
        "put with lease",
        &["put", "/diff/leased", "v", &format!("--lease={id}")],
        None,
    );
    run(
        "keep-alive once",
        &["lease", "keep-alive", "--once", &id],
        None,
    );
    run(
        "timetolive keys",
        &["lease", "timetolive", "--keys", &id],
        None,
    );
    let listed = etcdctl(endpoint, &["lease", "list"], None);
    assert!(listed.stdout.contains(&id), "{listed:?}");
    run("lease revoke", &["lease", "revoke", &id], None);
    run("revoked key is gone", &["get", "/diff/leased"], None);
    run("timetolive unknown", &["lease", "timetolive", &id], None);
    run("revoke unknown", &["lease", "revoke", &id], None);

    // Compaction, and reading what it removed.
    run("put y", &["put", "/diff/y", "1"], None);
    let rev_y = mod_revision(endpoint, "/diff/y").to_string();
    run("put y again", &["put", "/diff/y", "2"], None);
    run("compaction", &["compaction", &rev_y], None);
    let before = (rev_y.parse::<i64>().unwrap() - 1).to_string();
    run("get compacted", &["get", "/diff/y", "--rev", &before], None);
    run("compaction again", &["compaction", &before], None);

    // The cluster.
    run("member list", &["member", "list"], None);
    // Every member by address, not `--cluster`: etcdctl 3.4 dials a member's client URL with
    // the whole URL as the HTTP/2 `:authority`, which etcd's Go server lets pass and hyper
    // refuses as malformed (docs/etcd.md).
    let all = endpoints.join(",");
    let status = etcdctl(&all, &["endpoint", "status"], None);
    results.borrow_mut().push((
        "endpoint status".into(),
        format!("exit {}\n{}", status.code, normalise(&status.stdout)),
    ));
    run(
        "endpoint health",
        &["endpoint", "health", "--cluster"],
        None,
    );
    // Leadership to a follower, which every member then sees.
    let (leader_id, follower_id) = leader_and_follower(&all);
    let target = format!("{follower_id:x}");
    // etcdctl sends it to whichever of the endpoints leads.
    let moved = etcdctl(&all, &["move-leader", &target], None);
    results.borrow_mut().push((
        "move-leader".into(),
        format!("exit {}\n{}", moved.code, normalise(&moved.stdout)),
    ));
    let (now_leader, _) = leader_and_follower(&all);
    results.borrow_mut().push((
        "leader moved".into(),
        format!("{}", now_leader == follower_id && now_leader != leader_id),
    ));

    // Elections and locks, client-side (leases, transactions and watches).
    let (leader, got) = until_lines(endpoint, &["elect", "diff-election", "first"], 2);
    results.borrow_mut().push(("elect".into(), normalise(&got)));
    let (observer, seen) = until_lines(endpoint, &["elect", "-l", "diff-election"], 2);
    results
        .borrow_mut()
        .push(("elect listen".into(), normalise(&seen)));
    stop(observer);
    stop(leader);
    run("lock", &["lock", "diff-lock", "echo", "locked"], None);
    let (holder, key) = until_lines(endpoint, &["lock", "diff-lock"], 1);
    results
        .borrow_mut()
        .push(("lock held".into(), normalise(&key)));
    stop(holder);
    results.into_inner()
}

#[test]
fn etcdctl_answers_like_etcd_3_4_on_three_nodes() {
    let (etcd, urls) = etcd_cluster();
    let expected = script(&urls);
    drop(etcd);
    // The reference answered what the script means to compare (so an empty answer on both
    // sides cannot pass).
    let step = |name: &str| &expected.iter().find(|(s, _)| s == name).unwrap().1;
    for (name, needle) in [
        ("get prefix", "/diff/b\n22"),
        ("txn succeeds", "SUCCESS"),
        ("watch", "DELETE"),
        ("timetolive keys", "attached keys([/diff/leased])"),
        ("get compacted", "compacted"),
        ("endpoint status", "true"),
        ("elect listen", "first"),
        ("move-leader", "transferred"),
        ("leader moved", "true"),
        ("lock", "locked"),
    ] {
        assert!(step(name).contains(needle), "{name}: {}", step(name));
    }

    let hermes = Cluster::start(3);
    let endpoints: Vec<String> = hermes.nodes.iter().map(|n| n.etcd()).collect();
    assert_same_steps(&expected, &script(&endpoints));
}

/// Fails the test naming every step whose normalised output differs.
fn assert_same_steps(expected: &[(String, String)], got: &[(String, String)]) {
    let mut differences = Vec::new();
    for ((step, want), (_, have)) in expected.iter().zip(got) {
        if want != have {
            differences.push(format!(
                "step {step:?}:\n  etcd:   {want:?}\n  hermes: {have:?}"
            ));
        }
    }
    assert_eq!(expected.len(), got.len());
    assert!(
        differences.is_empty(),
        "{} step(s) differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// etcd's role-based access control as etcdctl drives it: users, roles, permissions on a
/// prefix, AuthEnable, what a limited user may and may not do, revocations, AuthDisable.
fn auth_script(endpoint: &str) -> Vec<(String, String)> {
    let results = std::cell::RefCell::new(Vec::new());
    let with_input = |name: &str, args: &[&str], stdin: Option<&str>| {
        let out = etcdctl(endpoint, args, stdin);
        results.borrow_mut().push((
            name.to_string(),
            format!(
                "exit {}\n{}\n{}",
                out.code,
                normalise(&out.stdout),
                normalise(&out.errors)
            ),
        ));
    };
    let run = |name: &str, args: &[&str]| with_input(name, args, None);
    let root = "--user=root:root-pw";
    let alice = "--user=alice:alice-pw";
    run("seed", &["put", "/rbac/r", "readable"]);
    run("seed other", &["put", "/other", "hidden"]);
    run("user add root", &["user", "add", "root:root-pw"]);
    run("user add alice", &["user", "add", "alice:alice-pw"]);
    run("user add again", &["user", "add", "alice:x"]);
    run("role add", &["role", "add", "reader"]);
    run("role add again", &["role", "add", "reader"]);
    run(
        "grant read prefix",
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "/rbac/",
            "--prefix",
        ],
    );
    run(
        "grant readwrite prefix",
        &[
            "role",
            "grant-permission",
            "reader",
            "readwrite",
            "/rbac/w/",
            "--prefix",
        ],
    );
    run(
        "grant write key",
        &["role", "grant-permission", "reader", "write", "/single"],
    );
    run(
        "grant to missing role",
        &["role", "grant-permission", "nobody", "read", "/x"],
    );
    run("role get", &["role", "get", "reader"]);
    run("grant role", &["user", "grant-role", "alice", "reader"]);
    run(
        "grant missing role",
        &["user", "grant-role", "alice", "nobody"],
    );
    run(
        "grant to missing user",
        &["user", "grant-role", "bob", "reader"],
    );
    run("user get", &["user", "get", "alice"]);
    run("user get detail", &["user", "get", "alice", "--detail"]);
    run("user list", &["user", "list"]);
    run("role list", &["role", "list"]);
    run("auth enable", &["auth", "enable"]);
    run("no token", &["get", "/rbac/r"]);
    run("wrong password", &["get", "/rbac/r", "--user=alice:nope"]);
    run("alice reads", &["get", "/rbac/r", alice]);
    run("alice reads prefix", &["get", "/rbac/", "--prefix", alice]);
    run("alice reads outside", &["get", "/other", alice]);
    run("alice reads everything", &["get", "", "--from-key", alice]);
    run("alice writes read-only", &["put", "/rbac/r", "x", alice]);
    run("alice writes", &["put", "/rbac/w/1", "mine", alice]);
    run("alice writes single", &["put", "/single", "s", alice]);
    run("alice deletes read-only", &["del", "/rbac/r", alice]);
    run("alice deletes", &["del", "/rbac/w/1", alice]);
    with_input(
        "alice txn",
        &["txn", alice],
        Some("value(\"/rbac/r\") = \"readable\"\n\nput /rbac/w/t t\n\nget /other\n\n"),
    );
    with_input(
        "alice txn outside",
        &["txn", alice],
        Some("value(\"/rbac/r\") = \"readable\"\n\nput /other x\n\n\n"),
    );
    run("alice lists users", &["user", "list", alice]);
    run("alice gets herself", &["user", "get", "alice", alice]);
    run("alice gets her role", &["role", "get", "reader", alice]);
    run("alice adds a user", &["user", "add", "eve:eve-pw", alice]);
    run("root reads outside", &["get", "/other", root]);
    run("root deletes root", &["user", "delete", "root", root]);
    run("root deletes role root", &["role", "delete", "root", root]);
    run(
        "revoke permission",
        &[
            "role",
            "revoke-permission",
            "reader",
            "/rbac/w/",
            "--prefix",
            root,
        ],
    );
    run(
        "revoke missing permission",
        &["role", "revoke-permission", "reader", "/nothing", root],
    );
    run("alice writes revoked", &["put", "/rbac/w/2", "x", alice]);
    with_input(
        "change password",
        &["user", "passwd", "alice", "--interactive=false", root],
        Some("alice-new-pw\n"),
    );
    run("old password", &["get", "/rbac/r", alice]);
    run(
        "new password",
        &["get", "/rbac/r", "--user=alice:alice-new-pw"],
    );
    run(
        "revoke role",
        &["user", "revoke-role", "alice", "reader", root],
    );
    run(
        "revoke role again",
        &["user", "revoke-role", "alice", "reader", root],
    );
    run(
        "alice reads revoked",
        &["get", "/rbac/r", "--user=alice:alice-new-pw"],
    );
    run("role delete", &["role", "delete", "reader", root]);
    run("user delete", &["user", "delete", "alice", root]);
    run("auth disable", &["auth", "disable", root]);
    run("open again", &["get", "/rbac/r"]);
    results.into_inner()
}

#[test]
fn etcdctl_auth_answers_like_etcd_3_4() {
    let (etcd, urls) = etcd_cluster();
    let expected = auth_script(&urls[0]);
    drop(etcd);
    let step = |name: &str| &expected.iter().find(|(s, _)| s == name).unwrap().1;
    for (name, needle) in [
        ("role get", "KV Read:"),
        ("alice reads", "readable"),
        ("alice writes read-only", "permission denied"),
        ("alice lists users", "permission denied"),
        ("no token", "user name is empty"),
        ("auth enable", "Authentication Enabled"),
    ] {
        assert!(step(name).contains(needle), "{name}: {}", step(name));
    }
    let hermes = Cluster::start(3);
    assert_same_steps(&expected, &auth_script(&hermes.node(2).etcd()));
}
