//! The hydrations this host runs: started by drivers (through the runtime's
//! `hydration` host functions), each with a background worker thread and a
//! bitmap persisted in the store, resumed at start, looked up by the
//! service when it exports a volume whose LUN is still hydrating.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::{BitmapSink, DEFAULT_REGION_SIZE, Hydration};
use crate::array::{Arrays, Lun};
use crate::block::BlockDevice;
use crate::model::LunAddress;
use crate::store::{RecordTable, Store};

/// A LUN on an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LunRef {
    /// Array name.
    pub array: String,
    /// Pool and name.
    pub lun: LunAddress,
}

impl LunRef {
    /// Where `lun` is.
    pub fn of(lun: &Lun) -> Self {
        Self {
            array: lun.array().to_owned(),
            lun: lun.address().clone(),
        }
    }

    /// The hydration id of a local LUN: `array/pool/name`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.array, self.lun.pool, self.lun.name)
    }
}

/// What the store keeps of a hydration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HydrationRecord {
    local: LunRef,
    remote: LunRef,
    region_size: u64,
    /// Size of the LUNs.
    #[serde(default)]
    total_bytes: u64,
    /// Finished: kept so that a `finish` or `progress` repeated after a
    /// crash still answers "complete" instead of "unknown".
    #[serde(default)]
    finished: bool,
}

/// Store key of a hydration's bitmaps (raw bytes: the hydrated bitmap, then
/// the written one; see [`BitmapSink`]); the record itself (JSON) is under
/// the bare id. Keys of this kind hold a `#`, which ids never do.
fn bitmap_key(id: &str) -> String {
    format!("{id}#bitmap")
}

/// Why a hydration call failed.
#[derive(Debug, thiserror::Error)]
pub enum HydrationError {
    /// No hydration with that id.
    #[error("no hydration {0}")]
    NotFound(String),
    /// The hydration is not complete yet.
    #[error("hydration {id} is not complete: {done} of {total} bytes are local")]
    Incomplete {
        /// Its id.
        id: String,
        /// Bytes local.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A hydration of that LUN runs from another source.
    #[error("LUN {0} is already hydrating from another source")]
    Conflict(String),
    /// The LUNs or the store failed.
    #[error("hydration I/O error: {0}")]
    Io(#[from] io::Error),
    /// An abort copies the hydration back to its source: it cannot finish.
    #[error("hydration {0} is being copied back to its source (the migration is aborting)")]
    CopyingBack(String),
    /// The hydration's worker failed.
    #[error("hydration {id} stopped: {message}")]
    Failed {
        /// Its id.
        id: String,
        /// What happened.
        message: String,
    },
}

/// Progress of one hydration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HydrationStatus {
    /// Bytes local.
    pub done_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// Every region is local and committed.
    pub complete: bool,
}

struct Running {
    hydration: Arc<Hydration>,
    record: HydrationRecord,
    sink_finished: Arc<AtomicBool>,
    remote: LunRef,
    stop: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<io::Result<()>>>>,
    /// An abort copies this hydration back: `finish` is refused.
    held: AtomicBool,
    /// `finish` runs: a copy-back is refused.
    finishing: AtomicBool,
}

impl Running {
    /// Stops the worker and reports how it ended.
    fn stop(&self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("hydration worker panicked")),
            None => Ok(()),
        }
    }
}

struct StoreSink {
    store: Store,
    id: String,
    record: Mutex<HydrationRecord>,
    /// Set once the hydration finished: later commits (the device may still
    /// serve I/O until the exports switch) must not revive the record.
    finished: Arc<AtomicBool>,
}

impl BitmapSink for StoreSink {
    fn commit(&self, bitmap: &[u8]) -> io::Result<()> {
        if self.finished.load(Ordering::Acquire) {
            return Ok(());
        }
        let _record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        self.store
            .put_record(RecordTable::Hydration, &bitmap_key(&self.id), bitmap)
            .map_err(io::Error::other)
    }
}

/// Every hydration of this host.
pub struct Hydrations {
    store: Store,
    running: Mutex<HashMap<String, Arc<Running>>>,
    /// Finished hydrations by id, with their size.
    finished: Mutex<HashMap<String, u64>>,
    /// Background copy limit in bytes per second.
    bandwidth: Option<u64>,
}

impl Hydrations {
    /// An empty set; `resume_all` brings back the persisted ones.
    pub fn new(store: Store, bandwidth: Option<u64>) -> Self {
        Self {
            store,
            running: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            bandwidth,
        }
    }

