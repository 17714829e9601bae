//! `/v3/{project_id}/volumes`: create, list (plain and `detail`), show,
//! update and delete, as Cinder answers them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, RawPathParams, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::location;
use super::views::{self, CinderVolume, Context, VolumeSummary};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::JsonBody;
use crate::api::routes::Routes;
use crate::service::{CreateVolume, Service, ServiceError, UpdateVolume, VolumeView, wire_name};

pub(super) fn register(r: Routes) -> Routes {
    r.cinder(routes!(list, create))
        .cinder(routes!(detail))
        .cinder(routes!(show, update, delete))
}

/// The project and volume a path names. A volume id that is no UUID names
/// no volume (404, as Cinder answers, so clients go on to look it up by
/// name).
pub(super) struct Target {
    /// The project in the path.
    pub project: String,
    /// The volume, when the path names one.
    pub volume: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.body_text()))?;
        let mut project = String::new();
        let mut volume = None;
        for (name, raw) in &params {
            match name {
                "project_id" => project = raw.to_owned(),
                "volume_id" => {
                    volume = Some(
                        Uuid::try_parse(raw)
                            .ok()
                            .filter(|_| raw.len() == 36)
                            .ok_or_else(|| {
                                ApiError::new(
                                    StatusCode::NOT_FOUND,
                                    "volume_not_found",
                                    format!(
                                        "Volume {} could not be found.",
                                        crate::api::clip::echo(raw)
                                    ),
                                )
                            })?,
                    );
                }
                _ => {}
            }
        }
        Ok(Self { project, volume })
    }
}

impl Target {
    /// The volume's id; the routes that use it always name one.
    pub fn volume_id(&self) -> Result<Uuid, ApiError> {
        self.volume.ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "route names no volume_id",
            )
        })
    }
}

/// The project and volume path parameters, for the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
pub(super) struct VolumeParams {
    /// Any project: Ferry has one tenant.
    project_id: String,
    /// The volume's UUID.
    volume_id: String,
}

/// The project path parameter, for the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
pub(super) struct ProjectParams {
    /// Any project: Ferry has one tenant.
    project_id: String,
}

/// Views of volumes for `project`.
pub(super) fn with_context<T>(
    state: &AppState,
    project: &str,
    f: impl FnOnce(&Context<'_>) -> T,
) -> T {
    let arrays = state.service.array_pools();
    f(&Context {
        project,
        host: &state.options.cinder.host,
        arrays: &arrays,
    })
}

/// `{"volume": ...}`.
#[derive(Serialize, ToSchema)]
pub(super) struct VolumeBody {
    volume: CinderVolume,
}

/// `{"volumes": [...]}` of `detail`.
#[derive(Serialize, ToSchema)]
pub(super) struct VolumeDetails {
    volumes: Vec<CinderVolume>,
}

/// `{"volumes": [...]}` of the plain list.
#[derive(Serialize, ToSchema)]
pub(super) struct VolumeSummaries {
    volumes: Vec<VolumeSummary>,
}

/// Filters, order and paging of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only volumes of this name.
    name: Option<String>,
    /// Only volumes in this status.
    status: Option<String>,
    /// Only volumes whose last migration is in this status.
    migration_status: Option<String>,
    /// At most this many.
    #[param(minimum = 0)]
    limit: Option<usize>,
    /// Start after the volume with this id.
    marker: Option<String>,
    /// Skip this many first.
    #[param(minimum = 0)]
    offset: Option<usize>,
    /// `KEY[:asc|desc],...` with keys `id`, `name`, `size`, `status`,
    /// `created_at`; by default `created_at:desc`.
    sort: Option<String>,
    /// The older form of `sort`: one key.
    sort_key: Option<String>,
    /// The older form of `sort`: `asc` or `desc`.
    sort_dir: Option<String>,
    /// Accepted and ignored: one tenant sees every volume.
    all_tenants: Option<String>,
    /// Accepted and ignored: one tenant sees every volume.
    #[allow(dead_code)] // any project names the one tenant
    project_id: Option<String>,
    /// Accepted and ignored: the count is not returned.
    with_count: Option<String>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// A query as read, or 400 `invalid_query` naming what is wrong with it.
pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad_query(e.body_text()))
}

