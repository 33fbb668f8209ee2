//! `/metrics`: everything registered in the node's Prometheus registry, in text format.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, TextEncoder};

use super::AdminState;

pub async fn metrics(State(state): State<AdminState>) -> Response {
    if let Some(node) = &state.node {
        node.refresh_metrics();
    }
    let families = state.registry.gather();
    let mut out = Vec::new();
    match TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
