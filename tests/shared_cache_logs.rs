//! The shared cache's log lines: each change of health logged once, and no
//! token, answer, secret or Redis password in any line, at TRACE level.
//!
//! Its own test binary, because it installs the global subscriber (a
//! thread-scoped one misses events whose call sites other tests' threads
//! registered first).

#[path = "support/captured_logs.rs"]
mod captured_logs;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use captured_logs::Captured;
use redis_support::RedisServer;
use tyk_phantom_token::shared::{
    Health, SharedCache, SharedCacheOptions, SharedLookup, WriteResult,
};

const SECRET: &str = "fleet-secret-5c1e0b7a";
const PASSWORD: &str = "hunter2-password";
const TOKEN: &str = "opaque-token-logged-77e1";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9.c2lnbmF0dXJl";
const SUB: &str = "alice@example.com";

/// Unix time now: when an introspection "started".
fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

async fn require_password(redis: &RedisServer) {
    let mut raw = redis.raw().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query_async(&mut raw)
        .await
        .unwrap();
}

async fn replica(url: &str) -> SharedCache {
    let mut o = SharedCacheOptions::new(url, SECRET);
    o.op_timeout = Duration::from_millis(100);
    o.breaker_threshold = 3;
    o.breaker_open_for = Duration::from_millis(300);
    SharedCache::connect(&o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_changes_are_logged_once_each_and_logs_hold_no_secret() {
    let captured = Captured::install();

    let mut redis = RedisServer::start().await;
    require_password(&redis).await;
    // The password is in the URL, which must not reach the logs either.
    let url = redis
        .url()
        .replace("redis://", &format!("redis://:{PASSWORD}@"));
    let (a, b) = (replica(&url).await, replica(&url).await);
    let mut sub = b.subscribe_purges(|_| {});
    assert!(sub.wait_subscribed(Duration::from_secs(5)).await);
    let payload = format!(r#"{{"jwt":"{JWT}","sub":"{SUB}"}}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.ping().await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.put(
        TOKEN,
        &a.digest(TOKEN),
        payload.as_bytes(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    assert!(matches!(
        b.get_or_lock(TOKEN, &b.digest(TOKEN)).await,
        SharedLookup::Hit(_)
    ));

    redis.kill();
    for _ in 0..10 {
        let _ = b.get_or_lock(TOKEN, &b.digest(TOKEN)).await;
        let _ = a
            .put(
                TOKEN,
                &a.digest(TOKEN),
                payload.as_bytes(),
                Duration::from_secs(60),
                now(),
            )
            .await;
    }
    assert_eq!(
        (a.health(), b.health()),
        (Health::Degraded, Health::Degraded)
    );
    redis.restart().await;
    // A restarted server forgets a password set at run time.
    require_password(&redis).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(a
        .put(
            TOKEN,
            &a.digest(TOKEN),
            b"again",
            Duration::from_secs(60),
            now(),
        )
        .await
        == WriteResult::Stored
        && matches!(
            b.get_or_lock(TOKEN, &b.digest(TOKEN)).await,
            SharedLookup::Hit(_)
        ))
    {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sub.wait_subscribed(Duration::from_secs(10)).await);
    let _ = a.purge(TOKEN).await;
    drop(sub);

    let logs = captured.text();
    assert_eq!(logs.matches("Shared cache degraded").count(), 2, "{logs}");
    assert_eq!(logs.matches("Shared cache recovered").count(), 2, "{logs}");
    assert!(logs.contains("Purge subscription lost"), "{logs}");
    for secret in [TOKEN, JWT, SUB, SECRET, PASSWORD] {
        assert!(!logs.contains(secret), "the logs hold {secret:?}:\n{logs}");
    }
}
