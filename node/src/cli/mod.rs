//! The command line: `hermes node` runs a node; the other commands operate a running cluster
//! through any member's admin API.

mod cluster;
mod snapshot;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use cluster::run_cluster_command;
pub use snapshot::{restore as restore_snapshot, save as save_snapshot};

#[derive(Debug, Parser)]
#[command(
    name = "hermes",
    version,
    about = "Hermes API gateway: one binary, every node whole"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (embedded replicated store, proxy, admin API, etcd endpoint).
    Node(Box<NodeArgs>),
    /// List, add, promote or remove cluster members, or move the leader.
    Member {
        #[command(subcommand)]
        action: MemberAction,
        #[command(flatten)]
        conn: Connection,
    },
    /// One screen of cluster health: members, roles, leader, applied index, lag.
    Status {
        #[command(flatten)]
        conn: Connection,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Back up a running cluster, or found a new one from a backup.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Work with node configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Restart a stopped single-node cluster whose raft log is damaged or lost, from its state
    /// machine (the damaged log is moved aside; what it held beyond the state is lost).
    Recover {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The node's id, as it ran.
        #[arg(long)]
        id: u64,
    },
    /// Print version, git sha and features.
    Version,
}

/// `hermes node` flags. Every flag is also `HERMES_<SECTION>_<KEY>` and a key in the file.
#[derive(Debug, Args, Default)]
pub struct NodeArgs {
    /// TOML configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration (flags, environment, file) and print, as JSON, what the node
    /// would run (roles, stores, listeners), without opening or binding anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Node id, stable for the node's life [default: 1].
    #[arg(long)]
    pub id: Option<String>,
    /// Raft log, state machine and snapshots [default: ./hermes-data].
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Gateway traffic [default: 0.0.0.0:8080].
    #[arg(long)]
    pub proxy_listen: Option<String>,
    /// REST API, UI, /metrics, health [default: 0.0.0.0:9080].
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Raft RPC and forwarded requests between nodes [default: 127.0.0.1:9081].
    #[arg(long)]
    pub peer_listen: Option<String>,
    /// URL other nodes use to reach this one [default: from --peer-listen].
    #[arg(long)]
    pub advertise_peer: Option<String>,
    /// etcd v3 API; `off` disables it [default: 127.0.0.1:2379].
    #[arg(long)]
    pub etcd_listen: Option<String>,
    /// The etcd endpoint's user (with --etcd-password-file; required beyond loopback).
    #[arg(long)]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (at least 12 bytes).
    #[arg(long)]
    pub etcd_password_file: Option<String>,
    /// Watchers the etcd endpoint holds at once, over every client [default: 10000].
    #[arg(long)]
    pub etcd_max_watchers: Option<String>,
    /// Static bootstrap: `1=http://10.0.0.1:9081,2=http://10.0.0.2:9081,...`.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Admin URL of any member: join as learner, promoted to voter once caught up.
    #[arg(long)]
    pub join: Option<String>,
    /// Shared secret authenticating peers (prefer --cluster-secret-file).
    #[arg(long)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret.
    #[arg(long)]
    pub cluster_secret_file: Option<String>,
    /// Which namespace's configuration this node's proxy serves [default: default].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Revisions of history kept by automatic compaction, 0 keeps all [default: 10000].
    #[arg(long)]
    pub history_retention: Option<String>,
    /// Raft log entries between snapshots [default: 100000].
    #[arg(long)]
    pub snapshot_every: Option<String>,
    /// Bytes the state machine may take before writes that grow it are refused; 0: no quota
    /// [default: 2147483648].
    #[arg(long)]
    pub quota_backend_bytes: Option<String>,
    /// How long a client request may wait for the cluster, in ms [default: 5000].
    #[arg(long)]
    pub request_timeout_ms: Option<String>,
    /// How long a leader's hand-off and the in-flight requests may take together on shutdown,
    /// in ms [default: 10000].
    #[arg(long)]
    pub shutdown_grace_ms: Option<String>,
    /// Threads of everything but the proxy (store, raft, API, etcd); 0 = a quarter of the
    /// CPUs, at least one; 1 = one thread [default: 0].
    #[arg(long)]
    pub worker_threads: Option<String>,
    /// Proxy threads, each with its own runtime and listening socket; 0 = one per CPU
    /// [default: 0].
    #[arg(long)]
    pub proxy_threads: Option<String>,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-* headers are believed [default: none].
    #[arg(long)]
    pub trusted_proxies: Option<String>,
    /// Open proxy connections at most [default: 10000].
    #[arg(long)]
    pub max_connections: Option<String>,
    /// Access log of every proxied request, JSON on stdout: on or off [default: on].
    #[arg(long)]
    pub access_log: Option<String>,
    /// Register this node as a gateway instance under /hermes/instances/, sharing every rate
    /// limit with the other instances: on or off [default: on].
    #[arg(long)]
    pub instance_registry: Option<String>,
    /// A Consul agent (http://host:port) that clusters with discovery_type consul discover
    /// their nodes from [default: none: such clusters are refused].
    #[arg(long)]
    pub consul_address: Option<String>,
    /// The Consul datacenter to ask [default: the agent's].
    #[arg(long)]
    pub consul_datacenter: Option<String>,
    /// A file holding the Consul ACL token sent with every query.
    #[arg(long)]
    pub consul_token_file: Option<String>,
    /// Register this node's proxy in Consul under this service name, with a TTL check.
    #[arg(long)]
    pub consul_service: Option<String>,
    /// The IP address registered for the proxy [default: --proxy-listen's, when not 0.0.0.0].
    #[arg(long)]
    pub consul_service_address: Option<String>,
    /// The node's own log lines on stderr: text, json, or auto (text on a terminal, JSON
    /// otherwise) [default: auto].
    #[arg(long)]
    pub log_format: Option<String>,
    /// E-mail of the built-in admin created on first start, or off (default: admin@hermes.local).
    #[arg(long)]
    pub initial_admin: Option<String>,
    /// How users sign in: builtin (e-mail and password) or oidc [default: builtin].
    #[arg(long)]
    pub auth_mode: Option<String>,
    /// Browser origins allowed to call the API, comma-separated [default: none].
    #[arg(long)]
    pub cors_origins: Option<String>,
    /// Versions of each domain and cluster kept in its history [default: 50].
    #[arg(long)]
    pub resource_history: Option<String>,
    /// How far an HMAC-signed request's timestamp may be from this node's clock, in seconds
    /// [default: 60].
    #[arg(long)]
    pub hmac_max_skew_secs: Option<String>,
    /// The largest domain or cluster document the API stores, in bytes [default: 524288].
    #[arg(long)]
    pub max_document_bytes: Option<String>,
    /// OpenID Connect issuer URL (with --auth-mode oidc).
    #[arg(long)]
    pub oidc_issuer: Option<String>,
    /// OpenID Connect client id.
    #[arg(long)]
    pub oidc_client_id: Option<String>,
    /// OpenID Connect client secret (prefer --oidc-client-secret-file or the environment).
    #[arg(long)]
    pub oidc_client_secret: Option<String>,
    /// File holding the OpenID Connect client secret.
    #[arg(long)]
    pub oidc_client_secret_file: Option<String>,
    /// Usernames or e-mails made admins on their first sign-in, comma-separated.
    #[arg(long)]
    pub oidc_initial_admin_users: Option<String>,
    /// Fixed OIDC callback URL [default: derived from the request's Host].
    #[arg(long)]
    pub oidc_redirect_url: Option<String>,
    /// What this node runs, comma-separated: server (API and UI), controller, gateway
    /// [default: server,controller,gateway].
    #[arg(long)]
    pub roles: Option<String>,
    /// Where users, credentials, history, audit and resources live: raft (embedded) or
    /// postgres://user:password@host:port/db, an original Hermes database [default: raft].
    /// Prefer the environment or the file for a URL with a password.
    #[arg(long)]
    pub control_store: Option<String>,
    /// Where gateways read domains and clusters: raft (embedded) or etcd://host:port[,…], an
    /// external etcd [default: raft].
    #[arg(long)]
    pub config_store: Option<String>,
    /// User for an external etcd with authentication on.
    #[arg(long)]
    pub config_store_user: Option<String>,
    /// File holding that user's password.
    #[arg(long)]
    pub config_store_password_file: Option<String>,
    /// The controller's full reconcile every this many seconds [default: 60].
    #[arg(long)]
    pub controller_reconcile_secs: Option<String>,
    /// The controller's election lease, in seconds: how long a dead leader keeps the other
    /// controllers waiting [default: 15].
    #[arg(long)]
    pub controller_lease_ttl_secs: Option<String>,
}

