//! The replicated store's key layout: where the control plane keeps its records. Resource documents and
//! the meta revision use the original Hermes etcd layout (namespace `default` unchanged,
//! others under `/hermes/ns/<ns>/`), so gateways and the etcd endpoint see what the original
//! controller wrote. Everything else lives under [`CONTROL_PREFIX`], which the etcd endpoint
//! never exposes. Numbers in keys are zero-padded so that key order is numeric order.

use serde::{Deserialize, Serialize};

/// The two configuration kinds (contracts §1), which name the resource directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Domain,
    Cluster,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Cluster => "cluster",
        }
    }

    /// The plural used in paths, keys and response fields (`domains`, `clusters`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Domain => "domains",
            Kind::Cluster => "clusters",
        }
    }
}

/// Control-plane records; hidden from the etcd endpoint.
pub const CONTROL_PREFIX: &str = "/hermes/_cp/";

fn ns_root(ns: &str) -> String {
    if ns == "default" {
        "/hermes/".to_string()
    } else {
        format!("/hermes/ns/{ns}/")
    }
}

/// The key a gateway reads a resource from.
pub fn resource(ns: &str, kind: Kind, name: &str) -> String {
    format!("{}{}/{name}", ns_root(ns), kind.plural())
}

pub fn resources(ns: &str, kind: Kind) -> String {
    format!("{}{}/", ns_root(ns), kind.plural())
}

/// The namespace's control-plane revision, as decimal text (`/hermes/meta/config_revision`).
pub fn meta_revision(ns: &str) -> String {
    format!("{}meta/config_revision", ns_root(ns))
}

/// Gateway instances registered by their lease (§2.4).
pub fn registered_instances(ns: &str) -> String {
    format!("{}instances/", ns_root(ns))
}

pub fn namespace(ns: &str) -> String {
    format!("{CONTROL_PREFIX}namespaces/{ns}")
}

pub fn namespaces() -> String {
    format!("{CONTROL_PREFIX}namespaces/")
}

pub fn history(ns: &str, kind: Kind, name: &str, version: i64) -> String {
    format!("{}{version:020}", history_of(ns, kind, name))
}

pub fn history_of(ns: &str, kind: Kind, name: &str) -> String {
    format!("{CONTROL_PREFIX}history/{ns}/{}/{name}/", kind.as_str())
}

/// The last history version of a resource; survives the resource's deletion so versions
/// continue across delete and re-create.
pub fn history_version(ns: &str, kind: Kind, name: &str) -> String {
    format!("{CONTROL_PREFIX}seq/history/{ns}/{}/{name}", kind.as_str())
}

pub fn change(ns: &str, revision: i64) -> String {
    format!("{}{revision:020}", changes(ns))
}

pub fn changes(ns: &str) -> String {
    format!("{CONTROL_PREFIX}changes/{ns}/")
}

/// The namespace's last change-log revision.
pub fn change_sequence(ns: &str) -> String {
    format!("{CONTROL_PREFIX}seq/changes/{ns}")
}

/// A cluster-wide id counter (`credential`, `group_binding`, `dashboard`).
pub fn counter(name: &str) -> String {
    format!("{CONTROL_PREFIX}seq/{name}")
}

pub fn credential(access_key: &str) -> String {
    format!("{}{access_key}", credentials())
}

pub fn credentials() -> String {
    format!("{CONTROL_PREFIX}credentials/")
}

pub fn user(sub: &str) -> String {
    format!("{}{sub}", users())
}

pub fn users() -> String {
    format!("{CONTROL_PREFIX}users/")
}

/// Set once the first built-in admin has been created, so it is never created twice.
pub fn initial_admin_marker() -> String {
    format!("{CONTROL_PREFIX}bootstrap/initial_admin")
}

/// Set, in the same transaction, when the first credential or the first user is created: from
/// then on first-time setup (anonymous loopback access) is over for good, even if every
/// credential and user is deleted later.
/// Marks that a user record with this `sub` was ever made: it outlives the user's deletion,
/// so that an OpenID Connect identity is made an initial admin on its first record only.
pub fn user_seen(sub: &str) -> String {
    format!("{CONTROL_PREFIX}users_seen/{sub}")
}

pub fn setup_done_marker() -> String {
    format!("{CONTROL_PREFIX}bootstrap/setup_done")
}

/// The subs of every admin user, kept with each user write that changes who is an admin, so
/// that "never remove the last admin" is one pinned record rather than a scan.
pub fn admins() -> String {
    format!("{CONTROL_PREFIX}index/admins")
}

/// Which user owns an e-mail address (lower-cased): e-mails are unique among users.
pub fn email_owner(email: &str) -> String {
    format!("{CONTROL_PREFIX}index/emails/{}", email.to_lowercase())
}

pub fn member(ns: &str, sub: &str) -> String {
    format!("{}{sub}", members(ns))
}

pub fn members(ns: &str) -> String {
    format!("{CONTROL_PREFIX}members/{ns}/")
}

/// Every namespace's members: deleting a user removes its memberships everywhere.
pub fn all_members() -> String {
    format!("{CONTROL_PREFIX}members/")
}

pub fn group_binding(ns: &str, group: &str) -> String {
    format!("{}{group}", group_bindings(ns))
}

pub fn group_bindings(ns: &str) -> String {
    format!("{CONTROL_PREFIX}groups/{ns}/")
}

pub fn signing_key(kid: &str) -> String {
    format!("{}{kid}", signing_keys())
}

pub fn signing_keys() -> String {
    format!("{CONTROL_PREFIX}signing_keys/")
}

pub fn dashboard(ns: &str, id: i64) -> String {
    format!("{}{id:020}", dashboards(ns))
}

pub fn dashboards(ns: &str) -> String {
    format!("{CONTROL_PREFIX}dashboards/{ns}/")
}

pub fn controller(ns: &str, id: &str) -> String {
    format!("{}{id}", controllers(ns))
}

pub fn controllers(ns: &str) -> String {
    format!("{CONTROL_PREFIX}status/controllers/{ns}/")
}

pub fn instance(ns: &str, id: &str) -> String {
    format!("{}{id}", instances(ns))
}

pub fn instances(ns: &str) -> String {
    format!("{CONTROL_PREFIX}status/instances/{ns}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_uses_the_original_layout() {
        assert_eq!(
            resource("default", Kind::Domain, "web"),
            "/hermes/domains/web"
        );
        assert_eq!(
            resource("staging", Kind::Cluster, "b"),
            "/hermes/ns/staging/clusters/b"
        );
        assert_eq!(meta_revision("default"), "/hermes/meta/config_revision");
        assert_eq!(registered_instances("default"), "/hermes/instances/");
        assert!(
            history("default", Kind::Domain, "a", 2) < history("default", Kind::Domain, "a", 10)
        );
        for k in [
            namespace("x"),
            change("x", 1),
            credential("ak"),
            user("builtin:a@b"),
        ] {
            assert!(k.starts_with(CONTROL_PREFIX), "{k}");
        }
    }
}
