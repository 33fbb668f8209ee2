//! The Auth service's calls, for both front ends: switching authentication on and off, and
//! managing users and roles, each with etcd's checks, errors and answers.

use hermes_raft::Header;

use super::records::{self, AuthState, Change, Perm, PermKind, Role, User};
use super::{Caller, ROOT};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::Api;

fn failed(message: &str) -> EtcdError {
    EtcdError::new(Code::FailedPrecondition, format!("etcdserver: {message}"))
}

fn user_not_found() -> EtcdError {
    failed("user name not found")
}

fn role_not_found() -> EtcdError {
    failed("role name not found")
}

fn invalid_management() -> EtcdError {
    EtcdError::invalid("etcdserver: invalid auth management")
}

fn configured_user() -> EtcdError {
    failed(
        "this user is set by the node's configuration (--etcd-user, --etcd-password-file) \
         and is changed there",
    )
}

fn new_key() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

impl Api {
    fn is_configured(&self, name: &str) -> bool {
        self.auth_user() == Some(name)
    }

    /// Changes to stored users are root's, and never touch the configured user.
    fn may_change_user(&self, who: &Caller, name: &str) -> Result<(), EtcdError> {
        who.admin()?;
        if self.is_configured(name) {
            return Err(configured_user());
        }
        Ok(())
    }

    /// Changes stored user `name` with `f`, which answers whether it changed anything.
    async fn change_user(
        &self,
        name: &str,
        f: impl FnMut(&mut User) -> Result<bool, EtcdError>,
    ) -> Result<Header, EtcdError> {
        self.change_record(&records::user_key(name), user_not_found, f)
            .await
    }

    /// Changes stored role `name` with `f`, which answers whether it changed anything.
    async fn change_role(
        &self,
        name: &str,
        f: impl FnMut(&mut Role) -> Result<bool, EtcdError>,
    ) -> Result<Header, EtcdError> {
        self.change_record(&records::role_key(name), role_not_found, f)
            .await
    }

