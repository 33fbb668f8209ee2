//! One store catch-up shared by the requests that need one before they have proved anything.
//!
//! A request signed with an access key this node does not know may come from a credential
//! created through another node a moment ago: it must catch up before refusing. Such a
//! request is anonymous until its signature checks out, so each must not drive a read barrier
//! of its own (a flood of made-up keys would become a flood of leader round trips). Callers
//! therefore share rounds: a caller joins the round that has not started yet, or starts one
//! after the round in progress. A round that started before a caller arrived never serves it
//! (that round may predate the write the caller depends on), and at most one round runs at a
//! time, so barriers run no faster than one after another however many callers wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use hermes_control::store::{ControlError, ControlStore};

type Round = Shared<BoxFuture<'static, Result<(), ControlError>>>;

/// The catch-up itself (the control store's `catch_up`).
pub type CatchUp = Arc<dyn Fn() -> BoxFuture<'static, Result<(), ControlError>> + Send + Sync>;

pub struct SharedCatchUp {
    catch_up: CatchUp,
    /// The newest round, and whether it has started.
    newest: Mutex<Option<(Round, Arc<AtomicBool>)>>,
}

impl SharedCatchUp {
    pub fn new(catch_up: CatchUp) -> SharedCatchUp {
        SharedCatchUp {
            catch_up,
            newest: Mutex::new(None),
        }
    }

    /// Shares `store`'s [`ControlStore::catch_up`].
    pub fn for_store(store: Arc<dyn ControlStore>) -> SharedCatchUp {
        SharedCatchUp::new(Arc::new(move || {
            let store = store.clone();
            async move { store.catch_up().await }.boxed()
        }))
    }

    /// Returns once a catch-up that started after this call has finished.
    pub async fn run(&self) -> Result<(), ControlError> {
        let round = {
            // Poisoning means a panic while holding it; the slot stays usable.
            let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
            match &*newest {
                Some((round, started)) if !started.load(Ordering::SeqCst) => round.clone(),
                _ => {
                    let previous = newest.as_ref().map(|(round, _)| round.clone());
                    let started = Arc::new(AtomicBool::new(false));
                    let flag = started.clone();
                    let catch_up = self.catch_up.clone();
                    // Driven by whichever of its callers polls it; one that leaves does not
                    // stall the others, and the next round drives the one before it.
                    let round = async move {
                        if let Some(previous) = previous {
                            let _ = previous.await;
                        }
                        flag.store(true, Ordering::SeqCst);
                        catch_up().await
                    }
                    .boxed()
                    .shared();
                    *newest = Some((round.clone(), started));
                    round
                }
            }
        };
        round.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// A catch-up that counts its rounds and finishes only when the test releases it.
    fn gated() -> (SharedCatchUp, Arc<AtomicUsize>, Arc<Semaphore>) {
        let rounds = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (r, g) = (rounds.clone(), gate.clone());
        let shared = SharedCatchUp::new(Arc::new(move || {
            let (r, g) = (r.clone(), g.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                g.acquire().await.map(|p| p.forget()).ok();
                Ok(())
            }
            .boxed()
        }));
        (shared, rounds, gate)
    }

    /// A caller's outcome; a caller still waiting after seconds is a failure, not a hang.
    async fn outcome(
        caller: tokio::task::JoinHandle<Result<(), ControlError>>,
    ) -> Result<(), ControlError> {
        tokio::time::timeout(std::time::Duration::from_secs(10), caller)
            .await
            .expect("a caller never finished")
            .expect("a caller panicked")
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never: {what}");
    }

    #[tokio::test]
    async fn callers_share_rounds_and_never_one_that_started_before_them() {
        let (shared, rounds, gate) = gated();
        let shared = Arc::new(shared);
        let call = || {
            let s = shared.clone();
            tokio::spawn(async move { s.run().await })
        };
        let first = call();
        until("the first round starts", || {
            rounds.load(Ordering::SeqCst) == 1
        })
        .await;
        // Arrived while the first round runs: they wait for one more, together.
        let later: Vec<_> = (0..50).map(|_| call()).collect();
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "one round at a time");
        gate.add_permits(1);
        outcome(first).await.unwrap();
        until("the second round starts", || {
            rounds.load(Ordering::SeqCst) == 2
        })
        .await;
        assert!(
            later.iter().all(|c| !c.is_finished()),
            "served by a round that started before they arrived"
        );
        gate.add_permits(1);
        for c in later {
            outcome(c).await.unwrap();
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2, "fifty callers, one round");
    }

    #[tokio::test]
    async fn a_caller_that_leaves_does_not_stall_the_others() {
        let (shared, rounds, gate) = gated();
        let shared = Arc::new(shared);
        let leaver = {
            let s = shared.clone();
            tokio::spawn(async move { s.run().await })
        };
        until("the round starts", || rounds.load(Ordering::SeqCst) == 1).await;
        let stayer = {
            let s = shared.clone();
            tokio::spawn(async move { s.run().await })
        };
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        leaver.abort();
        gate.add_permits(2);
        outcome(stayer).await.unwrap();
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_error_reaches_every_caller_of_its_round() {
        let shared = SharedCatchUp::new(Arc::new(|| {
            async { Err(ControlError::Unavailable("no leader".into())) }.boxed()
        }));
        let e = shared.run().await.unwrap_err();
        assert!(matches!(e, ControlError::Unavailable(_)), "{e}");
    }
}
