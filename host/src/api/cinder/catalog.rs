//! `/v3/{project_id}/scheduler-stats/get_pools` and
//! `/v3/{project_id}/types`: where volumes can live, as `cinder get-pools`
//! and `openstack volume type list` show it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::location;
use super::views::{self, CinderPool, CinderType};
use super::volumes::{ProjectParams, flag, query};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::routes::Routes;

pub(super) fn register(r: Routes) -> Routes {
    r.cinder(routes!(get_pools))
        .cinder(routes!(list_types))
        .cinder(routes!(show_type))
}

/// Query of `get_pools`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PoolsQuery {
    /// `true`: each pool with its capabilities.
    detail: Option<String>,
}

/// `{"pools": [...]}`.
#[derive(Serialize, ToSchema)]
pub(super) struct Pools {
    pools: Vec<CinderPool>,
}

/// The pools volumes can live in, `HOST@ARRAY#POOL` each.
#[utoipa::path(get, path = "/v3/{project_id}/scheduler-stats/get_pools", operation_id = "cinderGetPools",
    tag = "block-storage-v3", params(ProjectParams, PoolsQuery), responses(
    (status = 200, description = "Every pool of every array; capacity is the array's, which its pools share.", body = Pools),
    (status = 400, description = "An unknown query parameter (`invalid_query`).", body = ErrorBody),
))]
async fn get_pools(
    State(state): State<AppState>,
    asked: Result<Query<PoolsQuery>, QueryRejection>,
) -> Result<Json<Pools>, ApiError> {
    let q = query(asked)?;
    let detail = flag("detail", q.detail.as_deref())?;
    let arrays = state.service.arrays()?;
    Ok(Json(Pools {
        pools: views::pools(&state.options.cinder.host, &arrays, detail),
    }))
}

/// `{"volume_types": [...]}`.
#[derive(Serialize, ToSchema)]
pub(super) struct TypeList {
    volume_types: Vec<CinderType>,
}

/// `{"volume_type": ...}`.
#[derive(Serialize, ToSchema)]
pub(super) struct TypeBody {
    volume_type: CinderType,
}

/// Query of the type list: what clients send, accepted.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TypesQuery {
    /// `true`, `false` or `none` (both); every type is public.
    is_public: Option<String>,
}

/// The volume types: one per array (its first pool) and one per further
/// pool (`ARRAY#POOL`).
#[utoipa::path(get, path = "/v3/{project_id}/types", operation_id = "cinderListTypes",
    tag = "block-storage-v3", params(ProjectParams, TypesQuery), responses(
    (status = 200, description = "Every type, the arrays' order kept.", body = TypeList),
    (status = 400, description = "An unknown query parameter (`invalid_query`).", body = ErrorBody),
))]
async fn list_types(
    State(state): State<AppState>,
    asked: Result<Query<TypesQuery>, QueryRejection>,
) -> Result<Json<TypeList>, ApiError> {
    let q = query(asked)?;
    let public_only = match q
        .is_public
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("none") => None,
        other => Some(flag("is_public", other)?),
    };
    let arrays = state.service.array_pools();
    // Every type is public: asking for private ones finds none.
    let volume_types = if public_only == Some(false) && q.is_public.is_some() {
        Vec::new()
    } else {
        location::types(&arrays)
            .into_iter()
            .map(Into::into)
            .collect()
    };
    Ok(Json(TypeList { volume_types }))
}

/// The type path parameters, for the document.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TypePath {
    /// Any project: Ferry has one tenant.
    #[allow(dead_code)] // only documented
    project_id: String,
    /// The type's id or name, or `default`.
    type_id: String,
}

/// A volume type, by id, name or `default`.
#[utoipa::path(get, path = "/v3/{project_id}/types/{type_id}", operation_id = "cinderShowType",
    tag = "block-storage-v3", params(TypePath), responses(
    (status = 200, description = "The type.", body = TypeBody),
    (status = 404, description = "No such type (`volume_type_not_found`).", body = ErrorBody),
))]
async fn show_type(
    State(state): State<AppState>,
    Path(path): Path<TypePath>,
) -> Result<Json<TypeBody>, ApiError> {
    let arrays = state.service.array_pools();
    Ok(Json(TypeBody {
        volume_type: location::find_type(&arrays, &path.type_id)?.into(),
    }))
}
