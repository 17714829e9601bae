//! `GET /metrics`: Prometheus text with the service's metrics (volumes,
//! migrations, drivers, NBD) and the API's own request counters, which the
//! request middleware records here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::routes::Routes;
use crate::prometheus::{CONTENT_TYPE, Kind, Text};

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];

pub(super) fn register(r: Routes) -> Routes {
    r.public_get("/metrics", metrics)
}

/// Requests of one route and method: counts by status, and latency.
#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
}

/// The API's request counters, by (method, route template).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = map
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
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
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The template, not the path: ids would make a label per volume.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let took = started.elapsed();
    let status = res.status().as_u16();
    http.record(method.as_str(), &route, status, took);
    let latency_ms = took.as_secs_f64() * 1e3;
    if res.status().is_server_error() {
        tracing::warn!(%method, %path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, "request");
    }
    res
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
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
