//! `/v1/drivers`: the installed driver components and their versions.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::routes::Routes;
use crate::service::{DriverView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.get("/v1/drivers", list)
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
