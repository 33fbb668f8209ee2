//! The control store of a node that has none (a gateway or controller without the server
//! role on external stores): the admin listener's operator endpoints still authenticate
//! through it, and find nobody, so they refuse every caller; everything else is unavailable.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::auth::token::SigningKey;
use crate::model::{
    ChangeEntry, ControllerStatus, Credential, Dashboard, GroupBinding, HistoryEntry,
    InstanceStatus, Kind, Member, Operator, Resource, User,
};
use crate::store::{
    ControlError, ControlStore, CredentialUpdate, Imported, ResourceChange, Result, UserChange,
    Written,
};

pub struct NoControlStore;

fn none<T>() -> Result<T> {
    Err(ControlError::Unavailable(
        "this node has no control store: it runs neither the server nor the controller role".into(),
    ))
}

#[async_trait]
impl ControlStore for NoControlStore {
    async fn namespaces(&self) -> Result<Vec<String>> {
        none()
    }
    async fn namespace_exists(&self, _: &str) -> Result<bool> {
        none()
    }
    async fn create_namespace(&self, _: &str, _: Option<&str>, _: &Operator) -> Result<()> {
        none()
    }
    async fn resources(&self, _: &str, _: Kind) -> Result<Vec<Resource>> {
        none()
    }
    async fn resource(&self, _: &str, _: Kind, _: &str) -> Result<Option<Resource>> {
        none()
    }
    async fn write_resource(
        &self,
        _: &str,
        _: Kind,
        _: &str,
        _: ResourceChange,
        _: &Operator,
    ) -> Result<Written> {
        none()
    }
    async fn replace_config(
        &self,
        _: &str,
        _: Vec<Value>,
        _: Vec<Value>,
        _: &Operator,
    ) -> Result<Imported> {
        none()
    }
    async fn history(&self, _: &str, _: Kind, _: &str) -> Result<Vec<HistoryEntry>> {
        none()
    }
    async fn history_entry(
        &self,
        _: &str,
        _: Kind,
        _: &str,
        _: i64,
    ) -> Result<Option<HistoryEntry>> {
        none()
    }
    async fn revision(&self, _: &str) -> Result<i64> {
        none()
    }
    async fn changes(&self, _: &str, _: i64, _: usize) -> Result<Vec<ChangeEntry>> {
        none()
    }
    async fn wait_revision(&self, _: &str, _: i64, _: Duration) -> Result<i64> {
        none()
    }
    async fn audit(&self, _: &str, _: usize, _: usize) -> Result<(Vec<ChangeEntry>, usize)> {
        none()
    }
    async fn record(&self, _: &str, _: &str, _: &str, _: &str, _: &Operator) -> Result<()> {
        none()
    }
    async fn credentials(&self, _: &str) -> Result<Vec<Credential>> {
        none()
    }
    /// Nobody: a signed request is refused as from an unknown key.
    async fn credential_by_access_key(&self, _: &str) -> Result<Option<Credential>> {
        Ok(None)
    }
    /// Closed: no anonymous access.
    async fn setup_open(&self) -> Result<bool> {
        Ok(false)
    }
    async fn create_credential(&self, _: Credential, _: &Operator) -> Result<Credential> {
        none()
    }
    async fn update_credential(
        &self,
        _: &str,
        _: i64,
        _: CredentialUpdate,
        _: &Operator,
    ) -> Result<Credential> {
        none()
    }
    async fn delete_credential(
        &self,
        _: &str,
        _: i64,
        _: Option<&[String]>,
        _: &Operator,
    ) -> Result<()> {
        none()
    }
    async fn users(&self) -> Result<Vec<User>> {
        none()
    }
    /// Nothing to catch up with.
    async fn catch_up(&self) -> Result<()> {
        Ok(())
    }
    /// Nobody: a session token names no known user.
    async fn user(&self, _: &str) -> Result<Option<User>> {
        Ok(None)
    }
    async fn create_user(&self, _: User, _: &str, _: &Operator) -> Result<()> {
        none()
    }
    async fn update_user(
        &self,
        _: &str,
        _: Option<&str>,
        _: &Operator,
        _: &UserChange<'_>,
    ) -> Result<User> {
        none()
    }
    async fn delete_user(&self, _: &str, _: &Operator) -> Result<()> {
        none()
    }
    async fn create_initial_admin(&self, _: User) -> Result<bool> {
        none()
    }
    async fn members(&self, _: &str) -> Result<Vec<Member>> {
        none()
    }
    async fn member(&self, _: &str, _: &str) -> Result<Option<Member>> {
        Ok(None)
    }
    async fn set_member(&self, _: Member, _: Option<&str>, _: &Operator) -> Result<()> {
        none()
    }
    async fn remove_member(&self, _: &str, _: &str, _: Option<&str>, _: &Operator) -> Result<()> {
        none()
    }
    async fn group_bindings(&self, _: &str) -> Result<Vec<GroupBinding>> {
        none()
    }
    async fn group_binding(&self, _: &str, _: &str) -> Result<Option<GroupBinding>> {
        Ok(None)
    }
    async fn set_group_binding(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: &Operator,
    ) -> Result<()> {
        none()
    }
    async fn remove_group_binding(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: &Operator,
    ) -> Result<()> {
        none()
    }
    /// None: no token verifies.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        Ok(Vec::new())
    }
    async fn ensure_signing_key(&self, _: i64) -> Result<()> {
        none()
    }
    async fn rotate_signing_key(&self, _: i64, _: i64) -> Result<SigningKey> {
        none()
    }
    async fn put_controller(&self, _: &str, _: ControllerStatus) -> Result<()> {
        none()
    }
    async fn controllers(&self, _: &str) -> Result<Vec<ControllerStatus>> {
        none()
    }
    async fn put_instances(&self, _: &str, _: Vec<InstanceStatus>) -> Result<()> {
        none()
    }
    async fn reported_instances(&self, _: &str) -> Result<Vec<InstanceStatus>> {
        none()
    }
    async fn registered_instances(&self, _: &str) -> Result<Vec<Value>> {
        none()
    }
    async fn dashboards(&self, _: &str) -> Result<Vec<Dashboard>> {
        none()
    }
    async fn save_dashboard(&self, _: &str, _: Dashboard) -> Result<(Dashboard, bool)> {
        none()
    }
    async fn delete_dashboard(&self, _: &str, _: i64) -> Result<()> {
        none()
    }
}
