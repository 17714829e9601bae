//! The drivers' own moves, seed 000's first two paths: the source driver's
//! `migrate-volume`, then the target driver's take-over and
//! `migrate-volume-target`. Each driver is held to the capabilities it
//! declared when it was loaded; an abort reaches a call in flight through
//! its host functions; and a call that does not answer is repeated before
//! the runner decides anything.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::failure::{Failure, StepError, declined};
use super::live::{AfterSwitch, DriverMove};
use super::run::{Called, vref_at};
use crate::array::Array;
use crate::model::{Migration, MigrationEnd, MigrationPath, MigrationPhase, Volume};
use crate::runtime::{Capabilities, Connector, Destination, Source};
use crate::service::{Service, ServiceError};

/// The target side's calls of one step, as errors name them.
const TARGET_CALLS: &str = "take-over-remote-lun or migrate-volume-target";

impl Service {
    /// What the active version of `array`'s driver declared.
    fn declared(&self, array: &Array) -> Result<Capabilities, ServiceError> {
        self.inner
            .runtime
            .active_capabilities(array.driver())
            .ok_or_else(|| ServiceError::DriverNotLoaded(array.driver().to_owned()))
    }

    /// Admitted: choose the first path to try.
    pub(super) fn step_admitted(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        if m.force_host_copy {
            self.record(v.id, Some("host copy forced".into()), |_, m| {
                Ok(m.enter(MigrationPhase::HostCopyPrepare)?)
            })?;
            return Ok(());
        }
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let attached = !v.attachments.is_empty();
        let declared = self.declared(&src)?;
        let because = match (declared.source_migration, attached) {
            (true, false) => Some("asking the source driver"),
            (true, true) if declared.live_move => Some(
                "asking the source driver, which moves a volume live: the volume's I/O is \
                 held still for its call",
            ),
            _ => None,
        };
        if let Some(why) = because {
            self.record(v.id, Some(why.into()), |_, m| {
                Ok(m.enter(MigrationPhase::SourceDriver)?)
            })?;
            return Ok(());
        }
        let because = if declared.source_migration {
            // A 0.1.0 driver never declares it: nothing in that contract
            // says a move is safe under open connections.
            "the volume is attached and the source driver does not declare live-move; \
             its move is skipped"
        } else {
            "the source driver does not declare source-migration"
        };
        let (next, why) = self.after_source(&src, &dest, because)?;
        let why = if attached && next == MigrationPhase::HostCopyPrepare {
            format!("{why}: the host moves the attached volume live")
        } else {
            why
        };
        self.record(v.id, Some(why), |_, m| Ok(m.enter(next)?))?;
        Ok(())
    }

    /// The path after the source driver: the target's take-over when the
    /// arrays are zoned and the target declares it, else a host copy.
    fn after_source(
        &self,
        src: &Array,
        dest: &Array,
        because: &str,
    ) -> Result<(MigrationPhase, String), ServiceError> {
        let zoned = self.inner.arrays.zoned(src.name(), dest.name());
        let takes_over = zoned && self.declared(dest)?.take_over;
        Ok(if takes_over {
            (
                MigrationPhase::TargetDriver,
                format!("{because}; the target array takes over the LUN"),
            )
        } else if zoned {
            (
                MigrationPhase::HostCopyPrepare,
                format!("{because} and the target driver does not declare take-over; host copy"),
            )
        } else {
            (
                MigrationPhase::HostCopyPrepare,
                format!("{because} and the arrays are not zoned; host copy"),
            )
        })
    }

