//! Route rate limits on a real node (contracts/hermes.md §7.9): the token bucket and the
//! sliding window, their keys and refusals, and limiter state across configuration changes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream::Upstream;

fn limited_domain(host: &str, cluster: &str, rate_limit: Value) -> String {
    json!({"name": "limited", "hosts": [host], "routes": [
        {"name": "all", "uri": "/*", "clusters": [{"name": cluster}], "rate_limit": rate_limit}
    ]})
    .to_string()
}

/// Statuses of `n` requests sent one after another.
fn statuses(node: &Node, host: &str, path: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| node.proxy_get(host, path).status).collect()
}

fn metric(node: &Node, series: &str) -> f64 {
    node.metric(series).unwrap_or(0.0)
}

#[test]
fn a_bucket_of_five_a_second_and_two_more_refuses_after_its_burst_and_admits_at_its_rate() {
    let up = Upstream::start("u");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    // Keyed by path, so that waiting for the route on one path spends nothing of another's.
    let limit = json!({"mode": "req", "rate": 5, "burst": 2, "key": "uri"});
    node.put_key(
        "/hermes/domains/limited",
        &limited_domain("rl.test", "u", limit.clone()),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("rl.test", "/warm-up").status == 200).then_some(())
    });

    phase(
        1,
        "twenty requests at once: the bucket's seven, then refusals",
    );
    let burst = statuses(node, "rl.test", "/x", 20);
    let admitted = burst.iter().filter(|s| **s == 200).count();
    // Seven tokens at the start (a second's worth and the burst); the twenty requests take a
    // few milliseconds, in which at most one more token arrives.
    assert!((7..=8).contains(&admitted), "{burst:?}");
    assert!(burst[..7].iter().all(|s| *s == 200), "{burst:?}");
    assert_eq!(burst[19], 429, "{burst:?}");
    let refused = node.proxy_get("rl.test", "/x");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json(), json!({"error": "too many requests"}));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    // Another key has its own bucket.
    assert_eq!(node.proxy_get("rl.test", "/y").status, 200);

    phase(2, "then five a second");
    let start = Instant::now();
    let mut admitted = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        if node.proxy_get("rl.test", "/x").status == 200 {
            admitted += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // The bucket was empty: whatever the machine's pace, no more than the rate over the time
    // measured (and the fraction of a token left over), and, asked every 20 ms, hardly less.
    let expected = 5.0 * elapsed;
    assert!(
        f64::from(admitted) <= expected + 1.0 && f64::from(admitted) >= expected - 2.0,
        "{admitted} admitted in {elapsed:.2} s"
    );
    let rejected = metric(
        node,
        r#"gateway_rate_limit_rejected_total{domain="limited",mode="req",route="all"}"#,
    );
    assert!(rejected >= 12.0, "{rejected}");
    let limited = metric(
        node,
        r#"gateway_rate_limited_total{domain="limited",route="all"}"#,
    );
    assert_eq!(limited, rejected);
}

#[test]
fn a_window_limit_outlives_changes_elsewhere_and_restarts_when_it_changes() {
    let up = Upstream::start("u");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    // Three requests a minute per client address, refused with 503.
    let limit = |count: u64| {
        json!({"mode": "count", "count": count, "time_window": 60, "key": "remote_addr",
               "rejected_code": 503})
    };
    node.put_key(
        "/hermes/domains/limited",
        &limited_domain("win.test", "u", limit(3)),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("win.test", "/").status == 200).then_some(())
    });

    phase(1, "the window's three, then 503 with the time left");
    assert_eq!(statuses(node, "win.test", "/a", 3), vec![200, 200, 503]);
    let refused = node.proxy_get("win.test", "/b");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json(), json!({"error": "too many requests"}));
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        metric(
            node,
            r#"gateway_rate_limit_rejected_total{domain="limited",mode="count",route="all"}"#
        ) >= 2.0
    );

    phase(
        2,
        "another domain and the cluster change: the route table is rebuilt",
    );
    node.put_key(
        "/hermes/domains/other",
        &json!({"name": "other", "hosts": ["other.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "u"}]}]})
        .to_string(),
    );
    node.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 7}]})
            .to_string(),
    );
    wait_for("the other domain", Duration::from_secs(10), || {
        (node.proxy_get("other.test", "/").status == 200).then_some(())
    });
    assert_eq!(
        node.proxy_get("win.test", "/").status,
        503,
        "the limiter kept its count through the rebuild"
    );

    phase(3, "a new limit starts afresh");
    node.put_key(
        "/hermes/domains/limited",
        &limited_domain("win.test", "u", limit(4)),
    );
    // The old limit refuses until the new table is served; the new one admits at once.
    wait_for("the new limit", Duration::from_secs(10), || {
        (node.proxy_get("win.test", "/").status == 200).then_some(())
    });
    assert_eq!(statuses(node, "win.test", "/", 4), vec![200, 200, 200, 503]);
}
