//! `/v1/volumes/{id}/migrate` and `/v1/volumes/{id}/migration`: admission,
//! the status query and abort (seed 003).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::routes::Routes;
use crate::service::{MigrateVolume, MigrationView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.post("/v1/volumes/{id}/migrate", migrate)
        .get("/v1/volumes/{id}/migration", status)
        .post("/v1/volumes/{id}/migration/abort", abort)
}

async fn migrate(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    JsonBody(req): JsonBody<MigrateVolume>,
) -> Result<Response, ApiError> {
    let accepted = service.migrate(id, req).await?;
    let mut res = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if let Ok(v) = HeaderValue::try_from(format!("/v1/volumes/{id}/migration")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn status(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
) -> Result<Json<MigrationView>, ApiError> {
    Ok(Json(service.migration(id)?))
}

async fn abort(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
) -> Result<(StatusCode, Json<MigrationView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(service.abort_migration(id).await?),
    ))
}
