//! The data directory is private, and a copy of it does not give away credential secrets:
//! directories 0700, files 0600, secrets sealed in the store; a directory open to other users
//! keeps the node from starting.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::api_client::{Api, Auth};
use crate::harness::*;

/// Every directory and file under `dir`, with its mode.
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        out.push((
            entry.path(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[test]
fn the_data_dir_is_private_and_holds_no_plain_secret() {
    let mut c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let (data_dir, secret) = {
        let node = c.node(1);
        let root = Api::anonymous(&node.admin()).initial_admin(&node.data_dir);
        let cred = root.credential(&["config:read"]);
        let Auth::Hmac { secret_key, .. } = cred.auth.clone() else {
            unreachable!()
        };
        assert_eq!(
            cred.get("/api/v1/domains").0,
            200,
            "the sealed secret still verifies"
        );
        (node.data_dir.clone(), secret_key)
    };
    // Stopped, so that everything is on disk.
    assert!(c.node_mut(1).terminate().success());
    let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory");
    let mut all = Vec::new();
    modes(&data_dir, &mut all);
    assert!(all.len() > 3, "{all:?}");
    for (path, mode, is_dir) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} has mode {mode:o}", path.display());
        if !is_dir {
            let bytes = std::fs::read(path).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(
                !found,
                "{} holds a credential secret in the clear",
                path.display()
            );
        }
    }
    // Restarted from the same directory, the credential still works.
    c.node_mut(1).start();
    c.node(1).wait_ready(Duration::from_secs(30));
    // The initial admin password is for the first sign-in: changed, its file goes.
    let node = c.node(1);
    let file = node.data_dir.join("initial-admin-password");
    let password = std::fs::read_to_string(&file).unwrap();
    let anon = Api::anonymous(&node.admin());
    let (s, b) = anon.post(
        "/api/auth/login",
        &serde_json::json!({"email": "admin@hermes.local", "password": password.trim()}),
    );
    assert_eq!(
        (s, b["must_change_password"].as_bool()),
        (200, Some(true)),
        "{b}"
    );
    let admin = anon.with(Auth::Bearer(
        b["access_token"].as_str().unwrap().to_string(),
    ));
    let (s, b) = admin.post(
        "/api/auth/change-password",
        &serde_json::json!({"old_password": password.trim(), "new_password": "a-new-long-passphrase"}),
    );
    assert_eq!(s, 200, "{b}");
    wait_for("the password file to go", Duration::from_secs(10), || {
        (!file.exists()).then_some(())
    });
}

#[test]
fn a_data_dir_open_to_other_users_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::new(dir.path(), 1);
    std::fs::create_dir_all(&node.data_dir).unwrap();
    std::fs::set_permissions(&node.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    node.start();
    wait_for("the node to give up", Duration::from_secs(20), || {
        (!node.is_running()).then_some(())
    });
    let log = node.log();
    assert!(log.contains("chmod 700"), "{log}");
}
