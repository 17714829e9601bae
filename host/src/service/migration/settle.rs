//! How a migration settles: after the switch the source is removed and the
//! migration succeeds; on the way back the destination is removed and the
//! volume restored. Nothing is deleted on either side before the host has
//! seen the other side hold the volume: a rollback first checks, through
//! the source driver, that the source LUN is there and whole.

use std::time::Duration;

use super::failure::{Backoff, StepError};
use super::run::{HOST_COPY_CONNECTOR, vref_at};
use crate::model::{Migration, MigrationEnd, Placement, SourceRemoval, Volume, VolumeStatus};
use crate::runtime::Connector;
use crate::service::{Service, ServiceError};
use crate::store::UpdateError;

/// How often a cleanup or check call is tried before the runner gives up
/// on it.
const CLEANUP_ATTEMPTS: u32 = 4;

/// Pauses between the tries of a cleanup or check call: 0.5, 1, 2 s.
fn cleanup_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(2))
}

/// The connector the host uses to look at a LUN it does not copy.
const HOST_CHECK_CONNECTOR: &str = "ferry-host-check";

impl Service {
    /// After the switch: report success, the source LUN's removal pending
    /// (`remove_source` runs next). Never goes back: the destination holds
    /// the volume now. The removal is a driver call that took most of a
    /// second on a plain array, and nothing the user waits for needs it.
    pub(super) async fn step_cleanup_source(
        &self,
        v: &Volume,
        m: &Migration,
    ) -> Result<(), StepError> {
        self.release_exposure(v, m).await;
        if m.path == Some(crate::model::MigrationPath::HostLive) {
            self.release_host_copy(v, m).await;
        }
        self.record(
            v.id,
            Some("migration complete; the source LUN is removed next".into()),
            |v, m| {
                m.finish(MigrationEnd::Success)?;
                m.source_removal = Some(SourceRemoval::Pending);
                v.settle_after_migration(m.original_status);
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Removes the source LUN of a migration that succeeded, and records
    /// how that went. A crash before the record leaves it pending, and the
    /// next start removes it (a repeated removal is a success by contract).
    /// The volume may be deleted meanwhile: its source LUN is still removed.
    pub(super) async fn remove_source(&self, v: &Volume, m: &Migration) {
        let removed = self.delete_at(v, &m.source).await;
        let migration = m.id;
        let recorded = self.inner.store.update_volume(v.id, |v| {
            let Some(m) = v.migration.as_mut().filter(|m| m.id == migration) else {
                return Ok(());
            };
            m.source_removal = Some(match &removed {
                Ok(()) => SourceRemoval::Done,
                Err(e) => {
                    m.warn(format!(
                        "the source LUN could not be removed and is left behind: {e}"
                    ));
                    SourceRemoval::Failed
                }
            });
            Ok::<_, ServiceError>(())
        });
        if let Err(e) = recorded
            && !matches!(e, UpdateError::NotFound)
        {
            tracing::error!(volume = %v.id, error = ?e, "cannot record the source LUN's removal");
        }
        match removed {
            Ok(()) => tracing::info!(volume = %v.id, array = %m.source.array, "source LUN removed"),
            Err(e) => {
                tracing::warn!(volume = %v.id, array = %m.source.array, error = %e, "the source LUN is left behind")
            }
        }
    }

    /// Undo: once the source is seen to hold the volume, remove whatever
    /// the destination holds, release the source's exposure, and put the
    /// volume back as it was. When the source cannot be shown whole,
    /// nothing is deleted and the volume is marked `error`, with where its
    /// data may be.
    pub(super) async fn step_roll_back(&self, v: &Volume, m: &Migration) -> Result<(), StepError> {
        self.release_host_copy(v, m).await;
        self.release_exposure(v, m).await;
        let end = if m.abort_requested {
            MigrationEnd::Aborted
        } else {
            MigrationEnd::Error
        };
        if let Err(why) = self.check_source(v, m).await {
            let text = format!(
                "{}the source LUN on {} cannot be shown to hold the volume ({why}); nothing was \
                 deleted on either side: the destination array {} may hold its data. The volume \
                 is marked error; reset its status or force-delete it once its data is located",
                m.error
                    .as_ref()
                    .map(|e| format!("{e}. "))
                    .unwrap_or_default(),
                m.source.array,
                m.destination.array
            );
            tracing::error!(volume = %v.id, "{text}");
            self.record(v.id, Some(text.clone()), |v, m| {
                m.error = Some(text);
                m.finish(MigrationEnd::Error)?;
                let at = m.source.clone();
                v.place(&at);
                v.status = VolumeStatus::Error;
                Ok(())
            })?;
            return Ok(());
        }
        // The host's live move hydrates the destination itself; stop that
        // before the LUN goes.
        self.abandon_live_hydration(m);
        let warning =
            self.delete_at(v, &m.destination).await.err().map(|e| {
                format!("the destination LUN could not be removed and is left behind: {e}")
            });
        let reason = m
            .error
            .clone()
            .or_else(|| m.abort_requested.then(|| "aborted by an operator".into()));
        self.record(v.id, reason, |v, m| {
            if let Some(w) = warning {
                m.warn(w);
            }
            let at = m.source.clone();
            v.place(&at);
            m.finish(end)?;
            v.settle_after_migration(m.original_status);
            Ok(())
        })?;
        Ok(())
    }

    /// Whether the source LUN, as the source driver names it, exists with
    /// the volume's size. Asked a few times before the answer counts as no.
    async fn check_source(&self, v: &Volume, m: &Migration) -> Result<(), String> {
        let src = self
            .array(&m.source.array)
            .map_err(|e| e.to_string())?
            .clone();
        let mut last = String::new();
        let mut backoff = cleanup_backoff();
        for attempt in 0..CLEANUP_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff.fail()).await;
            }
            let scope = match self.scope(&src) {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let vsrc = vref_at(v, &m.source);
            let connector = Connector::Server(HOST_CHECK_CONNECTOR.into());
            let c = connector.clone();
            let info = match self
                .call(src.driver(), move |rt| {
                    rt.initialize_connection(&scope, &vsrc, &c)
                })
                .await
            {
                Ok(info) => info,
                Err(e) => {
                    last = format!("the source driver cannot name it: {e}");
                    continue;
                }
            };
            let opened = self.open_data(&src, &info.data).await;
            self.terminate_at(v, &m.source, connector).await;
            return match opened {
                Ok(device) if device.size() == v.size_bytes => Ok(()),
                Ok(device) => Err(format!(
                    "{} holds {} bytes, the volume {}",
                    info.data,
                    device.size(),
                    v.size_bytes
                )),
                Err(e) => Err(e.to_string()),
            };
        }
        Err(last)
    }

    /// Removes the volume's LUN at `at` a migration had put there, through
    /// that array's driver (idempotent), retrying a little; the error says
    /// why it is left behind.
    pub(super) async fn delete_at(&self, v: &Volume, at: &Placement) -> Result<(), ServiceError> {
        let array = self.array(&at.array)?.clone();
        let vr = vref_at(v, at);
        let mut last = None;
        let mut backoff = cleanup_backoff();
        for attempt in 0..CLEANUP_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff.fail()).await;
            }
            let scope = self.scope(&array)?;
            let vr = vr.clone();
            match self
                .call(array.driver(), move |rt| rt.delete_volume(&scope, &vr))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(volume = %v.id, array = %at.array, attempt, error = %e, "removing a migration's LUN failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ServiceError::Internal("no attempt was made".into())))
    }