type Order = Vec<(String, bool)>;

fn order(q: &ListQuery) -> Result<Order, ApiError> {
    let text = match (&q.sort, &q.sort_key) {
        (Some(s), None) => s.clone(),
        (None, Some(k)) => format!("{k}:{}", q.sort_dir.as_deref().unwrap_or("desc")),
        (None, None) => "created_at:desc".to_owned(),
        (Some(_), Some(_)) => {
            return Err(bad_query("give sort or sort_key, not both".into()));
        }
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
        if !["id", "name", "size", "status", "created_at"].contains(&key) {
            return Err(bad_query(format!(
                "cannot sort by {:?}: keys are id, name, size, status, created_at",
                crate::api::clip::echo(key)
            )));
        }
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(bad_query(format!(
                    "sort direction {:?} is neither asc nor desc",
                    crate::api::clip::echo(other)
                )));
            }
        };
        out.push((key.to_owned(), descending));
    }
    Ok(out)
}

fn compare(a: &VolumeView, b: &VolumeView, order: &Order) -> std::cmp::Ordering {
    let text = |v: &VolumeView, key: &str| -> String {
        match key {
            "id" => v.id.to_string(),
            "name" => v.name.clone(),
            "status" => wire_name(v.status),
            _ => v.created_at.clone(),
        }
    };
    for (key, descending) in order {
        let ord = if key == "size" {
            a.size_bytes.cmp(&b.size_bytes)
        } else {
            text(a, key).cmp(&text(b, key))
        };
        let ord = if *descending { ord.reverse() } else { ord };
        if ord.is_ne() {
            return ord;
        }
    }
    a.id.cmp(&b.id)
}

