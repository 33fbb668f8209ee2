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

/// A change of `key` from `source`, skipping other updates.
async fn change_of(source: &mut EtcdSource, key: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match source.next().await {
                Ok(Update::Changes { changes, .. }) if changes.iter().any(|c| c.key == key) => {
                    return
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key}: no change within 20 s"));
}

/// Puts through member `member` only, until a leader takes it (an election may be running).
async fn put_via(etcd: &TestEtcd, member: usize, key: &str) {
    let mut c = etcd_client::Client::connect([etcd.endpoint_of(member)], None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while c.put(key, "{}", None).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key}: no member took the put"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_fails_over_between_members() {
    let mut etcd = TestEtcd::start_with(3, &[]);
    let settings = super::EtcdSettings {
        endpoints: etcd
            .endpoints()
            .iter()
            .map(|e| format!("http://{e}"))
            .collect(),
        user: None,
    };
    let client = super::connect(&settings).await.unwrap();
    let mut source = EtcdSource::new(client, Prefixes::for_namespace("default"));
    let Update::Full { .. } = next(&mut source).await else {
        panic!("a listing first")
    };
    // Each member in turn goes down; the source follows through the others.
    for down in 0..3 {
        etcd.kill_member(down);
        let key = format!("/hermes/domains/while-{down}-down");
        put_via(&etcd, (down + 1) % 3, &key).await;
        change_of(&mut source, &key).await;
        etcd.start_member(down);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sign_in_is_renewed() {
    // Simple tokens that expire after 2 idle seconds.
    let etcd = TestEtcd::start_with(1, &["--auth-token-ttl=2"]);
    let mut admin = etcd.client().await;
    admin.user_add("root", "root-secret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let settings = super::EtcdSettings {
        endpoints: vec![format!("http://{}", etcd.endpoint())],
        user: Some(("root".into(), "root-secret".into())),
    };
    let client = super::connect(&settings).await.unwrap();
    let prefixes = Prefixes::for_namespace("default");
    let mut source = EtcdSource::new(client.clone(), prefixes.clone());
    let Update::Full { .. } = next(&mut source).await else {
        panic!("a listing first")
    };
    // Idle past the token's life: the next calls sign in again by themselves.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let registrar = EtcdRegistrar {
        client: client.clone(),
        meta_key: "/hermes/meta/config_revision".into(),
    };
    let lease = registrar.grant(5).await.unwrap();
    registrar
        .put("/hermes/instances/gw", b"{}".to_vec(), lease)
        .await
        .unwrap();
    let mut writer = super::connect(&settings).await.unwrap();
    writer
        .put("/hermes/domains/after-expiry", "{}", None)
        .await
        .unwrap();
    change_of(&mut source, "/hermes/domains/after-expiry").await;
    // A new listing and watch on the client whose first token expired.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut again = EtcdSource::new(client, prefixes);
    let Update::Full { items, .. } = next(&mut again).await else {
        panic!("a listing")
    };
    assert!(items
        .iter()
        .any(|(k, _)| k == "/hermes/domains/after-expiry"));
    writer
        .put("/hermes/domains/later", "{}", None)
        .await
        .unwrap();
    change_of(&mut again, "/hermes/domains/later").await;
}
