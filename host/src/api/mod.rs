//! The HTTP API (design section 6): JSON over HTTP/1.1, bearer tokens, one
//! error shape. Handlers only call [`crate::service::Service`]; nothing here
//! touches drivers directly.
//!
//! Each resource registers its routes in its own file through
//! [`routes::Routes`], from the handlers' `#[utoipa::path]` attributes, so
//! the router and the OpenAPI document (`openapi.rs`) come from one source.

mod arrays;
pub mod auth;
mod cinder;
pub mod clip;
mod drivers;
pub mod error;
mod events;
mod extract;
pub mod metrics;
mod migrations;
mod openapi;
pub mod routes;
pub mod server;
mod system;
mod volumes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{Method, Uri};
use axum::middleware;

pub use auth::{Role, TokenError, Tokens};
pub use error::ApiError;
pub use routes::{Access, Family, RouteInfo};
pub use server::HttpLimits;

use crate::config::{CinderConfig, MetricsAccess};
use crate::service::Service;

/// Largest JSON request body accepted.
pub const JSON_BODY_LIMIT: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    service: Service,
    tokens: Arc<Tokens>,
    http: Arc<metrics::HttpMetrics>,
    options: ApiOptions,
}

/// How the API behaves beyond its service and tokens, from the host's
/// configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiOptions {
    /// Who may read `/metrics` (`[http] metrics`).
    pub metrics: MetricsAccess,
    /// The Block Storage v3 API's authentication and host name
    /// (`[cinder]`).
    pub cinder: CinderConfig,
}

impl ApiOptions {
    /// The options `config` sets.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            metrics: config.http.metrics,
            cinder: config.cinder.clone(),
        }
    }
}

impl FromRef<AppState> for Service {
    fn from_ref(state: &AppState) -> Service {
        state.service.clone()
    }
}

fn all_routes() -> routes::Routes {
    let r = routes::Routes::new();
    let r = system::register(r);
    let r = arrays::register(r);
    let r = volumes::register(r);
    let r = migrations::register(r);
    let r = events::register(r);
    let r = metrics::register(r);
    let r = drivers::register(r);
    cinder::register(r)
}

/// Every route the API serves, with its access rule.
pub fn routes_table() -> Vec<RouteInfo> {
    all_routes().table
}

/// The API as a router with the default [`ApiOptions`], ready to serve or
/// to call in tests.
pub fn app(service: Service, tokens: Tokens) -> Router {
    app_with(service, tokens, ApiOptions::default())
}

/// The API as a router, with `options`.
pub fn app_with(service: Service, tokens: Tokens, options: ApiOptions) -> Router {
    let state = AppState {
        service,
        tokens: Arc::new(tokens),
        http: Arc::new(metrics::HttpMetrics::default()),
        options,
    };
    let routes = all_routes();
    let protected = Router::from(routes.protected).route_layer(middleware::from_fn_with_state(
        state.tokens.clone(),
        auth::require_token,
    ));
    let cinder = cinder::layered(Router::from(routes.cinder), &state);
    Router::new()
        .merge(protected)
        .merge(cinder)
        .merge(Router::from(routes.public))
        // Applies to the routes above, so it must come after them.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::map_response(error::normalize))
        // Outside `normalize`, so that every error of a `/v3` request,
        // the router's own included, leaves as Cinder's fault body.
        .layer(middleware::from_fn(cinder::faults))
        .layer(middleware::from_fn_with_state(
            state.http.clone(),
            metrics::observe,
        ))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// Serves `app` on `listener` within the default [`HttpLimits`] until
/// `shutdown` resolves, then lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, HttpLimits::default(), shutdown).await
}
