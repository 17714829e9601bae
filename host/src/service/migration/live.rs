//! The host's live move of an attached volume: the destination becomes the
//! served device at once and fills from the source in the background (a
//! host-driven hydration), so there is nothing to converge and the switch
//! is one short pause of the volume's exports. A mirror with write fan-out
//! would need a dirty bitmap, passes until it converges and a drained
//! pivot under writes that may never let it converge; a hydration needs
//! the pause once.
//!
//! The switch, while every export of the volume is held still (requests
//! in flight ended, new ones waiting, connections open): the hydration
//! starts from that quiet source, the store records the volume and its
//! attachments on the destination, and only then do the exports serve the
//! hydrating device. Writes acknowledged before the switch but not flushed
//! are in the source's cache; the first FLUSH after the switch syncs the
//! source too, so the hold never waits for a sync of the cache.
//! A crash before the record leaves everything on the source; after it,
//! the hydration resumes from its bitmap and the exports come back on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::failure::{Backoff, Failure, StepError};
use super::run::{HOST_COPY_CONNECTOR, POLL_INTERVAL, vref_at};
use crate::array::Lun;
use crate::block::BlockDevice;
use crate::hydrate::{HydrationError, LunRef};
use crate::model::{DataPath, Migration, MigrationEnd, MigrationPath, MigrationPhase, Volume};
use crate::nbd::Paused;
use crate::runtime::Connector;
use crate::service::events::NewEvent;
use crate::service::{Service, ServiceError};

/// How long the switch waits for the volume's requests in flight to end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a driver moved a held volume.
pub(super) struct DriverMove {
    pub reason: &'static str,
    pub path: MigrationPath,
    pub update: Option<String>,
    /// The source LUN an async move hydrates from.
    pub remote: Option<crate::model::LunAddress>,
    pub next: AfterSwitch,
}

/// Where the migration goes once the attachments switched.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterSwitch {
    /// On to this phase.
    Enter(MigrationPhase),
    /// Done: the driver's move left nothing to clean up. `warning` is kept
    /// with the migration.
    Succeed { warning: Option<String> },
}

/// What the switch found ready before it holds the exports.
struct SwitchPlan {
    /// The hidden destination LUN, to hydrate.
    local: Arc<Lun>,
    /// The source LUN it fills from.
    remote: Arc<Lun>,
    /// Each attachment's export name.
    exports: Vec<(Uuid, String)>,
}

impl Service {
    /// The host's live move, once the destination exists: switch every
    /// attachment to it, hydrating.
    pub(super) async fn step_live_switch(
        &self,
        v: &Volume,
        m: &Migration,
    ) -> Result<(), StepError> {
        let plan = self.plan_switch(v, m).await?;
        // Known before anything is written to it, so that a rollback finds
        // the hydration to stop whenever it comes.
        let local = plan.local.address().clone();
        self.record(v.id, None, |_, m| {
            m.hydrating = Some(local);
            Ok(())
        })?;
        let (service, id) = (self.clone(), v.id);
        let switched = tokio::task::spawn_blocking(move || service.switch_live(id, plan))
            .await
            .map_err(|e| {
                StepError::Host(ServiceError::Internal(format!("switch task failed: {e}")))
            })??;
        self.release_source_attachments(&switched, m).await;
        Ok(())
    }

    /// One `switched` event per attachment of `volume`, which now serves
    /// from its destination.
    fn announce_switch(&self, volume: &Volume) {
        let dest = &volume.array;
        for a in &volume.attachments {
            tracing::info!(volume = %volume.id, attachment = %a.id, server = %a.server, array = %dest, "attachment switched");
            self.inner.events.emit_attachment(
                NewEvent {
                    kind: "migration",
                    volume: Some(volume.id),
                    migration: volume.migration.as_ref().map(|m| m.id),
                    from: volume.migration.as_ref().map(|m| m.source.array.clone()),
                    to: "switched".into(),
                    reason: Some(format!(
                        "the attachment's NBD export serves from array {dest} now; its \
                         connections stayed open"
                    )),
                },
                a.id,
                &a.server,
            );
        }
    }

    /// The source no longer serves the switched attachments.
    async fn release_source_attachments(&self, volume: &Volume, m: &Migration) {
        for a in &volume.attachments {
            self.terminate_at(volume, &m.source, Connector::Server(a.server.clone()))
                .await;
        }
    }

