//! The service's part of `/metrics`: volumes by status, migrations by
//! status, per-driver call statistics and versions, the compile slot, and
//! the NBD server's counters, in the Prometheus text format.

use std::collections::BTreeMap;

use super::{Service, ServiceError};
use crate::prometheus::{Kind, Text};
use crate::runtime::LATENCY_BUCKETS_SECONDS;

/// Reads one counter out of a driver's statistics.
type StatOf = fn(&crate::runtime::DriverCallStats) -> u64;

/// Label text of a status, as the API shows it.
fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Service {
    /// The service's metrics as Prometheus text.
    pub fn metrics_text(&self) -> Result<Text, ServiceError> {
        let mut t = Text::default();
        self.volume_metrics(&mut t)?;
        self.driver_metrics(&mut t)?;
        self.compile_metrics(&mut t);
        nbd_metrics(&mut t);
        Ok(t)
    }

    fn volume_metrics(&self, t: &mut Text) -> Result<(), ServiceError> {
        let volumes = self.inner.store.list_volumes()?;
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_migration: BTreeMap<String, u64> = BTreeMap::new();
        let mut attachments = 0u64;
        for v in &volumes {
            *by_status.entry(label(&v.status)).or_default() += 1;
            if let Some(m) = v.migration_status {
                *by_migration.entry(label(&m)).or_default() += 1;
            }
            attachments += v.attachments.len() as u64;
        }
        t.family("ferry_volumes", Kind::Gauge, "Volumes by status.");
        for (status, n) in &by_status {
            t.sample("ferry_volumes", &[("status", status)], *n as f64);
        }
        t.family(
            "ferry_volume_migrations",
            Kind::Gauge,
            "Volumes by the status of their last migration.",
        );
        for (status, n) in &by_migration {
            t.sample(
                "ferry_volume_migrations",
                &[("migration_status", status)],
                *n as f64,
            );
        }
        t.family(
            "ferry_migrations_running",
            Kind::Gauge,
            "Migrations running in this process.",
        );
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        t.sample("ferry_migrations_running", &[], running as f64);
        t.family(
            "ferry_attachments",
            Kind::Gauge,
            "Attachments of all volumes.",
        );
        t.sample("ferry_attachments", &[], attachments as f64);
        Ok(())
    }

    fn driver_metrics(&self, t: &mut Text) -> Result<(), ServiceError> {
        t.family(
            "ferry_driver_active_version",
            Kind::Gauge,
            "1 for the active version of each driver, by digest.",
        );
        let records = self.inner.store.list_drivers()?;
        for d in &records {
            t.sample(
                "ferry_driver_active_version",
                &[("driver", &d.name), ("digest", &d.active_digest)],
                1.0,
            );
        }
        t.family(
            "ferry_driver_versions",
            Kind::Gauge,
            "Installed versions of each driver.",
        );
        for d in &records {
            t.sample(
                "ferry_driver_versions",
                &[("driver", &d.name)],
                d.versions.len() as f64,
            );
        }
        let stats = self.inner.runtime.call_stats();
        let counters: [(&str, &str, StatOf); 5] = [
            ("ferry_driver_calls_total", "Driver calls made.", |s| {
                s.calls
            }),
            (
                "ferry_driver_call_errors_total",
                "Driver calls answered with an error variant.",
                |s| s.errors,
            ),
            (
                "ferry_driver_traps_total",
                "Driver calls that trapped.",
                |s| s.traps,
            ),
            (
                "ferry_driver_timeouts_total",
                "Driver calls stopped at their deadline.",
                |s| s.timeouts,
            ),
            (
                "ferry_driver_out_of_memory_total",
                "Driver calls that ran into their memory limit.",
                |s| s.out_of_memory,
            ),
        ];
        for (name, help, get) in counters {
            t.family(name, Kind::Counter, help);
            for (driver, s) in &stats {
                t.sample(name, &[("driver", driver)], get(s) as f64);
            }
        }
        t.family(
            "ferry_driver_call_duration_seconds",
            Kind::Histogram,
            "Wall-clock time of driver calls, instantiation included.",
        );
        for (driver, s) in &stats {
            t.histogram(
                "ferry_driver_call_duration_seconds",
                &[("driver", driver)],
                &LATENCY_BUCKETS_SECONDS,
                &s.latency_buckets,
                s.latency_sum_seconds,
            );
        }
        t.family(
            "ferry_driver_memory_high_water_bytes",
            Kind::Gauge,
            "Largest linear memory any instance of the driver grew to.",
        );
        for (driver, s) in &stats {
            t.sample(
                "ferry_driver_memory_high_water_bytes",
                &[("driver", driver)],
                s.memory_high_water_bytes as f64,
            );
        }
        Ok(())
    }
}

