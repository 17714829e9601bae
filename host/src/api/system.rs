//! Unauthenticated endpoints: health and the OpenAPI document.

use std::sync::LazyLock;

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::openapi;
use super::routes::{Access, Routes};

pub(super) fn register(r: Routes) -> Routes {
    r.open_get("/healthz", health, Access::Public).open_get(
        "/openapi.json",
        openapi_document,
        Access::Public,
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| openapi::document().to_string());

async fn openapi_document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
