//! The Block Storage v3 compatible API: OpenStack's own clients
//! (`openstack volume ...`, `cinder ...`, openstacksdk) work against Ferry
//! unmodified. Served under `/v3/{project_id}/` beside `/v1`, by the same
//! service calls; only the shapes differ.
//!
//! - `versions.rs`: the version documents clients read first, and the
//!   microversion header.
//! - `fault.rs`: Cinder's error body, made from the native one on the way
//!   out, so every error code the service knows keeps its meaning.
//! - `location.rs`: `HOST@ARRAY#POOL` names and the volume types that map to
//!   an array and pool.
//! - `views.rs`: the volume, pool and type as Cinder shows them.
//! - `volumes.rs`, `actions.rs`, `catalog.rs`: the handlers.
//!
//! Ferry has one tenant: any `project_id` in the path names it.

mod actions;
mod catalog;
mod fault;
mod location;
mod versions;
mod views;
mod volumes;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Ref, RefOr};

pub use fault::{CinderFault, faults};

use super::AppState;
use super::auth::{self, Role};
use super::error::{self, ApiError};
use super::routes::{Access, Routes};
use crate::config::CinderAuth;

/// The `WWW-Authenticate` challenge of a v3 401.
const CHALLENGE: &str = "X-Auth-Token realm=\"ferry\"";

/// The name of the `X-Auth-Token` security scheme in the document.
pub const X_AUTH_TOKEN: &str = "x_auth_token";

pub(super) fn register(r: Routes) -> Routes {
    let r = versions::register(r);
    let r = volumes::register(r);
    let r = actions::register(r);
    catalog::register(r)
}

/// The v3 routes behind their authentication and microversion layers.
pub(super) fn layered(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .route_layer(middleware::from_fn(versions::microversion))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
}

/// The token of a request: `X-Auth-Token`, as OpenStack clients send it,
/// else a bearer token as on `/v1`.
fn x_auth_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-auth-token")?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Middleware: the role of the request, by `[cinder] auth`; a method that
/// changes state needs admin.
async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let role = match state.options.cinder.auth {
        // Clients in no-auth mode send a placeholder token ("notused",
        // "user:project"); it is not a credential, so it is not read.
        CinderAuth::None => Role::Admin,
        CinderAuth::Token => match x_auth_token(req.headers()) {
            Some(token) => state.tokens.role_of(token).ok_or_else(|| {
                ApiError::unauthorized("the X-Auth-Token is not valid", CHALLENGE)
            })?,
            None if req
                .headers()
                .contains_key(axum::http::header::AUTHORIZATION) =>
            {
                auth::authenticate(&state.tokens, req.headers())?
            }
            None => {
                return Err(ApiError::unauthorized(
                    "this call needs a token: X-Auth-Token: <ferry token> (or [cinder] auth = \
                     \"none\" on a host that listens on loopback)",
                    CHALLENGE,
                ));
            }
        },
    };
    auth::authorize(req.method(), role)?;
    req.extensions_mut().insert(role);
    Ok(next.run(req).await)
}

/// Documents a v3 operation: the answers its access rule brings (as on
/// `/v1`), every error as Cinder's fault body, and its security: an
/// `X-Auth-Token` or a bearer token, or none with `[cinder] auth = "none"`.
pub(super) fn document_access(op: &mut Operation, access: Access) {
    error::document_access(op, access);
    for (status, res) in op.responses.responses.iter_mut() {
        if status.starts_with('2') || status.starts_with('3') {
            continue;
        }
        if let RefOr::T(res) = res {
            for content in res.content.values_mut() {
                content.schema = Some(RefOr::Ref(Ref::from_schema_name("CinderFault")));
            }
        }
    }
    op.security = Some(vec![
        SecurityRequirement::new(X_AUTH_TOKEN, Vec::<String>::new()),
        SecurityRequirement::new(error::BEARER, Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
}
