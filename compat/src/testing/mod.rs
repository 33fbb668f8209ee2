//! Real servers for tests, started on free loopback ports in temporary directories: Debian's
//! PostgreSQL and etcd (`scripts/test` installs both). Built for this crate's tests, and for
//! other crates' with the `testing` feature.

pub mod etcd;
pub mod postgres;
