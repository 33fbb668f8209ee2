//! Matching requests to routes: hosts, URI tree, header matchers, the compiled table.

pub mod host;
pub mod matchers;
pub mod radix;
pub mod table;
