//! The host's own copy, seed 000's third path (the target driver makes a
//! hidden destination LUN, the host copies into it natively, resumable from
//! durable checkpoints), and the same copy run backwards when an abort
//! comes after the source driver already moved the volume.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::failure::{Backoff, Failure, StepError};
use super::run::{HOST_COPY_CONNECTOR, vref_at};
use crate::array::{CopyError, CopyOptions, Lun, copy_device, copy_lun};
use crate::block::BlockDevice;
use crate::model::{
    DataPath, Migration, MigrationEnd, MigrationPath, MigrationPhase, Placement, Volume,
};
use crate::runtime::Connector;
use crate::service::{Service, ServiceError};

/// Failed attempts after which an abort stops trying to bring a volume
/// back; it then stays, whole, on the destination.
const RETURN_ATTEMPTS: u32 = 6;

/// How a copy between two placements ended without failing.
enum Copied {
    /// Every byte is in the target and durable.
    Done,
    /// The cancel flag stopped it.
    Cancelled,
}

/// One end of a host copy: a LUN file (copied with its holes skipped and
/// the kernel's help) or any other device (an array's NBD export).
enum CopyEnd {
    Lun(Lun),
    Export(Arc<dyn BlockDevice>),
}

impl CopyEnd {
    fn device(&self) -> &dyn BlockDevice {
        match self {
            CopyEnd::Lun(l) => l,
            CopyEnd::Export(d) => d.as_ref(),
        }
    }
}

impl Service {
    /// Path 3, first half: the target driver makes the hidden destination.
    pub(super) async fn step_host_copy_prepare(
        &self,
        v: &Volume,
        m: &Migration,
    ) -> Result<(), StepError> {
        let dest = self.array(&m.destination.array)?.clone();
        let scope = self.scope(&dest)?;
        let vdest = vref_at(v, &m.destination);
        let created = self
            .call(dest.driver(), move |rt| rt.create_volume(&scope, &vdest))
            .await
            .map_err(|e| Failure::unreachable("the destination could not be created", e))?;
        if !v.attachments.is_empty() {
            // Attached: the host moves it live; no offline copy.
            let v = self.record(v.id, None, |_, m| {
                m.destination.provider_location = created;
                Ok(())
            })?;
            let Some(m) = v.migration.clone() else {
                return Ok(());
            };
            return self.step_live_switch(&v, &m).await;
        }
        let size = v.size_bytes;
        self.record(v.id, Some("destination created; copying".into()), |_, m| {
            m.path = Some(MigrationPath::HostCopy);
            m.destination.provider_location = created;
            m.start_copy(size);
            Ok(m.enter(MigrationPhase::HostCopy)?)
        })?;
        Ok(())
    }

    /// Path 3, second half: the native copy, resumable from its checkpoint.
    pub(super) async fn step_host_copy(
        &self,
        v: &Volume,
        m: &Migration,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), StepError> {
        match self
            .copy_between(v, m, &m.source, &m.destination, cancel.clone())
            .await?
        {
            // The runner sees the abort and rolls back.
            Copied::Cancelled => return Ok(()),
            Copied::Done => {}
        }
        self.release_host_copy(v, m).await;
        self.record(
            v.id,
            Some("copy complete; the volume lives on the destination".into()),
            |v, m| {
                let at = m.destination.clone();
                v.place(&at);
                Ok(m.enter(MigrationPhase::CleanupSource)?)
            },
        )?;
        Ok(())
    }

    /// Abort after the source driver's move, first half: the source driver
    /// makes a LUN to take the volume back.
    pub(super) async fn step_return_prepare(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
    ) -> Result<(), StepError> {
        let src = self.array(&m.source.array)?.clone();
        let scope = self.scope(&src)?;
        let vsrc = vref_at(v, &m.source);
        match self
            .call(src.driver(), move |rt| rt.create_volume(&scope, &vsrc))
            .await
        {
            Ok(created) => {
                let size = v.size_bytes;
                self.record(
                    v.id,
                    Some(format!("copying the volume back to {}", m.source.array)),
                    |_, m| {
                        m.source.provider_location = created;
                        m.start_copy(size);
                        Ok(m.enter(MigrationPhase::Returning)?)
                    },
                )?;
                Ok(())
            }
            Err(e) => self.return_failed(v, m, retry, e.to_string()).await,
        }
    }

    /// Abort after the source driver's move, second half: the host copies
    /// the volume back; then the rollback removes the destination.
    pub(super) async fn step_returning(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
    ) -> Result<(), StepError> {
        // The abort's own flag is raised; this copy is the abort's work and
        // must not stop for it.
        let never = Arc::new(AtomicBool::new(false));
        match self
            .copy_between(v, m, &m.destination, &m.source, never)
            .await
        {
            Ok(_) => {}
            Err(StepError::Failed(f)) => {
                return self.return_failed(v, m, retry, f.to_string()).await;
            }
            Err(e) => return Err(e),
        }
        self.release_host_copy(v, m).await;
        self.record(
            v.id,
            Some(format!(
                "the volume is back on {}; removing the destination",
                m.source.array
            )),
            |v, m| {
                let at = m.source.clone();
                v.place(&at);
                Ok(m.enter(MigrationPhase::RollingBack)?)
            },
        )?;
        Ok(())
    }

