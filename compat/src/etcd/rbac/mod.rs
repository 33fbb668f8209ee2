//! etcd's role-based access control on the etcd endpoint: users with passwords, roles
//! granting read and write on key ranges, the `root` role that may do anything, and
//! AuthEnable/AuthDisable, kept in the replicated store ([`records`]) and checked on every
//! request ([`perms`]). What each call requires follows etcd 3.4 (see docs/etcd-api.md for the
//! few places where Hermes is stricter). A user set by the node's configuration
//! (`--etcd-user`) is a root user that no API call can remove, and keeps authentication on.

pub mod manage;
pub mod perms;
pub mod records;

pub use perms::Caller;

use hermes_storage::KvStore;

use crate::etcd::error::EtcdError;

/// The role that may do anything.
pub const ROOT: &str = "root";

/// What a stored user may do, from its roles as they are now (a role deleted meanwhile
/// grants nothing).
pub fn caller_for(store: &KvStore, user: &records::User) -> Result<Caller, EtcdError> {
    if user.roles.iter().any(|r| r == ROOT) {
        return Ok(Caller::Root {
            user: Some(user.name.clone()),
        });
    }
    let mut read = perms::Ranges::default();
    let mut write = perms::Ranges::default();
    for name in &user.roles {
        let Some(role) = records::role(store, name)? else {
            continue;
        };
        for p in &role.perms {
            if p.kind.reads() {
                read.add(&p.key, &p.range_end);
            }
            if p.kind.writes() {
                write.add(&p.key, &p.range_end);
            }
        }
    }
    Ok(Caller::User {
        name: user.name.clone(),
        read,
        write,
    })
}
