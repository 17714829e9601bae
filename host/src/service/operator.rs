//! Operator actions for volumes a migration or a failed call left stuck
//! (Cinder's `os-reset_status` and `os-force_delete`), and the
//! `lock_volume` rule that attach and detach obey.
//!
//! A reset stops a running migration by recording it finished — status
//! `error`, its error text saying an operator reset it — so its runner
//! returns the next time it reads the volume, and sets the status asked
//! for. It moves no data and deletes no LUN: the volume stays where its
//! record says it lives, and a LUN the migration made on the other array is
//! left in place (a later delete removes it). The one exception is a LUN
//! still filling from the migration's source (the async path): a complete
//! fill is ended so the LUN stands alone, an incomplete one is refused
//! unless the operator discards the part not copied yet. Like Cinder's, a
//! reset only corrects the record: a create or delete call already under
//! way still finishes.
//!
//! A forced delete removes a volume in any state: it stops its migration,
//! withdraws its exports, abandons its hydration, asks the drivers of both
//! sides of its last migration to delete their LUN of it (best effort,
//! each failure a warning), and removes the record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::events::NewEvent;
use super::volumes::{from_update, status_name, volume_ref};
use super::{Service, ServiceError, VolumeView};
use crate::hydrate::LunRef;
use crate::model::{Migration, MigrationPhase, MigrationStatus, Placement, Volume, VolumeStatus};
use crate::runtime::{Connector, VolumeRef};

/// Longest a reset or a forced delete waits for a migration runner to
/// leave the step it is in: a driver call ends by its deadline and a host
/// copy at its next chunk, so this is ample unless a driver's deadline is
/// set very long.
const STOP_WAIT: Duration = Duration::from_secs(45);

/// Pause between two looks at a runner that is stopping.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A request to set a volume's status by hand (`reset-status`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetStatus {
    /// `available`, `in-use` or `error`.
    #[schema(pattern = "^(available|in-use|error)$")]
    pub status: String,
    /// Absent: a running migration is recorded as `error`, a finished one
    /// is left as it is. `"error"`: the last migration is recorded as
    /// failed. `null`: the volume forgets its last migration.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = "^error$")]
    pub migration_status: Option<Option<String>>,
    /// The volume's LUN still fills from the migration's source: end the
    /// fill and keep only what arrived (the rest reads as zeros). Without
    /// it such a reset is refused.
    #[serde(default)]
    pub discard_unhydrated: bool,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The answer to a reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetOutcome {
    /// The volume after the reset.
    pub volume: VolumeView,
    /// The migration the reset stopped, if one ran.
    #[schema(required = true)]
    pub stopped_migration: Option<Uuid>,
    /// What the reset did and what it left where, in words.
    pub notes: Vec<String>,
}

/// The answer to a forced delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForceDeleted {
    /// The volume, now gone.
    pub volume_id: Uuid,
    /// The migration the delete stopped, if one ran.
    #[schema(required = true)]
    pub stopped_migration: Option<Uuid>,
    /// `array/pool` of each place whose driver deleted the volume's LUN.
    pub deleted_on: Vec<String>,
    /// What could not be cleaned up (a LUN left behind, an export that
    /// failed to close), in words.
    pub warnings: Vec<String>,
}

/// What a reset does to the last migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MigrationReset {
    /// Stop a running one (recorded `error`); leave a finished one.
    Keep,
    /// Record the last one as failed.
    Error,
    /// Forget the last one.
    Forget,
}

/// Echo at most this much of a value a client sent.
const ECHO: usize = 64;

fn echo(s: &str) -> String {
    let shown: String = s.chars().take(ECHO).collect();
    if shown.len() < s.len() {
        format!("{shown:?}...")
    } else {
        format!("{shown:?}")
    }
}

/// The statuses an operator may set. The others describe work the host
/// does (`creating`, `deleting`, `migrating`): set by hand they would
/// promise work nobody does.
fn settable(status: &str) -> Result<VolumeStatus, ServiceError> {
    match status {
        "available" => Ok(VolumeStatus::Available),
        "in-use" => Ok(VolumeStatus::InUse),
        "error" => Ok(VolumeStatus::Error),
        "creating" | "deleting" | "migrating" => Err(ServiceError::InvalidStatus(format!(
            "{status:?} is set by the host while it works on a volume; reset to available, \
             in-use or error"
        ))),
        other => Err(ServiceError::InvalidStatus(format!(
            "unknown status {}; reset to available, in-use or error",
            echo(other)
        ))),
    }
}

