//! `/v1/volumes`: volume life cycle and attachments, and the operator's
//! way out of a stuck volume: `reset-status` and the forced delete.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Role;
use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::routes::Routes;
use crate::service::{AttachVolume, CreateVolume, ResetOutcome, ResetStatus, Service, VolumeView};

pub(super) fn register(r: Routes) -> Routes {
    r.get("/v1/volumes", list)
        .post("/v1/volumes", create)
        .get("/v1/volumes/{id}", show)
        .delete("/v1/volumes/{id}", delete)
        .post("/v1/volumes/{id}/reset-status", reset_status)
        .post("/v1/volumes/{id}/attachments", attach)
        .delete("/v1/volumes/{id}/attachments/{attachment_id}", detach)
}

#[derive(Serialize)]
struct VolumeList {
    volumes: Vec<VolumeView>,
}

/// 201 with the new resource's address in `Location`.
fn created(location: String, body: impl Serialize) -> Response {
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::try_from(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

async fn list(
    State(service): State<Service>,
    Extension(role): Extension<Role>,
) -> Result<Json<VolumeList>, ApiError> {
    let volumes = service.list_volumes()?;
    Ok(Json(VolumeList {
        volumes: volumes.into_iter().map(|v| for_role(v, role)).collect(),
    }))
}

/// A volume as `role` may see it.
fn for_role(v: VolumeView, role: Role) -> VolumeView {
    match role {
        Role::Admin => v,
        Role::Reader => v.for_reader(),
    }
}

async fn create(
    State(service): State<Service>,
    JsonBody(req): JsonBody<CreateVolume>,
) -> Result<Response, ApiError> {
    let volume = service.create_volume(req).await?;
    Ok(created(format!("/v1/volumes/{}", volume.id), volume))
}

async fn show(
    State(service): State<Service>,
    Extension(role): Extension<Role>,
    Ids([id]): Ids<1>,
) -> Result<Json<VolumeView>, ApiError> {
    Ok(Json(for_role(service.get_volume(id)?, role)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// Remove the volume in any state (Cinder's os-force_delete).
    #[serde(default)]
    force: bool,
}

/// A plain delete answers 204; a forced one 200 with what it removed and
/// what it had to leave behind.
async fn delete(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{}; the only parameter is force=true|false", e.body_text()),
        )
    })?;
    if q.force {
        let deleted = service.force_delete(id).await?;
        return Ok(Json(deleted).into_response());
    }
    service.delete_volume(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_status(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    JsonBody(req): JsonBody<ResetStatus>,
) -> Result<Json<ResetOutcome>, ApiError> {
    Ok(Json(service.reset_status(id, req).await?))
}

async fn attach(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    JsonBody(req): JsonBody<AttachVolume>,
) -> Result<Response, ApiError> {
    let attachment = service.attach(id, req).await?;
    Ok(created(
        format!("/v1/volumes/{id}/attachments/{}", attachment.id),
        attachment,
    ))
}

async fn detach(
    State(service): State<Service>,
    Ids([id, attachment]): Ids<2>,
) -> Result<StatusCode, ApiError> {
    service.detach(id, attachment).await?;
    Ok(StatusCode::NO_CONTENT)
}