    /// An attached volume on the target driver's path, before its call:
    /// whatever an interrupted earlier call left filling the destination
    /// from this source (which the clients have written since) is removed,
    /// the source is synced, and the exports are held still until the
    /// call has answered, so the take-over sees a quiet source.
    pub(super) async fn hold_for_target(
        &self,
        v: &Volume,
        m: &Migration,
        remote: &Arc<Lun>,
    ) -> Result<Paused, StepError> {
        self.record(v.id, None, |_, m| {
            m.taken_over_attached = true;
            Ok(())
        })?;
        self.discard_stale_fill(v, m, remote).await?;
        remote
            .flush()
            .map_err(|e| Failure::unreachable("the source cannot be flushed", e))?;
        self.hold_exports(v).await
    }

    /// Holds every export of `v` still: requests in flight end, new ones
    /// wait, connections stay open.
    pub(super) async fn hold_exports(&self, v: &Volume) -> Result<Paused, StepError> {
        let names: Vec<String> = v.attachments.iter().map(|a| a.export_name()).collect();
        let exports = self.inner.exports.clone();
        tokio::task::spawn_blocking(move || exports.pause(&names, DRAIN_TIMEOUT))
            .await
            .map_err(|e| StepError::Host(ServiceError::Internal(format!("hold task failed: {e}"))))?
            .map_err(|e| Failure::unreachable("the volume's exports", e).into())
    }

    /// Removes what an earlier take-over call left filling the destination
    /// from `remote` while clients wrote to it: its fetched regions are
    /// stale.
    pub(super) async fn discard_stale_fill(
        &self,
        v: &Volume,
        m: &Migration,
        remote: &Arc<Lun>,
    ) -> Result<(), StepError> {
        let fed = LunRef::of(remote);
        if self.inner.hydrations.fed_by(&fed).is_some() {
            self.discard_destination(v, m).await?;
            if let Some(hid) = self.inner.hydrations.fed_by(&fed) {
                self.inner
                    .hydrations
                    .abandon(&hid)
                    .map_err(|e| Failure::unreachable("the earlier hydration", e))?;
            }
        }
        Ok(())
    }

    /// A driver moved a held, attached volume: every attachment switches
    /// to the destination LUN the target driver names for its server (its
    /// hydration when the move is async), recorded before the exports serve
    /// it. An export missing from the hold (not restored after a crash,
    /// its source LUN being gone) is served afresh.
    pub(super) async fn switch_after_move(
        &self,
        v: &Volume,
        m: &Migration,
        paused: Paused,
        moved: DriverMove,
    ) -> Result<(), StepError> {
        let mut at = m.destination.clone();
        at.provider_location = moved.update.clone();
        let luns = self.attachment_luns(v, &at).await?;
        let dest = self.array(&m.destination.array)?.clone();
        let mut devices: HashMap<Uuid, Arc<dyn BlockDevice>> = HashMap::new();
        for (a, lun) in &luns {
            let device: Arc<dyn BlockDevice> = match self.inner.hydrations.device(dest.name(), lun)
            {
                Some(h) => {
                    // Writes acknowledged before the switch may be unsynced
                    // in the source the hydration reads from.
                    h.remote_may_be_unsynced();
                    h
                }
                // An async move must serve what it fills: a LUN it does not
                // fill would show clients regions not yet there.
                None if moved.next == AfterSwitch::Enter(MigrationPhase::Hydrating) => {
                    return Err(Failure::unreachable(
                        "the destination",
                        format!(
                            "the target driver exposes LUN {}/{} to an attachment's server, \
                             which is not a LUN it fills",
                            lun.pool, lun.name
                        ),
                    )
                    .into());
                }
                None => Arc::new(
                    dest.open_lun(lun)
                        .map_err(|e| Failure::unreachable("the destination LUN", e))?,
                ),
            };
            devices.insert(*a, device);
        }
        let volume = self.record(v.id, Some(moved.reason.to_owned()), |v, m| {
            for a in v.attachments.iter_mut() {
                let Some(lun) = luns.get(&a.id) else {
                    return Err(ServiceError::Internal(format!(
                        "attachment {} was made during the switch",
                        a.id
                    )));
                };
                a.lun = DataPath::Lun(lun.clone());
            }
            m.path = Some(moved.path);
            m.destination.provider_location = moved.update;
            m.remote = moved.remote;
            m.switched = v.attachments.iter().map(|a| a.id).collect();
            let at = m.destination.clone();
            v.place(&at);
            match moved.next {
                AfterSwitch::Enter(phase) => Ok(m.enter(phase)?),
                AfterSwitch::Succeed { warning } => {
                    if let Some(w) = warning {
                        m.warn(w);
                    }
                    m.finish(MigrationEnd::Success)?;
                    v.settle_after_migration(m.original_status);
                    Ok(())
                }
            }
        })?;
        let mut missing = Vec::new();
        for a in &volume.attachments {
            if let Some(d) = devices.get(&a.id)
                && !paused.switch(&a.export_name(), d.clone())
            {
                missing.push((a, d.clone()));
            }
        }
        let held = paused.held_for();
        drop(paused);
        tracing::info!(
            volume = %v.id,
            held_ms = held.as_millis() as u64,
            path = ?volume.migration.as_ref().and_then(|m| m.path),
            "the volume's exports were held for the driver's move"
        );
        for (a, device) in missing {
            tracing::info!(volume = %v.id, attachment = %a.id, "serving an attachment that had no export from the destination");
            self.inner.exports.add(
                &a.export_name(),
                crate::nbd::Export {
                    device,
                    read_only: a.mode == crate::model::AttachMode::Ro,
                },
            );
        }
        self.announce_switch(&volume);
        self.release_source_attachments(&volume, m).await;
        Ok(())
    }

