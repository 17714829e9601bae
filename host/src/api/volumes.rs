//! `/v1/volumes`: volume life cycle and attachments, and the operator's
//! way out of a stuck volume: `reset-status` and the forced delete.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::auth::Role;
use super::error::{ApiError, ErrorBody};
use super::extract::{AttachmentPath, Ids, JsonBody, VolumePath};
use super::routes::Routes;
use crate::service::{
    AttachVolume, AttachmentView, CreateVolume, ForceDeleted, ManageVolume, ResetOutcome,
    ResetStatus, Service, VolumeView,
};

pub(super) fn register(r: Routes) -> Routes {
    r.protected(routes!(list, create))
        .protected(routes!(show, delete))
        .protected(routes!(reset_status))
        .protected(routes!(manage))
        .protected(routes!(unmanage))
        .protected(routes!(attach))
        .protected(routes!(detach))
}

/// The volumes.
#[derive(Serialize, ToSchema)]
pub(super) struct VolumeList {
    volumes: Vec<VolumeView>,
}

/// A 507 of a file system too full for the volume.
pub(super) const INSUFFICIENT_SPACE: &str = "The file system under the array has less free \
     space than the volume's size (`insufficient_space`; the message names the free and the \
     needed bytes). Nothing was created.";

/// 201 with the new resource's address in `Location`.
fn created(location: String, body: impl Serialize) -> Response {
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::try_from(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// List the volumes.
#[utoipa::path(get, path = "/v1/volumes", operation_id = "listVolumes", responses(
    (status = 200, description = "The volumes; a reader token sees no attachment's `uri`.", body = VolumeList),
))]
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

/// Create a volume on an array.
#[utoipa::path(post, path = "/v1/volumes", operation_id = "createVolume", request_body = CreateVolume, responses(
    (status = 201, description = "The new volume; `Location` has its address.", body = VolumeView,
        headers(("Location" = String, description = "The volume's address."))),
    (status = 400, description = "A size that is not a positive multiple of 512 (`invalid_size`), \
        a name that is empty, longer than 255 bytes, or holds a character that could disguise it \
        when printed (`invalid_name`; the message names the field and the code point, e.g. \
        `U+202E`), or another bad argument (`invalid_argument`).", body = ErrorBody),
    (status = 404, description = "No such array (`array_not_found`) or pool (`pool_not_found`).", body = ErrorBody),
    (status = 422, description = "The array has not enough space (`no_space`), or its driver refused (`driver_unsupported`, `driver_no_space`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed (`driver_backend_error`, `driver_trap`, `driver_timeout`, `driver_out_of_memory`).", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
    (status = 507, description = INSUFFICIENT_SPACE, body = ErrorBody),
))]
async fn create(
    State(service): State<Service>,
    JsonBody(req): JsonBody<CreateVolume>,
) -> Result<Response, ApiError> {
    let volume = service.create_volume(req).await?;
    Ok(created(format!("/v1/volumes/{}", volume.id), volume))
}

/// Manage an existing LUN: a LUN that already lives on the array, not made
/// through Ferry, becomes a volume without copying (Cinder's manage
/// existing). Its size is the LUN's. Emits a `volume` event.
#[utoipa::path(post, path = "/v1/volumes/manage", operation_id = "manageVolume", request_body = ManageVolume, responses(
    (status = 201, description = "The new volume; `Location` has its address.", body = VolumeView,
        headers(("Location" = String, description = "The volume's address."))),
    (status = 400, description = "A bad name (`invalid_name`) or reference (`invalid_argument`), \
        or the driver found the LUN unusable (`driver_invalid_argument`: a size that is not a \
        positive multiple of 512, one of the driver's own volumes).", body = ErrorBody),
    (status = 404, description = "No such array (`array_not_found`), pool (`pool_not_found`) \
        or LUN (`driver_not_found`).", body = ErrorBody),
    (status = 409, description = "Another volume has the LUN already (`already_managed`).", body = ErrorBody),
    (status = 422, description = "The array's driver cannot manage LUNs (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed (`driver_backend_error`, `driver_trap`, `driver_timeout`, `driver_out_of_memory`).", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
))]
async fn manage(
    State(service): State<Service>,
    JsonBody(req): JsonBody<ManageVolume>,
) -> Result<Response, ApiError> {
    let volume = service.manage_volume(req).await?;
    Ok(created(format!("/v1/volumes/{}", volume.id), volume))
}

