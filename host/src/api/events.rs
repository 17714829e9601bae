//! `/v1/events`: every state change, as server-sent events (resumable with
//! `Last-Event-ID`) or, with `follow=false`, as a JSON page.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::error::ApiError;
use super::routes::Routes;
use crate::service::{Event, Service};

/// Most events one page or one replay step returns.
const PAGE: usize = 1000;

pub(super) fn register(r: Routes) -> Routes {
    r.protected(routes!(events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Replay events after this sequence number.
    after: Option<u64>,
    /// false: answer one JSON page instead of a stream.
    follow: Option<bool>,
    /// Page size for `follow=false`.
    limit: Option<usize>,
}

/// A page of events, oldest first.
#[derive(Serialize, ToSchema)]
pub(super) struct EventList {
    events: Vec<Event>,
}

fn sse(e: &Event) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.clone())
        .data(data)
}

/// Every state change.
///
/// Server-sent events (`id` = sequence number, `event` = kind, `data` =
/// the Event), resumable with `Last-Event-ID` or `?after=SEQ`, when the
/// client sends `Accept: text/event-stream`; otherwise (or with
/// `follow=false`) one JSON page. `volume` events: create (`from` null,
/// `to` `creating`, then `available` or `error`), delete (`to` `deleting`,
/// then `deleted` or `error`), attach and detach (with `attachment` and
/// `server`), reset-status, forced delete, and the status changes of
/// migrations. `driver` events: `to` is the version's digest, `from` the
/// digest it replaced, `reason` `installed`, `activated`, `deleted` or
/// `pruned`. `migration` events: a migration's status and path changes,
/// and `to` `switched` (with `attachment`, `server`, and `from` the source
/// array) when a live migration moves an attachment's export to the
/// destination, its connections open. The log keeps the newest `[events] max_count` events, none
/// older than `max_age_secs`.
#[utoipa::path(get, path = "/v1/events", operation_id = "events", params(EventQuery), responses(
    (status = 200, description = "Events: a page, or a stream when asked for one.", content(
        (EventList = "application/json"),
        (String = "text/event-stream"))),
    (status = 400, description = "A query that does not parse (`bad_request`).", body = super::error::ErrorBody),
))]
async fn events(
    State(service): State<Service>,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    // Only a client that asks for an event stream gets one; anything else
    // (a plain GET, a script) gets one JSON page and never hangs.
    let wants_stream = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if q.follow == Some(false) || !wants_stream {
        let limit = q.limit.unwrap_or(PAGE).clamp(1, PAGE);
        let events = service.events_since(q.after.unwrap_or(0), limit)?;
        return Ok(Json(EventList { events }).into_response());
    }
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Without a position, only new events are streamed.
    let start = last_id.or(q.after);
    // Subscribe before reading the backlog so nothing falls in between.
    let mut live = service.subscribe_events();
    let mut stopping = service.stopping();
    let stream = async_stream(move |tx| async move {
        let mut last = 0u64;
        if let Some(mut after) = start {
            loop {
                let Ok(page) = service.events_since(after, PAGE) else {
                    return;
                };
                let n = page.len();
                for e in page {
                    after = e.seq;
                    last = e.seq;
                    if tx.send(sse(&e)).await.is_err() {
                        return;
                    }
                }
                if n < PAGE {
                    break;
                }
            }
        }
        loop {
            let next = tokio::select! {
                r = live.recv() => r,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match next {
                Ok(e) if e.seq <= last => {}
                Ok(e) if last == 0 || e.seq == last + 1 => {
                    last = e.seq;
                    if tx.send(sse(&e)).await.is_err() {
                        return;
                    }
                }
                // A gap: events emitted concurrently can reach the broadcast
                // out of order; the log has them all, in order.
                Ok(_) | Err(RecvError::Lagged(_)) if last > 0 => {
                    // Fell behind the broadcast: fill the gap from the log.
                    let Ok(page) = service.events_since(last, PAGE) else {
                        return;
                    };
                    for e in page {
                        last = e.seq;
                        if tx.send(sse(&e)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(e) => {
                    last = e.seq;
                    if tx.send(sse(&e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A stream fed by a task through a small channel: the task ends when the
/// client goes away (send fails) or the host stops.
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}
