//! hermes-control: the control plane's core, free of HTTP. It owns the records the admin API
//! manages (resources with history, change log, credentials, users, members, group bindings,
//! signing keys, status, dashboards), their validation, the RBAC model, the built-in users'
//! passwords and session tokens, and the [`store::ControlStore`] trait with its implementation
//! on the replicated store. The REST API in `hermes-node` is a thin layer over it; a PostgreSQL
//! implementation of the trait (compat) can replace the replicated one.

pub mod auth;
pub mod model;
pub mod no_store;
pub mod redact;
pub mod replicated;
pub mod scopes;
pub mod seal;
pub mod store;
pub mod validate;
