//! Node configuration: every setting from a flag, an environment variable
//! (`HERMES_<SECTION>_<KEY>`), the TOML file given with `-c`, or its default, in that order of
//! precedence. Loading has no side effects beyond reading files, and every error names the
//! setting and all the ways to set it, so it can be reported before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One configurable setting and its three spellings.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub section: &'static str,
    pub key: &'static str,
    pub flag: &'static str,
}

impl Setting {
    pub fn env(&self) -> String {
        format!("HERMES_{}_{}", self.section, self.key).to_uppercase()
    }

    pub fn file_key(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

macro_rules! settings {
    ($($name:ident = $section:literal . $key:literal, $flag:literal;)*) => {
        $(pub const $name: Setting = Setting { section: $section, key: $key, flag: $flag };)*
        pub const ALL: &[Setting] = &[$($name),*];
    };
}

settings! {
    ID = "node"."id", "--id";
    DATA_DIR = "node"."data_dir", "--data-dir";
    NAMESPACE = "node"."namespace", "--namespace";
    PROXY_LISTEN = "proxy"."listen", "--proxy-listen";
    ADMIN_LISTEN = "admin"."listen", "--admin-listen";
    PEER_LISTEN = "peer"."listen", "--peer-listen";
    ADVERTISE_PEER = "peer"."advertise", "--advertise-peer";
    ETCD_LISTEN = "etcd"."listen", "--etcd-listen";
    ETCD_USER = "etcd"."user", "--etcd-user";
    ETCD_PASSWORD_FILE = "etcd"."password_file", "--etcd-password-file";
    ETCD_MAX_WATCHERS = "etcd"."max_watchers", "--etcd-max-watchers";
    INITIAL_CLUSTER = "cluster"."initial", "--initial-cluster";
    JOIN = "cluster"."join", "--join";
    CLUSTER_SECRET = "cluster"."secret", "--cluster-secret";
    CLUSTER_SECRET_FILE = "cluster"."secret_file", "--cluster-secret-file";
    HISTORY_RETENTION = "store"."history_retention", "--history-retention";
    SNAPSHOT_EVERY = "store"."snapshot_every", "--snapshot-every";
    QUOTA_BACKEND_BYTES = "store"."quota_backend_bytes", "--quota-backend-bytes";
    REQUEST_TIMEOUT_MS = "raft"."request_timeout_ms", "--request-timeout-ms";
    SHUTDOWN_GRACE_MS = "node"."shutdown_grace_ms", "--shutdown-grace-ms";
    WORKER_THREADS = "node"."worker_threads", "--worker-threads";
    PROXY_THREADS = "proxy"."threads", "--proxy-threads";
    TRUSTED_PROXIES = "proxy"."trusted_proxies", "--trusted-proxies";
    MAX_CONNECTIONS = "proxy"."max_connections", "--max-connections";
    ACCESS_LOG = "proxy"."access_log", "--access-log";
    INSTANCE_REGISTRY = "proxy"."instance_registry", "--instance-registry";
    CONSUL_ADDRESS = "consul"."address", "--consul-address";
    CONSUL_DATACENTER = "consul"."datacenter", "--consul-datacenter";
    CONSUL_TOKEN_FILE = "consul"."token_file", "--consul-token-file";
    CONSUL_SERVICE = "consul"."service", "--consul-service";
    CONSUL_SERVICE_ADDRESS = "consul"."service_address", "--consul-service-address";
    LOG_FORMAT = "log"."format", "--log-format";
    INITIAL_ADMIN = "api"."initial_admin", "--initial-admin";
    AUTH_MODE = "api"."auth_mode", "--auth-mode";
    CORS_ORIGINS = "api"."cors_origins", "--cors-origins";
    RESOURCE_HISTORY = "api"."resource_history", "--resource-history";
    HMAC_MAX_SKEW_SECS = "api"."hmac_max_skew_secs", "--hmac-max-skew-secs";
    MAX_DOCUMENT_BYTES = "api"."max_document_bytes", "--max-document-bytes";
    OIDC_ISSUER = "oidc"."issuer", "--oidc-issuer";
    OIDC_CLIENT_ID = "oidc"."client_id", "--oidc-client-id";
    OIDC_CLIENT_SECRET = "oidc"."client_secret", "--oidc-client-secret";
    OIDC_CLIENT_SECRET_FILE = "oidc"."client_secret_file", "--oidc-client-secret-file";
    OIDC_INITIAL_ADMINS = "oidc"."initial_admin_users", "--oidc-initial-admin-users";
    OIDC_REDIRECT_URL = "oidc"."redirect_url", "--oidc-redirect-url";
    ROLES = "node"."roles", "--roles";
    CONTROL_STORE = "store"."control", "--control-store";
    CONFIG_STORE = "store"."config", "--config-store";
    CONFIG_STORE_USER = "store"."config_user", "--config-store-user";
    CONFIG_STORE_PASSWORD_FILE = "store"."config_password_file", "--config-store-password-file";
    CONTROLLER_RECONCILE_SECS = "controller"."reconcile_secs", "--controller-reconcile-secs";
    CONTROLLER_LEASE_TTL_SECS = "controller"."lease_ttl_secs", "--controller-lease-ttl-secs";
}

/// The OpenID Connect provider's settings, used only with `--auth-mode oidc` on a server.
const OIDC_SETTINGS: &[Setting] = &[
    OIDC_ISSUER,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    OIDC_CLIENT_SECRET_FILE,
    OIDC_INITIAL_ADMINS,
    OIDC_REDIRECT_URL,
];

mod api;
mod roles;
pub use api::{ApiSettings, AuthMode, OidcSettings};
pub use roles::{ConfigStoreKind, ControlStoreKind, ControllerSettings, Roles, Topology};

/// A setting had a bad value, or the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {flag} ({file_key} in the config file, env {env}) = {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        file_key: String,
        env: String,
        value: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Conflict(String),
}

/// Where the cluster secret lives. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub data_dir: PathBuf,
    pub namespace: String,
    pub proxy_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub peer_listen: SocketAddr,
    /// URL other nodes use to reach this node's peer listener.
    pub advertise_peer: String,
    /// `None` when the etcd endpoint is off.
    pub etcd_listen: Option<SocketAddr>,
    /// The etcd endpoint's user and password; required when it listens beyond loopback.
    pub etcd_auth: Option<(String, Secret)>,
    /// Watchers the etcd endpoint holds at once, over every client.
    pub etcd_max_watchers: usize,
    pub initial_cluster: Option<BTreeMap<u64, String>>,
    pub join: Option<String>,
    pub cluster_secret: Option<Secret>,
    /// Revisions of history kept by automatic compaction (0 = keep everything).
    pub history_retention: i64,
    /// Raft log entries between snapshots.
    pub snapshot_every: u64,
    /// Bytes the state machine may take on disk before writes that grow it are refused
    /// (etcd's NOSPACE); 0: no quota. Default 2 GiB.
    pub quota_backend_bytes: u64,
    /// How long a client request may wait for the cluster.
    pub request_timeout: Duration,
    /// How long a leader's hand-off and the in-flight requests may take together on shutdown.
    pub shutdown_grace: Duration,
    /// Worker threads of the runtime everything but the proxy runs on (store, raft, admin API,
    /// etcd endpoint); 0 means a quarter of the CPUs (at least one), 1 tokio's current-thread
    /// scheduler.
    pub worker_threads: usize,
    /// Proxy threads, each with a runtime and a listening socket of its own; 0 means one per
    /// CPU.
    pub proxy_threads: usize,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Open proxy connections at most.
    pub max_connections: usize,
    /// Whether every proxied request is logged (JSON lines on stdout).
    pub access_log: bool,
    /// The Consul agent clusters with `discovery_type: consul` discover their nodes from.
    pub consul: Option<hermes_gateway::discovery::ConsulSettings>,
    /// This node's proxy, registered in Consul under a service name (with a TTL check).
    pub consul_registration: Option<hermes_gateway::consul_registration::Registration>,
    /// Whether this node registers as a gateway instance (`/hermes/instances/`), and so
    /// takes a share of every rate limit.
    pub instance_registry: bool,
    /// How the node's own log lines (stderr) are written.
    pub log_format: crate::logging::LogFormat,
    /// E-mail of the built-in admin created on a cluster's first start; `None` (`off`) creates
    /// none (for clusters that only use HMAC credentials). Default `admin@hermes.local`.
    pub initial_admin: Option<String>,
    /// Sign-in, CORS and history settings of the control-plane API.
    pub api: ApiSettings,
    /// Roles, and where the control plane and the gateways' configuration live.
    pub topology: Topology,
}

