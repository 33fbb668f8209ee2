//! Credentials, users, members, bindings, signing keys, status and dashboards on a real
//! PostgreSQL 15, through the [`ControlStore`] trait: rows the original wrote are served, rows
//! written here read back by plain SQL in the original layout, and what the original's tables
//! cannot hold directly (all-namespace credentials, token epochs, setup and initial-admin
//! history) survives a new connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hermes_control::auth::password::{self, Scheme};
use hermes_control::auth::token::KeyStatus;
use hermes_control::model::{
    ControllerStatus, Credential, Dashboard, InstanceStatus, Member, Operator, User,
};
use hermes_control::store::{ControlError, ControlStore, CredentialUpdate, SYNC_ACTION};

use super::PgControl;
use crate::testing::postgres::TestPg;

const RETENTION: usize = hermes_control::replicated::DEFAULT_HISTORY_RETENTION;

fn op(name: &str) -> Operator {
    Operator(name.to_string())
}

async fn connect(pg: &TestPg) -> PgControl {
    PgControl::connect(&pg.dsn(), RETENTION).await.unwrap()
}

fn credential(ns: &str, ak: &str, all: bool) -> Credential {
    Credential {
        id: 0,
        namespace: ns.into(),
        access_key: ak.into(),
        secret_key: format!("{ak}-secret"),
        description: "ci".into(),
        scopes: vec!["config:read".into(), "config:write".into()],
        enabled: true,
        all_namespaces: all,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

fn user(email: &str, admin: bool, hash: &str) -> User {
    User {
        sub: format!("builtin:{email}"),
        username: email.split('@').next().unwrap().into(),
        email: email.into(),
        name: String::new(),
        is_admin: admin,
        must_change_password: false,
        last_seen: String::new(),
        password_hash: hash.into(),
        token_epoch: 0,
    }
}

#[tokio::test]
async fn credentials_and_setup_in_the_original_table() {
    let pg = TestPg::start();
    let pgc = connect(&pg).await;
    let store: &dyn ControlStore = &pgc;
    assert!(store.setup_open().await.unwrap(), "an empty database");
    // A credential for all namespaces needs one of `default`'s first: original servers
    // sharing the database would serve `default` to anyone otherwise.
    assert!(matches!(
        store
            .create_credential(credential("default", "AKFIRST", true), &op("x"))
            .await,
        Err(ControlError::Conflict(_))
    ));

    // A credential the original server wrote: plaintext secret, its namespace.
    pg.psql(
        "INSERT INTO api_credentials (namespace, access_key, secret_key, description, scopes) \
         VALUES ('default', 'AKORIG', 'deadbeef', 'from go', '{config:read,status:write}')",
    );
    let orig = store
        .credential_by_access_key("AKORIG")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            orig.namespace.as_str(),
            orig.secret_key.as_str(),
            orig.all_namespaces
        ),
        ("default", "deadbeef", false)
    );
    assert_eq!(orig.scopes, ["config:read", "status:write"]);
    assert!(orig.created_at.ends_with('Z'), "{}", orig.created_at);
    assert!(
        !store.setup_open().await.unwrap(),
        "a credential closes setup"
    );

    // Written here: the original layout, the secret readable by an original server.
    let mine = store
        .create_credential(credential("team-a", "AKMINE", false), &op("alice"))
        .await
        .unwrap();
    assert!(mine.id > orig.id);
    assert_eq!(
        pg.psql("SELECT namespace, secret_key, scopes, enabled FROM api_credentials WHERE access_key = 'AKMINE'"),
        "team-a|AKMINE-secret|{config:read,config:write}|t"
    );
    let global = store
        .create_credential(credential("team-a", "AKALL", true), &op("root"))
        .await
        .unwrap();
    assert!(global.all_namespaces);
    assert_eq!(
        pg.psql("SELECT namespace FROM api_credentials WHERE access_key = 'AKALL'"),
        "*"
    );
    let listed = |ns: &'static str| async move {
        store
            .credentials(ns)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.access_key)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("team-a").await, ["AKMINE", "AKALL"]);
    assert_eq!(listed("default").await, ["AKORIG", "AKALL"]);
    assert_eq!(
        store
            .create_credential(credential("default", "AKMINE", false), &op("x"))
            .await,
        Err(ControlError::AlreadyExists(
            "access key already exists".into()
        ))
    );

    // An update changes the fields it names; another namespace's credential is not found.
    let updated = store
        .update_credential(
            "team-a",
            mine.id,
            CredentialUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            &op("alice"),
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.enabled, updated.description.as_str()),
        (false, "ci")
    );
    assert!(matches!(
        store
            .update_credential("default", mine.id, CredentialUpdate::default(), &op("x"))
            .await,
        Err(ControlError::NotFound(_))
    ));
    assert!(matches!(
        store
            .delete_credential("default", mine.id, None, &op("x"))
            .await,
        Err(ControlError::NotFound(_))
    ));
    // A change checked against scopes that are no longer stored is refused.
    let other = vec!["admin:users".to_string()];
    let stale = CredentialUpdate {
        enabled: Some(true),
        checked_scopes: Some(other.clone()),
        ..Default::default()
    };
    assert!(matches!(
        store
            .update_credential("team-a", mine.id, stale, &op("x"))
            .await,
        Err(ControlError::Conflict(_))
    ));
    assert!(matches!(
        store
            .delete_credential("team-a", mine.id, Some(&other), &op("x"))
            .await,
        Err(ControlError::Conflict(_))
    ));
    store
        .delete_credential("team-a", mine.id, Some(&updated.scopes), &op("alice"))
        .await
        .unwrap();
    assert_eq!(
        pg.psql(
            "SELECT namespace, name, action, operator FROM change_log \
             WHERE kind = 'credential' ORDER BY revision"
        ),
        "team-a|AKMINE|create|alice\nteam-a|AKALL|create|root\nteam-a|AKMINE|update|alice\nteam-a|AKMINE|delete|alice"
    );

    // With every credential gone, setup stays closed, for a new connection too.
    pg.psql("DELETE FROM api_credentials");
    let again = connect(&pg).await;
    assert!(!ControlStore::setup_open(&again).await.unwrap());
}

