//! `/v1/arrays`: the storage arrays Ferry manages.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::error::ApiError;
use super::routes::Routes;
use crate::service::{ArrayView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.protected(routes!(list))
}

/// The arrays.
#[derive(Serialize, ToSchema)]
pub(super) struct ArrayList {
    arrays: Vec<ArrayView>,
}

/// List the storage arrays.
#[utoipa::path(get, path = "/v1/arrays", operation_id = "listArrays", responses(
    (status = 200, description = "The arrays, with the free space of the file systems beneath.", body = ArrayList),
))]
async fn list(State(service): State<Service>) -> Result<Json<ArrayList>, ApiError> {
    Ok(Json(ArrayList {
        arrays: service.arrays()?,
    }))
}
