//! `/v1/volumes/{id}/migrate` and `/v1/volumes/{id}/migration`: admission,
//! the status query and abort (seed 003).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::routes::Routes;
use crate::service::{MigrateVolume, MigrationView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.post("/v1/volumes/{id}/migrate", migrate)
        .get("/v1/volumes/{id}/migration", status)
        .post("/v1/volumes/{id}/migration/abort", abort)
}

/// The request as sent, with `lock_volume` false unless the client set it:
/// the volume is locked only on request (Cinder's default), whatever
/// default the service applies to a request that leaves it open.
fn unlocked_unless_asked(mut body: Value) -> Result<MigrateVolume, ApiError> {
    if let Some(fields) = body.as_object_mut() {
        let asked = fields.get("lock_volume").is_some_and(|v| !v.is_null());
        if !asked {
            fields.insert("lock_volume".into(), Value::Bool(false));
        }
    }
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid request body: {e}"),
        )
    })
}

async fn migrate(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req = unlocked_unless_asked(body)?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lock_volume_is_false_unless_the_client_asks() {
        // Read back through serde, so the check holds whether the request
        // type keeps the field optional or not.
        let lock = |body: Value| {
            let req = unlocked_unless_asked(body).unwrap();
            serde_json::to_value(req).unwrap()["lock_volume"].clone()
        };
        assert_eq!(lock(json!({"array": "t1"})), json!(false));
        assert_eq!(
            lock(json!({"array": "t1", "lock_volume": null})),
            json!(false)
        );
        assert_eq!(
            lock(json!({"array": "t1", "lock_volume": true})),
            json!(true)
        );
        assert_eq!(
            lock(json!({"array": "t1", "lock_volume": false})),
            json!(false)
        );
        for bad in [
            json!({"array": "t1", "colour": 1}),
            json!({"lock_volume": true}),
            json!([1]),
            json!({"array": "t1", "lock_volume": "yes"}),
        ] {
            let e = unlocked_unless_asked(bad.clone()).unwrap_err();
            assert_eq!(e.code(), "invalid_body", "{bad}");
        }
    }
}
