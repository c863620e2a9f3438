//! Faults of the authorization server: each has its status, none is reported as
//! an invalid token, none leaks the AS's URL, its body or the token, and none
//! is cached.

use std::time::{Duration, Instant};

use crate::support::fake_as::closed_port_url;
use crate::support::fake_tyk::template_body;
use crate::support::*;

struct Case {
    behaviour: Behaviour,
    status: u16,
    message: &'static str,
    retry_after: bool,
}

fn cases() -> Vec<Case> {
    let bad = |behaviour| Case {
        behaviour,
        status: 502,
        message: "Authorization server error",
        retry_after: false,
    };
    vec![
        bad(Behaviour::Status(401)),
        bad(Behaviour::Status(403)),
        bad(Behaviour::Status(404)),
        bad(Behaviour::Status(500)),
        bad(Behaviour::Status(302)),
        bad(Behaviour::Garbage(
            "<html><body>Internal detail page</body></html>",
        )),
        bad(Behaviour::Garbage(r#"{"active":true,"sub":"x"}"#)),
        Case {
            behaviour: Behaviour::Status(503),
            status: 503,
            message: "Authorization server unavailable",
            retry_after: true,
        },
        Case {
            behaviour: Behaviour::Reset,
            status: 503,
            message: "Authorization server unavailable",
            retry_after: true,
        },
        Case {
            behaviour: Behaviour::Slow(Duration::from_millis(1500), Box::new(Behaviour::NoContent)),
            status: 504,
            message: "Authorization server timed out",
            retry_after: false,
        },
    ]
}

fn assert_fault(
    outcome: &Outcome,
    status: u16,
    message: &str,
    retry_after: bool,
    fake_as_url: &str,
    token: &str,
) {
    let response = outcome.response();
    assert_eq!(response.status, status, "{:?}", response);
    assert_eq!(response.body, template_body(message));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(
        response.header("Retry-After").is_some(),
        retry_after,
        "{:?}",
        response.headers
    );
    assert!(
        response.header("WWW-Authenticate").is_none(),
        "an AS fault is not a token problem"
    );
    assert!(outcome.upstream.is_none());
    assert!(
        outcome.events.is_empty(),
        "AS faults do not fire AuthFailure"
    );
    let everything = format!("{:?} {}", response.headers, response.text());
    for leak in [
        fake_as_url,
        "127.0.0.1",
        "fake AS",
        "Internal detail",
        token,
    ] {
        assert!(
            !everything.contains(leak),
            "response leaks {leak:?}: {everything}"
        );
    }
}

#[tokio::test]
async fn every_as_fault_gets_its_own_status() {
    let app = spawn_app().await;
    for (n, case) in cases().into_iter().enumerate() {
        let token = format!("fault-token-{n}");
        app.fake_as.script(&token, case.behaviour);
        let outcome = app.get_with_token(&token).await;
        assert_fault(
            &outcome,
            case.status,
            case.message,
            case.retry_after,
            &app.fake_as.url(),
            &token,
        );
    }
}

#[tokio::test]
async fn an_unreachable_as_is_503_with_retry_after() {
    let url = closed_port_url().await;
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_URL", &url)
            .env("RETRY_AFTER_SECONDS", "7");
    })
    .await;
    let outcome = app.get_with_token("any-token").await;
    assert_fault(
        &outcome,
        503,
        "Authorization server unavailable",
        true,
        &url,
        "any-token",
    );
    assert_eq!(outcome.response().header("Retry-After"), Some("7"));
}

#[tokio::test]
async fn the_time_budget_bounds_a_slow_as() {
    let app = spawn_app_with(|s| {
        s.env("TIMEOUT_SECONDS", "0.3");
    })
    .await;
    app.fake_as.script(
        "slow-token",
        Behaviour::Slow(Duration::from_secs(5), Box::new(Behaviour::NoContent)),
    );
    let started = Instant::now();
    let outcome = app.get_with_token("slow-token").await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.status(), 504);
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(2500),
        "budget not enforced: {elapsed:?}"
    );
}

#[tokio::test]
async fn faults_are_not_cached_so_recovery_is_immediate() {
    let app = spawn_app().await;
    app.fake_as.script("flaky-token", Behaviour::Status(500));
    assert_eq!(app.get_with_token("flaky-token").await.status(), 502);
    app.fake_as.script("flaky-token", Behaviour::Status(503));
    assert_eq!(app.get_with_token("flaky-token").await.status(), 503);
    app.fake_as.script(
        "flaky-token",
        Behaviour::Jwt(Claims::valid_for("gina", 600)),
    );
    let recovered = app.get_with_token("flaky-token").await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(app.fake_as.calls_for("flaky-token"), 3);
}

#[tokio::test]
async fn an_oversized_answer_is_a_fault_not_a_token() {
    let app = spawn_app_with(|s| {
        s.env("MAX_JWT_BYTES", "1KiB");
    })
    .await;
    let mut claims = Claims::valid_for("henry", 600);
    claims.extra = serde_json::json!({ "blob": "x".repeat(2048) });
    app.fake_as.script("huge-jwt", Behaviour::Jwt(claims));
    let outcome = app.get_with_token("huge-jwt").await;
    assert_fault(
        &outcome,
        502,
        "Authorization server error",
        false,
        &app.fake_as.url(),
        "huge-jwt",
    );
}

#[tokio::test]
async fn fault_matrix_then_immediate_recovery() {
    let app = spawn_app_with(|s| {
        s.env("TIMEOUT_SECONDS", "0.3");
    })
    .await;
    let url = app.fake_as.url();
    let token = "matrix-token";
    let check = |outcome: &Outcome, status: u16| {
        let response = outcome.response();
        assert_eq!(response.status, status, "{response:?}");
        assert_ne!(response.status, 401);
        let text = format!("{:?} {}", response.headers, response.text());
        for leak in [url.as_str(), "127.0.0.1", token, "fake AS", "<html"] {
            assert!(!text.contains(leak), "leaks {leak:?}: {text}");
        }
    };

    app.fake_as.go_down();
    check(&app.get_with_token(token).await, 503);
    app.fake_as.come_up().await;
    for (behaviour, status) in [
        (
            Behaviour::Slow(Duration::from_secs(2), Box::new(Behaviour::NoContent)),
            504,
        ),
        (Behaviour::Status(500), 502),
        (Behaviour::Status(503), 503),
        (Behaviour::Reset, 503),
        (Behaviour::Garbage("<html>upstream trouble</html>"), 502),
        (Behaviour::Status(401), 502),
    ] {
        app.fake_as.script(token, behaviour);
        check(&app.get_with_token(token).await, status);
    }
    // Recovered: the very next request succeeds.
    app.fake_as
        .script(token, Behaviour::Jwt(Claims::valid_for("max", 600)));
    assert_eq!(app.get_with_token(token).await.status(), 200);
}
