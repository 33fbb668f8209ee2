//! The PostgreSQL control store against a real PostgreSQL 15: the schema it creates is the
//! original's, rows the original server wrote are served, rows it writes read back by plain
//! SQL in the original layout, and a database restart is ridden out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;

use super::PgControl;
use crate::testing::postgres::TestPg;
use hermes_control::model::{Action, Kind, Operator};
use hermes_control::store::{ControlError, ResourceChange};

const RETENTION: usize = hermes_control::replicated::DEFAULT_HISTORY_RETENTION;

fn op(name: &str) -> Operator {
    Operator(name.to_string())
}

/// Every table and column of contract §5.1, in column order: `table: column type, …`.
const ORIGINAL_COLUMNS: &[&str] = &[
    "api_credentials: id bigint, namespace text, access_key text, secret_key text, description text, scopes ARRAY, enabled boolean, created_at timestamp with time zone, updated_at timestamp with time zone",
    "change_log: revision bigint, namespace text, kind text, name text, action text, operator text, config jsonb, created_at timestamp with time zone",
    "clusters: namespace text, name text, config jsonb, resource_version bigint, updated_at timestamp with time zone",
    "config_history: id bigint, namespace text, kind text, name text, version bigint, action text, operator text, config jsonb, created_at timestamp with time zone",
    "controller_status: namespace text, id text, status text, is_leader boolean, started_at text, last_heartbeat_at text, config_revision bigint, updated_at timestamp with time zone",
    "domains: namespace text, name text, config jsonb, resource_version bigint, updated_at timestamp with time zone",
    "gateway_instances: namespace text, id text, status text, started_at text, registered_at text, last_keepalive_at text, config_revision bigint, last_seen_at text, updated_at timestamp with time zone",
    "grafana_dashboards: id bigint, namespace text, name text, url text",
    "group_bindings: id bigint, namespace text, group_name text, role text, created_at timestamp with time zone",
    "jwt_signing_keys: kid text, secret bytea, status text, created_at timestamp with time zone, expires_at timestamp with time zone",
    "namespace_members: namespace text, user_sub text, role text, created_at timestamp with time zone",
    "namespaces: name text, created_at timestamp with time zone",
    "users: sub text, username text, email text, name text, is_admin boolean, last_seen timestamp with time zone, password_hash text, must_change_password boolean",
];

