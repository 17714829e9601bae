//! Holding a volume's exports still for a switch of the device behind them:
//! new requests wait (their connections stay open), requests in flight end,
//! and only then does the caller see the exports quiet. A live migration
//! uses it to take the source's snapshot and switch every attachment at
//! once; the clients notice a short pause, never an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::export::{ExportSlot, ExportTable};
use crate::block::BlockDevice;

/// Why the exports could not be held still.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// Requests still ran when the time was up; nothing stays held.
    #[error("{in_flight} NBD requests were still in flight after {waited:?}")]
    Busy {
        /// Requests in flight when it gave up.
        in_flight: usize,
        /// How long it waited.
        waited: Duration,
    },
}

/// Exports held still: no request runs on them until this is dropped.
/// Exports that did not exist (an attachment detached meanwhile) are not
/// part of it.
pub struct Paused {
    slots: Vec<Arc<ExportSlot>>,
    since: Instant,
    /// The devices switched away from, let go of after the hold.
    retired: std::sync::Mutex<Vec<Arc<dyn BlockDevice>>>,
}

impl ExportTable {
    /// Holds the exports `names` and waits, at most `timeout`, until none
    /// of them has a request in flight. On failure every hold is released.
    pub fn pause(&self, names: &[String], timeout: Duration) -> Result<Paused, PauseError> {
        let start = Instant::now();
        let mut paused = Paused {
            slots: Vec::new(),
            since: start,
            retired: std::sync::Mutex::new(Vec::new()),
        };
        for name in names {
            if let Some(slot) = self.lookup(name)
                && slot.hold()
            {
                paused.slots.push(slot);
            }
        }
        let deadline = start + timeout;
        for slot in &paused.slots {
            if let Err(in_flight) = slot.wait_drained(deadline) {
                return Err(PauseError::Busy {
                    in_flight,
                    waited: start.elapsed(),
                });
            }
        }
        Ok(paused)
    }
}

impl Paused {
    /// How long the exports have been held.
    pub fn held_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// Whether export `name` is held here.
    pub fn holds(&self, name: &str) -> bool {
        self.slots.iter().any(|s| s.name() == name)
    }

    /// Serves `device` behind the held export `name` once the hold ends;
    /// false if `name` is not held here.
    pub fn switch(&self, name: &str, device: Arc<dyn BlockDevice>) -> bool {
        match self.slots.iter().find(|s| s.name() == name) {
            Some(slot) => {
                let old = slot.set_device(device);
                self.retired
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(old);
                true
            }
            None => false,
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.release();
        }
        let retired = std::mem::take(self.retired.get_mut().unwrap_or_else(|p| p.into_inner()));
        for device in retired {
            super::export::retire(device);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::nbd::Export;
    use crate::nbd::testdev::MemDevice;

    fn table(names: &[&str]) -> (ExportTable, Arc<MemDevice>) {
        let t = ExportTable::new();
        let dev = Arc::new(MemDevice::new(4096));
        for n in names {
            t.add(
                n,
                Export {
                    device: dev.clone(),
                    read_only: false,
                },
            );
        }
        (t, dev)
    }

    #[test]
    fn a_pause_waits_for_requests_in_flight_and_holds_new_ones() {
        let (t, _) = table(&["a", "b"]);
        let t = Arc::new(t);
        let slot = t.lookup("a").unwrap();
        let running = slot.begin().unwrap();
        let (tx, rx) = mpsc::channel();
        let pauser = {
            let t = t.clone();
            std::thread::spawn(move || {
                let p = t.pause(&["a".into(), "b".into()], Duration::from_secs(5));
                tx.send(()).unwrap();
                p
            })
        };
        // The request in flight keeps the pause from completing.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(running);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let paused = pauser.join().unwrap().unwrap();
        assert!(paused.holds("a") && paused.holds("b"));

        // A new request waits for the hold to end, then sees the new device.
        let new = Arc::new(MemDevice::new(8192));
        assert!(paused.switch("a", new.clone()));
        let (tx, rx) = mpsc::channel();
        let req = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let io = slot.begin().map(|io| io.device.size());
                tx.send(io).unwrap();
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(paused);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Some(8192));
        req.join().unwrap();
    }

    #[test]
    fn a_pause_that_cannot_drain_releases_everything() {
        let (t, _) = table(&["a"]);
        let slot = t.lookup("a").unwrap();
        let running = slot.begin().unwrap();
        let err = t
            .pause(&["a".into()], Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(
            matches!(err, PauseError::Busy { in_flight: 1, .. }),
            "{err}"
        );
        drop(running);
        // Nothing stays held: a request starts at once.
        assert!(slot.begin().is_some());
    }

    #[test]
    fn missing_exports_are_skipped_and_removal_frees_waiting_requests() {
        let (t, _) = table(&["a"]);
        let t = Arc::new(t);
        let paused = t
            .pause(&["a".into(), "gone".into()], Duration::from_secs(1))
            .unwrap();
        assert!(paused.holds("a") && !paused.holds("gone"));
        let slot = t.lookup("a").unwrap();
        let waiter = std::thread::spawn(move || slot.begin().is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(t.remove("a"));
        assert!(
            waiter.join().unwrap(),
            "a removed export refuses the request"
        );
        drop(paused);
    }
}
