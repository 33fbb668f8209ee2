//! The thread that writes the log's metadata file, so that its two syncs (the file and the
//! directory) never sit between a group of appends and its acknowledgement. Writes happen in
//! the order they were asked for, so a later metadata never loses to an earlier one; a write
//! that must be durable before the log goes on (a truncation, a purge, a clean stop) waits for
//! its turn to finish. A failure is kept and reported by the next call.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use super::error::WalError;
use super::small_file::{self, Meta};

struct Job {
    meta: Meta,
    done: Option<mpsc::SyncSender<()>>,
}

#[derive(Debug)]
pub(crate) struct MetaWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl MetaWriter {
    pub fn start(dir: PathBuf) -> Result<MetaWriter, WalError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = failed.clone();
        let path = dir.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-meta".into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    // Only the newest of the queued writes matters, unless someone waits.
                    while job.done.is_none() {
                        match rx.try_recv() {
                            Ok(next) => job = next,
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = small_file::write_meta(&dir, &job.meta) {
                        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert_with(|| e.to_string());
                    }
                    if let Some(done) = job.done {
                        let _ = done.send(());
                    }
                }
            })
            .map_err(WalError::io("starting the metadata writer", &path))?;
        Ok(MetaWriter {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    fn check(&self) -> Result<(), WalError> {
        match self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(e) => Err(WalError::Invalid(format!(
                "writing the log's metadata failed: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Queues `meta`; with `wait`, returns once it (and everything before it) is durable.
    pub fn write(&self, meta: Meta, wait: bool) -> Result<(), WalError> {
        self.check()?;
        let (done, finished) = if wait {
            let (tx, rx) = mpsc::sync_channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let gone = || WalError::Invalid("the metadata writer has stopped".into());
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Job { meta, done })
            .map_err(|_| gone())?;
        if let Some(finished) = finished {
            finished.recv().map_err(|_| gone())?;
            self.check()?;
        }
        Ok(())
    }
}

impl Drop for MetaWriter {
    fn drop(&mut self) {
        // Everything queued is written before the thread ends.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
