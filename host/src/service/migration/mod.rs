//! Migrations (seed 000's paths, seed 003's status, abort and recovery):
//! admission, the status query and abort live here; the runner walks the
//! phases of `model::migration`'s table, one concern a file: `run` (the loop,
//! persisting and events), `paths` (the drivers' own moves), `host_copy`
//! (the host's copy, forward and back), `hydrating` (the async target path
//! after the switch), `copy_back` (an abort's return from it) and `settle`
//! (cleanup, rollback, and finding where the data is before anything is
//! deleted).

mod copy_back;
mod failure;
mod host_copy;
mod hydrating;
mod live;
mod paths;
mod run;
mod settle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::NewEvent;
use super::{Service, ServiceError};
use crate::hydrate::{Hydration, LunRef};
use crate::model::{
    Migration, MigrationPath, MigrationPhase, MigrationStatus, Placement, SourceRemoval, Volume,
    VolumeStatus, now_rfc3339,
};
use crate::store::UpdateError;

/// A request to migrate a volume.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"array": "p1"}))]
pub struct MigrateVolume {
    /// Destination array.
    pub array: String,
    /// Destination pool (the array's first pool when absent).
    #[serde(default)]
    pub pool: Option<String>,
    /// Skip the driver paths and copy in the host.
    #[serde(default)]
    pub force_host_copy: bool,
    /// Cinder's `lock_volume` (default false): while the migration runs,
    /// attach, detach and abort requests are refused with `volume_locked`
    /// (an abort passes with `?force=true`).
    #[serde(default)]
    pub lock_volume: Option<bool>,
}

/// The answer to an admitted migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MigrationAccepted {
    /// Migration id.
    pub migration_id: Uuid,
    /// What will happen, in words.
    pub message: String,
}

/// Progress of the current copy: the migration's, or while `aborting`, the
/// copy back to the source. The total is fixed when the copy starts and
/// `done_bytes` never decreases within it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// Bytes settled (copied, or known to be holes).
    pub done_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// `done / total` in percent (100 when there is nothing to move).
    pub percent: f64,
}

/// The last migration of a volume, as the status query shows it. A volume
/// never migrated answers with every field null (and `warnings` empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MigrationView {
    /// Volume id.
    pub volume_id: Uuid,
    /// Migration id; null if never migrated.
    #[schema(required = true)]
    pub migration_id: Option<Uuid>,
    /// Null if never migrated.
    #[schema(required = true)]
    pub migration_status: Option<MigrationStatus>,
    /// The path taken, once known.
    #[schema(required = true)]
    pub path: Option<MigrationPath>,
    /// Journal step.
    #[schema(required = true)]
    pub phase: Option<MigrationPhase>,
    /// Where the volume came from.
    #[schema(required = true)]
    pub source: Option<Placement>,
    /// Where it goes.
    #[schema(required = true)]
    pub destination: Option<Placement>,
    /// Progress; null if never migrated.
    #[schema(required = true)]
    pub progress: Option<Progress>,
    /// Why it failed (status `error`), or why the step now retried failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// What went wrong without failing the migration.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Failed attempts of the step now retried (after the switch).
    #[serde(default)]
    pub attempts: u32,
    /// Whether an operator asked to abort it.
    #[serde(default)]
    pub abort_requested: bool,
    /// Whether attach, detach and abort are refused while it runs.
    #[serde(default)]
    pub lock_volume: bool,
    /// Attachments whose NBD export serves from the destination since the
    /// live switch, connections kept (empty before the switch and after a
    /// switch back).
    #[serde(default)]
    pub switched_attachments: Vec<Uuid>,
    /// After a success, the source LUN's removal, which goes on after the
    /// volume is usable at its destination; null before a success.
    #[serde(default)]
    pub source_removal: Option<SourceRemoval>,
    /// When it started.
    #[schema(format = DateTime)]
    #[schema(required = true)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime)]
    #[schema(required = true)]
    pub finished_at: Option<String>,
}

pub(super) fn progress(done: u64, total: u64) -> Progress {
    let percent = if total == 0 {
        100.0
    } else {
        ((done.min(total) as f64 / total as f64) * 10_000.0).round() / 100.0
    };
    Progress {
        done_bytes: done,
        total_bytes: total,
        percent,
    }
}

