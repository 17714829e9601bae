//! `/v1/drivers`: the driver registry. List the installed versions, upload
//! a component (`PUT`, the raw bytes as the body), activate a version (hot
//! swap, roll back or forward) and delete one.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::JsonBody;
use super::routes::Routes;
use crate::service::{DriverVersionView, DriverView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.get("/v1/drivers", list)
        .put("/v1/drivers/{name}", install)
        .post("/v1/drivers/{name}/activate", activate)
        .delete("/v1/drivers/{name}/versions/{digest}", delete_version)
}

#[derive(Serialize)]
struct DriverList {
    drivers: Vec<DriverView>,
}

async fn list(State(service): State<Service>) -> Result<Json<DriverList>, ApiError> {
    Ok(Json(DriverList {
        drivers: service.drivers()?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateRequest {
    /// Lowercase hex SHA-256 of an installed version.
    digest: String,
}

async fn activate(
    State(service): State<Service>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Result<Json<DriverVersionView>, ApiError> {
    Ok(Json(service.activate_driver(name, req.digest).await?))
}

async fn delete_version(
    State(service): State<Service>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service.delete_driver_version(name, digest).await?;
    Ok(StatusCode::NO_CONTENT)
}
