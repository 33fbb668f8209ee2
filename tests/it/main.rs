//! Process-level tests: real `hermes` nodes (and Debian's etcd where behaviour is compared),
//! on loopback, on free ports, in temp dirs.

mod harness;

mod failover;
