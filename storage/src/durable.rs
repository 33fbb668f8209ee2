//! How far this node's raft log is on disk, as the log's writer publishes it and the state
//! machine's writer waits for it: the state machine's rows for an entry reach sled (which
//! persists on its own schedule) only once the entry itself is on disk here, so the state
//! machine on disk is never ahead of the log, while applying in memory (what reads see) waits
//! for nothing. When the log fails, waiters give up.

use std::sync::{Condvar, Mutex};

#[derive(Debug)]
pub struct Durable {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Entries up to this index are on disk.
    upto: u64,
    failed: bool,
    /// Threads in [`Durable::wait`]: the mark moves once per log sync, and a notify with
    /// nobody waiting would still cost the log's writer a system call.
    waiters: usize,
}

impl Durable {
    pub fn new(upto: u64) -> Durable {
        Durable {
            state: Mutex::new(State {
                upto,
                failed: false,
                waiters: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// For a state machine without a log of its own (tests that apply entries directly).
    pub fn always() -> Durable {
        Durable::new(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning means a panic while holding it; the state is two plain values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn upto(&self) -> u64 {
        self.lock().upto
    }

    /// Moves the mark (down after a truncation, up after a sync or a purge).
    pub fn set(&self, upto: u64) {
        let mut state = self.lock();
        state.upto = upto;
        if state.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// The log failed: nothing more will become durable.
    pub fn fail(&self) {
        self.lock().failed = true;
        self.changed.notify_all();
    }

    /// Blocks until entries up to `index` are on disk; false if the log failed first.
    pub fn wait(&self, index: u64) -> bool {
        let mut state = self.lock();
        loop {
            if state.upto >= index {
                return true;
            }
            if state.failed {
                return false;
            }
            state.waiters += 1;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waiters_wake_on_progress_and_give_up_on_failure() {
        let d = Arc::new(Durable::new(3));
        assert!(d.wait(2));
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(10))
        };
        d.set(10);
        assert!(waiter.join().unwrap());
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(20))
        };
        d.fail();
        assert!(!waiter.join().unwrap());
        assert!(Durable::always().wait(u64::MAX));
    }
}
