//! The outage step of `phantom-bench fleet`: new tokens keep being spread
//! over the replicas (all at once, one after another, to one replica only)
//! with cached tokens mixed in, while Redis is killed a third of the way in
//! and started again on the same port two thirds in. Every request must
//! still be answered correctly; the AS calls per token, the misses' latency
//! and the time until every replica's breaker has closed again are reported
//! per window: before, killing (the last second before the kill: these
//! tokens' requests may straddle it), down, recovering (restarted, some
//! breaker still not closed), recovered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::fleet::{FleetBench, phase_json};
use crate::load::Client;
use crate::redis_proc::RedisProcess;
use crate::scrape;
use crate::spread::{self, MODES, Mode, Spread, WINDOWS};

pub const WINDOW_NAMES: [&str; WINDOWS] = ["before", "killing", "down", "recovering", "recovered"];

/// Breaker state of each replica (0 closed, 1 open, 2 half-open; -1 when
/// the metrics did not answer).
async fn breakers(bench: &FleetBench) -> Vec<f64> {
    let mut states = Vec::new();
    for r in &bench.replicas {
        states.push(match scrape::metrics(r.admin).await {
            Ok(text) => scrape::value(&text, "phantom_shared_cache_breaker_state", ""),
            Err(_) => -1.0,
        });
    }
    states
}

pub async fn run(bench: &mut FleetBench, redis: &mut RedisProcess) -> Result<(), String> {
    let total = Duration::from_secs_f64(bench.args.outage_seconds.max(3.0));
    let window = Arc::new(AtomicU8::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let lists: Vec<Vec<Client>> = bench.replicas.iter().map(|r| r.clients.clone()).collect();
    let pids: Vec<u32> = bench.replicas.iter().map(|r| r.pid()).collect();
    let start = Instant::now();
    let spread = Spread {
        kind: "outage",
        modes: vec![Mode::Burst, Mode::Sequential, Mode::Single, Mode::Hit],
        count: None,
        deadline: Some(start + total),
        concurrency: bench.args.concurrency,
        old: ("fleet", bench.args.tokens),
        window: window.clone(),
        requests: requests.clone(),
        errors: errors.clone(),
    };
    let traffic = tokio::spawn(async move { spread::run(&lists, spread).await });
    let (mut killed_at, mut restarted_at, mut recovered_at) = (None, None, None);
    let mut timeline = Vec::new();
    let mut last = (0u64, 0u64, bench.fake.calls(), bench.cpu(&pids));
    let mut next_tick = start + Duration::from_secs(1);
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = start.elapsed();
        if killed_at.is_none() && t + Duration::from_secs(1) >= total / 3 {
            window.store(1, Ordering::SeqCst);
        }
        if killed_at.is_none() && t >= total / 3 {
            window.store(2, Ordering::SeqCst);
            redis.kill();
            killed_at = Some(t);
        }
        if restarted_at.is_none() && t >= total * 2 / 3 {
            tokio::task::block_in_place(|| redis.restart())?;
            window.store(3, Ordering::SeqCst);
            restarted_at = Some(start.elapsed());
        }
        if restarted_at.is_some() && recovered_at.is_none() {
            let states = breakers(bench).await;
            if states.iter().all(|&s| s == 0.0) {
                window.store(4, Ordering::SeqCst);
                recovered_at = Some(start.elapsed());
            }
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let now = (
                requests.load(Ordering::Relaxed),
                errors.load(Ordering::Relaxed),
                bench.fake.calls(),
                bench.cpu(&pids),
            );
            let states = breakers(bench).await;
            let line = json!({
                "t": t.as_secs_f64(),
                "window": WINDOW_NAMES[usize::from(window.load(Ordering::SeqCst)).min(WINDOWS - 1)],
                "requests": now.0 - last.0,
                "errors": now.1 - last.1,
                "as_calls": now.2 - last.2,
                "plugin_cpu_us_per_request": (now.3 - last.3) * 1e6 / (now.0 - last.0).max(1) as f64,
                "breakers": states,
            });
            println!("outage {line}");
            timeline.push(line);
            last = now;
        }
    }
    let outcome = traffic.await.map_err(|e| format!("outage traffic: {e}"))?;
    let mut windows = Map::new();
    for (w, name) in WINDOW_NAMES.iter().enumerate() {
        let mut modes = Map::new();
        for mode in MODES {
            let mut cell = phase_json(&outcome.cells[w][mode.index()]);
            if mode != Mode::Hit {
                let (tokens, calls, over) =
                    bench.as_calls(&outcome.tokens, "outage", mode, Some(w));
                if let Value::Object(map) = &mut cell {
                    map.insert("tokens".into(), json!(tokens));
                    map.insert("as_calls".into(), json!(calls));
                    map.insert(
                        "as_calls_per_token".into(),
                        json!(calls as f64 / tokens.max(1) as f64),
                    );
                    map.insert("tokens_with_more_than_one_call".into(), json!(over));
                }
            }
            modes.insert(mode.name().into(), cell);
        }
        windows.insert((*name).into(), Value::Object(modes));
    }
    // Misses while Redis is down, as a row beside `miss` and
    // `miss-no-redis`: the breaker opens within the warm-up.
    redis.kill();
    let at = 2 % bench.replicas.len();
    let replica = bench.replicas.remove(at);
    let tokens = Arc::new(crate::load::Tokens::fresh("miss-down", 0));
    bench.timed_row("miss-redis-down", &replica, tokens).await;
    bench.replicas.insert(at, replica);
    let all = outcome.total();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    bench.extra.insert(
        "outage".into(),
        json!({
            "seconds": total.as_secs_f64(),
            "killed_at": secs(killed_at),
            "restarted_at": secs(restarted_at),
            "recovered_at": secs(recovered_at),
            "recovery_seconds": restarted_at.zip(recovered_at).map(|(a, b)| (b - a).as_secs_f64()),
            "requests": all.requests,
            "errors": all.errors,
            "first_error": all.first_error,
            "windows": windows,
            "timeline": timeline,
        }),
    );
    Ok(())
}