/// Raw values as given on the command line (flag name → value).
pub type Flags = BTreeMap<&'static str, String>;

struct Sources<'a> {
    flags: &'a Flags,
    env: &'a dyn Fn(&str) -> Option<String>,
    file: BTreeMap<String, String>,
}

impl Sources<'_> {
    /// Refuses the first of `settings` that was given at all: each belongs to `what`, which
    /// this node does not run, and would otherwise be accepted and ignored.
    fn refuse_given(&self, settings: &[Setting], what: &str) -> Result<(), ConfigError> {
        // An empty value counts as not given, as everywhere else (a shared environment
        // template may leave a variable empty).
        let given = |s: &Setting| self.raw(*s).is_some_and(|v| !v.trim().is_empty());
        match settings.iter().find(|s| given(s)) {
            Some(s) => Err(ConfigError::Conflict(format!(
                "{} is a setting of {what}",
                s.flag
            ))),
            None => Ok(()),
        }
    }

    fn raw(&self, s: Setting) -> Option<String> {
        self.flags
            .get(s.flag)
            .cloned()
            .or_else(|| (self.env)(&s.env()))
            .or_else(|| self.file.get(&s.file_key()).cloned())
    }

    fn get<T>(
        &self,
        s: Setting,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.raw(s).unwrap_or_else(|| default.to_string());
        parse(&value).map_err(|reason| invalid(s, &value, reason))
    }

    fn get_opt<T>(
        &self,
        s: Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(s) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .map_err(|reason| invalid(s, &value, reason)),
        }
    }
}