/// The volumes a list query selects, in its order and page.
fn select(
    service: &Service,
    asked: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Vec<VolumeView>, ApiError> {
    let q = query(asked)?;
    flag("all_tenants", q.all_tenants.as_deref())?;
    flag("with_count", q.with_count.as_deref())?;
    let order = order(&q)?;
    let mut volumes: Vec<VolumeView> = service
        .list_volumes()?
        .into_iter()
        .filter(|v| q.name.as_ref().is_none_or(|n| &v.name == n))
        .filter(|v| q.status.as_ref().is_none_or(|s| &wire_name(v.status) == s))
        .filter(|v| {
            q.migration_status
                .as_ref()
                .is_none_or(|s| v.migration_status.is_some_and(|m| &wire_name(m) == s))
        })
        .collect();
    volumes.sort_by(|a, b| compare(a, b, &order));
    if let Some(marker) = &q.marker {
        let at = volumes
            .iter()
            .position(|v| v.id.to_string() == *marker)
            .ok_or_else(|| {
                bad_query(format!(
                    "marker {} names no volume",
                    crate::api::clip::echo(marker)
                ))
            })?;
        volumes.drain(..=at);
    }
    let skip = q.offset.unwrap_or(0).min(volumes.len());
    volumes.drain(..skip);
    if let Some(limit) = q.limit {
        volumes.truncate(limit);
    }
    Ok(volumes)
}

/// List volumes: id, name and link of each.
#[utoipa::path(get, path = "/v3/{project_id}/volumes", operation_id = "cinderListVolumes",
    tag = "block-storage-v3", params(ProjectParams, ListQuery), responses(
    (status = 200, description = "The volumes the query selects.", body = VolumeSummaries),
    (status = 400, description = "An unknown query parameter, sort key or marker (`invalid_query`).", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    target: Target,
    asked: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<VolumeSummaries>, ApiError> {
    let volumes = select(&state.service, asked)?;
    let volumes = with_context(&state, &target.project, |c| {
        volumes.iter().map(|v| c.summary(v)).collect()
    });
    Ok(Json(VolumeSummaries { volumes }))
}

/// List volumes with every field.
#[utoipa::path(get, path = "/v3/{project_id}/volumes/detail", operation_id = "cinderListVolumesDetail",
    tag = "block-storage-v3", params(ProjectParams, ListQuery), responses(
    (status = 200, description = "The volumes the query selects.", body = VolumeDetails),
    (status = 400, description = "An unknown query parameter, sort key or marker (`invalid_query`).", body = ErrorBody),
))]
async fn detail(
    State(state): State<AppState>,
    target: Target,
    asked: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<VolumeDetails>, ApiError> {
    let volumes = select(&state.service, asked)?;
    let volumes = with_context(&state, &target.project, |c| {
        volumes.iter().map(|v| c.volume(v)).collect()
    });
    Ok(Json(VolumeDetails { volumes }))
}

/// An object with no members: what Ferry accepts where Cinder takes
/// metadata or hints.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used
pub(super) struct EmptyObject {}

/// A volume to create. Cinder's `snapshot_id`, `source_volid`,
/// `imageRef`, `backup_id`, `consistencygroup_id` and `group_id` are
/// accepted only as null: Ferry has none of those things.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewVolume {
    /// Size in GiB.
    #[schema(minimum = 1)]
    size: u64,
    /// Display name (Ferry needs one).
    #[schema(required = true, min_length = 1, max_length = 255)]
    name: Option<String>,
    /// Free text, at most 255 bytes.
    #[serde(default)]
    #[schema(max_length = 255)]
    description: Option<String>,
    /// Where it goes: a type's name or id (`GET .../types`); the first
    /// array's first pool when absent.
    #[serde(default)]
    volume_type: Option<String>,
    /// `nova` or absent.
    #[serde(default)]
    #[schema(pattern = "^nova$")]
    availability_zone: Option<String>,
    /// Must be empty: Ferry keeps no metadata.
    #[serde(default)]
    #[schema(value_type = Option<EmptyObject>)]
    metadata: Option<BTreeMap<String, String>>,
    /// Accepted: every Ferry volume takes several attachments.
    #[serde(default)]
    #[allow(dead_code)] // true or false, the volume is the same
    multiattach: Option<bool>,
    /// Must be null: Ferry makes no snapshots.
    #[serde(default)]
    #[schema(ignore)]
    snapshot_id: Option<String>,
    /// Must be null: Ferry does not clone.
    #[serde(default)]
    #[schema(ignore)]
    source_volid: Option<String>,
    /// Must be null: Ferry keeps no images.
    #[serde(default, rename = "imageRef")]
    #[schema(ignore)]
    image_ref: Option<String>,
    /// Must be null: Ferry keeps no backups.
    #[serde(default)]
    #[schema(ignore)]
    backup_id: Option<String>,
    /// Must be null: no groups.
    #[serde(default)]
    #[schema(ignore)]
    consistencygroup_id: Option<String>,
    /// Must be null: no groups.
    #[serde(default)]
    #[schema(ignore)]
    group_id: Option<String>,
}

/// `{"volume": {...}}` of a create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    volume: NewVolume,
    /// Must be empty: Ferry places volumes by type alone.
    #[serde(default, rename = "OS-SCH-HNT:scheduler_hints")]
    #[schema(value_type = Option<EmptyObject>)]
    scheduler_hints: Option<BTreeMap<String, Value>>,
}

fn unsupported(field: &str, why: &str) -> ApiError {
    ApiError::from(ServiceError::InvalidArgument(format!(
        "{field} is not supported: {why}"
    )))
}

