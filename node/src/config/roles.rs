//! What a node does and where it keeps things (compat mode): its roles (`server`,
//! `controller`, `gateway`), the control store (users, credentials, history, audit and the
//! resources: the embedded raft store, or the original server's PostgreSQL) and the
//! configuration store (where gateways read domains and clusters: the raft store, or an
//! external etcd). The raft store runs only where one of them is on it.

use std::time::Duration;

use super::{invalid, ConfigError, Secret, Sources};
use super::{
    CONFIG_STORE, CONFIG_STORE_PASSWORD_FILE, CONFIG_STORE_USER, CONTROLLER_LEASE_TTL_SECS,
    CONTROLLER_RECONCILE_SECS, CONTROL_STORE, ROLES,
};

/// Which parts of Hermes this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The control-plane REST API and the web UI.
    pub server: bool,
    /// Copies the control store's configuration into the configuration store.
    pub controller: bool,
    /// The proxy.
    pub gateway: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        server: true,
        controller: true,
        gateway: true,
    };
}

/// Where the control plane's records live.
#[derive(Clone, PartialEq, Eq)]
pub enum ControlStoreKind {
    Raft,
    /// A PostgreSQL connection string (it may hold a password: never printed).
    Postgres(Secret),
}

impl std::fmt::Debug for ControlStoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlStoreKind::Raft => f.write_str("Raft"),
            ControlStoreKind::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// Where gateways read their configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigStoreKind {
    Raft,
    Etcd {
        /// `http://host:port` of each member.
        endpoints: Vec<String>,
        /// User and password, when the etcd has authentication on.
        auth: Option<(String, Secret)>,
    },
}

/// The controller role's timing (the original's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerSettings {
    pub reconcile_every: Duration,
    pub lease_ttl: Duration,
}

/// Roles and stores, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub roles: Roles,
    pub control_store: ControlStoreKind,
    pub config_store: ConfigStoreKind,
    pub controller: ControllerSettings,
}

impl Topology {
    /// What the node runs and where its stores are, for `hermes node --dry-run`: never a
    /// password.
    pub fn summary(&self) -> serde_json::Value {
        let roles: Vec<&str> = [
            (self.roles.server, "server"),
            (self.roles.controller, "controller"),
            (self.roles.gateway, "gateway"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        let control = match &self.control_store {
            ControlStoreKind::Raft => serde_json::json!("raft"),
            ControlStoreKind::Postgres(dsn) => serde_json::json!({
                "postgres": hermes_compat::postgres::check_dsn(&String::from_utf8_lossy(&dsn.0))
                    .unwrap_or_default(),
            }),
        };
        let config = match &self.config_store {
            ConfigStoreKind::Raft => serde_json::json!("raft"),
            ConfigStoreKind::Etcd { endpoints, auth } => serde_json::json!({
                "etcd": endpoints,
                "user": auth.as_ref().map(|(u, _)| u),
            }),
        };
        serde_json::json!({
            "roles": roles,
            "control_store": control,
            "config_store": config,
            "raft": self.runs_raft(),
            "controller": self.runs_controller(),
        })
    }

    /// Whether the control store is in use (the API or the controller reads it).
    pub fn uses_control_store(&self) -> bool {
        self.roles.server || self.roles.controller
    }

    /// Whether the configuration store is in use (the controller writes it, gateways read it).
    pub fn uses_config_store(&self) -> bool {
        self.roles.controller || self.roles.gateway
    }

    /// Whether this node runs the embedded raft store.
    pub fn runs_raft(&self) -> bool {
        (self.uses_control_store() && self.control_store == ControlStoreKind::Raft)
            || (self.uses_config_store() && self.config_store == ConfigStoreKind::Raft)
    }

    /// Whether the controller copies anything: with both stores on raft the API writes the
    /// configuration keys itself.
    pub fn runs_controller(&self) -> bool {
        self.roles.controller
            && !(self.control_store == ControlStoreKind::Raft
                && self.config_store == ConfigStoreKind::Raft)
    }
}

fn parse_roles(v: &str) -> Result<Roles, String> {
    let mut roles = Roles {
        server: false,
        controller: false,
        gateway: false,
    };
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "server" => roles.server = true,
            "controller" => roles.controller = true,
            "gateway" => roles.gateway = true,
            "all" => roles = Roles::ALL,
            other => {
                return Err(format!(
                    "unknown role {other:?}: expected a comma-separated list of server, \
                     controller and gateway"
                ))
            }
        }
    }
    if roles
        == (Roles {
            server: false,
            controller: false,
            gateway: false,
        })
    {
        return Err("expected at least one of server, controller and gateway".into());
    }
    Ok(roles)
}