fn migration_reset(asked: &Option<Option<String>>) -> Result<MigrationReset, ServiceError> {
    match asked {
        None => Ok(MigrationReset::Keep),
        Some(None) => Ok(MigrationReset::Forget),
        Some(Some(s)) if s == "error" => Ok(MigrationReset::Error),
        Some(Some(other)) => Err(ServiceError::InvalidStatus(format!(
            "migration_status {} cannot be set; use \"error\" or null",
            echo(other)
        ))),
    }
}

/// Refuses a status that contradicts the volume's attachments: `in-use`
/// means attached, `available` means not.
fn check_fits(v: &Volume, status: VolumeStatus) -> Result<(), ServiceError> {
    let n = v.attachments.len();
    let reason = match status {
        VolumeStatus::InUse if n == 0 => {
            "it has no attachments; attach it, or reset it to available".to_owned()
        }
        VolumeStatus::Available if n > 0 => {
            format!("it has {n} attachment(s); detach them, or reset it to in-use")
        }
        _ => return Ok(()),
    };
    Err(ServiceError::InconsistentStatus {
        id: v.id,
        status: status_name(status),
        reason,
    })
}

fn unfinished(v: &Volume) -> Option<&Migration> {
    v.migration.as_ref().filter(|m| m.is_running())
}

/// A locking migration runs on the volume: the error with which attach
/// and detach (and an abort path that checks it) are refused until it
/// ends.
pub(super) fn locked_by_migration(v: &Volume, what: &'static str) -> Option<ServiceError> {
    let m = unfinished(v).filter(|m| m.lock_volume)?;
    Some(ServiceError::VolumeLocked {
        id: v.id,
        migration: m.id,
        what,
    })
}

fn phase_name(p: MigrationPhase) -> String {
    super::views::wire_name(p)
}

fn place(p: &Placement) -> String {
    format!("{}/{}", p.array, p.pool)
}

/// The volume as the driver of `at` sees it.
fn vref_at(v: &Volume, at: &Placement) -> VolumeRef {
    VolumeRef {
        pool: at.pool.clone(),
        provider_location: at.provider_location.clone(),
        ..volume_ref(v)
    }
}

/// Every place a LUN of the volume may be: where it lives, and both sides
/// of its last migration; each once.
fn placements(v: &Volume) -> Vec<Placement> {
    let mut out = vec![Placement {
        array: v.array.clone(),
        pool: v.pool.clone(),
        provider_location: v.provider_location.clone(),
    }];
    if let Some(m) = v.migration.as_ref() {
        for p in [&m.source, &m.destination] {
            if !out.iter().any(|q| q.array == p.array && q.pool == p.pool) {
                out.push(p.clone());
            }
        }
    }
    out
}

/// The other places of the last migration: where the volume does not live.
fn elsewhere(v: &Volume) -> Vec<Placement> {
    placements(v).into_iter().skip(1).collect()
}