impl NodeArgs {
    /// The flags given, by flag name, for [`crate::config::NodeConfig::load`].
    pub fn flags(&self) -> crate::config::Flags {
        use crate::config::*;
        let pairs: [(Setting, &Option<String>); 51] = [
            (ID, &self.id),
            (DATA_DIR, &self.data_dir),
            (PROXY_LISTEN, &self.proxy_listen),
            (ADMIN_LISTEN, &self.admin_listen),
            (PEER_LISTEN, &self.peer_listen),
            (ADVERTISE_PEER, &self.advertise_peer),
            (ETCD_LISTEN, &self.etcd_listen),
            (ETCD_USER, &self.etcd_user),
            (ETCD_PASSWORD_FILE, &self.etcd_password_file),
            (ETCD_MAX_WATCHERS, &self.etcd_max_watchers),
            (INITIAL_CLUSTER, &self.initial_cluster),
            (JOIN, &self.join),
            (CLUSTER_SECRET, &self.cluster_secret),
            (CLUSTER_SECRET_FILE, &self.cluster_secret_file),
            (NAMESPACE, &self.namespace),
            (HISTORY_RETENTION, &self.history_retention),
            (SNAPSHOT_EVERY, &self.snapshot_every),
            (QUOTA_BACKEND_BYTES, &self.quota_backend_bytes),
            (REQUEST_TIMEOUT_MS, &self.request_timeout_ms),
            (SHUTDOWN_GRACE_MS, &self.shutdown_grace_ms),
            (WORKER_THREADS, &self.worker_threads),
            (PROXY_THREADS, &self.proxy_threads),
            (TRUSTED_PROXIES, &self.trusted_proxies),
            (MAX_CONNECTIONS, &self.max_connections),
            (ACCESS_LOG, &self.access_log),
            (INSTANCE_REGISTRY, &self.instance_registry),
            (CONSUL_ADDRESS, &self.consul_address),
            (CONSUL_DATACENTER, &self.consul_datacenter),
            (CONSUL_TOKEN_FILE, &self.consul_token_file),
            (CONSUL_SERVICE, &self.consul_service),
            (CONSUL_SERVICE_ADDRESS, &self.consul_service_address),
            (LOG_FORMAT, &self.log_format),
            (INITIAL_ADMIN, &self.initial_admin),
            (AUTH_MODE, &self.auth_mode),
            (CORS_ORIGINS, &self.cors_origins),
            (RESOURCE_HISTORY, &self.resource_history),
            (HMAC_MAX_SKEW_SECS, &self.hmac_max_skew_secs),
            (MAX_DOCUMENT_BYTES, &self.max_document_bytes),
            (OIDC_ISSUER, &self.oidc_issuer),
            (OIDC_CLIENT_ID, &self.oidc_client_id),
            (OIDC_CLIENT_SECRET, &self.oidc_client_secret),
            (OIDC_CLIENT_SECRET_FILE, &self.oidc_client_secret_file),
            (OIDC_INITIAL_ADMINS, &self.oidc_initial_admin_users),
            (OIDC_REDIRECT_URL, &self.oidc_redirect_url),
            (ROLES, &self.roles),
            (CONTROL_STORE, &self.control_store),
            (CONFIG_STORE, &self.config_store),
            (CONFIG_STORE_USER, &self.config_store_user),
            (CONFIG_STORE_PASSWORD_FILE, &self.config_store_password_file),
            (CONTROLLER_RECONCILE_SECS, &self.controller_reconcile_secs),
            (CONTROLLER_LEASE_TTL_SECS, &self.controller_lease_ttl_secs),
        ];
        pairs
            .into_iter()
            .filter_map(|(s, v)| v.clone().map(|v| (s.flag, v)))
            .collect()
    }
}

