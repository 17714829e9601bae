//! The runner's loop: it reads the migration's phase from the store, runs
//! that phase's step, and records every change through one function
//! (`record`) that persists it atomically with the volume and emits the
//! events it implies. Driver calls whose outcome is unknown are repeated
//! here before anyone decides anything on their account.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::failure::{Backoff, Failure, StepError, outcome_unknown};
use crate::model::{
    LunAddress, Migration, MigrationPath, MigrationPhase, Placement, SourceRemoval, Volume,
};
use crate::runtime::Connector;
use crate::runtime::{CallError, CallScope, DriverRuntime, VolumeRef};
use crate::service::volumes::volume_ref;
use crate::service::{Service, ServiceError};
use crate::store::UpdateError;

/// The connector name the host uses when it opens LUNs for its own copy.
pub(super) const HOST_COPY_CONNECTOR: &str = "ferry-host-copy";

/// Pause between two polls of a running async migration, and the first
/// pause of every retry after the switch.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Longest pause between two retries of a failing step.
pub(super) const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How often a driver call that may have moved data is made in all when
/// it does not answer (trap, deadline, memory): drivers are idempotent by
/// contract, so a repeat either finishes the work or reports it done.
pub(super) const UNANSWERED_CALLS: u32 = 3;

/// Pause before repeating an unanswered driver call.
const UNANSWERED_PAUSE: Duration = Duration::from_millis(500);

/// How a driver call of a step ended.
pub(super) enum Called<T> {
    /// The driver answered.
    Answered(T),
    /// The driver answered an error.
    Refused(CallError),
    /// The driver never answered, every time; the last failure.
    Unanswered { attempts: u32, last: CallError },
}

/// The volume as the driver of `at` sees it.
pub(super) fn vref_at(v: &Volume, at: &Placement) -> VolumeRef {
    VolumeRef {
        pool: at.pool.clone(),
        provider_location: at.provider_location.clone(),
        ..volume_ref(v)
    }
}