    /// Opens both LUNs through their drivers and checks that every
    /// attachment is to be served from the one destination LUN.
    async fn plan_switch(&self, v: &Volume, m: &Migration) -> Result<SwitchPlan, StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let open = |array: &Arc<crate::array::Array>, at, what: &'static str| {
            let (array, scope) = (array.clone(), self.scope(array));
            let vref = vref_at(v, at);
            async move {
                let scope = scope?;
                let c = Connector::Server(HOST_COPY_CONNECTOR.into());
                let info = self
                    .call(array.driver(), move |rt| {
                        rt.initialize_connection(&scope, &vref, &c)
                    })
                    .await
                    .map_err(|e| Failure::unreachable(what, e))?;
                let lun = info
                    .host_lun()
                    .map_err(|e| Failure::unreachable(what, e))
                    .and_then(|l| array.open_lun(l).map_err(|e| Failure::unreachable(what, e)))
                    .map_err(|e| Failure::unreachable(what, e))?;
                Ok::<_, StepError>(Arc::new(lun))
            }
        };
        let remote = open(&src, &m.source, "source LUN unavailable").await?;
        let local = open(&dest, &m.destination, "destination LUN unavailable").await?;
        let luns = self.attachment_luns(v, &m.destination).await?;
        let mut exports = Vec::new();
        for a in &v.attachments {
            let Some(lun) = luns.get(&a.id) else {
                continue;
            };
            if lun != local.address() {
                return Err(Failure::unreachable(
                    "the destination driver",
                    format!(
                        "it exposes the volume to server {} as LUN {}/{}, not as the LUN {}/{} \
                         the host fills; a live move serves every attachment from one LUN",
                        a.server,
                        lun.pool,
                        lun.name,
                        local.address().pool,
                        local.address().name
                    ),
                )
                .into());
            }
            exports.push((a.id, a.export_name()));
        }
        Ok(SwitchPlan {
            local,
            remote,
            exports,
        })
    }

    /// The switch itself, blocking: hold the exports, flush the source,
    /// start the hydration, record, serve it, let the exports go. The
    /// exports are held for the flush, the hydration's start (a snapshot
    /// of the source's allocation) and one store transaction.
    fn switch_live(&self, id: Uuid, plan: SwitchPlan) -> Result<Volume, StepError> {
        let names: Vec<String> = plan.exports.iter().map(|(_, n)| n.clone()).collect();
        let hydrations = &self.inner.hydrations;
        let hid = LunRef::of(&plan.local).id();
        // A hydration left by an earlier try (a crash before its record)
        // filled from a source that has changed since: start afresh, on a
        // destination emptied of what it wrote.
        hydrations
            .abandon(&hid)
            .map_err(|e| Failure::unreachable("the earlier hydration", e))?;
        plan.local
            .discard(0, plan.local.size())
            .map_err(|e| Failure::unreachable("the destination LUN cannot be emptied", e))?;
        // Most of the source's unwritten cache goes to disk while the
        // clients still run, so the flush under the hold has little left.
        plan.remote
            .flush()
            .map_err(|e| Failure::unreachable("the source cannot be flushed", e))?;
        let held = Instant::now();
        let paused = self
            .inner
            .exports
            .pause(&names, DRAIN_TIMEOUT)
            .map_err(|e| Failure::unreachable("the volume's exports", e))?;
        let drained = held.elapsed();
        hydrations
            .start(plan.local.clone(), plan.remote.clone())
            .map_err(|e| Failure::unreachable("the hydration cannot start", e))?;
        let Some(device) = hydrations.device(plan.local.array(), plan.local.address()) else {
            let _ = hydrations.abandon(&hid);
            return Err(Failure::unreachable("the hydration", "it stopped at once").into());
        };
        // Writes acknowledged before the switch but not yet flushed stay in
        // the source's cache: the first FLUSH after the switch syncs the
        // source as well, so the hold need not wait for a sync.
        device.remote_may_be_unsynced();
        let started = held.elapsed();
        let planned: HashSet<Uuid> = plan.exports.iter().map(|(a, _)| *a).collect();
        let (local, remote) = (plan.local.address().clone(), plan.remote.address().clone());
        let size = plan.local.size();
        let recorded = self.record(
            id,
            Some("the attachments switched to the destination, which fills from the source".into()),
            |v, m| {
                if m.phase != MigrationPhase::HostCopyPrepare {
                    return Err(ServiceError::Internal(
                        "the migration left the switch's phase".into(),
                    ));
                }
                for a in v.attachments.iter_mut() {
                    if !planned.contains(&a.id) {
                        return Err(ServiceError::Internal(format!(
                            "attachment {} was made during the switch",
                            a.id
                        )));
                    }
                    a.lun = DataPath::Lun(local.clone());
                }
                m.path = Some(MigrationPath::HostLive);
                m.remote = Some(remote);
                m.hydrating = Some(local.clone());
                m.switched = v.attachments.iter().map(|a| a.id).collect();
                m.start_copy(size);
                m.error = None;
                let at = m.destination.clone();
                v.place(&at);
                Ok(m.enter(MigrationPhase::Hydrating)?)
            },
        );
        let volume = match recorded {
            Ok(v) => v,
            Err(e) => {
                // Nothing points at the destination: the exports go on
                // serving the source when `paused` goes.
                let _ = hydrations.abandon(&hid);
                return Err(StepError::Host(e));
            }
        };
        for a in &volume.attachments {
            paused.switch(&a.export_name(), device.clone() as Arc<dyn BlockDevice>);
        }
        drop(paused);
        let released = held.elapsed();
        tracing::info!(
            volume = %id,
            drained_ms = drained.as_millis() as u64,
            started_ms = started.as_millis() as u64,
            held_ms = released.as_millis() as u64,
            "the volume's exports were held for the switch"
        );
        self.announce_switch(&volume);
        Ok(volume)
    }

    /// Hydrating on the host's live path: the host's own hydration is
    /// polled; once whole it ends and the attachments serve the plain
    /// destination LUN.
    pub(super) async fn step_live_hydrating(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
    ) -> Result<(), StepError> {
        let Some(local) = m.hydrating.clone() else {
            return Err(Failure::unreachable(
                "the hydration",
                "the migration lost the destination LUN's address",
            )
            .into());
        };
        let hid = LunRef {
            array: m.destination.array.clone(),
            lun: local,
        }
        .id();
        let hydrations = &self.inner.hydrations;
        let polled = match hydrations.status(&hid) {
            Ok(s) => {
                self.set_live_progress(v.id, s.done_bytes, s.total_bytes);
                if s.complete {
                    // The finish writes back and syncs the whole LUN:
                    // seconds under load, off the runtime's threads.
                    let hydrations = hydrations.clone();
                    tokio::task::spawn_blocking(move || hydrations.finish(&hid))
                        .await
                        .map_err(|e| HydrationError::Io(std::io::Error::other(e)))
                        .and_then(|r| r)
                        .map(|()| true)
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(e),
        };
        match polled {
            Ok(true) => {
                retry.reset();
                self.filled(v)
            }
            Ok(false) => {
                if m.error.is_some() {
                    retry.reset();
                    self.record(v.id, Some("the hydration goes on again".into()), |_, m| {
                        if m.phase == MigrationPhase::Hydrating {
                            m.error = None;
                            m.attempts = 0;
                        }
                        Ok(())
                    })?;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
                Ok(())
            }
            Err(e) => {
                let pause = retry.fail();
                let attempts = retry.attempts();
                let text = format!(
                    "the hydration failed (attempt {attempts}, next try in {} ms), retrying: {e}",
                    pause.as_millis()
                );
                tracing::warn!(volume = %v.id, "{text}");
                self.record_retry(v.id, MigrationPhase::Hydrating, text, attempts)?;
                tokio::time::sleep(pause).await;
                Ok(())
            }
        }
    }

    /// Stops and forgets the host's hydration of a live move that is being
    /// undone (its destination LUN is about to be deleted).
    pub(super) fn abandon_live_hydration(&self, m: &Migration) {
        let Some(local) = m.hydrating.clone() else {
            return;
        };
        let hid = LunRef {
            array: m.destination.array.clone(),
            lun: local,
        }
        .id();
        if let Err(e) = self.inner.hydrations.abandon(&hid) {
            tracing::warn!(hydration = %hid, error = %e, "cannot forget the live move's hydration");
        }
    }
}