    /// Path 1: the source driver's `migrate-volume`.
    pub(super) async fn step_source_driver(
        &self,
        v: &Volume,
        m: &Migration,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let scope = self.progress_scope(&src, v.id, v.size_bytes, Some(cancel.clone()))?;
        let peer = (dest.driver() == src.driver()).then(|| dest.clone());
        let destination = Destination {
            array: m.destination.array.clone(),
            pool: m.destination.pool.clone(),
            driver: dest.driver().to_owned(),
        };
        let vref = vref_at(v, &m.source);
        // Attached (only a driver that declares live-move gets here): the
        // exports are held through the call and switch as it answers.
        let hold = if v.attachments.is_empty() {
            None
        } else {
            Some(self.hold_exports(v).await?)
        };
        let called = self
            .call_step(src.driver(), move |rt| {
                rt.migrate_volume(&scope, &vref, &destination, peer.clone())
            })
            .await?;
        // The abort may have come while the driver ran.
        let aborted = self.abort_asked(v.id)?;
        if let Some(paused) = hold {
            match &called {
                Called::Answered(o) if o.moved => {
                    // The source LUN is gone: the clients can only go on on
                    // the destination, so a late abort cannot copy back
                    // under them.
                    let warning = aborted.then(|| {
                        "the abort came as the source driver finished moving the attached \
                         volume; it stays on the destination (migrate it back to undo)"
                            .to_owned()
                    });
                    let moved = DriverMove {
                        reason: "the source driver moved the volume live; the attachments \
                                 switched to it",
                        path: MigrationPath::SourceDriver,
                        update: o.model_update.clone(),
                        remote: None,
                        next: AfterSwitch::Succeed { warning },
                    };
                    return self.switch_after_move(v, m, paused, moved).await;
                }
                // Nothing switches: the exports go on serving the source.
                _ => drop(paused),
            }
        }
        match called {
            // The move is done and the source LUN is gone: the abort is
            // honoured by bringing the volume back, never ignored.
            Called::Answered(o) if o.moved && aborted => self.switched(
                v.id,
                "the source driver finished its move as the abort came; bringing the volume back",
                MigrationPath::SourceDriver,
                o.model_update,
                |_, m| Ok(m.enter(MigrationPhase::ReturnPrepare)?),
            ),
            Called::Answered(o) if o.moved => self.switched(
                v.id,
                "the source driver moved the volume",
                MigrationPath::SourceDriver,
                o.model_update,
                |v, m| {
                    m.finish(MigrationEnd::Success)?;
                    v.settle_after_migration(m.original_status);
                    Ok(())
                },
            ),
            Called::Answered(_) if aborted => self.roll_back_for_abort(v.id),
            Called::Refused(e) if aborted => {
                tracing::info!(volume = %v.id, error = %e, "the source driver stopped for the abort");
                self.roll_back_for_abort(v.id)
            }
            Called::Answered(_) => {
                self.next_after_source(v, &src, &dest, "the source driver declined")
            }
            Called::Refused(e) if declined(&e) => {
                self.next_after_source(v, &src, &dest, &format!("the source driver declined ({e})"))
            }
            Called::Refused(e) => {
                Err(Failure::driver("source", src.driver(), "migrate-volume", e).into())
            }
            Called::Unanswered { attempts, last } => {
                Err(
                    Failure::unanswered("source", src.driver(), "migrate-volume", attempts, last)
                        .into(),
                )
            }
        }
    }

    /// Whether an operator asked to abort (it may have come while a driver
    /// call ran).
    fn abort_asked(&self, id: uuid::Uuid) -> Result<bool, ServiceError> {
        Ok(self
            .volume(id)?
            .migration
            .is_some_and(|m| m.abort_requested))
    }

    /// Records that a driver moved the volume by `path`: the volume now
    /// lives on the destination, with the driver's model update there;
    /// `then` says where the migration goes next.
    fn switched(
        &self,
        id: uuid::Uuid,
        reason: &str,
        path: MigrationPath,
        update: Option<String>,
        then: impl FnOnce(&mut Volume, &mut Migration) -> Result<(), ServiceError>,
    ) -> Result<(), StepError> {
        self.record(id, Some(reason.to_owned()), |v, m| {
            m.path = Some(path);
            m.destination.provider_location = update;
            let at = m.destination.clone();
            v.place(&at);
            then(v, m)
        })?;
        Ok(())
    }

    fn next_after_source(
        &self,
        v: &Volume,
        src: &Array,
        dest: &Array,
        because: &str,
    ) -> Result<(), StepError> {
        let (next, why) = self.after_source(src, dest, because)?;
        tracing::info!(volume = %v.id, "{why}");
        self.record(v.id, Some(why), |_, m| Ok(m.enter(next)?))?;
        Ok(())
    }

    /// An abort reached a step whose driver call left the source as it
    /// was: roll back (which checks the source before deleting anything).
    fn roll_back_for_abort(&self, id: uuid::Uuid) -> Result<(), StepError> {
        self.record(
            id,
            Some("aborted by an operator: rolling back".into()),
            |_, m| Ok(m.enter(MigrationPhase::RollingBack)?),
        )?;
        Ok(())
    }

