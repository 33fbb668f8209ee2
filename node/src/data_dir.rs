//! The data directory is private to the user the node runs as: created 0700, every file the
//! node creates in it 0600 (the process's umask is set to 077 before anything is opened), and
//! checked at every start: a directory other users can enter refuses to start, one the group
//! can enter starts with a warning. The store holds credential secrets (sealed) and the raft
//! log; a copy of either should need this user's rights.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("creating the data directory {dir}: {source}")]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data directory {dir} is open to other users (mode {mode:o}): it holds the store and \
         its secrets; run `chmod 700 {dir}` and start again"
    )]
    OpenToOthers { dir: PathBuf, mode: u32 },
    #[error("reading the machine key {path}: {source}")]
    MachineKey {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Makes every file and directory the process creates from now on private (0600 and 0700).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (0700) if it is missing, and checks who else may enter it. Blocking.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| DataDirError::Create {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|source| DataDirError::Create {
            dir: dir.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o007 != 0 {
        return Err(DataDirError::OpenToOthers {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    if mode & 0o070 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory is open to its group: anyone in it can copy the store; \
             `chmod 700` it unless that is intended"
        );
    }
    Ok(())
}

/// What keys secrets at rest on a cluster without a cluster secret: the host's machine id, or
/// where the host has none, a random key kept in `<dir>/machine-key` (0600). Blocking.
pub fn machine_key(dir: &Path) -> Result<Vec<u8>, DataDirError> {
    let id = hermes_control::seal::machine_id();
    if !id.is_empty() {
        return Ok(id);
    }
    let path = dir.join("machine-key");
    let err = |source| DataDirError::MachineKey {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(key) if !key.is_empty() => return Ok(key),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let key: [u8; 32] = rand::random();
    let text = hex::encode(key);
    write_private(&path, text.as_bytes()).map_err(err)?;
    Ok(text.into_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_private_and_an_open_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/data");
        prepare(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod 700") && e.contains("755"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        prepare(&dir).unwrap();
    }
}
