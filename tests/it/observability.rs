//! The admin endpoint (liveness, readiness, metrics) and trace continuity.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn livez_readyz_and_metrics_answer_on_the_admin_address() {
    let app = spawn_app_with(|s| s.admin = true).await;
    assert_eq!(app.admin_get("/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(app.admin_get("/readyz").await, (200, "ready\n".to_owned()));
    let (status, text) = app.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(app.admin_get("/nope").await.0, 404);
}

#[tokio::test]
async fn metrics_count_decisions_cache_results_and_introspections() {
    let app = Arc::new(spawn_app_with(|s| s.admin = true).await);
    app.fake_as.script(
        "m-active",
        Behaviour::Slow(
            Duration::from_millis(100),
            Box::new(Behaviour::Jwt(Claims::valid_for("ida", 600))),
        ),
    );
    app.fake_as.script("m-dead", Behaviour::NoContent);
    app.fake_as.script("m-broken", Behaviour::Status(500));

    let mut tasks = Vec::new();
    for _ in 0..5 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.get_with_token("m-active").await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(app.get_with_token("m-active").await.status(), 200);
    assert_eq!(app.get_with_token("m-dead").await.status(), 401);
    assert_eq!(app.get_with_token("m-dead").await.status(), 401);
    assert_eq!(app.get_with_token("m-broken").await.status(), 502);
    assert_eq!(app.send(ClientRequest::get("/")).await.status(), 401);

    let m = |series: &'static str| {
        let app = app.clone();
        async move { app.metric(series).await }
    };
    assert_eq!(
        m("phantom_decisions_total{outcome=\"allow\",status=\"200\"}").await,
        6.0
    );
    assert_eq!(
        m("phantom_decisions_total{outcome=\"invalid_token\",status=\"401\"}").await,
        2.0
    );
    assert_eq!(
        m("phantom_decisions_total{outcome=\"no_credentials\",status=\"401\"}").await,
        1.0
    );
    assert_eq!(
        m("phantom_decisions_total{outcome=\"as_error\",status=\"502\"}").await,
        1.0
    );
    assert_eq!(m("phantom_cache_lookups_total{result=\"miss\"}").await, 3.0);
    assert_eq!(
        m("phantom_cache_lookups_total{result=\"coalesced\"}").await,
        4.0
    );
    assert_eq!(m("phantom_cache_lookups_total{result=\"hit\"}").await, 1.0);
    assert_eq!(
        m("phantom_cache_lookups_total{result=\"negative_hit\"}").await,
        1.0
    );
    assert_eq!(
        m("phantom_introspections_total{result=\"active\"}").await,
        1.0
    );
    assert_eq!(
        m("phantom_introspections_total{result=\"inactive\"}").await,
        1.0
    );
    assert_eq!(
        m("phantom_introspections_total{result=\"bad_status\"}").await,
        1.0
    );
    assert_eq!(m("phantom_introspection_duration_seconds_count").await, 3.0);
    assert_eq!(m("phantom_introspections_in_flight").await, 0.0);
    assert_eq!(m("phantom_breaker_state").await, 0.0);
    assert_eq!(m("phantom_cache_entries").await, 2.0);
    assert!(m("phantom_cache_bytes").await > 500.0);

    // Label values never carry tokens.
    let (_, text) = app.admin_get("/metrics").await;
    assert!(!text.contains("m-active") && !text.contains("m-dead"));
}

#[tokio::test]
async fn readiness_drops_as_soon_as_shutdown_begins() {
    let mut app = spawn_app_with(|s| s.admin = true).await;
    app.fake_as.script(
        "draining",
        Behaviour::Slow(
            Duration::from_millis(500),
            Box::new(Behaviour::Jwt(Claims::valid_for("jo", 600))),
        ),
    );
    let admin = app.admin.unwrap();
    let gateway =
        Arc::new(crate::support::fake_tyk::Gateway::connect(app.addr, Api::default()).await);
    let in_flight = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            gateway
                .request(ClientRequest::get("/").bearer("draining"))
                .await
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    app.shutdown().await.unwrap();
    assert_eq!(probe.await.unwrap(), 503, "not ready while draining");
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the call in flight still finished"
    );
}

#[tokio::test]
async fn the_trace_from_tyk_is_continued_on_the_introspection_request() {
    let app = spawn_app().await;
    app.fake_as
        .script("traced", Behaviour::Jwt(Claims::valid_for("kit", 600)));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let outcome = app
        .send(ClientRequest::get("/").bearer("traced").traceparent(parent))
        .await;
    assert_eq!(outcome.status(), 200);
    let request = &app.fake_as.requests()[0];
    let sent = request
        .header("traceparent")
        .expect("traceparent on the AS request");
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(sent.ends_with("-01"));
    assert!(!sent.contains("00f067aa0ba902b7"), "a new span id of ours");

    app.fake_as
        .script("untraced", Behaviour::Jwt(Claims::valid_for("kit", 600)));
    app.get_with_token("untraced").await;
    assert!(app.fake_as.requests()[1].header("traceparent").is_none());
    app.fake_as
        .script("bad-trace", Behaviour::Jwt(Claims::valid_for("kit", 600)));
    app.send(
        ClientRequest::get("/")
            .bearer("bad-trace")
            .traceparent("garbage"),
    )
    .await;
    assert!(app.fake_as.requests()[2].header("traceparent").is_none());
}
