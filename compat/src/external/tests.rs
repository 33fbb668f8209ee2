//! The gateway's side of an external etcd, against a real etcd 3.4: the configuration listed
//! then followed, resumed after an etcd restart without a missed or repeated change, listed
//! again after a compaction; the registration on a lease and the instance count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use etcd_client::{CompactionOptions, GetOptions};

use super::registry::EtcdRegistrar;
use super::source::EtcdSource;
use crate::testing::etcd::TestEtcd;
use hermes_gateway::config::source::{Change, ConfigSource, Prefixes, Update};
use hermes_gateway::registry::Registrar;

async fn next(source: &mut EtcdSource) -> Update {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match source.next().await {
                Ok(u) => return u,
                // etcd is restarting: the gateway retries the same way.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("an update within 20 s")
}

fn put(key: &str, value: &str) -> Change {
    Change {
        key: key.into(),
        value: Some(value.as_bytes().to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_is_listed_followed_resumed_and_listed_after_compaction() {
    let mut etcd = TestEtcd::start();
    let client = etcd.client().await;
    let mut c = client.clone();
    c.put("/hermes/domains/a", "{\"name\":\"a\"}", None)
        .await
        .unwrap();
    c.put("/hermes/clusters/c", "{\"name\":\"c\"}", None)
        .await
        .unwrap();
    c.put("/hermes/ns/other/domains/x", "{}", None)
        .await
        .unwrap();
    let mut source = EtcdSource::new(client.clone(), Prefixes::for_namespace("default"));
    let Update::Full { revision, items } = next(&mut source).await else {
        panic!("the first update is a listing")
    };
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/hermes/clusters/c", "/hermes/domains/a"]);

    // Followed: only the namespace's keys; instance churn under the root is not news.
    c.put("/hermes/instances/gw", "{}", None).await.unwrap();
    c.put("/hermes/domains/b", "{\"name\":\"b\"}", None)
        .await
        .unwrap();
    let Update::Changes {
        revision: at,
        changes,
    } = next(&mut source).await
    else {
        panic!("changes")
    };
    assert!(at > revision);
    assert_eq!(changes, [put("/hermes/domains/b", "{\"name\":\"b\"}")]);

    // etcd restarts; what was written meanwhile arrives once, in order.
    etcd.kill();
    etcd.start_again();
    c.delete("/hermes/domains/a", None).await.unwrap();
    c.put("/hermes/clusters/c", "{\"name\":\"c2\"}", None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match next(&mut source).await {
            Update::Changes { changes, .. } => seen.extend(changes),
            Update::Full { .. } => panic!("a restart does not need a listing"),
        }
    }
    assert_eq!(
        seen,
        [
            Change {
                key: "/hermes/domains/a".into(),
                value: None
            },
            put("/hermes/clusters/c", "{\"name\":\"c2\"}"),
        ]
    );

    // Compacted past where the source is: it lists again.
    let mut stale = EtcdSource::new(client.clone(), Prefixes::for_namespace("default"));
    let Update::Full { revision: old, .. } = next(&mut stale).await else {
        panic!("listing")
    };
    // Stop it mid-way: written, then compacted, before it watches again.
    c.put("/hermes/domains/z", "{}", None).await.unwrap();
    c.put("/hermes/domains/z", "{\"name\":\"z\"}", None)
        .await
        .unwrap();
    let now = c.get("/", None).await.unwrap().header().unwrap().revision();
    c.compact(now, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    assert!(now > old + 1);
    match next(&mut stale).await {
        Update::Full { revision, items } => {
            assert!(revision >= now);
            let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "/hermes/clusters/c",
                    "/hermes/domains/b",
                    "/hermes/domains/z"
                ]
            );
        }
        other => panic!("expected a new listing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_lives_on_its_lease() {
    let etcd = TestEtcd::start();
    let client = etcd.client().await;
    let mut c = client.clone();
    c.put("/hermes/meta/config_revision", "42", None)
        .await
        .unwrap();
    let r = EtcdRegistrar {
        client: client.clone(),
        meta_key: "/hermes/meta/config_revision".into(),
    };
    assert_eq!(r.config_revision().await, 42);
    let lease = r.grant(3).await.unwrap();
    r.put(
        "/hermes/instances/gw-1",
        b"{\"id\":\"gw-1\"}".to_vec(),
        lease,
    )
    .await
    .unwrap();
    assert!(r.keep_alive(lease).await.unwrap() > 0);
    let got = c.get("/hermes/instances/gw-1", None).await.unwrap();
    assert_eq!(got.kvs()[0].lease(), lease);
    r.revoke(lease).await.unwrap();
    let left = c
        .get(
            "/hermes/instances/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(left.count(), 0, "the key went with its lease");
    assert_eq!(r.keep_alive(lease).await.unwrap(), 0, "a revoked lease");
}
