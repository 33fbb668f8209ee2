//! [`PgControl`] as the node's [`ControlStore`]: each call goes to the inherent method of the
//! same name in [`super::resources`] or [`super::records`].

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::PgControl;
use hermes_control::auth::password::Scheme;
use hermes_control::auth::token::SigningKey;
use hermes_control::model::{
    ChangeEntry, ControllerStatus, Credential, Dashboard, GroupBinding, HistoryEntry,
    InstanceStatus, Kind, Member, Operator, Resource, User,
};
use hermes_control::store::{
    ControlStore, CredentialUpdate, Imported, ResourceChange, Result, UserChange, Written,
};

#[async_trait]
impl ControlStore for PgControl {
    /// bcrypt, so that original servers sharing the database verify what a node writes.
    fn password_scheme(&self) -> Scheme {
        Scheme::Bcrypt
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        PgControl::namespaces(self).await
    }
    async fn namespace_exists(&self, ns: &str) -> Result<bool> {
        PgControl::namespace_exists(self, ns).await
    }
    async fn create_namespace(
        &self,
        name: &str,
        owner: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::create_namespace(self, name, owner, operator).await
    }
    async fn resources(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>> {
        PgControl::resources(self, ns, kind).await
    }
    async fn resource(&self, ns: &str, kind: Kind, name: &str) -> Result<Option<Resource>> {
        PgControl::resource(self, ns, kind, name).await
    }
    async fn write_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        change: ResourceChange,
        operator: &Operator,
    ) -> Result<Written> {
        PgControl::write_resource(self, ns, kind, name, change, operator).await
    }
    async fn replace_config(
        &self,
        ns: &str,
        domains: Vec<Value>,
        clusters: Vec<Value>,
        operator: &Operator,
    ) -> Result<Imported> {
        PgControl::replace_config(self, ns, domains, clusters, operator).await
    }
    async fn history(&self, ns: &str, kind: Kind, name: &str) -> Result<Vec<HistoryEntry>> {
        PgControl::history(self, ns, kind, name).await
    }
    async fn history_entry(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        version: i64,
    ) -> Result<Option<HistoryEntry>> {
        PgControl::history_entry(self, ns, kind, name, version).await
    }
    async fn revision(&self, ns: &str) -> Result<i64> {
        PgControl::revision(self, ns).await
    }
    async fn changes(&self, ns: &str, after: i64, limit: usize) -> Result<Vec<ChangeEntry>> {
        PgControl::changes(self, ns, after, limit).await
    }
    async fn wait_revision(&self, ns: &str, after: i64, wait: Duration) -> Result<i64> {
        PgControl::wait_revision(self, ns, after, wait).await
    }
    async fn audit(
        &self,
        ns: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<ChangeEntry>, usize)> {
        PgControl::audit(self, ns, limit, offset).await
    }
    async fn record(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        action: &str,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::record(self, ns, kind, name, action, operator).await
    }
    async fn credentials(&self, ns: &str) -> Result<Vec<Credential>> {
        PgControl::credentials(self, ns).await
    }
    async fn credential_by_access_key(&self, access_key: &str) -> Result<Option<Credential>> {
        PgControl::credential_by_access_key(self, access_key).await
    }
    async fn setup_open(&self) -> Result<bool> {
        PgControl::setup_open(self).await
    }
    async fn create_credential(
        &self,
        credential: Credential,
        operator: &Operator,
    ) -> Result<Credential> {
        PgControl::create_credential(self, credential, operator).await
    }
    async fn update_credential(
        &self,
        ns: &str,
        id: i64,
        update: CredentialUpdate,
        operator: &Operator,
    ) -> Result<Credential> {
        PgControl::update_credential(self, ns, id, update, operator).await
    }
    async fn delete_credential(
        &self,
        ns: &str,
        id: i64,
        checked_scopes: Option<&[String]>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::delete_credential(self, ns, id, checked_scopes, operator).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        PgControl::users(self).await
    }
    /// Every read goes to the database, which holds every acknowledged write.
    async fn catch_up(&self) -> Result<()> {
        Ok(())
    }
    async fn user(&self, sub: &str) -> Result<Option<User>> {
        PgControl::user(self, sub).await
    }
    async fn create_user(&self, user: User, action: &str, operator: &Operator) -> Result<()> {
        PgControl::create_user(self, user, action, operator).await
    }
    async fn update_user(
        &self,
        sub: &str,
        action: Option<&str>,
        operator: &Operator,
        change: &UserChange<'_>,
    ) -> Result<User> {
        PgControl::update_user(self, sub, action, operator, change).await
    }
    async fn delete_user(&self, sub: &str, operator: &Operator) -> Result<()> {
        PgControl::delete_user(self, sub, operator).await
    }
    async fn create_initial_admin(&self, user: User) -> Result<bool> {
        PgControl::create_initial_admin(self, user).await
    }
    async fn members(&self, ns: &str) -> Result<Vec<Member>> {
        PgControl::members(self, ns).await
    }
    async fn member(&self, ns: &str, sub: &str) -> Result<Option<Member>> {
        PgControl::member(self, ns, sub).await
    }
    async fn set_member(
        &self,
        member: Member,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::set_member(self, member, seen, operator).await
    }
    async fn remove_member(
        &self,
        ns: &str,
        sub: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::remove_member(self, ns, sub, seen, operator).await
    }
    async fn group_bindings(&self, ns: &str) -> Result<Vec<GroupBinding>> {
        PgControl::group_bindings(self, ns).await
    }
    async fn group_binding(&self, ns: &str, group: &str) -> Result<Option<GroupBinding>> {
        PgControl::group_binding(self, ns, group).await
    }
    async fn set_group_binding(
        &self,
        ns: &str,
        group: &str,
        role: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::set_group_binding(self, ns, group, role, seen, operator).await
    }
    async fn remove_group_binding(
        &self,
        ns: &str,
        group: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        PgControl::remove_group_binding(self, ns, group, seen, operator).await
    }
    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        PgControl::signing_keys(self).await
    }
    async fn ensure_signing_key(&self, now: i64) -> Result<()> {
        PgControl::ensure_signing_key(self, now).await
    }
    async fn rotate_signing_key(&self, now: i64, grace: i64) -> Result<SigningKey> {
        PgControl::rotate_signing_key(self, now, grace).await
    }
    async fn put_controller(&self, ns: &str, status: ControllerStatus) -> Result<()> {
        PgControl::put_controller(self, ns, status).await
    }
    async fn controllers(&self, ns: &str) -> Result<Vec<ControllerStatus>> {
        PgControl::controllers(self, ns).await
    }
    async fn put_instances(&self, ns: &str, instances: Vec<InstanceStatus>) -> Result<()> {
        PgControl::put_instances(self, ns, instances).await
    }
    async fn reported_instances(&self, ns: &str) -> Result<Vec<InstanceStatus>> {
        PgControl::reported_instances(self, ns).await
    }
    /// None: PostgreSQL holds no registry. Gateways register in the configuration store
    /// (etcd), and a controller reports what it sees there through `put_instances`.
    async fn registered_instances(&self, _ns: &str) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
    async fn dashboards(&self, ns: &str) -> Result<Vec<Dashboard>> {
        PgControl::dashboards(self, ns).await
    }
    async fn save_dashboard(&self, ns: &str, dashboard: Dashboard) -> Result<(Dashboard, bool)> {
        PgControl::save_dashboard(self, ns, dashboard).await
    }
    async fn delete_dashboard(&self, ns: &str, id: i64) -> Result<()> {
        PgControl::delete_dashboard(self, ns, id).await
    }
}
