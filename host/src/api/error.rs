//! Error responses: every failure, the framework's own rejections included,
//! leaves as `{"error": {"code": ..., "message": ...}}` with a fitting status.

use std::collections::btree_map::Entry;

use axum::Json;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response as DocResponse, ResponseBuilder};

use super::clip;
use super::routes::Access;
use crate::service::{ErrorKind, ServiceError};

/// A failed request, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    challenge: Option<&'static str>,
    /// Seconds for `Retry-After`, when the error only says "not now".
    retry_after: Option<u64>,
}

/// The body of every error response. The OpenAPI document's schema of it
/// is derived from this type, the one the responses are serialized from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What failed.
    error: ErrorDetail,
}

/// The code and message of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: one of [`ErrorCode`].
    #[schema(value_type = ErrorCode)]
    code: &'static str,
    /// For people; may change between versions.
    message: String,
}

/// Every `code` an error response may carry: the API's own, the
/// service's, and those of the driver runtime that the service passes on.
/// Only the document uses this type (the codes travel as `&'static str`);
/// `tests/tidy.rs` checks that every code the source can answer with is
/// listed here, and the fuzz test that the server sends no other.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The API's own: the request itself is wrong.
    BadRequest,
    BodyTooLarge,
    BodyUnreadable,
    EmptyBody,
    Forbidden,
    InvalidBody,
    InvalidId,
    InvalidJson,
    InvalidQuery,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    // The Block Storage v3 API's own.
    InvalidApiVersion,
    InvalidHost,
    UnsupportedApiVersion,
    VolumeTypeNotFound,
    // The service's.
    AbortNotPossible,
    AbortTooLate,
    ArrayError,
    ArrayNotFound,
    AttachmentNotFound,
    DriverNotFound,
    DriverNotLoaded,
    DriverVersionActive,
    DriverVersionInUse,
    DriverVersionNotFound,
    HydrationIncomplete,
    InconsistentStatus,
    InsufficientSpace,
    Internal,
    InvalidArgument,
    /// The NBD TLS settings are unusable; met at start, never by a request.
    InvalidConfig,
    InvalidName,
    InvalidSize,
    InvalidState,
    InvalidStatus,
    MigrationInProgress,
    MigrationStopping,
    NoMigrationRunning,
    NoSpace,
    NotMigratable,
    PoolNotFound,
    RemoteExportUnavailable,
    SameLocation,
    AlreadyManaged,
    StoreError,
    TooManyAttachments,
    VolumeLocked,
    VolumeNotFound,
    // A driver call's failure.
    DriverBackendError,
    DriverInvalidArgument,
    DriverNoSpace,
    DriverOutOfMemory,
    DriverTimeout,
    DriverTrap,
    DriverUnsupported,
    // A driver upload's refusal.
    CompileBusy,
    CompileFailed,
    CompileTimeout,
    ComponentTooLarge,
    CoreModule,
    EngineError,
    IncompatibleWorldVersion,
    NotAComponent,
    NotWasm,
    SmokeCallFailed,
    WrongWorld,
}

impl ApiError {
    /// An error with an explicit status, code and message. The message is
    /// cut to [`clip::MESSAGE_BYTES`]: it may quote what the client sent.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > clip::MESSAGE_BYTES {
            message = clip::clip(&message, clip::MESSAGE_BYTES).into_owned();
        }
        Self {
            status,
            code,
            message,
            challenge: None,
            retry_after: None,
        }
    }

    /// 401: no token, or one that matches no role. `challenge` is the
    /// `WWW-Authenticate` value (RFC 6750).
    pub fn unauthorized(message: impl Into<String>, challenge: &'static str) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 403: a valid token whose role may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400 for a path segment that is not a UUID.
    pub fn invalid_id(what: &str, raw: &str) -> Self {
        // Echo only a prefix: the path is attacker-sized.
        let shown: String = raw.chars().take(64).collect();
        let more = if shown.len() < raw.len() { "..." } else { "" };
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{what} {shown:?}{more} is not a UUID"),
        )
    }

    /// 404 for a path that names no route.
    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {} {}", clip::echo(method), clip::echo(path)),
        )
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}",
                clip::echo(method),
                clip::echo(path)
            ),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The status that stands for a service error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = status_of(e.kind());
        if status.is_server_error() {
            // The client gets the message too; the log keeps the cause chain.
            let chain = DisplayChain(&e).to_string();
            tracing::error!(
                code = e.code(),
                error = %clip::clip(&chain, clip::MESSAGE_BYTES),
                "service call failed"
            );
        }
        Self {
            retry_after: e.retry_after_secs(),
            ..Self::new(status, e.code(), e.to_string())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // serde's message quotes the offending value, which is the
        // client's and may be as large as the body: show a bounded part.
        let inner = |e: &dyn std::error::Error| {
            let text = e
                .source()
                .map_or_else(|| e.to_string(), ToString::to_string);
            clip::echo(&text).into_owned()
        };
        match r {
            JsonRejection::JsonSyntaxError(e) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("request body is not valid JSON: {}", inner(&e)),
            ),
            JsonRejection::JsonDataError(e) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("invalid request body: {}", inner(&e)),
            ),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)",
            ),
            JsonRejection::BytesRejection(b) => Self::from(b),
            other => Self::new(other.status(), "invalid_body", other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        match r {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                body_too_large()
            }
            other => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("cannot read the request body: {}", other.body_text()),
            ),
        }
    }
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than this call accepts",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The name of the security scheme of bearer tokens in the document.
pub const BEARER: &str = "bearer";

/// A documented error response: `description`, with the error body.
pub fn error_response(description: &str) -> RefOr<DocResponse> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
        .into()
}

