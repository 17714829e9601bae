//! `/v1/volumes`: volume life cycle and attachments.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::routes::Routes;
use crate::service::{AttachVolume, CreateVolume, Service, VolumeView};

pub(super) fn register(r: Routes) -> Routes {
    r.get("/v1/volumes", list)
        .post("/v1/volumes", create)
        .get("/v1/volumes/{id}", show)
        .delete("/v1/volumes/{id}", delete)
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

async fn list(State(service): State<Service>) -> Result<Json<VolumeList>, ApiError> {
    Ok(Json(VolumeList {
        volumes: service.list_volumes()?,
    }))
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
    Ids([id]): Ids<1>,
) -> Result<Json<VolumeView>, ApiError> {
    Ok(Json(service.get_volume(id)?))
}

async fn delete(State(service): State<Service>, Ids([id]): Ids<1>) -> Result<StatusCode, ApiError> {
    service.delete_volume(id).await?;
    Ok(StatusCode::NO_CONTENT)
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
