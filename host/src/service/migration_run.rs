//! The migration runner: the paths of seed 000 in order (source driver,
//! target driver, host copy), each step persisted before its side effect, and
//! automatic rollback (seed 003) when a step fails or an operator aborts.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use uuid::Uuid;

use super::volumes::volume_ref;
use super::{Service, ServiceError};
use crate::array::{CopyError, CopyOptions, copy_lun};
use crate::model::{
    LunAddress, Migration, MigrationPath, MigrationPhase, MigrationStatus, Placement, Volume,
    VolumeStatus, now_rfc3339,
};
use crate::runtime::{CallError, Connector, Destination, DriverErrorKind, Source, VolumeRef};
use crate::store::UpdateError;

/// The connector name the host uses when it opens LUNs for its own copy.
const HOST_COPY_CONNECTOR: &str = "ferry-host-copy";

/// How often a cleanup call is tried before the runner gives up on it.
const CLEANUP_ATTEMPTS: u32 = 4;

/// Pause between two polls of a running async migration.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Longest pause between two retries of a failing async completion.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How many times a failing copy-back is tried before the abort gives up
/// and the migration goes on to completion (the destination still holds
/// every write, so giving up loses nothing).
const COPY_BACK_ATTEMPTS: u32 = 6;

/// Most copy-back passes made while I/O goes on before the last one.
const COPY_BACK_PASSES: u32 = 16;

/// Written bytes few enough to copy back with writes held.
const FINAL_PASS_BYTES: u64 = 4 << 20;

/// How one copy-back attempt ended without failing.
enum CopyBack {
    /// The volume lives on the source again.
    Switched(Box<Volume>),
    /// Something changed under the attempt (a new attachment); go again.
    Again(String),
}

/// Why the switch back to the source was not made.
#[derive(Debug, thiserror::Error)]
enum SwitchError {
    /// An attachment appeared since its source LUN was looked up.
    #[error("attachment {0} was made during the copy-back")]
    NewAttachment(Uuid),
    /// The migration is no longer copying back.
    #[error("the migration left the copy-back phase")]
    NotCopyingBack,
    /// The store failed.
    #[error("cannot record the switch back: {0}")]
    Store(String),
}

/// Why a step did not complete.
enum StepError {
    /// The migration must roll back, for this reason.
    Failed(String),
    /// The host itself failed (store); retried after a pause.
    Host(ServiceError),
}

impl From<ServiceError> for StepError {
    fn from(e: ServiceError) -> Self {
        StepError::Host(e)
    }
}

fn declined(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Driver {
            kind: DriverErrorKind::Unsupported,
            ..
        }
    )
}

/// The volume as the driver of `at` sees it.
fn vref_at(v: &Volume, at: &Placement) -> VolumeRef {
    VolumeRef {
        pool: at.pool.clone(),
        provider_location: at.provider_location.clone(),
        ..volume_ref(v)
    }
}

