//! Credentials, users, memberships, group bindings, session signing keys and dashboards on the
//! replicated store. Each change that the original audited writes its audit row in the same
//! transaction (user changes in namespace `_global`, as the original did).

use super::{encode, Replicated, Tx};
use crate::auth::token::{KeyStatus, SigningKey};
use crate::model::{now_rfc3339, Credential, Dashboard, GroupBinding, Member, Operator, User};
use crate::store::{
    role_changed, scopes_changed, ControlError, CredentialUpdate, Result, UserChange,
};
use hermes_storage::keys;

/// Where user changes are audited.
const GLOBAL: &str = "_global";

fn credential_not_found(id: i64) -> ControlError {
    ControlError::NotFound(format!("credential {id} not found"))
}

fn unsealable(what: &str, e: crate::seal::SealError) -> ControlError {
    ControlError::Internal(format!("{what}: {e}"))
}

impl Replicated {
    /// A credential as stored: its secret key sealed.
    fn sealed_credential(&self, c: &Credential) -> Result<Vec<u8>> {
        let secret_key = self
            .sealer
            .seal(&c.secret_key)
            .map_err(|e| unsealable("sealing a credential", e))?;
        encode(&Credential {
            secret_key,
            ..c.clone()
        })
    }

    /// A credential as read from the store, with its secret key opened.
    pub(super) fn opened_credential(&self, mut c: Credential) -> Result<Credential> {
        c.secret_key = self
            .sealer
            .open(&c.secret_key)
            .map_err(|e| unsealable(&format!("credential {}", c.access_key), e))?;
        Ok(c)
    }

    fn sealed_key(&self, k: &SigningKey) -> Result<Vec<u8>> {
        let secret = self
            .sealer
            .seal(&k.secret)
            .map_err(|e| unsealable("sealing a signing key", e))?;
        encode(&SigningKey {
            secret,
            ..k.clone()
        })
    }

    pub(super) fn opened_key(&self, mut k: SigningKey) -> Result<SigningKey> {
        k.secret = self
            .sealer
            .open(&k.secret)
            .map_err(|e| unsealable(&format!("signing key {}", k.kid), e))?;
        Ok(k)
    }

    pub(super) async fn list_credentials(&self, ns: &str) -> Result<Vec<Credential>> {
        self.barrier().await?;
        let mut all = Vec::new();
        for c in self
            .scan_records::<Credential>(&keys::credentials())
            .await?
        {
            if c.namespace == ns {
                all.push(self.opened_credential(c)?);
            }
        }
        all.sort_by_key(|c| c.id);
        Ok(all)
    }

