//! hermes-node: the `hermes` binary's library. It wires the store, raft, the etcd endpoint and
//! the admin API into a running node ([`run::run`]), and holds the operator CLI. It owns
//! configuration, listeners, shutdown and the admin HTTP surface; the pieces themselves live
//! in their crates.

pub mod admin_client;
pub mod cli;
pub mod config;
pub mod control_listeners;
pub mod data_dir;
pub mod external;
pub mod fd_budget;
pub mod join;
pub mod logging;
pub mod registrar;
pub mod run;
pub mod runtime_metrics;
pub mod version;

pub use config::NodeConfig;
pub use run::{run, RunError};
