//! The Auth service's management calls over JSON (`/v3/auth/...`), as etcd's gateway serves
//! them, around the same core as gRPC ([`super::rbac::manage`]).

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::Value;

use super::body::read_json;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::rbac::records::Perm;
use super::rbac::Caller;
use super::Api;

/// etcd's names of `authpb.Permission.Type`.
const PERM_TYPES: &[&str] = &["READ", "WRITE", "READWRITE"];

/// The management routes, under `/v3` and `/v3beta`.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/auth/enable", post(enable))
        .route("/auth/disable", post(disable))
        .route("/auth/user/add", post(user_add))
        .route("/auth/user/get", post(user_get))
        .route("/auth/user/list", post(user_list))
        .route("/auth/user/delete", post(user_delete))
        .route("/auth/user/changepw", post(user_change_password))
        .route("/auth/user/grant", post(user_grant_role))
        .route("/auth/user/revoke", post(user_revoke_role))
        .route("/auth/role/add", post(role_add))
        .route("/auth/role/get", post(role_get))
        .route("/auth/role/list", post(role_list))
        .route("/auth/role/delete", post(role_delete))
        .route("/auth/role/grant", post(role_grant_permission))
        .route("/auth/role/revoke", post(role_revoke_permission))
}

type Who = Extension<Caller>;

