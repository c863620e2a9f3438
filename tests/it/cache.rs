//! Caching: hits, coalescing, expiry, negative caching, and what is read from
//! the AS's `Cache-Control`.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake_as::{NO_STORE_HEADERS, now};
use crate::support::*;

#[tokio::test]
async fn twenty_sequential_requests_make_one_as_call() {
    let app = spawn_app().await;
    app.fake_as
        .script("hot-token", Behaviour::Jwt(Claims::valid_for("ivan", 600)));
    let jwt_header = |o: &Outcome| {
        o.upstream
            .as_ref()
            .and_then(|u| u.header("Authorization"))
            .map(str::to_owned)
    };
    let first = app.get_with_token("hot-token").await;
    for _ in 1..20 {
        let outcome = app.get_with_token("hot-token").await;
        assert_eq!(outcome.status(), 200);
        assert_eq!(jwt_header(&outcome), jwt_header(&first));
    }
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn no_store_and_pragma_from_the_as_do_not_switch_the_cache_off() {
    let app = spawn_app().await;
    app.fake_as.always_send(NO_STORE_HEADERS);
    app.fake_as.script(
        "no-store-token",
        Behaviour::Jwt(Claims::valid_for("ivy", 600)),
    );
    for _ in 0..20 {
        assert_eq!(app.get_with_token("no-store-token").await.status(), 200);
    }
    assert_eq!(app.fake_as.calls(), 1);

    // Inactive answers keep their own short life, whatever the headers.
    app.fake_as.script("no-store-dead", Behaviour::NoContent);
    for _ in 0..5 {
        assert_eq!(app.get_with_token("no-store-dead").await.status(), 401);
    }
    assert_eq!(app.fake_as.calls_for("no-store-dead"), 1);
}

#[tokio::test]
async fn honor_cache_control_no_store_makes_every_request_introspect() {
    let app = spawn_app_with(|s| {
        s.env("HONOR_CACHE_CONTROL_NO_STORE", "true");
    })
    .await;
    app.fake_as.always_send(NO_STORE_HEADERS);
    app.fake_as.script(
        "strict-token",
        Behaviour::Jwt(Claims::valid_for("ida", 600)),
    );
    for _ in 0..20 {
        assert_eq!(app.get_with_token("strict-token").await.status(), 200);
    }
    assert_eq!(app.fake_as.calls(), 20);
}

#[tokio::test]
async fn a_positive_max_age_still_caps_the_cache_life_beside_no_store() {
    let app = spawn_app().await;
    app.fake_as.always_send(NO_STORE_HEADERS);
    let mut claims = Claims::valid_for("ike", 600);
    claims.max_age = Some(1);
    app.fake_as
        .script("capped-no-store", Behaviour::Jwt(claims));
    assert_eq!(app.get_with_token("capped-no-store").await.status(), 200);
    assert_eq!(app.get_with_token("capped-no-store").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("capped-no-store").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn max_age_zero_still_means_do_not_cache() {
    let app = spawn_app().await;
    let mut claims = Claims::valid_for("ira", 600);
    claims.max_age = Some(0);
    app.fake_as.script("max-age-zero", Behaviour::Jwt(claims));
    for _ in 0..3 {
        assert_eq!(app.get_with_token("max-age-zero").await.status(), 200);
    }
    assert_eq!(app.fake_as.calls(), 3);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_with_a_new_token_make_one_as_call() {
    let app = Arc::new(spawn_app().await);
    app.fake_as.script(
        "fresh-token",
        Behaviour::Slow(
            Duration::from_millis(300),
            Box::new(Behaviour::Jwt(Claims::valid_for("judy", 600))),
        ),
    );
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.get_with_token("fresh-token").await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(app.fake_as.calls(), 1);
    assert_eq!(app.gateway.auth_calls(), 200);
}

#[tokio::test]
async fn concurrent_waiters_share_a_fault_and_the_next_request_retries() {
    let app = Arc::new(spawn_app().await);
    app.fake_as.script(
        "shared-fault",
        Behaviour::Slow(Duration::from_millis(200), Box::new(Behaviour::Status(500))),
    );
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.get_with_token("shared-fault").await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 502);
    }
    assert_eq!(app.fake_as.calls(), 1);
    app.fake_as.script(
        "shared-fault",
        Behaviour::Jwt(Claims::valid_for("kim", 600)),
    );
    assert_eq!(app.get_with_token("shared-fault").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn a_jwt_that_expires_is_introspected_again() {
    let app = spawn_app_with(|s| {
        s.env("CLOCK_SKEW_SECONDS", "0");
    })
    .await;
    let mut claims = Claims::valid_for("leo", 0);
    claims.exp = Some(now() + 2);
    app.fake_as.script("short-lived", Behaviour::Jwt(claims));
    assert_eq!(app.get_with_token("short-lived").await.status(), 200);
    assert_eq!(app.get_with_token("short-lived").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.fake_as.script("short-lived", Behaviour::NoContent);
    let after = app.get_with_token("short-lived").await;
    assert_eq!(after.status(), 401);
    assert_eq!(app.fake_as.calls(), 2);
}

/// The last `CLOCK_SKEW_SECONDS` of a token's life: refused as expired from
/// the cache, never a request to the AS each (a busy client near its token's
/// end would send its whole traffic there), and at most one introspection.
#[tokio::test]
async fn a_token_in_its_last_skew_seconds_is_refused_from_the_cache_without_asking() {
    let app = spawn_app_with(|s| {
        s.env("CLOCK_SKEW_SECONDS", "30");
    })
    .await;
    // First seen inside the window: one introspection, then the cache says no.
    let mut claims = Claims::valid_for("mia", 0);
    claims.exp = Some(now() + 20);
    app.fake_as.script("inside-skew", Behaviour::Jwt(claims));
    for _ in 0..5 {
        let outcome = app.get_with_token("inside-skew").await;
        assert_eq!(outcome.status(), 401);
        assert!(outcome.upstream.is_none());
    }
    assert_eq!(app.fake_as.calls_for("inside-skew"), 1, "one introspection");

    // Allowed until exp minus the skew, then refused from the cache.
    let mut claims = Claims::valid_for("noor", 0);
    claims.exp = Some(now() + 33);
    app.fake_as.script("entering-skew", Behaviour::Jwt(claims));
    assert_eq!(app.get_with_token("entering-skew").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for _ in 0..5 {
        assert_eq!(app.get_with_token("entering-skew").await.status(), 401);
    }
    assert_eq!(
        app.fake_as.calls_for("entering-skew"),
        1,
        "no introspection in the window"
    );
}

#[tokio::test]
async fn the_as_max_age_caps_the_cache_life() {
    let app = spawn_app().await;
    let mut claims = Claims::valid_for("ned", 600);
    claims.max_age = Some(1);
    app.fake_as.script("max-age-token", Behaviour::Jwt(claims));
    assert_eq!(app.get_with_token("max-age-token").await.status(), 200);
    assert_eq!(app.get_with_token("max-age-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("max-age-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn a_configured_maximum_caps_the_cache_life() {
    let app = spawn_app_with(|s| {
        s.env("CACHE_MAX_TTL_SECONDS", "1");
    })
    .await;
    app.fake_as.script(
        "capped-token",
        Behaviour::Jwt(Claims::valid_for("olga", 600)),
    );
    assert_eq!(app.get_with_token("capped-token").await.status(), 200);
    assert_eq!(app.get_with_token("capped-token").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("capped-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn inactive_answers_are_cached_only_briefly() {
    let app = spawn_app_with(|s| {
        s.env("NEGATIVE_CACHE_SECONDS", "1");
    })
    .await;
    app.fake_as.script("dead-token", Behaviour::NoContent);
    for _ in 0..5 {
        assert_eq!(app.get_with_token("dead-token").await.status(), 401);
    }
    assert_eq!(app.fake_as.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.fake_as
        .script("dead-token", Behaviour::Jwt(Claims::valid_for("pat", 600)));
    assert_eq!(app.get_with_token("dead-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn negative_caching_can_be_turned_off() {
    let app = spawn_app_with(|s| {
        s.env("NEGATIVE_CACHE_SECONDS", "0");
    })
    .await;
    app.fake_as.script("dead-token", Behaviour::NoContent);
    for _ in 0..3 {
        assert_eq!(app.get_with_token("dead-token").await.status(), 401);
    }
    assert_eq!(app.fake_as.calls(), 3);
}

#[tokio::test]
async fn a_jwt_without_exp_is_cached_for_the_short_default() {
    let app = spawn_app_with(|s| {
        s.env("CACHE_DEFAULT_TTL_SECONDS", "1");
    })
    .await;
    let mut claims = Claims::valid_for("quinn", 0);
    claims.exp = None;
    app.fake_as.script("no-exp", Behaviour::Jwt(claims));
    let first = app.get_with_token("no-exp").await;
    assert_eq!(first.status(), 200);
    let key = first.session_key.unwrap();
    assert_eq!(app.gateway.stored(&key).unwrap().expires, 0);
    assert_eq!(app.get_with_token("no-exp").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_with_token("no-exp").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 2);
}