    /// Path 2: the source exposes its LUN, the target takes it over and
    /// migrates it.
    pub(super) async fn step_target_driver(
        &self,
        v: &Volume,
        m: &Migration,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let dest = self.array(&m.destination.array)?.clone();
        let declared = self.declared(&dest)?;
        let src_scope = self.scope(&src)?;
        let vsrc = vref_at(v, &m.source);
        let to_dest = Connector::Array(dest.name().to_owned());
        let exposed = self
            .call(src.driver(), move |rt| {
                rt.initialize_connection(&src_scope, &vsrc, &to_dest)
            })
            .await
            .map_err(|e| Failure::unreachable("the source could not expose its LUN", e))?;
        let remote_address = exposed
            .host_lun()
            .map_err(|e| Failure::unreachable("the source cannot be taken over", e))?
            .clone();
        let remote = Arc::new(
            src.open_lun(&remote_address)
                .map_err(|e| Failure::unreachable("the exposed LUN cannot be opened", e))?,
        );
        // Attached: the exports are held through the call, so the source
        // the target takes over is quiet, and switch as soon as it answers.
        let hold = if v.attachments.is_empty() {
            // Detached since an earlier call that ran attached: what that
            // call began filling is stale all the same.
            if m.taken_over_attached {
                self.discard_stale_fill(v, m, &remote).await?;
            }
            None
        } else {
            Some(self.hold_for_target(v, m, &remote).await?)
        };
        let scope = self.progress_scope(&dest, v.id, v.size_bytes, Some(cancel.clone()))?;
        let vdest = vref_at(v, &m.destination);
        let source = Source {
            array: m.source.array.clone(),
            pool: m.source.pool.clone(),
            driver: src.driver().to_owned(),
        };
        let called = self
            .call_step(dest.driver(), move |rt| {
                rt.take_over_remote_lun(&scope, &vdest, remote.clone())?;
                rt.migrate_volume_target(&scope, &vdest, &source, remote.clone())
            })
            .await?;
        let aborted = self.abort_asked(v.id)?;
        if let Some(paused) = hold {
            match &called {
                Called::Answered(o)
                    if o.moved && !aborted && (!o.is_async || declared.async_target_migration) =>
                {
                    let moved = if o.is_async {
                        DriverMove {
                            reason: "the target array took over the LUN; the attachments \
                                     switched to it while it hydrates",
                            path: MigrationPath::TargetDriverAsync,
                            update: o.model_update.clone(),
                            remote: Some(remote_address.clone()),
                            next: AfterSwitch::Enter(MigrationPhase::Hydrating),
                        }
                    } else {
                        DriverMove {
                            reason: "the target driver moved the volume; the attachments \
                                     switched to it",
                            path: MigrationPath::TargetDriver,
                            update: o.model_update.clone(),
                            remote: None,
                            next: AfterSwitch::Enter(MigrationPhase::CleanupSource),
                        }
                    };
                    return self.switch_after_move(v, m, paused, moved).await;
                }
                // Nothing switches: the exports go on serving the source.
                _ => drop(paused),
            }
        }
        match called {
            // Before the switch the source still holds every byte (nothing
            // was attached to the destination): an abort rolls back.
            Called::Answered(_) | Called::Refused(_) if aborted => self.roll_back_for_abort(v.id),
            Called::Answered(o) if o.moved && !o.is_async => self.switched(
                v.id,
                "the target driver moved the volume",
                MigrationPath::TargetDriver,
                o.model_update,
                |_, m| Ok(m.enter(MigrationPhase::CleanupSource)?),
            ),
            Called::Answered(o) if o.moved && !declared.async_target_migration => {
                // Held to its word: an async answer it never declared is a
                // broken promise, so the step fails over to a host copy.
                let why = format!(
                    "the target driver {} answered an asynchronous move without declaring \
                     async-target-migration; its move was discarded and the host copies",
                    dest.driver()
                );
                tracing::warn!(volume = %v.id, "{why}");
                self.release_exposure(v, m).await;
                self.discard_destination(v, m).await?;
                self.record(v.id, Some(why.clone()), |_, m| {
                    m.warn(why);
                    Ok(m.enter(MigrationPhase::HostCopyPrepare)?)
                })?;
                Ok(())
            }
            // Seed 000: the volume lives on the target from now on and is
            // attachable while its data flows; never roll back past here.
            Called::Answered(o) if o.moved => self.switched(
                v.id,
                "the target array took over the LUN; the volume is attachable while it hydrates",
                MigrationPath::TargetDriverAsync,
                o.model_update,
                |_, m| {
                    m.remote = Some(remote_address.clone());
                    Ok(m.enter(MigrationPhase::Hydrating)?)
                },
            ),
            Called::Answered(_) => {
                self.release_exposure(v, m).await;
                self.record(
                    v.id,
                    Some("the target driver declined; host copy".into()),
                    |_, m| Ok(m.enter(MigrationPhase::HostCopyPrepare)?),
                )?;
                Ok(())
            }
            Called::Refused(e) if declined(&e) => {
                self.release_exposure(v, m).await;
                self.record(
                    v.id,
                    Some(format!("the target driver declined ({e}); host copy")),
                    |_, m| Ok(m.enter(MigrationPhase::HostCopyPrepare)?),
                )?;
                Ok(())
            }
            Called::Refused(e) => {
                Err(Failure::driver("target", dest.driver(), TARGET_CALLS, e).into())
            }
            Called::Unanswered { attempts, last } => {
                Err(
                    Failure::unanswered("target", dest.driver(), TARGET_CALLS, attempts, last)
                        .into(),
                )
            }
        }
    }
}
