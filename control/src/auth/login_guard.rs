//! What stands between a password guesser and the built-in accounts (the admin API's, and the
//! etcd endpoint's users):
//! - password hashing and verifying run a few at a time ([`HASHING_AT_ONCE`]): each argon2id
//!   run holds about 19 MiB, so 64 parallel sign-ins would otherwise take over a gigabyte;
//! - failed sign-ins are counted per account and per client address, and after
//!   [`FREE_FAILURES`] each further failure locks that key out for twice as long as the last
//!   (1 s, 2 s, 4 s … up to [`MAX_LOCKOUT`]); a locked key is refused before any hashing;
//! - an attempt reserves its place before it hashes ([`Throttle::begin`]): attempts in flight
//!   count as failures-to-be, so a burst of parallel guesses gets no more tries than a
//!   sequence would (checking first and counting after let a burst through at every unlock);
//! - an unknown account costs the same argon2id work as a known one, so timing does not tell
//!   which accounts exist.
//!
//! The counts live in this node's memory: a guesser spreading attempts over every node gets
//! the node count times as many tries, and a restart forgets them (`docs/security.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::password;

/// Password hashes computed at once on this node.
pub const HASHING_AT_ONCE: usize = 2;
/// How long a sign-in waits for its turn to hash before it is refused (503).
const HASHING_WAIT: Duration = Duration::from_secs(10);
/// Failures of one key allowed before lockouts start.
pub const FREE_FAILURES: u32 = 5;
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most; beyond it the quietest are forgotten first.
const MAX_KEYS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Attempts begun and not yet finished.
    in_flight: u32,
    locked_until: Instant,
    last: Instant,
}

/// How long an attempt waits when others for the same key are still in flight and together
/// could use up its free failures.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// A sign-in attempt's place, reserved by [`Throttle::begin`]. Unless it ends with
/// [`Attempt::failed`] or [`Attempt::succeeded`], dropping it gives the place back.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: String,
    done: bool,
}

impl Attempt<'_> {
    pub fn failed(mut self) {
        self.done = true;
        self.throttle.failed(&self.key);
    }

    pub fn succeeded(mut self) {
        self.done = true;
        self.throttle.succeeded(&self.key);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(f) = self.throttle.lock().get_mut(&self.key) {
                f.in_flight = f.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Failed-attempt counts with exponential lockout, per key (an account or a client address).
#[derive(Debug, Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // Poisoning means a panic while holding it; the counts stay usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `key` is locked out.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(key) {
            Some(f) if f.locked_until > now => Err(f.locked_until - now),
            _ => Ok(()),
        }
    }

    /// Reserves an attempt for `key`: `Err(wait)` while it is locked out, or while the
    /// attempts already in flight could use up what is left of its free failures.
    pub fn begin(&self, key: &str) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let mut keys = self.lock();
        let f = entry(&mut keys, key, now, 0);
        if f.locked_until > now {
            return Err(f.locked_until - now);
        }
        // Past the free failures, one attempt at a time: each failure locks the next out.
        let free_left = FREE_FAILURES.saturating_sub(f.count);
        if f.in_flight > 0 && f.in_flight >= free_left {
            return Err(BUSY_WAIT);
        }
        f.in_flight += 1;
        drop(keys);
        Ok(Attempt {
            throttle: self,
            key: key.to_string(),
            done: false,
        })
    }

    /// Counts a failure of `key`, locking it out once it has used its free failures.
    fn failed(&self, key: &str) {
        let now = Instant::now();
        let mut keys = self.lock();
        // (Forgotten while in flight, it is counted as if it had been there.)
        let f = entry(&mut keys, key, now, 1);
        f.in_flight = f.in_flight.saturating_sub(1);
        // A key quiet for longer than the longest lockout starts over.
        if now.duration_since(f.last) > MAX_LOCKOUT {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if let Some(over) = f.count.checked_sub(FREE_FAILURES).filter(|o| *o > 0) {
            let secs = 1u64 << (over - 1).min(20);
            f.locked_until = now + Duration::from_secs(secs).min(MAX_LOCKOUT);
        }
    }

    /// Forgets `key`'s failures (after a successful sign-in); attempts still in flight keep
    /// their places.
    fn succeeded(&self, key: &str) {
        let mut keys = self.lock();
        if let Some(f) = keys.get_mut(key) {
            f.in_flight = f.in_flight.saturating_sub(1);
            if f.in_flight == 0 {
                keys.remove(key);
            } else {
                f.count = 0;
                f.locked_until = Instant::now();
            }
        }
    }
}

/// `key`'s counts, made (with `in_flight` attempts) if it has none, room made first if needed.
fn entry<'a>(
    keys: &'a mut HashMap<String, Failures>,
    key: &str,
    now: Instant,
    in_flight: u32,
) -> &'a mut Failures {
    if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
        forget_quietest(keys, now);
    }
    keys.entry(key.to_string()).or_insert(Failures {
        count: 0,
        in_flight,
        locked_until: now,
        last: now,
    })
}

/// Makes room: drops keys no longer locked nor in use, then, if that freed nothing, the oldest
/// tenth.
fn forget_quietest(keys: &mut HashMap<String, Failures>, now: Instant) {
    keys.retain(|_, f| f.locked_until > now || f.in_flight > 0);
    if keys.len() < MAX_KEYS {
        return;
    }
    let mut by_age: Vec<(Instant, String)> =
        keys.iter().map(|(k, f)| (f.last, k.clone())).collect();
    by_age.sort();
    for (_, k) in by_age.into_iter().take(MAX_KEYS / 10) {
        keys.remove(&k);
    }
}

