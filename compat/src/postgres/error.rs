//! What can go wrong talking to PostgreSQL, and how it reaches API clients. A message names
//! the server (`host:port`), never the DSN's user or password.

use hermes_control::store::ControlError;
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `--control-store` is not a PostgreSQL connection string.
    #[error("the PostgreSQL connection string is not valid: {0}")]
    Dsn(String),
    /// The server cannot be reached, or the connection broke.
    #[error("the PostgreSQL server at {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    /// Two writers raced (a unique key, a serialization failure): safe to retry.
    #[error("a concurrent write to PostgreSQL at {server} won: {reason}")]
    Race { server: String, reason: String },
    /// The server refused a statement.
    #[error("PostgreSQL at {server} refused a statement: {reason}")]
    Refused { server: String, reason: String },
    /// A stored value is not what the schema promises (JSONB that is not a document).
    #[error("PostgreSQL at {server} holds {what}")]
    Corrupt { server: String, what: String },
}

impl PgError {
    pub(super) fn from_db(server: &str, e: tokio_postgres::Error) -> PgError {
        let server = server.to_string();
        match e.as_db_error() {
            Some(db)
                if *db.code() == SqlState::UNIQUE_VIOLATION
                    || *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
                    || *db.code() == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                PgError::Race {
                    server,
                    reason: db.message().to_string(),
                }
            }
            Some(db)
                if db.code().code().starts_with("08") || db.code().code().starts_with("57") =>
            {
                // Connection exceptions and operator intervention (the server shutting down).
                PgError::Unreachable {
                    server,
                    reason: db.message().to_string(),
                }
            }
            Some(db) => PgError::Refused {
                server,
                reason: db.message().to_string(),
            },
            // A closed connection, a socket error or a connect timeout (which has no source);
            // anything else (a value that does not convert) is ours, not the network's.
            None if e.is_closed()
                || std::error::Error::source(&e).is_none_or(|s| s.is::<std::io::Error>()) =>
            {
                PgError::Unreachable {
                    server,
                    reason: e.to_string(),
                }
            }
            None => PgError::Refused {
                server,
                reason: e.to_string(),
            },
        }
    }

    pub(super) fn from_pool(server: &str, e: deadpool_postgres::PoolError) -> PgError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::from_db(server, e),
            other => PgError::Unreachable {
                server: server.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

impl From<PgError> for ControlError {
    fn from(e: PgError) -> ControlError {
        match &e {
            PgError::Unreachable { .. } => ControlError::Unavailable(e.to_string()),
            PgError::Race { .. } => ControlError::Conflict(e.to_string()),
            PgError::Dsn(_) | PgError::Refused { .. } | PgError::Corrupt { .. } => {
                ControlError::Internal(e.to_string())
            }
        }
    }
}
