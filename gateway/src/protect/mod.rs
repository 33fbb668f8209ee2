//! Traffic protection: what keeps a route or an upstream from being overrun. Rate limits
//! ([`rate_limit`], [`limiters`]) are decided in the route step shared by both proxy paths
//! ([`crate::proxy::decide`]).

pub mod limiters;
pub mod rate_limit;
