//! The Auth service. The endpoint has at most one user, set by the node's configuration
//! (`--etcd-user`, `--etcd-password-file`; see [`crate::etcd::auth`]) and equal on every node:
//! it can sign in and be listed, with etcd's `root` role. Adding, removing or changing users
//! and roles, or switching authentication on and off, is configuration, not an API call here:
//! those calls are refused with a message that says where to make the change.

use super::pb::etcdserverpb::auth_server;
use super::pb::etcdserverpb::*;
use super::{answer, convert, Answer};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::Api;

pub struct Auth(pub Api);

/// The role etcd gives its all-powerful user, which the configured user is.
const ROOT: &str = "root";

fn configured_elsewhere() -> tonic::Status {
    EtcdError::new(
        Code::FailedPrecondition,
        "etcdserver: the endpoint's user is set by the node's configuration \
         (--etcd-user and --etcd-password-file), not through the Auth API",
    )
    .into()
}

impl Auth {
    fn header(&self) -> Option<etcd_client::proto::PbResponseHeader> {
        convert::header(&self.0.current_header())
    }

    fn user(&self) -> Result<&str, tonic::Status> {
        self.0.auth_user().ok_or_else(|| {
            EtcdError::new(
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            )
            .into()
        })
    }
}

#[tonic::async_trait]
impl auth_server::Auth for Auth {
    async fn auth_enable(
        &self,
        _r: tonic::Request<AuthEnableRequest>,
    ) -> Answer<AuthEnableResponse> {
        Err(configured_elsewhere())
    }

    async fn auth_disable(
        &self,
        _r: tonic::Request<AuthDisableRequest>,
    ) -> Answer<AuthDisableResponse> {
        Err(configured_elsewhere())
    }

    async fn auth_status(
        &self,
        _r: tonic::Request<AuthStatusRequest>,
    ) -> Answer<AuthStatusResponse> {
        answer(Ok(AuthStatusResponse {
            header: self.header(),
            enabled: self.0.auth_enabled(),
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        request: tonic::Request<AuthenticateRequest>,
    ) -> Answer<AuthenticateResponse> {
        let r = request.into_inner();
        answer(
            self.0
                .authenticate(&r.name, &r.password)
                .map(|(h, token)| AuthenticateResponse {
                    header: convert::header(&h),
                    token,
                }),
        )
    }

    async fn user_add(
        &self,
        _r: tonic::Request<AuthUserAddRequest>,
    ) -> Answer<AuthUserAddResponse> {
        Err(configured_elsewhere())
    }

    async fn user_get(
        &self,
        request: tonic::Request<AuthUserGetRequest>,
    ) -> Answer<AuthUserGetResponse> {
        let user = self.user()?;
        if request.into_inner().name != user {
            return answer(Err(EtcdError::new(
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            )));
        }
        answer(Ok(AuthUserGetResponse {
            header: self.header(),
            roles: vec![ROOT.to_string()],
        }))
    }

    async fn user_list(
        &self,
        _r: tonic::Request<AuthUserListRequest>,
    ) -> Answer<AuthUserListResponse> {
        let users = self.0.auth_user().map(str::to_string).into_iter().collect();
        answer(Ok(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        _r: tonic::Request<AuthUserDeleteRequest>,
    ) -> Answer<AuthUserDeleteResponse> {
        Err(configured_elsewhere())
    }

    async fn user_change_password(
        &self,
        _r: tonic::Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        Err(configured_elsewhere())
    }

    async fn user_grant_role(
        &self,
        _r: tonic::Request<AuthUserGrantRoleRequest>,
    ) -> Answer<AuthUserGrantRoleResponse> {
        Err(configured_elsewhere())
    }

    async fn user_revoke_role(
        &self,
        _r: tonic::Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        Err(configured_elsewhere())
    }

    async fn role_add(
        &self,
        _r: tonic::Request<AuthRoleAddRequest>,
    ) -> Answer<AuthRoleAddResponse> {
        Err(configured_elsewhere())
    }

    async fn role_get(
        &self,
        request: tonic::Request<AuthRoleGetRequest>,
    ) -> Answer<AuthRoleGetResponse> {
        self.user()?;
        if request.into_inner().role != ROOT {
            return answer(Err(EtcdError::new(
                Code::FailedPrecondition,
                "etcdserver: role name not found",
            )));
        }
        // etcd's root role has no permission entries: it may do everything by being root.
        answer(Ok(AuthRoleGetResponse {
            header: self.header(),
            perm: Vec::new(),
        }))
    }

    async fn role_list(
        &self,
        _r: tonic::Request<AuthRoleListRequest>,
    ) -> Answer<AuthRoleListResponse> {
        let roles = self
            .0
            .auth_user()
            .map(|_| ROOT.to_string())
            .into_iter()
            .collect();
        answer(Ok(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        _r: tonic::Request<AuthRoleDeleteRequest>,
    ) -> Answer<AuthRoleDeleteResponse> {
        Err(configured_elsewhere())
    }

    async fn role_grant_permission(
        &self,
        _r: tonic::Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        Err(configured_elsewhere())
    }

    async fn role_revoke_permission(
        &self,
        _r: tonic::Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        Err(configured_elsewhere())
    }
}