    /// Removes what a target driver made of a move the host refused (the
    /// source is checked first, as for a rollback).
    pub(super) async fn discard_destination(
        &self,
        v: &Volume,
        m: &Migration,
    ) -> Result<(), StepError> {
        self.check_source(v, m).await.map_err(|why| {
            StepError::Failed(super::failure::Failure::unreachable(
                "the source LUN cannot be shown whole",
                why,
            ))
        })?;
        if let Err(e) = self.delete_at(v, &m.destination).await {
            tracing::warn!(volume = %v.id, error = %e, "the refused move's LUN is left behind");
        }
        Ok(())
    }

    /// Ends the source's exposure to the destination array (take-over).
    pub(super) async fn release_exposure(&self, v: &Volume, m: &Migration) {
        let connector = Connector::Array(m.destination.array.clone());
        self.terminate_at(v, &m.source, connector).await;
    }

    /// Ends the host copy's connections on both sides.
    pub(super) async fn release_host_copy(&self, v: &Volume, m: &Migration) {
        let connector = Connector::Server(HOST_COPY_CONNECTOR.into());
        self.terminate_at(v, &m.source, connector.clone()).await;
        self.terminate_at(v, &m.destination, connector).await;
    }

    pub(super) async fn terminate_at(&self, v: &Volume, at: &Placement, connector: Connector) {
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
}
