//! `hermes snapshot save` and `hermes snapshot restore`: a backup of a running cluster taken
//! through any member's admin API, and a new single-node cluster founded from one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster::client;
use super::Connection;

/// A backup of a large store takes a while to build and to send.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Downloads a backup into `file`: written beside it, checked whole, fsynced, then renamed
/// into place, so that `file` is never a partial backup.
pub async fn save(conn: &Connection, file: &Path) -> anyhow::Result<()> {
    let bytes = client(conn)?
        .download("/api/v1/cluster/snapshot", TIMEOUT)
        .await?;
    let backup = hermes_storage::backup::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("the backup received from {}: {e}", conn.endpoint))?;
    let part = part_path(file);
    let target = file.to_path_buf();
    let len = bytes.len();
    let rows = backup.rows.len();
    let revision = backup.revision;
    // The backup holds password hashes, sealed secrets and the etcd token key: only its owner
    // may read it, as the data directory. Written off the runtime: it can be large and is
    // fsynced; a failed write leaves no partial file behind.
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&part, &target)?;
            let dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            hermes_storage::wal::small_file::sync_dir(dir).map_err(std::io::Error::other)
        };
        let result = write();
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    })
    .await
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
    written.map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
    println!(
        "Snapshot saved at {} ({} bytes, revision {}, {} history rows)",
        file.display(),
        len,
        revision,
        rows
    );
    Ok(())
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}

/// Founds a single-node cluster of node `id` in the new directory `data_dir` from `file`.
pub fn restore(file: &Path, data_dir: &Path, id: u64, advertise_peer: &str) -> anyhow::Result<()> {
    if id == 0 {
        anyhow::bail!("--id: must be a positive integer");
    }
    let url: http::Uri = advertise_peer
        .parse()
        .map_err(|_| anyhow::anyhow!("--advertise-peer: {advertise_peer:?} is not a URL"))?;
    if url.scheme_str() != Some("http") || url.authority().is_none() {
        anyhow::bail!("--advertise-peer: {advertise_peer:?} must be an http:// URL");
    }
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    crate::data_dir::private_umask();
    crate::data_dir::prepare(data_dir)?;
    let restored = hermes_storage::single_node::restore(data_dir, id, advertise_peer, &bytes)
        .map_err(|e| anyhow::anyhow!("restoring {}: {e}", file.display()))?;
    println!(
        "restored {} into {}: a new single-node cluster of node {id} at revision {}; start it \
         with `hermes node --id {id} --data-dir {} --advertise-peer {advertise_peer}`, then \
         add members with `--join`",
        file.display(),
        data_dir.display(),
        restored.revision,
        data_dir.display()
    );
    Ok(())
}