impl Service {
    /// The one compile slot: how compiles ended, and what abandoned ones
    /// (callers gave up at `max_compile_ms`; Cranelift cannot be stopped)
    /// still run and have burned.
    fn compile_metrics(&self, t: &mut Text) {
        let c = self.inner.runtime.compile_stats();
        t.family(
            "ferry_driver_compiles_total",
            Kind::Counter,
            "Driver component compiles and refusals, by result: compiled, failed \
             (compile_failed), timeout (compile_timeout, the compile abandoned), busy \
             (compile_busy, refused while the compile slot was taken).",
        );
        for (result, n) in [
            ("compiled", c.compiled),
            ("failed", c.failed),
            ("timeout", c.timeouts),
            ("busy", c.busy),
        ] {
            t.sample(
                "ferry_driver_compiles_total",
                &[("result", result)],
                n as f64,
            );
        }
        t.family(
            "ferry_driver_compile_abandoned_running",
            Kind::Gauge,
            "Abandoned compiles still running (0 or 1); each holds the compile slot until it ends.",
        );
        t.sample(
            "ferry_driver_compile_abandoned_running",
            &[],
            c.abandoned_running as f64,
        );
        t.family(
            "ferry_driver_compile_cpu_seconds_total",
            Kind::Counter,
            "CPU time of ended compiles, by whether their caller waited for them or abandoned them.",
        );
        t.sample(
            "ferry_driver_compile_cpu_seconds_total",
            &[("caller", "waited")],
            (c.cpu_seconds - c.abandoned_cpu_seconds).max(0.0),
        );
        t.sample(
            "ferry_driver_compile_cpu_seconds_total",
            &[("caller", "abandoned")],
            c.abandoned_cpu_seconds,
        );
    }
}

fn nbd_metrics(t: &mut Text) {
    let n = crate::nbd::STATS.snapshot();
    t.family(
        "ferry_nbd_connections_open",
        Kind::Gauge,
        "NBD connections in the transmission phase.",
    );
    t.sample("ferry_nbd_connections_open", &[], n.connections_open as f64);
    t.family(
        "ferry_nbd_connections_total",
        Kind::Counter,
        "NBD connections that reached the transmission phase.",
    );
    t.sample(
        "ferry_nbd_connections_total",
        &[],
        n.connections_total as f64,
    );
    t.family(
        "ferry_nbd_requests_total",
        Kind::Counter,
        "NBD requests by command.",
    );
    for (op, v) in [
        ("read", n.reads),
        ("write", n.writes),
        ("flush", n.flushes),
        ("zero", n.zeroes),
    ] {
        t.sample("ferry_nbd_requests_total", &[("op", op)], v as f64);
    }
    t.family(
        "ferry_nbd_request_errors_total",
        Kind::Counter,
        "NBD requests answered with an error.",
    );
    t.sample("ferry_nbd_request_errors_total", &[], n.errors as f64);
    t.family(
        "ferry_nbd_bytes_total",
        Kind::Counter,
        "Bytes moved over NBD.",
    );
    t.sample(
        "ferry_nbd_bytes_total",
        &[("direction", "read")],
        n.bytes_read as f64,
    );
    t.sample(
        "ferry_nbd_bytes_total",
        &[("direction", "write")],
        n.bytes_written as f64,
    );
}
