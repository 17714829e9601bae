//! Per-driver call statistics: how many calls, how each ended, how long they
//! took and how much memory an instance grew to. Kept in memory by the
//! runtime and rendered by the API's `/metrics` endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::CallError;

/// Upper bounds of the latency histogram buckets, in seconds. From a
/// pre-instantiated no-op call (tens of microseconds) to a call near the
/// default deadline.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// How a call ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The driver returned (its own `ok` or `err`).
    Returned {
        driver_error: bool,
    },
    Trap,
    Timeout,
    OutOfMemory,
}

impl Outcome {
    pub(crate) fn of_error(e: &CallError) -> Self {
        match e {
            CallError::Driver { .. } | CallError::NotLoaded(_) => {
                Self::Returned { driver_error: true }
            }
            CallError::Trap { .. } => Self::Trap,
            CallError::Timeout { .. } => Self::Timeout,
            CallError::OutOfMemory { .. } => Self::OutOfMemory,
        }
    }
}

/// The statistics of one driver name, over every version it ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverCallStats {
    /// Calls started.
    pub calls: u64,
    /// Calls the driver answered with an error variant.
    pub errors: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls stopped at their deadline.
    pub timeouts: u64,
    /// Calls that ran into the memory limit.
    pub out_of_memory: u64,
    /// Calls per latency bucket (same order as [`LATENCY_BUCKETS_SECONDS`],
    /// not cumulative); the last entry counts calls slower than every bound.
    pub latency_buckets: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    /// Total seconds spent in calls.
    pub latency_sum_seconds: f64,
    /// Largest linear memory any instance of the driver grew to, in bytes.
    pub memory_high_water_bytes: u64,
}

/// The statistics of every driver, by name.
#[derive(Debug, Default)]
pub(crate) struct CallMetrics {
    by_driver: Mutex<BTreeMap<String, DriverCallStats>>,
}

impl CallMetrics {
    /// Counts one finished call.
    pub(crate) fn record(&self, driver: &str, outcome: Outcome, took: Duration, memory: usize) {
        let mut map = self.by_driver.lock().unwrap_or_else(|p| p.into_inner());
        let s = match map.get_mut(driver) {
            Some(s) => s,
            None => map.entry(driver.to_owned()).or_default(),
        };
        s.calls += 1;
        match outcome {
            Outcome::Returned { driver_error } => s.errors += u64::from(driver_error),
            Outcome::Trap => s.traps += 1,
            Outcome::Timeout => s.timeouts += 1,
            Outcome::OutOfMemory => s.out_of_memory += 1,
        }
        let secs = took.as_secs_f64();
        s.latency_buckets[crate::prometheus::bucket_index(&LATENCY_BUCKETS_SECONDS, secs)] += 1;
        s.latency_sum_seconds += secs;
        s.memory_high_water_bytes = s.memory_high_water_bytes.max(memory as u64);
    }

    /// A copy of every driver's statistics.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, DriverCallStats> {
        self.by_driver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_latencies_land_in_their_counters() {
        let m = CallMetrics::default();
        let ok = Outcome::Returned {
            driver_error: false,
        };
        m.record("a", ok, Duration::from_micros(20), 1 << 20);
        m.record("a", Outcome::Trap, Duration::from_millis(3), 4 << 20);
        m.record("a", Outcome::Timeout, Duration::from_secs(9), 2 << 20);
        m.record(
            "b",
            Outcome::Returned { driver_error: true },
            Duration::from_micros(200),
            0,
        );
        let s = m.snapshot();
        let a = &s["a"];
        assert_eq!((a.calls, a.errors, a.traps, a.timeouts), (3, 0, 1, 1));
        assert_eq!(a.latency_buckets[0], 1, "20 us is in the first bucket");
        assert_eq!(a.latency_buckets[5], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(a.latency_buckets[LATENCY_BUCKETS_SECONDS.len()], 1);
        assert_eq!(a.memory_high_water_bytes, 4 << 20);
        assert_eq!((s["b"].calls, s["b"].errors), (1, 1));
    }
}
