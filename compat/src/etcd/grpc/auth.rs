//! The Auth service: signing in, switching authentication on and off, and managing users
//! and roles, over [`crate::etcd::rbac`].

use super::pb::etcdserverpb::auth_server;
use super::pb::etcdserverpb::*;
use super::{answer, caller, convert, Answer};
use crate::etcd::rbac::records::Perm;
use crate::etcd::Api;

pub struct Auth(pub Api);

fn header(h: &hermes_raft::Header) -> Option<etcd_client::proto::PbResponseHeader> {
    convert::header(h)
}

fn permission(p: Perm) -> Permission {
    Permission {
        perm_type: p.kind.to_proto(),
        key: p.key,
        range_end: p.range_end,
    }
}

#[tonic::async_trait]
impl auth_server::Auth for Auth {
    async fn auth_enable(
        &self,
        r: tonic::Request<AuthEnableRequest>,
    ) -> Answer<AuthEnableResponse> {
        let who = caller(&r)?;
        answer(
            self.0
                .auth_enable(&who)
                .await
                .map(|h| AuthEnableResponse { header: header(&h) }),
        )
    }

    async fn auth_disable(
        &self,
        r: tonic::Request<AuthDisableRequest>,
    ) -> Answer<AuthDisableResponse> {
        let who = caller(&r)?;
        answer(
            self.0
                .auth_disable(&who)
                .await
                .map(|h| AuthDisableResponse { header: header(&h) }),
        )
    }

    async fn auth_status(
        &self,
        _r: tonic::Request<AuthStatusRequest>,
    ) -> Answer<AuthStatusResponse> {
        answer(
            self.0
                .auth_status()
                .await
                .map(|(h, enabled, auth_revision)| AuthStatusResponse {
                    header: header(&h),
                    enabled,
                    auth_revision,
                }),
        )
    }

    async fn authenticate(
        &self,
        request: tonic::Request<AuthenticateRequest>,
    ) -> Answer<AuthenticateResponse> {
        let client = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let r = request.into_inner();
        answer(
            self.0
                .authenticate(&r.name, &r.password, client)
                .await
                .map(|(h, token)| AuthenticateResponse {
                    header: header(&h),
                    token,
                }),
        )
    }

    async fn user_add(&self, r: tonic::Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let no_password = r.options.is_some_and(|o| o.no_password);
        answer(
            self.0
                .user_add(&who, &r.name, &r.password, no_password, &r.hashed_password)
                .await
                .map(|h| AuthUserAddResponse { header: header(&h) }),
        )
    }

    async fn user_get(&self, r: tonic::Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        let who = caller(&r)?;
        let name = r.into_inner().name;
        answer(
            self.0
                .user_get(&who, &name)
                .await
                .map(|(h, roles)| AuthUserGetResponse {
                    header: header(&h),
                    roles,
                }),
        )
    }

    async fn user_list(
        &self,
        r: tonic::Request<AuthUserListRequest>,
    ) -> Answer<AuthUserListResponse> {
        let who = caller(&r)?;
        answer(
            self.0
                .user_list(&who)
                .await
                .map(|(h, users)| AuthUserListResponse {
                    header: header(&h),
                    users,
                }),
        )
    }

    async fn user_delete(
        &self,
        r: tonic::Request<AuthUserDeleteRequest>,
    ) -> Answer<AuthUserDeleteResponse> {
        let who = caller(&r)?;
        let name = r.into_inner().name;
        answer(
            self.0
                .user_delete(&who, &name)
                .await
                .map(|h| AuthUserDeleteResponse { header: header(&h) }),
        )
    }

    async fn user_change_password(
        &self,
        r: tonic::Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        answer(
            self.0
                .user_change_password(&who, &r.name, &r.password, &r.hashed_password)
                .await
                .map(|h| AuthUserChangePasswordResponse { header: header(&h) }),
        )
    }

    async fn user_grant_role(
        &self,
        r: tonic::Request<AuthUserGrantRoleRequest>,
    ) -> Answer<AuthUserGrantRoleResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        answer(
            self.0
                .user_grant_role(&who, &r.user, &r.role)
                .await
                .map(|h| AuthUserGrantRoleResponse { header: header(&h) }),
        )
    }

    async fn user_revoke_role(
        &self,
        r: tonic::Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        answer(
            self.0
                .user_revoke_role(&who, &r.name, &r.role)
                .await
                .map(|h| AuthUserRevokeRoleResponse { header: header(&h) }),
        )
    }

    async fn role_add(&self, r: tonic::Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        let who = caller(&r)?;
        let name = r.into_inner().name;
        answer(
            self.0
                .role_add(&who, &name)
                .await
                .map(|h| AuthRoleAddResponse { header: header(&h) }),
        )
    }

    async fn role_get(&self, r: tonic::Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        let who = caller(&r)?;
        let role = r.into_inner().role;
        answer(
            self.0
                .role_get(&who, &role)
                .await
                .map(|(h, perms)| AuthRoleGetResponse {
                    header: header(&h),
                    perm: perms.into_iter().map(permission).collect(),
                }),
        )
    }

    async fn role_list(
        &self,
        r: tonic::Request<AuthRoleListRequest>,
    ) -> Answer<AuthRoleListResponse> {
        let who = caller(&r)?;
        answer(
            self.0
                .role_list(&who)
                .await
                .map(|(h, roles)| AuthRoleListResponse {
                    header: header(&h),
                    roles,
                }),
        )
    }

    async fn role_delete(
        &self,
        r: tonic::Request<AuthRoleDeleteRequest>,
    ) -> Answer<AuthRoleDeleteResponse> {
        let who = caller(&r)?;
        let role = r.into_inner().role;
        answer(
            self.0
                .role_delete(&who, &role)
                .await
                .map(|h| AuthRoleDeleteResponse { header: header(&h) }),
        )
    }

    async fn role_grant_permission(
        &self,
        r: tonic::Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let Some(perm) = r.perm else {
            return answer(Err(crate::etcd::error::EtcdError::invalid(
                "etcdserver: a permission to grant is missing",
            )));
        };
        answer(
            self.0
                .role_grant_permission(&who, &r.name, perm.perm_type, &perm.key, &perm.range_end)
                .await
                .map(|h| AuthRoleGrantPermissionResponse { header: header(&h) }),
        )
    }

    async fn role_revoke_permission(
        &self,
        r: tonic::Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        answer(
            self.0
                .role_revoke_permission(&who, &r.role, &r.key, &r.range_end)
                .await
                .map(|h| AuthRoleRevokePermissionResponse { header: header(&h) }),
        )
    }
}
