//! `GET /metrics`: Prometheus text with the service's metrics (volumes,
//! migrations, drivers, NBD) and the API's own request counters, which the
//! request middleware records here. Who may read it is configured
//! (`[http] metrics`): anyone, any valid token (the default), or nobody.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::clip;
use super::error::{ApiError, ErrorBody};
use super::routes::{Access, Routes};
use crate::config::MetricsAccess;
use crate::prometheus::{CONTENT_TYPE, Kind, Text};

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];

pub(super) fn register(r: Routes) -> Routes {
    r.open(routes!(metrics), Access::Configured)
}

/// Requests of one route and method: counts by status, and latency.
#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
}

/// The label of every method outside the standard set, and of every
/// request no route matched: one series each, whatever clients send.
pub const OTHER: &str = "other";

/// The API's request counters, by (method, route template). Both labels
/// come from fixed sets (the standard methods, the registered templates,
/// [`OTHER`]), so the number of series is bounded by the route table and
/// not by what clients send.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<(&'static str, String), RouteStats>>,
}

/// The metrics label of a method: its name for the methods of RFC 9110
/// and PATCH, [`OTHER`] for any extension method a client makes up.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

impl HttpMetrics {
    fn record(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry((method, route.to_owned())).or_default();
        *s.by_status.entry(status).or_default() += 1;
        let secs = took.as_secs_f64();
        s.buckets[crate::prometheus::bucket_index(&BUCKETS, secs)] += 1;
        s.sum_seconds += secs;
    }

    fn render(&self, t: &mut Text) {
        let map = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        t.family(
            "ferry_http_requests_total",
            Kind::Counter,
            "HTTP requests by method, route and status.",
        );
        for ((method, route), s) in &map {
            for (status, n) in &s.by_status {
                let status = status.to_string();
                t.sample(
                    "ferry_http_requests_total",
                    &[("method", method), ("route", route), ("status", &status)],
                    *n as f64,
                );
            }
        }
        t.family(
            "ferry_http_request_duration_seconds",
            Kind::Histogram,
            "Time to the response head, by method and route.",
        );
        for ((method, route), s) in &map {
            t.histogram(
                "ferry_http_request_duration_seconds",
                &[("method", method), ("route", route)],
                &BUCKETS,
                &s.buckets,
                s.sum_seconds,
            );
        }
    }
}

/// Counts and logs one request. Only the method and the route: headers
/// (tokens) and bodies never reach the log or the metrics.
pub(super) async fn observe(
    State(http): State<Arc<HttpMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    // The log shows what the client sent, cut to a bounded length.
    let method = clip::echo(req.method().as_str()).into_owned();
    let path = clip::echo(req.uri().path()).into_owned();
    let label = method_label(req.method());
    // The template, not the path: ids would make a label per volume, and
    // paths no route knows would make one per request.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| OTHER.to_owned(), |m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let took = started.elapsed();
    let status = res.status().as_u16();
    http.record(label, &route, status, took);
    let latency_ms = took.as_secs_f64() * 1e3;
    if res.status().is_server_error() {
        tracing::warn!(%method, %path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, "request");
    }
    res
}

/// Prometheus text.
///
/// Volumes, migrations, per-driver calls, errors, traps, timeouts, latency
/// and memory high-water mark, driver compiles (by result, the abandoned
/// compile still running, CPU time), NBD and HTTP counters. Who may read it
/// is the host's `[http] metrics` setting: `reader` (the default) needs any
/// valid bearer token, reader or admin; `public` needs none; `off` answers
/// 404.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", responses(
    (status = 200, description = "Metrics in the text exposition format 0.0.4.", content_type = "text/plain", body = String),
    (status = 401, description = "`[http] metrics = \"reader\"` (the default): no bearer token, or not a valid one (`unauthorized`).", body = ErrorBody),
    (status = 404, description = "`[http] metrics = \"off\"`: not served (`not_found`).", body = ErrorBody),
    (status = 500, description = "The host failed (`internal`, `store_error`).", body = ErrorBody),
))]
async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    // The series name drivers, their digests and how busy the host is: not
    // for anyone who can reach the port, unless the operator says so.
    match state.options.metrics {
        MetricsAccess::Public => {}
        MetricsAccess::Reader => {
            super::auth::authenticate(&state.tokens, &headers)?;
        }
        MetricsAccess::Off => {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no route for GET {}: metrics are off on this host ([http] metrics = \"off\")",
                    clip::echo(uri.path())
                ),
            ));
        }
    }
    let service = state.service.clone();
    // Counting volumes reads the store: off the async threads.
    let mut text = tokio::task::spawn_blocking(move || service.metrics_text())
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })??;
    let mut http = Text::default();
    state.http.render(&mut http);
    text.append(http);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text.finish()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label_and_series() {
        let m = HttpMetrics::default();
        for name in ["FOO", "BAR", "PROPFIND", &"X".repeat(16 << 10)] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(method_label(&method), OTHER);
            m.record(method_label(&method), OTHER, 405, Duration::ZERO);
        }
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        m.record(method_label(&Method::GET), "/healthz", 200, Duration::ZERO);
        let map = m.routes.lock().unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&(OTHER, OTHER.to_owned())].by_status[&405], 4);
    }
}
