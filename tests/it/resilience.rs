//! Staying correct when the AS or the load misbehaves: the in-flight bound, the
//! breaker, the single retry, and background revalidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::fake_as::now;
use crate::support::*;

async fn concurrently(
    app: &Arc<TestApp>,
    tokens: Vec<String>,
) -> Vec<(u16, Duration, Option<String>)> {
    let mut tasks = Vec::new();
    for token in tokens {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = app.get_with_token(&token).await;
            let retry = outcome.response().header("Retry-After").map(str::to_owned);
            (outcome.status(), started.elapsed(), retry)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn introspections_in_flight_are_bounded_and_the_excess_gets_a_fast_503() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.env("MAX_INFLIGHT_INTROSPECTIONS", "2")
                .env("INFLIGHT_WAIT_SECONDS", "0.05");
        })
        .await,
    );
    app.fake_as.script_default(Behaviour::Slow(
        Duration::from_millis(600),
        Box::new(Behaviour::Jwt(Claims::valid_for("ann", 600))),
    ));
    let results = concurrently(&app, (0..20).map(|n| format!("burst-{n}")).collect()).await;

    let allowed = results.iter().filter(|r| r.0 == 200).count();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(allowed, 2, "{results:?}");
    assert_eq!(shed.len(), 18, "{results:?}");
    for (_, took, retry_after) in shed {
        assert!(
            *took < Duration::from_millis(400),
            "no pile-up: shed after {took:?}"
        );
        assert!(retry_after.is_some());
    }
    assert_eq!(app.fake_as.calls(), 2);
    assert!(app.fake_as.max_in_flight() <= 2);
}

#[tokio::test]
async fn a_flood_of_distinct_junk_tokens_cannot_exceed_the_bound_at_the_as() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.env("MAX_INFLIGHT_INTROSPECTIONS", "8")
                .env("INFLIGHT_WAIT_SECONDS", "0.2");
        })
        .await,
    );
    app.fake_as.script_default(Behaviour::Slow(
        Duration::from_millis(30),
        Box::new(Behaviour::NoContent),
    ));
    let results = concurrently(
        &app,
        (0..400).map(|n| format!("junk-{n}-{}", n * 7919)).collect(),
    )
    .await;
    assert!(
        app.fake_as.max_in_flight() <= 8,
        "{}",
        app.fake_as.max_in_flight()
    );
    assert!(
        results.iter().all(|r| r.0 == 401 || r.0 == 503),
        "only denials"
    );
    assert!(
        results.iter().filter(|r| r.0 == 401).count() > 8,
        "the bound delays, it does not refuse all"
    );
    // Repeating the same junk hits the negative cache, not the AS.
    let calls = app.fake_as.calls();
    assert_eq!(app.get_with_token("junk-0-0").await.status(), 401);
    assert!(app.fake_as.calls() <= calls + 1);
}

#[tokio::test]
async fn a_down_as_trips_the_breaker_so_denials_come_back_at_once() {
    let app = spawn_app_with(|s| {
        s.env("TIMEOUT_SECONDS", "0.3")
            .env("BREAKER_FAILURES", "3")
            .env("BREAKER_OPEN_SECONDS", "1");
    })
    .await;
    // Blackholed: every call waits out the budget.
    app.fake_as.script_default(Behaviour::Slow(
        Duration::from_secs(30),
        Box::new(Behaviour::NoContent),
    ));
    for n in 0..3 {
        let started = Instant::now();
        assert_eq!(app.get_with_token(&format!("down-{n}")).await.status(), 504);
        assert!(started.elapsed() >= Duration::from_millis(280));
    }
    for n in 3..8 {
        let started = Instant::now();
        let outcome = app.get_with_token(&format!("down-{n}")).await;
        let took = started.elapsed();
        assert_eq!(outcome.status(), 503);
        assert!(
            took < Duration::from_millis(100),
            "breaker open: answered in {took:?}"
        );
        let retry: u64 = outcome
            .response()
            .header("Retry-After")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=1).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(app.fake_as.calls(), 3, "no calls while open");

    // The AS recovers; after the open period one probe closes the breaker.
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("ben", 600)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("after-recovery").await.status(), 200);
    assert_eq!(app.get_with_token("after-recovery-2").await.status(), 200);
}

