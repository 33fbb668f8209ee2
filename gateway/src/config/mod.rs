//! The gateway's configuration: document types, where they come from, and the catalog that
//! applies them.

pub mod catalog;
pub mod check;
pub mod protection;
pub mod source;
pub mod types;
