//! Remembering signed requests for as long as their signature is valid, so that each is
//! accepted once: the peer protocol keys it by nonce, the HMAC-signed API by signature. Entries
//! are grouped by the second they were signed in and forgotten once no valid request can be
//! signed in that second any more; the cache holds at most a fixed number, and refuses new
//! requests rather than forget early (entries are added only after a signature checked out, so
//! only holders of a secret can fill it).

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;

#[derive(Debug)]
pub struct ReplayCache<K> {
    window_secs: u64,
    capacity: usize,
    inner: Mutex<Inner<K>>,
}

#[derive(Debug)]
struct Inner<K> {
    by_second: BTreeMap<u64, HashSet<K>>,
    len: usize,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("this signed request was already received once (a replay)")]
    Replayed,
    #[error("too many signed requests to remember; try again shortly")]
    Saturated,
}

impl<K: Hash + Eq> ReplayCache<K> {
    /// A cache for signatures valid `window_secs` either side of the receiver's clock.
    pub fn new(window_secs: u64, capacity: usize) -> Self {
        ReplayCache {
            window_secs,
            capacity,
            inner: Mutex::new(Inner {
                by_second: BTreeMap::new(),
                len: 0,
            }),
        }
    }

    /// Records `key`, signed at `signed_at` (unix seconds), at `now`: an error when it was seen
    /// before, or when the cache is full.
    pub fn first_time(&self, key: K, signed_at: u64, now: u64) -> Result<(), ReplayError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = now.saturating_sub(self.window_secs);
        let keep = inner.by_second.split_off(&oldest);
        let dropped: usize = inner.by_second.values().map(HashSet::len).sum();
        inner.by_second = keep;
        inner.len -= dropped;
        if inner.len >= self.capacity {
            return Err(ReplayError::Saturated);
        }
        if !inner.by_second.entry(signed_at).or_default().insert(key) {
            return Err(ReplayError::Replayed);
        }
        inner.len += 1;
        Ok(())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_within_the_window() {
        let cache = ReplayCache::new(30, 10);
        assert_eq!(cache.first_time(1, 100, 100), Ok(()));
        assert_eq!(cache.first_time(1, 100, 110), Err(ReplayError::Replayed));
        assert_eq!(cache.first_time(2, 101, 110), Ok(()));
        // Seconds older than the window are forgotten.
        assert_eq!(cache.first_time(3, 140, 140), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(30, 2);
        assert_eq!(cache.first_time(1, 100, 100), Ok(()));
        assert_eq!(cache.first_time(2, 100, 100), Ok(()));
        assert_eq!(cache.first_time(3, 100, 100), Err(ReplayError::Saturated));
        assert_eq!(cache.first_time(3, 140, 140), Ok(()));
    }
}
