//! What `phantom-bench fleet` prints and writes.

use serde_json::{Value, json};

use crate::fleet::FleetBench;
use crate::fleet_outage::WINDOW_NAMES;
use crate::procs;
use crate::report::print_table;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(v: &Value) -> f64 {
    f(v) / 1000.0
}

/// Prints the figures and writes the JSON file; `true` when no request
/// failed anywhere.
pub fn finish(bench: &FleetBench) -> Result<bool, String> {
    let x = &bench.extra;
    let spread = &x["spread"];
    println!(
        "spread: {} tokens × {} replicas, {} requests in {:.1} s, errors {}; AS calls {} = {:.4} per token (goal ≤ 1.05); plugin CPU {:.1} µs/request, redis-server {:.1} µs/request",
        spread["tokens"],
        spread["replicas"],
        spread["requests"],
        f(&spread["seconds"]),
        spread["errors"],
        spread["as_calls"],
        f(&spread["as_calls_per_token"]),
        f(&spread["plugin_cpu_us_per_request"]),
        f(&spread["redis_cpu_us_per_request"]),
    );
    if let Some(modes) = spread["modes"].as_object() {
        for (name, m) in modes {
            println!(
                "  {name:<10} tokens {:>7}  AS calls/token {:.4}  tokens with >1 call {}  p50 {:.3} ms  p99 {:.3} ms",
                m["tokens"],
                f(&m["as_calls_per_token"]),
                m["tokens_with_more_than_one_call"],
                ms(&m["p50_us"]),
                ms(&m["p99_us"]),
            );
        }
    }
    print_table(&bench.rows);
    let shared = &x["shared_hit"];
    println!(
        "shared-hit: {} tokens, shared lookups that hit {}, AS calls {}",
        shared["tokens"], shared["shared_lookups_hit"], shared["as_calls"]
    );
    let row = |name: &str| bench.rows.iter().find(|r| r.workload == name);
    if let (Some(a), Some(b)) = (row("inproc-hit"), row("shared-hit")) {
        println!(
            "shared-hit/inproc-hit: CPU/request ×{:.2}, p50 ×{:.2}, p99 ×{:.2}",
            b.cpu_us_per_request / a.cpu_us_per_request,
            b.p50_us as f64 / a.p50_us.max(1) as f64,
            b.p99_us as f64 / a.p99_us.max(1) as f64,
        );
    }
    for r in &bench.ratios {
        println!(
            "{}: throughput ratio {:.3}, CPU/request ratio {:.3} (rounds {:?})",
            r.pair, r.throughput_median, r.cpu_median, r.cpu_rounds
        );
    }
    let seal = &x["seal"];
    println!(
        "seal: keyed digest {:.3} µs, open of a {}-byte answer {:.3} µs",
        f(&seal["digest_us"]),
        seal["payload_bytes"],
        f(&seal["open_us"])
    );
    let outage = &x["outage"];
    println!(
        "outage: killed at {:.1} s, restarted at {:.1} s, every breaker closed {} s later; requests {}, errors {}",
        f(&outage["killed_at"]),
        f(&outage["restarted_at"]),
        outage["recovery_seconds"],
        outage["requests"],
        outage["errors"],
    );
    for w in WINDOW_NAMES {
        let win = &outage["windows"][w];
        let Some(modes) = win.as_object() else {
            continue;
        };
        for (name, m) in modes {
            let calls = if m.get("tokens").is_some() {
                format!(
                    "tokens {:>6}  AS calls/token {:.3}",
                    m["tokens"],
                    f(&m["as_calls_per_token"])
                )
            } else {
                String::new()
            };
            println!(
                "  {w:<10} {name:<10} requests {:>7} errors {:>3}  p50 {:>7.3} ms  p99 {:>7.3} ms  {calls}",
                m["requests"],
                m["errors"],
                ms(&m["p50_us"]),
                ms(&m["p99_us"]),
            );
        }
    }
    let valid =
        bench.rows.iter().all(|r| r.valid) && spread["errors"] == 0 && outage["errors"] == 0;
    for r in bench.rows.iter().filter(|r| !r.valid) {
        println!(
            "INVALID {}: {}",
            r.workload,
            r.first_error.as_deref().unwrap_or("no requests")
        );
    }
    for (name, v) in [("spread", spread), ("outage", outage)] {
        if v["errors"] != 0 {
            println!(
                "INVALID {name}: {} errors, first: {}",
                v["errors"], v["first_error"]
            );
        }
    }
    if let Some(path) = &bench.args.json {
        let (cpus, model) = procs::machine();
        let a = &bench.args;
        let report = json!({
            "machine": {"cpus": cpus, "cpu_model": model, "clock_ticks_per_second": bench.ticks},
            "settings": {
                "plugin": a.plugin, "replicas": a.replicas, "tokens": a.tokens,
                "concurrency": a.concurrency, "streams": a.streams,
                "as_latency_ms": a.as_latency_ms, "seconds": a.seconds, "warmup": a.warmup,
                "rounds": a.rounds, "shared_hits": a.shared_hits, "hit_tokens": a.hit_tokens,
                "outage_seconds": a.outage_seconds, "cache_max_bytes": a.cache_max_bytes,
            },
            "rows": bench.rows,
            "ratios": bench.ratios,
            "extra": bench.extra,
            "valid": valid,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(valid)
}