fn columns(pg: &TestPg) -> Vec<String> {
    pg.psql(
        "SELECT table_name || ': ' || string_agg(column_name || ' ' || data_type, ', ' \
         ORDER BY ordinal_position) FROM information_schema.columns \
         WHERE table_schema = 'public' GROUP BY table_name ORDER BY table_name",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test]
async fn creates_the_original_schema_once_and_serves_what_the_original_wrote() {
    let pg = TestPg::start();
    // Two nodes starting at once against an empty database: one schema, no error.
    let dsn = pg.dsn();
    let (a, b) = tokio::join!(
        PgControl::connect(&dsn, RETENTION),
        PgControl::connect(&dsn, RETENTION)
    );
    let store = a.unwrap();
    drop(b.unwrap());
    assert_eq!(columns(&pg), ORIGINAL_COLUMNS);
    // Rows as the original server writes them (§5.2): a create, then an update, of a domain.
    pg.psql(
        r#"
        INSERT INTO domains (namespace, name, config) VALUES
          ('default', 'api', '{"name":"api","hosts":["api.example.com"],"routes":[]}');
        INSERT INTO config_history (namespace, kind, name, version, action, operator, config, created_at)
          VALUES ('default', 'domain', 'api', 1, 'create', 'alice', '{"name":"api","hosts":["a.example.com"],"routes":[]}', '2024-05-01 10:00:00+00'),
                 ('default', 'domain', 'api', 2, 'update', 'bob', '{"name":"api","hosts":["api.example.com"],"routes":[]}', '2024-05-01 11:00:00+02');
        INSERT INTO change_log (namespace, kind, name, action, operator, config, created_at)
          VALUES ('default', 'domain', 'api', 'create', 'alice', '{"name":"api"}', '2024-05-01 10:00:00+00'),
                 ('default', 'domain', 'api', 'update', 'bob', '{"name":"api"}', '2024-05-01 11:00:00+02'),
                 ('team-a', 'credential', 'AK1', 'create', 'carol', NULL, NOW());
        UPDATE domains SET resource_version = 2 WHERE name = 'api';
        INSERT INTO namespaces (name) VALUES ('team-a');
        "#,
    );
    let domains = store.resources("default", Kind::Domain).await.unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].name, "api");
    assert_eq!(domains[0].resource_version, 2);
    assert_eq!(domains[0].doc["hosts"], json!(["api.example.com"]));
    let history = store.history("default", Kind::Domain, "api").await.unwrap();
    let summary: Vec<(i64, Action, &str, &str)> = history
        .iter()
        .map(|h| {
            (
                h.version,
                h.action,
                h.operator.as_str(),
                h.timestamp.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, Action::Update, "bob", "2024-05-01T09:00:00Z"),
            (1, Action::Create, "alice", "2024-05-01T10:00:00Z"),
        ]
    );
    // Revisions are the global sequence, read per namespace.
    assert_eq!(store.revision("default").await.unwrap(), 2);
    assert_eq!(store.revision("team-a").await.unwrap(), 3);
    let changes = store.changes("default", 1, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].revision, changes[0].action.as_str()),
        (2, "update")
    );
    assert_eq!(
        store.namespaces().await.unwrap(),
        ["default".to_string(), "team-a".to_string()]
    );
    // Connecting again changes nothing.
    drop(store);
    let again = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    assert_eq!(columns(&pg), ORIGINAL_COLUMNS);
    assert_eq!(again.revision("team-a").await.unwrap(), 3);
}

#[tokio::test]
async fn writes_read_back_by_plain_sql_in_the_original_layout() {
    let pg = TestPg::start();
    let store = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    let doc = |v: u32| json!({"name": "web", "lb_type": "round_robin", "nodes": [{"host": "10.0.0.1", "port": v}]});
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Create { doc: doc(80) },
            &op("alice"),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.resource_version), (1, 1));
    let again = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Create { doc: doc(80) },
            &op("alice"),
        )
        .await;
    assert!(
        matches!(again, Err(ControlError::AlreadyExists(_))),
        "{again:?}"
    );
    let stale = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Update {
                doc: doc(81),
                expected_version: 7,
            },
            &op("bob"),
        )
        .await;
    assert!(matches!(stale, Err(ControlError::Conflict(_))), "{stale:?}");
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Update {
                doc: doc(81),
                expected_version: 1,
            },
            &op("bob"),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.resource_version), (2, 2));
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Rollback { version: 1 },
            &op("carol"),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.resource_version), (3, 3));
    assert_eq!(w.doc, Some(doc(80)));
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Delete,
            &op("dave"),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.resource_version, w.doc), (4, 0, None));
    let gone = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Delete,
            &op("dave"),
        )
        .await;
    assert!(matches!(gone, Err(ControlError::NotFound(_))), "{gone:?}");
    // Recreated: the resource version starts again, the history version goes on.
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "web",
            ResourceChange::Create { doc: doc(82) },
            &op("erin"),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.resource_version), (5, 1));

    assert_eq!(
        pg.psql("SELECT resource_version, config->'nodes'->0->>'port' FROM clusters WHERE namespace = 'default' AND name = 'web'"),
        "1|82"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(version || ' ' || action || ' ' || operator || ' ' || (config->'nodes'->0->>'port'), ', ' ORDER BY id) FROM config_history WHERE kind = 'cluster' AND name = 'web'"),
        "1 create alice 80, 2 update bob 81, 3 rollback carol 80, 4 delete dave 80, 5 create erin 82"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(action || ' ' || COALESCE(config->'nodes'->0->>'port', 'null'), ', ' ORDER BY revision) FROM change_log WHERE namespace = 'default'"),
        "create 80, update 81, rollback 80, delete null, create 82"
    );

    // An import replaces the namespace: resources not in it are deleted with a change each.
    store
        .write_resource(
            "default",
            Kind::Domain,
            "old",
            ResourceChange::Create {
                doc: json!({"name": "old"}),
            },
            &op("f"),
        )
        .await
        .unwrap();
    let imported = store
        .replace_config(
            "default",
            vec![json!({"name": "new", "hosts": ["n.example.com"]})],
            vec![doc(90)],
            &op("importer"),
        )
        .await
        .unwrap();
    assert_eq!((imported.domains, imported.clusters), (1, 1));
    assert_eq!(
        pg.psql("SELECT string_agg(name, ',' ORDER BY name) FROM domains"),
        "new"
    );
    assert_eq!(
        pg.psql("SELECT resource_version FROM clusters WHERE name = 'web'"),
        "1"
    );
    let tail: Vec<String> = store
        .changes("default", 6, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c.action, c.kind, c.name))
        .collect();
    assert_eq!(
        tail,
        [
            "import cluster web",
            "delete domain old",
            "import domain new"
        ]
    );
    // Audit rows consume revisions and show in the audit view, newest first.
    store
        .record("default", "credential", "AK9", "create", &op("g"))
        .await
        .unwrap();
    let (audit, total) = store.audit("default", 2, 0).await.unwrap();
    assert_eq!(total, 10);
    assert_eq!(
        (audit[0].kind.as_str(), audit[0].doc.as_deref()),
        ("credential", None)
    );
}

