//! Figures of a measured leg and their sum over legs: what the table and the
//! JSON report show for one workload and transport.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{self, Phase};

/// One measured leg: the client's view and the target's CPU time.
pub struct Leg {
    pub phase: Phase,
    pub cpu_seconds: f64,
    pub as_calls: u64,
}

impl Leg {
    pub fn rps(&self) -> f64 {
        self.phase.requests as f64 / self.phase.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.cpu_seconds * 1e6 / (self.phase.requests.max(1) as f64)
    }
}

/// Legs of one workload on one transport, added up.
pub struct Sum {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
    pub cpu_seconds: f64,
    pub as_calls: u64,
}

impl Default for Sum {
    fn default() -> Self {
        Sum {
            requests: 0,
            errors: 0,
            first_error: None,
            hist: load::histogram(),
            elapsed: Duration::ZERO,
            cpu_seconds: 0.0,
            as_calls: 0,
        }
    }
}

impl Sum {
    pub fn add(&mut self, leg: &Leg) {
        self.requests += leg.phase.requests;
        self.errors += leg.phase.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&leg.phase.first_error);
        }
        let _ = self.hist.add(&leg.phase.hist);
        self.elapsed += leg.phase.elapsed;
        self.cpu_seconds += leg.cpu_seconds;
        self.as_calls += leg.as_calls;
    }

    /// Errors outside the measured legs (prefill, warm-up) also invalidate.
    pub fn setup_errors(&mut self, errors: u64, first: Option<String>) {
        self.errors += errors;
        if self.first_error.is_none() {
            self.first_error = first;
        }
    }
}

/// A line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    /// `plugin` or `echo`.
    pub target: &'static str,
    pub connections: usize,
    pub streams: usize,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub cpu_us_per_request: f64,
    pub rss_mib: f64,
    pub hwm_mib: f64,
    /// Introspections during the measured legs.
    pub as_calls: u64,
    /// Introspections during prefill and warm-up before them.
    pub as_calls_setup: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
}

pub struct RowFacts {
    pub workload: String,
    pub target: &'static str,
    pub connections: usize,
    pub streams: usize,
    pub memory: Option<(u64, u64)>,
    pub as_calls_setup: u64,
}

impl Sum {
    pub fn row(&self, facts: RowFacts) -> Row {
        let (rss, hwm) = facts.memory.unwrap_or((0, 0));
        let seconds = self.elapsed.as_secs_f64();
        Row {
            workload: facts.workload,
            target: facts.target,
            connections: facts.connections,
            streams: facts.streams,
            requests: self.requests,
            seconds,
            requests_per_second: self.requests as f64 / seconds.max(1e-9),
            p50_us: self.hist.value_at_quantile(0.5),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            cpu_us_per_request: self.cpu_seconds * 1e6 / (self.requests.max(1) as f64),
            rss_mib: mib(rss),
            hwm_mib: mib(hwm),
            as_calls: self.as_calls,
            as_calls_setup: facts.as_calls_setup,
            errors: self.errors,
            first_error: self.first_error.clone(),
            valid: self.errors == 0 && self.requests > 0,
        }
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Back-to-back ratios of a plugin workload to its echo baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub pair: String,
    pub connections: usize,
    pub streams: usize,
    /// Plugin req/s over echo req/s, per round, and their median.
    pub throughput_rounds: Vec<f64>,
    pub throughput_median: f64,
    /// Plugin CPU µs/request over echo's, per round, and their median.
    pub cpu_rounds: Vec<f64>,
    pub cpu_median: f64,
}