fn view(volume: &Volume) -> MigrationView {
    let m = volume.migration.as_ref();
    MigrationView {
        volume_id: volume.id,
        migration_id: m.map(|m| m.id),
        migration_status: m.map(|m| m.status),
        path: m.and_then(|m| m.path),
        phase: m.map(|m| m.phase),
        source: m.map(|m| m.source.clone()),
        destination: m.map(|m| m.destination.clone()),
        progress: m.map(|m| progress(m.done_bytes, m.total_bytes)),
        error: m.and_then(|m| m.error.clone()),
        warnings: m.map(|m| m.warnings.clone()).unwrap_or_default(),
        attempts: m.map_or(0, |m| m.attempts),
        abort_requested: m.is_some_and(|m| m.abort_requested),
        lock_volume: m.is_some_and(|m| m.lock_volume),
        // An attachment detached since the switch is gone from the view.
        switched_attachments: m.map_or_else(Vec::new, |m| {
            m.switched
                .iter()
                .filter(|a| volume.attachments.iter().any(|x| x.id == **a))
                .copied()
                .collect()
        }),
        source_removal: m.and_then(|m| m.source_removal),
        started_at: m.map(|m| m.started_at.clone()),
        finished_at: m.and_then(|m| m.finished_at.clone()),
    }
}

