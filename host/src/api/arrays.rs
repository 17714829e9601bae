//! `/v1/arrays`: the storage arrays Ferry manages.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::routes::Routes;
use crate::service::{ArrayView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.get("/v1/arrays", list)
}

#[derive(Serialize)]
struct ArrayList {
    arrays: Vec<ArrayView>,
}

async fn list(State(service): State<Service>) -> Result<Json<ArrayList>, ApiError> {
    Ok(Json(ArrayList {
        arrays: service.arrays()?,
    }))
}
