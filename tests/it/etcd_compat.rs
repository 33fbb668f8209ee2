//! The same sequence of etcd JSON requests, sent to Debian's etcd 3.4 and to a fresh Hermes
//! node, must give the same answers: same fields, same types, same values, except identities
//! that differ by nature (cluster and member ids, terms, sizes, versions, URLs).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Fields whose values legitimately differ between two servers; only their type is compared.
const IDENTITY_FIELDS: &[&str] = &[
    "token",
    "authRevision",
    "cluster_id",
    "member_id",
    "raft_term",
    "dbSize",
    "dbSizeInUse",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "version",
    "name",
    "peerURLs",
    "clientURLs",
];

/// Lease ids the sequence chooses itself, compared exactly.
const EXPLICIT_IDS: &[&str] = &["4242", "4343", "999"];

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if IDENTITY_FIELDS.contains(&k.as_str()) {
                        Value::String(format!("<{}>", type_name(v)))
                    } else if k == "ID" && !v.as_str().is_some_and(|s| EXPLICIT_IDS.contains(&s)) {
                        // Server-chosen lease and member ids.
                        Value::String("<generated id>".into())
                    } else {
                        normalize(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One request and the normalized (status, body) it got. curl, because etcd's gateway ends
/// error bodies with HTTP trailers that simpler clients refuse.
fn exchange(base: &str, path: &str, body: &Value) -> (u16, Value) {
    exchange_as(base, path, body, None)
}

/// [`exchange`] with a token in `Authorization`, as etcd's gateway takes it.
fn exchange_as(base: &str, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut curl = std::process::Command::new("curl");
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: {token}")]);
    }
    let out = curl
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", "-d"])
        .arg(body.to_string())
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl is installed by scripts/test");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (text, status) = text.rsplit_once('\n').expect("curl printed a status");
    // Stream endpoints answer lines; compare the first one.
    let body = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| Value::String(text.to_string()));
    (status.trim().parse().unwrap(), normalize(&body))
}

fn k(s: &str) -> String {
    b64(s)
}

