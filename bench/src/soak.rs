//! `phantom-bench soak`: the plugin driven at a set rate (open loop) for a
//! long time, with token churn against the in-process fake AS, printing rate,
//! latency, errors, AS calls and RSS as it goes; fails on errors or on RSS
//! growth between the first and the last minute.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::fake_as::FakeAs;
use crate::load::{self, Expect, Rng};
use crate::procs;
use crate::stats::mib;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct SoakArgs {
    /// The plugin binary.
    #[arg(long, default_value = "target/release/tyk-phantom-token")]
    pub plugin: PathBuf,
    /// Requests per second, scheduled whatever the replies do.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// New tokens per second, each replacing the oldest live one.
    #[arg(long, default_value_t = 50)]
    pub churn: u64,
    /// Live tokens at any time (requests pick one at random).
    #[arg(long, default_value_t = 2000)]
    pub tokens: u64,
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight at most; a request due beyond that is shed (and fails the run).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Fake AS latency.
    #[arg(long, default_value_t = 2)]
    pub as_latency_ms: u64,
    /// The plugin's CACHE_MAX_BYTES: small, so churn also evicts.
    #[arg(long, default_value = "16MiB")]
    pub cache_max_bytes: String,
    /// Distinct tokens sent before the clock starts, to fill the cache
    /// (default: one per KiB of CACHE_MAX_BYTES).
    #[arg(long)]
    pub prefill: Option<u64>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 10)]
    pub every: u64,
    /// Largest RSS growth from the first to the last minute still called flat.
    #[arg(long, default_value_t = 8.0)]
    pub rss_tolerance_mib: f64,
    #[arg(long = "plugin-env", value_parser = crate::parse_env)]
    pub plugin_env: Vec<(String, String)>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