impl Service {
    /// Sets a volume's status by hand, stopping a migration that runs on
    /// it; see the module documentation for what it leaves where.
    pub async fn reset_status(
        &self,
        id: Uuid,
        req: ResetStatus,
    ) -> Result<ResetOutcome, ServiceError> {
        let target = settable(&req.status)?;
        let mreset = migration_reset(&req.migration_status)?;
        let volume = self.volume(id)?;
        check_fits(&volume, target)?;
        if mreset == MigrationReset::Error && volume.migration.is_none() {
            return Err(ServiceError::InconsistentStatus {
                id,
                status: "migration_status error".into(),
                reason: "the volume was never migrated".into(),
            });
        }
        // A LUN filling from the source is checked before anything
        // changes, so the usual refusal leaves the migration untouched. Not
        // during a copy-back: its runner holds the fill, and probing would
        // release that hold; the check after the stop covers it.
        let copying_back =
            unfinished(&volume).is_some_and(|m| m.phase == MigrationPhase::CopyingBack);
        if !req.discard_unhydrated && !copying_back {
            self.check_no_partial_fill(&volume)?;
        }

        let mut stopped = None;
        if let Some(m) = volume.migration.as_ref()
            && (m.phase != MigrationPhase::Finished || self.runner_alive(id))
        {
            let reason = format!(
                "reset to {} by an operator during phase {}; the data was left where it was",
                req.status,
                phase_name(m.phase)
            );
            // While hydrating, every change the runner makes is guarded by
            // the phase, so once the record says finished it changes
            // nothing more and need not be waited for. Elsewhere a step
            // under way would write over the reset: wait for the runner.
            let wait = m.phase != MigrationPhase::Hydrating;
            stopped = self.stop_migration(id, m.id, &reason, wait).await?;
        }

        match self.finish_reset(id, target, mreset, req.discard_unhydrated, stopped.as_ref()) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                if let Some(before) = &stopped {
                    self.resume_stopped(id, before);
                }
                Err(e)
            }
        }
    }

    /// The part of a reset after the migration stopped: settles a fill,
    /// writes the status, emits the events.
    fn finish_reset(
        &self,
        id: Uuid,
        target: VolumeStatus,
        mreset: MigrationReset,
        discard: bool,
        stopped: Option<&Migration>,
    ) -> Result<ResetOutcome, ServiceError> {
        // A step under way when the reset began may have moved the volume.
        let current = self.volume(id)?;
        check_fits(&current, target)?;
        let mut notes = Vec::new();
        if let Some(before) = stopped {
            notes.push(format!(
                "migration {} stopped during phase {}; the volume lives on {}/{}",
                before.id,
                phase_name(before.phase),
                current.array,
                current.pool
            ));
        }
        notes.extend(self.settle_fill(&current, discard)?);
        if stopped.is_some() {
            // Forgetting the migration forgets where those LUNs are too.
            let then = if mreset == MigrationReset::Forget {
                "the volume forgets the migration, so a delete no longer finds it"
            } else {
                "deleting the volume removes it"
            };
            for p in elsewhere(&current) {
                notes.push(format!(
                    "any LUN the migration made on {} is left in place; {then}",
                    place(&p)
                ));
            }
        }
        let from = current.status;
        let migration_before = current.migration.as_ref().map(|m| m.status);
        let updated = self
            .inner
            .store
            .update_volume(id, |v| {
                check_fits(v, target)?;
                v.status = target;
                match mreset {
                    MigrationReset::Keep => {}
                    MigrationReset::Error => {
                        if let Some(m) = v.migration.as_mut() {
                            if m.status != MigrationStatus::Error {
                                m.stop_by_operator("recorded as failed by an operator".into());
                            } else {
                                let reason = m.error.take().unwrap_or_default();
                                m.stop_by_operator(reason);
                            }
                            v.migration_status = Some(MigrationStatus::Error);
                        }
                    }
                    MigrationReset::Forget => {
                        v.migration = None;
                        v.migration_status = None;
                    }
                }
                Ok(())
            })
            .map_err(|e| from_update(id, e))?;
        if mreset == MigrationReset::Forget && current.migration.is_some() {
            notes.push("the volume forgot its last migration".into());
        }
        let reason = if notes.is_empty() {
            "reset by an operator".to_owned()
        } else {
            format!("reset by an operator: {}", notes.join("; "))
        };
        let migration_id = stopped.map(|m| m.id);
        if let Some(before) = stopped {
            self.inner.events.emit(NewEvent {
                kind: "migration",
                volume: Some(id),
                migration: Some(before.id),
                from: Some(migration_status_name(before.status)),
                to: migration_status_name(MigrationStatus::Error),
                reason: Some(reason.clone()),
            });
        } else if mreset == MigrationReset::Error
            && let Some(old) = migration_before.filter(|s| *s != MigrationStatus::Error)
        {
            self.inner.events.emit(NewEvent {
                kind: "migration",
                volume: Some(id),
                migration: current.migration.as_ref().map(|m| m.id),
                from: Some(migration_status_name(old)),
                to: migration_status_name(MigrationStatus::Error),
                reason: Some(reason.clone()),
            });
        }
        self.inner.events.emit(NewEvent {
            kind: "volume",
            volume: Some(id),
            migration: migration_id,
            from: Some(status_name(from)),
            to: status_name(updated.status),
            reason: Some(reason),
        });
        tracing::warn!(volume = %id, status = %status_name(updated.status), stopped = ?migration_id, "status reset by an operator");
        Ok(ResetOutcome {
            volume: self.view(&updated),
            stopped_migration: migration_id,
            notes,
        })
    }

    /// Refuses (changing nothing) when the volume's LUN still fills from
    /// its migration's source and is not complete.
    fn check_no_partial_fill(&self, v: &Volume) -> Result<(), ServiceError> {
        let Some((hid, h, source_array)) = self.hold_fill(v) else {
            return Ok(());
        };
        let (done, total) = h.progress();
        let complete = h.is_complete();
        self.inner.hydrations.release_copy_back(&hid);
        if complete {
            return Ok(());
        }
        Err(ServiceError::HydrationIncomplete {
            id: v.id,
            array: v.array.clone(),
            source_array,
            done,
            total,
        })
    }

    /// Holds the hydration filling the volume's LUN from its last
    /// migration's source, if one runs: its id, device and source array.
    /// The hold stops the fill from being finished under the caller.
    fn hold_fill(&self, v: &Volume) -> Option<(String, Arc<crate::hydrate::Hydration>, String)> {
        let m = v.migration.as_ref()?;
        let remote = m.remote.clone()?;
        // Only a volume living on the destination is served by the fill.
        if v.array != m.destination.array || v.pool != m.destination.pool {
            return None;
        }
        let remote = LunRef {
            array: m.source.array.clone(),
            lun: remote,
        };
        let (hid, h) = self.inner.hydrations.copy_back(&remote).ok()?;
        Some((hid, h, m.source.array.clone()))
    }

    /// Ends the fill of a volume whose migration stopped: a complete one
    /// is finished (the LUN stands alone), an incomplete one is abandoned
    /// when `discard`, else refused. Exports then serve the plain LUN.
    fn settle_fill(&self, v: &Volume, discard: bool) -> Result<Option<String>, ServiceError> {
        let Some((hid, h, source_array)) = self.hold_fill(v) else {
            return Ok(None);
        };
        let (done, total) = h.progress();
        let note = if h.is_complete() {
            self.inner.hydrations.release_copy_back(&hid);
            self.inner.hydrations.finish(&hid).map_err(|e| {
                ServiceError::Internal(format!("cannot end the fill of {hid}: {e}"))
            })?;
            format!(
                "all {total} bytes had arrived on {} from {source_array}; the fill was ended",
                v.array
            )
        } else if discard {
            self.inner.hydrations.abandon(&hid).map_err(|e| {
                ServiceError::Internal(format!("cannot stop the fill of {hid}: {e}"))
            })?;
            format!(
                "{} of {total} bytes had not arrived on {} from {source_array}; they were \
                 discarded and read as zeros",
                total - done.min(total),
                v.array
            )
        } else {
            self.inner.hydrations.release_copy_back(&hid);
            return Err(ServiceError::HydrationIncomplete {
                id: v.id,
                array: v.array.clone(),
                source_array,
                done,
                total,
            });
        };
        drop(h);
        self.serve_attachments_from(v, &v.array);
        Ok(Some(note))
    }

    fn runner_alive(&self, id: Uuid) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
    }

    fn raise_cancel(&self, id: Uuid) {
        if let Some(r) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            r.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Stops migration `mid` of volume `id`: records it finished with
    /// `reason` as its error, so the runner returns when it next reads the
    /// record. With `wait`, also raises the runner's cancel flag (a host
    /// copy stops at its next chunk) and waits until the runner left,
    /// recording the stop again whenever a step that was under way wrote
    /// over it. Returns the migration as it was when last stopped, or None
    /// if it had ended by itself.
    async fn stop_migration(
        &self,
        id: Uuid,
        mid: Uuid,
        reason: &str,
        wait: bool,
    ) -> Result<Option<Migration>, ServiceError> {
        let deadline = Instant::now() + STOP_WAIT;
        let mut before = None;
        loop {
            if let Some(m) = self.mark_stopped(id, mid, reason)? {
                before = Some(m);
            }
            if !wait || !self.runner_alive(id) {
                return Ok(before);
            }
            self.raise_cancel(id);
            if Instant::now() >= deadline {
                return Err(ServiceError::MigrationStopping(id));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    /// Records migration `mid` finished with error `reason` unless it is
    /// finished already; returns it as it was before.
    fn mark_stopped(
        &self,
        id: Uuid,
        mid: Uuid,
        reason: &str,
    ) -> Result<Option<Migration>, ServiceError> {
        let mut prior = None;
        self.inner
            .store
            .update_volume(id, |v| {
                if let Some(m) = v
                    .migration
                    .as_mut()
                    .filter(|m| m.id == mid && m.phase != MigrationPhase::Finished)
                {
                    prior = Some(m.clone());
                    m.stop_by_operator(reason.to_owned());
                    v.migration_status = Some(MigrationStatus::Error);
                }
                Ok::<(), ServiceError>(())
            })
            .map_err(|e| from_update(id, e))?;
        Ok(prior)
    }

    /// Puts back a migration a refused reset had stopped and lets it run on.
    fn resume_stopped(&self, id: Uuid, before: &Migration) {
        let restored = self.inner.store.update_volume(id, |v| {
            if let Some(m) = v
                .migration
                .as_mut()
                .filter(|m| m.id == before.id && m.phase == MigrationPhase::Finished)
            {
                // The record as it was before the refused reset stopped it:
                // a restore, not a move of the machine.
                *m = before.clone();
                v.migration_status = Some(before.status);
            }
            Ok::<(), ServiceError>(())
        });
        match restored {
            Ok(_) => self.spawn_migration(id),
            Err(e) => {
                tracing::error!(volume = %id, error = ?e, "cannot resume a migration after a refused reset")
            }
        }
    }

    /// Removes a volume in any state; see the module documentation.
    pub async fn force_delete(&self, id: Uuid) -> Result<ForceDeleted, ServiceError> {
        let first = self.volume(id)?;
        // Deleting at once: attach, migrate and reset are refused from here.
        let marked = self
            .inner
            .store
            .update_volume(id, |v| {
                v.status = VolumeStatus::Deleting;
                Ok::<(), ServiceError>(())
            })
            .map_err(|e| from_update(id, e))?;
        self.inner.events.emit(NewEvent {
            kind: "volume",
            volume: Some(id),
            migration: unfinished(&marked).map(|m| m.id),
            from: Some(status_name(first.status)),
            to: status_name(VolumeStatus::Deleting),
            reason: Some("forced delete requested by an operator".into()),
        });
        let mut warnings = Vec::new();
        let mut stopped = None;
        if let Some(m) = marked.migration.as_ref()
            && (m.phase != MigrationPhase::Finished || self.runner_alive(id))
        {
            let reason = format!(
                "the volume was force-deleted by an operator during phase {}",
                phase_name(m.phase)
            );
            match self.stop_migration(id, m.id, &reason, true).await {
                Ok(before) => stopped = before,
                // Going on is safe: once the record is gone the runner's
                // next write fails and it returns.
                Err(ServiceError::MigrationStopping(_)) => warnings.push(
                    "the migration was still inside a step when the volume was removed; a LUN \
                     it makes after this is left behind"
                        .to_owned(),
                ),
                Err(e) => return Err(e),
            }
            if let Some(before) = &stopped {
                self.inner.events.emit(NewEvent {
                    kind: "migration",
                    volume: Some(id),
                    migration: Some(before.id),
                    from: Some(migration_status_name(before.status)),
                    to: migration_status_name(MigrationStatus::Error),
                    reason: Some(reason),
                });
            }
        }
        // Where the volume is now (a step under way may have moved it);
        // a rollback that ended meanwhile may have set its status back.
        let current = self
            .inner
            .store
            .update_volume(id, |v| {
                v.status = VolumeStatus::Deleting;
                Ok::<(), ServiceError>(())
            })
            .map_err(|e| from_update(id, e))?;
        for a in &current.attachments {
            // Flushes the device, then closes every connection to it.
            self.inner.exports.remove(&a.export_name());
            if let Err(e) = self.end_connection(&current, &a.server).await {
                warnings.push(format!(
                    "the driver of {} did not end the connection of {}: {e}",
                    current.array, a.server
                ));
            }
            self.inner.events.emit_attachment(
                NewEvent {
                    kind: "volume",
                    volume: Some(id),
                    migration: None,
                    from: Some(status_name(VolumeStatus::Deleting)),
                    to: status_name(VolumeStatus::Deleting),
                    reason: Some(format!(
                        "export to server {} withdrawn by a forced delete",
                        a.server
                    )),
                },
                a.id,
                &a.server,
            );
        }
        warnings.extend(self.abandon_fills(&current));
        let mut deleted_on = Vec::new();
        for p in placements(&current) {
            match self.delete_lun_at(&current, &p).await {
                Ok(()) => deleted_on.push(place(&p)),
                Err(e) => warnings.push(format!(
                    "the LUN on {} could not be deleted and is left behind: {e}",
                    place(&p)
                )),
            }
        }
        self.inner.store.delete_volume(id)?;
        let mut reason = format!(
            "force-deleted by an operator; storage deleted on {}",
            if deleted_on.is_empty() {
                "no array".to_owned()
            } else {
                deleted_on.join(", ")
            }
        );
        if !warnings.is_empty() {
            reason.push_str("; warnings: ");
            reason.push_str(&warnings.join("; "));
        }
        self.inner.events.emit(NewEvent {
            kind: "volume",
            volume: Some(id),
            migration: stopped.as_ref().map(|m| m.id),
            from: Some(status_name(VolumeStatus::Deleting)),
            to: "deleted".into(),
            reason: Some(reason),
        });
        tracing::warn!(volume = %id, ?deleted_on, ?warnings, "volume force-deleted");
        Ok(ForceDeleted {
            volume_id: id,
            stopped_migration: stopped.map(|m| m.id),
            deleted_on,
            warnings,
        })
    }

    /// Stops and forgets every hydration filling a LUN of the volume: the
    /// one its last migration started, and any behind an attachment.
    fn abandon_fills(&self, v: &Volume) -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(m) = v.migration.as_ref()
            && let Some(remote) = m.remote.clone()
        {
            let remote = LunRef {
                array: m.source.array.clone(),
                lun: remote,
            };
            if let Ok((hid, _)) = self.inner.hydrations.copy_back(&remote) {
                ids.push(hid);
            }
        }
        for a in &v.attachments {
            if let Some(lun) = a.lun.lun()
                && self.inner.hydrations.device(&v.array, lun).is_some()
            {
                let hid = LunRef {
                    array: v.array.clone(),
                    lun: lun.clone(),
                }
                .id();
                if !ids.contains(&hid) {
                    ids.push(hid);
                }
            }
        }
        let mut warnings = Vec::new();
        for hid in ids {
            if let Err(e) = self.inner.hydrations.abandon(&hid) {
                warnings.push(format!("the fill {hid} could not be stopped: {e}"));
            }
        }
        warnings
    }

    /// Asks the driver of `at` to delete its LUN of the volume (idempotent
    /// by the driver contract).
    pub(super) async fn delete_lun_at(
        &self,
        v: &Volume,
        at: &Placement,
    ) -> Result<(), ServiceError> {
        let array = self.array(&at.array)?.clone();
        let scope = self.scope(&array)?;
        let vref = vref_at(v, at);
        self.call(array.driver(), move |rt| rt.delete_volume(&scope, &vref))
            .await
    }

    /// Tells the driver where the volume lives that `server` is gone.
    async fn end_connection(&self, v: &Volume, server: &str) -> Result<(), ServiceError> {
        let array = self.array(&v.array)?.clone();
        let scope = self.scope(&array)?;
        let vref = volume_ref(v);
        let connector = Connector::Server(server.to_owned());
        self.call(array.driver(), move |rt| {
            rt.terminate_connection(&scope, &vref, &connector)
        })
        .await
    }
}

fn migration_status_name(s: MigrationStatus) -> String {
    super::views::wire_name(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resting_statuses_can_be_set() {
        assert_eq!(settable("available").unwrap(), VolumeStatus::Available);
        assert_eq!(settable("in-use").unwrap(), VolumeStatus::InUse);
        assert_eq!(settable("error").unwrap(), VolumeStatus::Error);
        for bad in [
            "migrating",
            "creating",
            "deleting",
            "in_use",
            "",
            "AVAILABLE",
        ] {
            let e = settable(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_status", "{bad:?}");
        }
        let long = "x".repeat(1000);
        let e = settable(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn migration_status_is_absent_error_or_null() {
        assert_eq!(migration_reset(&None).unwrap(), MigrationReset::Keep);
        assert_eq!(
            migration_reset(&Some(None)).unwrap(),
            MigrationReset::Forget
        );
        assert_eq!(
            migration_reset(&Some(Some("error".into()))).unwrap(),
            MigrationReset::Error
        );
        let e = migration_reset(&Some(Some("success".into()))).unwrap_err();
        assert_eq!(e.code(), "invalid_status");
    }

    #[test]
    fn absent_and_null_migration_status_differ_on_the_wire() {
        let r: ResetStatus = serde_json::from_str(r#"{"status":"error"}"#).unwrap();
        assert_eq!(r.migration_status, None);
        let r: ResetStatus =
            serde_json::from_str(r#"{"status":"error","migration_status":null}"#).unwrap();
        assert_eq!(r.migration_status, Some(None));
        let r: ResetStatus =
            serde_json::from_str(r#"{"status":"error","migration_status":"error"}"#).unwrap();
        assert_eq!(r.migration_status, Some(Some("error".into())));
        assert!(serde_json::from_str::<ResetStatus>(r#"{"status":"error","force":1}"#).is_err());
    }
}
