//! Read your writes on the node that answered, against a real three-process cluster: a write
//! through a follower is visible to a serializable read on that follower the moment the answer
//! arrives, every time; and a credential created or deleted through a follower takes effect on
//! that follower's next request.

use serde_json::json;

use crate::api_client::{Api, Auth};
use crate::harness::*;

const ROUNDS: usize = 2000;

#[test]
fn a_follower_reads_its_own_writes_at_once() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let follower = c
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    let node = c.node(follower);
    let etcd = node.etcd();
    let agent = agent();
    let mut misses = Vec::new();
    for i in 0..ROUNDS {
        let key = b64(&format!("/ryw/{i}"));
        let value = b64(&format!("v{i}"));
        let put = agent
            .post(&format!("{etcd}/v3/kv/put"))
            .send_json(json!({"key": key, "value": value}))
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        assert_eq!(put.status(), 200);
        let read: serde_json::Value = agent
            .post(&format!("{etcd}/v3/kv/range"))
            .send_json(json!({"key": key, "serializable": true}))
            .unwrap()
            .into_json()
            .unwrap();
        if read["kvs"][0]["value"] != json!(value) {
            misses.push(i);
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {ROUNDS} reads missed: {misses:?}",
        misses.len()
    );
}

#[test]
fn credentials_take_effect_on_the_follower_that_changed_them() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let follower = c
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    let node = c.node(follower);
    let admin = Api::anonymous(&node.admin()).admin_credential();
    for round in 0..20 {
        let (s, made) = admin.post(
            "/api/v1/credentials",
            &json!({"description": format!("r{round}"), "scopes": ["config:read"]}),
        );
        assert_eq!(s, 201, "{made}");
        let fresh = admin.with(Auth::Hmac {
            access_key: made["access_key"].as_str().unwrap().to_string(),
            secret_key: made["secret_key"].as_str().unwrap().to_string(),
        });
        let (s, b) = fresh.get("/api/v1/domains");
        assert_eq!(
            s, 200,
            "round {round}: a new credential refused on its own node: {b}"
        );
        let id = made["id"].as_i64().unwrap();
        assert_eq!(admin.delete(&format!("/api/v1/credentials/{id}")).0, 200);
        let (s, b) = fresh.get("/api/v1/domains");
        assert_eq!(
            s, 401,
            "round {round}: a deleted credential accepted on its own node: {b}"
        );
    }
}
