//! What lives where in a data directory, and whether it has held a cluster member:
//! - `MEMBER`: written and synced at the first start, before any raft state exists; from then
//!   on a missing or damaged raft log is damage, never a fresh start;
//! - `raft/`: the raft log and vote ([`crate::wal`]);
//! - `state/`: the state machine (sled);
//! - `snapshots/`: the latest snapshot.
//!
//! A directory from an earlier development build (its raft log in sled, no marker) is refused
//! with a message rather than misread.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The data directory format this build writes.
pub const FORMAT: u32 = 2;
const MARKER: &str = "MEMBER";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "the data directory {dir} belongs to node {found}, not node {wanted}: start it with \
         --id {found}, or give node {wanted} a data directory of its own"
    )]
    OtherNode {
        dir: PathBuf,
        found: u64,
        wanted: u64,
    },
    #[error(
        "the data directory {dir} was written by an earlier development build of hermes (its \
         raft log is in sled) and cannot be opened by this one: start with an empty directory \
         and restore the keys from an etcd snapshot or a backup"
    )]
    OldFormat { dir: PathBuf },
    #[error(
        "the data directory marker {file} is damaged ({what}); {}",
        crate::wal::RECOVERY
    )]
    BadMarker { file: PathBuf, what: String },
    #[error("data directory {path} while {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io { op, path, source }
}

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn raft(&self) -> PathBuf {
        self.root.join("raft")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn marker(&self) -> PathBuf {
        self.root.join(MARKER)
    }

    /// Checks the directory for node `id`; at a first start writes the marker. Returns whether
    /// the directory had held a member before (so its raft log must be there). Blocking.
    pub fn claim(&self, id: u64) -> Result<bool, LayoutError> {
        let marker = self.marker();
        match std::fs::read_to_string(&marker) {
            Ok(text) => {
                let bad = |what: &str| LayoutError::BadMarker {
                    file: marker.clone(),
                    what: what.to_string(),
                };
                let field = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                let format = field("format ").ok_or_else(|| bad("no format line"))?;
                if format != u64::from(FORMAT) {
                    return Err(bad(&format!("format {format}, this build reads {FORMAT}")));
                }
                let found = field("node ").ok_or_else(|| bad("no node line"))?;
                if found != id {
                    return Err(LayoutError::OtherNode {
                        dir: self.root.clone(),
                        found,
                        wanted: id,
                    });
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.raft().join("db").exists() || self.state().exists() {
                    return Err(LayoutError::OldFormat {
                        dir: self.root.clone(),
                    });
                }
                std::fs::create_dir_all(&self.root).map_err(io("creating", &self.root))?;
                let text = format!("hermes data directory\nformat {FORMAT}\nnode {id}\n");
                let write = || -> std::io::Result<()> {
                    let mut f = std::fs::File::create(&marker)?;
                    f.write_all(text.as_bytes())?;
                    f.sync_all()?;
                    std::fs::File::open(&self.root)?.sync_all()
                };
                write().map_err(io("writing the member marker", &marker))?;
                Ok(false)
            }
            Err(e) => Err(io("reading the member marker", &marker)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_written_once_and_names_its_node() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(&tmp.path().join("data"));
        assert!(!layout.claim(3).unwrap(), "a first start");
        assert!(layout.claim(3).unwrap(), "then a member's directory");
        let e = layout.claim(4).unwrap_err().to_string();
        assert!(e.contains("belongs to node 3"), "{e}");
        std::fs::write(layout.marker(), "garbage").unwrap();
        assert!(matches!(
            layout.claim(3),
            Err(LayoutError::BadMarker { .. })
        ));
    }

    #[test]
    fn an_earlier_builds_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        std::fs::create_dir_all(layout.raft().join("db")).unwrap();
        assert!(matches!(
            layout.claim(1),
            Err(LayoutError::OldFormat { .. })
        ));
    }
}
