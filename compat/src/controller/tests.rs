//! The controller role against a real etcd 3.4 and a real PostgreSQL 15: the feed reaches
//! etcd (create, update, delete, bulk replace, rollback) with the meta revision, drift goes
//! within a reconcile interval, status reaches the control store, one controller leads and
//! another takes over when it dies, and an original-style campaigner (etcdctl's `elect`, the
//! Go `concurrency.Election` the original controller uses) shares the election.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{election_prefix, Controller, ControllerConfig, ControllerMetrics};
use crate::postgres::PgControl;
use crate::testing::etcd::TestEtcd;
use crate::testing::postgres::TestPg;
use hermes_control::model::{Kind, Operator};
use hermes_control::store::{ControlStore, ResourceChange};

fn op() -> Operator {
    Operator("alice".into())
}

fn quick(id: &str) -> ControllerConfig {
    ControllerConfig {
        reconcile_every: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(3),
        heartbeat_every: Duration::from_millis(500),
        ..ControllerConfig::new("default", id)
    }
}

/// Polls `check` until it yields, failing after `limit`.
async fn until<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL control store and an etcd with a client, all real and fresh; the servers
/// stop when their handles drop.
async fn servers() -> (TestPg, TestEtcd, Client, Arc<dyn ControlStore>) {
    let pg = TestPg::start();
    let etcd_server = TestEtcd::start();
    let etcd = etcd_server.client().await;
    let control: Arc<dyn ControlStore> = Arc::new(PgControl::connect(&pg.dsn(), 50).await.unwrap());
    (pg, etcd_server, etcd, control)
}

/// Every key under `prefix`, with its value decoded as JSON (or as a string).
async fn keys_under(etcd: &Client, prefix: &str) -> Vec<(String, Value)> {
    let mut c = etcd.clone();
    let got = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    got.kvs()
        .iter()
        .map(|kv| {
            let value = serde_json::from_slice(kv.value())
                .unwrap_or_else(|_| Value::String(kv.value_str().unwrap().to_string()));
            (kv.key_str().unwrap().to_string(), value)
        })
        .collect()
}

async fn value_of(etcd: &Client, key: &str) -> Option<Value> {
    let mut c = etcd.clone();
    let got = c.get(key, None).await.unwrap();
    got.kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).unwrap())
}

fn domain(name: &str, host: &str) -> Value {
    json!({"name": name, "hosts": [host], "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": "c1", "weight": 100}]}]})
}

fn cluster(name: &str, port: u16) -> Value {
    json!({"name": name, "lb_type": "roundrobin", "nodes": [{"host": "127.0.0.1", "port": port, "weight": 1}]})
}