/// The shared guard of one node's sign-ins: the admin API's and the etcd endpoint's.
#[derive(Debug)]
pub struct LoginGuard {
    hashing: Arc<Semaphore>,
    pub accounts: Throttle,
    pub clients: Throttle,
    /// A hash of a random password, verified against for accounts that do not exist.
    decoy: String,
    /// How new hashes are made (the user store's scheme; the decoy is one of them too, so an
    /// unknown account costs what a known one does).
    scheme: password::Scheme,
}

/// Why a password operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("the server is busy checking other passwords; try again shortly")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// The password cannot be hashed by this scheme (bcrypt's 72 bytes): the caller's to fix.
    #[error("{0}")]
    Refused(String),
}

impl LoginGuard {
    /// Builds the guard hashing new passwords with `scheme`; computes the decoy hash
    /// (blocking, tens of milliseconds).
    pub fn new(scheme: password::Scheme) -> Result<LoginGuard, HashingError> {
        let decoy = password::hash_as(scheme, &password::generate())
            .map_err(|e| HashingError::Failed(e.to_string()))?;
        Ok(LoginGuard {
            hashing: Arc::new(Semaphore::new(HASHING_AT_ONCE)),
            accounts: Throttle::default(),
            clients: Throttle::default(),
            decoy,
            scheme,
        })
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, HashingError> {
        tokio::time::timeout(HASHING_WAIT, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| HashingError::Busy)?
            .map_err(|_| HashingError::Busy)
    }

    /// Runs CPU-heavy password work on a blocking thread, at most [`HASHING_AT_ONCE`] at once.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = self.permit().await?;
        let out = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashingError::Failed(e.to_string()))?;
        Ok(out)
    }

    /// Whether `candidate` matches `stored`; with `None` (no such account, or no password)
    /// the same work is done against the decoy and the answer is false.
    pub async fn verify(
        &self,
        candidate: String,
        stored: Option<String>,
    ) -> Result<bool, HashingError> {
        let (hash, real) = match stored.filter(|s| !s.is_empty()) {
            Some(s) => (s, true),
            None => (self.decoy.clone(), false),
        };
        let matched = self
            .run(move || password::verify(&candidate, &hash))
            .await?;
        Ok(matched && real)
    }

    /// A new hash of `pw` in this guard's scheme.
    pub async fn hash(&self, pw: String) -> Result<String, HashingError> {
        let scheme = self.scheme;
        self.run(move || password::hash_as(scheme, &pw))
            .await?
            .map_err(|e| match e {
                password::PasswordError::TooLong => HashingError::Refused(e.to_string()),
                other => HashingError::Failed(other.to_string()),
            })
    }

    /// Whether a stored hash that just verified should be replaced by a new [`Self::hash`].
    pub fn needs_upgrade(&self, stored: &str) -> bool {
        password::needs_upgrade_to(self.scheme, stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(t: &Throttle, key: &str) {
        t.begin(key).unwrap().failed();
    }

    #[tokio::test(start_paused = true)]
    async fn lockouts_start_after_the_free_failures_and_double() {
        let t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check("a"), Ok(()));
            fail(&t, "a");
        }
        assert_eq!(t.check("a"), Ok(()));
        fail(&t, "a");
        assert_eq!(t.check("a"), Err(Duration::from_secs(1)));
        assert!(t.begin("a").is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check("a"), Ok(()));
        fail(&t, "a");
        assert_eq!(t.check("a"), Err(Duration::from_secs(2)));
        // Other keys are untouched; success forgets.
        assert_eq!(t.check("b"), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        t.begin("a").unwrap().succeeded();
        assert_eq!(t.check("a"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_parallel_burst_gets_no_more_tries_than_a_sequence() {
        let t = Throttle::default();
        // A burst of 64 attempts at once: the free failures' worth get in, the rest wait.
        let admitted: Vec<Attempt<'_>> = (0..64).filter_map(|_| t.begin("a").ok()).collect();
        assert_eq!(admitted.len(), FREE_FAILURES as usize);
        for a in admitted {
            a.failed();
        }
        // The free failures are used: from here on one attempt at a time, and each failure
        // locks the key out.
        let sixth = t.begin("a").unwrap();
        assert!(
            t.begin("a").is_err(),
            "a second attempt waits for the first"
        );
        sixth.failed();
        assert!(t.begin("a").is_err(), "locked out");
        tokio::time::advance(Duration::from_secs(1)).await;
        let one = t.begin("a").unwrap();
        assert!(
            t.begin("a").is_err(),
            "a second attempt waits for the first"
        );
        drop(one); // Abandoned (an error elsewhere): the place is given back.
        assert!(t.begin("a").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn lockouts_are_capped_and_forgotten_after_quiet() {
        let t = Throttle::default();
        for _ in 0..(FREE_FAILURES + 40) {
            t.failed("a");
        }
        assert!(t.begin("a").is_err());
        assert_eq!(t.check("a"), Err(MAX_LOCKOUT));
        tokio::time::advance(MAX_LOCKOUT + Duration::from_secs(1)).await;
        assert_eq!(t.check("a"), Ok(()));
        // Quiet longer than the longest lockout: the count starts over.
        fail(&t, "a");
        assert_eq!(t.check("a"), Ok(()));
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies_but_costs_the_same() {
        let g = LoginGuard::new(password::Scheme::Argon2id).unwrap();
        let stored = password::hash("right horse").unwrap();
        assert!(g
            .verify("right horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!g.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!g.verify("anything".into(), None).await.unwrap());
        assert!(!g.verify(String::new(), Some(String::new())).await.unwrap());
    }
}
