//! First start of a cluster: a session signing key, and the built-in admin user with a random
//! password written once to `<data-dir>/initial-admin-password` (mode 0600) and announced in
//! the log (the path, never the password). Exactly one node creates the admin; the others see
//! it exists. Runs once the store takes writes, retrying until it succeeds or the node stops.
//!
//! The password is for the first sign-in only: the admin is marked `must_change_password`,
//! and once the password has been changed the file is removed (checked every
//! [`RETIRE_CHECK`] while it exists), so a copy of the data directory does not hold a live
//! admin password.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use hermes_control::auth::password;
use hermes_control::model::{unix_now, User};
use hermes_control::store::ControlStore;

pub const PASSWORD_FILE: &str = "initial-admin-password";

/// How often a node holding the password file checks whether it can be removed.
pub const RETIRE_CHECK: Duration = Duration::from_secs(2);

pub async fn run(
    store: Arc<dyn ControlStore>,
    data_dir: PathBuf,
    admin_email: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        match once(&store, &data_dir, &admin_email).await {
            Ok(()) => return retire_password_file(store, data_dir, admin_email, stop).await,
            Err(e) => tracing::debug!(error = %e, "control-plane bootstrap not done yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn once(
    store: &Arc<dyn ControlStore>,
    data_dir: &std::path::Path,
    email: &str,
) -> Result<(), String> {
    store
        .ensure_signing_key(unix_now())
        .await
        .map_err(|e| e.to_string())?;
    let secret = password::generate();
    let hashed = {
        let s = secret.clone();
        let scheme = store.password_scheme();
        tokio::task::spawn_blocking(move || password::hash_as(scheme, &s))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let local = email.split('@').next().unwrap_or(email).to_string();
    let user = User {
        sub: format!("builtin:{email}"),
        username: local.clone(),
        email: email.to_string(),
        name: local,
        is_admin: true,
        must_change_password: true,
        last_seen: String::new(),
        password_hash: hashed,
        token_epoch: 0,
    };
    if !store
        .create_initial_admin(user)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let path = data_dir.join(PASSWORD_FILE);
    let written = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || write_secret(&path, &secret))
            .await
            .map_err(|e| e.to_string())?
    };
    match written {
        Ok(()) => tracing::info!(
            email,
            password_file = %path.display(),
            "created the initial admin user; its password is in the file (readable by this user only)"
        ),
        Err(e) => tracing::error!(
            email,
            error = %e,
            "created the initial admin user but could not write its password file; reset the \
             password with another admin, or start a new cluster"
        ),
    }
    Ok(())
}

/// Removes this node's password file once the admin has changed the password (or the admin
/// is gone), until `stop`.
async fn retire_password_file(
    store: Arc<dyn ControlStore>,
    data_dir: PathBuf,
    email: String,
    mut stop: watch::Receiver<bool>,
) {
    let path = data_dir.join(PASSWORD_FILE);
    let sub = format!("builtin:{email}");
    loop {
        if !path.exists() {
            return;
        }
        let retire = match store.user(&sub).await {
            Ok(Some(user)) => !user.must_change_password,
            Ok(None) => true,
            Err(_) => false,
        };
        if retire {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::info!(
                    password_file = %path.display(),
                    "the initial admin password was changed; removed its file"
                ),
                Err(e) => tracing::warn!(
                    password_file = %path.display(),
                    error = %e,
                    "could not remove the initial admin password file; remove it by hand"
                ),
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(RETIRE_CHECK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn write_secret(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}