impl Service {
    /// Admits a migration, synchronously and atomically, or says exactly why
    /// it won't proceed. The migration then runs in the background.
    pub async fn migrate(
        &self,
        id: Uuid,
        req: MigrateVolume,
    ) -> Result<MigrationAccepted, ServiceError> {
        let volume = self.volume(id)?;
        let dest = self.array(&req.array)?.clone();
        let pool = match req.pool {
            Some(p) if dest.pools().contains(&p) => p,
            Some(p) => {
                return Err(ServiceError::PoolNotFound {
                    array: req.array,
                    pool: p,
                });
            }
            None if dest.name() == volume.array => volume.pool.clone(),
            None => dest.pools().first().cloned().ok_or_else(|| {
                ServiceError::Internal(format!("array {} has no pool", dest.name()))
            })?,
        };
        if dest.name() == volume.array && pool == volume.pool {
            return Err(ServiceError::SameLocation(format!(
                "volume {id} already lives on array {} pool {pool}",
                volume.array
            )));
        }
        let source = self.array(&volume.array)?.clone();
        self.scope(&source)?;
        self.scope(&dest)?;
        let free = dest.capacity_bytes().saturating_sub(dest.used_bytes()?);
        if volume.size_bytes > free {
            return Err(ServiceError::NoSpace(format!(
                "destination array {} has {free} bytes free, the volume needs {}",
                dest.name(),
                volume.size_bytes
            )));
        }
        dest.check_filesystem_fits(volume.size_bytes)?;
        let migration_id = Uuid::new_v4();
        let destination = Placement {
            array: dest.name().to_owned(),
            pool: pool.clone(),
            provider_location: None,
        };
        let force = req.force_host_copy;
        let lock = req.lock_volume.unwrap_or(false);
        let mut original = VolumeStatus::Available;
        let (checked_array, checked_pool) = (volume.array.clone(), volume.pool.clone());
        let admitted = self.inner.store.update_volume(id, |v| {
            if v.status == VolumeStatus::Migrating {
                return Err(ServiceError::MigrationInProgress(v.id));
            }
            // The last migration's runner still removes its source LUN (a
            // second or so); a new one would take its place in the record.
            if v.migration
                .as_ref()
                .is_some_and(|m| m.source_removal == Some(SourceRemoval::Pending))
            {
                return Err(ServiceError::MigrationInProgress(v.id));
            }
            // The checks above read the volume before this transaction; a
            // migration that ended in between may have moved it.
            if v.array == destination.array && v.pool == destination.pool {
                return Err(ServiceError::SameLocation(format!(
                    "volume {} already lives on array {} pool {} (a migration ended \
                     while this request was checked)",
                    v.id, v.array, v.pool
                )));
            }
            if v.array != checked_array || v.pool != checked_pool {
                return Err(ServiceError::MigrationInProgress(v.id));
            }
            // An attached volume moves live: its connections stay open.
            if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                return Err(ServiceError::NotMigratable {
                    id: v.id,
                    status: super::volumes::status_name(v.status),
                    reason: "only an available or in-use volume can be migrated".into(),
                });
            }
            original = v.status;
            v.migration = Some(Migration {
                id: migration_id,
                source: Placement {
                    array: v.array.clone(),
                    pool: v.pool.clone(),
                    provider_location: v.provider_location.clone(),
                },
                destination: destination.clone(),
                original_status: v.status,
                force_host_copy: force,
                lock_volume: lock,
                phase: MigrationPhase::Admitted,
                path: None,
                status: MigrationStatus::Starting,
                done_bytes: 0,
                total_bytes: v.size_bytes,
                checkpoint: 0,
                abort_requested: false,
                remote: None,
                hydrating: None,
                switched: Vec::new(),
                taken_over_attached: false,
                error: None,
                warnings: Vec::new(),
                attempts: 0,
                source_removal: None,
                started_at: now_rfc3339(),
                finished_at: None,
            });
            v.status = VolumeStatus::Migrating;
            v.migration_status = Some(MigrationStatus::Starting);
            Ok(())
        });
        let volume = match admitted {
            Ok(v) => v,
            Err(UpdateError::NotFound) => return Err(ServiceError::VolumeNotFound(id)),
            Err(UpdateError::Refused(e)) => return Err(e),
            Err(UpdateError::Store(e)) => return Err(e.into()),
        };
        let reason = format!(
            "migrate to {}/{}{}",
            destination.array,
            destination.pool,
            if force { " (host copy forced)" } else { "" }
        );
        self.emit_volume(&volume, Some(original), Some(reason.clone()));
        self.emit_migration(&volume, None, MigrationStatus::Starting, Some(reason));
        self.spawn_migration(id);
        Ok(MigrationAccepted {
            migration_id,
            message: format!(
                "migration of volume {id} from {}/{} to {}/{pool} accepted{}; \
                 follow it with GET /v1/volumes/{id}/migration",
                volume.array,
                volume.pool,
                dest.name(),
                if force { " (host copy forced)" } else { "" }
            ),
        })
    }

    /// The last migration of a volume.
    pub fn migration(&self, id: Uuid) -> Result<MigrationView, ServiceError> {
        let volume = self.volume(id)?;
        let mut v = view(&volume);
        if let (Some(live), Some(m)) = (self.live_progress(id), volume.migration.as_ref())
            && m.is_running()
            && live.1 == m.total_bytes
        {
            // Live reports land between two persisted ones; a report of an
            // earlier copy (another total) is stale.
            v.progress = Some(progress(live.0.max(m.done_bytes), m.total_bytes));
        }
        Ok(v)
    }

    /// Asks a running migration to stop and put the volume back where it
    /// was. An accepted abort always takes effect: before the switch the
    /// migration rolls back (a driver call in flight is stopped through its
    /// host functions; a move the source driver finished anyway is copied
    /// back); while `migrating_attachable` the destination's writes are
    /// copied back first. When it cannot be honoured the request is refused
    /// with a specific code, and nothing changes. A repeated abort answers
    /// like the first.
    pub async fn abort_migration(
        &self,
        id: Uuid,
        force: bool,
    ) -> Result<MigrationView, ServiceError> {
        // The hydration is held before the abort is recorded, so that a
        // completion poll in flight cannot finish it under the copy-back;
        // if it finished already, the migration is completing: refused.
        let current = self.volume(id)?;
        if !force && let Some(locked) = super::operator::locked_by_migration(&current, "abort") {
            return Err(locked);
        }
        let mut held = None;
        if let Some(m) = current
            .migration
            .as_ref()
            .filter(|m| m.phase == MigrationPhase::Hydrating && !m.abort_requested)
        {
            match self.hold_hydration(m) {
                Ok((hid, _)) => held = Some(hid),
                Err(reason) => return Err(ServiceError::AbortTooLate { id, reason }),
            }
        }
        let is_held = held.is_some();
        let reason = match current.migration.as_ref() {
            Some(m) if m.phase == MigrationPhase::Hydrating => format!(
                "abort requested by an operator: copying the writes made on {} back to {}, then \
                 switching back",
                m.destination.array, m.source.array
            ),
            _ => "abort requested by an operator".to_owned(),
        };
        let recorded = self.record(id, Some(reason), |v, m| {
            let vid = v.id;
            if !m.is_running() {
                return Err(ServiceError::NoMigrationRunning(vid));
            }
            if m.abort_requested {
                // Already under way: the same answer again.
                return Ok(());
            }
            match m.phase {
                MigrationPhase::RollingBack => Err(ServiceError::AbortNotPossible {
                    id: vid,
                    reason: format!(
                        "the migration failed and is rolling back already; it ends `error` \
                         with the volume on {}",
                        m.source.array
                    ),
                }),
                MigrationPhase::CleanupSource => Err(ServiceError::AbortTooLate {
                    id: vid,
                    reason: format!(
                        "all data is on {} and the source is being removed; the migration \
                         is completing",
                        m.destination.array
                    ),
                }),
                MigrationPhase::Hydrating if !is_held => Err(ServiceError::AbortNotPossible {
                    id: vid,
                    reason: "the volume has just switched to the destination; ask again to \
                             copy its writes back"
                        .into(),
                }),
                MigrationPhase::Hydrating => {
                    // Persisted before the first byte goes back: a restart
                    // resumes the copy-back, never the completion.
                    m.request_abort();
                    m.error = None;
                    m.enter(MigrationPhase::CopyingBack)?;
                    Ok(())
                }
                phase if phase.abortable() => {
                    m.request_abort();
                    Ok(())
                }
                phase => Err(ServiceError::AbortNotPossible {
                    id: vid,
                    reason: format!("the migration is in phase {phase:?}"),
                }),
            }
        });
        let volume = match recorded {
            Ok(v) => v,
            Err(e) => {
                if let Some(hid) = &held {
                    self.release_unless_copying_back(id, hid);
                }
                return Err(e);
            }
        };
        let copying_back = volume
            .migration
            .as_ref()
            .is_some_and(|m| m.phase == MigrationPhase::CopyingBack);
        if !copying_back && let Some(hid) = &held {
            self.release_unless_copying_back(id, hid);
        }
        // Stops a host copy at its next chunk and a driver call's native
        // copies and writes at their next step.
        if let Some(flag) = self.cancel_flag(id) {
            flag.store(true, Ordering::SeqCst);
        }
        tracing::info!(volume = %id, copying_back, "migration abort requested");
        Ok(view(&volume))
    }

    /// Lets a hydration this call held go on, unless a concurrent abort
    /// won and its copy-back needs the hold.
    fn release_unless_copying_back(&self, id: Uuid, hid: &str) {
        let copying_back = self
            .volume(id)
            .ok()
            .and_then(|v| v.migration)
            .is_some_and(|m| m.phase == MigrationPhase::CopyingBack);
        if !copying_back {
            self.inner.hydrations.release_copy_back(hid);
        }
    }

    /// Holds the hydration of an async migration for a copy-back; returns
    /// its id and device, or why the migration can no longer be aborted.
    pub(super) fn hold_hydration(&self, m: &Migration) -> Result<(String, Arc<Hydration>), String> {
        let Some(remote) = m.remote.clone() else {
            return Err("the migration lost the address of the source LUN".into());
        };
        let remote = LunRef {
            array: m.source.array.clone(),
            lun: remote,
        };
        self.inner.hydrations.copy_back(&remote).map_err(|_| {
            format!(
                "all data is on {} already and the migration is completing; \
                     the volume stays there",
                m.destination.array
            )
        })
    }

    /// Starts the runner of a volume's migration unless one runs already.
    pub(super) fn spawn_migration(&self, id: Uuid) {
        let flag = Arc::new(AtomicBool::new(false));
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains_key(&id) {
                return;
            }
            running.insert(
                id,
                super::RunningMigration {
                    cancel: flag.clone(),
                    progress: None,
                },
            );
        }
        let service = self.clone();
        self.inner.tasks.spawn(async move {
            service.run_migration(id, flag).await;
            service
                .inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    fn cancel_flag(&self, id: Uuid) -> Option<Arc<AtomicBool>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|r| r.cancel.clone())
    }

    pub(super) fn set_live_progress(&self, id: Uuid, done: u64, total: u64) {
        if let Some(r) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            r.progress = Some(match r.progress {
                Some((before, t)) if t == total => (before.max(done), total),
                _ => (done, total),
            });
        }
    }

    fn live_progress(&self, id: Uuid) -> Option<(u64, u64)> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(|r| r.progress)
    }

    /// Resumes every migration a crash interrupted from its journal step.
    /// Driver calls are idempotent by contract, so a step that was under way
    /// runs again; a host copy resumes from its checkpoint, a hydration from
    /// its bitmap; a rollback under way finishes.
    pub(super) fn recover_migrations(&self) -> Result<(), ServiceError> {
        for volume in self.inner.store.list_volumes()? {
            let Some(m) = volume.migration.as_ref() else {
                continue;
            };
            if m.phase == MigrationPhase::Finished {
                if m.source_removal == Some(SourceRemoval::Pending) {
                    tracing::warn!(volume = %volume.id, "removing the source LUN of a migration that succeeded before a crash");
                    self.spawn_migration(volume.id);
                }
                continue;
            }
            tracing::warn!(volume = %volume.id, phase = ?m.phase, "resuming an interrupted migration");
            self.spawn_migration(volume.id);
        }
        Ok(())
    }

    pub(super) fn emit_volume(
        &self,
        v: &Volume,
        from: Option<VolumeStatus>,
        reason: Option<String>,
    ) {
        self.inner.events.emit(NewEvent {
            kind: "volume",
            volume: Some(v.id),
            migration: v.migration.as_ref().map(|m| m.id),
            from: from.map(super::volumes::status_name),
            to: super::volumes::status_name(v.status),
            reason,
        });
    }

    pub(super) fn emit_migration(
        &self,
        v: &Volume,
        from: Option<MigrationStatus>,
        to: MigrationStatus,
        reason: Option<String>,
    ) {
        let name = super::views::wire_name::<MigrationStatus>;
        self.inner.events.emit(NewEvent {
            kind: "migration",
            volume: Some(v.id),
            migration: v.migration.as_ref().map(|m| m.id),
            from: from.map(name),
            to: name(to),
            reason,
        });
    }
}
