//! State-change events: every change a client could observe (a volume's
//! life cycle, attachments, migrations, drivers) is kept in the store's
//! bounded event log and broadcast to live subscribers (the API's
//! server-sent event stream).

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::model::now_rfc3339;
use crate::store::Store;

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Sequence number: strictly increasing, never reused.
    pub seq: u64,
    /// What kind of thing changed: `volume`, `migration` or `driver`.
    pub kind: String,
    /// The volume concerned, if any.
    #[schema(required = true)]
    pub volume: Option<Uuid>,
    /// The migration concerned, if any.
    #[schema(required = true)]
    pub migration: Option<Uuid>,
    /// The driver concerned, if any (`driver` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The attachment concerned, if any (attach and detach events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Uuid>,
    /// The server of that attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// State before.
    #[schema(required = true)]
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// Why, in words.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// The event log and its live subscribers.
pub(crate) struct EventBus {
    store: Store,
    live: broadcast::Sender<Event>,
}

/// What to record; `seq` and `at` are filled in by the bus.
pub(crate) struct NewEvent<'a> {
    pub kind: &'a str,
    pub volume: Option<Uuid>,
    pub migration: Option<Uuid>,
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
}

impl EventBus {
    pub(crate) fn new(store: Store) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self { store, live }
    }

    /// Records an event and hands it to live subscribers. A failure to
    /// persist is logged, never returned: events describe what happened,
    /// they must not undo it.
    pub(crate) fn emit(&self, e: NewEvent<'_>) {
        self.publish(Event {
            seq: 0,
            kind: e.kind.to_owned(),
            volume: e.volume,
            migration: e.migration,
            driver: None,
            attachment: None,
            server: None,
            from: e.from,
            to: e.to,
            at: now_rfc3339(),
            reason: e.reason,
        });
    }

    /// Records an event about one attachment of a volume (attach, detach,
    /// an export withdrawn by a forced delete).
    pub(crate) fn emit_attachment(&self, e: NewEvent<'_>, attachment: Uuid, server: &str) {
        self.publish(Event {
            seq: 0,
            kind: e.kind.to_owned(),
            volume: e.volume,
            migration: e.migration,
            driver: None,
            attachment: Some(attachment),
            server: Some(server.to_owned()),
            from: e.from,
            to: e.to,
            at: now_rfc3339(),
            reason: e.reason,
        });
    }

    /// Records a driver event: a version `to` (`installed`, `activated`)
    /// of driver `name`, with `from` the version it replaces.
    pub(crate) fn emit_driver(&self, name: &str, from: Option<String>, to: String, reason: String) {
        self.publish(Event {
            seq: 0,
            kind: "driver".to_owned(),
            volume: None,
            migration: None,
            driver: Some(name.to_owned()),
            attachment: None,
            server: None,
            from,
            to,
            at: now_rfc3339(),
            reason: Some(reason),
        });
    }

    fn publish(&self, mut event: Event) {
        let value = match serde_json::to_value(&event) {
            Ok(v) => v,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode event");
                return;
            }
        };
        match self.store.append_event(&value) {
            Ok(seq) => event.seq = seq,
            Err(err) => {
                tracing::error!(error = %err, "cannot persist event");
                return;
            }
        }
        tracing::info!(seq = event.seq, kind = %event.kind, volume = ?event.volume, from = ?event.from, to = %event.to, "event");
        // No subscribers is fine.
        let _ = self.live.send(event);
    }

    /// Events after `seq`, oldest first, at most `limit`.
    pub(crate) fn since(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, crate::store::StoreError> {
        Ok(self
            .store
            .events_after(seq, limit)?
            .into_iter()
            .filter_map(|(seq, v)| {
                let mut e: Event = serde_json::from_value(v).ok()?;
                e.seq = seq;
                Some(e)
            })
            .collect())
    }

    /// A receiver of events emitted from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
