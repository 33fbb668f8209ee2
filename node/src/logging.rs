//! Logging: the node's own lines on stderr, filtered by `RUST_LOG` (default: INFO for Hermes,
//! WARN/ERROR for the libraries whose INFO is per-request or per-vote noise), as text or as one
//! JSON object per line (`--log-format`; by default text for a person at a terminal, JSON
//! otherwise, so that a log collector that merges stderr with the access log gets one format);
//! and the access log, one JSON object per request on stdout, written by the gateway's own
//! writer thread ([`hermes_gateway::access_log`]) so that neither formatting through `tracing`
//! nor a slow reader costs the proxy (lines are dropped instead, as the original gateway did).

use std::io::IsTerminal;

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::prelude::*;

/// openraft logs every client that went away mid-write (WARN) and every unreachable peer
/// (ERROR, once per retry); Hermes reports those conditions itself, in metrics and `/readyz`.
pub const DEFAULT_FILTER: &str = "info,openraft=error,sled=warn,hyper=warn,h2=warn";

/// How the node's own log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(v: &str) -> Result<LogFormat, String> {
        match v.trim() {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected auto, text or json".into()),
        }
    }
}

/// Keeps the access-log writer thread alive; drop it last to flush buffered lines.
pub struct LogGuard {
    _access: Option<hermes_gateway::access_log::Flusher>,
}

pub fn init(format: LogFormat, access_log: bool, proxy_threads: usize) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let (text, structured) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter);
        (None, Some(layer))
    } else {
        // Colour only for a person at a terminal: log files and journald get plain text.
        let ansi = terminal && std::env::var_os("NO_COLOR").is_none();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter);
        (Some(layer), None)
    };
    let guard = if access_log {
        // A buffer per proxy thread, and one for the rest.
        let shards = hermes_gateway::proxy::threads::count(proxy_threads) + 1;
        hermes_gateway::access_log::install(std::io::stdout(), shards)
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(structured)
        .try_init();
    LogGuard { _access: guard }
}
