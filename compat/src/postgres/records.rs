//! Credentials, users, memberships, group bindings, session signing keys, controller and
//! instance status and dashboards in the original's tables (contract §5.1), with the audit rows
//! the original wrote (credential, member and binding changes in the request's namespace, user
//! changes in `_global`).
//!
//! What the replicated store keeps beyond those tables is derived from them, since this store
//! adds no column:
//! - A credential for all namespaces is stored with namespace `*`, which no namespace can be
//!   named; original servers never compare a credential's namespace (§4.1), so for them it
//!   keeps working everywhere, as every credential did.
//! - A user's token epoch is a digest of the password hash: every password change or reset
//!   writes a new hash (a fresh salt), which ends the sessions signed before it.
//! - "Setup was done" and "an initial admin was made" are read from the change log, which is
//!   never pruned: a credential or user audit row means setup is over, a
//!   `create_builtin_user` row that the initial admin was made.
//!
//! Secrets stay as the original stores them, so original servers sharing the database verify
//! what a node writes: credential secret keys in plaintext (HMAC needs them; §10.1 S5 is the
//! database's access control to carry here) and signing keys as raw bytes.

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Transaction};

use super::resources::insert_audit;
use super::PgControl;
use hermes_control::auth::token::{KeyStatus, SigningKey};
use hermes_control::model::{
    ControllerStatus, Credential, Dashboard, GroupBinding, InstanceStatus, Member, Operator, User,
};
use hermes_control::store::{
    role_changed, scopes_changed, ControlError, CredentialUpdate, Result, UserChange, SYNC_ACTION,
};

/// Where user changes are audited (as the original).
const GLOBAL: &str = "_global";
/// The namespace column of a credential for all namespaces.
const ALL_NAMESPACES: &str = "*";
/// The audit action that marks the initial admin's creation.
const INITIAL_ADMIN: &str = "create_builtin_user";

/// Serializes user writes among Hermes nodes, so the last-admin and e-mail checks see every
/// committed write; and signing-key changes, so two first starts create one active key.
const LOCK_USERS: &str = "SELECT pg_advisory_xact_lock(hashtextextended('users', 3))";
const LOCK_KEYS: &str = "SELECT pg_advisory_xact_lock(hashtextextended('jwt_signing_keys', 3))";