    async fn find_credential(&self, ns: &str, id: i64) -> Result<Credential> {
        self.list_credentials(ns)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| credential_not_found(id))
    }

    pub(super) async fn add_credential(
        &self,
        credential: Credential,
        operator: &Operator,
    ) -> Result<Credential> {
        self.attempt(|s| {
            let mut tx = Tx::default();
            let key = keys::credential(&credential.access_key);
            if s.get(&key).is_some() {
                return Err(ControlError::AlreadyExists(
                    "access key already exists".into(),
                ));
            }
            tx.pin(&key, None);
            let now = now_rfc3339();
            let saved = Credential {
                id: s.next_counter(&mut tx, &keys::counter("credential")),
                created_at: now.clone(),
                updated_at: now,
                ..credential.clone()
            };
            tx.put(&key, s.sealed_credential(&saved)?);
            tx.put(&keys::setup_done_marker(), now_rfc3339().into_bytes());
            let audit = Self::audit_entry("credential", &saved.access_key, "create", operator);
            s.log_changes(&mut tx, &saved.namespace, vec![audit])?;
            Ok((tx, saved))
        })
        .await
    }

    pub(super) async fn change_credential(
        &self,
        ns: &str,
        id: i64,
        update: CredentialUpdate,
        operator: &Operator,
    ) -> Result<Credential> {
        let found = self.find_credential(ns, id).await?;
        self.attempt(|s| {
            let key = keys::credential(&found.access_key);
            let (current, kv) = s
                .get_record::<Credential>(&key)?
                .ok_or_else(|| credential_not_found(id))?;
            let current = s.opened_credential(current)?;
            scopes_changed(update.checked_scopes.as_deref(), &current.scopes)?;
            let saved = Credential {
                description: update
                    .description
                    .clone()
                    .unwrap_or_else(|| current.description.clone()),
                enabled: update.enabled.unwrap_or(current.enabled),
                scopes: update
                    .scopes
                    .clone()
                    .unwrap_or_else(|| current.scopes.clone()),
                updated_at: now_rfc3339(),
                ..current
            };
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.put(&key, s.sealed_credential(&saved)?);
            let audit = Self::audit_entry("credential", &saved.access_key, "update", operator);
            s.log_changes(&mut tx, ns, vec![audit])?;
            Ok((tx, saved))
        })
        .await
    }

    pub(super) async fn remove_credential(
        &self,
        ns: &str,
        id: i64,
        checked_scopes: Option<&[String]>,
        operator: &Operator,
    ) -> Result<()> {
        let found = self.find_credential(ns, id).await?;
        self.attempt(|s| {
            let key = keys::credential(&found.access_key);
            let (current, kv) = s
                .get_record::<Credential>(&key)?
                .ok_or_else(|| credential_not_found(id))?;
            scopes_changed(checked_scopes, &current.scopes)?;
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.delete(&key);
            let audit = Self::audit_entry("credential", &found.access_key, "delete", operator);
            s.log_changes(&mut tx, ns, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn add_user(
        &self,
        user: User,
        action: &str,
        operator: &Operator,
    ) -> Result<()> {
        self.attempt(|s| {
            let key = keys::user(&user.sub);
            if s.get(&key).is_some() {
                return Err(ControlError::AlreadyExists("user already exists".into()));
            }
            let mut user = user.clone();
            let seen = keys::user_seen(&user.sub);
            // Admin rights a sign-in grants by itself (OpenID Connect initial admins) hold for
            // the identity's first record only: one deleted or demoted by an admin does not
            // become admin again by signing in.
            if action == crate::store::SYNC_ACTION && s.get(&seen).is_some() {
                user.is_admin = false;
            }
            let mut tx = Tx::default();
            tx.pin(&key, None);
            tx.pin(&seen, s.get(&seen).as_deref());
            tx.put(&seen, now_rfc3339().into_bytes());
            tx.put(&key, encode(&user)?);
            s.index_user_change(&mut tx, None, Some(&user))?;
            tx.put(&keys::setup_done_marker(), now_rfc3339().into_bytes());
            let audit = Self::audit_entry("user", &user.sub, action, operator);
            s.log_changes(&mut tx, GLOBAL, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn change_user(
        &self,
        sub: &str,
        action: Option<&str>,
        operator: &Operator,
        change: &UserChange<'_>,
    ) -> Result<User> {
        self.attempt(|s| {
            let key = keys::user(sub);
            let (before, kv) = s
                .get_record::<User>(&key)?
                .ok_or_else(|| ControlError::NotFound("user not found".into()))?;
            let mut user = before.clone();
            change(&mut user)?;
            user.sub = before.sub.clone();
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.put(&key, encode(&user)?);
            s.index_user_change(&mut tx, Some(&before), Some(&user))?;
            if let Some(action) = action {
                let audit = Self::audit_entry("user", &user.sub, action, operator);
                s.log_changes(&mut tx, GLOBAL, vec![audit])?;
            }
            Ok((tx, user))
        })
        .await
    }

    /// Deletes the user and every membership of theirs. A membership made meanwhile rewrites
    /// the user's record (see [`Self::put_member`]), which fails this transaction's pin: the
    /// memberships are scanned again, so none outlives the user to be inherited by whoever
    /// next holds the `sub` (a new account with the same e-mail, or an OpenID Connect
    /// identity whose record a later request makes anew). [`Self::attempt`]'s loop by hand,
    /// as the scan is asynchronous.
    pub(super) async fn remove_user(&self, sub: &str, operator: &Operator) -> Result<()> {
        for _ in 0..super::ATTEMPTS {
            self.barrier().await?;
            // The user before the scan: a membership applied after this read has rewritten
            // the record and fails the pin; one applied before it is in the scan, since the
            // local state only moves forward.
            let key = keys::user(sub);
            let (before, kv) = self
                .get_record::<User>(&key)?
                .ok_or_else(|| ControlError::NotFound("user not found".into()))?;
            let memberships: Vec<String> = self
                .scan_records::<Member>(&keys::all_members())
                .await?
                .into_iter()
                .filter(|m| m.user_sub == sub)
                .map(|m| keys::member(&m.namespace, sub))
                .collect();
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.delete(&key);
            self.index_user_change(&mut tx, Some(&before), None)?;
            for m in &memberships {
                tx.delete(m);
            }
            let audit = Self::audit_entry("user", sub, "delete_user", operator);
            self.log_changes(&mut tx, GLOBAL, vec![audit])?;
            if tx.commit(&self.node).await?.is_some() {
                return Ok(());
            }
        }
        Err(super::busy())
    }

    /// Pins the user a membership is for and rewrites their record unchanged, so that a
    /// concurrent [`Self::remove_user`] either lands first (and this plan finds no user) or
    /// sees its pin fail and scans the memberships again.
    pub(super) fn pin_member_user(&self, tx: &mut Tx, sub: &str) -> Result<()> {
        let key = keys::user(sub);
        let kv = self.get(&key).ok_or_else(|| {
            ControlError::NotFound("user not found (user must login at least once)".into())
        })?;
        tx.pin(&key, Some(&kv));
        tx.put(&key, kv.value.clone());
        Ok(())
    }

    pub(super) async fn add_initial_admin(&self, user: User) -> Result<bool> {
        self.attempt(|s| {
            let marker = keys::initial_admin_marker();
            let mut tx = Tx::default();
            if s.get(&marker).is_some() {
                return Ok((tx, false));
            }
            tx.pin(&marker, None);
            tx.put(&marker, now_rfc3339().into_bytes());
            let key = keys::user(&user.sub);
            let existing = s.get(&key);
            tx.pin(&key, existing.as_deref());
            let created = existing.is_none();
            if created {
                tx.put(&key, encode(&user)?);
                s.index_user_change(&mut tx, None, Some(&user))?;
                tx.put(&keys::setup_done_marker(), now_rfc3339().into_bytes());
                let audit = Self::audit_entry(
                    "user",
                    &user.sub,
                    "create_builtin_user",
                    &Operator::default(),
                );
                s.log_changes(&mut tx, GLOBAL, vec![audit])?;
            }
            Ok((tx, created))
        })
        .await
    }

    /// Whether first-time setup is still open: no credential or user was ever created.
    /// Local reads of a few keys: this runs on every anonymous request.
    pub(super) async fn setup_is_open(&self) -> Result<bool> {
        if self.get(&keys::setup_done_marker()).is_some() {
            return Ok(false);
        }
        Ok(self.scan_limited(&keys::credentials(), 1).await?.is_empty()
            && self.scan_limited(&keys::users(), 1).await?.is_empty())
    }

    /// Adds to `tx` what a user write changes in the indexes (who is an admin, who owns which
    /// e-mail), pinning what it read. Refuses to remove the last admin and to give a user an
    /// e-mail another user has.
    fn index_user_change(
        &self,
        tx: &mut Tx,
        before: Option<&User>,
        after: Option<&User>,
    ) -> Result<()> {
        let Some(sub) = after.or(before).map(|u| u.sub.clone()) else {
            return Ok(());
        };
        let was_admin = before.is_some_and(|u| u.is_admin);
        let is_admin = after.is_some_and(|u| u.is_admin);
        if was_admin != is_admin {
            let key = keys::admins();
            let current = self.get_record::<Vec<String>>(&key)?;
            tx.pin(&key, current.as_ref().map(|(_, kv)| kv.as_ref()));
            let mut admins = current.map(|(a, _)| a).unwrap_or_default();
            admins.retain(|a| *a != sub);
            if is_admin {
                admins.push(sub.clone());
                admins.sort();
            } else if admins.is_empty() {
                return Err(ControlError::Conflict(format!(
                    "{sub} is the last admin: make another user an admin first"
                )));
            }
            tx.put(&key, encode(&admins)?);
        }
        let email = |u: Option<&User>| {
            u.map(|u| u.email.trim().to_lowercase())
                .filter(|e| !e.is_empty())
        };
        let (old, new) = (email(before), email(after));
        if old != new {
            if let Some(new) = &new {
                let key = keys::email_owner(new);
                let owner = self.get(&key);
                if owner.as_ref().is_some_and(|kv| kv.value != sub.as_bytes()) {
                    return Err(ControlError::AlreadyExists(format!(
                        "e-mail {new} already belongs to another user"
                    )));
                }
                tx.pin(&key, owner.as_deref());
                tx.put(&key, sub.clone().into_bytes());
            }
            if let Some(old) = &old {
                let key = keys::email_owner(old);
                if let Some(kv) = self.get(&key).filter(|kv| kv.value == sub.as_bytes()) {
                    tx.pin(&key, Some(&kv));
                    tx.delete(&key);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn put_member(
        &self,
        member: Member,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.attempt(|s| {
            let key = keys::member(&member.namespace, &member.user_sub);
            let mut tx = Tx::default();
            s.pin_member_user(&mut tx, &member.user_sub)?;
            let current = s.get_record::<Member>(&key)?;
            role_changed(seen, current.as_ref().map(|(m, _)| m.role.as_str()))?;
            tx.pin(&key, current.as_ref().map(|(_, kv)| kv.as_ref()));
            tx.put(&key, encode(&member)?);
            let action = format!("set_role:{}", member.role);
            let audit = Self::audit_entry("member", &member.user_sub, &action, operator);
            s.log_changes(&mut tx, &member.namespace, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn delete_member(
        &self,
        ns: &str,
        sub: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.attempt(|s| {
            let key = keys::member(ns, sub);
            let (current, kv) = s
                .get_record::<Member>(&key)?
                .ok_or_else(|| ControlError::NotFound("member not found".into()))?;
            role_changed(seen, Some(&current.role))?;
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.delete(&key);
            let audit = Self::audit_entry("member", sub, "remove", operator);
            s.log_changes(&mut tx, ns, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn put_group_binding(
        &self,
        ns: &str,
        group: &str,
        role: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.attempt(|s| {
            let key = keys::group_binding(ns, group);
            let mut tx = Tx::default();
            let existing = s.get_record::<GroupBinding>(&key)?;
            role_changed(seen, existing.as_ref().map(|(b, _)| b.role.as_str()))?;
            tx.pin(&key, existing.as_ref().map(|(_, kv)| kv.as_ref()));
            let id = match &existing {
                Some((b, _)) => b.id,
                None => s.next_counter(&mut tx, &keys::counter("group_binding")),
            };
            let binding = GroupBinding {
                id,
                namespace: ns.to_string(),
                group: group.to_string(),
                role: role.to_string(),
            };
            tx.put(&key, encode(&binding)?);
            let action = format!("set_role:{role}");
            let audit = Self::audit_entry("group_binding", group, &action, operator);
            s.log_changes(&mut tx, ns, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn delete_group_binding(
        &self,
        ns: &str,
        group: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.attempt(|s| {
            let key = keys::group_binding(ns, group);
            let (current, kv) = s
                .get_record::<GroupBinding>(&key)?
                .ok_or_else(|| ControlError::NotFound("group binding not found".into()))?;
            role_changed(seen, Some(&current.role))?;
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.delete(&key);
            let audit = Self::audit_entry("group_binding", group, "remove", operator);
            s.log_changes(&mut tx, ns, vec![audit])?;
            Ok((tx, ()))
        })
        .await
    }

    /// The kid of the active signing key lives at one key, so that concurrent first starts
    /// and rotations serialize on it.
    fn active_key_pointer() -> String {
        keys::counter("active_signing_key")
    }

    pub(super) async fn first_signing_key(&self, now: i64) -> Result<()> {
        let fresh = SigningKey::generate(now);
        self.attempt(|s| {
            let pointer = Self::active_key_pointer();
            let mut tx = Tx::default();
            if s.get(&pointer).is_some() {
                return Ok((tx, ()));
            }
            tx.pin(&pointer, None);
            tx.put(&keys::signing_key(&fresh.kid), s.sealed_key(&fresh)?);
            tx.put(&pointer, fresh.kid.clone().into_bytes());
            Ok((tx, ()))
        })
        .await
    }

    pub(super) async fn rotate_keys(&self, now: i64, grace: i64) -> Result<SigningKey> {
        let fresh = SigningKey::generate(now);
        for _ in 0..8 {
            self.barrier().await?;
            let existing: Vec<SigningKey> = self.scan_records(&keys::signing_keys()).await?;
            let pointer = Self::active_key_pointer();
            let mut tx = Tx::default();
            tx.pin(&pointer, self.get(&pointer).as_deref());
            for key in existing {
                let at = keys::signing_key(&key.kid);
                match key.status {
                    KeyStatus::Active => {
                        let retired = SigningKey {
                            status: KeyStatus::Retired,
                            expires_at: Some(now + grace),
                            ..self.opened_key(key)?
                        };
                        tx.put(&at, self.sealed_key(&retired)?);
                    }
                    KeyStatus::Retired if !key.usable(now) => tx.delete(&at),
                    KeyStatus::Retired => {}
                }
            }
            tx.put(&keys::signing_key(&fresh.kid), self.sealed_key(&fresh)?);
            tx.put(&pointer, fresh.kid.clone().into_bytes());
            if tx.commit(&self.node).await?.is_some() {
                return Ok(fresh);
            }
        }
        Err(ControlError::Unavailable(
            "signing keys kept changing during the rotation; try again".into(),
        ))
    }

    pub(super) async fn put_dashboard(
        &self,
        ns: &str,
        dashboard: Dashboard,
    ) -> Result<(Dashboard, bool)> {
        self.attempt(|s| {
            let mut tx = Tx::default();
            let inserted = dashboard.id <= 0;
            let saved = if inserted {
                Dashboard {
                    id: s.next_counter(&mut tx, &keys::counter("dashboard")),
                    ..dashboard.clone()
                }
            } else {
                let key = keys::dashboard(ns, dashboard.id);
                let kv = s.get(&key).ok_or_else(|| {
                    ControlError::NotFound(format!("grafana dashboard {} not found", dashboard.id))
                })?;
                tx.pin(&key, Some(&kv));
                dashboard.clone()
            };
            tx.put(&keys::dashboard(ns, saved.id), encode(&saved)?);
            Ok((tx, (saved, inserted)))
        })
        .await
    }

    pub(super) async fn remove_dashboard(&self, ns: &str, id: i64) -> Result<()> {
        self.attempt(|s| {
            let key = keys::dashboard(ns, id);
            let kv = s.get(&key).ok_or_else(|| {
                ControlError::NotFound(format!("grafana dashboard {id} not found"))
            })?;
            let mut tx = Tx::default();
            tx.pin(&key, Some(&kv));
            tx.delete(&key);
            Ok((tx, ()))
        })
        .await
    }
}