/// Documents on `op` what follows from its access rule and its shape, so
/// that no handler has to repeat it and none can forget it: the security
/// it needs; the 401, 403 and 500 the token check and the host may answer
/// with; the 400, 413 and 415 of a JSON body; the 400 of an id that is not
/// a UUID. A handler that documents a status itself keeps its own words.
pub fn document_access(op: &mut Operation, access: Access) {
    // A status the handler documents already gets these words after its
    // own: one response per status, naming every code it may carry.
    let mut add =
        |status: &str, description: &str| match op.responses.responses.entry(status.to_owned()) {
            Entry::Vacant(e) => {
                e.insert(error_response(description));
            }
            Entry::Occupied(mut e) => {
                if let RefOr::T(r) = e.get_mut() {
                    r.description = format!("{} {description}", r.description);
                }
            }
        };
    match access {
        Access::Public => {}
        // The handler documents the answers of each setting.
        Access::Configured => {}
        Access::Read | Access::Admin => {
            add(
                "401",
                "No bearer token, or not a valid one (`unauthorized`).",
            );
            add(
                "500",
                "The host failed (`internal`, `store_error`, `array_error`, `engine_error`).",
            );
        }
    }
    if access == Access::Admin {
        add("403", "The token may only read (`forbidden`).");
    }
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    if json_body {
        add(
            "400",
            "Malformed request: `invalid_json`, `invalid_body` (names the field).",
        );
        add("413", "The body is larger than 1 MiB (`body_too_large`).");
        add(
            "415",
            "The body is not `application/json` (`unsupported_media_type`).",
        );
    }
    let uuid_in_path = op.parameters.iter().flatten().any(|p| {
        p.parameter_in == utoipa::openapi::path::ParameterIn::Path
            && serde_json::to_value(&p.schema)
                .is_ok_and(|s| s.get("format").and_then(|f| f.as_str()) == Some("uuid"))
    });
    if uuid_in_path {
        add("400", "An id in the path is not a UUID (`invalid_id`).");
    }
    op.security = match access {
        Access::Public => Some(Vec::new()),
        // A token when `[http] metrics` asks for one, none when public.
        Access::Configured => Some(vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::default(),
        ]),
        // The document's default: a bearer token.
        Access::Read | Access::Admin => None,
    };
}

/// Rewrites any error response that is not already JSON (the router's own
/// 405, a layer's 413...) into the error envelope, keeping its headers.
pub async fn normalize(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return res;
    }
    let err = match status {
        StatusCode::NOT_FOUND => ApiError::new(status, "not_found", "not found"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "method_not_allowed", "method not allowed")
        }
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "unsupported_media_type", "unsupported media type")
        }
        s if s.is_server_error() => ApiError::new(status, "internal", "internal error"),
        _ => ApiError::new(
            status,
            "bad_request",
            status.canonical_reason().unwrap_or("bad request"),
        ),
    };
    let (mut parts, _) = res.into_parts();
    let fresh = err.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, fresh.into_body())
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Displays an error with its sources, for logs.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(res: Response) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn plain_text_errors_become_envelopes_and_keep_headers() {
        let res = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
            "Method Not Allowed",
        )
            .into_response();
        let res = normalize(res).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD");
        let v = body_json(res).await;
        assert_eq!(v["error"]["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn json_and_success_responses_pass_untouched() {
        let ok = normalize("fine".into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let err = ApiError::forbidden("no").into_response();
        let v = body_json(normalize(err).await).await;
        assert_eq!(v["error"]["message"], "no");
    }

    #[tokio::test]
    async fn unauthorized_carries_the_bearer_challenge() {
        let res = ApiError::unauthorized("missing", "Bearer realm=\"ferry\"").into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"ferry\""
        );
    }

    #[test]
    fn echoed_client_text_and_long_messages_are_cut() {
        let method = "M".repeat(16 << 10);
        let path = format!("/{}", "p".repeat(8 << 10));
        for e in [
            ApiError::route_not_found(&method, &path),
            ApiError::method_not_allowed(&method, &path),
        ] {
            assert!(
                e.message().len() < 2 * clip::ECHO_BYTES + 80,
                "{}",
                e.message()
            );
            assert!(e.message().contains("(16384 bytes)"), "{}", e.message());
        }
        let e = ApiError::new(StatusCode::BAD_REQUEST, "x", "é".repeat(4096));
        assert!(e.message().len() <= clip::MESSAGE_BYTES + 32);
        assert!(e.message().ends_with("(8192 bytes)"), "{}", e.message());
    }

    #[test]
    fn service_kinds_map_to_statuses() {
        let e = ApiError::from(ServiceError::InvalidSize(1000));
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::BAD_REQUEST, "invalid_size")
        );
        let e = ApiError::from(ServiceError::ArrayNotFound("x".into()));
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::NOT_FOUND, "array_not_found")
        );
        let e = ApiError::from(ServiceError::NoSpace("full".into()));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e = ApiError::from(ServiceError::DriverNotLoaded("d".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorKind::BadGateway), StatusCode::BAD_GATEWAY);
        assert_eq!(status_of(ErrorKind::Conflict), StatusCode::CONFLICT);
    }

    #[test]
    fn a_busy_compile_slot_answers_429_with_retry_after() {
        let e = ApiError::from(ServiceError::DriverRefused {
            name: "acme".into(),
            source: crate::runtime::RuntimeError::CompileBusy {
                retry_after_secs: 7,
            },
        });
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::TOO_MANY_REQUESTS, "compile_busy")
        );
        let res = e.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        let e = ApiError::from(ServiceError::DriverVersionInUse {
            name: "acme".into(),
            digest: "ab".repeat(32),
            calls: 1,
        });
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::CONFLICT, "driver_version_in_use")
        );
        assert!(
            !e.into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }
}
