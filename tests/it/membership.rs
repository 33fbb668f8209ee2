//! A fourth node joins with `--join`, becomes a voter, and is removed with `hermes member
//! remove`; `hermes member move-leader` moves the leader; a removal that would break quorum needs `--force`.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn member_cmd(admin: &str, args: &[&str]) -> std::process::Output {
    Command::new(hermes_bin())
        .arg("member")
        .args(args)
        .args(["--endpoint", admin])
        .output()
        .unwrap()
}

fn voters(node: &Node) -> Vec<u64> {
    let status = node.status().unwrap_or_default();
    let mut ids: Vec<u64> = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

#[test]
fn join_as_voter_then_remove() {
    let mut c = Cluster::start(3);
    c.node(1).put("/before-join", "x").unwrap();

    phase(1, "node 4 joins through node 2's admin API");
    let mut fourth = Node::new(c.dir.path(), 4);
    fourth.extra_args = vec!["--join".into(), c.node(2).admin()];
    fourth.start();
    c.nodes.push(fourth);
    wait_for("node 4 to become a voter", Duration::from_secs(30), || {
        (voters(c.node(1)) == vec![1, 2, 3, 4]).then_some(())
    });
    c.node(4).wait_ready(Duration::from_secs(20));
    let seen = c.node(4).range_prefix("/before-join", false);
    assert_eq!(seen.get("/before-join").map(String::as_str), Some("x"));
    let list = member_cmd(&c.node(3).admin(), &["list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("yes")).count(),
        4,
        "{text}"
    );

    phase(2, "move the leader to another of nodes 1-3 with the CLI");
    let leader = c.leader();
    let target = (1..=3).find(|id| *id != leader).unwrap();
    let out = member_cmd(&c.node(3).admin(), &["move-leader", &target.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is now the leader"));
    assert_eq!(c.node(1).leader(), Some(target));
    let out = member_cmd(&c.node(3).admin(), &["move-leader", "77"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("77"));

    phase(3, "remove node 4 with the CLI; the cluster keeps working");
    let out = member_cmd(&c.node(1).admin(), &["remove", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "node 4 to leave the membership",
        Duration::from_secs(20),
        || (voters(c.node(2)) == vec![1, 2, 3]).then_some(()),
    );
    // The removed node stops being ready: it either saw its removal ("member") or, cut off
    // before the final configuration reached it, no longer hears from a leader ("leader").
    let (_, body) = wait_for(
        "node 4 to stop being ready",
        Duration::from_secs(10),
        || c.node(4).readyz().filter(|(s, _)| *s == 503),
    );
    assert!(
        body["failing"] == "member" || body["failing"] == "leader",
        "{body}"
    );
    c.node_mut(4).kill9();
    let (status, body) = c.node(3).put("/after-remove", "y").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.node(1).range_prefix("/after-remove", false).len(), 1);

    phase(
        4,
        "a learner added by hand is not promoted before it has caught up",
    );
    let idle_port = free_port();
    let add = member_cmd(
        &c.node(2).admin(),
        &["add", "6", &format!("http://127.0.0.1:{idle_port}")],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let list = member_cmd(&c.node(1).admin(), &["list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    let learner = text
        .lines()
        .find(|l| l.starts_with('6'))
        .unwrap_or_default();
    assert!(
        learner.contains(" no ") && learner.contains("unreachable"),
        "{text}"
    );
    let promote = member_cmd(&c.node(1).admin(), &["promote", "6"]);
    assert!(!promote.status.success());
    let err = String::from_utf8_lossy(&promote.stderr);
    assert!(err.contains("has not caught up"), "{err}");
    let out = member_cmd(&c.node(3).admin(), &["remove", "6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(voters(c.node(1)), vec![1, 2, 3]);

    phase(
        5,
        "with node 3 down, removing node 2 would leave 1 healthy voter of 2",
    );
    c.node_mut(3).kill9();
    let refused = member_cmd(&c.node(1).admin(), &["remove", "2"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--force") && err.contains("quorum"), "{err}");
    assert_eq!(voters(c.node(1)), vec![1, 2, 3], "nothing changed");
    let unknown = member_cmd(&c.node(1).admin(), &["remove", "9"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not a member"));
}