#[tokio::test]
async fn a_failed_probe_keeps_the_breaker_open() {
    let url = crate::support::fake_as::closed_port_url().await;
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_URL", &url)
            .env("BREAKER_FAILURES", "1")
            .env("BREAKER_OPEN_SECONDS", "0.3");
    })
    .await;
    assert_eq!(app.get_with_token("a").await.status(), 503);
    let started = Instant::now();
    assert_eq!(app.get_with_token("b").await.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        app.get_with_token("probe").await.status(),
        503,
        "the probe fails"
    );
    let outcome = app.get_with_token("c").await;
    assert_eq!(outcome.status(), 503);
    assert_eq!(outcome.response().header("Retry-After"), Some("1"));
}

/// The plugin against a TLS fake AS, trusting its CA.
async fn spawn_app_over_tls(dir: &std::path::Path) -> TestApp {
    let fake_as = FakeAs::start_tls().await;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, fake_as.ca_pem().unwrap()).unwrap();
    let ca = ca.display().to_string();
    spawn_app_against(fake_as, |s| {
        s.env("INTROSPECTION_CA_FILE", &ca);
    })
    .await
}

#[tokio::test]
async fn a_connection_cut_before_the_request_is_written_is_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    // Cut during the TLS handshake: not a byte of the request has gone out.
    let app = spawn_app_over_tls(dir.path()).await;
    app.fake_as
        .script("cut-once", Behaviour::Jwt(Claims::valid_for("cy", 600)));
    app.fake_as.drop_next_connections(1);
    assert_eq!(app.get_with_token("cut-once").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("cut-once"), 1);
    assert_eq!(
        app.fake_as.connections(),
        2,
        "one retry on a new connection"
    );

    let app = spawn_app_over_tls(dir.path()).await;
    app.fake_as.drop_next_connections(3);
    let outcome = app.get_with_token("cut-thrice").await;
    assert_eq!(outcome.status(), 503, "at most one retry");
    assert!(outcome.response().header("Retry-After").is_some());
    assert_eq!(app.fake_as.connections(), 2);
    assert_eq!(app.fake_as.calls(), 0);
}

#[tokio::test]
async fn a_reset_after_the_request_was_sent_is_not_retried() {
    let app = spawn_app().await;
    app.fake_as.script_sequence(
        "reset-once",
        vec![
            Behaviour::Reset,
            Behaviour::Jwt(Claims::valid_for("cy", 600)),
        ],
    );
    let outcome = app.get_with_token("reset-once").await;
    assert_eq!(outcome.status(), 503);
    assert!(outcome.response().header("Retry-After").is_some());
    assert_eq!(
        app.fake_as.calls_for("reset-once"),
        1,
        "the AS had the request"
    );
}

#[tokio::test]
async fn a_failure_in_the_middle_of_the_answer_is_not_retried() {
    let app = spawn_app().await;
    app.fake_as.script_sequence(
        "cut-short",
        vec![
            Behaviour::Truncated,
            Behaviour::Jwt(Claims::valid_for("cy", 600)),
        ],
    );
    assert_eq!(app.get_with_token("cut-short").await.status(), 503);
    assert_eq!(app.fake_as.calls_for("cut-short"), 1);
}