fn sequence() -> Vec<(&'static str, Value)> {
    vec![
        ("/v3/kv/range", json!({"key": k("/a")})),
        ("/v3/kv/put", json!({"key": k("/a"), "value": k("1")})),
        (
            "/v3/kv/put",
            json!({"key": k("/a"), "value": k("2"), "prev_kv": true}),
        ),
        ("/v3/kv/put", json!({"key": k("/b"), "value": k("b")})),
        ("/v3/kv/put", json!({"key": k("/c"), "value": k("c")})),
        ("/v3/kv/range", json!({"key": k("/a")})),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "limit": 2}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "count_only": true}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "keys_only": true}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "sort_order": "DESCEND", "sort_target": "CREATE", "limit": "1"}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "sortTarget": "VALUE"}),
        ),
        ("/v3/kv/range", json!({"key": k("/a"), "revision": "2"})),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "min_mod_revision": "4"}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("/"), "range_end": k("0"), "max_create_revision": "3"}),
        ),
        (
            "/v3/kv/range",
            json!({"key": k("\u{0}"), "range_end": k("\u{0}"), "serializable": true}),
        ),
        ("/v3/kv/deleterange", json!({"key": k("/nothing")})),
        (
            "/v3/kv/deleterange",
            json!({"key": k("/c"), "prev_kv": true}),
        ),
        (
            "/v3/kv/txn",
            json!({
                "compare": [{"key": k("/a"), "target": "VALUE", "result": "EQUAL", "value": k("2")}],
                "success": [
                    {"request_range": {"key": k("/a")}},
                    {"request_put": {"key": k("/t"), "value": k("t"), "prev_kv": true}},
                    {"request_range": {"key": k("/t")}},
                    {"request_delete_range": {"key": k("/b"), "prev_kv": true}}
                ],
                "failure": [{"request_range": {"key": k("/b")}}]
            }),
        ),
        (
            "/v3/kv/txn",
            json!({
                "compare": [{"key": k("/a"), "target": "MOD", "result": "GREATER", "mod_revision": "100"}],
                "success": [{"request_put": {"key": k("/never"), "value": k("x")}}],
                "failure": [{"request_range": {"key": k("/a")}}, {"requestTxn": {"success": [{"request_range": {"key": k("/t")}}]}}]
            }),
        ),
        (
            "/v3/kv/txn",
            json!({"compare": [{"key": k("/missing"), "target": "CREATE", "result": "EQUAL", "createRevision": "0"}],
                   "success": [{"requestPut": {"key": k("/missing"), "value": k("m")}}]}),
        ),
        (
            "/v3/kv/txn",
            json!({"compare": [{"key": k("/missing"), "target": "VERSION", "result": "LESS", "version": "1"}]}),
        ),
        ("/v3/lease/grant", json!({"TTL": 60, "ID": 4242})),
        ("/v3/lease/grant", json!({"TTL": 60, "ID": 4242})),
        ("/v3/lease/grant", json!({"TTL": 1, "ID": 4343})),
        (
            "/v3/kv/put",
            json!({"key": k("/leased"), "value": k("l"), "lease": "4242"}),
        ),
        (
            "/v3/kv/put",
            json!({"key": k("/leased"), "value": k("l2"), "ignore_lease": true}),
        ),
        (
            "/v3/kv/put",
            json!({"key": k("/leased"), "ignore_value": true, "prev_kv": true}),
        ),
        (
            "/v3/kv/put",
            json!({"key": k("/x"), "value": k("x"), "lease": "999"}),
        ),
        ("/v3/lease/timetolive", json!({"ID": 999})),
        ("/v3/lease/keepalive", json!({"ID": 999})),
        ("/v3/lease/revoke", json!({"ID": 999})),
        ("/v3/lease/revoke", json!({"ID": 4242})),
        ("/v3/kv/range", json!({"key": k("/leased")})),
        ("/v3/lease/revoke", json!({"ID": 4343})),
        ("/v3/kv/put", json!({"key": k(""), "value": k("x")})),
        ("/v3/kv/range", json!({"key": k("")})),
        (
            "/v3/kv/put",
            json!({"key": k("/v"), "value": k("x"), "ignore_value": true}),
        ),
        (
            "/v3/kv/put",
            json!({"key": k("/nokey"), "ignore_lease": true}),
        ),
        (
            "/v3/kv/txn",
            json!({"success": [{"request_put": {"key": k("/d")}}, {"request_put": {"key": k("/d")}}]}),
        ),
        ("/v3/kv/range", json!({"key": k("/a"), "revision": "1000"})),
        ("/v3/kv/compaction", json!({"revision": "5"})),
        ("/v3/kv/compaction", json!({"revision": "4"})),
        ("/v3/kv/range", json!({"key": k("/a"), "revision": "3"})),
        ("/v3/kv/range", json!({"key": k("/a"), "revision": "5"})),
        ("/v3/kv/compaction", json!({"revision": "1000"})),
        ("/v3/maintenance/status", json!({})),
        ("/v3/maintenance/alarm", json!({})),
        ("/v3/cluster/member/list", json!({})),
        ("/v3/kv/nope", json!({})),
        ("/v3beta/nope", json!({})),
    ]
}

