//! A fleet of plugin replicas sharing one Redis (started by the tests on
//! ephemeral loopback ports) and one fake AS: shared hits, fleet-wide
//! single-flight, Redis outages, what a dump shows, fleet-wide revocation,
//! and the cluster form.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_support::{RedisCluster, RedisServer};
use crate::support::*;

const SECRET: &str = "fleet-key-secret-90d2";
const HIT: &str = "phantom_shared_cache_lookups_total{result=\"hit\"}";
const MISS: &str = "phantom_shared_cache_lookups_total{result=\"miss\"}";

/// `n` replicas with an admin endpoint, all introspecting at `fake_as` and
/// sharing the Redis at `url`. (Each also starts a fake AS of its own, which
/// is never called.)
async fn replicas(n: usize, fake_as: &FakeAs, url: &str) -> Vec<TestApp> {
    replicas_with(n, fake_as, url, &[]).await
}

async fn replicas_with(
    n: usize,
    fake_as: &FakeAs,
    url: &str,
    extra: &[(&str, &str)],
) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for _ in 0..n {
        apps.push(
            spawn_app_with(|s| {
                s.env("INTROSPECTION_URL", &fake_as.url())
                    .env("REDIS_URL", url)
                    .env("REDIS_KEY_SECRET", SECRET);
                for (name, value) in extra {
                    s.env(name, value);
                }
                s.admin = true;
            })
            .await,
        );
    }
    apps
}

fn upstream_authorization(outcome: &Outcome) -> Option<String> {
    outcome
        .upstream
        .as_ref()
        .and_then(|u| u.header("Authorization"))
        .map(str::to_owned)
}

/// Shared cache lookups a replica made (hits and misses).
async fn shared_lookups(app: &TestApp) -> f64 {
    app.metric(HIT).await + app.metric(MISS).await
}

