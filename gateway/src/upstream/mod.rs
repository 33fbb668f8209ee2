//! Upstream clusters: nodes, load balancing, connection pools.

pub mod balancer;
pub mod client;
pub mod cluster;
pub mod guard;
pub mod pool;
pub mod raw;