#[tokio::test]
async fn users_keep_the_originals_rules_and_ours() {
    let pg = TestPg::start();
    let pgc = connect(&pg).await;
    let store: &dyn ControlStore = &pgc;
    assert_eq!(store.password_scheme(), Scheme::Bcrypt);

    // The original's seeded admin, with a bcrypt hash as Go writes it.
    let go_hash = password::hash_as(Scheme::Bcrypt, "first-pass").unwrap();
    pg.psql(&format!(
        "INSERT INTO users (sub, username, email, name, is_admin, password_hash, must_change_password) \
         VALUES ('builtin:root@example.com', 'root', 'root@example.com', 'root', TRUE, '{go_hash}', TRUE)"
    ));
    let root = store
        .user("builtin:root@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(root.is_admin && root.must_change_password);
    assert!(password::verify("first-pass", &root.password_hash));
    assert!(root.last_seen.ends_with('Z'));

    // The token epoch follows the password hash, across connections.
    let epoch = root.token_epoch;
    assert_ne!(epoch, 0);
    let new_hash = password::hash_as(Scheme::Bcrypt, "second-pass").unwrap();
    let stored = store
        .update_user(&root.sub, None, &op("root"), &|u: &mut User| {
            u.password_hash = new_hash.clone();
            Ok(())
        })
        .await
        .unwrap();
    let reread = connect(&pg).await.user(&root.sub).await.unwrap().unwrap();
    assert_eq!(stored, reread, "the update returns the record as stored");
    assert_ne!(
        reread.token_epoch, epoch,
        "a new password ends old sessions"
    );
    assert_eq!(
        pg.psql("SELECT password_hash FROM users WHERE sub = 'builtin:root@example.com'"),
        new_hash
    );

    // A change applies to the stored record, not to a copy read before: a bookkeeping write
    // made from the stale `root` keeps the new password.
    let stale = root.clone();
    let stored = store
        .update_user(&root.sub, None, &op("root"), &|u: &mut User| {
            u.last_seen = "2026-01-02T03:04:05Z".into();
            assert_ne!(u.password_hash, stale.password_hash);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(stored.password_hash, new_hash);
    // A refusal from the change is returned and nothing is written.
    let refused = store
        .update_user(&root.sub, Some("x"), &op("x"), &|_: &mut User| {
            Err(ControlError::Conflict("changed meanwhile".into()))
        })
        .await;
    assert!(
        matches!(refused, Err(ControlError::Conflict(_))),
        "{refused:?}"
    );

    // The last admin can be neither demoted nor deleted.
    assert!(matches!(
        store
            .update_user(&root.sub, Some("set_admin"), &op("x"), &|u: &mut User| {
                u.is_admin = false;
                Ok(())
            })
            .await,
        Err(ControlError::Conflict(_))
    ));
    assert!(matches!(
        store.delete_user(&root.sub, &op("x")).await,
        Err(ControlError::Conflict(_))
    ));

    // An e-mail belongs to one user, compared without case.
    assert!(matches!(
        store
            .create_user(
                user("ROOT@example.com", false, ""),
                "create_user",
                &op("root")
            )
            .await,
        Err(ControlError::AlreadyExists(_))
    ));
    let bob = user("bob@example.com", false, "");
    store
        .create_user(bob.clone(), "create_user", &op("root"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_user(bob.clone(), "create_user", &op("root"))
            .await,
        Err(ControlError::AlreadyExists(_))
    ));

    // Memberships: an unknown user is not found, and deleting a user removes its own.
    store
        .set_member(
            Member {
                namespace: "default".into(),
                user_sub: bob.sub.clone(),
                role: "editor".into(),
            },
            None,
            &op("root"),
        )
        .await
        .unwrap();
    // A change decided on a role that is no longer stored is refused.
    let viewer = Member {
        namespace: "default".into(),
        user_sub: bob.sub.clone(),
        role: "viewer".into(),
    };
    for seen in [None, Some("owner")] {
        assert!(matches!(
            store.set_member(viewer.clone(), seen, &op("x")).await,
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            store
                .remove_member("default", &bob.sub, seen, &op("x"))
                .await,
            Err(ControlError::Conflict(_))
        ));
    }
    assert_eq!(
        store
            .member("default", &bob.sub)
            .await
            .unwrap()
            .unwrap()
            .role,
        "editor"
    );
    assert!(matches!(
        store
            .set_member(
                Member {
                    namespace: "default".into(),
                    user_sub: "builtin:nobody@example.com".into(),
                    role: "viewer".into(),
                },
                None,
                &op("root"),
            )
            .await,
        Err(ControlError::NotFound(_))
    ));
    assert!(matches!(
        store
            .create_namespace("team-z", Some("builtin:nobody@example.com"), &op("root"))
            .await,
        Err(ControlError::NotFound(_))
    ));
    assert!(
        !store.namespace_exists("team-z").await.unwrap(),
        "the namespace was not half made"
    );
    store.delete_user(&bob.sub, &op("root")).await.unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM namespace_members"),
        "0",
        "cascade"
    );

    // A sign-in that makes an admin does so for the identity's first record only.
    let oidc = User {
        sub: "oidc|42".into(),
        ..user("carol@example.com", true, "")
    };
    store
        .create_user(oidc.clone(), SYNC_ACTION, &op("carol"))
        .await
        .unwrap();
    assert!(store.user("oidc|42").await.unwrap().unwrap().is_admin);
    store.delete_user("oidc|42", &op("root")).await.unwrap();
    store
        .create_user(oidc.clone(), SYNC_ACTION, &op("carol"))
        .await
        .unwrap();
    assert!(!store.user("oidc|42").await.unwrap().unwrap().is_admin);

    // A database with users already (an original server's) gets no admin of a node's.
    let initial = user("admin@hermes.local", true, &go_hash);
    assert!(!store.create_initial_admin(initial.clone()).await.unwrap());
    assert_eq!(
        pg.psql(
            "SELECT name, action FROM change_log WHERE namespace = '_global' ORDER BY revision"
        ),
        "builtin:bob@example.com|create_user\nbuiltin:bob@example.com|delete_user\n\
         oidc|42|user.sync\noidc|42|delete_user\noidc|42|user.sync"
    );
}

#[tokio::test]
async fn the_initial_admin_is_made_once_on_an_empty_database() {
    let pg = TestPg::start();
    let pgc = connect(&pg).await;
    let store: &dyn ControlStore = &pgc;
    let hash = password::hash_as(Scheme::Bcrypt, "first-pass").unwrap();
    let initial = user("admin@hermes.local", true, &hash);
    assert!(store.create_initial_admin(initial.clone()).await.unwrap());
    assert!(!store.create_initial_admin(initial.clone()).await.unwrap());
    // Deleted (another admin made first), it does not come back, for a new connection too.
    store
        .create_user(
            user("root@example.com", true, ""),
            "create_user",
            &op("admin"),
        )
        .await
        .unwrap();
    store.delete_user(&initial.sub, &op("root")).await.unwrap();
    pg.psql("DELETE FROM users");
    assert!(!connect(&pg)
        .await
        .create_initial_admin(initial.clone())
        .await
        .unwrap());
}

#[tokio::test]
async fn signing_keys_status_bindings_and_dashboards() {
    let pg = TestPg::start();
    let pgc = connect(&pg).await;
    let store: &dyn ControlStore = &pgc;

    // Two first starts at once make one active key.
    let now = 1_800_000_000;
    let other = connect(&pg).await;
    let (a, b) = tokio::join!(
        store.ensure_signing_key(now),
        ControlStore::ensure_signing_key(&other, now)
    );
    a.unwrap();
    b.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].status, KeyStatus::Active);
    assert_eq!(keys[0].created_at, now);
    // Stored as the original stores it: 32 raw bytes.
    assert_eq!(
        pg.psql("SELECT kid, encode(secret, 'hex'), status FROM jwt_signing_keys"),
        format!("{}|{}|active", keys[0].kid, keys[0].secret)
    );
    assert_eq!(keys[0].secret.len(), 64);
    let first = keys[0].kid.clone();
    let fresh = store.rotate_signing_key(now + 10, 3600).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, fresh.kid, "newest first");
    assert_eq!(
        (keys[1].status, keys[1].expires_at),
        (KeyStatus::Retired, Some(now + 10 + 3600))
    );
    // A later rotation drops the key whose grace has passed.
    store.rotate_signing_key(now + 7200, 0).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0].status, KeyStatus::Active);
    assert_eq!(
        (keys[1].kid.as_str(), keys[1].expires_at),
        (fresh.kid.as_str(), Some(now + 7200))
    );
    assert!(keys.iter().all(|k| k.kid != first));

    // Group bindings: upserted, listed by group, removed once.
    store
        .set_group_binding("default", "ops", "viewer", None, &op("root"))
        .await
        .unwrap();
    for seen in [None, Some("owner")] {
        assert!(matches!(
            store
                .set_group_binding("default", "ops", "editor", seen, &op("x"))
                .await,
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            store
                .remove_group_binding("default", "ops", seen, &op("x"))
                .await,
            Err(ControlError::Conflict(_))
        ));
    }
    store
        .set_group_binding("default", "ops", "editor", Some("viewer"), &op("root"))
        .await
        .unwrap();
    store
        .set_group_binding("default", "dev", "viewer", None, &op("root"))
        .await
        .unwrap();
    let bindings = store.group_bindings("default").await.unwrap();
    assert_eq!(
        bindings
            .iter()
            .map(|b| (b.group.as_str(), b.role.as_str()))
            .collect::<Vec<_>>(),
        [("dev", "viewer"), ("ops", "editor")]
    );
    store
        .remove_group_binding("default", "ops", Some("editor"), &op("root"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .remove_group_binding("default", "ops", None, &op("root"))
            .await,
        Err(ControlError::NotFound(_))
    ));

    // Status: the controller's heartbeat upserts, the instance set is replaced.
    let beat = |rev| ControllerStatus {
        id: "ctrl-1".into(),
        status: "running".into(),
        is_leader: true,
        config_revision: rev,
        ..Default::default()
    };
    store.put_controller("default", beat(1)).await.unwrap();
    store.put_controller("default", beat(2)).await.unwrap();
    let ctrls = store.controllers("default").await.unwrap();
    assert_eq!(ctrls.len(), 1);
    assert_eq!(ctrls[0].config_revision, 2);
    assert!(ctrls[0].updated_at.ends_with('Z'));
    let inst = |id: &str| InstanceStatus {
        id: id.into(),
        status: "running".into(),
        ..Default::default()
    };
    store
        .put_instances("default", vec![inst("gw-a"), inst("gw-b")])
        .await
        .unwrap();
    store
        .put_instances("default", vec![inst("gw-b"), inst("gw-c")])
        .await
        .unwrap();
    assert_eq!(
        pg.psql("SELECT id FROM gateway_instances ORDER BY id"),
        "gw-b\ngw-c"
    );
    store.put_instances("default", vec![]).await.unwrap();
    assert!(store
        .reported_instances("default")
        .await
        .unwrap()
        .is_empty());

    // Dashboards.
    let (saved, inserted) = store
        .save_dashboard(
            "default",
            Dashboard {
                id: 0,
                name: "gw".into(),
                url: "https://grafana.example/d/1".into(),
            },
        )
        .await
        .unwrap();
    assert!(inserted && saved.id > 0);
    let (_, inserted) = store
        .save_dashboard(
            "default",
            Dashboard {
                name: "gateway".into(),
                ..saved.clone()
            },
        )
        .await
        .unwrap();
    assert!(!inserted);
    assert_eq!(
        pg.psql("SELECT namespace, name FROM grafana_dashboards"),
        "default|gateway"
    );
    assert!(matches!(
        store.delete_dashboard("other", saved.id).await,
        Err(ControlError::NotFound(_))
    ));
    store.delete_dashboard("default", saved.id).await.unwrap();
    assert!(store.dashboards("default").await.unwrap().is_empty());
}