#[tokio::test]
async fn an_idle_pooled_connection_reset_by_the_as_does_not_fail_the_next_request() {
    let app = spawn_app().await;
    app.fake_as.script(
        "before-idle-reset",
        Behaviour::ThenResetIdle(Box::new(Behaviour::Jwt(Claims::valid_for("cy", 600)))),
    );
    app.fake_as.script(
        "after-idle-reset",
        Behaviour::Jwt(Claims::valid_for("cy", 600)),
    );
    assert_eq!(app.get_with_token("before-idle-reset").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(app.get_with_token("after-idle-reset").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("after-idle-reset"), 1);
    assert_eq!(app.fake_as.connections(), 2);
}

#[tokio::test]
async fn http_errors_and_timeouts_are_not_retried() {
    let app = spawn_app_with(|s| {
        s.env("TIMEOUT_SECONDS", "0.3");
    })
    .await;
    app.fake_as.script_sequence(
        "error-then-ok",
        vec![
            Behaviour::Status(500),
            Behaviour::Jwt(Claims::valid_for("di", 600)),
        ],
    );
    assert_eq!(app.get_with_token("error-then-ok").await.status(), 502);
    assert_eq!(app.fake_as.calls_for("error-then-ok"), 1);
    app.fake_as.script(
        "slow",
        Behaviour::Slow(Duration::from_secs(5), Box::new(Behaviour::NoContent)),
    );
    assert_eq!(app.get_with_token("slow").await.status(), 504);
    assert_eq!(app.fake_as.calls_for("slow"), 1);
}

#[tokio::test]
async fn revalidation_makes_a_revocation_take_effect_within_the_bound() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1");
    })
    .await;
    app.fake_as
        .script("revocable", Behaviour::Jwt(Claims::valid_for("eli", 600)));
    assert_eq!(app.get_with_token("revocable").await.status(), 200);
    app.fake_as.script("revocable", Behaviour::NoContent);
    assert_eq!(
        app.get_with_token("revocable").await.status(),
        200,
        "fresh entry: no revalidation yet"
    );
    assert_eq!(app.fake_as.calls(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Served from the cache while the background revalidation runs.
    assert_eq!(app.get_with_token("revocable").await.status(), 200);
    wait_for_calls(&app, 2).await;
    assert_eq!(
        app.get_with_token("revocable").await.status(),
        401,
        "revoked"
    );
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn revalidation_refreshes_the_jwt() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1");
    })
    .await;
    app.fake_as
        .script("refreshed", Behaviour::Jwt(Claims::valid_for("fay", 600)));
    let first = app.get_with_token("refreshed").await.upstream.unwrap();
    let old = first.header("Authorization").unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.get_with_token("refreshed").await;
    wait_for_calls(&app, 2).await;
    let new = app.fake_as.jwt_for("refreshed").unwrap();
    let later = app.get_with_token("refreshed").await.upstream.unwrap();
    assert_eq!(
        later.header("Authorization"),
        Some(format!("Bearer {new}").as_str())
    );
    assert_ne!(later.header("Authorization"), Some(old.as_str()));
}

#[tokio::test]
async fn an_unreachable_as_during_revalidation_keeps_serving_but_never_past_exp() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1")
            .env("CLOCK_SKEW_SECONDS", "0");
    })
    .await;
    let mut claims = Claims::valid_for("gil", 0);
    claims.exp = Some(now() + 3);
    app.fake_as.script("outage", Behaviour::Jwt(claims));
    assert_eq!(app.get_with_token("outage").await.status(), 200);
    app.fake_as.script("outage", Behaviour::Status(503));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("outage").await.status(), 200);
    wait_for_calls(&app, 2).await;
    assert_eq!(
        app.get_with_token("outage").await.status(),
        200,
        "the failure keeps the cached JWT"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        app.get_with_token("outage").await.status(),
        503,
        "past exp it is asked again"
    );
}

