//! hermes-compat: what lets existing Hermes deployments keep working against Hermes nodes.
//!
//! Today: the etcd v3 JSON gateway ([`etcd`]) over the replicated store, shaped exactly as
//! etcd's own gateway (int64 as strings, base64 bytes, zero fields omitted, etcd's error bodies).

pub mod etcd;
pub mod hmac;
pub mod postgres;