    async fn change_record<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        missing: fn() -> EtcdError,
        mut f: impl FnMut(&mut T) -> Result<bool, EtcdError>,
    ) -> Result<Header, EtcdError> {
        records::update::<T, ()>(&self.node, key, |cur| {
            let mut record = cur.ok_or_else(missing)?;
            let change = if f(&mut record)? {
                Change::Put(record)
            } else {
                Change::Keep
            };
            Ok((change, ()))
        })
        .await?;
        Ok(self.current_header())
    }

    /// Whether authentication is on: set by the configuration, or by AuthEnable. A state
    /// record that cannot be read counts as on: refuse rather than open up.
    pub fn auth_enabled(&self) -> bool {
        self.auth.is_some()
            || records::state(self.node.store()).map_or(true, |s| s.is_some_and(|s| s.enabled))
    }

    /// For a change that would take root away (`takes_root`): refused while authentication is
    /// on, and otherwise made only if AuthEnable does not commit first (the state record is
    /// returned pinned). Without this, an AuthEnable between the check and the change could
    /// leave authentication on with nobody able to manage it.
    fn keep_root(
        &self,
        store: &hermes_storage::store::KvStore,
        takes_root: bool,
    ) -> Result<Vec<records::Pin>, EtcdError> {
        if !takes_root {
            return Ok(Vec::new());
        }
        let (state, pin) = records::state_pinned(store)?;
        if self.auth.is_some() || state.is_some_and(|s| s.enabled) {
            return Err(invalid_management());
        }
        Ok(vec![pin])
    }

    /// etcd's AuthEnable: needs a user `root` holding the `root` role (or a configured user,
    /// with which authentication is on already).
    pub async fn auth_enable(&self, who: &Caller) -> Result<Header, EtcdError> {
        who.admin()?;
        if self.auth.is_none() {
            // The check of the root user and the switch are one transaction: a root user
            // deleted meanwhile cannot leave authentication on with nobody able to sign in.
            records::update_pinned::<AuthState, ()>(
                &self.node,
                &records::state_key(),
                |cur, store| {
                    let (root, pin) = records::user_pinned(store, ROOT)?;
                    let root = root.ok_or_else(|| failed("root user does not exist"))?;
                    if !root.roles.iter().any(|r| r == ROOT) {
                        return Err(failed("root user does not have root role"));
                    }
                    let change = match cur {
                        Some(s) if s.enabled => Change::Keep,
                        Some(s) => Change::Put(AuthState {
                            enabled: true,
                            key: s.key,
                        }),
                        None => Change::Put(AuthState {
                            enabled: true,
                            key: new_key(),
                        }),
                    };
                    Ok((change, (), vec![pin]))
                },
            )
            .await?;
        }
        Ok(self.current_header())
    }

    /// etcd's AuthDisable; every token issued before is revoked. A node whose configuration
    /// sets a user keeps authentication on.
    pub async fn auth_disable(&self, who: &Caller) -> Result<Header, EtcdError> {
        who.admin()?;
        if self.auth.is_some() {
            return Err(failed(
                "authentication is required by this node's --etcd-user; it cannot be turned \
                 off through the API",
            ));
        }
        records::update::<AuthState, ()>(&self.node, &records::state_key(), |cur| {
            Ok(match cur {
                Some(s) if !s.enabled => (Change::Keep, ()),
                _ => (
                    Change::Put(AuthState {
                        enabled: false,
                        key: new_key(),
                    }),
                    (),
                ),
            })
        })
        .await?;
        Ok(self.current_header())
    }

    /// Whether authentication is on, and the revision of the latest auth change.
    pub async fn auth_status(&self) -> Result<(Header, bool, u64), EtcdError> {
        let revision = records::revision(self.node.store()).await?;
        Ok((self.current_header(), self.auth_enabled(), revision))
    }

    pub async fn user_add(
        &self,
        who: &Caller,
        name: &str,
        password: &str,
        no_password: bool,
        hashed_password: &str,
    ) -> Result<Header, EtcdError> {
        who.admin()?;
        if name.is_empty() {
            return Err(EtcdError::invalid("etcdserver: user name is empty"));
        }
        if !hashed_password.is_empty() {
            return Err(EtcdError::invalid(
                "etcdserver: hashed passwords are not taken; send the password itself",
            ));
        }
        if self.is_configured(name) {
            return Err(failed("user name already exists"));
        }
        let password_hash = if no_password {
            None
        } else {
            Some(
                self.guard
                    .hash(password.to_string())
                    .await
                    .map_err(crate::etcd::auth::hashing_error)?,
            )
        };
        let user = User {
            name: name.to_string(),
            password_hash,
            roles: Vec::new(),
        };
        records::update::<User, ()>(&self.node, &records::user_key(name), |cur| match cur {
            Some(_) => Err(failed("user name already exists")),
            None => Ok((Change::Put(user.clone()), ())),
        })
        .await?;
        // Stored users' tokens are signed with the cluster's token key: make sure there is
        // one, also on a node whose configured user keeps authentication on without
        // AuthEnable ever being called.
        records::update::<AuthState, ()>(&self.node, &records::state_key(), |cur| {
            Ok(match cur {
                Some(_) => (Change::Keep, ()),
                None => (
                    Change::Put(AuthState {
                        enabled: false,
                        key: new_key(),
                    }),
                    (),
                ),
            })
        })
        .await?;
        Ok(self.current_header())
    }

    /// A user's roles: for an admin, or for the user itself.
    pub async fn user_get(
        &self,
        who: &Caller,
        name: &str,
    ) -> Result<(Header, Vec<String>), EtcdError> {
        if who.name() != Some(name) {
            who.admin()?;
        }
        if self.is_configured(name) {
            return Ok((self.current_header(), vec![ROOT.to_string()]));
        }
        self.node.read_barrier().await?;
        let user = records::user(self.node.store(), name)?.ok_or_else(user_not_found)?;
        Ok((self.current_header(), user.roles))
    }

    pub async fn user_list(&self, who: &Caller) -> Result<(Header, Vec<String>), EtcdError> {
        who.admin()?;
        self.node.read_barrier().await?;
        let mut names: Vec<String> = records::users(self.node.store())
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect();
        names.extend(self.auth_user().map(str::to_string));
        names.sort();
        names.dedup();
        Ok((self.current_header(), names))
    }

    pub async fn user_delete(&self, who: &Caller, name: &str) -> Result<Header, EtcdError> {
        self.may_change_user(who, name)?;
        records::update_pinned::<User, ()>(&self.node, &records::user_key(name), |cur, store| {
            let pins = self.keep_root(store, name == ROOT)?;
            match cur {
                None => Err(user_not_found()),
                Some(_) => Ok((Change::Delete, (), pins)),
            }
        })
        .await?;
        Ok(self.current_header())
    }

    /// Changes a password; the user's earlier tokens stop working.
    pub async fn user_change_password(
        &self,
        who: &Caller,
        name: &str,
        password: &str,
        hashed_password: &str,
    ) -> Result<Header, EtcdError> {
        self.may_change_user(who, name)?;
        if !hashed_password.is_empty() {
            return Err(EtcdError::invalid(
                "etcdserver: hashed passwords are not taken; send the password itself",
            ));
        }
        let hashed = self
            .guard
            .hash(password.to_string())
            .await
            .map_err(crate::etcd::auth::hashing_error)?;
        self.change_user(name, |u| {
            u.password_hash = Some(hashed.clone());
            Ok(true)
        })
        .await
    }

    pub async fn user_grant_role(
        &self,
        who: &Caller,
        name: &str,
        role: &str,
    ) -> Result<Header, EtcdError> {
        self.may_change_user(who, name)?;
        // The role must exist when the grant is written: pinned, so that a role deleted
        // meanwhile (whose deletion has already taken it from every user) is not granted.
        records::update_pinned::<User, ()>(&self.node, &records::user_key(name), |cur, store| {
            let Some(mut u) = cur else {
                return Err(user_not_found());
            };
            let mut pins = Vec::new();
            if role != ROOT {
                let (found, pin) = records::role_pinned(store, role)?;
                if found.is_none() {
                    return Err(role_not_found());
                }
                pins.push(pin);
            }
            if u.roles.iter().any(|r| r == role) {
                return Ok((Change::Keep, (), pins));
            }
            u.roles.push(role.to_string());
            u.roles.sort();
            Ok((Change::Put(u), (), pins))
        })
        .await?;
        Ok(self.current_header())
    }

    pub async fn user_revoke_role(
        &self,
        who: &Caller,
        name: &str,
        role: &str,
    ) -> Result<Header, EtcdError> {
        self.may_change_user(who, name)?;
        records::update_pinned::<User, ()>(&self.node, &records::user_key(name), |cur, store| {
            let pins = self.keep_root(store, name == ROOT && role == ROOT)?;
            let mut user = cur.ok_or_else(user_not_found)?;
            let before = user.roles.len();
            user.roles.retain(|r| r != role);
            if user.roles.len() == before {
                return Err(failed("role is not granted to the user"));
            }
            Ok((Change::Put(user), (), pins))
        })
        .await?;
        Ok(self.current_header())
    }

    pub async fn role_add(&self, who: &Caller, name: &str) -> Result<Header, EtcdError> {
        who.admin()?;
        if name.is_empty() {
            return Err(EtcdError::invalid("etcdserver: role name is empty"));
        }
        let role = Role {
            name: name.to_string(),
            perms: Vec::new(),
        };
        self.node.read_barrier().await?;
        if records::role(self.node.store(), name)?.is_some() {
            return Err(failed("role name already exists"));
        }
        // A deletion of an older role of this name that stopped half-way may have left it on
        // some users: take it from them first, so that the new role grants nobody anything.
        self.take_role_from_users(name).await?;
        records::update::<Role, ()>(&self.node, &records::role_key(name), |cur| match cur {
            Some(_) => Err(failed("role name already exists")),
            None => Ok((Change::Put(role.clone()), ())),
        })
        .await?;
        Ok(self.current_header())
    }

    /// A role's permissions: for an admin, or for a user holding the role.
    pub async fn role_get(
        &self,
        who: &Caller,
        name: &str,
    ) -> Result<(Header, Vec<Perm>), EtcdError> {
        if who.admin().is_err() {
            let holds = match who.name() {
                Some(user) => records::user(self.node.store(), user)?
                    .is_some_and(|u| u.roles.iter().any(|r| r == name)),
                None => false,
            };
            if !holds {
                return Err(crate::etcd::rbac::perms::denied());
            }
        }
        self.node.read_barrier().await?;
        match records::role(self.node.store(), name)? {
            Some(role) => Ok((self.current_header(), role.perms)),
            // The configured user's role: it may do everything by being root.
            None if name == ROOT && self.auth.is_some() => Ok((self.current_header(), Vec::new())),
            None => Err(role_not_found()),
        }
    }

    pub async fn role_list(&self, who: &Caller) -> Result<(Header, Vec<String>), EtcdError> {
        who.admin()?;
        self.node.read_barrier().await?;
        let mut names: Vec<String> = records::roles(self.node.store())
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        if self.auth.is_some() {
            names.push(ROOT.to_string());
        }
        names.sort();
        names.dedup();
        Ok((self.current_header(), names))
    }

    /// Deletes a role and takes it from every user who held it.
    pub async fn role_delete(&self, who: &Caller, name: &str) -> Result<Header, EtcdError> {
        who.admin()?;
        records::update_pinned::<Role, ()>(&self.node, &records::role_key(name), |cur, store| {
            let pins = self.keep_root(store, name == ROOT)?;
            match cur {
                None => Err(role_not_found()),
                Some(_) => Ok((Change::Delete, (), pins)),
            }
        })
        .await?;
        self.take_role_from_users(name).await?;
        Ok(self.current_header())
    }

    /// Removes role `name` from every user holding it.
    async fn take_role_from_users(&self, name: &str) -> Result<(), EtcdError> {
        for user in records::users(self.node.store()).await? {
            if !user.roles.iter().any(|r| r == name) {
                continue;
            }
            records::update::<User, ()>(&self.node, &records::user_key(&user.name), |cur| {
                Ok(match cur {
                    Some(mut u) if u.roles.iter().any(|r| r == name) => {
                        u.roles.retain(|r| r != name);
                        (Change::Put(u), ())
                    }
                    _ => (Change::Keep, ()),
                })
            })
            .await?;
        }
        Ok(())
    }

    /// The rights `who` has now, for a long-lived stream that acts on them again later (a
    /// watch stream creating watchers): a stored user's current roles, none once the user is
    /// gone or, for a stream opened without a token, once authentication is on.
    pub fn current_rights(&self, who: &Caller) -> Caller {
        let nothing = |name: &str| Caller::User {
            name: name.to_string(),
            read: Default::default(),
            write: Default::default(),
        };
        let enabled = self.auth_enabled();
        match who.name() {
            None if !enabled => who.clone(),
            None => nothing(""),
            Some(name) if self.is_configured(name) => who.clone(),
            Some(_) if !enabled => Caller::Root { user: None },
            Some(name) => match records::user(self.node.store(), name) {
                Ok(Some(user)) => {
                    super::caller_for(self.node.store(), &user).unwrap_or_else(|_| nothing(name))
                }
                _ => nothing(name),
            },
        }
    }

    /// Grants a permission; one on the same key range as an existing one replaces it.
    pub async fn role_grant_permission(
        &self,
        who: &Caller,
        name: &str,
        kind: i32,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Header, EtcdError> {
        who.admin()?;
        let kind = PermKind::from_proto(kind).ok_or_else(|| {
            EtcdError::invalid(format!(
                "etcdserver: invalid permission type {kind}; READ is 0, WRITE 1, READWRITE 2"
            ))
        })?;
        let perm = Perm {
            kind,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        };
        self.change_role(name, |role| {
            match role
                .perms
                .iter_mut()
                .find(|p| p.key == perm.key && p.range_end == perm.range_end)
            {
                Some(existing) => existing.kind = perm.kind,
                None => role.perms.push(perm.clone()),
            }
            role.perms
                .sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
            Ok(true)
        })
        .await
    }

    /// Revokes the permission on exactly this key range.
    pub async fn role_revoke_permission(
        &self,
        who: &Caller,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Header, EtcdError> {
        who.admin()?;
        self.change_role(name, |role| {
            let before = role.perms.len();
            role.perms
                .retain(|p| !(p.key == key && p.range_end == range_end));
            if role.perms.len() == before {
                return Err(failed("permission is not granted to the role"));
            }
            Ok(true)
        })
        .await
    }
}
