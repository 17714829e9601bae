//! `/v1/drivers`: the driver registry. List the installed versions, upload
//! a component (`PUT`, the raw bytes as the body), activate a version (hot
//! swap, roll back or forward) and delete one.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::routes::Routes;
use crate::service::{DriverVersionView, DriverView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.protected(routes!(list))
        .protected(routes!(install))
        .protected(routes!(activate))
        .protected(routes!(delete_version))
}

/// The drivers.
#[derive(Serialize, ToSchema)]
pub(super) struct DriverList {
    drivers: Vec<DriverView>,
}

/// A 429 of the compile slot.
const COMPILE_BUSY: &str = "Another component is compiling (one compile at a time per host) \
     and did not end within `max_compile_wait_ms` (`compile_busy`); `Retry-After` says when \
     to try again.";

/// The path of a driver's routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
struct DriverPath {
    /// The driver's name.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    name: String,
}

/// The path of one version of a driver.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
struct DriverVersionPath {
    /// The driver's name.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    name: String,
    /// Hex SHA-256 of the version's component bytes.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    digest: String,
}

/// List the drivers and their installed versions.
#[utoipa::path(get, path = "/v1/drivers", operation_id = "listDrivers", responses(
    (status = 200, description = "The drivers.", body = DriverList),
))]
async fn list(State(service): State<Service>) -> Result<Json<DriverList>, ApiError> {
    Ok(Json(DriverList {
        drivers: service.drivers()?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct InstallQuery {
    /// false: install the version without making it active.
    activate: Option<bool>,
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "component_too_large",
        format!("the component is larger than the limit of {max} bytes"),
    )
}

/// Upload a driver component (the raw bytes as the body).
///
/// It is validated (size, compile time, the ferry:driver world at a
/// compatible version, a first `capabilities` call), stored and, unless
/// `activate=false`, made active at once. Components compile one at a
/// time per host. A refused component changes nothing and leaves nothing
/// stored. A new version may delete the driver's oldest inactive versions
/// beyond `driver_versions_kept`.
#[utoipa::path(put, path = "/v1/drivers/{name}", operation_id = "installDriver", params(DriverPath, InstallQuery),
    request_body(description = "The component's bytes.", content(
        ("application/wasm"), ("application/octet-stream"))),
    responses(
    (status = 200, description = "That version was installed already (same digest).", body = DriverVersionView),
    (status = 201, description = "A new version was installed.", body = DriverVersionView),
    (status = 400, description = "Empty body (`empty_body`), a body that could not be read \
        (`body_unreadable`), a bad query (`bad_request`) or a bad driver name (`invalid_name`).", body = ErrorBody),
    (status = 413, description = "Larger than the component limit (`component_too_large`).", body = ErrorBody),
    (status = 422, description = "Refused: `not_wasm`, `core_module`, `not_a_component`, \
        `wrong_world`, `incompatible_world_version`, `compile_failed`, `compile_timeout`, \
        `smoke_call_failed`.", body = ErrorBody),
    (status = 429, description = COMPILE_BUSY, body = ErrorBody, headers(
        ("Retry-After" = u64, description = "Seconds to wait before retrying."))),
))]
async fn install(
    State(service): State<Service>,
    Path(name): Path<String>,
    Query(q): Query<InstallQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DriverVersionView>), ApiError> {
    let max = service.max_component_bytes();
    // Refuse a declared oversize before reading a byte of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    // The body is read here, not by an extractor, so the upload limit is
    // the runtime's component limit rather than the JSON limit.
    let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large(max)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("cannot read the uploaded component: {e}"),
            )
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the request body must be the driver component's bytes",
        ));
    }
    let view = service
        .install_driver(name, bytes.to_vec(), q.activate.unwrap_or(true))
        .await?;
    let status = if view.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// The version to make active.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivateRequest {
    /// Lowercase hex SHA-256 of an installed version.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    digest: String,
}

/// Make an installed version the active one (hot swap; roll back or
/// forward).
///
/// Calls in flight finish on the old version; new calls use this one.
#[utoipa::path(post, path = "/v1/drivers/{name}/activate", operation_id = "activateDriver", params(DriverPath), request_body = ActivateRequest, responses(
    (status = 200, description = "The version, now active.", body = DriverVersionView),
    (status = 400, description = "A bad driver name (`invalid_name`).", body = ErrorBody),
    (status = 404, description = "No such driver (`driver_not_found`) or version (`driver_version_not_found`).", body = ErrorBody),
    (status = 422, description = "The stored version could not be loaded (`compile_failed`, `smoke_call_failed`, ...).", body = ErrorBody),
    (status = 429, description = COMPILE_BUSY, body = ErrorBody, headers(
        ("Retry-After" = u64, description = "Seconds to wait before retrying."))),
))]
async fn activate(
    State(service): State<Service>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Result<Json<DriverVersionView>, ApiError> {
    Ok(Json(service.activate_driver(name, req.digest).await?))
}

/// Delete an installed version.
///
/// Its component, its compiled artifacts and its place in the driver's
/// record go (the bytes stay while another driver name lists the same
/// digest). The active version and a version a driver call (of a running
/// migration, say) still runs on are refused. Versions are also deleted by
/// the `driver_versions_kept` setting after an install.
#[utoipa::path(delete, path = "/v1/drivers/{name}/versions/{digest}", operation_id = "deleteDriverVersion", params(DriverVersionPath), responses(
    (status = 204, description = "Deleted."),
    (status = 400, description = "A bad driver name (`invalid_name`).", body = ErrorBody),
    (status = 404, description = "No such driver (`driver_not_found`) or version (`driver_version_not_found`).", body = ErrorBody),
    (status = 409, description = "The version is the active one (`driver_version_active`) or a \
        driver call runs on it (`driver_version_in_use`).", body = ErrorBody),
))]
async fn delete_version(
    State(service): State<Service>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service.delete_driver_version(name, digest).await?;
    Ok(StatusCode::NO_CONTENT)
}
