//! A storage failure the node cannot continue after (a write or sync of the raft log or the
//! state machine failed): raised once by whichever writer thread meets it, watched by the
//! node, which stops with the cause (etcd's choice: a member that can no longer write must not
//! go on looking healthy).

use tokio::sync::watch;

/// Cheap to clone; clones share the one signal.
#[derive(Debug, Clone)]
pub struct Fatal {
    tx: watch::Sender<Option<String>>,
}

impl Default for Fatal {
    fn default() -> Self {
        Fatal {
            tx: watch::channel(None).0,
        }
    }
}

impl Fatal {
    /// Records the first cause; later ones are only logged by their raisers.
    pub fn raise(&self, cause: String) {
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(cause);
                true
            } else {
                false
            }
        });
    }

    /// The cause, once raised.
    pub fn cause(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Resolves with the cause when one is raised.
    pub async fn raised(&self) -> String {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(cause) = rx.borrow_and_update().clone() {
                return cause;
            }
            if rx.changed().await.is_err() {
                // Unreachable while `self` holds the sender.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_cause_is_kept_and_announced() {
        let f = Fatal::default();
        assert_eq!(f.cause(), None);
        let watcher = {
            let f = f.clone();
            tokio::spawn(async move { f.raised().await })
        };
        f.raise("disk full".into());
        f.raise("later".into());
        assert_eq!(watcher.await.unwrap(), "disk full");
        assert_eq!(f.cause().as_deref(), Some("disk full"));
    }
}
