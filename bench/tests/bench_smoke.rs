//! The benchmark tool still works: a tiny `phantom-bench run` against the
//! plugin binary and the echo baseline, with the fake AS's counts checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BENCH: &str = env!("CARGO_BIN_EXE_phantom-bench");

/// The plugin binary, built in this test's profile by the cargo running the
/// test. Cargo gives a test the paths of its own package's binaries only; and
/// building here (a no-op when it is fresh) means the run never meets a
/// missing binary on a clean clone, nor a stale one after the plugin changed.
/// The path is the one cargo reports, so `CARGO_TARGET_DIR` and
/// `--target-dir` need no special case.
fn plugin_binary() -> PathBuf {
    // The bench's binary sits in target/<profile directory>/.
    let profile = match Path::new(BENCH)
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
    {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory above {BENCH}"),
    };
    let output = Command::new(env!("CARGO"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--locked", "--profile", profile])
        .args([
            "--package",
            "tyk-phantom-token",
            "--bin",
            "tyk-phantom-token",
        ])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo build of the plugin failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "tyk-phantom-token"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no tyk-phantom-token executable")
}

#[test]
fn a_short_run_has_no_errors_and_introspects_as_expected() {
    let plugin = plugin_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(BENCH)
        .args(["run", "--workloads", "echo,hit-1,miss"])
        .arg("--plugin")
        .arg(&plugin)
        .args(["--seconds", "1", "--warmup", "0.2", "--rounds", "2"])
        .args(["--connections", "1", "--streams", "8"])
        .args(["--miss-latency-ms", "1"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["valid"], true, "{stdout}");
    let rows = report["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["workload"] == name)
            .unwrap_or_else(|| panic!("no {name} row in {stdout}"))
    };
    for name in ["echo", "hit-1", "miss"] {
        let r = row(name);
        assert_eq!(r["errors"], 0, "{name}: {stdout}");
        assert!(r["requests"].as_u64().unwrap() > 0, "{name}: {stdout}");
    }
    // One token: introspected once, then always served from the cache.
    let hit = row("hit-1");
    let calls = hit["as_calls"].as_u64().unwrap() + hit["as_calls_setup"].as_u64().unwrap();
    assert_eq!(calls, 1, "{stdout}");
    // Fresh tokens: one introspection per request.
    let miss = row("miss");
    assert_eq!(miss["as_calls"], miss["requests"], "{stdout}");
    // The echo baseline never reaches the AS, and the ratio was measured.
    assert_eq!(row("echo")["as_calls"], 0);
    let ratio = &report["ratios"][0];
    assert_eq!(ratio["pair"], "hit-1/echo");
    assert!(
        ratio["throughput_median"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
}

/// A tiny fleet run (Redis started by the tool itself): introspections are
/// shared across the replicas, a shared hit costs no AS call, and with
/// Redis killed every request is still answered, each replica on its own,
/// until Redis is back.
#[test]
fn a_short_fleet_run_shares_introspections_and_survives_redis_going_down() {
    let plugin = plugin_binary();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fleet.json");
    let output = Command::new(BENCH)
        .arg("fleet")
        .arg("--plugin")
        .arg(&plugin)
        .args(["--tokens", "300", "--concurrency", "8", "--streams", "8"])
        .args([
            "--as-latency-ms",
            "1",
            "--seconds",
            "0.5",
            "--warmup",
            "0.2",
        ])
        .args([
            "--rounds",
            "2",
            "--shared-hits",
            "100",
            "--hit-tokens",
            "50",
        ])
        .args(["--outage-seconds", "9", "--seal-iterations", "100"])
        // An unoptimised build beside other tests: Redis calls get more than
        // the default 75 ms before they count as Redis being slow.
        .args(["--plugin-env", "REDIS_TIMEOUT_MS=500"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["valid"], true, "{stdout}");
    let x = &report["extra"];
    // Every token went to all three replicas; the fleet asked the AS about
    // each about once.
    assert_eq!(x["spread"]["requests"], 900, "{stdout}");
    let per_token = x["spread"]["as_calls_per_token"].as_f64().unwrap();
    assert!((1.0..=1.05).contains(&per_token), "{stdout}");
    // Tokens another replica introspected: found in Redis, no AS call.
    // (An unoptimised build on a busy machine can miss Redis's call timeout
    // on a few writes; those tokens are introspected again, so not all.)
    let shared = &x["shared_hit"];
    let hits = shared["shared_lookups_hit"].as_f64().unwrap();
    assert!(hits >= 50.0, "{stdout}");
    assert!(
        shared["as_calls"].as_u64().unwrap() <= 100 - hits as u64,
        "{stdout}"
    );
    let rows = report["rows"].as_array().unwrap();
    for name in ["miss", "miss-no-redis", "miss-redis-down"] {
        let row = rows.iter().find(|r| r["workload"] == name).unwrap();
        assert_eq!(row["as_calls"], row["requests"], "{name}: {stdout}");
    }
    // Redis down: answered all the same, each replica introspecting alone,
    // and still after it was started again. (How soon the breakers close
    // is measured, not asserted: it depends on the build and the machine.)
    let outage = &x["outage"];
    assert_eq!(outage["errors"], 0, "{stdout}");
    assert!(outage["requests"].as_u64().unwrap() > 0, "{stdout}");
    let down = outage["windows"]["down"]["burst"]["as_calls_per_token"]
        .as_f64()
        .unwrap();
    assert!(down > 1.5, "{stdout}");
    assert!(outage["restarted_at"].as_f64().is_some(), "{stdout}");
}
