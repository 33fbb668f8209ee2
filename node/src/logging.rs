//! Logging setup: human-readable lines on stderr, filtered by `RUST_LOG` (default: INFO for
//! Hermes, WARN for the libraries whose INFO is per-request or per-vote noise).

use tracing_subscriber::EnvFilter;

pub const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn,hyper=warn,h2=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