    /// A failed try to bring the volume back: retried with backoff; after
    /// `RETURN_ATTEMPTS` the abort gives up and says so. The volume stays on
    /// the destination, which holds all of it, so nothing is lost.
    async fn return_failed(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
        message: String,
    ) -> Result<(), StepError> {
        let pause = retry.fail();
        let attempts = retry.attempts();
        tracing::warn!(volume = %v.id, attempts, %message, "bringing the volume back failed");
        if attempts < RETURN_ATTEMPTS {
            let text = format!(
                "bringing the volume back to {} failed (attempt {attempts} of {RETURN_ATTEMPTS}), \
                 retrying: {message}",
                m.source.array
            );
            self.record(v.id, Some(text.clone()), |_, m| {
                m.error = Some(text);
                m.attempts = attempts;
                Ok(())
            })?;
            tokio::time::sleep(pause).await;
            return Ok(());
        }
        // The partial copy on the source is not the volume: remove it.
        self.release_host_copy(v, m).await;
        if let Err(e) = self.delete_at(v, &m.source).await {
            tracing::warn!(volume = %v.id, error = %e, "the partial return copy is left behind");
        }
        let text = format!(
            "the abort could not bring the volume back to {} after {attempts} attempts \
             ({message}); it stays, whole, on {}",
            m.source.array, m.destination.array
        );
        self.record(v.id, Some(text.clone()), |v, m| {
            m.warn(text);
            m.finish(MigrationEnd::Success)?;
            v.settle_after_migration(m.original_status);
            Ok(())
        })?;
        Ok(())
    }

    /// One end of a host copy, as its driver exposed it.
    async fn copy_end(
        &self,
        array: &Arc<crate::array::Array>,
        data: &DataPath,
    ) -> Result<CopyEnd, ServiceError> {
        match data {
            DataPath::Lun(lun) => Ok(CopyEnd::Lun(array.open_lun(lun)?)),
            DataPath::Nbd { .. } => Ok(CopyEnd::Export(self.open_data(array, data).await?)),
        }
    }

    /// Copies the volume natively from `from` to `to` (both exposed to the
    /// host by their drivers), persisting durable checkpoints as progress.
    async fn copy_between(
        &self,
        v: &Volume,
        m: &Migration,
        from: &Placement,
        to: &Placement,
        cancel: Arc<AtomicBool>,
    ) -> Result<Copied, StepError> {
        let src = self.array(&from.array)?.clone();
        let dest = self.array(&to.array)?.clone();
        let connector = Connector::Server(HOST_COPY_CONNECTOR.into());
        let (src_scope, dest_scope) = (self.scope(&src)?, self.scope(&dest)?);
        let (vsrc, vdest) = (vref_at(v, from), vref_at(v, to));
        let c = connector.clone();
        let src_info = self
            .call(src.driver(), move |rt| {
                rt.initialize_connection(&src_scope, &vsrc, &c)
            })
            .await
            .map_err(|e| Failure::unreachable("source LUN unavailable", e))?;
        let c = connector.clone();
        let dest_info = self
            .call(dest.driver(), move |rt| {
                rt.initialize_connection(&dest_scope, &vdest, &c)
            })
            .await
            .map_err(|e| Failure::unreachable("destination LUN unavailable", e))?;
        let src_end = self
            .copy_end(&src, &src_info.data)
            .await
            .map_err(|e| Failure::unreachable("the source cannot be opened", e))?;
        let dest_end = self
            .copy_end(&dest, &dest_info.data)
            .await
            .map_err(|e| Failure::unreachable("the destination cannot be opened", e))?;
        let opts = CopyOptions {
            resume_from: m.checkpoint,
            bandwidth: self.inner.copy_bandwidth,
        };
        let (service, id, size) = (self.clone(), v.id, v.size_bytes);
        let copied = tokio::task::spawn_blocking(move || {
            let on_checkpoint = |cp: crate::array::CopyCheckpoint| {
                // Progress is the offset the copy reached: it only grows and
                // its total, the volume's size, never changes (the allocated
                // bytes the copy counts would change meaning on a resume).
                service.set_live_progress(id, cp.position, size);
                service
                    .inner
                    .store
                    .update_volume(id, |v| {
                        if let Some(m) = v.migration.as_mut() {
                            m.checkpoint = cp.position;
                            m.advance(cp.position);
                        }
                        Ok::<(), ()>(())
                    })
                    .map(|_| ())
                    .map_err(|e| format!("cannot persist the copy checkpoint: {e:?}"))
            };
            match (src_end, dest_end) {
                (CopyEnd::Lun(s), CopyEnd::Lun(d)) => {
                    copy_lun(&s, &d, opts, &cancel, on_checkpoint)
                }
                (s, d) => {
                    // A LUN file knows its holes; an export is read whole.
                    let allocated = match &s {
                        CopyEnd::Lun(l) => Some(l.allocated_extents(0, l.size())?),
                        CopyEnd::Export(_) => None,
                    };
                    copy_device(
                        s.device(),
                        d.device(),
                        allocated,
                        opts,
                        &cancel,
                        on_checkpoint,
                    )
                }
            }
        })
        .await
        .map_err(|e| StepError::Host(ServiceError::Internal(format!("copy task failed: {e}"))))?;
        match copied {
            Ok(_) => Ok(Copied::Done),
            Err(CopyError::Cancelled) => Ok(Copied::Cancelled),
            Err(e) => Err(Failure::Copy(e.to_string()).into()),
        }
    }
}
