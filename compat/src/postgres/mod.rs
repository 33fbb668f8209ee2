//! The control plane on the original server's PostgreSQL database (contract §5): the tables
//! the Go server created and writes, read and written with the same revision, version and
//! optimistic-concurrency rules, so that a Hermes node and original servers can serve one
//! database side by side, and a node can replace a server without a migration.
//!
//! `connect` opens a pool that reconnects by itself and creates the schema as the original
//! creates it; `resources` holds namespaces, domains, clusters, history and the change log,
//! `records` the rest, and `store` puts them behind
//! [`hermes_control::store::ControlStore`].

mod error;
mod listen;
mod records;
mod resources;
mod schema;
mod store;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::NoTls;

pub use error::PgError;
/// The original server's schema, as it creates it (idempotent): for tools and tests that
/// prepare a database the way the original does.
pub use schema::DDL as ORIGINAL_SCHEMA;

/// Connections the pool opens at most (the original: 20).
const POOL_SIZE: usize = 20;
/// How long a request waits for a connection, and a new connection for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a statement may run, and a lock wait (an import holds its namespace) may last,
/// unless the connection string sets its own `options`.
const SESSION_OPTIONS: &str = "-c statement_timeout=30000 -c lock_timeout=10000";
/// How often a revision wait looks at the change log for writes that sent no notification
/// (original servers'; this node's and other nodes' writes wake it at once).
const FOREIGN_WRITE_POLL: Duration = Duration::from_millis(500);
/// A key for `pg_advisory_xact_lock`, held while the schema is created, so that servers
/// starting together do not race on `CREATE TABLE IF NOT EXISTS` (which is not atomic).
const SCHEMA_LOCK: i64 = 0x4845_524d_4553; // "HERMES"

/// The control store on PostgreSQL. Cheap to share behind an `Arc`.
pub struct PgControl {
    pool: Pool,
    /// `host:port` (never the password), for messages.
    server: String,
    /// Woken by every change-log write made through this store, and by other servers' (see
    /// [`listen`]).
    changed: Arc<Notify>,
    /// How often a revision wait looks for writes that sent no notification (original
    /// servers'); `FOREIGN_WRITE_POLL`.
    foreign_poll: Duration,
    /// The `LISTEN` task; owned here, aborted on drop.
    listener: tokio::task::JoinHandle<()>,
    /// History versions kept per resource (`--resource-history`; the original kept 50).
    history_retention: i64,
    /// First-time setup was seen closed (it never reopens).
    setup_closed: std::sync::atomic::AtomicBool,
}

impl Drop for PgControl {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PgControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgControl")
            .field("server", &self.server)
            .finish()
    }
}

/// `host:port` of a parsed DSN, for messages: never the user or the password.
fn server_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Checks that `dsn` is a PostgreSQL connection string, without connecting, and names its
/// server (`host:port`); neither the answer nor the error repeats the string (it may hold a
/// password).
pub fn check_dsn(dsn: &str) -> Result<String, String> {
    dsn.parse::<tokio_postgres::Config>()
        .map(|c| server_of(&c))
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))
}

impl PgControl {
    /// Connects to the database `dsn` names (`postgres://user:password@host:port/db`), creates
    /// the original schema where it is missing and seeds the `default` namespace.
    /// `history_retention`: versions kept per resource.
    pub async fn connect(dsn: &str, history_retention: usize) -> Result<PgControl, PgError> {
        let mut config: tokio_postgres::Config =
            dsn.parse().map_err(|e| PgError::Dsn(format!("{e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_options().is_none() {
            config.options(SESSION_OPTIONS);
        }
        let server = server_of(&config);
        let changed = Arc::new(Notify::new());
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection the server closed (a restart) is found and replaced before use.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Dsn(e.to_string()))?;
        let listener = tokio::spawn(listen::listen(config, server.clone(), changed.clone()));
        let store = PgControl {
            pool,
            server,
            changed,
            foreign_poll: FOREIGN_WRITE_POLL,
            listener,
            history_retention: i64::try_from(history_retention.max(1)).unwrap_or(i64::MAX),
            setup_closed: std::sync::atomic::AtomicBool::new(false),
        };
        store.create_schema().await?;
        Ok(store)
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn create_schema(&self) -> Result<(), PgError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        tx.batch_execute(schema::DDL)
            .await
            .map_err(|e| self.error(e))?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, PgError> {
        self.pool
            .get()
            .await
            .map_err(|e| PgError::from_pool(&self.server, e))
    }

    fn error(&self, e: tokio_postgres::Error) -> PgError {
        PgError::from_db(&self.server, e)
    }
}

#[cfg(test)]
mod records_tests;
#[cfg(test)]
mod tests;
