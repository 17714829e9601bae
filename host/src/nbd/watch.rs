//! What each connection waits for and since when, so that one reaper
//! thread can close the connections that overran: a handshake past its
//! deadline, a write payload or a reply the client does not move along, a
//! connection idle past the idle timeout. Connections only store a few
//! atomics per request; the reaper reads them a few times a second.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::limits::NbdLimits;

/// Not waiting for the client.
const NONE: u8 = 0;
/// In the handshake.
const HANDSHAKE: u8 = 1;
/// Waiting for the next request header.
const HEADER: u8 = 2;
/// Reading a write's payload.
const PAYLOAD: u8 = 3;

/// The clock of one server: milliseconds since its start, from 1 so that 0
/// can mean "not set".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Self {
        Self(Instant::now())
    }

    pub(crate) fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Why the reaper closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overrun {
    Handshake,
    Payload,
    Reply,
    Idle,
}

impl Overrun {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Handshake => "the handshake overran its deadline",
            Self::Payload => "a write payload did not arrive in time",
            Self::Reply => "the client did not take a reply in time",
            Self::Idle => "the connection was idle past the idle timeout",
        }
    }
}

/// The activity of one connection.
pub(crate) struct Activity {
    clock: Clock,
    /// What the reading side waits for (`NONE`, `HANDSHAKE`, ...).
    reading: AtomicU8,
    /// When that wait began.
    read_since: AtomicU64,
    /// When the reply being sent started; 0 when none is.
    send_since: AtomicU64,
    /// When the last reply was sent (or the handshake ended).
    last_reply: AtomicU64,
    /// Requests read but not yet answered.
    in_flight: AtomicUsize,
}

impl Activity {
    /// A connection that starts its handshake now.
    pub(crate) fn handshaking(clock: Clock) -> Self {
        Self {
            clock,
            reading: AtomicU8::new(HANDSHAKE),
            read_since: AtomicU64::new(clock.now()),
            send_since: AtomicU64::new(0),
            last_reply: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.reading.load(Ordering::Relaxed) == HANDSHAKE
    }

    /// When the handshake began (for choosing the oldest to close).
    pub(crate) fn since(&self) -> u64 {
        self.read_since.load(Ordering::Relaxed)
    }

    /// The handshake ended; nothing is awaited until the first request.
    pub(crate) fn attached(&self) {
        self.last_reply.store(self.clock.now(), Ordering::Relaxed);
        self.reading.store(NONE, Ordering::Relaxed);
    }

    fn wait_for(&self, what: u8) {
        self.read_since.store(self.clock.now(), Ordering::Relaxed);
        self.reading.store(what, Ordering::Release);
    }

    /// The reading side waits for the next request header.
    pub(crate) fn awaiting_header(&self) {
        self.wait_for(HEADER);
    }

    /// The reading side reads a write's payload.
    pub(crate) fn awaiting_payload(&self) {
        self.wait_for(PAYLOAD);
    }

    /// A request was read whole: it is in flight until its reply is sent.
    pub(crate) fn request_read(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading.store(NONE, Ordering::Release);
    }

    /// A reply starts going out.
    pub(crate) fn sending(&self) {
        self.send_since.store(self.clock.now(), Ordering::Relaxed);
    }

    /// The reply went out (or failed).
    pub(crate) fn sent(&self) {
        self.send_since.store(0, Ordering::Relaxed);
    }

    /// A request read with [`Activity::request_read`] was answered.
    pub(crate) fn request_done(&self) {
        self.last_reply.store(self.clock.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether the connection overran a limit at `now`.
    pub(crate) fn overrun(&self, now: u64, limits: &NbdLimits) -> Option<Overrun> {
        let past = |since: u64, limit: Duration| {
            since != 0 && u128::from(now.saturating_sub(since)) > limit.as_millis()
        };
        if past(
            self.send_since.load(Ordering::Relaxed),
            limits.request_timeout,
        ) {
            return Some(Overrun::Reply);
        }
        let since = self.read_since.load(Ordering::Relaxed);
        match self.reading.load(Ordering::Acquire) {
            HANDSHAKE if past(since, limits.handshake_timeout) => Some(Overrun::Handshake),
            PAYLOAD if past(since, limits.request_timeout) => Some(Overrun::Payload),
            HEADER if self.in_flight.load(Ordering::Acquire) == 0 => {
                let idle_since = since.max(self.last_reply.load(Ordering::Relaxed));
                limits
                    .idle_timeout
                    .filter(|&t| past(idle_since, t))
                    .map(|_| Overrun::Idle)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> NbdLimits {
        NbdLimits {
            handshake_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_millis(200),
            idle_timeout: Some(Duration::from_millis(300)),
            ..NbdLimits::default()
        }
    }

    #[test]
    fn each_wait_has_its_own_deadline() {
        let clock = Clock::new();
        let a = Activity::handshaking(clock);
        let t0 = a.since();
        let l = limits();
        assert_eq!(a.overrun(t0 + 100, &l), None);
        assert_eq!(a.overrun(t0 + 101, &l), Some(Overrun::Handshake));

        a.attached();
        assert_eq!(a.overrun(t0 + 10_000, &l), None, "nothing awaited yet");
        a.awaiting_header();
        let t1 = a.since();
        assert_eq!(a.overrun(t1 + 300, &l), None);
        assert_eq!(a.overrun(t1 + 301, &l), Some(Overrun::Idle));

        a.awaiting_payload();
        let t2 = a.since();
        assert_eq!(a.overrun(t2 + 201, &l), Some(Overrun::Payload));
        a.request_read();
        assert_eq!(a.overrun(t2 + 10_000, &l), None, "the device may be slow");
        a.awaiting_header();
        assert_eq!(
            a.overrun(t2 + 10_000, &l),
            None,
            "not idle while a request is in flight"
        );
        a.sending();
        assert_eq!(
            a.overrun(a.send_since.load(Ordering::Relaxed) + 201, &l),
            Some(Overrun::Reply)
        );
        a.sent();
        a.request_done();
        let t3 = a.last_reply.load(Ordering::Relaxed);
        assert_eq!(
            a.overrun(t3 + 300, &l),
            None,
            "idle counts from the last reply"
        );
        assert_eq!(a.overrun(t3 + 301, &l), Some(Overrun::Idle));
    }

    #[test]
    fn without_an_idle_timeout_an_idle_connection_stays() {
        let a = Activity::handshaking(Clock::new());
        a.attached();
        a.awaiting_header();
        let l = NbdLimits {
            idle_timeout: None,
            ..limits()
        };
        assert_eq!(a.overrun(a.since() + 86_400_000, &l), None);
    }
}