#[tokio::test]
async fn history_keeps_the_newest_fifty_versions() {
    let pg = TestPg::start();
    let store = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    let mut expected = 0;
    for i in 0..55 {
        let change = if i == 0 {
            ResourceChange::Create {
                doc: json!({"name": "d", "i": i}),
            }
        } else {
            ResourceChange::Update {
                doc: json!({"name": "d", "i": i}),
                expected_version: expected,
            }
        };
        expected = store
            .write_resource("default", Kind::Domain, "d", change, &op("a"))
            .await
            .unwrap()
            .resource_version;
    }
    let history = store.history("default", Kind::Domain, "d").await.unwrap();
    assert_eq!(history.len(), 50);
    assert_eq!((history[0].version, history[49].version), (55, 6));
    assert_eq!(pg.psql("SELECT MIN(version) FROM config_history"), "6");
    assert!(store
        .history_entry("default", Kind::Domain, "d", 5)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .history_entry("default", Kind::Domain, "d", 6)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_database_restart_loses_nothing_and_the_store_recovers_by_itself() {
    let pg = TestPg::start();
    let store = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    store
        .write_resource(
            "default",
            Kind::Domain,
            "a",
            ResourceChange::Create {
                doc: json!({"name": "a"}),
            },
            &op("x"),
        )
        .await
        .unwrap();
    pg.stop();
    let down = store.resources("default", Kind::Domain).await.unwrap_err();
    let message = down.to_string();
    assert!(matches!(down, ControlError::Unavailable(_)), "{down:?}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", pg.port)),
        "{message}"
    );
    assert!(!message.contains("pw-never-shown"), "{message}");
    pg.start_again();
    // The pool replaces its broken connections: the first request after the restart works.
    let domains = store.resources("default", Kind::Domain).await.unwrap();
    assert_eq!(domains.len(), 1);
    store
        .write_resource(
            "default",
            Kind::Domain,
            "b",
            ResourceChange::Create {
                doc: json!({"name": "b"}),
            },
            &op("x"),
        )
        .await
        .unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM domains"), "2");
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = PgControl::connect(
        &format!("postgres://u:s3cret-pw@127.0.0.1:{port}/db"),
        RETENTION,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("unreachable"),
        "{e}"
    );
    assert!(!e.contains("s3cret-pw"), "{e}");
    let e = PgControl::connect("postgres://u:pw@host:notaport/db", RETENTION)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("connection string") && !e.contains("pw@"), "{e}");
}