fn invalid(s: Setting, value: &str, reason: String) -> ConfigError {
    // Secrets, and the control store's connection string (it may hold a password).
    let shown = if (s.key.contains("secret") && !s.key.ends_with("secret_file"))
        || s.key == CONTROL_STORE.key
    {
        "<redacted>".to_string()
    } else {
        value.to_string()
    };
    ConfigError::Invalid {
        flag: s.flag,
        file_key: s.file_key(),
        env: s.env(),
        value: shown,
        reason,
    }
}

/// Reads a TOML file into `section.key → value` strings, rejecting unknown keys.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (section, body) in table {
        let toml::Value::Table(body) = body else {
            return Err(file_err(format!("`{section}` must be a [section]")));
        };
        for (key, value) in body {
            let full = format!("{section}.{key}");
            if !ALL.iter().any(|s| s.file_key() == full) {
                return Err(file_err(format!("unknown setting `{full}`")));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(file_err(format!(
                        "`{full}` must be a string or number, not {}",
                        other.type_str()
                    )))
                }
            };
            out.insert(full, text);
        }
    }
    Ok(out)
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "expected an IP:port socket address such as 127.0.0.1:9080".to_string())
}

fn parse_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("http://")
        .ok_or_else(|| "expected an http:// URL such as http://10.0.0.1:9081".to_string())?;
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') {
        return Err("expected http://host:port with no path".into());
    }
    if !host_port
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        return Err("the URL needs a host and a port".into());
    }
    Ok(format!("http://{host_port}"))
}

fn parse_initial_cluster(v: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, url) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not id=url"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("`{id}` is not a node id (a positive integer)"))?;
        let url = parse_url(url.trim()).map_err(|e| format!("member {id}: {e}"))?;
        if members.insert(id, url).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if members.is_empty() {
        return Err("expected id=url pairs separated by commas".into());
    }
    Ok(members)
}

/// `10.0.0.0/8, 192.168.1.7` → networks (a bare address is a /32 or /128).
fn parse_cidrs(v: &str) -> Result<Vec<ipnet::IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP network such as 10.0.0.0/8"))
        })
        .collect()
}

fn parse_positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    v.parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| "expected a positive integer".to_string())
}

fn parse_namespace(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected a DNS label: lowercase letters, digits and '-', at most 63 characters".into())
    }
}

