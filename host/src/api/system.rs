//! Unauthenticated endpoints: health and the OpenAPI document.

use std::sync::LazyLock;

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::openapi;
use super::routes::{Access, Routes};

pub(super) fn register(r: Routes) -> Routes {
    r.open(routes!(health), Access::Public)
        .open(routes!(openapi_document), Access::Public)
}

/// The answer of a live host.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    status: HealthStatus,
}

/// A host that answers is up.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Ok,
}

/// Liveness check.
#[utoipa::path(get, path = "/healthz", operation_id = "health", responses(
    (status = 200, description = "The host is up.", body = Health),
))]
async fn health() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// Serialized once: the document is the same for the life of the process.
static DOCUMENT: LazyLock<String> = LazyLock::new(openapi::document_json);

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API, generated from its handlers.",
        content_type = "application/json", body = Object),
))]
async fn openapi_document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