struct Shared {
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
    done: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Runs the soak; `Ok(false)` when it failed its checks.
pub async fn soak(args: SoakArgs) -> Result<bool, String> {
    if !args.plugin.is_file() {
        return Err(format!("no plugin binary at {}", args.plugin.display()));
    }
    let latency = Duration::from_millis(args.as_latency_ms);
    let fake = FakeAs::start(([127, 0, 0, 1], 0).into(), latency, 3600)
        .await
        .map_err(|e| format!("fake AS: {e}"))?;
    let plugin = procs::start_plugin(
        &args.plugin,
        fake.addr,
        &args.cache_max_bytes,
        &args.plugin_env,
    )
    .await?;
    let pid = plugin.pid();
    let ticks = procs::clock_ticks();
    let cache_bytes = crate::byte_size(&args.cache_max_bytes)
        .ok_or("--cache-max-bytes: expected a size such as 16MiB")?;
    let fill = args.prefill.unwrap_or(cache_bytes / 1024);
    let setup_clients = load::connect(plugin.addr, 4).await?;
    let (e1, f1) = load::prefill(&setup_clients, 256, "fill", fill).await;
    let (e2, f2) = load::prefill(&setup_clients, 256, "soak", args.tokens).await;
    if e1 + e2 > 0 {
        return Err(format!("prefill failed: {}", f1.or(f2).unwrap_or_default()));
    }
    drop(setup_clients);
    let clients = load::connect(plugin.addr, args.connections).await?;
    let template = Arc::new(load::template(0));
    let shared = Arc::new(Shared {
        interval: Mutex::new(load::histogram()),
        total: Mutex::new(load::histogram()),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    println!(
        "soak: {} req/s for {} s, {} live tokens, churn {}/s, cache {}, AS latency {} ms, prefilled {} + {} tokens",
        args.rate,
        args.seconds,
        args.tokens,
        args.churn,
        args.cache_max_bytes,
        args.as_latency_ms,
        fill,
        args.tokens
    );
    let calls0 = fake.calls();
    let cpu0 = procs::cpu_ticks(pid).unwrap_or(0);
    let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let every = Duration::from_secs(args.every.max(1));
    let (mut sent, mut shed) = (0u64, 0u64);
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut lines = Vec::new();
    let (mut next_sample, mut next_line) = (start, start + every);
    let (mut line_done, mut line_calls, mut line_at) = (0u64, calls0, start);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now().min(end);
        let due = (args.rate * (now - start).as_secs_f64()) as u64;
        while sent < due {
            let intended = start + Duration::from_secs_f64(sent as f64 / args.rate);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                shed += 1;
                sent += 1;
                continue;
            };
            let index =
                args.churn * (intended - start).as_secs() + Rng::new(sent).below(args.tokens);
            sent += 1;
            let (mut client, template, shared) = (
                clients[(sent as usize) % clients.len()].clone(),
                template.clone(),
                shared.clone(),
            );
            tokio::spawn(async move {
                let token = load::token("soak", index);
                let sent_at = Instant::now();
                let result = load::call(&mut client, &template, &token, Expect::Allow).await;
                let latency = sent_at.elapsed();
                load::record(&mut shared.interval.lock().expect("histogram"), latency);
                load::record(&mut shared.total.lock().expect("histogram"), latency);
                if let Err(e) = result {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    shared.first_error.lock().expect("error").get_or_insert(e);
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        if now >= next_sample {
            rss.push((
                (now - start).as_secs_f64(),
                procs::memory(pid).map_or(0, |m| m.0),
            ));
            next_sample += Duration::from_secs(1);
        }
        if now >= next_line || now >= end {
            let done = shared.done.load(Ordering::Relaxed);
            let calls = fake.calls();
            let hist = std::mem::replace(
                &mut *shared.interval.lock().expect("histogram"),
                load::histogram(),
            );
            let line = json!({
                "elapsed_s": (now - start).as_secs(),
                "rate": (done - line_done) as f64 / (now - line_at).as_secs_f64().max(1e-9),
                "p50_us": hist.value_at_quantile(0.5),
                "p99_us": hist.value_at_quantile(0.99),
                "errors": shared.errors.load(Ordering::Relaxed),
                "shed": shed,
                "as_calls": calls - line_calls,
                "rss_mib": mib(procs::memory(pid).map_or(0, |m| m.0)),
            });
            println!(
                "t={:>5}s  rate {:>7.0}/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}  shed {}  AS calls {:>6}  RSS {:.1} MiB",
                (now - start).as_secs(),
                line["rate"].as_f64().unwrap_or(0.0),
                hist.value_at_quantile(0.5) as f64 / 1000.0,
                hist.value_at_quantile(0.99) as f64 / 1000.0,
                line["errors"],
                shed,
                calls - line_calls,
                line["rss_mib"].as_f64().unwrap_or(0.0)
            );
            lines.push(line);
            (line_done, line_calls, line_at) = (done, calls, now);
            next_line += every;
        }
        if now >= end {
            break;
        }
    }
    // Let the requests in flight finish (bounded).
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        permits.acquire_many(u32::try_from(args.max_in_flight.max(1)).unwrap_or(u32::MAX)),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let done = shared.done.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let lost = sent - shed - done;
    let as_calls = fake.calls() - calls0;
    let cpu = (procs::cpu_ticks(pid).unwrap_or(0) - cpu0) as f64 / ticks;
    let (_, hwm) = procs::memory(pid).unwrap_or_default();
    let window = (args.seconds as f64 / 3.0).min(60.0);
    let max_in = |from: f64, to: f64| {
        rss.iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    };
    let first = max_in(0.0, window);
    let last = max_in(args.seconds as f64 - window, f64::INFINITY);
    let growth = mib(last) - mib(first);
    let flat = growth <= args.rss_tolerance_mib;
    let total = shared.total.lock().expect("histogram").clone();
    let summary = json!({
        "seconds": elapsed, "sent": sent, "completed": done, "lost": lost, "shed": shed, "errors": errors,
        "first_error": *shared.first_error.lock().expect("error"),
        "rate": done as f64 / elapsed.max(1e-9),
        "p50_us": total.value_at_quantile(0.5), "p99_us": total.value_at_quantile(0.99),
        "p999_us": total.value_at_quantile(0.999), "max_us": total.max(),
        "as_calls": as_calls, "new_tokens": args.churn * args.seconds,
        "plugin_cpu_us_per_request": cpu * 1e6 / (done.max(1) as f64),
        "rss_first_window_mib": mib(first), "rss_last_window_mib": mib(last), "rss_window_s": window,
        "rss_growth_mib": growth, "hwm_mib": mib(hwm), "rss_flat": flat,
    });
    println!(
        "summary: {}",
        serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
    );
    if let Some(path) = &args.json {
        let (cpus, model) = procs::machine();
        let report = json!({
            "machine": {"cpus": cpus, "cpu_model": model},
            "settings": {"rate": args.rate, "seconds": args.seconds, "churn": args.churn, "tokens": args.tokens,
                         "connections": args.connections, "max_in_flight": args.max_in_flight,
                         "as_latency_ms": args.as_latency_ms, "cache_max_bytes": args.cache_max_bytes, "prefill": fill},
            "lines": lines, "rss_samples": rss, "summary": summary,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ok = errors == 0 && shed == 0 && lost == 0 && flat;
    if !ok {
        println!(
            "FAILED: errors {errors}, shed {shed}, unfinished {lost}, RSS growth {growth:.1} MiB (tolerance {})",
            args.rss_tolerance_mib
        );
    }
    drop(plugin);
    Ok(ok)
}