impl NewVolume {
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        for (field, set, why) in [
            (
                "snapshot_id",
                self.snapshot_id.is_some(),
                "Ferry makes no snapshots",
            ),
            (
                "source_volid",
                self.source_volid.is_some(),
                "Ferry does not clone volumes",
            ),
            (
                "imageRef",
                self.image_ref.is_some(),
                "Ferry keeps no images",
            ),
            (
                "backup_id",
                self.backup_id.is_some(),
                "Ferry keeps no backups",
            ),
            (
                "consistencygroup_id",
                self.consistencygroup_id.is_some(),
                "no groups",
            ),
            ("group_id", self.group_id.is_some(), "no groups"),
            (
                "metadata",
                self.metadata.as_ref().is_some_and(|m| !m.is_empty()),
                "Ferry keeps no metadata",
            ),
        ] {
            if set {
                return Err(unsupported(field, why));
            }
        }
        if let Some(zone) = &self.availability_zone
            && zone != "nova"
        {
            return Err(ApiError::from(ServiceError::InvalidArgument(format!(
                "availability zone {:?} does not exist; the only one is nova",
                crate::api::clip::echo(zone)
            ))));
        }
        Ok(())
    }
}

/// Create a volume where its type says.
///
/// Answers 202 like Cinder; the volume is `available` already, since Ferry
/// creates it before answering.
#[utoipa::path(post, path = "/v3/{project_id}/volumes", operation_id = "cinderCreateVolume",
    tag = "block-storage-v3", params(ProjectParams), request_body = CreateRequest, responses(
    (status = 202, description = "The new volume.", body = VolumeBody, links(
        ("show" = (operation_id = "cinderShowVolume", parameters(
            ("project_id" = "$request.path.project_id"), ("volume_id" = "$response.body#/volume/id")))),
        ("update" = (operation_id = "cinderUpdateVolume", parameters(
            ("project_id" = "$request.path.project_id"), ("volume_id" = "$response.body#/volume/id")))),
        ("act" = (operation_id = "cinderVolumeAction", parameters(
            ("project_id" = "$request.path.project_id"), ("volume_id" = "$response.body#/volume/id")))),
        ("delete" = (operation_id = "cinderDeleteVolume", parameters(
            ("project_id" = "$request.path.project_id"), ("volume_id" = "$response.body#/volume/id")))),
    )),
    (status = 400, description = "No name, a size of 0, a bad name or description \
        (`invalid_name`), or a field Ferry does not support set (`invalid_argument`: snapshot, \
        source volume, image, backup, group, metadata, scheduler hints, a zone other than `nova`).", body = ErrorBody),
    (status = 404, description = "No such volume type (`volume_type_not_found`).", body = ErrorBody),
    (status = 422, description = "The array has not enough space (`no_space`), or its driver refused.", body = ErrorBody),
    (status = 502, description = "The array's driver failed.", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
    (status = 507, description = crate::api::volumes::INSUFFICIENT_SPACE, body = ErrorBody),
))]
async fn create(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<(StatusCode, Json<VolumeBody>), ApiError> {
    let new = req.volume;
    new.refuse_unsupported()?;
    if req.scheduler_hints.is_some_and(|h| !h.is_empty()) {
        return Err(unsupported(
            "OS-SCH-HNT:scheduler_hints",
            "a volume type says where a volume goes",
        ));
    }
    let name = new.name.ok_or_else(|| {
        ApiError::from(ServiceError::InvalidName(
            "volume name (field \"name\") is required by Ferry".into(),
        ))
    })?;
    let size_bytes = views::bytes_of(new.size)
        .filter(|b| *b > 0)
        .ok_or(ServiceError::InvalidSize(0))?;
    let arrays = state.service.array_pools();
    let kind = location::find_type(&arrays, new.volume_type.as_deref().unwrap_or("default"))?;
    let volume = state
        .service
        .create_volume(CreateVolume {
            name,
            size_bytes,
            array: kind.location.array,
            pool: Some(kind.location.pool),
            description: new.description,
        })
        .await?;
    let volume = with_context(&state, &target.project, |c| c.volume(&volume));
    Ok((StatusCode::ACCEPTED, Json(VolumeBody { volume })))
}

/// Show a volume.
#[utoipa::path(get, path = "/v3/{project_id}/volumes/{volume_id}", operation_id = "cinderShowVolume",
    tag = "block-storage-v3", params(VolumeParams), responses(
    (status = 200, description = "The volume.", body = VolumeBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
))]
async fn show(State(state): State<AppState>, target: Target) -> Result<Json<VolumeBody>, ApiError> {
    let volume = state.service.get_volume(target.volume_id()?)?;
    let volume = with_context(&state, &target.project, |c| c.volume(&volume));
    Ok(Json(VolumeBody { volume }))
}