/// A `TIMESTAMPTZ` column as the API shows times: RFC 3339 in UTC, to the second.
fn utc(column: &str) -> String {
    format!(r#"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#)
}

/// The token epoch of a password hash (0 for none: OpenID Connect users).
fn epoch_of(password_hash: &str) -> u64 {
    if password_hash.is_empty() {
        return 0;
    }
    let digest = Sha256::digest(password_hash.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn is_code(e: &tokio_postgres::Error, code: &SqlState) -> bool {
    e.code() == Some(code)
}

fn credential_not_found(id: i64) -> ControlError {
    ControlError::NotFound(format!("credential {id} not found"))
}

fn dashboard_not_found(id: i64) -> ControlError {
    ControlError::NotFound(format!("grafana dashboard {id} not found"))
}

fn last_admin(sub: &str) -> ControlError {
    ControlError::Conflict(format!(
        "{sub} is the last admin: make another user an admin first"
    ))
}

impl PgControl {
    // --- credentials ---

    fn credential_columns() -> String {
        format!(
            "id, namespace, access_key, secret_key, description, scopes, enabled, \
             {} AS created, {} AS updated",
            utc("created_at"),
            utc("updated_at")
        )
    }

    fn credential_of(&self, row: &Row) -> Result<Credential> {
        let namespace: String = self.column(row, "namespace")?;
        Ok(Credential {
            id: self.column(row, "id")?,
            all_namespaces: namespace == ALL_NAMESPACES,
            namespace,
            access_key: self.column(row, "access_key")?,
            secret_key: self.column(row, "secret_key")?,
            description: self.column(row, "description")?,
            scopes: self.column(row, "scopes")?,
            enabled: self.column(row, "enabled")?,
            created_at: self.column(row, "created")?,
            updated_at: self.column(row, "updated")?,
        })
    }

    /// The namespace's credentials and those for all namespaces, by id.
    pub async fn credentials(&self, ns: &str) -> Result<Vec<Credential>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM api_credentials WHERE namespace = $1 OR namespace = $2 ORDER BY id",
            Self::credential_columns()
        );
        let rows = client
            .query(&sql, &[&ns, &ALL_NAMESPACES])
            .await
            .map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.credential_of(r)).collect()
    }

    pub async fn credential_by_access_key(&self, access_key: &str) -> Result<Option<Credential>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM api_credentials WHERE access_key = $1",
            Self::credential_columns()
        );
        let row = client
            .query_opt(&sql, &[&access_key])
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.credential_of(&r)).transpose()
    }

    /// Open while no credential or user exists and none ever did (the change log remembers).
    /// Once closed it stays closed, so the answer is kept.
    pub async fn setup_open(&self) -> Result<bool> {
        if self.setup_closed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM api_credentials) \
                     OR EXISTS (SELECT 1 FROM users) \
                     OR EXISTS (SELECT 1 FROM change_log WHERE kind IN ('credential', 'user')) \
                     AS closed",
                &[],
            )
            .await
            .map_err(|e| self.db(e))?;
        let closed: bool = self.column(&row, "closed")?;
        if closed {
            self.setup_closed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(!closed)
    }

    pub async fn create_credential(
        &self,
        credential: Credential,
        operator: &Operator,
    ) -> Result<Credential> {
        let namespace = if credential.all_namespaces {
            ALL_NAMESPACES
        } else {
            credential.namespace.as_str()
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        if credential.all_namespaces {
            // An original server opens a namespace without credentials of its own to anyone
            // (its first-time setup, §10.1 S1). `default` holds its user administration: it
            // keeps a credential of its own before one for all namespaces (which original
            // servers count in no namespace) may exist.
            let guarded = tx
                .query_opt(
                    "SELECT 1 FROM api_credentials WHERE namespace = 'default' LIMIT 1",
                    &[],
                )
                .await
                .map_err(|e| self.db(e))?;
            if guarded.is_none() {
                return Err(ControlError::Conflict(
                    "on a database original servers may share, create a credential in namespace \
                     default first: an original server serves a namespace with no credential \
                     of its own to anyone, and counts one for all namespaces in none"
                        .into(),
                ));
            }
        }
        let sql = format!(
            "INSERT INTO api_credentials \
                 (namespace, access_key, secret_key, description, scopes, enabled) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (access_key) DO NOTHING \
             RETURNING {}",
            Self::credential_columns()
        );
        let row = tx
            .query_opt(
                &sql,
                &[
                    &namespace,
                    &credential.access_key,
                    &credential.secret_key,
                    &credential.description,
                    &credential.scopes,
                    &credential.enabled,
                ],
            )
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| ControlError::AlreadyExists("access key already exists".into()))?;
        let saved = self.credential_of(&row)?;
        // Audited where it was asked for (a credential for all namespaces has no namespace).
        self.audit_in(
            &tx,
            &credential.namespace,
            "credential",
            &saved.access_key,
            "create",
            operator,
        )
        .await?;
        self.commit(tx).await?;
        Ok(saved)
    }

    pub async fn update_credential(
        &self,
        ns: &str,
        id: i64,
        update: CredentialUpdate,
        operator: &Operator,
    ) -> Result<Credential> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        self.check_credential_scopes(&tx, ns, id, update.checked_scopes.as_deref())
            .await?;
        let sql = format!(
            "UPDATE api_credentials SET \
                 description = COALESCE($3, description), \
                 enabled = COALESCE($4, enabled), \
                 scopes = COALESCE($5, scopes), \
                 updated_at = NOW() \
             WHERE id = $1 AND (namespace = $2 OR namespace = $6) RETURNING {}",
            Self::credential_columns()
        );
        let row = tx
            .query_opt(
                &sql,
                &[
                    &id,
                    &ns,
                    &update.description,
                    &update.enabled,
                    &update.scopes,
                    &ALL_NAMESPACES,
                ],
            )
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| credential_not_found(id))?;
        let saved = self.credential_of(&row)?;
        self.audit_in(&tx, ns, "credential", &saved.access_key, "update", operator)
            .await?;
        self.commit(tx).await?;
        Ok(saved)
    }

    /// Locks the credential's row for the rest of `tx` and refuses when its scopes are not
    /// those the caller was checked against (see [`CredentialUpdate::checked_scopes`]).
    async fn check_credential_scopes(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        id: i64,
        checked: Option<&[String]>,
    ) -> Result<()> {
        let row = tx
            .query_opt(
                "SELECT scopes FROM api_credentials \
                 WHERE id = $1 AND (namespace = $2 OR namespace = $3) FOR UPDATE",
                &[&id, &ns, &ALL_NAMESPACES],
            )
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| credential_not_found(id))?;
        let stored: Vec<String> = self.column(&row, "scopes")?;
        scopes_changed(checked, &stored)
    }

    pub async fn delete_credential(
        &self,
        ns: &str,
        id: i64,
        checked_scopes: Option<&[String]>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        self.check_credential_scopes(&tx, ns, id, checked_scopes)
            .await?;
        let row = tx
            .query_opt(
                "DELETE FROM api_credentials WHERE id = $1 AND (namespace = $2 OR namespace = $3) \
                 RETURNING access_key",
                &[&id, &ns, &ALL_NAMESPACES],
            )
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| credential_not_found(id))?;
        let access_key: String = self.column(&row, "access_key")?;
        self.audit_in(&tx, ns, "credential", &access_key, "delete", operator)
            .await?;
        self.commit(tx).await
    }

    // --- users ---

    fn user_columns() -> String {
        format!(
            "sub, username, email, name, is_admin, must_change_password, password_hash, \
             {} AS seen",
            utc("last_seen")
        )
    }

    fn user_of(&self, row: &Row) -> Result<User> {
        let password_hash: String = self.column(row, "password_hash")?;
        Ok(User {
            sub: self.column(row, "sub")?,
            username: self.column(row, "username")?,
            email: self.column(row, "email")?,
            name: self.column(row, "name")?,
            is_admin: self.column(row, "is_admin")?,
            must_change_password: self.column(row, "must_change_password")?,
            last_seen: self.column(row, "seen")?,
            token_epoch: epoch_of(&password_hash),
            password_hash,
        })
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM users ORDER BY username, sub",
            Self::user_columns()
        );
        let rows = client.query(&sql, &[]).await.map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.user_of(r)).collect()
    }

    pub async fn user(&self, sub: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        let sql = format!("SELECT {} FROM users WHERE sub = $1", Self::user_columns());
        let row = client
            .query_opt(&sql, &[&sub])
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.user_of(&r)).transpose()
    }

    /// Refuses an e-mail another user has (compared trimmed and lower-cased).
    async fn check_email(&self, tx: &Transaction<'_>, user: &User) -> Result<()> {
        let email = user.email.trim().to_lowercase();
        if email.is_empty() {
            return Ok(());
        }
        let taken = tx
            .query_opt(
                "SELECT 1 FROM users WHERE lower(btrim(email)) = $1 AND sub <> $2 LIMIT 1",
                &[&email, &user.sub],
            )
            .await
            .map_err(|e| self.db(e))?;
        match taken {
            Some(_) => Err(ControlError::AlreadyExists(format!(
                "e-mail {email} already belongs to another user"
            ))),
            None => Ok(()),
        }
    }

    /// Whether an admin other than `sub` exists.
    async fn other_admin(&self, tx: &Transaction<'_>, sub: &str) -> Result<bool> {
        let row = tx
            .query_opt(
                "SELECT 1 FROM users WHERE is_admin AND sub <> $1 LIMIT 1",
                &[&sub],
            )
            .await
            .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    async fn insert_user(&self, tx: &Transaction<'_>, user: &User) -> Result<bool> {
        let inserted = tx
            .execute(
                "INSERT INTO users (sub, username, email, name, is_admin, must_change_password, \
                     password_hash, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     COALESCE(NULLIF($8::text, '')::timestamptz, NOW())) \
                 ON CONFLICT (sub) DO NOTHING",
                &[
                    &user.sub,
                    &user.username,
                    &user.email,
                    &user.name,
                    &user.is_admin,
                    &user.must_change_password,
                    &user.password_hash,
                    &user.last_seen,
                ],
            )
            .await
            .map_err(|e| self.db(e))?;
        Ok(inserted == 1)
    }

    pub async fn create_user(&self, user: User, action: &str, operator: &Operator) -> Result<()> {
        let mut user = user;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_USERS, &[]).await.map_err(|e| self.db(e))?;
        // Admin rights a sign-in grants by itself hold for the identity's first record only:
        // one deleted or demoted before does not become admin again by signing in.
        if action == SYNC_ACTION && user.is_admin {
            let seen = tx
                .query_opt(
                    "SELECT 1 FROM change_log WHERE namespace = $1 AND kind = 'user' \
                     AND name = $2 LIMIT 1",
                    &[&GLOBAL, &user.sub],
                )
                .await
                .map_err(|e| self.db(e))?;
            if seen.is_some() {
                user.is_admin = false;
            }
        }
        self.check_email(&tx, &user).await?;
        if !self.insert_user(&tx, &user).await? {
            return Err(ControlError::AlreadyExists("user already exists".into()));
        }
        self.audit_in(&tx, GLOBAL, "user", &user.sub, action, operator)
            .await?;
        self.commit(tx).await
    }

    /// Applies `change` to the stored record under the users lock, so it never writes back
    /// a copy read before another change.
    pub async fn update_user(
        &self,
        sub: &str,
        action: Option<&str>,
        operator: &Operator,
        change: &UserChange<'_>,
    ) -> Result<User> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_USERS, &[]).await.map_err(|e| self.db(e))?;
        let select = format!("SELECT {} FROM users WHERE sub = $1", Self::user_columns());
        let row = tx
            .query_opt(&select, &[&sub])
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| ControlError::NotFound("user not found".into()))?;
        let before = self.user_of(&row)?;
        let mut user = before.clone();
        change(&mut user)?;
        user.sub = before.sub.clone();
        if before.is_admin && !user.is_admin && !self.other_admin(&tx, &user.sub).await? {
            return Err(last_admin(&user.sub));
        }
        if before.email.trim().to_lowercase() != user.email.trim().to_lowercase() {
            self.check_email(&tx, &user).await?;
        }
        tx.execute(
            "UPDATE users SET username = $2, email = $3, name = $4, is_admin = $5, \
                 must_change_password = $6, password_hash = $7, \
                 last_seen = COALESCE(NULLIF($8::text, '')::timestamptz, last_seen) \
             WHERE sub = $1",
            &[
                &user.sub,
                &user.username,
                &user.email,
                &user.name,
                &user.is_admin,
                &user.must_change_password,
                &user.password_hash,
                &user.last_seen,
            ],
        )
        .await
        .map_err(|e| self.db(e))?;
        if let Some(action) = action {
            self.audit_in(&tx, GLOBAL, "user", &user.sub, action, operator)
                .await?;
        }
        // Read back: the epoch derives from the stored hash, `last_seen` from the column.
        let row = tx
            .query_one(&select, &[&sub])
            .await
            .map_err(|e| self.db(e))?;
        let stored = self.user_of(&row)?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// Deletes the user; its memberships go with it (`ON DELETE CASCADE`).
    pub async fn delete_user(&self, sub: &str, operator: &Operator) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_USERS, &[]).await.map_err(|e| self.db(e))?;
        let row = tx
            .query_opt("SELECT is_admin FROM users WHERE sub = $1", &[&sub])
            .await
            .map_err(|e| self.db(e))?
            .ok_or_else(|| ControlError::NotFound("user not found".into()))?;
        let is_admin: bool = self.column(&row, "is_admin")?;
        if is_admin && !self.other_admin(&tx, sub).await? {
            return Err(last_admin(sub));
        }
        tx.execute("DELETE FROM users WHERE sub = $1", &[&sub])
            .await
            .map_err(|e| self.db(e))?;
        self.audit_in(&tx, GLOBAL, "user", sub, "delete_user", operator)
            .await?;
        self.commit(tx).await
    }

    /// Creates the initial admin on a database that has no user and no credential yet, once in
    /// its life (its audit row remembers): a node started on an original server's database
    /// adds no admin account to it.
    pub async fn create_initial_admin(&self, user: User) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_USERS, &[]).await.map_err(|e| self.db(e))?;
        let made = tx
            .query_opt(
                "SELECT 1 FROM change_log WHERE namespace = $1 AND kind = 'user' \
                 AND action = $2 LIMIT 1",
                &[&GLOBAL, &INITIAL_ADMIN],
            )
            .await
            .map_err(|e| self.db(e))?;
        // A database with users or credentials already has its administration (an original
        // server's): a node that starts on it adds no admin of its own.
        let populated = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM api_credentials) \
                 AS populated",
                &[],
            )
            .await
            .map_err(|e| self.db(e))?;
        let populated: bool = self.column(&populated, "populated")?;
        if made.is_some() || populated || !self.insert_user(&tx, &user).await? {
            return Ok(false);
        }
        self.audit_in(
            &tx,
            GLOBAL,
            "user",
            &user.sub,
            INITIAL_ADMIN,
            &Operator::default(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    // --- members and group bindings ---

    fn member_of(&self, row: &Row) -> Result<Member> {
        Ok(Member {
            namespace: self.column(row, "namespace")?,
            user_sub: self.column(row, "user_sub")?,
            role: self.column(row, "role")?,
        })
    }

    pub async fn members(&self, ns: &str) -> Result<Vec<Member>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT namespace, user_sub, role FROM namespace_members WHERE namespace = $1 \
                 ORDER BY user_sub",
                &[&ns],
            )
            .await
            .map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.member_of(r)).collect()
    }

    pub async fn member(&self, ns: &str, sub: &str) -> Result<Option<Member>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT namespace, user_sub, role FROM namespace_members \
                 WHERE namespace = $1 AND user_sub = $2",
                &[&ns, &sub],
            )
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.member_of(&r)).transpose()
    }

    /// Makes `sub` a member of `ns` with `role` in `tx`; `NotFound` for an unknown user.
    pub(super) async fn upsert_member(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        sub: &str,
        role: &str,
    ) -> Result<()> {
        tx.execute(
            "INSERT INTO namespace_members (namespace, user_sub, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_sub) DO UPDATE SET role = EXCLUDED.role",
            &[&ns, &sub, &role],
        )
        .await
        .map_err(|e| {
            if is_code(&e, &SqlState::FOREIGN_KEY_VIOLATION) {
                ControlError::NotFound(format!(
                    "user {sub} not found (user must login at least once)"
                ))
            } else {
                self.db(e)
            }
        })?;
        Ok(())
    }

    /// Serializes changes to one member or binding (`what` names it) for the rest of `tx`,
    /// and answers its stored role: a row that does not exist yet cannot be locked with
    /// `FOR UPDATE`, and a concurrent insert must not slip between the check and the write.
    async fn locked_role(
        &self,
        tx: &Transaction<'_>,
        what: &str,
        select: &str,
        params: [&str; 2],
    ) -> Result<Option<String>> {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 3))",
            &[&format!("{what}:{}/{}", params[0], params[1])],
        )
        .await
        .map_err(|e| self.db(e))?;
        let row = tx
            .query_opt(select, &[&params[0], &params[1]])
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.column(&r, "role")).transpose()
    }

    async fn member_role(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        sub: &str,
    ) -> Result<Option<String>> {
        let select = "SELECT role FROM namespace_members WHERE namespace = $1 AND user_sub = $2";
        self.locked_role(tx, "member", select, [ns, sub]).await
    }

    async fn binding_role(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        group: &str,
    ) -> Result<Option<String>> {
        let select = "SELECT role FROM group_bindings WHERE namespace = $1 AND group_name = $2";
        self.locked_role(tx, "binding", select, [ns, group]).await
    }

    pub async fn set_member(
        &self,
        member: Member,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        let stored = self
            .member_role(&tx, &member.namespace, &member.user_sub)
            .await?;
        role_changed(seen, stored.as_deref())?;
        self.upsert_member(&tx, &member.namespace, &member.user_sub, &member.role)
            .await?;
        let action = format!("set_role:{}", member.role);
        self.audit_in(
            &tx,
            &member.namespace,
            "member",
            &member.user_sub,
            &action,
            operator,
        )
        .await?;
        self.commit(tx).await
    }

    pub async fn remove_member(
        &self,
        ns: &str,
        sub: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        match self.member_role(&tx, ns, sub).await? {
            None => return Err(ControlError::NotFound("member not found".into())),
            stored => role_changed(seen, stored.as_deref())?,
        }
        let removed = tx
            .execute(
                "DELETE FROM namespace_members WHERE namespace = $1 AND user_sub = $2",
                &[&ns, &sub],
            )
            .await
            .map_err(|e| self.db(e))?;
        if removed == 0 {
            return Err(ControlError::NotFound("member not found".into()));
        }
        self.audit_in(&tx, ns, "member", sub, "remove", operator)
            .await?;
        self.commit(tx).await
    }

    fn binding_of(&self, row: &Row) -> Result<GroupBinding> {
        Ok(GroupBinding {
            id: self.column(row, "id")?,
            namespace: self.column(row, "namespace")?,
            group: self.column(row, "group_name")?,
            role: self.column(row, "role")?,
        })
    }

    pub async fn group_bindings(&self, ns: &str) -> Result<Vec<GroupBinding>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, namespace, group_name, role FROM group_bindings \
                 WHERE namespace = $1 ORDER BY group_name",
                &[&ns],
            )
            .await
            .map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.binding_of(r)).collect()
    }

    pub async fn group_binding(&self, ns: &str, group: &str) -> Result<Option<GroupBinding>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, namespace, group_name, role FROM group_bindings \
                 WHERE namespace = $1 AND group_name = $2",
                &[&ns, &group],
            )
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.binding_of(&r)).transpose()
    }

    pub async fn set_group_binding(
        &self,
        ns: &str,
        group: &str,
        role: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        let stored = self.binding_role(&tx, ns, group).await?;
        role_changed(seen, stored.as_deref())?;
        tx.execute(
            "INSERT INTO group_bindings (namespace, group_name, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, group_name) DO UPDATE SET role = EXCLUDED.role",
            &[&ns, &group, &role],
        )
        .await
        .map_err(|e| self.db(e))?;
        let action = format!("set_role:{role}");
        self.audit_in(&tx, ns, "group_binding", group, &action, operator)
            .await?;
        self.commit(tx).await
    }

    pub async fn remove_group_binding(
        &self,
        ns: &str,
        group: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        match self.binding_role(&tx, ns, group).await? {
            None => return Err(ControlError::NotFound("group binding not found".into())),
            stored => role_changed(seen, stored.as_deref())?,
        }
        let removed = tx
            .execute(
                "DELETE FROM group_bindings WHERE namespace = $1 AND group_name = $2",
                &[&ns, &group],
            )
            .await
            .map_err(|e| self.db(e))?;
        if removed == 0 {
            return Err(ControlError::NotFound("group binding not found".into()));
        }
        self.audit_in(&tx, ns, "group_binding", group, "remove", operator)
            .await?;
        self.commit(tx).await
    }

    // --- session signing keys ---

    fn key_of(&self, row: &Row) -> Result<SigningKey> {
        let kid: String = self.column(row, "kid")?;
        let status: String = self.column(row, "status")?;
        let status = match status.as_str() {
            "active" => KeyStatus::Active,
            "retired" => KeyStatus::Retired,
            other => {
                return Err(self.corrupt(format!(
                    "signing key {kid} with an unknown status {other:?}"
                )))
            }
        };
        let secret: Vec<u8> = self.column(row, "secret")?;
        Ok(SigningKey {
            kid,
            secret: hex::encode(secret),
            status,
            created_at: self.column(row, "created")?,
            expires_at: self.column(row, "expires")?,
        })
    }

    /// Newest first, so the first active key is the one the original signs with.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kid, secret, status, \
                     EXTRACT(EPOCH FROM created_at)::bigint AS created, \
                     EXTRACT(EPOCH FROM expires_at)::bigint AS expires \
                 FROM jwt_signing_keys ORDER BY created_at DESC, kid",
                &[],
            )
            .await
            .map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.key_of(r)).collect()
    }

    async fn insert_key(&self, tx: &Transaction<'_>, key: &SigningKey) -> Result<()> {
        let secret = hex::decode(&key.secret)
            .map_err(|e| ControlError::Internal(format!("a new signing key's secret: {e}")))?;
        tx.execute(
            "INSERT INTO jwt_signing_keys (kid, secret, status, created_at) \
             VALUES ($1, $2, 'active', to_timestamp($3::bigint))",
            &[&key.kid, &secret, &key.created_at],
        )
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    pub async fn ensure_signing_key(&self, now: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_KEYS, &[]).await.map_err(|e| self.db(e))?;
        let active = tx
            .query_opt(
                "SELECT 1 FROM jwt_signing_keys WHERE status = 'active' LIMIT 1",
                &[],
            )
            .await
            .map_err(|e| self.db(e))?;
        if active.is_none() {
            self.insert_key(&tx, &SigningKey::generate(now)).await?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// As the original's rotation (§4.4), with the grace given: keys retired before and now
    /// past their end are dropped, the active ones retire, a new one becomes active.
    pub async fn rotate_signing_key(&self, now: i64, grace: i64) -> Result<SigningKey> {
        let fresh = SigningKey::generate(now);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_KEYS, &[]).await.map_err(|e| self.db(e))?;
        tx.execute(
            "DELETE FROM jwt_signing_keys WHERE status = 'retired' \
             AND (expires_at IS NULL OR expires_at <= to_timestamp($1::bigint))",
            &[&now],
        )
        .await
        .map_err(|e| self.db(e))?;
        let until = now.saturating_add(grace);
        tx.execute(
            "UPDATE jwt_signing_keys SET status = 'retired', \
                 expires_at = to_timestamp($1::bigint) WHERE status = 'active'",
            &[&until],
        )
        .await
        .map_err(|e| self.db(e))?;
        self.insert_key(&tx, &fresh).await?;
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(fresh)
    }

    // --- status ---

    pub async fn put_controller(&self, ns: &str, status: ControllerStatus) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO controller_status (namespace, id, status, is_leader, started_at, \
                     last_heartbeat_at, config_revision, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NOW()) \
                 ON CONFLICT (namespace, id) DO UPDATE SET status = EXCLUDED.status, \
                     is_leader = EXCLUDED.is_leader, started_at = EXCLUDED.started_at, \
                     last_heartbeat_at = EXCLUDED.last_heartbeat_at, \
                     config_revision = EXCLUDED.config_revision, updated_at = NOW()",
                &[
                    &ns,
                    &status.id,
                    &status.status,
                    &status.is_leader,
                    &status.started_at,
                    &status.last_heartbeat_at,
                    &status.config_revision,
                ],
            )
            .await
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Newest report first (the status API shows the first).
    pub async fn controllers(&self, ns: &str) -> Result<Vec<ControllerStatus>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT id, status, is_leader, started_at, last_heartbeat_at, config_revision, \
                 {} AS updated \
             FROM controller_status WHERE namespace = $1 ORDER BY updated_at DESC, id",
            utc("updated_at")
        );
        let rows = client.query(&sql, &[&ns]).await.map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                Ok(ControllerStatus {
                    id: self.column(r, "id")?,
                    status: self.column(r, "status")?,
                    is_leader: self.column(r, "is_leader")?,
                    started_at: self.column(r, "started_at")?,
                    last_heartbeat_at: self.column(r, "last_heartbeat_at")?,
                    config_revision: self.column(r, "config_revision")?,
                    updated_at: self.column(r, "updated")?,
                })
            })
            .collect()
    }

    /// Replaces the namespace's instance set (§3.6): rows not listed go, listed ones are
    /// upserted.
    pub async fn put_instances(&self, ns: &str, instances: Vec<InstanceStatus>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        tx.execute(
            "DELETE FROM gateway_instances WHERE namespace = $1 AND NOT (id = ANY($2))",
            &[&ns, &ids],
        )
        .await
        .map_err(|e| self.db(e))?;
        for i in &instances {
            tx.execute(
                "INSERT INTO gateway_instances (namespace, id, status, started_at, \
                     registered_at, last_keepalive_at, config_revision, last_seen_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NOW()) \
                 ON CONFLICT (namespace, id) DO UPDATE SET status = EXCLUDED.status, \
                     started_at = EXCLUDED.started_at, registered_at = EXCLUDED.registered_at, \
                     last_keepalive_at = EXCLUDED.last_keepalive_at, \
                     config_revision = EXCLUDED.config_revision, \
                     last_seen_at = EXCLUDED.last_seen_at, updated_at = NOW()",
                &[
                    &ns,
                    &i.id,
                    &i.status,
                    &i.started_at,
                    &i.registered_at,
                    &i.last_keepalive_at,
                    &i.config_revision,
                    &i.last_seen_at,
                ],
            )
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    pub async fn reported_instances(&self, ns: &str) -> Result<Vec<InstanceStatus>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT id, status, started_at, registered_at, last_keepalive_at, config_revision, \
                 last_seen_at, {} AS updated \
             FROM gateway_instances WHERE namespace = $1 ORDER BY id",
            utc("updated_at")
        );
        let rows = client.query(&sql, &[&ns]).await.map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                Ok(InstanceStatus {
                    id: self.column(r, "id")?,
                    status: self.column(r, "status")?,
                    started_at: self.column(r, "started_at")?,
                    registered_at: self.column(r, "registered_at")?,
                    last_keepalive_at: self.column(r, "last_keepalive_at")?,
                    config_revision: self.column(r, "config_revision")?,
                    last_seen_at: self.column(r, "last_seen_at")?,
                    updated_at: self.column(r, "updated")?,
                })
            })
            .collect()
    }

    // --- grafana dashboards ---

    pub async fn dashboards(&self, ns: &str) -> Result<Vec<Dashboard>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name, url FROM grafana_dashboards WHERE namespace = $1 ORDER BY id",
                &[&ns],
            )
            .await
            .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                Ok(Dashboard {
                    id: self.column(r, "id")?,
                    name: self.column(r, "name")?,
                    url: self.column(r, "url")?,
                })
            })
            .collect()
    }

    pub async fn save_dashboard(
        &self,
        ns: &str,
        dashboard: Dashboard,
    ) -> Result<(Dashboard, bool)> {
        let client = self.client().await?;
        if dashboard.id <= 0 {
            let row = client
                .query_one(
                    "INSERT INTO grafana_dashboards (namespace, name, url) VALUES ($1, $2, $3) \
                     RETURNING id",
                    &[&ns, &dashboard.name, &dashboard.url],
                )
                .await
                .map_err(|e| self.db(e))?;
            let id = self.column(&row, "id")?;
            return Ok((Dashboard { id, ..dashboard }, true));
        }
        let updated = client
            .execute(
                "UPDATE grafana_dashboards SET name = $3, url = $4 \
                 WHERE namespace = $1 AND id = $2",
                &[&ns, &dashboard.id, &dashboard.name, &dashboard.url],
            )
            .await
            .map_err(|e| self.db(e))?;
        if updated == 0 {
            return Err(dashboard_not_found(dashboard.id));
        }
        Ok((dashboard, false))
    }

    pub async fn delete_dashboard(&self, ns: &str, id: i64) -> Result<()> {
        let client = self.client().await?;
        let removed = client
            .execute(
                "DELETE FROM grafana_dashboards WHERE namespace = $1 AND id = $2",
                &[&ns, &id],
            )
            .await
            .map_err(|e| self.db(e))?;
        if removed == 0 {
            return Err(dashboard_not_found(id));
        }
        Ok(())
    }

    // --- shared ---

    /// An audit-only change-log row in `tx`.
    async fn audit_in(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        kind: &str,
        name: &str,
        action: &str,
        operator: &Operator,
    ) -> Result<()> {
        insert_audit(tx, ns, kind, name, action, operator)
            .await
            .map_err(|e| self.db(e))
    }

    /// Commits a transaction that wrote change-log rows, and wakes this node's revision
    /// waiters.
    async fn commit(&self, tx: deadpool_postgres::Transaction<'_>) -> Result<()> {
        tx.commit().await.map_err(|e| self.db(e))?;
        self.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::epoch_of;

    #[test]
    fn a_new_password_hash_is_a_new_epoch() {
        assert_eq!(epoch_of(""), 0);
        assert_ne!(epoch_of("$2a$10$a"), epoch_of("$2a$10$b"));
        assert_eq!(epoch_of("$2a$10$a"), epoch_of("$2a$10$a"));
    }
}
