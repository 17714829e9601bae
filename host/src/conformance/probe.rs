//! The kit's side of every driver call: it goes through the real
//! [`DriverRuntime`], is timed, and its outcome is recorded so the limits
//! check can name any call that trapped, timed out or ran out of memory,
//! whichever check made it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use super::report::{CallOutcome, CallRecord, CheckName};
use crate::array::{Array, Lun};
use crate::runtime::{
    CallError, CallScope, Completion, ConnectionInfo, Connector, Destination, DriverErrorKind,
    DriverRuntime, MigrateOutcome, Source, TargetOutcome, VolumeRef,
};

/// Calls the driver under test for one check at a time.
pub(crate) struct Probe<'a> {
    rt: &'a DriverRuntime,
    check: CheckName,
    log: &'a RefCell<Vec<CallRecord>>,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(
        rt: &'a DriverRuntime,
        check: CheckName,
        log: &'a RefCell<Vec<CallRecord>>,
    ) -> Self {
        Self { rt, check, log }
    }

    fn call<T>(
        &self,
        call: &'static str,
        f: impl FnOnce(&DriverRuntime) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = f(self.rt);
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) if is_fault(e) => CallOutcome::Fault {
                code: e.code().to_owned(),
                message: e.to_string(),
            },
            Err(e) => CallOutcome::Error {
                code: e.code().to_owned(),
            },
        };
        self.log.borrow_mut().push(CallRecord {
            call,
            check: self.check,
            elapsed_ms,
            outcome,
        });
        result
    }

    pub(crate) fn capabilities(
        &self,
        scope: &CallScope,
    ) -> Result<crate::runtime::Capabilities, CallError> {
        self.call("capabilities", |rt| rt.capabilities(scope))
    }

    pub(crate) fn create(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
    ) -> Result<Option<String>, CallError> {
        self.call("create-volume", |rt| rt.create_volume(scope, vol))
    }

    pub(crate) fn delete(&self, scope: &CallScope, vol: &VolumeRef) -> Result<(), CallError> {
        self.call("delete-volume", |rt| rt.delete_volume(scope, vol))
    }

    /// Deletes a volume the kit made, to tidy the scratch array. Not
    /// recorded: a check's verdict rests on the calls it makes on purpose.
    pub(crate) fn tidy(&self, scope: &CallScope, vol: &VolumeRef) {
        if let Err(e) = self.rt.delete_volume(scope, vol) {
            tracing::debug!(volume = %vol.id, error = %e, "tidying a test volume failed");
        }
    }

    pub(crate) fn connect(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
    ) -> Result<ConnectionInfo, CallError> {
        self.call("initialize-connection", |rt| {
            rt.initialize_connection(scope, vol, &connector())
        })
    }

    pub(crate) fn manage(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        reference: &str,
    ) -> Result<crate::runtime::Managed, CallError> {
        self.call("manage-existing", |rt| {
            rt.manage_existing(scope, vol, reference)
        })
    }

    pub(crate) fn unmanage(&self, scope: &CallScope, vol: &VolumeRef) -> Result<(), CallError> {
        self.call("unmanage", |rt| rt.unmanage(scope, vol))
    }

    pub(crate) fn disconnect(&self, scope: &CallScope, vol: &VolumeRef) -> Result<(), CallError> {
        self.call("terminate-connection", |rt| {
            rt.terminate_connection(scope, vol, &connector())
        })
    }

    pub(crate) fn migrate(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        dest: &Destination,
        peer: Option<Arc<Array>>,
    ) -> Result<MigrateOutcome, CallError> {
        self.call("migrate-volume", |rt| {
            rt.migrate_volume(scope, vol, dest, peer)
        })
    }

    pub(crate) fn take_over(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        remote: &Arc<Lun>,
    ) -> Result<(), CallError> {
        self.call("take-over-remote-lun", |rt| {
            rt.take_over_remote_lun(scope, vol, remote.clone())
        })
    }

    pub(crate) fn migrate_target(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        source: &Source,
        remote: &Arc<Lun>,
    ) -> Result<TargetOutcome, CallError> {
        self.call("migrate-volume-target", |rt| {
            rt.migrate_volume_target(scope, vol, source, remote.clone())
        })
    }

    pub(crate) fn complete_target(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        source: &Source,
        remote: &Arc<Lun>,
    ) -> Result<Completion, CallError> {
        self.call("complete-migration-target", |rt| {
            rt.complete_migration_target(scope, vol, source, remote.clone())
        })
    }
}

/// The connector the kit exposes volumes to.
fn connector() -> Connector {
    Connector::Server("ferry-check".to_owned())
}

/// Whether the call broke down (trap, deadline, memory) rather than
/// answering.
pub(crate) fn is_fault(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Trap { .. } | CallError::Timeout { .. } | CallError::OutOfMemory { .. }
    )
}

/// Whether the driver answered with the `unsupported` variant.
pub(crate) fn is_unsupported(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Driver {
            kind: DriverErrorKind::Unsupported,
            ..
        }
    )
}

/// Whether the driver answered with the `not-found` variant.
pub(crate) fn is_not_found(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Driver {
            kind: DriverErrorKind::NotFound,
            ..
        }
    )
}

/// How a failed call reads in a reason: "trapped: ...", "answered
/// not found: ...".
pub(crate) fn describe(e: &CallError) -> String {
    match e {
        CallError::Driver { kind, message } => format!("answered {kind}: {message}"),
        CallError::Trap { message, .. } => format!("trapped ({})", trap_summary(message)),
        CallError::Timeout { deadline_ms, .. } => {
            format!("ran past its {deadline_ms} ms deadline and was stopped")
        }
        CallError::OutOfMemory { limit_bytes, .. } => {
            format!("ran out of memory (limit {limit_bytes} bytes)")
        }
        CallError::NotLoaded(name) => format!("could not run: driver {name:?} is not loaded"),
    }
}

/// The heart of a trap message, cut to a length that fits a table cell:
/// for a panic the location and the panic's own message, else the first
/// line of what the runtime said.
fn trap_summary(message: &str) -> String {
    const MAX: usize = 200;
    let text = match message.rfind("panicked at ") {
        Some(at) => &message[at..],
        None => message.lines().next().unwrap_or_default(),
    }
    .trim();
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_summed_up_by_its_location_and_message() {
        let m = "wasm trap: wasm `unreachable` instruction executed in function abort; \
                 the driver panicked: thread '<unnamed>' (1) panicked at src/lib.rs:4:5: \
                 the LUN exists";
        assert_eq!(
            trap_summary(m),
            "panicked at src/lib.rs:4:5: the LUN exists"
        );
        assert_eq!(trap_summary("out of bounds\nbacktrace..."), "out of bounds");
        let long = trap_summary(&"x".repeat(500));
        assert_eq!(long.chars().count(), 203);
        assert!(long.ends_with("..."));
    }
}
