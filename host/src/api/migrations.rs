//! `/v1/volumes/{id}/migrate` and `/v1/volumes/{id}/migration`: admission,
//! the status query and abort (seed 003).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Ids, JsonBody, VolumePath};
use super::routes::Routes;
use super::volumes::INSUFFICIENT_SPACE;
use crate::service::{MigrateVolume, MigrationAccepted, MigrationView, Service};

pub(super) fn register(r: Routes) -> Routes {
    r.protected(routes!(migrate))
        .protected(routes!(status))
        .protected(routes!(abort))
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

/// Migrate a volume to another array or pool.
///
/// Admission is synchronous and atomic: 202 when it will proceed, else the
/// exact reason. An `available` volume moves offline; an `in-use` one moves
/// live: its NBD connections stay open, and each attachment's switch to
/// the destination is a `migration` event with `to` `switched`.
#[utoipa::path(post, path = "/v1/volumes/{id}/migrate", operation_id = "migrateVolume", params(VolumePath), request_body = MigrateVolume, responses(
    (status = 202, description = "Accepted; follow it at `Location`.", body = MigrationAccepted,
        headers(("Location" = String, description = "The migration's status query."))),
    (status = 400, description = "Same array and pool (`same_location`), or a bad argument (`invalid_argument`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`), array (`array_not_found`) or pool (`pool_not_found`).", body = ErrorBody),
    (status = 409, description = "A migration runs (`migration_in_progress`) or the status forbids it (`not_migratable`).", body = ErrorBody),
    (status = 422, description = "The destination has not enough space (`no_space`).", body = ErrorBody),
    (status = 503, description = "A driver is not loaded (`driver_not_loaded`).", body = ErrorBody),
    (status = 507, description = INSUFFICIENT_SPACE, body = ErrorBody),
))]
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

/// The last migration of a volume: status, phase, path, progress, error,
/// warnings, retries.
#[utoipa::path(get, path = "/v1/volumes/{id}/migration", operation_id = "getMigration", params(VolumePath), responses(
    (status = 200, description = "The last migration; for a volume never migrated every field is \
        null (`progress` too) and `warnings` empty.", body = MigrationView),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
))]
async fn status(
    State(service): State<Service>,
    Ids([id]): Ids<1>,
) -> Result<Json<MigrationView>, ApiError> {
    Ok(Json(service.migration(id)?))
}

/// Query of an abort.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AbortQuery {
    /// Abort a migration started with `lock_volume` all the same.
    #[serde(default)]
    force: bool,
}

/// Stop a running migration and put the volume back where it was.
///
/// An accepted abort always takes effect: the migration shows `aborting`
/// at once and ends `aborted` with the volume on its source (a driver's
/// copy in flight is stopped; a move the source driver finished anyway is
/// copied back; while `migrating_attachable` the destination's writes are
/// copied back first). Asking again answers the same. A migration started
/// with `lock_volume` refuses it unless `?force=true`.
#[utoipa::path(post, path = "/v1/volumes/{id}/migration/abort", operation_id = "abortMigration", params(VolumePath, AbortQuery), responses(
    (status = 202, description = "Abort accepted; the migration is `aborting` and ends `aborted`.", body = MigrationView),
    (status = 400, description = "A query other than `force=true|false` (`invalid_query`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`).", body = ErrorBody),
    (status = 409, description = "Nothing to abort (`no_migration_running`), the volume already \
        lives on the destination and its source is being removed (`abort_too_late`), a failed \
        migration is rolling back already (`abort_not_possible`), or the migration holds \
        `lock_volume` (`volume_locked`).", body = ErrorBody),
))]
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
