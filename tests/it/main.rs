//! Process-level tests: real `hermes` nodes (and Debian's etcd where behaviour is compared),
//! on loopback, on free ports, in temp dirs.

// This whole binary is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Processes are observed in wall time (tokio's clock cannot be paused for them).
#![allow(clippy::disallowed_types)]

mod support;
// Shorter paths for what nearly every test uses.
use support::{api_client, harness, netns, upstream};

mod authorization;
mod backup;
mod bad_input;
mod breakers;
mod compat_mode;
mod compose;
mod control_api;
mod control_bad_input;
mod control_security;
mod data_dir;
mod discovery;
mod durability;
mod etcd_client;
mod etcd_compat;
mod etcd_config_writes;
mod etcd_grpc_bad_input;
mod etcdctl_diff;
mod failover;
mod gateway;
mod gateway_fast_path;
mod gateway_hygiene;
mod gateway_streams;
mod gateway_tls;
mod health_checks;
mod instances;
mod lease;
mod lifecycle;
mod listeners;
mod log_damage;
mod membership;

mod oidc;
mod quota;
mod rate_limit;
mod read_your_writes;
mod readiness;
mod retries;
mod snapshot;
mod ui;
mod watch;
mod watch_limits;