/// How the operator commands reach the cluster.
#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// Admin URL of any member.
    #[arg(
        long,
        global = true,
        env = "HERMES_ENDPOINT",
        default_value = "http://127.0.0.1:9080"
    )]
    pub endpoint: String,
    /// Cluster secret, needed for membership changes on clusters that have one.
    #[arg(
        long,
        global = true,
        env = "HERMES_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret.
    #[arg(long, global = true)]
    pub cluster_secret_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MemberAction {
    /// List members with their role, addresses and progress.
    List {
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner (it replicates but does not vote until promoted).
    Add {
        /// The new node's id.
        id: u64,
        /// The new node's peer URL, e.g. http://10.0.0.4:9081.
        peer_url: String,
    },
    /// Make a caught-up learner a voter.
    Promote { id: u64 },
    /// Make a voter the leader (e.g. before restarting the current leader).
    MoveLeader { id: u64 },
    /// Remove a member.
    Remove {
        id: u64,
        /// Remove even if the remaining healthy voters cannot form a quorum.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save a backup of the whole store (control plane included) from any member.
    Save {
        /// Where to write it.
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Found a new single-node cluster from a backup (`hermes snapshot save`, or `etcdctl
    /// snapshot save` against a hermes node) in a new data directory.
    Restore {
        /// The backup.
        file: PathBuf,
        /// The new node's data directory; must not hold a data directory yet.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id.
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// The URL other nodes will use to reach the new node (its `--advertise-peer`).
        #[arg(long, default_value = "http://127.0.0.1:9081")]
        advertise_peer: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Check a node configuration file without starting anything.
    Validate {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_setting_has_its_flag() {
        let cli = Cli::command();
        let node = cli.find_subcommand("node").unwrap();
        let flags: Vec<String> = node
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for s in crate::config::ALL {
            assert!(flags.iter().any(|f| f == s.flag), "{} has no flag", s.flag);
        }
        // And every flag reaches the configuration.
        let args = NodeArgs::default();
        assert_eq!(args.flags().len(), 0);
        // All but -c and --dry-run.
        assert_eq!(crate::config::ALL.len(), flags.len() - 2, "{flags:?}");
    }
}
