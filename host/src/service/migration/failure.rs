//! Why a migration step did not complete, as types the runner matches on
//! (the text that clients read is their `Display`), and the one backoff
//! every retry of the runner uses.

use std::time::Duration;

use crate::runtime::{CallError, DriverErrorKind};
use crate::service::ServiceError;

/// Why a step failed in a way that sends the migration back (before the
/// switch) or onto its next path.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// A driver answered a definite error.
    #[error("{role} driver {driver}: {call} failed: {source}")]
    Driver {
        /// `source` or `target`.
        role: &'static str,
        /// Driver name.
        driver: String,
        /// The WIT call.
        call: &'static str,
        /// What it answered.
        source: CallError,
    },
    /// A driver trapped, timed out or ran out of memory in a call that may
    /// have moved data, and repeating the call did not tell where it is.
    #[error(
        "{role} driver {driver}: {call} did not answer after {attempts} attempts \
         (last: {source}); where the data is had to be established before anything was deleted"
    )]
    Unanswered {
        /// `source` or `target`.
        role: &'static str,
        /// Driver name.
        driver: String,
        /// The WIT call.
        call: &'static str,
        /// Calls made.
        attempts: u32,
        /// The last failure.
        source: CallError,
    },
    /// A LUN the step needs cannot be reached.
    #[error("{what}: {detail}")]
    Unreachable {
        /// Which LUN, in words.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The host's own copy failed.
    #[error("host copy failed: {0}")]
    Copy(String),
}

impl Failure {
    pub(super) fn driver(
        role: &'static str,
        driver: &str,
        call: &'static str,
        source: CallError,
    ) -> Self {
        Failure::Driver {
            role,
            driver: driver.to_owned(),
            call,
            source,
        }
    }

    pub(super) fn unanswered(
        role: &'static str,
        driver: &str,
        call: &'static str,
        attempts: u32,
        source: CallError,
    ) -> Self {
        Failure::Unanswered {
            role,
            driver: driver.to_owned(),
            call,
            attempts,
            source,
        }
    }

    pub(super) fn unreachable(what: &'static str, detail: impl ToString) -> Self {
        Failure::Unreachable {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Why a step did not complete.
pub(super) enum StepError {
    /// The migration must leave this step (roll back before the switch).
    Failed(Failure),
    /// The host itself failed (store); the step is retried after a pause.
    Host(ServiceError),
}

impl From<ServiceError> for StepError {
    fn from(e: ServiceError) -> Self {
        StepError::Host(e)
    }
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Failed(f)
    }
}

/// Whether a driver declined (the host takes the next path).
pub(super) fn declined(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Driver {
            kind: DriverErrorKind::Unsupported,
            ..
        }
    )
}

/// Whether a failed call leaves its effect unknown: the driver was stopped
/// (trap, deadline, memory) rather than answering, so it may have done
/// part or all of its work.
pub(super) fn outcome_unknown(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Trap { .. } | CallError::Timeout { .. } | CallError::OutOfMemory { .. }
    )
}

/// Exponential backoff with a cap: `base`, `2 base`, ... up to `max`.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    pub(super) const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: 0,
        }
    }

    /// Counts a failure and returns the pause before the next try.
    pub(super) fn fail(&mut self) -> Duration {
        let pause = self
            .base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        pause
    }

    /// Failures since the last success.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A success: the next failure starts from `base` again.
    pub(super) fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<_> = (0..6).map(|_| b.fail().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.fail().as_millis(), 100);
        for _ in 0..100 {
            b.fail();
        }
        assert_eq!(b.fail(), Duration::from_secs(1));
    }
}
