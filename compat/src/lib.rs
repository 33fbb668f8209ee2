//! hermes-compat: what lets existing Hermes deployments keep working against Hermes nodes.
//!
//! Today: etcd's v3 API ([`etcd`], gRPC and the JSON gateway) over the replicated store, shaped
//! exactly as etcd's own (int64 as strings, base64 bytes, zero fields omitted, etcd's errors);
//! the control store on the original server's PostgreSQL ([`postgres`]); the controller role
//! that copies a control store's configuration into an external etcd ([`controller`]); and
//! the gateway role's side of an external etcd ([`external`]).

pub mod controller;
pub mod etcd;
pub mod external;
pub mod hmac;
pub mod postgres;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
