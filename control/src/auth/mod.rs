//! Built-in authentication: password hashes and HS256 session tokens.

pub mod login_guard;
pub mod password;
pub mod token;
