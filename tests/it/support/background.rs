//! A test server on a runtime thread of its own (for stand-ins: upstreams, Consul): it
//! accepts on a free loopback port and hands each connection to the caller's function, until
//! dropped.

use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::harness::bound_free_port;

pub struct Background {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts serving; `on_connection` runs inside the server's runtime for each accepted
    /// connection (and spawns what serves it).
    pub fn start(on_connection: impl Fn(TcpStream) + Send + 'static) -> Background {
        let listener = bound_free_port();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            if let Ok((stream, _)) = accepted {
                                on_connection(stream);
                            }
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            });
        });
        ready_rx.recv().unwrap();
        Background {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