#[test]
fn json_gateway_answers_like_etcd_3_4() {
    let etcd = Etcd::start();
    let cluster = Cluster::start_with(1, &["--initial-admin", "off", "--instance-registry", "off"]);
    let hermes = cluster.node(1).etcd();
    let mut differences = Vec::new();
    for (i, (path, body)) in sequence().into_iter().enumerate() {
        let want = exchange(&etcd.url, path, &body);
        let got = exchange(&hermes, path, &body);
        if want != got {
            differences.push(format!(
                "#{i} {path} {body}\n   etcd:   {} {}\n   hermes: {} {}",
                want.0, want.1, got.0, got.1
            ));
        }
    }

    // Watches: created, then a compaction cancel, events, or a progress answer, in the same
    // shapes. Each case: (name, request objects sent in the body, whether to write, lines or
    // events expected after `created`).
    let create = |extra: Value| {
        let mut req = json!({"key": k("/w"), "prev_kv": true});
        if let (Some(req), Some(extra)) = (req.as_object_mut(), extra.as_object()) {
            req.extend(extra.clone());
        }
        json!({"create_request": req}).to_string()
    };
    let cases: Vec<(&str, String, bool, usize)> = vec![
        (
            "compacted",
            create(json!({"start_revision": "2"})),
            false,
            1,
        ),
        ("live", create(json!({})), true, 3),
        ("no puts", create(json!({"filters": ["NOPUT"]})), true, 1),
        (
            "progress",
            create(json!({})) + &json!({"progress_request": {}}).to_string(),
            false,
            1,
        ),
        (
            "cancel",
            create(json!({})) + &json!({"cancel_request": {"watch_id": "0"}}).to_string(),
            false,
            1,
        ),
    ];
    for (name, body, writes, expected) in cases {
        let streams = [etcd.url.clone(), hermes.clone()]
            .map(|base| LineStream::open(&format!("{base}/v3/watch"), &body));
        let mut lines: Vec<Vec<Value>> = vec![Vec::new(), Vec::new()];
        for (s, out) in streams.iter().zip(lines.iter_mut()) {
            out.push(normalize(&s.next(Duration::from_secs(10)).unwrap()));
        }
        if writes {
            for base in [&etcd.url, &hermes] {
                for value in ["1", "2"] {
                    post(
                        &format!("{base}/v3/kv/put"),
                        &json!({"key": k("/w"), "value": k(value)}),
                    )
                    .unwrap();
                }
                post(
                    &format!("{base}/v3/kv/deleterange"),
                    &json!({"key": k("/w")}),
                )
                .unwrap();
            }
        }
        for (s, out) in streams.iter().zip(lines.iter_mut()) {
            let mut seen = 0;
            while seen < expected {
                let line = s.next(Duration::from_secs(10)).unwrap();
                seen += line["result"]["events"].as_array().map_or(1, Vec::len);
                out.push(normalize(&line));
            }
        }
        if lines[0] != lines[1] {
            differences.push(format!(
                "watch {name}\n   etcd:   {:?}\n   hermes: {:?}",
                lines[0], lines[1]
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// User and role management and permission checks over JSON, as etcd's gateway answers them:
/// (who, path, body), `who` being the user whose token the request carries.
fn auth_sequence() -> Vec<(Option<&'static str>, &'static str, Value)> {
    let rw = json!({"name": "r", "perm": {"permType": "READWRITE", "key": k("/p/"), "range_end": k("/p0")}});
    vec![
        (
            None,
            "/v3/auth/user/add",
            json!({"name": "root", "password": "root-pw"}),
        ),
        (
            None,
            "/v3/auth/user/add",
            json!({"name": "root", "password": "x"}),
        ),
        (None, "/v3/auth/user/add", json!({"name": ""})),
        (None, "/v3/auth/role/add", json!({"name": "root"})),
        (
            None,
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        ),
        (None, "/v3/auth/role/add", json!({"name": "r"})),
        (None, "/v3/auth/role/grant", rw),
        (
            None,
            "/v3/auth/role/grant",
            json!({"name": "r", "perm": {"key": k("/read-only")}}),
        ),
        (None, "/v3/auth/role/get", json!({"role": "r"})),
        (None, "/v3/auth/role/get", json!({"role": "nope"})),
        (
            None,
            "/v3/auth/user/add",
            json!({"name": "u", "password": "u-pw"}),
        ),
        (
            None,
            "/v3/auth/user/grant",
            json!({"user": "u", "role": "r"}),
        ),
        (None, "/v3/auth/user/get", json!({"name": "u"})),
        (None, "/v3/auth/user/list", json!({})),
        (None, "/v3/auth/role/list", json!({})),
        (None, "/v3/auth/enable", json!({})),
        (
            None,
            "/v3/kv/put",
            json!({"key": k("/p/1"), "value": k("v")}),
        ),
        (
            None,
            "/v3/auth/authenticate",
            json!({"name": "u", "password": "wrong"}),
        ),
        (
            Some("u"),
            "/v3/kv/put",
            json!({"key": k("/p/1"), "value": k("v")}),
        ),
        (
            Some("u"),
            "/v3/kv/range",
            json!({"key": k("/p/"), "range_end": k("/p0")}),
        ),
        (Some("u"), "/v3/kv/range", json!({"key": k("/read-only")})),
        (
            Some("u"),
            "/v3/kv/put",
            json!({"key": k("/read-only"), "value": k("v")}),
        ),
        (
            Some("u"),
            "/v3/kv/put",
            json!({"key": k("/q"), "value": k("v")}),
        ),
        (Some("u"), "/v3/auth/user/list", json!({})),
        (Some("u"), "/v3/auth/role/get", json!({"role": "r"})),
        (Some("root"), "/v3/kv/range", json!({"key": k("/p/1")})),
        (
            Some("root"),
            "/v3/auth/role/revoke",
            json!({"role": "r", "key": k("/p/"), "range_end": k("/p0")}),
        ),
        (
            Some("u"),
            "/v3/kv/put",
            json!({"key": k("/p/2"), "value": k("v")}),
        ),
        (
            Some("root"),
            "/v3/auth/user/delete",
            json!({"name": "root"}),
        ),
        (Some("root"), "/v3/auth/role/delete", json!({"role": "r"})),
        (Some("root"), "/v3/auth/user/get", json!({"name": "u"})),
        (Some("root"), "/v3/auth/disable", json!({})),
        (None, "/v3/kv/range", json!({"key": k("/p/1")})),
    ]
}

fn revisions_as_types(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if ["revision", "create_revision", "mod_revision"].contains(&k.as_str())
                    {
                        Value::String(format!("<{}>", type_name(v)))
                    } else {
                        revisions_as_types(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(revisions_as_types).collect()),
        other => other.clone(),
    }
}

/// The token `user` gets from `base`, or `None` if it gets none.
fn token_of(base: &str, user: &str) -> Option<String> {
    let password = format!("{user}-pw");
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-d"])
        .arg(json!({"name": user, "password": password}).to_string())
        .arg(format!("{base}/v3/auth/authenticate"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["token"].as_str().map(str::to_string)
}

#[test]
fn json_auth_answers_like_etcd_3_4() {
    let etcd = Etcd::start();
    let cluster = Cluster::start_with(1, &["--initial-admin", "off", "--instance-registry", "off"]);
    let hermes = cluster.node(1).etcd();
    let mut differences = Vec::new();
    for (i, (who, path, body)) in auth_sequence().into_iter().enumerate() {
        let [want, got] = [&etcd.url, &hermes].map(|base| {
            let token = who.and_then(|u| token_of(base, u));
            assert!(
                who.is_none() || token.is_some(),
                "#{i}: {who:?} got no token from {base}"
            );
            exchange_as(base, path, &body, token.as_deref())
        });
        // Auth records live in the one keyspace, so each change takes a revision there
        // (docs/etcd-api.md); etcd keeps them apart. Revisions are compared by type only.
        let (want, got) = (
            (want.0, revisions_as_types(&want.1)),
            (got.0, revisions_as_types(&got.1)),
        );
        if want != got {
            differences.push(format!(
                "#{i} {who:?} {path} {body}\n   etcd:   {} {}\n   hermes: {} {}",
                want.0, want.1, got.0, got.1
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
