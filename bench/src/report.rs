//! The human table on stdout and the JSON file of `phantom-bench run`.

use serde_json::{Map, Value, json};

use crate::procs;
use crate::run_args::RunArgs;
use crate::stats::{Ratio, Row};

/// Prints the table and the ratios, writes the JSON file; `true` when every
/// workload ran without errors.
pub fn finish(
    args: &RunArgs,
    ticks: f64,
    rows: &[Row],
    ratios: &[Ratio],
    mut extra: Map<String, Value>,
) -> Result<bool, String> {
    print_table(rows);
    for r in ratios {
        println!(
            "{} on {}×{}: throughput ratio {:.3} (rounds {}), CPU/request ratio {:.2} (rounds {})",
            r.pair,
            r.connections,
            r.streams,
            r.throughput_median,
            list(&r.throughput_rounds),
            r.cpu_median,
            list(&r.cpu_rounds)
        );
    }
    for c in args.connections.clone() {
        let find = |w: &str| rows.iter().find(|r| r.workload == w && r.connections == c);
        if let (Some(big), Some(small)) = (find("tokens-500k"), find("hit-10k")) {
            let p50 = big.p50_us as f64 / small.p50_us.max(1) as f64;
            let p99 = big.p99_us as f64 / small.p99_us.max(1) as f64;
            let thr = big.requests_per_second / small.requests_per_second.max(1e-9);
            println!(
                "tokens-500k/hit-10k on {c}×{}: p50 {p50:.2}, p99 {p99:.2}, throughput {thr:.3}",
                args.streams
            );
            extra.insert(
                format!("tokens_500k_vs_hit_10k_{c}"),
                json!({"p50": p50, "p99": p99, "throughput": thr}),
            );
        }
    }
    if let Some(p) = extra.get("tokens_500k_prefill") {
        println!("tokens-500k prefill: {p}");
    }
    let valid = rows.iter().all(|r| r.valid);
    for r in rows.iter().filter(|r| !r.valid) {
        println!(
            "INVALID {} on {}×{}: {}",
            r.workload,
            r.connections,
            r.streams,
            r.first_error.as_deref().unwrap_or("no requests")
        );
    }
    if let Some(path) = &args.json {
        let (cpus, model) = procs::machine();
        let a = args;
        let report = json!({
            "machine": {"cpus": cpus, "cpu_model": model, "clock_ticks_per_second": ticks},
            "settings": {
                "plugin": a.plugin, "seconds": a.seconds, "warmup": a.warmup, "rounds": a.rounds,
                "connections": a.connections, "streams": a.streams, "tokens": a.tokens,
                "big_tokens": a.big_tokens, "miss_latency_ms": a.miss_latency_ms,
                "body_bytes": a.body_bytes, "cache_max_bytes": a.cache_max_bytes,
            },
            "rows": rows,
            "ratios": ratios,
            "extra": extra,
            "valid": valid,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(valid)
}

/// Prints the table.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<16} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>13} {:>15} {:>6}  status",
        "workload",
        "conn×st",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "CPU µs/r",
        "RSS(HWM) MiB",
        "AS calls(setup)",
        "errors"
    );
    for r in rows {
        println!(
            "{:<16} {:>7} {:>9} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>9.1} {:>13} {:>15} {:>6}  {}",
            r.workload,
            format!("{}×{}", r.connections, r.streams),
            r.requests,
            r.requests_per_second,
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.p999_us as f64 / 1000.0,
            r.cpu_us_per_request,
            format!("{:.1}({:.1})", r.rss_mib, r.hwm_mib),
            format!("{}({})", r.as_calls, r.as_calls_setup),
            r.errors,
            if r.valid { "ok" } else { "INVALID" },
        );
    }
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}