#[tokio::test]
async fn revision_waits_wake_for_this_nodes_writes_and_see_other_servers_writes() {
    let pg = TestPg::start();
    let store = std::sync::Arc::new(PgControl::connect(&pg.dsn(), RETENTION).await.unwrap());
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .wait_revision("default", 0, Duration::from_secs(30))
                .await
        })
    };
    store
        .record("default", "credential", "AK", "create", &op("a"))
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    // A row another server inserted is seen too, by looking again.
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .wait_revision("default", 1, Duration::from_secs(30))
                .await
        })
    };
    pg.psql("INSERT INTO change_log (namespace, kind, name, action) VALUES ('default', 'domain', 'x', 'create')");
    assert_eq!(waiting.await.unwrap().unwrap(), 2);
    // Nothing new: the wait ends at its limit with the same revision.
    assert_eq!(
        store
            .wait_revision("default", 2, Duration::from_millis(50))
            .await
            .unwrap(),
        2
    );
}

/// Another Hermes node's write wakes a wait here by notification, not by the poll (set to
/// an hour here, so only the notification can end the wait in time), also after the database
/// restarted under the listener.
#[tokio::test]
async fn another_nodes_write_wakes_a_wait_by_notification() {
    let pg = TestPg::start();
    let writer = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    let mut reader = PgControl::connect(&pg.dsn(), RETENTION).await.unwrap();
    reader.foreign_poll = Duration::from_secs(3600);
    let reader = std::sync::Arc::new(reader);
    for round in 1..=2 {
        let before = writer.revision("default").await.unwrap();
        let waiting = {
            let reader = reader.clone();
            tokio::spawn(async move {
                reader
                    .wait_revision("default", before, Duration::from_secs(3600))
                    .await
            })
        };
        // The wait is registered before the write (it looks at the revision first).
        tokio::task::yield_now().await;
        // Written until the listener hears one: after a restart it may still be reconnecting.
        let woken = async {
            loop {
                writer
                    .record("default", "credential", "AK", "create", &op("a"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                if waiting.is_finished() {
                    return waiting.await.unwrap().unwrap();
                }
            }
        };
        let now = tokio::time::timeout(Duration::from_secs(30), woken)
            .await
            .unwrap_or_else(|_| panic!("round {round}: no notification woke the wait"));
        assert!(now > before);
        if round == 1 {
            pg.stop();
            pg.start_again();
            // The writer's pool notices the restart on its next checkout.
            while writer.revision("default").await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn concurrent_writers_never_share_a_history_version_and_the_feed_holds_every_row() {
    let pg = TestPg::start();
    let store = std::sync::Arc::new(PgControl::connect(&pg.dsn(), RETENTION).await.unwrap());
    store
        .write_resource(
            "default",
            Kind::Domain,
            "hot",
            ResourceChange::Create {
                doc: json!({"name": "hot"}),
            },
            &op("a"),
        )
        .await
        .unwrap();
    // A follower of the feed, as a controller is: every row it is told of, in order.
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            while seen.len() < 81 {
                store
                    .wait_revision("default", after, Duration::from_secs(5))
                    .await
                    .unwrap();
                for change in store.changes("default", after, 100).await.unwrap() {
                    after = change.revision;
                    seen.push(change.revision);
                }
            }
            seen
        })
    };
    // Eight writers: unconditional rollbacks of one resource, and creates of others.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    store
                        .write_resource(
                            "default",
                            Kind::Domain,
                            "hot",
                            ResourceChange::Rollback { version: 1 },
                            &op("w"),
                        )
                        .await
                        .unwrap();
                    let name = format!("d{w}-{i}");
                    store
                        .write_resource(
                            "default",
                            Kind::Domain,
                            &name,
                            ResourceChange::Create {
                                doc: json!({"name": name}),
                            },
                            &op("w"),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), follower)
        .await
        .unwrap()
        .unwrap();
    let all: Vec<i64> = pg
        .psql("SELECT revision FROM change_log WHERE namespace = 'default' ORDER BY revision")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(seen, all, "the feed skipped or repeated a row");
    assert_eq!(
        pg.psql("SELECT count(*), count(DISTINCT version), max(version) FROM config_history WHERE name = 'hot'"),
        "41|41|41"
    );
}

#[tokio::test]
async fn writes_report_their_revision_and_history_keeps_the_configured_number() {
    let pg = TestPg::start();
    let store = PgControl::connect(&pg.dsn(), 3).await.unwrap();
    let w = store
        .write_resource(
            "default",
            Kind::Cluster,
            "c",
            ResourceChange::Create {
                doc: json!({"name": "c"}),
            },
            &op("a"),
        )
        .await
        .unwrap();
    assert_eq!(w.revision, store.revision("default").await.unwrap());
    assert!(w.revision > 0);
    let mut expected = w.resource_version;
    for i in 0..4 {
        expected = store
            .write_resource(
                "default",
                Kind::Cluster,
                "c",
                ResourceChange::Update {
                    doc: json!({"name": "c", "i": i}),
                    expected_version: expected,
                },
                &op("a"),
            )
            .await
            .unwrap()
            .resource_version;
    }
    let versions: Vec<i64> = store
        .history("default", Kind::Cluster, "c")
        .await
        .unwrap()
        .iter()
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, [5, 4, 3]);
    let imported = store
        .replace_config("default", vec![], vec![json!({"name": "c"})], &op("i"))
        .await
        .unwrap();
    assert_eq!(imported.revision, store.revision("default").await.unwrap());
}

