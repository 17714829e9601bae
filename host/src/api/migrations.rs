//! `/v1/volumes/{id}/migrate` and `/v1/volumes/{id}/migration`: admission,
//! the status query and abort (seed 003).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
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

/// Query of an abort.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AbortQuery {
    /// Abort a migration started with `lock_volume` all the same.
    #[serde(default)]
    force: bool,
}

async fn abort(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    query: Result<Query<AbortQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<MigrationView>), ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(service.abort_migration(id, q.force).await?),
    ))
}
