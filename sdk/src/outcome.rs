//! Constructors and accessors for the generated WIT records, so drivers
//! spell answers by intent (`MigrateOutcome::DECLINED`) rather than by field.

use crate::{Capabilities, Completion, DriverError, LunAddress, MigrateOutcome, TargetOutcome};

impl Capabilities {
    /// Supports nothing optional: no take-over, no asynchronous target
    /// migration, no source migration, thick LUNs, no live move. Start from
    /// it with struct update syntax:
    /// `Capabilities { sparse: true, ..Capabilities::NONE }`.
    pub const NONE: Capabilities = Capabilities {
        take_over: false,
        async_target_migration: false,
        source_migration: false,
        sparse: false,
        live_move: false,
    };
}

impl MigrateOutcome {
    /// Declines the source-side migration: the host tries the next path.
    pub const DECLINED: MigrateOutcome = MigrateOutcome {
        moved: false,
        model_update: None,
    };

    /// The volume moved; `model_update` is its new `provider-location`.
    pub fn moved(model_update: impl Into<String>) -> MigrateOutcome {
        MigrateOutcome {
            moved: true,
            model_update: Some(model_update.into()),
        }
    }
}

impl TargetOutcome {
    /// Declines the target-side migration: the host releases the take-over
    /// and copies by itself.
    pub const DECLINED: TargetOutcome = TargetOutcome {
        moved: false,
        is_async: false,
        model_update: None,
    };

    /// Every byte is on this array already; `model_update` is the volume's
    /// new `provider-location`.
    pub fn moved(model_update: impl Into<String>) -> TargetOutcome {
        TargetOutcome {
            moved: true,
            is_async: false,
            model_update: Some(model_update.into()),
        }
    }

    /// The volume is usable on this array at once while data still flows;
    /// the host then polls `complete-migration-target` until it is done.
    pub fn moving_async(model_update: impl Into<String>) -> TargetOutcome {
        TargetOutcome {
            moved: true,
            is_async: true,
            model_update: Some(model_update.into()),
        }
    }
}

impl Completion {
    /// The migration is complete: all `total_bytes` are local and the
    /// driver cleaned up.
    pub fn done(total_bytes: u64) -> Completion {
        Completion {
            done: true,
            done_bytes: total_bytes,
            total_bytes,
        }
    }

    /// The migration still runs: `done_bytes` of `total_bytes` are local.
    pub fn running(done_bytes: u64, total_bytes: u64) -> Completion {
        Completion {
            done: false,
            done_bytes: done_bytes.min(total_bytes),
            total_bytes,
        }
    }
}

impl LunAddress {
    /// The LUN `name` in `pool`.
    pub fn new(pool: impl Into<String>, name: impl Into<String>) -> LunAddress {
        LunAddress {
            pool: pool.into(),
            name: name.into(),
        }
    }
}

impl DriverError {
    /// The message, whatever the case.
    pub fn message(&self) -> &str {
        match self {
            DriverError::Unsupported(m)
            | DriverError::InvalidArgument(m)
            | DriverError::NotFound(m)
            | DriverError::NoSpace(m)
            | DriverError::BackendError(m) => m,
        }
    }

    /// The case as the WIT spells it (`not-found`, `no-space`...).
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::Unsupported(_) => "unsupported",
            DriverError::InvalidArgument(_) => "invalid-argument",
            DriverError::NotFound(_) => "not-found",
            DriverError::NoSpace(_) => "no-space",
            DriverError::BackendError(_) => "backend-error",
        }
    }

    /// Prefixes the message with `context`, keeping the case, so an error
    /// from deep inside a call says which step failed.
    pub fn context(self, context: &str) -> DriverError {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            DriverError::Unsupported(m) => DriverError::Unsupported(wrap(m)),
            DriverError::InvalidArgument(m) => DriverError::InvalidArgument(wrap(m)),
            DriverError::NotFound(m) => DriverError::NotFound(wrap(m)),
            DriverError::NoSpace(m) => DriverError::NoSpace(wrap(m)),
            DriverError::BackendError(m) => DriverError::BackendError(wrap(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_running_never_reports_more_than_total() {
        let c = Completion::running(12, 10);
        assert!(!c.done);
        assert_eq!(c.done_bytes, 10);
        assert_eq!(Completion::done(7).done_bytes, 7);
    }

    #[test]
    fn error_context_keeps_the_case() {
        let e = DriverError::NoSpace("pool full".into()).context("create volume-1");
        assert_eq!(e.kind(), "no-space");
        assert_eq!(e.message(), "create volume-1: pool full");
    }

    #[test]
    fn outcomes_carry_the_model_update() {
        let m = MigrateOutcome::moved("p/volume-1");
        assert!(m.moved);
        assert_eq!(m.model_update.as_deref(), Some("p/volume-1"));
        let t = TargetOutcome::moved("p/volume-1");
        assert!(t.moved && !t.is_async);
        let t = TargetOutcome::moving_async("p/volume-1");
        assert!(t.moved && t.is_async);
        assert_eq!(t.model_update.as_deref(), Some("p/volume-1"));
    }
}
