//! HMAC credentials (§3.7). Secrets are shown once, at creation. A caller can only grant the
//! scopes it holds itself (§10.1 S3), so an editor cannot mint `admin:users`, and can only
//! edit, disable or delete a credential whose scopes it holds too. A credential acts in its own
//! namespace; only an admin creates one for all namespaces (`all_namespaces`, S1). An update
//! changes only the fields it names (C9) and an unknown id is 404 (C8).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde_json::{json, Value};

use hermes_control::model::Credential;
use hermes_control::scopes::{self, Scope};
use hermes_control::store::CredentialUpdate;

use super::{fields, ApiError, ApiState, Caller, Ns};

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A credential as listed: never with its secret.
pub fn public_json(c: &Credential) -> Value {
    json!({
        "id": c.id, "namespace": c.namespace, "access_key": c.access_key,
        "description": c.description, "scopes": c.scopes, "enabled": c.enabled,
        "all_namespaces": c.all_namespaces,
        "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid credential id"))
}

/// The requested scope names, checked against what the caller may grant in `ns`.
async fn grantable(
    state: &ApiState,
    caller: &Caller,
    ns: &str,
    requested: &Value,
) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = match requested {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("scopes must be an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::bad_request("scopes must be an array of strings")),
    };
    let parsed = scopes::parse_list(&names)
        .map_err(|bad| ApiError::bad_request(format!("invalid scope: {bad}")))?;
    caller
        .require_all(state, ns, &parsed, "granting these scopes")
        .await?;
    Ok(parsed.iter().map(|s| s.as_str().to_string()).collect())
}

/// The credential `id` of `ns`, if the caller may change it: it holds every scope the
/// credential has, and an all-namespaces credential is changed only by an admin.
async fn changeable(
    state: &ApiState,
    caller: &Caller,
    ns: &str,
    id: i64,
) -> Result<Credential, ApiError> {
    let target = state
        .store
        .credentials(ns)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("credential {id} not found")))?;
    if target.all_namespaces && !caller.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an admin can change a credential for all namespaces",
        ));
    }
    let held = scopes::parse_list(&target.scopes).unwrap_or_default();
    caller
        .require_all(state, ns, &held, "changing this credential")
        .await?;
    Ok(target)
}

pub async fn list(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::CredentialRead).await?;
    let all = state.store.credentials(&ns).await?;
    let list: Vec<Value> = all.iter().map(public_json).collect();
    Ok(Json(json!({"credentials": list})).into_response())
}

pub async fn create(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state, &ns, Scope::CredentialWrite)
        .await?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["description", "scopes", "all_namespaces"])?;
    let description = fields::string(&body, "description")?.unwrap_or_default();
    let all_namespaces = fields::boolean(&body, "all_namespaces")?.unwrap_or(false);
    if all_namespaces && !caller.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an admin can create a credential for all namespaces",
        ));
    }
    let scopes = grantable(
        &state,
        &caller,
        &ns,
        body.get("scopes").unwrap_or(&Value::Null),
    )
    .await?;
    let saved = state
        .store
        .create_credential(
            Credential {
                id: 0,
                namespace: ns,
                access_key: random_hex(16),
                secret_key: random_hex(32),
                description,
                scopes,
                enabled: true,
                all_namespaces,
                created_at: String::new(),
                updated_at: String::new(),
            },
            &caller.operator(),
        )
        .await?;
    let mut out = public_json(&saved);
    out["secret_key"] = Value::String(saved.secret_key.clone());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn update(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state, &ns, Scope::CredentialWrite)
        .await?;
    let id = parse_id(&id)?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["description", "scopes", "enabled"])?;
    let target = changeable(&state, &caller, &ns, id).await?;
    let scopes = match body.get("scopes").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(grantable(&state, &caller, &ns, v).await?),
    };
    let update = CredentialUpdate {
        description: fields::string(&body, "description")?,
        enabled: fields::boolean(&body, "enabled")?,
        scopes,
        // The write holds only if the scopes are still those the caller was checked against.
        checked_scopes: Some(target.scopes),
    };
    state
        .store
        .update_credential(&ns, id, update, &caller.operator())
        .await?;
    Ok(Json(json!({"status": "updated"})).into_response())
}

pub async fn remove(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state, &ns, Scope::CredentialWrite)
        .await?;
    let id = parse_id(&id)?;
    let target = changeable(&state, &caller, &ns, id).await?;
    state
        .store
        .delete_credential(&ns, id, Some(&target.scopes), &caller.operator())
        .await?;
    Ok(Json(json!({"status": "deleted"})).into_response())
}