/// Unmanage a volume: Ferry forgets it and its LUN stays on the array with
/// its data. Only an available, detached volume. Emits a `volume` event.
#[utoipa::path(post, path = "/v1/volumes/{id}/unmanage", operation_id = "unmanageVolume", params(VolumePath), responses(
    (status = 204, description = "Forgotten; the LUN is where it was."),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "The volume is attached, migrating or busy (`invalid_state`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed (`driver_backend_error`, `driver_trap`, `driver_timeout`, `driver_out_of_memory`).", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
))]
async fn unmanage(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
) -> Result<StatusCode, ApiError> {
    service.unmanage_volume(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Show a volume.
#[utoipa::path(get, path = "/v1/volumes/{id}", operation_id = "getVolume", params(VolumePath), responses(
    (status = 200, description = "The volume; a reader token sees no attachment's `uri`.", body = VolumeView),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
))]
async fn show(
    State(service): State<Service>,
    Extension(role): Extension<Role>,
    Ids([id]): Ids<1>,
) -> Result<Json<VolumeView>, ApiError> {
    Ok(Json(for_role(service.get_volume(id)?, role)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Remove the volume in any state (Cinder's os-force_delete).
    #[serde(default)]
    force: bool,
}

/// Delete a volume and its storage.
///
/// A plain delete needs the volume `available` or `error` and unattached,
/// and answers 204. With `force=true` (Cinder's os-force_delete) it is
/// removed in any state, `migrating` included, and answers 200 with what it
/// removed and what it had to leave behind: its migration is stopped, its
/// exports withdrawn (NBD clients are disconnected), its hydration
/// abandoned, and the drivers of where it lives and of both sides of its
/// last migration delete their LUN of it, best effort: each failure is a
/// warning in the answer and in the `deleted` event, and the record goes
/// anyway.
#[utoipa::path(delete, path = "/v1/volumes/{id}", operation_id = "deleteVolume", params(VolumePath, DeleteQuery), responses(
    (status = 200, description = "Forced delete: what was stopped and deleted, and what was left behind.", body = ForceDeleted),
    (status = 204, description = "Deleted (plain delete)."),
    (status = 400, description = "A query other than `force=true|false` (`invalid_query`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "Plain delete: the volume is attached, migrating or busy (`invalid_state`; the message names the forced delete).", body = ErrorBody),
    (status = 422, description = "Plain delete: the array's driver refused (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "Plain delete: the array's driver failed.", body = ErrorBody),
    (status = 503, description = "Plain delete: the array's driver is not loaded (`driver_not_loaded`); forced: a migration was told to stop but is still inside a step (`migration_stopping`).", body = ErrorBody),
))]
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

/// Set a volume's status by hand (Cinder's os-reset_status).
///
/// `available`, `in-use` or `error`. A migration running on it is stopped
/// and recorded as `error` (its error says an operator reset it); no data
/// moves and no LUN is deleted, so a LUN the migration made on the other
/// array stays until the volume is deleted. A LUN still filling from the
/// migration's source is ended when complete; when not, the reset is
/// refused unless `discard_unhydrated` is true. Emits `volume` (and
/// `migration`) events.
#[utoipa::path(post, path = "/v1/volumes/{id}/reset-status", operation_id = "resetVolumeStatus", params(VolumePath), request_body = ResetStatus, responses(
    (status = 200, description = "The volume after the reset, with what was stopped and left where.", body = ResetOutcome),
    (status = 400, description = "A status that cannot be set by hand (`invalid_status`: `creating`, \
        `deleting`, `migrating`, or unknown; `migration_status` other than `\"error\"` or null).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "The status contradicts the volume (`inconsistent_status`: `in-use` \
        without attachments, `available` with some, `migration_status` `error` on a volume never \
        migrated), or its LUN still fills from the source (`hydration_incomplete`). Nothing changed.", body = ErrorBody),
    (status = 503, description = "The migration was told to stop but is still inside a step \
        (`migration_stopping`); the volume stays `migrating`; ask again.", body = ErrorBody),
))]
async fn reset_status(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    JsonBody(req): JsonBody<ResetStatus>,
) -> Result<Json<ResetOutcome>, ApiError> {
    Ok(Json(service.reset_status(id, req).await?))
}

/// Attach a volume to a server; the answer carries the NBD URI.
#[utoipa::path(post, path = "/v1/volumes/{id}/attachments", operation_id = "attachVolume", params(VolumePath), request_body = AttachVolume, responses(
    (status = 201, description = "The attachment; `Location` has its address.", body = AttachmentView,
        headers(("Location" = String, description = "The attachment's address."))),
    (status = 400, description = "A server name that is empty, too long or holds a character that could disguise it (`invalid_name`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "The volume's status forbids attaching (`invalid_state`), a \
        migration started with `lock_volume` runs (`volume_locked`), or the volume has \
        `[volumes] max_attachments_per_volume` attachments already (`too_many_attachments`; \
        default 16). Nothing changed.", body = ErrorBody),
    (status = 422, description = "The array's driver refused (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed.", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
))]
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

/// Detach a volume from a server.
#[utoipa::path(delete, path = "/v1/volumes/{id}/attachments/{attachment_id}", operation_id = "detachVolume",
    params(AttachmentPath), responses(
    (status = 204, description = "Detached."),
    (status = 404, description = "No such volume (`volume_not_found`) or attachment (`attachment_not_found`).", body = ErrorBody),
    (status = 409, description = "A migration started with `lock_volume` runs (`volume_locked`); nothing changed.", body = ErrorBody),
    (status = 422, description = "The array's driver refused (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed.", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
))]
async fn detach(
    State(service): State<Service>,
    Ids([id, attachment]): Ids<2>,
) -> Result<StatusCode, ApiError> {
    service.detach(id, attachment).await?;
    Ok(StatusCode::NO_CONTENT)
}
