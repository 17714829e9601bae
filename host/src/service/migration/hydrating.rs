//! The async target path after the switch: the volume lives on the
//! destination and serves from a hydrating LUN while the host polls the
//! target driver's short, re-entrant `complete-migration-target`. Failures
//! are retried with a bounded backoff and shown (error and attempt count);
//! the volume never goes back to the stale source but through an abort's
//! copy-back.

use std::sync::Arc;

use super::failure::{Backoff, StepError};
use super::run::{POLL_INTERVAL, scale, vref_at};
use crate::model::{Migration, MigrationPhase, Volume};
use crate::runtime::Source;
use crate::service::Service;

impl Service {
    /// One poll of the target driver; a failure counts against `retry`.
    pub(super) async fn step_hydrating(
        &self,
        v: &Volume,
        m: &Migration,
        retry: &mut Backoff,
    ) -> Result<(), StepError> {
        match self.poll_completion(v, m).await {
            Ok(true) => {
                retry.reset();
                self.filled(v)
            }
            Ok(false) => {
                if retry.attempts() > 0 || m.error.is_some() {
                    retry.reset();
                    self.record(
                        v.id,
                        Some("completion polls succeed again".into()),
                        |_, m| {
                            if m.phase == MigrationPhase::Hydrating {
                                m.error = None;
                                m.attempts = 0;
                            }
                            Ok(())
                        },
                    )?;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
                Ok(())
            }
            Err(message) => {
                let pause = retry.fail();
                let attempts = retry.attempts();
                tracing::warn!(volume = %v.id, attempts, %message, "async completion failed; will retry");
                let text = format!(
                    "completing the migration failed (attempt {attempts}, next try in {} ms), \
                     retrying: {message}",
                    pause.as_millis()
                );
                let after = self.record_retry(v.id, MigrationPhase::Hydrating, text, attempts)?;
                if after
                    .migration
                    .as_ref()
                    .is_some_and(|m| m.phase != MigrationPhase::Hydrating)
                {
                    // An abort arrived meanwhile: its copy-back runs next.
                    return Ok(());
                }
                tokio::time::sleep(pause).await;
                Ok(())
            }
        }
    }

    /// The destination holds every byte: the migration completes and the
    /// attachments serve the plain destination LUN.
    pub(super) fn filled(&self, v: &Volume) -> Result<(), StepError> {
        let moved = self.record(
            v.id,
            Some("all data is on the destination".into()),
            |_, m| {
                // An abort that won the race holds the hydration, so it
                // cannot have finished; leave it be.
                if m.phase == MigrationPhase::Hydrating {
                    m.error = None;
                    m.done_bytes = m.total_bytes;
                    m.enter(MigrationPhase::CleanupSource)?;
                }
                Ok(())
            },
        )?;
        if moved
            .migration
            .as_ref()
            .is_some_and(|m| m.phase == MigrationPhase::CleanupSource)
        {
            self.serve_attachments_from(&moved, &moved.array);
        }
        Ok(())
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
            .progress_scope(&dest, v.id, v.size_bytes, None)
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
        let done = scale(c.done_bytes, c.total_bytes, v.size_bytes);
        self.set_live_progress(v.id, done, v.size_bytes);
        if !c.done {
            let _ = self.inner.store.update_volume(v.id, |v| {
                if let Some(m) = v.migration.as_mut() {
                    m.advance(done);
                }
                Ok::<(), ()>(())
            });
        }
        Ok(c.done)
    }
}
