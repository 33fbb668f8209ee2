//! The data plane's request path.

pub mod body;
pub mod compress;
pub mod decide;
pub mod errors;
pub mod failure;
pub mod h1;
pub mod handler;
pub mod headers;
pub mod record;
pub mod retry;
pub mod server;
pub mod threads;
pub mod tunnel;
