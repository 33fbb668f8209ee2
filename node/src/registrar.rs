//! The gateway's instance registry ([`hermes_gateway::registry`]) kept in this node's own
//! replicated store: leases and keys written through raft, the meta revision read locally.

use std::sync::Arc;

use hermes_gateway::registry::{Registrar, RegistryError};
use hermes_raft::RaftNode;
use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::{Command, PutRequest, RangeRequest};

pub struct RaftRegistrar {
    pub node: Arc<RaftNode>,
    /// This namespace's meta revision key.
    pub meta_key: String,
}

fn failed(e: impl std::fmt::Display) -> RegistryError {
    RegistryError(e.to_string())
}

impl Registrar for RaftRegistrar {
    async fn grant(&self, ttl: i64) -> Result<i64, RegistryError> {
        Ok(self.node.lease_grant(0, ttl).await.map_err(failed)?.id)
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, RegistryError> {
        self.node.lease_keepalive(lease).await.map_err(failed)
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<(), RegistryError> {
        let put = PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            ..Default::default()
        };
        self.node
            .write(Command::Put(put))
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn revoke(&self, lease: i64) -> Result<(), RegistryError> {
        self.node
            .lease_revoke(lease)
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn config_revision(&self) -> i64 {
        let req = RangeRequest {
            range: KeyRange::new(self.meta_key.as_bytes().to_vec(), Vec::new()),
            serializable: true,
            ..Default::default()
        };
        match self.node.store().range(req).await {
            Ok(resp) => resp
                .kvs
                .first()
                .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.trim().parse().ok())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }
}
