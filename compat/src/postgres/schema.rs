//! The original server's schema (contract §5.1), created the way it creates it: one idempotent
//! batch at every start, so that an empty database gets every table and an existing one is
//! left as it is. Nothing here adds a column or a table the original does not have; what this
//! store needs beyond them it derives from these tables.

/// Run at every connect, in one transaction.
pub const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS namespaces (
    name       TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
INSERT INTO namespaces (name) VALUES ('default') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS domains (
    namespace        TEXT NOT NULL DEFAULT 'default',
    name             TEXT NOT NULL,
    config           JSONB NOT NULL,
    resource_version BIGINT NOT NULL DEFAULT 1,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, name)
);

CREATE TABLE IF NOT EXISTS clusters (
    namespace        TEXT NOT NULL DEFAULT 'default',
    name             TEXT NOT NULL,
    config           JSONB NOT NULL,
    resource_version BIGINT NOT NULL DEFAULT 1,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, name)
);

CREATE TABLE IF NOT EXISTS config_history (
    id         BIGSERIAL PRIMARY KEY,
    namespace  TEXT NOT NULL DEFAULT 'default',
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    action     TEXT NOT NULL,
    operator   TEXT NOT NULL DEFAULT '',
    config     JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_history_ns_kind_name
    ON config_history (namespace, kind, name, version DESC);

CREATE TABLE IF NOT EXISTS change_log (
    revision   BIGSERIAL PRIMARY KEY,
    namespace  TEXT NOT NULL DEFAULT 'default',
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    action     TEXT NOT NULL,
    operator   TEXT NOT NULL DEFAULT '',
    config     JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_changelog_ns_revision ON change_log (namespace, revision);

CREATE TABLE IF NOT EXISTS gateway_instances (
    namespace         TEXT NOT NULL DEFAULT 'default',
    id                TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT '',
    started_at        TEXT NOT NULL DEFAULT '',
    registered_at     TEXT NOT NULL DEFAULT '',
    last_keepalive_at TEXT NOT NULL DEFAULT '',
    config_revision   BIGINT NOT NULL DEFAULT 0,
    last_seen_at      TEXT NOT NULL DEFAULT '',
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, id)
) WITH (fillfactor = 70);

CREATE TABLE IF NOT EXISTS controller_status (
    namespace         TEXT NOT NULL DEFAULT 'default',
    id                TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT '',
    is_leader         BOOLEAN NOT NULL DEFAULT FALSE,
    started_at        TEXT NOT NULL DEFAULT '',
    last_heartbeat_at TEXT NOT NULL DEFAULT '',
    config_revision   BIGINT NOT NULL DEFAULT 0,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, id)
) WITH (fillfactor = 70);

CREATE TABLE IF NOT EXISTS api_credentials (
    id          BIGSERIAL PRIMARY KEY,
    namespace   TEXT NOT NULL DEFAULT 'default',
    access_key  TEXT NOT NULL UNIQUE,
    secret_key  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scopes      TEXT[] NOT NULL DEFAULT '{}',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS users (
    sub       TEXT PRIMARY KEY,
    username  TEXT NOT NULL DEFAULT '',
    email     TEXT NOT NULL DEFAULT '',
    name      TEXT NOT NULL DEFAULT '',
    is_admin  BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN IF NOT EXISTS must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE IF NOT EXISTS namespace_members (
    namespace  TEXT NOT NULL,
    user_sub   TEXT NOT NULL REFERENCES users(sub) ON DELETE CASCADE,
    role       TEXT NOT NULL DEFAULT 'viewer',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, user_sub)
);
CREATE INDEX IF NOT EXISTS idx_ns_members_user ON namespace_members (user_sub);

CREATE TABLE IF NOT EXISTS group_bindings (
    id         BIGSERIAL PRIMARY KEY,
    namespace  TEXT NOT NULL,
    group_name TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT 'viewer',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (namespace, group_name)
);
CREATE INDEX IF NOT EXISTS idx_group_bindings_ns ON group_bindings (namespace);

CREATE TABLE IF NOT EXISTS grafana_dashboards (
    id        BIGSERIAL PRIMARY KEY,
    namespace TEXT NOT NULL DEFAULT 'default',
    name      TEXT NOT NULL,
    url       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS jwt_signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_jwt_keys_status ON jwt_signing_keys (status);
"#;
