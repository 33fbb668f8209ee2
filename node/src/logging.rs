//! Logging setup: human-readable lines on stderr, filtered by `RUST_LOG` (default: INFO for
//! Hermes, WARN for the libraries whose INFO is per-request or per-vote noise).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// openraft logs every client that went away mid-write (WARN) and every unreachable peer
/// (ERROR, once per retry); Hermes reports those conditions itself, in metrics and `/readyz`.
pub const DEFAULT_FILTER: &str = "info,openraft=error,sled=warn,hyper=warn,h2=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colour only for a person at a terminal: log files and journald get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