/// Waits until every replica's purge subscription is connected.
async fn subscribed(apps: &[TestApp]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for app in apps {
        while app.metric("phantom_shared_cache_purge_subscribed").await < 1.0 {
            assert!(Instant::now() < deadline, "purge subscription connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn revoke(app: &TestApp, content_type: &str, body: String) -> (u16, String) {
    let addr = app.admin.expect("admin endpoint");
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/tokens/revoke"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("admin endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_token_introspected_on_one_replica_is_a_shared_hit_on_the_others() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(3, &fake_as, &redis.url()).await;
    fake_as.script("fleet-token", Behaviour::Jwt(Claims::valid_for("amy", 600)));

    let first = fleet[0].get_with_token("fleet-token").await;
    assert_eq!(first.status(), 200);
    let jwt = upstream_authorization(&first).expect("JWT forwarded");
    assert_eq!(fake_as.calls(), 1);
    for app in &fleet[1..] {
        let outcome = app.get_with_token("fleet-token").await;
        assert_eq!(outcome.status(), 200);
        assert_eq!(upstream_authorization(&outcome), Some(jwt.clone()));
        assert_eq!(app.metric(HIT).await, 1.0);
    }
    assert_eq!(fake_as.calls(), 1, "one introspection for the fleet");
    // Now in-process hits: Redis is not asked again.
    let before = shared_lookups(&fleet[1]).await;
    for _ in 0..5 {
        assert_eq!(fleet[1].get_with_token("fleet-token").await.status(), 200);
    }
    assert_eq!(shared_lookups(&fleet[1]).await, before);

    // Inactive answers are shared too.
    fake_as.script("dead-token", Behaviour::NoContent);
    for app in &fleet {
        assert_eq!(app.get_with_token("dead-token").await.status(), 401);
    }
    assert_eq!(fake_as.calls_for("dead-token"), 1);
}

#[tokio::test]
async fn a_burst_across_replicas_makes_one_as_call() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(3, &fake_as, &redis.url()).await;
    fake_as.script(
        "burst-token",
        Behaviour::Slow(
            Duration::from_millis(300),
            Box::new(Behaviour::Jwt(Claims::valid_for("bob", 600))),
        ),
    );
    let fleet: Vec<Arc<TestApp>> = fleet.into_iter().map(Arc::new).collect();
    let mut tasks = Vec::new();
    for app in &fleet {
        for _ in 0..10 {
            let app = Arc::clone(app);
            tasks.push(tokio::spawn(async move {
                app.get_with_token("burst-token").await
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("request task"));
    }
    let jwt = upstream_authorization(&outcomes[0]);
    assert!(jwt.is_some());
    for outcome in &outcomes {
        assert_eq!(outcome.status(), 200);
        assert_eq!(upstream_authorization(outcome), jwt);
    }
    assert_eq!(
        fake_as.calls_for("burst-token"),
        1,
        "one AS call for 30 requests on 3 replicas"
    );
}

#[tokio::test]
async fn with_redis_killed_every_request_is_still_answered_and_sharing_resumes_after() {
    let mut redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(2, &fake_as, &redis.url()).await;
    fake_as.script("before", Behaviour::Jwt(Claims::valid_for("cy", 600)));
    fake_as.script("during", Behaviour::Jwt(Claims::valid_for("di", 600)));
    fake_as.script("revoked", Behaviour::NoContent);
    assert_eq!(fleet[0].get_with_token("before").await.status(), 200);

    redis.kill();
    for app in &fleet {
        let started = Instant::now();
        // Cached in-process on the first; introspected on the second.
        assert_eq!(app.get_with_token("before").await.status(), 200);
        let outcome = app.get_with_token("during").await;
        assert_eq!(outcome.status(), 200);
        assert_eq!(
            upstream_authorization(&outcome),
            fake_as.jwt_for("during").map(|jwt| format!("Bearer {jwt}"))
        );
        assert_eq!(app.get_with_token("revoked").await.status(), 401);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "Redis down costs little"
        );
        assert_eq!(
            app.admin_get("/readyz").await.0,
            200,
            "ready with Redis down"
        );
    }
    assert_eq!(
        fake_as.calls_for("during"),
        2,
        "each replica introspected on its own"
    );
    assert!(
        fleet[1]
            .metric("phantom_shared_cache_unavailable_total{reason=\"breaker_open\"}")
            .await
            + fleet[1]
                .metric("phantom_shared_cache_unavailable_total{reason=\"error\"}")
                .await
            + fleet[1]
                .metric("phantom_shared_cache_unavailable_total{reason=\"timeout\"}")
                .await
            > 0.0
    );

    redis.restart().await;
    // The breaker lets a probe through after a while; then a new token is
    // introspected once for both replicas again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = format!("after-{attempt}");
        fake_as.script(&token, Behaviour::Jwt(Claims::valid_for("ed", 600)));
        assert_eq!(fleet[0].get_with_token(&token).await.status(), 200);
        assert_eq!(fleet[1].get_with_token(&token).await.status(), 200);
        if fake_as.calls_for(&token) == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sharing resumed after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        fleet[1].metric("phantom_shared_cache_breaker_state").await,
        0.0
    );
}

#[tokio::test]
async fn with_redis_hanging_requests_wait_little_and_the_breaker_opens() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(2, &fake_as, &redis.url()).await;
    fake_as.script_default(Behaviour::Jwt(Claims::valid_for("kit", 600)));
    assert_eq!(fleet[0].get_with_token("warm-up").await.status(), 200);

    redis.pause();
    for n in 0..6 {
        let token = format!("hung-{n}");
        let started = Instant::now();
        let outcome = fleet[0].get_with_token(&token).await;
        assert_eq!(outcome.status(), 200);
        assert_eq!(
            upstream_authorization(&outcome),
            fake_as.jwt_for(&token).map(|jwt| format!("Bearer {jwt}"))
        );
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "a hanging Redis costs a request at most a call timeout or two: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        fleet[0].metric("phantom_shared_cache_breaker_state").await,
        1.0
    );
    assert_eq!(fleet[0].admin_get("/readyz").await.0, 200);
    assert!(
        fleet[0]
            .metric("phantom_shared_cache_unavailable_total{reason=\"timeout\"}")
            .await
            >= 1.0
    );

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = format!("thawed-{attempt}");
        assert_eq!(fleet[0].get_with_token(&token).await.status(), 200);
        assert_eq!(fleet[1].get_with_token(&token).await.status(), 200);
        if fake_as.calls_for(&token) == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sharing resumed after Redis thawed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_redis_dump_holds_no_token_jwt_or_claim_value() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(2, &fake_as, &redis.url()).await;
    let token = "opaque-7d1f2c9e4b5a";
    let mut claims = Claims::valid_for("frieda@example.com", 600);
    claims.extra = serde_json::json!({ "client_id": "dump-client-3e8", "scope": "orders:write" });
    fake_as.script(token, Behaviour::Jwt(claims));
    fake_as.script("inactive-5b2e", Behaviour::NoContent);
    for app in &fleet {
        assert_eq!(app.get_with_token(token).await.status(), 200);
        assert_eq!(app.get_with_token("inactive-5b2e").await.status(), 401);
    }
    assert_eq!(fake_as.calls(), 2, "both answers were shared");
    let jwt = fake_as.jwt_for(token).expect("issued");

    let mut raw = redis.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let () = redis::cmd("SAVE").query_async(&mut raw).await.unwrap();
    let rdb = std::fs::read(redis.dir().join("dump.rdb")).unwrap();
    let sha = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    let jwt_parts: Vec<&str> = jwt.split('.').collect();
    for secret in [
        token,
        "inactive-5b2e",
        &jwt,
        jwt_parts[1],
        jwt_parts[2],
        "frieda@example.com",
        "dump-client-3e8",
        "orders:write",
        &sha(token),
        SECRET,
    ] {
        assert!(
            !rdb.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the dump contains {secret:?}"
        );
        assert!(
            keys.iter().all(|k| !k.contains(secret)),
            "a key contains {secret:?}"
        );
    }
}

#[tokio::test]
async fn a_revocation_on_one_replica_ends_the_token_on_all() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(3, &fake_as, &redis.url()).await;
    fake_as.script("revoke-me", Behaviour::Jwt(Claims::valid_for("gus", 600)));
    for app in &fleet {
        assert_eq!(app.get_with_token("revoke-me").await.status(), 200);
    }
    assert_eq!(fake_as.calls(), 1);
    subscribed(&fleet).await;

    // The AS revokes it and its event hook calls one replica.
    fake_as.script("revoke-me", Behaviour::NoContent);
    let (status, body) = revoke(
        &fleet[1],
        "application/x-www-form-urlencoded",
        "token=revoke-me&token_type_hint=access_token".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("revoke-me"));
    // Every replica hears the purge; the next request is decided again.
    let deadline = Instant::now() + Duration::from_secs(5);
    for app in &fleet {
        loop {
            let status = app.get_with_token("revoke-me").await.status();
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(Instant::now() < deadline, "the purge reached every replica");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        fake_as.calls(),
        2,
        "introspected again once, the answer shared"
    );
    assert!(
        fleet[2]
            .metric("phantom_shared_cache_purges_total{result=\"received\"}")
            .await
            >= 1.0
    );

    // JSON works as well; junk gets a specific refusal.
    let (status, _) = revoke(&fleet[0], "application/json", r#"{"token":"other"}"#.into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        revoke(&fleet[0], "text/plain", "revoke-me".into()).await.0,
        415
    );
    assert_eq!(
        revoke(&fleet[0], "application/json", "{}".into()).await.0,
        400
    );
    assert_eq!(
        revoke(
            &fleet[0],
            "application/x-www-form-urlencoded",
            "token=a%20b".into()
        )
        .await
        .0,
        400
    );
}

/// Someone who can write to Redis keeps a token's sealed entry and writes
/// it back after the token was revoked: no replica serves it.
#[tokio::test]
async fn a_revoked_answer_written_back_into_redis_is_not_served() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(2, &fake_as, &redis.url()).await;
    fake_as.script("kept-token", Behaviour::Jwt(Claims::valid_for("ida", 600)));
    assert_eq!(fleet[0].get_with_token("kept-token").await.status(), 200);
    let mut raw = redis.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:v")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let kept: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    subscribed(&fleet).await;

    fake_as.script("kept-token", Behaviour::NoContent);
    let (status, body) = revoke(
        &fleet[0],
        "application/x-www-form-urlencoded",
        "token=kept-token".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&kept)
        .arg("PX")
        .arg(600_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    for app in &fleet {
        assert_eq!(app.get_with_token("kept-token").await.status(), 401);
    }
    assert!(
        fleet[0]
            .metric("phantom_shared_cache_lookups_total{result=\"purged\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_revocation_found_by_revalidation_on_one_replica_ends_the_token_on_all() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas_with(
        2,
        &fake_as,
        &redis.url(),
        &[("REVALIDATE_AFTER_SECONDS", "1")],
    )
    .await;
    fake_as.script("stale-token", Behaviour::Jwt(Claims::valid_for("jo", 600)));
    for app in &fleet {
        assert_eq!(app.get_with_token("stale-token").await.status(), 200);
    }
    assert_eq!(fake_as.calls(), 1);
    subscribed(&fleet).await;
    fake_as.script("stale-token", Behaviour::NoContent);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Served while revalidated in the background on the first replica.
    assert_eq!(fleet[0].get_with_token("stale-token").await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake_as.calls() < 2
        || fleet[1]
            .metric("phantom_shared_cache_purges_total{result=\"received\"}")
            .await
            < 1.0
    {
        assert!(Instant::now() < deadline, "revalidated and purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second replica's copy went with the purge; the inactive answer
    // is shared, so it is denied without asking the AS.
    assert_eq!(fleet[1].get_with_token("stale-token").await.status(), 401);
    assert_eq!(fake_as.calls(), 2);
}

#[tokio::test]
async fn without_redis_a_revocation_drops_the_local_copy() {
    let app = spawn_app_with(|s| s.admin = true).await;
    app.fake_as
        .script("local-token", Behaviour::Jwt(Claims::valid_for("hal", 600)));
    assert_eq!(app.get_with_token("local-token").await.status(), 200);
    assert_eq!(app.get_with_token("local-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);
    app.fake_as.script("local-token", Behaviour::NoContent);
    let (status, body) = revoke(
        &app,
        "application/x-www-form-urlencoded",
        "token=local-token".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get_with_token("local-token").await.status(), 401);
    assert_eq!(app.fake_as.calls(), 2);
}

#[tokio::test]
async fn a_three_master_cluster_serves_shared_hits() {
    let cluster = RedisCluster::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas(2, &fake_as, &cluster.url()).await;
    fake_as.script(
        "cluster-token",
        Behaviour::Jwt(Claims::valid_for("ian", 600)),
    );
    let first = fleet[0].get_with_token("cluster-token").await;
    assert_eq!(first.status(), 200);
    let second = fleet[1].get_with_token("cluster-token").await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        upstream_authorization(&first),
        upstream_authorization(&second)
    );
    assert_eq!(fake_as.calls(), 1);
    assert_eq!(fleet[1].metric(HIT).await, 1.0);
}

/// An answer read from the fleet's cache keeps the age sealed with it: a
/// replica that reads a stale answer revalidates it at once and gives Tyk
/// no id_extractor deadline past its revalidation, as the replica that
/// introspected would; it does not treat it as fetched now.
#[tokio::test]
async fn a_shared_hit_keeps_the_age_of_the_answer() {
    let redis = RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let fleet = replicas_with(
        2,
        &fake_as,
        &redis.url(),
        &[("REVALIDATE_AFTER_SECONDS", "2")],
    )
    .await;
    fake_as.script("aging-token", Behaviour::Jwt(Claims::valid_for("ada", 600)));
    assert_eq!(fleet[0].get_with_token("aging-token").await.status(), 200);
    assert_eq!(fake_as.calls(), 1);

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let read = fleet[1].get_with_token("aging-token").await;
    assert_eq!(read.status(), 200);
    assert_eq!(fleet[1].metric(HIT).await, 1.0, "a shared hit");
    assert_eq!(fake_as.calls(), 1);
    let session = fleet[1]
        .gateway
        .stored(read.session_key.as_deref().unwrap())
        .unwrap();
    let now = crate::support::fake_tyk::unix_now();
    assert!(
        session.id_extractor_deadline <= now,
        "the deadline is the answer's revalidation, already past: {} > {now}",
        session.id_extractor_deadline
    );

    // The next hit finds it due and revalidates in the background now, not
    // 2 s after the shared read.
    assert_eq!(fleet[1].get_with_token("aging-token").await.status(), 200);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while fake_as.calls() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake_as.calls(), 2, "revalidated by its sealed age");
}