#[tokio::test]
async fn a_revalidation_that_finds_the_token_inactive_keeps_it_only_for_the_negative_ttl() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1")
            .env("NEGATIVE_CACHE_SECONDS", "0");
    })
    .await;
    app.fake_as.script(
        "revoked-later",
        Behaviour::Jwt(Claims::valid_for("hal", 600)),
    );
    assert_eq!(app.get_with_token("revoked-later").await.status(), 200);
    app.fake_as.script("revoked-later", Behaviour::NoContent);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("revoked-later").await.status(), 200);
    wait_for_calls(&app, 2).await;
    // NEGATIVE_CACHE_SECONDS=0: the inactive answer is not kept, so each
    // request asks again (not the rest of the old entry's life).
    assert_eq!(app.get_with_token("revoked-later").await.status(), 401);
    assert_eq!(app.fake_as.calls(), 3);
    assert_eq!(app.get_with_token("revoked-later").await.status(), 401);
    assert_eq!(app.fake_as.calls(), 4);
}

#[tokio::test]
async fn a_refreshed_answer_with_a_longer_life_is_kept_longer() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "2");
    })
    .await;
    let mut short = Claims::valid_for("ian", 600);
    short.max_age = Some(3);
    app.fake_as.script_sequence(
        "lengthened",
        vec![
            Behaviour::Jwt(short),
            Behaviour::Jwt(Claims::valid_for("ian", 600)),
        ],
    );
    let started = Instant::now();
    assert_eq!(app.get_with_token("lengthened").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.get_with_token("lengthened").await.status(), 200);
    wait_for_calls(&app, 2).await;
    // Past the first answer's max-age: the refreshed entry (no max-age) lives on.
    tokio::time::sleep(Duration::from_millis(3300).saturating_sub(started.elapsed())).await;
    assert_eq!(app.get_with_token("lengthened").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2, "served from the refreshed entry");
}

/// Keeps every introspection slot busy with distinct junk tokens (answered
/// slowly by the fake AS's default script) until dropped.
struct Flood(Vec<tokio::task::JoinHandle<()>>);