impl Service {
    /// Runs a migration from its persisted phase to the end.
    pub(super) async fn run_migration(&self, id: Uuid, cancel: Arc<AtomicBool>) {
        let mut host = Backoff::new(Duration::from_millis(200), Duration::from_millis(12_800));
        let mut retry = Backoff::new(POLL_INTERVAL, MAX_RETRY_PAUSE);
        let mut last_phase = None;
        loop {
            let volume = match self.volume(id) {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(volume = %id, error = %e, "migration runner stops: its volume is gone");
                    return;
                }
            };
            let Some(m) = volume.migration.clone() else {
                return;
            };
            if last_phase != Some(m.phase) {
                retry.reset();
                last_phase = Some(m.phase);
            }
            // An abort recorded before a restart reaches the step's copies
            // and driver calls as it would have before.
            if m.abort_requested {
                cancel.store(true, Ordering::SeqCst);
            }
            if m.abort_requested
                && matches!(
                    m.phase,
                    MigrationPhase::Admitted
                        | MigrationPhase::HostCopyPrepare
                        | MigrationPhase::HostCopy
                )
            {
                let rolled = self.record(
                    id,
                    Some("aborted by an operator: rolling back".into()),
                    |_, m| Ok(m.enter(MigrationPhase::RollingBack)?),
                );
                if let Err(e) = rolled {
                    tracing::error!(volume = %id, error = %e, "cannot start the rollback");
                    tokio::time::sleep(host.fail()).await;
                }
                continue;
            }
            let step = match m.phase {
                MigrationPhase::Admitted => self.step_admitted(&volume, &m),
                MigrationPhase::SourceDriver => self.step_source_driver(&volume, &m, &cancel).await,
                MigrationPhase::TargetDriver => self.step_target_driver(&volume, &m, &cancel).await,
                MigrationPhase::HostCopyPrepare => self.step_host_copy_prepare(&volume, &m).await,
                MigrationPhase::HostCopy => self.step_host_copy(&volume, &m, &cancel).await,
                MigrationPhase::Hydrating if m.path == Some(MigrationPath::HostLive) => {
                    self.step_live_hydrating(&volume, &m, &mut retry).await
                }
                MigrationPhase::Hydrating => self.step_hydrating(&volume, &m, &mut retry).await,
                MigrationPhase::CopyingBack => self.step_copy_back(&volume, &m, &mut retry).await,
                MigrationPhase::ReturnPrepare => {
                    self.step_return_prepare(&volume, &m, &mut retry).await
                }
                MigrationPhase::Returning => self.step_returning(&volume, &m, &mut retry).await,
                MigrationPhase::CleanupSource => self.step_cleanup_source(&volume, &m).await,
                MigrationPhase::RollingBack => self.step_roll_back(&volume, &m).await,
                MigrationPhase::Finished => {
                    if m.source_removal == Some(SourceRemoval::Pending) {
                        self.remove_source(&volume, &m).await;
                    }
                    return;
                }
            };
            match step {
                Ok(()) => host.reset(),
                Err(StepError::Failed(failure)) => {
                    let reason = failure.to_string();
                    tracing::warn!(volume = %id, phase = ?m.phase, %reason, "migration step failed; rolling back");
                    let rolled = self.record(id, Some(reason.clone()), |_, m| {
                        m.error = Some(reason.clone());
                        Ok(m.enter(MigrationPhase::RollingBack)?)
                    });
                    if let Err(e) = rolled {
                        tracing::error!(volume = %id, error = %e, "cannot start the rollback");
                        tokio::time::sleep(host.fail()).await;
                    }
                }
                Err(StepError::Host(e)) => {
                    let pause = host.fail();
                    tracing::error!(volume = %id, error = %e, ?pause, "migration step hit a host error; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Applies `change` to the volume and its migration in one store
    /// transaction (nothing is written when it refuses) and emits an event
    /// for each change a client can see: the migration's status, its phase
    /// (a path decision, a retry), the volume's status.
    pub(super) fn record(
        &self,
        id: Uuid,
        reason: Option<String>,
        change: impl FnOnce(&mut Volume, &mut Migration) -> Result<(), ServiceError>,
    ) -> Result<Volume, ServiceError> {
        let mut before = None;
        let updated = self.inner.store.update_volume(id, |v| {
            let Some(mut m) = v.migration.take() else {
                return Err(ServiceError::NoMigrationRunning(v.id));
            };
            before = Some((v.status, m.clone()));
            let changed = change(v, &mut m);
            v.migration_status = Some(m.status);
            v.migration = Some(m);
            changed
        });
        let volume = match updated {
            Ok(v) => v,
            Err(UpdateError::NotFound) => return Err(ServiceError::VolumeNotFound(id)),
            Err(UpdateError::Refused(e)) => return Err(e),
            Err(UpdateError::Store(e)) => return Err(e.into()),
        };
        if let (Some((old_status, old)), Some(m)) = (before, volume.migration.as_ref()) {
            // A change that changed nothing (a repeated abort) is no event.
            if m.status != old.status || m.phase != old.phase || (reason.is_some() && *m != old) {
                self.emit_migration(&volume, Some(old.status), m.status, reason.clone());
            }
            if volume.status != old_status {
                self.emit_volume(&volume, Some(old_status), reason);
            }
        }
        Ok(volume)
    }

    /// Runs a driver call of a migration step. When the driver does not
    /// answer (trap, deadline, memory) the call is repeated, up to
    /// `UNANSWERED_CALLS` in all: its effect is unknown until a call
    /// answers, and nothing may be decided (let alone deleted) before.
    pub(super) async fn call_step<T, F>(
        &self,
        driver: &str,
        call: F,
    ) -> Result<Called<T>, ServiceError>
    where
        T: Send + 'static,
        F: Fn(&DriverRuntime) -> Result<T, CallError> + Clone + Send + 'static,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let f = call.clone();
            match self.call(driver, f).await {
                Ok(v) => return Ok(Called::Answered(v)),
                Err(ServiceError::Driver { source, .. }) if outcome_unknown(&source) => {
                    if attempts >= UNANSWERED_CALLS {
                        return Ok(Called::Unanswered {
                            attempts,
                            last: source,
                        });
                    }
                    tracing::warn!(driver, attempt = attempts, error = %source, "driver call did not answer; repeating it to learn its outcome");
                    tokio::time::sleep(UNANSWERED_PAUSE).await;
                }
                Err(ServiceError::Driver { source, .. }) => return Ok(Called::Refused(source)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Shows that the step of `phase` failed and is retried: its error and
    /// attempt count, unless the migration left that phase meanwhile.
    pub(super) fn record_retry(
        &self,
        id: Uuid,
        phase: MigrationPhase,
        text: String,
        attempts: u32,
    ) -> Result<Volume, ServiceError> {
        self.record(id, Some(text.clone()), |_, m| {
            if m.phase == phase {
                m.error = Some(text);
                m.attempts = attempts;
            }
            Ok(())
        })
    }

    /// Where each attachment of `v` is to be served from at `at`, as that
    /// array's driver exposes the volume to the attachment's server.
    pub(super) async fn attachment_luns(
        &self,
        v: &Volume,
        at: &Placement,
    ) -> Result<HashMap<Uuid, LunAddress>, StepError> {
        let array = self.array(&at.array)?.clone();
        let mut luns = HashMap::new();
        for a in &v.attachments {
            let scope = self.scope(&array)?;
            let vref = vref_at(v, at);
            let connector = Connector::Server(a.server.clone());
            let info = self
                .call(array.driver(), move |rt| {
                    rt.initialize_connection(&scope, &vref, &connector)
                })
                .await
                .map_err(|e| Failure::unreachable("the driver cannot expose the volume", e))?;
            let lun = info
                .host_lun()
                .map_err(|e| Failure::unreachable("the volume cannot move live", e))?;
            luns.insert(a.id, lun.clone());
        }
        Ok(luns)
    }

    /// A call scope for `array` whose progress reports update the live
    /// progress, scaled to the volume's size so that the total the client
    /// sees stays the one fixed when the copy started.
    pub(super) fn progress_scope(
        &self,
        array: &Arc<crate::array::Array>,
        id: Uuid,
        size: u64,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<CallScope, ServiceError> {
        let mut scope = self.scope(array)?;
        let service = self.clone();
        scope.progress = Some(Arc::new(move |done, total| {
            service.set_live_progress(id, scale(done, total, size), size);
        }));
        scope.cancel = cancel;
        Ok(scope)
    }
}

/// `done` of `total` expressed in bytes of a `size`-byte volume.
pub(super) fn scale(done: u64, total: u64, size: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let scaled = u128::from(done.min(total)) * u128::from(size) / u128::from(total);
    u64::try_from(scaled).unwrap_or(size)
}

#[cfg(test)]
mod tests {
    use super::scale;

    #[test]
    fn driver_progress_is_scaled_to_the_volume() {
        assert_eq!(scale(1, 2, 1000), 500);
        assert_eq!(scale(5, 2, 1000), 1000);
        assert_eq!(scale(3, 0, 1000), 0);
        assert_eq!(scale(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    }
}