struct Running {
    controller: Arc<Controller>,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

fn start(control: Arc<dyn ControlStore>, etcd: &Client, config: ControllerConfig) -> Running {
    let controller = Controller::new(control, etcd.clone(), config);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(controller.clone().run(stop_rx));
    Running {
        controller,
        task,
        stop,
    }
}

/// Removes every election key: as if the leader's lease had expired.
async fn delete_election_keys(etcd: &Client) {
    etcd.clone()
        .delete(
            "/hermes/election/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
}

async fn wait_leading(r: &Running, want: bool, limit: Duration) {
    let mut leading = r.controller.leading();
    tokio::time::timeout(limit, leading.wait_for(|l| *l == want))
        .await
        .unwrap_or_else(|_| panic!("leading == {want} not within {limit:?}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reaches_etcd_and_drift_is_repaired() {
    let pg = TestPg::start();
    let etcd_server = TestEtcd::start();
    let etcd = etcd_server.client().await;
    let store = Arc::new(PgControl::connect(&pg.dsn(), 50).await.unwrap());
    let control: Arc<dyn ControlStore> = store.clone();
    // Something already there before the controller starts, and a stray key in etcd.
    control
        .write_resource(
            "default",
            Kind::Cluster,
            "c1",
            ResourceChange::Create {
                doc: cluster("c1", 8080),
            },
            &op(),
        )
        .await
        .unwrap();
    etcd.clone()
        .put("/hermes/domains/stray", "{}", None)
        .await
        .unwrap();

    let registry = prometheus::Registry::new();
    let metrics = ControllerMetrics::register(&registry, "default").unwrap();
    let running = start(
        control.clone(),
        &etcd,
        ControllerConfig {
            metrics: metrics.clone(),
            ..quick("ctrl-a")
        },
    );
    wait_leading(&running, true, Duration::from_secs(10)).await;
    assert!(metrics.is_leader());
    let limit = Duration::from_secs(10);
    until("the start-up reconcile", limit, || async {
        let keys = keys_under(&etcd, "/hermes/").await;
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        (names.contains(&"/hermes/clusters/c1") && !names.contains(&"/hermes/domains/stray"))
            .then_some(())
    })
    .await;

    // Create, update: the document as stored.
    let write = |name: &str, change| {
        let control = control.clone();
        let name = name.to_string();
        async move {
            control
                .write_resource("default", Kind::Domain, &name, change, &op())
                .await
                .unwrap()
        }
    };
    write(
        "api",
        ResourceChange::Create {
            doc: domain("api", "a.example.com"),
        },
    )
    .await;
    until("the create", limit, || async {
        (value_of(&etcd, "/hermes/domains/api").await? == domain("api", "a.example.com"))
            .then_some(())
    })
    .await;
    let updated = write(
        "api",
        ResourceChange::Update {
            doc: domain("api", "b.example.com"),
            expected_version: 1,
        },
    )
    .await;
    until("the update", limit, || async {
        (value_of(&etcd, "/hermes/domains/api").await? == domain("api", "b.example.com"))
            .then_some(())
    })
    .await;
    // The meta key follows the change log's revision, and so do the controller's metrics.
    until("the meta revision", limit, || async {
        let meta = value_of(&etcd, "/hermes/meta/config_revision").await?;
        (meta == json!(updated.revision)).then_some(())
    })
    .await;
    until("the control and synced revisions", limit, || async {
        (metrics.revisions() == (updated.revision, updated.revision)).then_some(())
    })
    .await;

    // Rollback to version 1.
    write("api", ResourceChange::Rollback { version: 1 }).await;
    until("the rollback", limit, || async {
        (value_of(&etcd, "/hermes/domains/api").await? == domain("api", "a.example.com"))
            .then_some(())
    })
    .await;

    // Delete.
    write("api", ResourceChange::Delete).await;
    until("the delete", limit, || async {
        value_of(&etcd, "/hermes/domains/api")
            .await
            .is_none()
            .then_some(())
    })
    .await;

    // Bulk replace: what is not in the new set goes.
    let imported = control
        .replace_config(
            "default",
            vec![
                domain("web", "w.example.com"),
                domain("shop", "s.example.com"),
            ],
            vec![cluster("c2", 9090)],
            &op(),
        )
        .await
        .unwrap();
    until("the bulk replace", limit, || async {
        let keys = keys_under(&etcd, "/hermes/").await;
        let names: Vec<&str> = keys
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !k.starts_with("/hermes/meta/") && !k.starts_with("/hermes/election/"))
            .collect();
        (names
            == [
                "/hermes/clusters/c2",
                "/hermes/domains/shop",
                "/hermes/domains/web",
            ])
        .then_some(())
    })
    .await;
    until("the meta revision after the import", limit, || async {
        let meta = value_of(&etcd, "/hermes/meta/config_revision").await?;
        (meta == json!(imported.revision)).then_some(())
    })
    .await;

    // Drift: a foreign key, a changed value, a removed key; gone within a reconcile.
    let (deletes, reconciles) = (metrics.repaired_deletes(), metrics.reconciles());
    let mut c = etcd.clone();
    c.put("/hermes/domains/foreign", "{\"name\":\"foreign\"}", None)
        .await
        .unwrap();
    c.put("/hermes/domains/nested/deeper", "x", None)
        .await
        .unwrap();
    c.put(
        "/hermes/domains/web",
        domain("web", "evil.example.com").to_string(),
        None,
    )
    .await
    .unwrap();
    c.delete("/hermes/clusters/c2", None).await.unwrap();
    until("drift repaired", Duration::from_secs(5), || async {
        let keys = keys_under(&etcd, "/hermes/").await;
        let ok = keys
            .iter()
            .any(|(k, v)| k == "/hermes/clusters/c2" && *v == cluster("c2", 9090))
            && keys
                .iter()
                .any(|(k, v)| k == "/hermes/domains/web" && *v == domain("web", "w.example.com"))
            && !keys
                .iter()
                .any(|(k, _)| k.contains("foreign") || k.contains("nested"));
        ok.then_some(())
    })
    .await;
    // The foreign and the nested keys, which only a reconcile removes (counted once its write
    // is through, just after etcd shows it).
    until("repairs counted", limit, || async {
        (metrics.repaired_deletes() >= deletes + 2 && metrics.reconciles() > reconciles)
            .then_some(())
    })
    .await;

    // The heartbeat and the registered instances reach the control store.
    c.put(
        "/hermes/instances/gw-1",
        json!({"id": "gw-1", "status": "running", "config_revision": 7}).to_string(),
        None,
    )
    .await
    .unwrap();
    c.put("/hermes/instances/gw-odd", "not json", None)
        .await
        .unwrap();
    until("instances reported", limit, || async {
        let reported = control.reported_instances("default").await.unwrap();
        let ids: Vec<(String, i64)> = reported
            .iter()
            .map(|i| (i.id.clone(), i.config_revision))
            .collect();
        (ids == [("gw-1".to_string(), 7), ("gw-odd".to_string(), 0)]).then_some(())
    })
    .await;
    let status = control.controllers("default").await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(
        (
            status[0].id.as_str(),
            status[0].status.as_str(),
            status[0].is_leader
        ),
        ("ctrl-a", "running", true)
    );

    // Stopping: a last heartbeat, and the election key goes at once (resigned).
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
    assert!(!metrics.is_leader());
    let status = control.controllers("default").await.unwrap();
    assert_eq!(
        (status[0].status.as_str(), status[0].is_leader),
        ("shutting_down", false)
    );
    assert!(keys_under(&etcd, "/hermes/election/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_controller_leads_and_another_takes_over_when_it_dies() {
    let (_pg, _etcd_server, etcd, control) = servers().await;
    let a = start(control.clone(), &etcd, quick("ctrl-a"));
    wait_leading(&a, true, Duration::from_secs(10)).await;
    let b = start(control.clone(), &etcd, quick("ctrl-b"));
    // B campaigns (its key is there) but does not lead while A does.
    until("b campaigning", Duration::from_secs(10), || async {
        (keys_under(&etcd, "/hermes/election/").await.len() == 2).then_some(())
    })
    .await;
    assert!(!*b.controller.leading().borrow());
    // The keys are the original's: `<prefix>/<lease hex>` = the controller's id.
    let keys = keys_under(&etcd, "/hermes/election/").await;
    for (key, value) in &keys {
        let lease = key.trim_start_matches("/hermes/election/");
        assert!(i64::from_str_radix(lease, 16).is_ok(), "{key}");
        assert!(
            *value == json!("ctrl-a") || *value == json!("ctrl-b"),
            "{value}"
        );
    }

    // A dies without resigning: its lease runs out and B leads, within the TTL and a margin.
    a.task.abort();
    let _ = a.task.await;
    let died = Instant::now();
    wait_leading(&b, true, Duration::from_secs(10)).await;
    let took = died.elapsed();
    eprintln!("takeover after {took:?} (lease TTL 3 s)");
    let leader = etcd
        .clone()
        .leader(election_prefix("default"))
        .await
        .unwrap();
    assert_eq!(leader.kv().unwrap().value_str().unwrap(), "ctrl-b");
    b.stop.send(true).unwrap();
    b.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_style_campaigner_shares_the_election() {
    let (_pg, etcd_server, etcd, control) = servers().await;
    // etcdctl's `elect` campaigns with Go's concurrency.Election, as the original controller.
    let endpoint = format!("http://{}", etcd_server.endpoint());
    let mut go = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoint,
            "elect",
            "/hermes/election",
            "go-ctrl",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until(
        "the original-style leader",
        Duration::from_secs(10),
        || async {
            let mut c = etcd.clone();
            let leader = c.leader("/hermes/election").await.ok()?;
            (leader.kv()?.value_str().ok()? == "go-ctrl").then_some(())
        },
    )
    .await;
    let ours = start(control.clone(), &etcd, quick("ctrl-hermes"));
    until("ours campaigning", Duration::from_secs(10), || async {
        (keys_under(&etcd, "/hermes/election/").await.len() == 2).then_some(())
    })
    .await;
    assert!(!*ours.controller.leading().borrow(), "two leaders at once");
    // The original-style leader resigns (SIGINT closes its session): ours leads.
    Command::new("kill")
        .args(["-INT", &go.id().to_string()])
        .status()
        .unwrap();
    let _ = go.wait();
    wait_leading(&ours, true, Duration::from_secs(10)).await;
    ours.stop.send(true).unwrap();
    ours.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_election_key_is_gone_writes_nothing_and_campaigns_again() {
    let (_pg, _etcd_server, etcd, control) = servers().await;
    let running = start(control.clone(), &etcd, quick("ctrl-a"));
    wait_leading(&running, true, Duration::from_secs(10)).await;
    // Its key goes (as if its lease had expired and another controller had won): its next
    // write fails the fence, and it steps down instead of writing.
    delete_election_keys(&etcd).await;
    control
        .write_resource(
            "default",
            Kind::Domain,
            "fenced",
            ResourceChange::Create {
                doc: domain("fenced", "f.example.com"),
            },
            &op(),
        )
        .await
        .unwrap();
    wait_leading(&running, false, Duration::from_secs(10)).await;
    // Alone, it wins again, and then writes the change.
    wait_leading(&running, true, Duration::from_secs(15)).await;
    until(
        "the change after the new term",
        Duration::from_secs(10),
        || async { value_of(&etcd, "/hermes/domains/fenced").await.map(|_| ()) },
    )
    .await;
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_nothing_to_write_steps_down_when_its_key_goes() {
    let (_pg, _etcd_server, etcd, control) = servers().await;
    // No reconcile for a minute: nothing this controller writes can tell it.
    let config = ControllerConfig {
        reconcile_every: Duration::from_secs(60),
        ..quick("ctrl-a")
    };
    control
        .write_resource(
            "default",
            Kind::Domain,
            "before",
            ResourceChange::Create {
                doc: domain("before", "b.example.com"),
            },
            &op(),
        )
        .await
        .unwrap();
    let running = start(control, &etcd, config);
    wait_leading(&running, true, Duration::from_secs(10)).await;
    // Past its start-up writes (the last of which publishes the revision it starts from),
    // which would find out by their fence.
    until("the start-up sync", Duration::from_secs(10), || async {
        (value_of(&etcd, "/hermes/domains/before").await.is_some()
            && running.controller.synced_revision() > 0)
            .then_some(())
    })
    .await;
    delete_election_keys(&etcd).await;
    wait_leading(&running, false, Duration::from_secs(5)).await;
    // Alone, it campaigns and wins again.
    wait_leading(&running, true, Duration::from_secs(15)).await;
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}