fn parse_control_store(v: &str) -> Result<ControlStoreKind, String> {
    if v == "raft" {
        return Ok(ControlStoreKind::Raft);
    }
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        hermes_compat::postgres::check_dsn(v)?;
        return Ok(ControlStoreKind::Postgres(Secret(v.as_bytes().to_vec())));
    }
    Err("expected raft or a postgres://user:password@host:port/database URL".into())
}

fn parse_config_store(v: &str) -> Result<Vec<String>, String> {
    if v == "raft" {
        return Ok(Vec::new());
    }
    let Some(list) = v.strip_prefix("etcd://") else {
        return Err("expected raft or etcd://host:port[,host:port…]".into());
    };
    let mut endpoints = Vec::new();
    for member in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let ok = member.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!("{member:?} is not host:port"));
        }
        endpoints.push(format!("http://{member}"));
    }
    if endpoints.is_empty() {
        return Err("etcd:// needs at least one host:port".into());
    }
    Ok(endpoints)
}

fn parse_seconds(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (1..=86_400).contains(n))
        .map(Duration::from_secs)
        .ok_or_else(|| "expected seconds from 1 to 86400".to_string())
}

impl Sources<'_> {
    pub(super) fn topology(&self) -> Result<Topology, ConfigError> {
        let roles = self.get(ROLES, "server,controller,gateway", parse_roles)?;
        let control_store = self.get(CONTROL_STORE, "raft", parse_control_store)?;
        let endpoints = self.get(CONFIG_STORE, "raft", parse_config_store)?;
        let user = self.get_opt(CONFIG_STORE_USER, |v| {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic()) {
                Ok(v.to_string())
            } else {
                Err("expected a user name of visible ASCII characters".into())
            }
        })?;
        let password = self.get_opt(CONFIG_STORE_PASSWORD_FILE, |v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read it: {e}"))?;
            let pw = text.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err("the file is empty".into());
            }
            Ok(Secret(pw.as_bytes().to_vec()))
        })?;
        let auth = match (user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Conflict(format!(
                    "the configuration store's credentials need both {} and {}",
                    CONFIG_STORE_USER.flag, CONFIG_STORE_PASSWORD_FILE.flag
                )))
            }
        };
        let config_store = if endpoints.is_empty() {
            if auth.is_some() {
                return Err(ConfigError::Conflict(format!(
                    "{} and {} are for an external etcd ({} etcd://…)",
                    CONFIG_STORE_USER.flag, CONFIG_STORE_PASSWORD_FILE.flag, CONFIG_STORE.flag
                )));
            }
            ConfigStoreKind::Raft
        } else {
            ConfigStoreKind::Etcd { endpoints, auth }
        };
        let controller = ControllerSettings {
            reconcile_every: self.get(CONTROLLER_RECONCILE_SECS, "60", parse_seconds)?,
            lease_ttl: self.get(CONTROLLER_LEASE_TTL_SECS, "15", parse_seconds)?,
        };
        if controller.lease_ttl < Duration::from_secs(2) {
            return Err(invalid(
                CONTROLLER_LEASE_TTL_SECS,
                &controller.lease_ttl.as_secs().to_string(),
                "etcd grants leases of at least 2 seconds".into(),
            ));
        }
        Ok(Topology {
            roles,
            control_store,
            config_store,
            controller,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_refuse_what_is_unknown() {
        let r = parse_roles("gateway").unwrap();
        assert!(r.gateway && !r.server && !r.controller);
        assert_eq!(
            parse_roles("server, controller,gateway").unwrap(),
            Roles::ALL
        );
        assert!(parse_roles("gateway,proxy")
            .unwrap_err()
            .contains("\"proxy\""));
        assert!(parse_roles(" , ").is_err());
    }

    #[test]
    fn stores_parse_and_refuse_what_is_not_a_store() {
        assert_eq!(parse_control_store("raft").unwrap(), ControlStoreKind::Raft);
        assert!(matches!(
            parse_control_store("postgres://u:p@db:5432/hermes").unwrap(),
            ControlStoreKind::Postgres(_)
        ));
        assert!(parse_control_store("mysql://x").is_err());
        assert_eq!(
            parse_config_store("etcd://a:2379, b:2380").unwrap(),
            ["http://a:2379", "http://b:2380"]
        );
        assert!(parse_config_store("etcd://a").is_err());
        assert!(parse_config_store("etcd://").is_err());
        assert!(parse_config_store("consul://a:1").is_err());
    }

    #[test]
    fn settings_of_what_the_node_does_not_run_are_refused() {
        let load = |flags: &[(&'static str, &str)]| {
            let flags: super::super::Flags =
                flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
            super::super::NodeConfig::load(&flags, None, &|_| None)
        };
        let pg = "postgres://h@db/x";
        let e = load(&[
            ("--roles", "server"),
            ("--control-store", pg),
            ("--access-log", "off"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--access-log") && e.contains("gateway"), "{e}");
        let e = load(&[
            ("--roles", "server"),
            ("--control-store", pg),
            ("--join", "http://a:1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--join") && e.contains("raft"), "{e}");
        assert!(load(&[("--roles", "gateway"), ("--access-log", "off")]).is_ok());
        // The API's sign-in and browser settings, on nodes that serve no API.
        for (flag, value) in [
            ("--auth-mode", "oidc"),
            ("--oidc-issuer", "https://idp.example"),
            ("--cors-origins", "https://console.example"),
        ] {
            for roles in ["gateway", "controller"] {
                let mut flags = vec![("--roles", roles), ("--config-store", "etcd://e:2379")];
                if roles == "controller" {
                    flags.push(("--control-store", pg));
                }
                flags.push((flag, value));
                let e = load(&flags).unwrap_err().to_string();
                assert!(e.contains(flag) && e.contains("API"), "{roles} {flag}: {e}");
            }
        }
        // The provider's settings, with built-in sign-in.
        for (flag, value) in [
            ("--oidc-issuer", "https://idp.example"),
            ("--oidc-client-id", "hermes"),
            ("--oidc-initial-admin-users", "alice"),
        ] {
            let e = load(&[
                ("--roles", "server"),
                ("--control-store", pg),
                (flag, value),
            ])
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(flag) && e.contains("--auth-mode oidc"),
                "{flag}: {e}"
            );
        }
        // The control store's kind, on a gateway: refused where nothing reads it, allowed
        // where its etcd endpoint on raft decides by it whether to record configuration
        // writes.
        let e = load(&[
            ("--roles", "gateway"),
            ("--config-store", "etcd://e:2379"),
            ("--control-store", pg),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--control-store") && !e.contains("  "), "{e}");
        assert!(load(&[("--roles", "gateway"), ("--control-store", pg)]).is_ok());
        assert!(load(&[
            ("--roles", "server"),
            ("--control-store", pg),
            ("--cors-origins", "https://console.example"),
        ])
        .is_ok());
        // The control store's settings, on a gateway that has none.
        for (flag, value) in [
            ("--hmac-max-skew-secs", "30"),
            ("--resource-history", "10"),
            ("--max-document-bytes", "4096"),
        ] {
            let e = load(&[
                ("--roles", "gateway"),
                ("--config-store", "etcd://e:2379"),
                (flag, value),
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        }
        // A controller keeps its store's history setting, not the API's document limit.
        let controller = [
            ("--roles", "controller"),
            ("--control-store", pg),
            ("--config-store", "etcd://e:2379"),
        ];
        assert!(load(&[controller.as_slice(), &[("--resource-history", "10")]].concat()).is_ok());
        let e = load(&[controller.as_slice(), &[("--max-document-bytes", "4096")]].concat())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-document-bytes"), "{e}");
        // A gateway on a raft store whose etcd endpoint records configuration writes uses both.
        assert!(load(&[
            ("--roles", "gateway"),
            ("--resource-history", "10"),
            ("--max-document-bytes", "4096"),
        ])
        .is_ok());
    }

    #[test]
    fn raft_runs_only_where_a_store_in_use_is_on_it() {
        let t = |roles: &str, control: &str, config: &str| Topology {
            roles: parse_roles(roles).unwrap(),
            control_store: parse_control_store(control).unwrap(),
            config_store: match parse_config_store(config).unwrap() {
                e if e.is_empty() => ConfigStoreKind::Raft,
                endpoints => ConfigStoreKind::Etcd {
                    endpoints,
                    auth: None,
                },
            },
            controller: ControllerSettings {
                reconcile_every: Duration::from_secs(60),
                lease_ttl: Duration::from_secs(15),
            },
        };
        let pg = "postgres://h@db/x";
        let etcd = "etcd://e:2379";
        assert!(t("all", "raft", "raft").runs_raft());
        assert!(!t("all", "raft", "raft").runs_controller());
        assert!(
            !t("server", pg, "raft").runs_raft(),
            "the config store is unused"
        );
        assert!(
            !t("gateway", "raft", etcd).runs_raft(),
            "the control store is unused"
        );
        assert!(!t("controller", pg, etcd).runs_raft());
        assert!(t("controller", pg, etcd).runs_controller());
        assert!(t("controller,gateway", pg, "raft").runs_raft());
        assert!(t("server", "raft", etcd).runs_raft());
        assert!(!t("server", "raft", etcd).runs_controller());
    }
}
