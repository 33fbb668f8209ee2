//! `hermes_runtime_alive_tasks`, `hermes_process_resident_bytes` and
//! `hermes_access_log_dropped_total`, read when `/metrics` is scraped: what shows a leak of
//! tasks or memory (under configuration churn, many rate-limit keys) before it hurts, and an
//! access log that cannot keep up.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};

/// The runtimes of the node (the main one and each proxy thread's), counted together.
#[derive(Clone, Default)]
pub struct Runtimes(Arc<Mutex<Vec<tokio::runtime::Handle>>>);

impl Runtimes {
    pub fn add(&self, handles: &[tokio::runtime::Handle]) {
        self.lock().extend_from_slice(handles);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<tokio::runtime::Handle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive_tasks(&self) -> usize {
        self.lock()
            .iter()
            .map(|h| h.metrics().num_alive_tasks())
            .sum()
    }
}

pub struct RuntimeCollector {
    runtimes: Runtimes,
    tasks: IntGauge,
    resident: IntGauge,
    access_dropped: IntCounter,
}

impl RuntimeCollector {
    pub fn new(runtimes: Runtimes) -> Result<RuntimeCollector, prometheus::Error> {
        Ok(RuntimeCollector {
            runtimes,
            tasks: IntGauge::with_opts(Opts::new(
                "hermes_runtime_alive_tasks",
                "Tasks alive in the node's async runtimes (the main one and the proxy threads')",
            ))?,
            resident: IntGauge::with_opts(Opts::new(
                "hermes_process_resident_bytes",
                "Resident memory of the node process (VmRSS)",
            ))?,
            access_dropped: IntCounter::with_opts(Opts::new(
                "hermes_access_log_dropped_total",
                "Access log lines dropped because stdout could not keep up",
            ))?,
        })
    }
}

/// VmRSS from `/proc/self/status`, in bytes; 0 where there is no such file.
fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.tasks
            .desc()
            .into_iter()
            .chain(self.resident.desc())
            .chain(self.access_dropped.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.tasks.set(self.runtimes.alive_tasks() as i64);
        self.resident.set(resident_bytes());
        let dropped = hermes_gateway::access_log::dropped();
        self.access_dropped
            .inc_by(dropped.saturating_sub(self.access_dropped.get()));
        self.tasks
            .collect()
            .into_iter()
            .chain(self.resident.collect())
            .chain(self.access_dropped.collect())
            .collect()
    }
}