impl NodeConfig {
    /// Resolves the configuration from flags, environment, an optional file and defaults.
    pub fn load(
        flags: &Flags,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NodeConfig, ConfigError> {
        let file = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let src = Sources { flags, env, file };
        let id: u64 = src.get(ID, "1", parse_positive)?;
        let peer_listen = src.get(PEER_LISTEN, "127.0.0.1:9081", parse_addr)?;
        let initial_cluster = src.get_opt(INITIAL_CLUSTER, parse_initial_cluster)?;
        let join = src.get_opt(JOIN, parse_url)?;
        let advertise_peer = match src.get_opt(ADVERTISE_PEER, parse_url)? {
            Some(url) => url,
            None => match initial_cluster.as_ref().and_then(|m| m.get(&id)) {
                Some(url) => url.clone(),
                None if peer_listen.ip().is_unspecified() => {
                    return Err(invalid(
                        ADVERTISE_PEER,
                        "",
                        format!(
                        "{} listens on all interfaces ({peer_listen}), so other nodes cannot be \
                             told where to reach it: set {}",
                        PEER_LISTEN.flag, ADVERTISE_PEER.flag
                    ),
                    ))
                }
                None => format!("http://{peer_listen}"),
            },
        };
        if let Some(members) = &initial_cluster {
            match members.get(&id) {
                None => {
                    return Err(invalid(
                        INITIAL_CLUSTER,
                        &format!("{members:?}"),
                        format!("does not list this node's id {id}"),
                    ))
                }
                Some(url) if *url != advertise_peer => {
                    return Err(ConfigError::Conflict(format!(
                        "{} says node {id} is at {url}, but {} is {advertise_peer}",
                        INITIAL_CLUSTER.flag, ADVERTISE_PEER.flag
                    )))
                }
                Some(_) => {}
            }
        }
        if initial_cluster.is_some() && join.is_some() {
            return Err(ConfigError::Conflict(format!(
                "{} and {} exclude each other: bootstrap a new cluster or join an existing one",
                INITIAL_CLUSTER.flag, JOIN.flag
            )));
        }
        let secret = src.get_opt(CLUSTER_SECRET, |v| Ok(Secret(v.as_bytes().to_vec())))?;
        let secret_file = src.get_opt(CLUSTER_SECRET_FILE, |v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read it: {e}"))?;
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Err("the file is empty".into());
            }
            Ok(Secret(trimmed.as_bytes().to_vec()))
        })?;
        if secret.is_some() && secret_file.is_some() {
            return Err(ConfigError::Conflict(format!(
                "give the cluster secret once: {} or {}, not both",
                CLUSTER_SECRET.flag, CLUSTER_SECRET_FILE.flag
            )));
        }
        let cluster_secret = secret.or(secret_file);
        if let Some(s) = &cluster_secret {
            if s.0.len() < 16 {
                return Err(invalid(
                    CLUSTER_SECRET,
                    "",
                    "the cluster secret must be at least 16 bytes".into(),
                ));
            }
        }
        let advertise_is_loopback = advertise_peer
            .strip_prefix("http://")
            .and_then(|hp| hp.rsplit_once(':'))
            .map(|(h, _)| h.trim_matches(['[', ']']))
            .is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
        if cluster_secret.is_none() && (!peer_listen.ip().is_loopback() || !advertise_is_loopback) {
            return Err(ConfigError::Conflict(format!(
                "the peer port is reachable from other hosts ({} {peer_listen}, advertised as {advertise_peer}) \
                 but no cluster secret is set: set {} or {} (the same on every node) so that only \
                 members can join and replicate",
                PEER_LISTEN.flag, CLUSTER_SECRET.flag, CLUSTER_SECRET_FILE.flag
            )));
        }
        let etcd_listen = src.get(ETCD_LISTEN, "127.0.0.1:2379", |v| {
            if v == "off" {
                Ok(None)
            } else {
                parse_addr(v).map(Some)
            }
        })?;
        let etcd_user = src.get_opt(ETCD_USER, |v| {
            if v.chars().all(|c| c.is_ascii_graphic()) {
                Ok(v.to_string())
            } else {
                Err("expected a user name of visible ASCII characters".into())
            }
        })?;
        let etcd_password = src.get_opt(ETCD_PASSWORD_FILE, |v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read it: {e}"))?;
            let pw = text.trim_end_matches(['\n', '\r']);
            if pw.len() < 12 {
                return Err("the password must be at least 12 bytes".into());
            }
            Ok(Secret(pw.as_bytes().to_vec()))
        })?;
        let etcd_auth = match (etcd_user, etcd_password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Conflict(format!(
                    "the etcd endpoint's credentials need both {} and {}",
                    ETCD_USER.flag, ETCD_PASSWORD_FILE.flag
                )))
            }
        };
        if let (Some(addr), None) = (etcd_listen, &etcd_auth) {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Conflict(format!(
                    "the etcd endpoint is reachable from other hosts ({} {addr}) but has no \
                     credentials: set {} and {} (clients then authenticate as with etcd's auth), \
                     or listen on 127.0.0.1",
                    ETCD_LISTEN.flag, ETCD_USER.flag, ETCD_PASSWORD_FILE.flag
                )));
            }
        }
        let consul_address = src.get_opt(CONSUL_ADDRESS, |v| {
            let v = v.trim().trim_end_matches('/');
            match v.split_once("://") {
                Some(("http", rest)) if !rest.is_empty() && !rest.contains('/') => {
                    Ok(v.to_string())
                }
                Some(("https", _)) => Err(
                    "Consul over TLS is not supported yet; use http://host:port of a local agent"
                        .into(),
                ),
                _ => Err("expected http://host:port of a Consul agent".into()),
            }
        })?;
        let consul_datacenter = src.get_opt(CONSUL_DATACENTER, |v| Ok(v.trim().to_string()))?;
        let consul_token = src.get_opt(CONSUL_TOKEN_FILE, |v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read it: {e}"))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err("the file is empty".into());
            }
            Ok(token)
        })?;
        let consul = match consul_address {
            Some(address) => Some(hermes_gateway::discovery::ConsulSettings {
                address,
                datacenter: consul_datacenter.filter(|d| !d.is_empty()),
                token: consul_token,
            }),
            None if consul_datacenter.is_some() || consul_token.is_some() => {
                return Err(ConfigError::Conflict(format!(
                    "{} and {} need {}",
                    CONSUL_DATACENTER.flag, CONSUL_TOKEN_FILE.flag, CONSUL_ADDRESS.flag
                )))
            }
            None => None,
        };
        let proxy_listen = src.get(PROXY_LISTEN, "0.0.0.0:8080", parse_addr)?;
        let service = src.get_opt(CONSUL_SERVICE, |v| {
            let v = v.trim();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err("expected a Consul service name (letters, digits, - and _)".into());
            }
            Ok(v.to_string())
        })?;
        let service_address = src.get_opt(CONSUL_SERVICE_ADDRESS, |v| {
            v.trim()
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| "expected the IP address other hosts reach this proxy at".into())
        })?;
        let consul_registration = match service {
            None if service_address.is_some() => {
                return Err(ConfigError::Conflict(format!(
                    "{} needs {}",
                    CONSUL_SERVICE_ADDRESS.flag, CONSUL_SERVICE.flag
                )))
            }
            None => None,
            Some(_) if consul.is_none() => {
                return Err(ConfigError::Conflict(format!(
                    "{} needs {}",
                    CONSUL_SERVICE.flag, CONSUL_ADDRESS.flag
                )))
            }
            Some(service) => {
                let listen = proxy_listen;
                let address = match service_address {
                    Some(a) => a,
                    None if !listen.ip().is_unspecified() => listen.ip().to_string(),
                    None => {
                        return Err(ConfigError::Conflict(format!(
                            "{} listens on every address; say which one to register with {}",
                            PROXY_LISTEN.flag, CONSUL_SERVICE_ADDRESS.flag
                        )))
                    }
                };
                Some(hermes_gateway::consul_registration::Registration {
                    service,
                    address,
                    port: listen.port(),
                })
            }
        };
        let topology = src.topology()?;
        if !topology.runs_raft() {
            // Settings of the embedded store, given to a node that does not run it.
            src.refuse_given(
                &[
                    ETCD_LISTEN,
                    INITIAL_CLUSTER,
                    JOIN,
                    PEER_LISTEN,
                    ADVERTISE_PEER,
                ],
                &format!(
                    "the embedded raft store, which this node does not run: neither its control \
                     store ({}) nor its configuration store ({}) is raft for its roles ({})",
                    CONTROL_STORE.flag, CONFIG_STORE.flag, ROLES.flag
                ),
            )?;
        }
        if !topology.roles.gateway {
            // Settings of the proxy, given to a node that does not run it.
            src.refuse_given(
                &[
                    PROXY_LISTEN,
                    PROXY_THREADS,
                    TRUSTED_PROXIES,
                    MAX_CONNECTIONS,
                    ACCESS_LOG,
                    INSTANCE_REGISTRY,
                    CONSUL_ADDRESS,
                    CONSUL_DATACENTER,
                    CONSUL_TOKEN_FILE,
                    CONSUL_SERVICE,
                    CONSUL_SERVICE_ADDRESS,
                ],
                &format!("the gateway, which this node does not run ({})", ROLES.flag),
            )?;
        }
        if !topology.roles.server {
            // Settings of the control-plane API and its sign-ins, which only a server serves.
            // The control store's own settings are decided below, by where they are used.
            src.refuse_given(
                &[&[AUTH_MODE, CORS_ORIGINS], OIDC_SETTINGS].concat(),
                &format!(
                    "the control-plane API, which this node does not serve ({})",
                    ROLES.flag
                ),
            )?;
        }
        // Without raft there is no store to serve on an etcd endpoint.
        let etcd_listen = etcd_listen.filter(|_| topology.runs_raft());
        if etcd_listen.is_none() {
            src.refuse_given(
                &[ETCD_MAX_WATCHERS, ETCD_USER, ETCD_PASSWORD_FILE],
                &format!(
                    "the etcd endpoint, which this node does not serve ({} off, or no raft \
                     store)",
                    ETCD_LISTEN.flag
                ),
            )?;
        }
        if topology.runs_controller()
            && topology.config_store == ConfigStoreKind::Raft
            && etcd_listen.is_none()
        {
            return Err(ConfigError::Conflict(format!(
                "the controller copies into the raft store through this node's etcd endpoint: \
                 {} must not be off with {} raft",
                ETCD_LISTEN.flag, CONFIG_STORE.flag
            )));
        }
        // The control store's settings: used where a control store is (a server's API, a
        // controller's feed, the operator endpoints' sign-ins), and by the etcd endpoint, which
        // records a write to a configuration key as a change when the control store is raft.
        let records_config_writes =
            topology.control_store == ControlStoreKind::Raft && etcd_listen.is_some();
        // (`--initial-admin` is let through everywhere: `off`, what a shared environment
        // gives every node, means nothing to do, and its default is harmless where unused.)
        if !topology.uses_control_store() {
            let unused: &[Setting] = if records_config_writes {
                &[HMAC_MAX_SKEW_SECS]
            } else {
                &[HMAC_MAX_SKEW_SECS, RESOURCE_HISTORY]
            };
            src.refuse_given(
                unused,
                &format!(
                    "the control store, which this node does not use for its roles ({})",
                    ROLES.flag
                ),
            )?;
        }
        if !topology.uses_control_store() && etcd_listen.is_none() {
            // A gateway's etcd endpoint on raft is the one other place the control store's
            // kind matters (it decides whether configuration writes are recorded).
            src.refuse_given(
                &[CONTROL_STORE],
                &format!(
                    "the control plane, which this node neither serves nor copies from, and \
                     it has no etcd endpoint on raft ({})",
                    ROLES.flag
                ),
            )?;
        }
        if !topology.roles.server && !records_config_writes {
            src.refuse_given(
                &[MAX_DOCUMENT_BYTES],
                &format!(
                    "the control-plane API and the etcd endpoint's configuration writes, \
                     neither of which this node serves ({})",
                    ROLES.flag
                ),
            )?;
        }
        Ok(NodeConfig {
            topology,
            consul,
            consul_registration,
            id,
            data_dir: PathBuf::from(src.get(DATA_DIR, "./hermes-data", |v| {
                if v.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(v.to_string())
                }
            })?),
            namespace: src.get(NAMESPACE, "default", parse_namespace)?,
            proxy_listen,
            admin_listen: src.get(ADMIN_LISTEN, "0.0.0.0:9080", parse_addr)?,
            peer_listen,
            advertise_peer,
            etcd_listen,
            etcd_auth,
            etcd_max_watchers: src.get(
                ETCD_MAX_WATCHERS,
                &hermes_compat::etcd::watch_session::MAX_WATCHERS.to_string(),
                |v| {
                    v.parse::<usize>()
                        .ok()
                        // Far past any real need; each watcher holds memory and a place in the
                        // hub's index.
                        .filter(|n| (1..=10_000_000).contains(n))
                        .ok_or_else(|| "expected a number of watchers, 1 to 10000000".to_string())
                },
            )?,
            initial_cluster,
            join,
            cluster_secret,
            history_retention: src.get(HISTORY_RETENTION, "10000", |v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    "expected a number of revisions (0 keeps all history)".to_string()
                })
            })?,
            snapshot_every: src.get(SNAPSHOT_EVERY, "100000", parse_positive)?,
            quota_backend_bytes: src.get(QUOTA_BACKEND_BYTES, "2147483648", |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n == 0 || *n >= 1 << 20)
                    .ok_or_else(|| {
                        "expected bytes, at least 1048576 (1 MiB), or 0 for no quota".to_string()
                    })
            })?,
            request_timeout: Duration::from_millis(src.get(
                REQUEST_TIMEOUT_MS,
                "5000",
                parse_positive,
            )?),
            shutdown_grace: Duration::from_millis(src.get(
                SHUTDOWN_GRACE_MS,
                "10000",
                parse_positive,
            )?),
            worker_threads: src.get(WORKER_THREADS, "0", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 1024)
                    .ok_or_else(|| {
                        "expected a number of threads (0 = a quarter of the CPUs, at least one)"
                            .to_string()
                    })
            })?,
            proxy_threads: src.get(PROXY_THREADS, "0", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 1024)
                    .ok_or_else(|| {
                        "expected a number of threads, at most 1024 (0 = one per CPU)".to_string()
                    })
            })?,
            trusted_proxies: src.get(TRUSTED_PROXIES, "", parse_cidrs)?,
            max_connections: src.get(MAX_CONNECTIONS, "10000", parse_positive)?,
            access_log: src.get(ACCESS_LOG, "on", |v| match v {
                "on" | "true" => Ok(true),
                "off" | "false" => Ok(false),
                _ => Err("expected on or off".to_string()),
            })?,
            instance_registry: src.get(INSTANCE_REGISTRY, "on", |v| match v {
                "on" | "true" => Ok(true),
                "off" | "false" => Ok(false),
                _ => Err("expected on or off".to_string()),
            })?,
            log_format: src.get(LOG_FORMAT, "auto", |v| v.parse())?,
            initial_admin: src.get(INITIAL_ADMIN, "admin@hermes.local", |v| match v.trim() {
                "off" => Ok(None),
                e if e.contains('@') && !e.chars().any(char::is_whitespace) => {
                    Ok(Some(e.to_lowercase()))
                }
                _ => Err("expected an e-mail address or off".to_string()),
            })?,
            api: src.api()?,
        })
    }

    /// What `hermes node --dry-run` prints: the roles, the stores and the listeners this
    /// configuration runs (no secret).
    pub fn summary(&self) -> serde_json::Value {
        let mut out = self.topology.summary();
        out["id"] = serde_json::json!(self.id);
        out["namespace"] = serde_json::json!(self.namespace);
        out["data_dir"] = serde_json::json!(self.data_dir.display().to_string());
        let raft = self.topology.runs_raft();
        out["listen"] = serde_json::json!({
            "admin": self.admin_listen.to_string(),
            "proxy": self.topology.roles.gateway.then(|| self.proxy_listen.to_string()),
            "peer": raft.then(|| self.peer_listen.to_string()),
            "etcd": self.etcd_listen.map(|a| a.to_string()),
        });
        out
    }

    /// The URL of this node's admin API as other nodes and tools should use it.
    pub fn admin_url(&self) -> String {
        advertised_url(self.admin_listen, &self.advertise_peer)
    }

    pub fn etcd_url(&self) -> Option<String> {
        self.etcd_listen
            .map(|a| advertised_url(a, &self.advertise_peer))
    }
}

