//! Traffic protection: what keeps a route or an upstream from being overrun. Rate limits
//! ([`rate_limit`], [`limiters`]) and the choice of a healthy node whose breaker is closed
//! ([`breaker`], [`health`]) are decided in the step shared by both proxy paths
//! ([`crate::proxy::decide`]); what nodes then do with requests reaches breakers and passive
//! health through [`outcome`], from the shared failure model.

pub mod breaker;
pub mod health;
pub mod limiters;
pub mod outcome;
pub mod prober;
pub mod rate_limit;
