//! First start of a cluster: a session signing key, and the built-in admin user with a random
//! password written once to `<data-dir>/initial-admin-password` (mode 0600) and announced in
//! the log (the path, never the password). Exactly one node creates the admin; the others see
//! it exists. Runs once the store takes writes, retrying until it succeeds or the node stops.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use hermes_control::auth::password;
use hermes_control::model::{unix_now, User};
use hermes_control::store::ControlStore;

pub const PASSWORD_FILE: &str = "initial-admin-password";

pub async fn run(
    store: Arc<dyn ControlStore>,
    data_dir: PathBuf,
    admin_email: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        match once(&store, &data_dir, &admin_email).await {
            Ok(()) => return,
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
        tokio::task::spawn_blocking(move || password::hash(&s))
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
        must_change_password: false,
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