/// A listener's URL: its own address, or the advertised peer host when it listens on all
/// interfaces.
fn advertised_url(addr: SocketAddr, advertise_peer: &str) -> String {
    if addr.ip().is_unspecified() {
        let host = advertise_peer
            .strip_prefix("http://")
            .and_then(|hp| hp.rsplit_once(':'))
            .map_or("127.0.0.1", |(h, _)| h);
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        flags: &[(&'static str, &str)],
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<NodeConfig, ConfigError> {
        let flags: Flags = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hermes.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        NodeConfig::load(&flags, file.map(|_| path.as_path()), &|k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn sign_in_settings_are_checked_together() {
        let c = load(&[], &[], None).unwrap();
        assert_eq!(c.api.auth, AuthMode::Builtin);
        assert_eq!(c.api.resource_history, 50);
        assert!(c.api.cors_origins.is_empty());
        let err = |flags: &[(&'static str, &str)]| load(flags, &[], None).unwrap_err().to_string();
        assert!(err(&[("--auth-mode", "ldap")]).contains("expected builtin or oidc"));
        let e = err(&[("--auth-mode", "oidc")]);
        assert!(e.contains("--oidc-issuer") && e.contains("required"), "{e}");
        let base = [
            ("--auth-mode", "oidc"),
            ("--oidc-issuer", "https://idp.example/realms/x/"),
            ("--oidc-client-id", "hermes"),
        ];
        assert!(err(&base).contains("--oidc-client-secret"));
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("s");
        std::fs::write(&secret_file, "from-file\n").unwrap();
        let file = secret_file.to_str().unwrap();
        let mut both = base.to_vec();
        both.extend([
            ("--oidc-client-secret", "x"),
            ("--oidc-client-secret-file", file),
        ]);
        assert!(err(&both).contains("not both"));
        let mut good = base.to_vec();
        good.extend([
            ("--oidc-client-secret-file", file),
            ("--oidc-initial-admin-users", "Alice, bob@example.com,"),
        ]);
        let c = load(&good, &[], None).unwrap();
        let AuthMode::Oidc(o) = c.api.auth else {
            panic!("oidc expected")
        };
        assert_eq!(o.issuer, "https://idp.example/realms/x");
        assert_eq!(o.client_secret, "from-file");
        assert_eq!(o.initial_admins, vec!["alice", "bob@example.com"]);
        // A secret given inline is never echoed in an error.
        let mut flags = base.to_vec();
        flags.extend([
            ("--oidc-client-secret", "hunter2"),
            ("--resource-history", "0"),
        ]);
        let e = err(&flags);
        assert!(
            e.contains("--resource-history") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn consul_settings_are_checked_together() {
        let c = load(&[], &[], None).unwrap();
        assert!(c.consul.is_none() && c.consul_registration.is_none());
        assert!(c.instance_registry);
        let err = |flags: &[(&'static str, &str)]| load(flags, &[], None).unwrap_err().to_string();
        for (flags, needle) in [
            (
                vec![("--consul-address", "https://consul:8501")],
                "not supported",
            ),
            (
                vec![("--consul-address", "consul:8500")],
                "http://host:port",
            ),
            (vec![("--consul-datacenter", "dc2")], "--consul-address"),
            (vec![("--consul-service", "gw")], "--consul-address"),
            (
                vec![
                    ("--consul-address", "http://127.0.0.1:8500"),
                    ("--consul-service", "g w"),
                ],
                "service name",
            ),
            (
                vec![
                    ("--consul-address", "http://127.0.0.1:8500"),
                    ("--consul-service", "gw"),
                ],
                "--consul-service-address",
            ),
            (vec![("--instance-registry", "maybe")], "on or off"),
        ] {
            let e = err(&flags);
            assert!(e.contains(needle), "{flags:?}: {e}");
        }
        let c = load(
            &[
                ("--consul-address", "http://127.0.0.1:8500/"),
                ("--consul-datacenter", "dc2"),
                ("--consul-service", "gw"),
                ("--proxy-listen", "10.0.0.7:8080"),
                ("--instance-registry", "off"),
            ],
            &[],
            None,
        )
        .unwrap();
        let consul = c.consul.unwrap();
        assert_eq!(consul.address, "http://127.0.0.1:8500");
        assert_eq!(consul.datacenter.as_deref(), Some("dc2"));
        let me = c.consul_registration.unwrap();
        assert_eq!((me.address.as_str(), me.port), ("10.0.0.7", 8080));
        assert_eq!(me.id(), "gw:10.0.0.7:8080");
        assert!(!c.instance_registry);
    }

    #[test]
    fn defaults_make_a_single_loopback_node() {
        let c = load(&[], &[], None).unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(c.advertise_peer, "http://127.0.0.1:9081");
        assert_eq!(c.etcd_listen, Some("127.0.0.1:2379".parse().unwrap()));
        assert_eq!(c.namespace, "default");
        assert!(c.initial_cluster.is_none() && c.cluster_secret.is_none());
        assert_eq!(c.admin_url(), "http://127.0.0.1:9080");
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let file = "[node]\nid = 3\nnamespace = \"from-file\"\n[admin]\nlisten = \"127.0.0.1:1\"\n";
        let c = load(&[], &[], Some(file)).unwrap();
        assert_eq!((c.id, c.namespace.as_str()), (3, "from-file"));
        let c = load(&[], &[("HERMES_NODE_ID", "4")], Some(file)).unwrap();
        assert_eq!(c.id, 4);
        let c = load(&[("--id", "5")], &[("HERMES_NODE_ID", "4")], Some(file)).unwrap();
        assert_eq!(c.id, 5);
        assert_eq!(c.admin_listen, "127.0.0.1:1".parse().unwrap());
    }

    #[test]
    fn proxy_threads_default_to_one_per_cpu_and_are_bounded() {
        assert_eq!(load(&[], &[], None).unwrap().proxy_threads, 0);
        let c = load(&[], &[("HERMES_PROXY_THREADS", "3")], None).unwrap();
        assert_eq!(c.proxy_threads, 3);
        let c = load(&[], &[], Some("[proxy]\nthreads = 2\n")).unwrap();
        assert_eq!(c.proxy_threads, 2);
        for bad in ["-1", "many", "1025"] {
            let e = load(&[("--proxy-threads", bad)], &[], None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--proxy-threads") && e.contains("at most 1024"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_etcd_watcher_limit_defaults_to_the_endpoints_and_is_bounded() {
        let default = hermes_compat::etcd::watch_session::MAX_WATCHERS;
        assert_eq!(load(&[], &[], None).unwrap().etcd_max_watchers, default);
        let c = load(&[], &[], Some("[etcd]\nmax_watchers = 50\n")).unwrap();
        assert_eq!(c.etcd_max_watchers, 50);
        for bad in ["0", "-1", "lots", "10000001"] {
            let e = load(&[("--etcd-max-watchers", bad)], &[], None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--etcd-max-watchers") && e.contains("1 to 10000000"),
                "{e}"
            );
        }
        // Without an etcd endpoint it would be accepted and ignored.
        let e = load(
            &[("--etcd-listen", "off"), ("--etcd-max-watchers", "50")],
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--etcd-max-watchers is a setting of the etcd endpoint")
                && !e.contains("  "),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let e = load(&[("--peer-listen", "nope")], &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--peer-listen")
                && e.contains("peer.listen")
                && e.contains("HERMES_PEER_LISTEN"),
            "{e}"
        );
        let e = load(&[], &[], Some("[node]\nidd = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.idd"), "{e}");
        let e = load(&[("--id", "0")], &[], None).unwrap_err().to_string();
        assert!(e.contains("--id"), "{e}");
        let e = load(
            &[("--initial-cluster", "1=http://127.0.0.1:1,x=y")],
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--initial-cluster"), "{e}");
    }

    #[test]
    fn non_loopback_peers_need_a_secret() {
        let e = load(&[("--peer-listen", "10.1.2.3:9081")], &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cluster-secret"), "{e}");
        let c = load(
            &[
                ("--peer-listen", "10.1.2.3:9081"),
                ("--cluster-secret", "0123456789abcdef"),
            ],
            &[],
            None,
        )
        .unwrap();
        assert!(c.cluster_secret.is_some());
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "secrets never appear in Debug"
        );
        let e = load(&[("--peer-listen", "0.0.0.0:9081")], &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--advertise-peer"), "{e}");
    }

    #[test]
    fn a_non_loopback_etcd_endpoint_needs_credentials() {
        let e = load(&[("--etcd-listen", "0.0.0.0:2379")], &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--etcd-user") && e.contains("--etcd-password-file"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "a-long-enough-password\n").unwrap();
        let pw = pw.to_str().unwrap();
        let c = load(
            &[
                ("--etcd-listen", "0.0.0.0:2379"),
                ("--etcd-user", "gateway"),
                ("--etcd-password-file", pw),
            ],
            &[],
            None,
        )
        .unwrap();
        let (user, password) = c.etcd_auth.clone().unwrap();
        assert_eq!(
            (user.as_str(), password.0.as_slice()),
            ("gateway", &b"a-long-enough-password"[..])
        );
        assert!(
            !format!("{c:?}").contains("a-long-enough"),
            "secrets never appear in Debug"
        );
        let e = load(&[("--etcd-user", "gateway")], &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need both"), "{e}");
        // Without an etcd endpoint the credentials would protect nothing: refused, not
        // silently ignored.
        let e = load(
            &[
                ("--etcd-listen", "off"),
                ("--etcd-user", "gateway"),
                ("--etcd-password-file", pw),
            ],
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--etcd-user is a setting of the etcd endpoint"),
            "{e}"
        );
    }

    #[test]
    fn initial_cluster_must_name_this_node_consistently() {
        let c = load(
            &[
                ("--id", "2"),
                (
                    "--initial-cluster",
                    "1=http://127.0.0.1:7001,2=http://127.0.0.1:7002",
                ),
            ],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(c.advertise_peer, "http://127.0.0.1:7002");
        assert!(load(
            &[
                ("--id", "3"),
                ("--initial-cluster", "1=http://127.0.0.1:7001")
            ],
            &[],
            None
        )
        .is_err());
        assert!(load(
            &[
                ("--initial-cluster", "1=http://127.0.0.1:7001"),
                ("--join", "http://127.0.0.1:9080")
            ],
            &[],
            None
        )
        .is_err());
    }
}
