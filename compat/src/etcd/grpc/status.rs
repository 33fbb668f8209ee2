//! gRPC statuses as etcd's server (grpc-go) writes them, where tonic's differ: the answers
//! given before a service runs, and the codes and messages tonic picks for its own refusals.

use axum::http::HeaderValue;
use axum::response::Response;

use super::EtcdError;

/// tonic refuses a message over [`super::MAX_MESSAGE_BYTES`] with `OUT_OF_RANGE`; etcd's Go server
/// (and clients that retry on the code) use `RESOURCE_EXHAUSTED` for it, with this message.
pub(super) fn oversize_as_grpc_go<B>(response: &mut axum::http::Response<B>) {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("grpc: received message larger than max"),
        );
    }
}

/// The generated servers answer a method they lack with `UNIMPLEMENTED` and no message;
/// grpc-go, and so etcd, names the method.
pub(super) fn unknown_method_as_grpc_go<B>(
    response: &mut axum::http::Response<B>,
    service: &str,
    method: &str,
) {
    let headers = response.headers_mut();
    let unnamed = headers.get("grpc-status").is_some_and(|s| s == "12")
        && !headers.contains_key("grpc-message");
    if unnamed {
        let message = format!("unknown method {method} for service {service}");
        headers.insert("grpc-message", grpc_message(&message));
    }
}

pub(super) fn unknown_service(service: &str) -> Response {
    let message = format!("unknown service {service}");
    status_response(tonic::Code::Unimplemented, &message)
}

pub(super) fn refuse(e: EtcdError) -> Response {
    status_response(tonic::Code::from_i32(e.code as i32), &e.message)
}

/// A call answered with a status alone, no response message ("trailers only"), its headers
/// as grpc-go writes them.
pub(super) fn status_response(code: tonic::Code, message: &str) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if !message.is_empty() {
        headers.insert("grpc-message", grpc_message(message));
    }
    response
}

/// `grpc-message` as the gRPC spec encodes it and grpc-go writes it: bytes outside printable
/// ASCII, and `%`, percent-encoded; spaces as they are. (Errors a service returns go out
/// through `tonic::Status`, which encodes spaces too; clients decode both alike.)
fn grpc_message(text: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    // Printable ASCII only, which a header value always accepts.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_encoded_as_grpc_go_writes_them() {
        assert_eq!(grpc_message("unknown service a.B"), "unknown service a.B");
        assert_eq!(grpc_message("100% \u{e9}\n"), "100%25 %C3%A9%0A");
    }

    #[test]
    fn an_empty_message_is_left_out() {
        let r = status_response(tonic::Code::Unimplemented, "");
        assert!(!r.headers().contains_key("grpc-message"));
        assert_eq!(r.headers()["grpc-status"], "12");
    }
}
