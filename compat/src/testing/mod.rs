//! Real servers for tests, started on free loopback ports in temporary directories: Debian's
//! PostgreSQL and etcd (`scripts/test` installs both). Built for this crate's tests, and for
//! other crates' with the `testing` feature.

pub mod etcd;
pub mod postgres;

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}