/// Backends of the database waiting on a lock.
fn lock_waiters(pg: &TestPg) -> usize {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        .parse()
        .unwrap()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_write_that_commits_late_is_not_skipped_by_the_feed() {
    let pg = TestPg::start();
    let store = std::sync::Arc::new(PgControl::connect(&pg.dsn(), 1).await.unwrap());
    let hot = |i: i64| ResourceChange::Update {
        doc: json!({"name": "hot", "i": i}),
        expected_version: i,
    };
    store
        .write_resource(
            "default",
            Kind::Domain,
            "hot",
            ResourceChange::Create {
                doc: json!({"name": "hot"}),
            },
            &op("a"),
        )
        .await
        .unwrap();
    store
        .write_resource("default", Kind::Domain, "hot", hot(1), &op("a"))
        .await
        .unwrap();
    let before = store.revision("default").await.unwrap();
    // Another client holds the resource's history row, so the next write to it stops after
    // taking its revision, in its pruning, until that client lets go.
    let (holder, connection) = tokio_postgres::connect(&pg.dsn(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute("BEGIN; SELECT 1 FROM config_history WHERE name = 'hot' FOR UPDATE")
        .await
        .unwrap();
    let late = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write_resource("default", Kind::Domain, "hot", hot(2), &op("late"))
                .await
        })
    };
    wait_until("the late write to block", || lock_waiters(&pg) == 1).await;
    // A write to another resource meanwhile: it must not become visible ahead of the late one.
    let other = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write_resource(
                    "default",
                    Kind::Domain,
                    "other",
                    ResourceChange::Create {
                        doc: json!({"name": "other"}),
                    },
                    &op("b"),
                )
                .await
        })
    };
    wait_until("the other write to finish or wait", || {
        other.is_finished() || lock_waiters(&pg) == 2
    })
    .await;
    let mut seen: Vec<i64> = store
        .changes("default", before, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.revision)
        .collect();
    holder.batch_execute("ROLLBACK").await.unwrap();
    late.await.unwrap().unwrap();
    other.await.unwrap().unwrap();
    let after = seen.last().copied().unwrap_or(before);
    seen.extend(
        store
            .changes("default", after, 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.revision),
    );
    let all: Vec<i64> = pg
        .psql(&format!("SELECT revision FROM change_log WHERE namespace = 'default' AND revision > {before} ORDER BY revision"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(seen, all, "a reader following the feed skipped a row");
}
