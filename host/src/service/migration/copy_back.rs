//! An abort while `migrating_attachable`: the regions written on the
//! destination since the switch are copied back to the source while the
//! volume keeps serving, then a last pass with writes held, inside which
//! the switch back is persisted (Ceph RBD's abort does the same). A failed
//! attempt is retried with a bounded backoff; after `COPY_BACK_ATTEMPTS`
//! the abort gives up, says so, and the migration goes on: the destination
//! holds every write, so giving up loses nothing.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use uuid::Uuid;

use super::failure::{Backoff, Failure, StepError};
use crate::model::{LunAddress, Migration, MigrationPhase, Volume};
use crate::runtime::Connector;
use crate::service::{Service, ServiceError};

/// Failed copy-back attempts after which the abort gives up.
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

impl Service {
    pub(super) async fn step_copy_back(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
    ) -> Result<(), StepError> {
        let message = match self.copy_back(v, m).await {
            Ok(CopyBack::Switched(volume)) => {
                retry.reset();
                self.after_switch_back(&volume, m).await;
                return Ok(());
            }
            Ok(CopyBack::Again(why)) => {
                tracing::info!(volume = %v.id, %why, "copy-back goes again");
                return Ok(());
            }
            Err(StepError::Host(e)) => return Err(StepError::Host(e)),
            Err(StepError::Failed(f)) => f.to_string(),
        };
        let pause = retry.fail();
        let attempts = retry.attempts();
        tracing::warn!(volume = %v.id, attempts, %message, "copy-back failed");
        if attempts >= COPY_BACK_ATTEMPTS {
            let text = format!(
                "the abort gave up after {attempts} failed copy-back attempts ({message}); the \
                 volume stays on {} with every write, and the migration goes on",
                m.destination.array
            );
            if let Ok((hid, _)) = self.hold_hydration(m) {
                self.inner.hydrations.release_copy_back(&hid);
            }
            self.record(v.id, Some(text.clone()), |_, m| {
                if m.phase == MigrationPhase::CopyingBack {
                    m.abort_requested = false;
                    m.error = None;
                    m.warn(text);
                    m.enter(MigrationPhase::Hydrating)?;
                }
                Ok(())
            })?;
            return Ok(());
        }
        let text = format!(
            "copying back to the source failed (attempt {attempts} of {COPY_BACK_ATTEMPTS}), \
             retrying: {message}"
        );
        self.record_retry(v.id, MigrationPhase::CopyingBack, text, attempts)?;
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// One copy-back attempt: passes while I/O goes on, then the last pass
    /// with writes held, inside which the switch back is persisted.
    async fn copy_back(&self, v: &Volume, m: &Migration) -> Result<CopyBack, StepError> {
        let src = self.array(&m.source.array)?.clone();
        let remote_address = m.remote.clone().ok_or_else(|| {
            Failure::unreachable("the source LUN", "the migration lost its address")
        })?;
        let (_, h) = self
            .hold_hydration(m)
            .map_err(|e| Failure::unreachable("the hydration", e))?;
        // The LUN the copy-back writes to must still be the source LUN the
        // source array knows: a LUN removed (or replaced) under the
        // migration would swallow the writes.
        let current = src
            .open_lun(&remote_address)
            .map_err(|e| Failure::unreachable("the source LUN is unreachable", e))?;
        if !same_file(&current, h.remote()) {
            return Err(Failure::unreachable(
                "the source LUN",
                "it was replaced under the migration",
            )
            .into());
        }
        // Where each attachment lives on the source, asked before writes
        // are held: the switch moves every export there at once.
        let luns = self.attachment_luns(v, &m.source).await?;
        // The total of this attempt's copy is fixed now; writes made while
        // it runs are in the last pass.
        let total = h.written_bytes();
        let _ = self.inner.store.update_volume(v.id, |v| {
            if let Some(m) = v.migration.as_mut() {
                m.start_copy(total);
            }
            Ok::<(), ()>(())
        });
        let (service, id) = (self.clone(), v.id);
        let copied = tokio::task::spawn_blocking(move || {
            let live = |h: &crate::hydrate::Hydration| {
                let pending = h.copy_back_pending().min(total);
                service.set_live_progress(id, total - pending, total);
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
                Err(SwitchBack::NewAttachment(a)) => {
                    outcome = Some(CopyBack::Again(format!(
                        "attachment {a} was made during the copy-back"
                    )));
                    Err(std::io::Error::other("a new attachment"))
                }
                Err(SwitchBack::Refused(e)) => Err(std::io::Error::other(e)),
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
        copied.map_err(|e| StepError::Failed(Failure::Copy(e)))
    }

    /// The switch back, persisted while writes are held: the volume and its
    /// attachments live on the source again; the rollback follows.
    fn switch_back(
        &self,
        id: Uuid,
        luns: &HashMap<Uuid, LunAddress>,
    ) -> Result<Volume, SwitchBack> {
        let mut new_attachment = None;
        let volume = self.volume(id).map_err(SwitchBack::Refused)?;
        let source = volume
            .migration
            .as_ref()
            .map_or_else(String::new, |m| m.source.array.clone());
        let recorded = self.record(
            id,
            Some(format!(
                "written regions copied back; the volume serves from {source} again"
            )),
            |v, m| {
                if m.phase != MigrationPhase::CopyingBack {
                    return Err(ServiceError::Internal(
                        "the migration left the copy-back phase".into(),
                    ));
                }
                for a in v.attachments.iter_mut() {
                    match luns.get(&a.id) {
                        Some(lun) => a.lun = crate::model::DataPath::Lun(lun.clone()),
                        None => {
                            new_attachment = Some(a.id);
                            return Err(ServiceError::Internal("a new attachment".into()));
                        }
                    }
                }
                m.error = None;
                m.switched.clear();
                let at = m.source.clone();
                v.place(&at);
                Ok(m.enter(MigrationPhase::RollingBack)?)
            },
        );
        match (recorded, new_attachment) {
            (Ok(v), _) => Ok(v),
            (Err(_), Some(a)) => Err(SwitchBack::NewAttachment(a)),
            (Err(e), None) => Err(SwitchBack::Refused(e)),
        }
    }

    /// After the switch back: every export serves the source LUN itself
    /// (the returned hydration forwards to it meanwhile, so requests in
    /// flight are right either way), and the destination forgets the
    /// attachments' connections.
    async fn after_switch_back(&self, v: &Volume, m: &Migration) {
        self.serve_attachments_from(v, &m.source.array);
        for a in &v.attachments {
            let connector = Connector::Server(a.server.clone());
            self.terminate_at(v, &m.destination, connector).await;
        }
    }
}

/// Why the switch back was not made.
#[derive(Debug, thiserror::Error)]
enum SwitchBack {
    /// An attachment appeared since its source LUN was looked up.
    #[error("attachment {0} was made during the copy-back")]
    NewAttachment(Uuid),
    /// The store or the table refused it.
    #[error(transparent)]
    Refused(ServiceError),
}

/// Whether two LUNs are the same file (device and inode).
fn same_file(a: &crate::array::Lun, b: &crate::array::Lun) -> bool {
    match (a.file().metadata(), b.file().metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