impl Flood {
    async fn start(app: &Arc<TestApp>, slots: usize) -> Flood {
        let before = app.fake_as.max_in_flight();
        let tasks = (0..slots * 2)
            .map(|lane| {
                let app = app.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        app.get_with_token(&format!("flood-{lane}-{n}")).await;
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(3);
        while app.fake_as.max_in_flight() < slots.max(before + 1) {
            assert!(
                Instant::now() < deadline,
                "the flood never filled the slots"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Flood(tasks)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The first status other than 200 for `token`, asking every 100 ms until
/// `deadline`, with when it came.
async fn first_refusal(app: &TestApp, token: &str, deadline: Instant) -> Option<(u16, Instant)> {
    while Instant::now() < deadline {
        let status = app.get_with_token(token).await.status();
        if status != 200 {
            return Some((status, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn revalidation_still_runs_while_every_slot_is_busy() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.env("REVALIDATE_AFTER_SECONDS", "1")
                .env("MAX_INFLIGHT_INTROSPECTIONS", "2")
                .env("INFLIGHT_WAIT_SECONDS", "0.05")
                .env("TIMEOUT_SECONDS", "10");
        })
        .await,
    );
    app.fake_as.script(
        "busy-revoked",
        Behaviour::Jwt(Claims::valid_for("ivo", 600)),
    );
    let fetched = Instant::now();
    assert_eq!(app.get_with_token("busy-revoked").await.status(), 200);
    app.fake_as.script_default(Behaviour::Slow(
        Duration::from_secs(5),
        Box::new(Behaviour::NoContent),
    ));
    let _flood = Flood::start(&app, 2).await;
    app.fake_as.script("busy-revoked", Behaviour::NoContent);

    let refused = first_refusal(&app, "busy-revoked", fetched + Duration::from_secs(4)).await;
    let (status, at) = refused.expect("a revoked token is refused while the slots are busy");
    assert_eq!(status, 401);
    assert!(at - fetched < Duration::from_secs(4));
}

#[tokio::test]
async fn an_entry_overdue_past_the_bound_is_introspected_on_the_request_path() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.env("REVALIDATE_AFTER_SECONDS", "1")
                .env("MAX_INFLIGHT_INTROSPECTIONS", "2")
                .env("INFLIGHT_WAIT_SECONDS", "0.05")
                .env("TIMEOUT_SECONDS", "10");
        })
        .await,
    );
    // Tokens whose revalidations take the slots kept for revalidation.
    let holders: Vec<String> = (0..tyk_phantom_token::introspect::RESERVED_REVALIDATIONS)
        .map(|n| format!("holder-{n}"))
        .collect();
    for holder in &holders {
        app.fake_as
            .script(holder, Behaviour::Jwt(Claims::valid_for("joe", 600)));
        assert_eq!(app.get_with_token(holder).await.status(), 200);
    }
    app.fake_as
        .script("starved", Behaviour::Jwt(Claims::valid_for("jon", 600)));
    let fetched = Instant::now();
    assert_eq!(app.get_with_token("starved").await.status(), 200);
    for holder in &holders {
        app.fake_as.script(
            holder,
            Behaviour::Slow(
                Duration::from_secs(8),
                Box::new(Behaviour::Jwt(Claims::valid_for("joe", 600))),
            ),
        );
    }
    app.fake_as.script_default(Behaviour::Slow(
        Duration::from_secs(5),
        Box::new(Behaviour::NoContent),
    ));
    let _flood = Flood::start(&app, 2).await;
    app.fake_as.script("starved", Behaviour::NoContent);

    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(fetched.elapsed())).await;
    for holder in &holders {
        assert_eq!(app.get_with_token(holder).await.status(), 200);
    }
    let deadline = fetched + Duration::from_secs(5);
    let refused = first_refusal(&app, "starved", deadline).await;
    let (status, at) = refused.expect("an overdue entry is not served past the bound");
    // No slot for the request either: the answer a miss gets under overload.
    assert!(status == 503 || status == 401, "{status}");
    assert!(
        at - fetched >= Duration::from_secs(2),
        "not before the bound"
    );
}

#[tokio::test]
async fn a_junk_flood_holds_no_more_memory_than_cache_max_bytes() {
    /// Resident bytes of one inactive answer in the cache, measured with
    /// `phantom-bench cache-memory --entries 500000` (see
    /// `NEGATIVE_ENTRY_BYTES` in src/authz.rs and docs/performance.md).
    const MEASURED_NEGATIVE_ENTRY_BYTES: u64 = 403;
    const MAX_BYTES: u64 = 64 * 1024;
    let app = Arc::new(
        spawn_app_with(|s| {
            s.env("CACHE_MAX_BYTES", "64KiB")
                .env("NEGATIVE_CACHE_SECONDS", "600");
            s.admin = true;
        })
        .await,
    );
    let mut lanes = Vec::new();
    for lane in 0..8 {
        let app = app.clone();
        lanes.push(tokio::spawn(async move {
            for n in 0..250 {
                let status = app
                    .get_with_token(&format!("junk-{lane}-{n}-{}", n * 7919))
                    .await
                    .status();
                assert_eq!(status, 401);
            }
        }));
    }
    for lane in lanes {
        lane.await.unwrap();
    }
    assert_eq!(app.fake_as.calls(), 2000);
    let bytes = app.metric("phantom_cache_bytes").await as u64;
    let entries = app.metric("phantom_cache_entries").await as u64;
    assert!(entries > 0);
    assert!(bytes <= MAX_BYTES, "{bytes}");
    assert!(
        entries * MEASURED_NEGATIVE_ENTRY_BYTES <= MAX_BYTES,
        "{entries} inactive answers hold about {} bytes",
        entries * MEASURED_NEGATIVE_ENTRY_BYTES
    );
}

async fn wait_for_calls(app: &TestApp, calls: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while app.fake_as.calls() < calls {
        assert!(Instant::now() < deadline, "the background call never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the answer land in the cache.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
