//! A gate for the writes of a device: writers pass it with two atomic
//! operations while it is open; holding it waits for the writes in flight
//! and keeps new ones waiting, so a short final step (the last pass of a
//! copy-back and the switch) sees the device still.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Gate {
    held: AtomicBool,
    in_flight: AtomicUsize,
    lock: Mutex<()>,
    reopened: Condvar,
}

/// A write passing the gate; leaves it when dropped.
pub(super) struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// Waits while the gate is held, then counts the caller in flight.
    pub(super) fn enter(&self) -> Pass<'_> {
        loop {
            // Counted first, checked second; the holder raises its flag
            // first and counts second, so one of the two always sees the other.
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.held.load(Ordering::SeqCst) {
                return Pass(self);
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            while self.held.load(Ordering::SeqCst) {
                guard = self.reopened.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Holds the gate: returns once no write is in flight; new ones wait
    /// until [`Gate::release`].
    pub(super) fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Opens the gate again and wakes the waiting writers.
    pub(super) fn release(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.held.store(false, Ordering::SeqCst);
        self.reopened.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    #[test]
    fn hold_waits_for_writes_in_flight_and_blocks_new_ones() {
        let gate = Arc::new(Gate::default());
        let done = Arc::new(AtomicU64::new(0));
        let pass = gate.enter();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                gate.hold();
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(pass);
        let waited = holder.join().unwrap();
        assert!(
            waited >= Duration::from_millis(40),
            "hold did not wait: {waited:?}"
        );
        let writer = {
            let (gate, done) = (gate.clone(), done.clone());
            std::thread::spawn(move || {
                let _p = gate.enter();
                done.fetch_add(1, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(done.load(Ordering::SeqCst), 0, "a write passed a held gate");
        gate.release();
        writer.join().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