/// A change of name or description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeChanges {
    /// New display name.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    /// New description; empty removes it.
    #[serde(default)]
    #[schema(max_length = 255)]
    description: Option<String>,
    /// Must be empty: Ferry keeps no metadata.
    #[serde(default)]
    #[schema(value_type = Option<EmptyObject>)]
    metadata: Option<BTreeMap<String, String>>,
}

/// `{"volume": {...}}` of an update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateRequest {
    volume: VolumeChanges,
}

/// Rename a volume or change its description, in any status.
#[utoipa::path(put, path = "/v3/{project_id}/volumes/{volume_id}", operation_id = "cinderUpdateVolume",
    tag = "block-storage-v3", params(VolumeParams), request_body = UpdateRequest, responses(
    (status = 200, description = "The volume as it is now.", body = VolumeBody),
    (status = 400, description = "A bad name or description (`invalid_name`) or metadata (`invalid_argument`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
))]
async fn update(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<UpdateRequest>,
) -> Result<Json<VolumeBody>, ApiError> {
    let changes = req.volume;
    if changes.metadata.is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("metadata", "Ferry keeps no metadata"));
    }
    let volume = state.service.update_volume(
        target.volume_id()?,
        UpdateVolume {
            name: changes.name,
            description: changes.description,
        },
    )?;
    let volume = with_context(&state, &target.project, |c| c.volume(&volume));
    Ok(Json(VolumeBody { volume }))
}

/// Query of a delete.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Accepted: Ferry makes no snapshots to delete along.
    cascade: Option<String>,
    /// `true`: delete in any status, as `os-force_delete`.
    force: Option<String>,
}

/// A boolean query value as OpenStack clients spell it.
pub(super) fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(_) => Err(bad_query(format!("{name} is true or false"))),
    }
}

/// Delete a volume and its storage.
///
/// Answers 202 like Cinder; the volume is gone already. With
/// `force=true` it goes in any status, as with `os-force_delete`.
#[utoipa::path(delete, path = "/v3/{project_id}/volumes/{volume_id}", operation_id = "cinderDeleteVolume",
    tag = "block-storage-v3", params(VolumeParams, DeleteQuery), responses(
    (status = 202, description = "Deleted."),
    (status = 400, description = "An unknown query parameter (`invalid_query`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "The volume is attached, migrating or busy (`invalid_state`).", body = ErrorBody),
    (status = 422, description = "The array's driver refused (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "The array's driver failed.", body = ErrorBody),
    (status = 503, description = "The array's driver is not loaded (`driver_not_loaded`), or a \
        forced delete's migration is still inside a step (`migration_stopping`).", body = ErrorBody),
))]
async fn delete(
    State(state): State<AppState>,
    target: Target,
    asked: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(asked)?;
    flag("cascade", q.cascade.as_deref())?;
    let id = target.volume_id()?;
    if flag("force", q.force.as_deref())? {
        state.service.force_delete(id).await?;
    } else {
        state.service.delete_volume(id).await?;
    }
    Ok(StatusCode::ACCEPTED)
}