    fn finished(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Running>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts hydrating `local` from `remote`, or returns the id of the
    /// hydration that already does (start is idempotent).
    pub fn start(&self, local: Arc<Lun>, remote: Arc<Lun>) -> Result<String, HydrationError> {
        let local_ref = LunRef::of(&local);
        let remote_ref = LunRef::of(&remote);
        let id = local_ref.id();
        if let Some(r) = self.map().get(&id) {
            return if r.remote == remote_ref {
                Ok(id)
            } else {
                Err(HydrationError::Conflict(id))
            };
        }
        // A LUN that finished hydrating once may hydrate again (a later
        // migration back to this array): that is a new hydration.
        self.finished().remove(&id);
        let fresh = self
            .store
            .record(RecordTable::Hydration, &id)
            .map_err(io::Error::other)?
            .is_none();
        let record = HydrationRecord {
            local: local_ref,
            remote: remote_ref,
            region_size: DEFAULT_REGION_SIZE,
            total_bytes: local.size(),
            finished: false,
        };
        self.launch(id.clone(), record, local, remote, fresh)?;
        Ok(id)
    }

    fn launch(
        &self,
        id: String,
        record: HydrationRecord,
        local: Arc<Lun>,
        remote: Arc<Lun>,
        fresh: bool,
    ) -> Result<(), HydrationError> {
        let bitmap = self
            .store
            .record(RecordTable::Hydration, &bitmap_key(&id))
            .map_err(io::Error::other)?
            .unwrap_or_default();
        let record_bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        self.store
            .put_record(RecordTable::Hydration, &id, &record_bytes)
            .map_err(io::Error::other)?;
        let sink_finished = Arc::new(AtomicBool::new(false));
        let sink = StoreSink {
            store: self.store.clone(),
            id: id.clone(),
            record: Mutex::new(record.clone()),
            finished: sink_finished.clone(),
        };
        // Persist before the first byte moves, so a crash right after start
        // still finds the hydration to resume.
        sink.commit(&bitmap)?;
        let hydration = Hydration::new(local, remote, record.region_size, &bitmap, Box::new(sink))?;
        hydration.set_bandwidth(self.bandwidth);
        if fresh {
            // Best effort: a file system without fallocate only loses speed.
            if let Err(e) = hydration.preallocate() {
                tracing::debug!(hydration = %id, error = %e, "preallocation skipped");
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (h, stop) = (hydration.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("hydrate {id}"))
                .spawn(move || {
                    let r = h.run_background(&stop);
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "hydration worker stopped");
                    }
                    r
                })?
        };
        tracing::info!(hydration = %id, "hydration running");
        self.map().insert(
            id,
            Arc::new(Running {
                hydration,
                remote: record.remote.clone(),
                record,
                sink_finished,
                stop,
                worker: Mutex::new(Some(worker)),
                held: AtomicBool::new(false),
                finishing: AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    /// Progress of a hydration.
    pub fn status(&self, id: &str) -> Result<HydrationStatus, HydrationError> {
        if let Some(total) = self.finished().get(id) {
            return Ok(HydrationStatus {
                done_bytes: *total,
                total_bytes: *total,
                complete: true,
            });
        }
        let r = self
            .map()
            .get(id)
            .cloned()
            .ok_or_else(|| HydrationError::NotFound(id.to_owned()))?;
        let finished = r
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(JoinHandle::is_finished);
        if finished && !r.hydration.is_ready_to_end() {
            // The worker died early (say the source became unreachable):
            // report it, and start a new worker from where it stopped, so the
            // caller's next poll retries.
            let message = r.stop().err().map(|e| e.to_string()).unwrap_or_default();
            r.stop.store(false, Ordering::Relaxed);
            let (h, stop) = (r.hydration.clone(), r.stop.clone());
            let worker = std::thread::Builder::new()
                .name(format!("hydrate {id}"))
                .spawn(move || h.run_background(&stop))?;
            *r.worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(worker);
            return Err(HydrationError::Failed {
                id: id.to_owned(),
                message,
            });
        }
        let (done, total) = r.hydration.progress();
        Ok(HydrationStatus {
            done_bytes: done,
            total_bytes: total,
            complete: r.hydration.is_ready_to_end(),
        })
    }

    /// Ends a complete hydration: stops its worker, commits, forgets it.
    pub fn finish(&self, id: &str) -> Result<(), HydrationError> {
        if self.finished().contains_key(id) {
            return Ok(());
        }
        let r = {
            // Checked and claimed under the map's lock, which `copy_back`
            // takes too: a hydration either finishes or is copied back.
            let map = self.map();
            let r = map
                .get(id)
                .cloned()
                .ok_or_else(|| HydrationError::NotFound(id.to_owned()))?;
            if r.held.load(Ordering::SeqCst) {
                return Err(HydrationError::CopyingBack(id.to_owned()));
            }
            if !r.hydration.is_complete() {
                let (done, total) = r.hydration.progress();
                return Err(HydrationError::Incomplete {
                    id: id.to_owned(),
                    done,
                    total,
                });
            }
            r.finishing.store(true, Ordering::SeqCst);
            r
        };
        let began = std::time::Instant::now();
        let ended = r.stop().and_then(|()| r.hydration.commit_to_end());
        let commit_ms = began.elapsed().as_millis() as u64;
        let synced = match ended {
            Ok(synced) => synced,
            Err(e) => {
                r.finishing.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        r.sink_finished.store(true, Ordering::Release);
        let record = HydrationRecord {
            finished: true,
            ..r.record.clone()
        };
        self.store
            .delete_record(RecordTable::Hydration, &bitmap_key(id))
            .map_err(io::Error::other)?;
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        self.store
            .put_record(RecordTable::Hydration, id, &bytes)
            .map_err(io::Error::other)?;
        self.finished().insert(id.to_owned(), record.total_bytes);
        self.map().remove(id);
        tracing::info!(hydration = %id, commit_ms, synced, "hydration finished");
        Ok(())
    }

    /// Stops and forgets a hydration whatever its state (its local LUN is
    /// being deleted). Forgetting a missing one succeeds.
    pub fn abandon(&self, id: &str) -> Result<(), HydrationError> {
        self.finished().remove(id);
        let running = self.map().remove(id);
        if let Some(r) = running {
            let _ = r.stop();
        }
        for key in [id.to_owned(), bitmap_key(id)] {
            self.store
                .delete_record(RecordTable::Hydration, &key)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// The id of the running hydration that fills from `remote`, if any.
    pub fn fed_by(&self, remote: &LunRef) -> Option<String> {
        self.map()
            .iter()
            .find(|(_, r)| r.remote == *remote)
            .map(|(id, _)| id.clone())
    }

    /// Holds the running hydration from `remote` for a copy-back (abort):
    /// it can no longer finish, and its background copy pauses. Returns its
    /// id and device. `NotFound` if none runs (it finished: too late).
    pub fn copy_back(&self, remote: &LunRef) -> Result<(String, Arc<Hydration>), HydrationError> {
        let map = self.map();
        let (id, r) = map
            .iter()
            .find(|(_, r)| r.remote == *remote && !r.finishing.load(Ordering::SeqCst))
            .ok_or_else(|| HydrationError::NotFound(remote.id()))?;
        r.held.store(true, Ordering::SeqCst);
        r.hydration.begin_copy_back();
        Ok((id.clone(), r.hydration.clone()))
    }

    /// Lets a held hydration go on (the abort gave up, or was refused).
    pub fn release_copy_back(&self, id: &str) {
        if let Some(r) = self.map().get(id) {
            r.hydration.cancel_copy_back();
            r.held.store(false, Ordering::SeqCst);
        }
    }

    /// The device serving a LUN that is hydrating, if it is.
    pub fn device(&self, array: &str, lun: &LunAddress) -> Option<Arc<Hydration>> {
        let id = LunRef {
            array: array.to_owned(),
            lun: lun.clone(),
        }
        .id();
        self.map().get(&id).map(|r| r.hydration.clone())
    }

    /// Brings back every persisted hydration. One whose LUNs are gone is
    /// forgotten with a warning.
    pub fn resume_all(&self, arrays: &Arrays) -> Result<(), HydrationError> {
        let records = self
            .store
            .records(RecordTable::Hydration)
            .map_err(io::Error::other)?;
        for (id, bytes) in records {
            if id.contains('#') {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<HydrationRecord>(&bytes) else {
                tracing::warn!(hydration = %id, "unreadable hydration record dropped");
                let _ = self.abandon(&id);
                continue;
            };
            if record.finished {
                self.finished().insert(id, record.total_bytes);
                continue;
            }
            let open = |r: &LunRef| -> Option<Arc<Lun>> {
                arrays.get(&r.array)?.open_lun(&r.lun).ok().map(Arc::new)
            };
            match (open(&record.local), open(&record.remote)) {
                (Some(local), Some(remote)) => {
                    self.launch(id.clone(), record, local, remote, false)?;
                    tracing::info!(hydration = %id, "hydration resumed from its bitmap");
                }
                _ => {
                    tracing::warn!(hydration = %id, "hydration LUNs are gone; forgotten");
                    let _ = self.abandon(&id);
                }
            }
        }
        Ok(())
    }

    /// Stops every worker after a last commit (shutdown).
    pub fn stop_all(&self) {
        let all: Vec<_> = self.map().drain().collect();
        for (id, r) in all {
            if let Err(e) = r.stop() {
                tracing::warn!(hydration = %id, error = %e, "hydration stopped with an error");
            }
        }
    }
}