/// Decodes the body as `message` with `fields`, runs `f` on it.
async fn call<F, Fut>(body: Body, message: &'static str, fields: &[&str], f: F) -> Response
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, EtcdError>>,
{
    super::reply(
        async {
            let v = read_json(body).await?;
            Obj::new(&v, message, fields)?;
            f(v).await
        }
        .await,
    )
}

fn obj<'a>(v: &'a Value, message: &'static str, fields: &[&str]) -> Result<Obj<'a>, EtcdError> {
    Obj::new(v, message, fields)
}

fn names(header: &hermes_raft::Header, field: &str, names: Vec<String>) -> Value {
    Out::new()
        .value("header", encode::header(header))
        .list(field, names.into_iter().map(Value::String))
        .build()
}

fn permission(p: &Perm) -> Value {
    let mut out = Out::new();
    // proto3 JSON leaves out the enum's zero value (READ), as etcd's gateway does.
    if p.kind.to_proto() != 0 {
        out = out.string("permType", PERM_TYPES[p.kind.to_proto() as usize]);
    }
    out.bytes("key", &p.key)
        .bytes("range_end", &p.range_end)
        .build()
}

async fn enable(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    call(
        body,
        "etcdserverpb.AuthEnableRequest",
        &[],
        |_| async move { Ok(encode::header_only(&api.auth_enable(&who).await?)) },
    )
    .await
}

async fn disable(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    call(
        body,
        "etcdserverpb.AuthDisableRequest",
        &[],
        |_| async move { Ok(encode::header_only(&api.auth_disable(&who).await?)) },
    )
    .await
}

async fn user_add(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserAddRequest";
    const F: &[&str] = &["name", "password", "options", "hashedPassword"];
    call(body, M, F, |v| async move {
        let o = obj(&v, M, F)?;
        let no_password = match o.object("options") {
            Some(opts) => {
                obj(opts, "authpb.UserAddOptions", &["no_password"])?.bool("no_password")?
            }
            None => false,
        };
        let h = api
            .user_add(
                &who,
                &o.string("name")?,
                &o.string("password")?,
                no_password,
                &o.string("hashedPassword")?,
            )
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}

async fn user_get(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserGetRequest";
    call(body, M, &["name"], |v| async move {
        let name = obj(&v, M, &["name"])?.string("name")?;
        let (h, roles) = api.user_get(&who, &name).await?;
        Ok(names(&h, "roles", roles))
    })
    .await
}

async fn user_list(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    call(
        body,
        "etcdserverpb.AuthUserListRequest",
        &[],
        |_| async move {
            let (h, users) = api.user_list(&who).await?;
            Ok(names(&h, "users", users))
        },
    )
    .await
}

async fn user_delete(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserDeleteRequest";
    call(body, M, &["name"], |v| async move {
        let name = obj(&v, M, &["name"])?.string("name")?;
        Ok(encode::header_only(&api.user_delete(&who, &name).await?))
    })
    .await
}

async fn user_change_password(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserChangePasswordRequest";
    const F: &[&str] = &["name", "password", "hashedPassword"];
    call(body, M, F, |v| async move {
        let o = obj(&v, M, F)?;
        let h = api
            .user_change_password(
                &who,
                &o.string("name")?,
                &o.string("password")?,
                &o.string("hashedPassword")?,
            )
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}

async fn user_grant_role(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserGrantRoleRequest";
    call(body, M, &["user", "role"], |v| async move {
        let o = obj(&v, M, &["user", "role"])?;
        let h = api
            .user_grant_role(&who, &o.string("user")?, &o.string("role")?)
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}

async fn user_revoke_role(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthUserRevokeRoleRequest";
    call(body, M, &["name", "role"], |v| async move {
        let o = obj(&v, M, &["name", "role"])?;
        let h = api
            .user_revoke_role(&who, &o.string("name")?, &o.string("role")?)
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}

async fn role_add(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthRoleAddRequest";
    call(body, M, &["name"], |v| async move {
        let name = obj(&v, M, &["name"])?.string("name")?;
        Ok(encode::header_only(&api.role_add(&who, &name).await?))
    })
    .await
}

async fn role_get(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthRoleGetRequest";
    call(body, M, &["role"], |v| async move {
        let role = obj(&v, M, &["role"])?.string("role")?;
        let (h, perms) = api.role_get(&who, &role).await?;
        Ok(Out::new()
            .value("header", encode::header(&h))
            .list("perm", perms.iter().map(permission))
            .build())
    })
    .await
}

async fn role_list(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    call(
        body,
        "etcdserverpb.AuthRoleListRequest",
        &[],
        |_| async move {
            let (h, roles) = api.role_list(&who).await?;
            Ok(names(&h, "roles", roles))
        },
    )
    .await
}

async fn role_delete(State(api): State<Api>, Extension(who): Who, body: Body) -> Response {
    const M: &str = "etcdserverpb.AuthRoleDeleteRequest";
    call(body, M, &["role"], |v| async move {
        let role = obj(&v, M, &["role"])?.string("role")?;
        Ok(encode::header_only(&api.role_delete(&who, &role).await?))
    })
    .await
}

async fn role_grant_permission(
    State(api): State<Api>,
    Extension(who): Who,
    body: Body,
) -> Response {
    const M: &str = "etcdserverpb.AuthRoleGrantPermissionRequest";
    call(body, M, &["name", "perm"], |v| async move {
        let o = obj(&v, M, &["name", "perm"])?;
        let perm = o
            .object("perm")
            .ok_or_else(|| EtcdError::invalid(format!("{M}.perm: a permission is required")))?;
        let p = obj(perm, "authpb.Permission", &["permType", "key", "range_end"])?;
        let kind = p.enumeration("permType", "authpb.Permission_Type", PERM_TYPES)?;
        let h = api
            .role_grant_permission(
                &who,
                &o.string("name")?,
                kind as i32,
                &p.bytes("key")?,
                &p.bytes("range_end")?,
            )
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}

async fn role_revoke_permission(
    State(api): State<Api>,
    Extension(who): Who,
    body: Body,
) -> Response {
    const M: &str = "etcdserverpb.AuthRoleRevokePermissionRequest";
    const F: &[&str] = &["role", "key", "range_end"];
    call(body, M, F, |v| async move {
        let o = obj(&v, M, F)?;
        let h = api
            .role_revoke_permission(
                &who,
                &o.string("role")?,
                &o.bytes("key")?,
                &o.bytes("range_end")?,
            )
            .await?;
        Ok(encode::header_only(&h))
    })
    .await
}
