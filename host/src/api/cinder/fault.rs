//! Cinder's error body, `{"itemNotFound": {"code": 404, "message": ...}}`,
//! made on the way out from the native `{"error": {"code", "message"}}`:
//! handlers and the service answer as everywhere else, and the native code
//! travels along as `ferry_code`, so scripts keep a stable reason.

use std::collections::BTreeMap;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ErrorCode;

/// A Cinder error body: one key, the fault's name, naming its detail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"itemNotFound": {"code": 404, "message": "volume 0c0e... not found", "ferry_code": "volume_not_found"}}))]
pub struct CinderFault(BTreeMap<String, FaultDetail>);

/// What a fault says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FaultDetail {
    /// The HTTP status again, as Cinder repeats it.
    code: u16,
    /// For people.
    message: String,
    /// Ferry's stable code of the error, as on `/v1`.
    #[schema(value_type = ErrorCode)]
    ferry_code: String,
}

/// The fault name Cinder gives a status.
pub fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        406 => "notAcceptable",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// Native error bodies are small; a larger one is not one.
const MOST_BODY: usize = 64 * 1024;

/// The native body's code and message, as a `/v1` error would carry them.
#[derive(Deserialize)]
struct Native {
    error: NativeDetail,
}

#[derive(Deserialize)]
struct NativeDetail {
    code: String,
    message: String,
}

fn is_v3(path: &str) -> bool {
    path == "/v3" || path.starts_with("/v3/")
}

/// Middleware over the whole API: every error answer to a `/v3` request
/// leaves as Cinder's fault body, with its headers (`Retry-After`,
/// `WWW-Authenticate`) kept.
pub async fn faults(req: Request, next: Next) -> Response {
    let v3 = is_v3(req.uri().path());
    let res = next.run(req).await;
    let status = res.status();
    if !v3 || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = to_bytes(body, MOST_BODY).await.unwrap_or_default();
    let (ferry_code, message) = match serde_json::from_slice::<Native>(&bytes) {
        Ok(n) => (n.error.code, n.error.message),
        Err(_) => (
            "internal".to_owned(),
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let fault = CinderFault(BTreeMap::from([(
        fault_name(status).to_owned(),
        FaultDetail {
            code: status.as_u16(),
            message,
            ferry_code,
        },
    )]));
    let body = serde_json::to_vec(&fault).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_get_cinders_fault_names() {
        assert_eq!(fault_name(StatusCode::NOT_FOUND), "itemNotFound");
        assert_eq!(fault_name(StatusCode::CONFLICT), "conflictingRequest");
        assert_eq!(fault_name(StatusCode::BAD_GATEWAY), "computeFault");
        assert!(is_v3("/v3") && is_v3("/v3/p/volumes") && !is_v3("/v3x") && !is_v3("/v1/volumes"));
    }
}
