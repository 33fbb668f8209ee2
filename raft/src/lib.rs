//! hermes-raft: replication of the Hermes store with openraft.
//!
//! Owns the peer protocol (raft RPCs and forwarding over HTTP, authenticated with the cluster
//! secret), bootstrap, membership changes and leadership transfer, writes accepted on any member, linearizable reads
//! by read-index, lease expiry on the leader, automatic compaction, and the raft metrics.
//! It knows nothing of the gateway or the admin API.

pub mod background;
pub mod batcher;
pub mod bounded_server;
pub mod config;
pub mod error;
pub mod lease_keeper;
pub mod leases;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer_auth;
pub mod peer_client;
pub mod peer_dispatch;
pub mod peer_proto;
pub mod peer_server;
pub mod proxied;
pub mod replay;
pub mod transfer;
pub mod transport;

pub use config::RaftConfig;
pub use error::{MembershipError, ReadError, TransferError, WriteError};
pub use node::{Header, RaftNode};