impl Service {
    /// Runs a migration from its persisted phase to the end.
    pub(super) async fn run_migration(&self, id: Uuid, cancel: Arc<AtomicBool>) {
        let mut host_failures = 0u32;
        let mut poll_failures = 0u32;
        let mut copy_back_failures = 0u32;
        loop {
            let volume = match self.volume(id) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(volume = %id, error = %e, "migration runner lost its volume");
                    return;
                }
            };
            let Some(m) = volume.migration.clone() else {
                return;
            };
            if m.abort_requested
                && !matches!(
                    m.phase,
                    MigrationPhase::RollingBack
                        | MigrationPhase::Hydrating
                        | MigrationPhase::CopyingBack
                        | MigrationPhase::CleanupSource
                        | MigrationPhase::Finished
                )
            {
                if let Err(e) = self.begin_rollback(id, None) {
                    tracing::error!(volume = %id, error = %e, "cannot start rollback");
                }
                continue;
            }
            let step = match m.phase {
                MigrationPhase::Admitted => self.step_admitted(id, &m),
                MigrationPhase::SourceDriver => self.step_source_driver(&volume, &m).await,
                MigrationPhase::TargetDriver => self.step_target_driver(&volume, &m).await,
                MigrationPhase::HostCopyPrepare => self.step_host_copy_prepare(&volume, &m).await,
                MigrationPhase::HostCopy => self.step_host_copy(&volume, &m, &cancel).await,
                MigrationPhase::Hydrating => {
                    self.step_hydrating(&volume, &m, &mut poll_failures).await
                }
                MigrationPhase::CopyingBack => {
                    self.step_copy_back(&volume, &m, &mut copy_back_failures)
                        .await
                }
                MigrationPhase::CleanupSource => self.step_cleanup_source(&volume, &m).await,
                MigrationPhase::RollingBack => self.step_roll_back(&volume, &m).await,
                MigrationPhase::Finished => return,
            };
            match step {
                Ok(()) => host_failures = 0,
                Err(StepError::Failed(reason)) => {
                    tracing::warn!(volume = %id, phase = ?m.phase, %reason, "migration step failed; rolling back");
                    if let Err(e) = self.begin_rollback(id, Some(reason)) {
                        tracing::error!(volume = %id, error = %e, "cannot start rollback");
                    }
                }
                Err(StepError::Host(e)) => {
                    host_failures += 1;
                    tracing::error!(volume = %id, error = %e, "migration step hit a host error; retrying");
                    let pause = Duration::from_millis(200 << host_failures.min(6));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Applies a change to the volume and its migration in one transaction
    /// and emits events for the status changes it made.
    fn transition(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Volume, &mut Migration),
        reason: Option<String>,
    ) -> Result<Volume, ServiceError> {
        let mut before = None;
        let updated = self.inner.store.update_volume(id, |v| {
            let Some(mut m) = v.migration.take() else {
                return Err(ServiceError::NoMigrationRunning(v.id));
            };
            before = Some((v.status, m.status));
            change(v, &mut m);
            v.migration_status = Some(m.status);
            v.migration = Some(m);
            Ok(())
        });
        let volume = match updated {
            Ok(v) => v,
            Err(UpdateError::NotFound) => return Err(ServiceError::VolumeNotFound(id)),
            Err(UpdateError::Refused(e)) => return Err(e),
            Err(UpdateError::Store(e)) => return Err(e.into()),
        };
        if let (Some((old_status, old_mstatus)), Some(m)) = (before, volume.migration.as_ref()) {
            if m.status != old_mstatus {
                self.emit_migration(&volume, Some(old_mstatus), m.status, reason.clone());
            }
            if volume.status != old_status {
                self.emit_volume(&volume, Some(old_status), reason);
            }
        }
        Ok(volume)
    }

    fn begin_rollback(&self, id: Uuid, error: Option<String>) -> Result<Volume, ServiceError> {
        self.transition(
            id,
            |_, m| {
                m.phase = MigrationPhase::RollingBack;
                if error.is_some() {
                    m.error = error.clone();
                }
            },
            None,
        )
    }

    fn step_admitted(&self, id: Uuid, m: &Migration) -> Result<(), StepError> {
        let force = m.force_host_copy;
        self.transition(
            id,
            |_, m| {
                m.status = MigrationStatus::Migrating;
                m.phase = if force {
                    MigrationPhase::HostCopyPrepare
                } else {
                    MigrationPhase::SourceDriver
                };
            },
            Some(
                if force {
                    "host copy forced"
                } else {
                    "asking the source driver"
                }
                .into(),
            ),
        )?;
        Ok(())
    }

    /// Path 1: the source driver's `migrate-volume`.
    async fn step_source_driver(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let scope = self.progress_scope(&src, v.id)?;
        let peer = (dest.driver() == src.driver()).then(|| dest.clone());
        let destination = Destination {
            array: m.destination.array.clone(),
            pool: m.destination.pool.clone(),
            driver: dest.driver().to_owned(),
        };
        let vref = vref_at(v, &m.source);
        let outcome = self
            .call(src.driver(), move |rt| {
                rt.migrate_volume(&scope, &vref, &destination, peer)
            })
            .await;
        match outcome {
            Ok(o) if o.moved => {
                let update = o.model_update;
                self.transition(
                    v.id,
                    |v, m| {
                        m.path = Some(MigrationPath::SourceDriver);
                        move_to_destination(v, m, update);
                        finish(v, m, MigrationStatus::Success);
                    },
                    Some("the source driver moved the volume".into()),
                )?;
                Ok(())
            }
            Ok(_) => self.after_source_declined(v, m, &src, &dest).await,
            Err(ServiceError::Driver { source, .. }) if declined(&source) => {
                self.after_source_declined(v, m, &src, &dest).await
            }
            Err(ServiceError::Driver { driver, source }) => Err(StepError::Failed(format!(
                "source driver {driver}: migrate-volume failed: {source}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn after_source_declined(
        &self,
        v: &Volume,
        m: &Migration,
        src: &Arc<crate::array::Array>,
        dest: &Arc<crate::array::Array>,
    ) -> Result<(), StepError> {
        let zoned = self.inner.arrays.zoned(src.name(), dest.name());
        let takes_over = if zoned {
            let scope = self.scope(dest)?;
            self.call(dest.driver(), move |rt| rt.capabilities(&scope))
                .await
                .map(|c| c.take_over)
                .unwrap_or(false)
        } else {
            false
        };
        let next = if takes_over {
            MigrationPhase::TargetDriver
        } else {
            MigrationPhase::HostCopyPrepare
        };
        let why = if takes_over {
            "the source driver declined; the target array takes over the LUN"
        } else if zoned {
            "the source driver declined and the target cannot take over; host copy"
        } else {
            "the source driver declined and the arrays are not zoned; host copy"
        };
        tracing::info!(volume = %v.id, migration = %m.id, "{why}");
        self.transition(v.id, |_, m| m.phase = next, Some(why.into()))?;
        Ok(())
    }

    /// Path 2: the source exposes its LUN, the target takes it over and
    /// migrates it.
    async fn step_target_driver(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let src_scope = self.scope(&src)?;
        let vsrc = vref_at(v, &m.source);
        let to_dest = Connector::Array(dest.name().to_owned());
        let exposed = self
            .call(src.driver(), move |rt| {
                rt.initialize_connection(&src_scope, &vsrc, &to_dest)
            })
            .await
            .map_err(|e| StepError::Failed(format!("source could not expose its LUN: {e}")))?;
        let remote_address = exposed.lun.clone();
        let remote = Arc::new(
            src.open_lun(&exposed.lun)
                .map_err(|e| StepError::Failed(format!("exposed LUN cannot be opened: {e}")))?,
        );
        let scope = self.progress_scope(&dest, v.id)?;
        let vdest = vref_at(v, &m.destination);
        let source = Source {
            array: m.source.array.clone(),
            pool: m.source.pool.clone(),
            driver: src.driver().to_owned(),
        };
        let outcome = self
            .call(dest.driver(), move |rt| {
                rt.take_over_remote_lun(&scope, &vdest, remote.clone())?;
                rt.migrate_volume_target(&scope, &vdest, &source, remote)
            })
            .await;
        match outcome {
            Ok(o) if o.moved && !o.is_async => {
                let update = o.model_update;
                self.transition(
                    v.id,
                    |v, m| {
                        m.path = Some(MigrationPath::TargetDriver);
                        move_to_destination(v, m, update);
                        m.phase = MigrationPhase::CleanupSource;
                        m.status = MigrationStatus::Completing;
                    },
                    Some("the target driver moved the volume".into()),
                )?;
                Ok(())
            }
            Ok(o) if o.moved => {
                // Seed 000: the volume lives on the target from now on and is
                // attachable while its data flows; never roll back past here.
                let update = o.model_update;
                self.transition(
                    v.id,
                    |v, m| {
                        m.path = Some(MigrationPath::TargetDriverAsync);
                        m.remote = Some(remote_address.clone());
                        move_to_destination(v, m, update);
                        m.phase = MigrationPhase::Hydrating;
                        m.status = MigrationStatus::MigratingAttachable;
                    },
                    Some("the target array took over the LUN; the volume is attachable while it hydrates".into()),
                )?;
                Ok(())
            }
            Ok(_) => {
                self.release_exposure(v, m).await;
                self.transition(
                    v.id,
                    |_, m| m.phase = MigrationPhase::HostCopyPrepare,
                    Some("the target driver declined; host copy".into()),
                )?;
                Ok(())
            }
            Err(ServiceError::Driver { source, .. }) if declined(&source) => {
                self.release_exposure(v, m).await;
                self.transition(
                    v.id,
                    |_, m| m.phase = MigrationPhase::HostCopyPrepare,
                    Some("the target driver declined; host copy".into()),
                )?;
                Ok(())
            }
            Err(ServiceError::Driver { driver, source }) => Err(StepError::Failed(format!(
                "target driver {driver}: take-over or migrate-volume-target failed: {source}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Path 3, first half: the target driver makes the hidden destination.
    async fn step_host_copy_prepare(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        let dest = self.array(&m.destination.array)?.clone();
        let scope = self.scope(&dest)?;
        let vdest = vref_at(v, &m.destination);
        let created = self
            .call(dest.driver(), move |rt| rt.create_volume(&scope, &vdest))
            .await
            .map_err(|e| StepError::Failed(format!("destination could not be created: {e}")))?;
        self.transition(
            v.id,
            |_, m| {
                m.path = Some(MigrationPath::HostCopy);
                m.destination.provider_location = created;
                m.phase = MigrationPhase::HostCopy;
                m.checkpoint = 0;
            },
            Some("destination created; copying".into()),
        )?;
        Ok(())
    }

    /// Path 3, second half: the native copy, resumable from its checkpoint.
    async fn step_host_copy(
        &self,
        v: &Volume,
        m: &Migration,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let connector = Connector::Server(HOST_COPY_CONNECTOR.into());
        let (src_scope, dest_scope) = (self.scope(&src)?, self.scope(&dest)?);
        let (vsrc, vdest) = (vref_at(v, &m.source), vref_at(v, &m.destination));
        let c = connector.clone();
        let src_info = self
            .call(src.driver(), move |rt| {
                rt.initialize_connection(&src_scope, &vsrc, &c)
            })
            .await
            .map_err(|e| StepError::Failed(format!("source LUN unavailable: {e}")))?;
        let c = connector.clone();
        let dest_info = self
            .call(dest.driver(), move |rt| {
                rt.initialize_connection(&dest_scope, &vdest, &c)
            })
            .await
            .map_err(|e| StepError::Failed(format!("destination LUN unavailable: {e}")))?;
        let src_lun = src
            .open_lun(&src_info.lun)
            .map_err(|e| StepError::Failed(format!("source LUN cannot be opened: {e}")))?;
        let dest_lun = dest
            .open_lun(&dest_info.lun)
            .map_err(|e| StepError::Failed(format!("destination LUN cannot be opened: {e}")))?;
        let opts = CopyOptions {
            resume_from: m.checkpoint,
            bandwidth: self.inner.copy_bandwidth,
        };
        let (service, id, flag) = (self.clone(), v.id, cancel.clone());
        let copied = tokio::task::spawn_blocking(move || {
            copy_lun(&src_lun, &dest_lun, opts, &flag, |cp| {
                service.set_live_progress(id, cp.done_bytes, cp.total_bytes);
                service
                    .inner
                    .store
                    .update_volume(id, |v| {
                        if let Some(m) = v.migration.as_mut() {
                            m.checkpoint = cp.position;
                            m.done_bytes = cp.done_bytes;
                            m.total_bytes = cp.total_bytes;
                        }
                        Ok::<(), ()>(())
                    })
                    .map(|_| ())
                    .map_err(|e| format!("cannot persist the copy checkpoint: {e:?}"))
            })
        })
        .await
        .map_err(|e| StepError::Host(ServiceError::Internal(format!("copy task failed: {e}"))))?;
        match copied {
            Ok(_) => {}
            // The runner loop sees the abort request and rolls back.
            Err(CopyError::Cancelled) => return Ok(()),
            Err(e) => return Err(StepError::Failed(format!("host copy failed: {e}"))),
        }
        self.release_host_copy(v, m).await;
        self.transition(
            v.id,
            |v, m| {
                let dest_place = m.destination.clone();
                place(v, &dest_place);
                m.phase = MigrationPhase::CleanupSource;
                m.status = MigrationStatus::Completing;
            },
            Some("copy complete; the volume lives on the destination".into()),
        )?;
        Ok(())
    }

    /// Async path after the switch: one short, re-entrant poll of the target
    /// driver's `complete-migration-target`. Failures are retried with a
    /// capped backoff and shown in the migration's `error`; the volume keeps
    /// serving from the destination and never goes back to the stale source.
    async fn step_hydrating(
        &self,
        v: &Volume,
        m: &Migration,
        failures: &mut u32,
    ) -> Result<(), StepError> {
        let polled = self.poll_completion(v, m).await;
        match polled {
            Ok(true) => {
                *failures = 0;
                let moved = self.transition(
                    v.id,
                    |_, m| {
                        // An abort that won the race holds the hydration,
                        // so the driver cannot have finished it; leave it be.
                        if m.phase == MigrationPhase::Hydrating {
                            m.phase = MigrationPhase::CleanupSource;
                            m.status = MigrationStatus::Completing;
                            m.done_bytes = m.total_bytes;
                            m.error = None;
                        }
                    },
                    Some("all data is on the destination".into()),
                )?;
                if moved
                    .migration
                    .as_ref()
                    .is_some_and(|m| m.phase == MigrationPhase::CleanupSource)
                {
                    self.unhydrate_exports(&moved);
                }
                Ok(())
            }
            Ok(false) => {
                if *failures > 0 || m.error.is_some() {
                    *failures = 0;
                    self.transition(
                        v.id,
                        |_, m| {
                            if m.phase == MigrationPhase::Hydrating {
                                m.error = None;
                            }
                        },
                        None,
                    )?;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
                Ok(())
            }
            Err(message) => {
                *failures += 1;
                tracing::warn!(volume = %v.id, attempt = *failures, %message, "async completion failed; will retry");
                let text = format!(
                    "completing the migration failed (attempt {}), retrying: {message}",
                    *failures
                );
                let after = self.transition(
                    v.id,
                    |_, m| {
                        if m.phase == MigrationPhase::Hydrating {
                            m.error = Some(text.clone());
                        }
                    },
                    Some(text.clone()),
                )?;
                if after
                    .migration
                    .as_ref()
                    .is_some_and(|m| m.phase != MigrationPhase::Hydrating)
                {
                    // An abort arrived meanwhile: its copy-back runs next.
                    return Ok(());
                }
                let pause = POLL_INTERVAL
                    .saturating_mul(1 << (*failures).min(8))
                    .min(MAX_RETRY_PAUSE);
                tokio::time::sleep(pause).await;
                Ok(())
            }
        }
    }

    /// Asks the target driver how the async migration goes; `Ok(true)` once
    /// it is done and cleaned up.
    async fn poll_completion(&self, v: &Volume, m: &Migration) -> Result<bool, String> {
        let src = self
            .array(&m.source.array)
            .map_err(|e| e.to_string())?
            .clone();
        let dest = self
            .array(&m.destination.array)
            .map_err(|e| e.to_string())?
            .clone();
        let remote_address = m
            .remote
            .clone()
            .ok_or_else(|| "the migration lost the address of the source LUN".to_owned())?;
        let remote = Arc::new(
            src.open_lun(&remote_address)
                .map_err(|e| format!("the source LUN is unreachable: {e}"))?,
        );
        let scope = self
            .progress_scope(&dest, v.id)
            .map_err(|e| e.to_string())?;
        let vdest = vref_at(v, &m.destination);
        let source = Source {
            array: m.source.array.clone(),
            pool: m.source.pool.clone(),
            driver: src.driver().to_owned(),
        };
        let c = self
            .call(dest.driver(), move |rt| {
                rt.complete_migration_target(&scope, &vdest, &source, remote)
            })
            .await
            .map_err(|e| e.to_string())?;
        self.set_live_progress(v.id, c.done_bytes, c.total_bytes);
        if !c.done {
            let (done, total) = (c.done_bytes, c.total_bytes);
            let _ = self.inner.store.update_volume(v.id, |v| {
                if let Some(m) = v.migration.as_mut() {
                    m.done_bytes = done;
                    m.total_bytes = total;
                }
                Ok::<(), ()>(())
            });
        }
        Ok(c.done)
    }

    /// Serves every attachment of a volume whose hydration ended from the
    /// plain local LUN; requests in flight finish on the old device.
    fn unhydrate_exports(&self, v: &Volume) {
        let Ok(array) = self.array(&v.array) else {
            return;
        };
        for a in &v.attachments {
            match array.open_lun(&a.lun) {
                Ok(lun) => {
                    self.inner
                        .exports
                        .replace_device(&a.id.to_string(), Arc::new(lun));
                }
                Err(e) => {
                    tracing::error!(volume = %v.id, attachment = %a.id, error = %e, "cannot switch export to the local LUN")
                }
            }
        }
    }

    /// Abort of the async path: copies the regions written on the
    /// destination back to the source and switches the volume back. A
    /// failure is retried with a capped backoff, shown in the migration's
    /// `error` and in events; after `COPY_BACK_ATTEMPTS` the abort gives up
    /// and the migration goes on to completion, never losing a write.
    async fn step_copy_back(
        &self,
        v: &Volume,
        m: &Migration,
        failures: &mut u32,
    ) -> Result<(), StepError> {
        let message = match self.copy_back(v, m).await {
            Ok(CopyBack::Switched(volume)) => {
                *failures = 0;
                self.after_switch_back(&volume, m).await;
                return Ok(());
            }
            Ok(CopyBack::Again(why)) => {
                tracing::info!(volume = %v.id, %why, "copy-back goes again");
                return Ok(());
            }
            Err(StepError::Host(e)) => return Err(StepError::Host(e)),
            Err(StepError::Failed(message)) => message,
        };
        *failures += 1;
        tracing::warn!(volume = %v.id, attempt = *failures, %message, "copy-back failed");
        if *failures >= COPY_BACK_ATTEMPTS {
            let text = format!(
                "the abort gave up after {} failed copy-back attempts ({message}); the volume \
                 stays on {} with every write, and the migration goes on",
                *failures, m.destination.array
            );
            if let Ok((hid, _)) = self.hold_hydration(m) {
                self.inner.hydrations.release_copy_back(&hid);
            }
            *failures = 0;
            let after = self.transition(
                v.id,
                |_, m| {
                    if m.phase == MigrationPhase::CopyingBack {
                        m.phase = MigrationPhase::Hydrating;
                        m.abort_requested = false;
                        m.error = Some(text.clone());
                    }
                },
                None,
            )?;
            self.emit_same_status(&after, text);
            return Ok(());
        }
        let text = format!(
            "copying back to the source failed (attempt {} of {COPY_BACK_ATTEMPTS}), retrying: \
             {message}",
            *failures
        );
        let after = self.transition(
            v.id,
            |_, m| {
                if m.phase == MigrationPhase::CopyingBack {
                    m.error = Some(text.clone());
                }
            },
            None,
        )?;
        self.emit_same_status(&after, text);
        let pause = POLL_INTERVAL
            .saturating_mul(1 << (*failures).min(8))
            .min(MAX_RETRY_PAUSE);
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// One copy-back attempt: passes while I/O goes on, then the last pass
    /// with writes held, inside which the switch back is persisted.
    async fn copy_back(&self, v: &Volume, m: &Migration) -> Result<CopyBack, StepError> {
        let src = self.array(&m.source.array)?.clone();
        let remote_address = m.remote.clone().ok_or_else(|| {
            StepError::Failed("the migration lost the address of the source LUN".into())
        })?;
        let (_, h) = self.hold_hydration(m).map_err(StepError::Failed)?;
        // The LUN the copy-back writes to must still be the source LUN the
        // source array knows: a LUN removed (or replaced) under the
        // migration would swallow the writes.
        let current = src
            .open_lun(&remote_address)
            .map_err(|e| StepError::Failed(format!("the source LUN is unreachable: {e}")))?;
        if !same_file(&current, h.remote()) {
            return Err(StepError::Failed(
                "the source LUN was replaced under the migration".into(),
            ));
        }
        // Where each attachment lives on the source, asked before writes
        // are held: the switch moves every export there at once.
        let mut luns = HashMap::new();
        for a in &v.attachments {
            let scope = self.scope(&src)?;
            let vsrc = vref_at(v, &m.source);
            let connector = Connector::Server(a.server.clone());
            let info = self
                .call(src.driver(), move |rt| {
                    rt.initialize_connection(&scope, &vsrc, &connector)
                })
                .await
                .map_err(|e| {
                    StepError::Failed(format!(
                        "the source driver cannot expose the volume to {}: {e}",
                        a.server
                    ))
                })?;
            luns.insert(a.id, info.lun);
        }
        let (service, id) = (self.clone(), v.id);
        let copied = tokio::task::spawn_blocking(move || {
            let live = |h: &crate::hydrate::Hydration| {
                let total = h.written_bytes();
                service.set_live_progress(id, total - h.copy_back_pending().min(total), total);
            };
            for pass in 0..COPY_BACK_PASSES {
                if h.copy_back_pending() <= FINAL_PASS_BYTES {
                    break;
                }
                h.copy_back_pass(&mut |_| live(&h))
                    .map_err(|e| format!("copy-back pass {} failed: {e}", pass + 1))?;
                live(&h);
            }
            let mut outcome = None;
            let finished = h.copy_back_finish(|| match service.switch_back(id, &luns) {
                Ok(v) => {
                    outcome = Some(CopyBack::Switched(Box::new(v)));
                    Ok(())
                }
                Err(SwitchError::NewAttachment(a)) => {
                    outcome = Some(CopyBack::Again(format!(
                        "attachment {a} was made during the copy-back"
                    )));
                    Err(std::io::Error::other("a new attachment"))
                }
                Err(e) => Err(std::io::Error::other(e)),
            });
            match (finished, outcome) {
                (Ok(_), Some(o)) | (Err(_), Some(o @ CopyBack::Again(_))) => Ok(o),
                (Ok(_), None) => Err("the switch back did not happen".to_owned()),
                (Err(e), _) => Err(format!("the last copy-back pass failed: {e}")),
            }
        })
        .await
        .map_err(|e| {
            StepError::Host(ServiceError::Internal(format!(
                "copy-back task failed: {e}"
            )))
        })?;
        copied.map_err(StepError::Failed)
    }

    /// The switch back, persisted while writes are held: the volume and its
    /// attachments live on the source again; cleanup follows.
    fn switch_back(
        &self,
        id: Uuid,
        luns: &HashMap<Uuid, LunAddress>,
    ) -> Result<Volume, SwitchError> {
        let updated = self.inner.store.update_volume(id, |v| {
            let Some(m) = v.migration.as_mut() else {
                return Err(SwitchError::NotCopyingBack);
            };
            if m.phase != MigrationPhase::CopyingBack {
                return Err(SwitchError::NotCopyingBack);
            }
            for a in v.attachments.iter_mut() {
                a.lun = luns
                    .get(&a.id)
                    .cloned()
                    .ok_or(SwitchError::NewAttachment(a.id))?;
            }
            // What is left is the rollback of an abort before the switch:
            // release the take-over, delete the destination, finish.
            m.phase = MigrationPhase::RollingBack;
            m.error = None;
            let src = m.source.clone();
            place(v, &src);
            Ok(())
        });
        let volume = match updated {
            Ok(v) => v,
            Err(UpdateError::Refused(e)) => return Err(e),
            Err(UpdateError::NotFound) => return Err(SwitchError::NotCopyingBack),
            Err(UpdateError::Store(e)) => return Err(SwitchError::Store(e.to_string())),
        };
        if let Some(m) = volume.migration.as_ref() {
            let reason = format!(
                "written regions copied back; the volume serves from {} again; removing the \
                 destination",
                m.source.array
            );
            self.emit_same_status(&volume, reason);
        }
        Ok(volume)
    }

    /// After the switch back: every export serves the source LUN itself
    /// (the returned hydration forwards to it meanwhile, so requests in
    /// flight are right either way), and the destination forgets the
    /// attachments' connections.
    async fn after_switch_back(&self, v: &Volume, m: &Migration) {
        if let Ok(src) = self.array(&m.source.array).cloned() {
            for a in &v.attachments {
                match src.open_lun(&a.lun) {
                    Ok(lun) => {
                        self.inner
                            .exports
                            .replace_device(&a.id.to_string(), Arc::new(lun));
                    }
                    Err(e) => {
                        tracing::error!(volume = %v.id, attachment = %a.id, error = %e, "cannot switch export to the source LUN")
                    }
                }
            }
        }
        for a in &v.attachments {
            let connector = Connector::Server(a.server.clone());
            self.terminate_at(v, &m.destination, connector).await;
        }
    }

    /// A migration event that records a change within the same status
    /// (a phase, a retry), so the event stream shows it.
    fn emit_same_status(&self, v: &Volume, reason: String) {
        if let Some(m) = v.migration.as_ref() {
            self.emit_migration(v, Some(m.status), m.status, Some(reason));
        }
    }

    /// After the switch: remove the source LUN, then report success. Never
    /// goes back: the destination holds the volume now.
    async fn step_cleanup_source(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        self.release_exposure(v, m).await;
        let src = self.array(&m.source.array)?.clone();
        let vsrc = vref_at(v, &m.source);
        let mut warning = None;
        for attempt in 0..CLEANUP_ATTEMPTS {
            let scope = self.scope(&src)?;
            let vr = vsrc.clone();
            match self
                .call(src.driver(), move |rt| rt.delete_volume(&scope, &vr))
                .await
            {
                Ok(()) => {
                    warning = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(volume = %v.id, attempt, error = %e, "source cleanup failed");
                    warning = Some(format!("the source LUN could not be removed: {e}"));
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
            }
        }
        self.transition(
            v.id,
            |v, m| {
                m.error = warning.clone();
                finish(v, m, MigrationStatus::Success);
            },
            Some("migration complete".into()),
        )?;
        Ok(())
    }

    /// Undo: remove whatever the destination holds, release the source's
    /// exposure, and put the volume back as it was.
    async fn step_roll_back(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        self.release_host_copy(v, m).await;
        self.release_exposure(v, m).await;
        self.cleanup_destination(v, m).await;
        let end = if m.abort_requested {
            MigrationStatus::Aborted
        } else {
            MigrationStatus::Error
        };
        let reason = m
            .error
            .clone()
            .or_else(|| m.abort_requested.then(|| "aborted".into()));
        self.transition(
            v.id,
            |v, m| {
                let src = m.source.clone();
                place(v, &src);
                finish(v, m, end);
            },
            reason,
        )?;
        Ok(())
    }

    /// Deletes the destination volume through the target driver (idempotent),
    /// retrying a little; a failure leaves an orphan LUN, logged, never a
    /// stuck volume.
    async fn cleanup_destination(&self, v: &Volume, m: &Migration) {
        let Ok(dest) = self.array(&m.destination.array).cloned() else {
            return;
        };
        let vdest = vref_at(v, &m.destination);
        for attempt in 0..CLEANUP_ATTEMPTS {
            let Ok(scope) = self.scope(&dest) else {
                return;
            };
            let vr = vdest.clone();
            match self
                .call(dest.driver(), move |rt| rt.delete_volume(&scope, &vr))
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(volume = %v.id, attempt, error = %e, "destination cleanup failed");
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
            }
        }
        tracing::error!(volume = %v.id, array = %dest.name(), "destination LUN left behind after rollback");
    }

    /// Ends the source's exposure to the destination array (take-over).
    async fn release_exposure(&self, v: &Volume, m: &Migration) {
        let connector = Connector::Array(m.destination.array.clone());
        self.terminate_at(v, &m.source, connector).await;
    }

    /// Ends the host copy's connections on both sides.
    async fn release_host_copy(&self, v: &Volume, m: &Migration) {
        let connector = Connector::Server(HOST_COPY_CONNECTOR.into());
        self.terminate_at(v, &m.source, connector.clone()).await;
        self.terminate_at(v, &m.destination, connector).await;
    }

    async fn terminate_at(&self, v: &Volume, at: &Placement, connector: Connector) {
        let Ok(array) = self.array(&at.array).cloned() else {
            return;
        };
        let Ok(scope) = self.scope(&array) else {
            return;
        };
        let vr = vref_at(v, at);
        if let Err(e) = self
            .call(array.driver(), move |rt| {
                rt.terminate_connection(&scope, &vr, &connector)
            })
            .await
        {
            tracing::warn!(volume = %v.id, array = %at.array, error = %e, "terminate-connection failed");
        }
    }

    /// A call scope whose progress reports update the live progress.
    fn progress_scope(
        &self,
        array: &Arc<crate::array::Array>,
        id: Uuid,
    ) -> Result<crate::runtime::CallScope, ServiceError> {
        let mut scope = self.scope(array)?;
        let service = self.clone();
        scope.progress = Some(Arc::new(move |done, total| {
            service.set_live_progress(id, done, total);
        }));
        Ok(scope)
    }
}

/// The switch: the volume record now lives at the migration's destination,
/// with the driver's model update there.
fn move_to_destination(v: &mut Volume, m: &mut Migration, model_update: Option<String>) {
    m.destination.provider_location = model_update;
    place(v, &m.destination);
}

/// Puts the volume record at `at`.
fn place(v: &mut Volume, at: &Placement) {
    v.array = at.array.clone();
    v.pool = at.pool.clone();
    v.provider_location = at.provider_location.clone();
}

/// Ends a migration: final status, timestamps, the volume's status restored.
fn finish(v: &mut Volume, m: &mut Migration, end: MigrationStatus) {
    m.status = end;
    m.phase = MigrationPhase::Finished;
    m.finished_at = Some(now_rfc3339());
    if end == MigrationStatus::Success {
        m.done_bytes = m.total_bytes;
    }
    // Attached during migrating_attachable: in-use now.
    v.status = if !v.attachments.is_empty() {
        VolumeStatus::InUse
    } else if m.original_status == VolumeStatus::Migrating {
        VolumeStatus::Available
    } else {
        m.original_status
    };
}

/// Whether two LUNs are the same file (device and inode).
fn same_file(a: &crate::array::Lun, b: &crate::array::Lun) -> bool {
    match (a.file().metadata(), b.file().metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
