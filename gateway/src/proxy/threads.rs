//! The proxy's threads: one tokio current-thread runtime per thread, each accepting on its own
//! socket of one `SO_REUSEPORT` group on `--proxy-listen`, with its own idle upstream
//! connections. A connection is accepted, served and proxied on one thread from start to end:
//! no task moves between threads, no socket is polled by another thread's reactor, and no
//! wake-up crosses cores, which is what a work-stealing runtime shared with the control plane
//! cost (BENCHMARKS.md: 0.96× nginx's requests/s with a wider p99 on two cores, against at
//! least nginx's with a thread per core). The kernel spreads new connections over the group's
//! sockets by a hash of their addresses, as nginx's `reuseport` does.
//!
//! The control plane (store, raft, admin API, etcd endpoint) and the gateway's background work
//! (configuration, probes, discovery, the idle sweep) stay on the node's main runtime; they
//! share the route table, clusters, limits and metrics with these threads through atomics.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Semaphore};

use crate::Gateway;

/// Backlog of each listening socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

thread_local! {
    /// Which proxy thread this is, from 1; 0 on every other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// How many shards per-thread state has: one per proxy thread of this process and one for
/// every other thread. Process-wide because pools are created deep in configuration updates;
/// only ever raised.
static SHARDS: AtomicUsize = AtomicUsize::new(1);

/// The shard of the calling thread: its proxy thread's own, or 0 off the proxy threads.
pub(crate) fn shard() -> usize {
    INDEX.get()
}

/// Makes the calling thread count as proxy thread `index` (from 1), in tests of sharded state.
#[cfg(test)]
pub(crate) fn enter_for_test(index: usize) {
    INDEX.set(index);
}

/// How many shards per-thread state should have.
pub(crate) fn shards() -> usize {
    SHARDS.load(Ordering::Relaxed)
}

/// The number of proxy threads `configured` asks for: 0 means one per CPU this process may
/// run on (cgroup quotas and affinity included).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds `n` listening sockets to `addr`, as one `SO_REUSEPORT` group when `n > 1`.
///
/// The address is first bound once without the option, and that socket closed: a port held
/// by any other program, or by another node of ours (which joined a group of its own), is
/// refused with the bind error here, instead of this node silently sharing its traffic. The
/// kernel lets only sockets of the same user join a group. With port 0 the group takes the
/// port the first bind was given.
///
/// Binding also sizes per-thread state from here on, so that pools of the clusters loaded
/// before the threads start have a shard for each.
pub fn bind(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    SHARDS.fetch_max(n.max(1) + 1, Ordering::Relaxed);
    let probe = std::net::TcpListener::bind(addr)?;
    let addr = probe.local_addr()?;
    if n <= 1 {
        probe.set_nonblocking(true)?;
        return Ok(vec![probe]);
    }
    drop(probe);
    (0..n)
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            Ok(socket.into())
        })
        .collect()
}

/// The running proxy threads. [`ProxyThreads::wait`] returns when all have stopped.
pub struct ProxyThreads {
    handles: Vec<tokio::runtime::Handle>,
    done: Vec<oneshot::Receiver<io::Result<()>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ProxyThreads {
    /// Starts a thread per listener of [`bind`] (which sized the per-thread state), each
    /// serving its listener with [`super::server::serve`] until `shutdown`, then draining for
    /// `grace`. `max_connections` bounds the open connections of all threads together.
    pub async fn start(
        listeners: Vec<std::net::TcpListener>,
        gw: Arc<Gateway>,
        max_connections: usize,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> io::Result<ProxyThreads> {
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut started = ProxyThreads {
            handles: Vec::new(),
            done: Vec::new(),
            threads: Vec::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let (ready_tx, ready_rx) = oneshot::channel();
            let (done_tx, done_rx) = oneshot::channel();
            let (gw, slots, shutdown) = (gw.clone(), slots.clone(), shutdown.clone());
            let thread = std::thread::Builder::new()
                .name(format!("hermes-proxy-{i}"))
                .spawn(move || {
                    INDEX.set(i + 1);
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(runtime.handle().clone()));
                    let result = runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        super::server::serve(listener, gw, slots, shutdown, grace).await
                    });
                    // Ends whatever the grace period left running before saying so.
                    drop(runtime);
                    let _ = done_tx.send(result);
                })?;
            started.threads.push(thread);
            let handle = ready_rx
                .await
                .map_err(|_| io::Error::other("a proxy thread ended while starting"))??;
            started.handles.push(handle);
            started.done.push(done_rx);
        }
        Ok(started)
    }

    /// The threads' runtimes, for their metrics.
    pub fn handles(&self) -> &[tokio::runtime::Handle] {
        &self.handles
    }

    /// Waits until every thread has stopped (after shutdown and its grace period). A thread
    /// ends before shutdown only when it fails: its error is returned at once, so that the
    /// node stops (a node serving on fewer threads than it says would hide the failure); the
    /// other threads then end with the node's shutdown signal.
    pub async fn wait(self) -> io::Result<()> {
        let mut done = tokio::task::JoinSet::new();
        for rx in self.done {
            done.spawn(async move {
                rx.await
                    .unwrap_or_else(|_| Err(io::Error::other("a proxy thread panicked")))
            });
        }
        while let Some(joined) = done.join_next().await {
            joined.unwrap_or_else(|e| Err(io::Error::other(e.to_string())))?;
        }
        let threads = self.threads;
        // Each thread has sent its result and has only its exit left.
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_refuses_a_port_in_use() {
        let group = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
        // Another node on the same port, with a group of its own, is refused.
        let err = bind(group[0].local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = bind(group[0].local_addr().unwrap(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn zero_means_one_per_cpu() {
        assert_eq!(count(3), 3);
        assert!(count(0) >= 1);
    }
}
