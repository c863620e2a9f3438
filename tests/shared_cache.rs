//! The shared cache against real Redis: one server, a three-master cluster,
//! a Sentinel, and a TLS server requiring client certificates, all started
//! by the tests on ephemeral loopback ports. Each `SharedCache` built here
//! stands for one plugin replica.

#[path = "shared_cache/integrity.rs"]
mod integrity;
#[path = "support/redis.rs"]
mod redis_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_support::{RedisCluster, RedisSentinel, RedisServer, TlsSetup};
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;
use tyk_phantom_token::shared::{
    FleetDigest, Health, SharedCache, SharedCacheOptions, SharedLookup, TlsFiles, Unavailable,
    Waited, WriteResult,
};

const SECRET: &str = "fleet-secret-5c1e0b7a";
/// A JWT-like answer with recognisable claim values.
const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3Qta2V5In0.\
                   eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsInNjb3BlIjoib3JkZXJzOnJlYWQifQ.\
                   c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
const SUB: &str = "alice@example.com";
const SCOPE: &str = "orders:read";

fn payload() -> Vec<u8> {
    format!(r#"{{"jwt":"{JWT}","claims":{{"sub":"{SUB}","scope":"{SCOPE}"}}}}"#).into_bytes()
}

/// Unix time now: when an introspection "started".
fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

const OP_TIMEOUT: Duration = Duration::from_millis(100);

fn options(url: &str) -> SharedCacheOptions {
    let mut o = SharedCacheOptions::new(url, SECRET);
    o.op_timeout = OP_TIMEOUT;
    o.breaker_threshold = 3;
    o.breaker_open_for = Duration::from_millis(300);
    o
}

async fn replica(url: &str) -> SharedCache {
    SharedCache::connect(&options(url)).expect("connect")
}

/// Looks `token` up until Redis answers (the first call may race the
/// background connection).
async fn lookup<'t>(cache: &SharedCache, token: &'t str) -> SharedLookup<'t> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get_or_lock(token, &cache.digest(token)).await {
            SharedLookup::Unavailable(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            found => return found,
        }
    }
}

/// Waits until Redis answers this replica.
async fn ready(cache: &SharedCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.ping().await.is_err() {
        assert!(Instant::now() < deadline, "redis never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hit(found: SharedLookup) -> Vec<u8> {
    match found {
        SharedLookup::Hit(entry) => entry.payload,
        other => panic!("expected a hit, got {other:?}"),
    }
}

#[tokio::test]
async fn an_entry_written_by_one_replica_is_read_by_another() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let token = "opaque-token-a1b2c3d4e5";
    assert!(matches!(lookup(&b, token).await, SharedLookup::Miss { .. }));
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now()
        )
        .await,
        WriteResult::Stored
    );
    match lookup(&b, token).await {
        SharedLookup::Hit(entry) => {
            assert_eq!(entry.payload, payload());
            assert!(entry.ttl <= Duration::from_secs(60) && entry.ttl > Duration::from_secs(55));
        }
        other => panic!("expected a hit, got {other:?}"),
    }
    assert!(matches!(
        lookup(&b, "opaque-token-other").await,
        SharedLookup::Miss { .. }
    ));
    assert_eq!(b.stats().snapshot().hits, 1);
}

#[tokio::test]
async fn the_redis_key_expires_with_the_entry() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    let token = "opaque-token-ttl";
    let ttl = Duration::from_millis(1500);
    ready(&a).await;
    assert_eq!(
        a.put(token, &a.digest(token), &payload(), ttl, now()).await,
        WriteResult::Stored
    );
    let mut raw = redis.raw().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 1000 && pttl <= 1500, "PTTL {pttl}");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "Redis dropped the entry at its TTL");
    assert!(matches!(lookup(&a, token).await, SharedLookup::Miss { .. }));
    assert_eq!(
        a.put(token, &a.digest(token), &payload(), Duration::ZERO, now())
            .await,
        WriteResult::Skipped
    );
}

#[tokio::test]
async fn an_entry_kept_past_its_sealed_expiry_is_a_miss() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    let token = "opaque-token-persisted";
    ready(&a).await;
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_millis(300),
        now(),
    )
    .await;
    // Someone with access to Redis removes its expiry.
    let mut raw = redis.raw().await;
    let _: i64 = redis::cmd("PERSIST")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        lookup(&a, token).await,
        SharedLookup::Miss { lock: Some(_) }
    ));
    assert_eq!(a.stats().snapshot().expired, 1);
}

/// Every 12-byte run of `secret` that appears in `haystack`.
fn leaks(haystack: &[u8], secret: &[u8]) -> bool {
    secret
        .windows(12.min(secret.len()))
        .any(|w| haystack.windows(w.len()).any(|h| h == w))
}

fn assert_nothing_readable(what: &str, dump: &[u8], tokens: &[&str]) {
    for token in tokens {
        assert!(!leaks(dump, token.as_bytes()), "{what} holds a token");
        let plain_hash = hex::encode(Sha256::digest(token.as_bytes()));
        assert!(
            !leaks(dump, plain_hash.as_bytes()),
            "{what} holds a plain hash"
        );
    }
    for secret in [
        payload().as_slice(),
        JWT.as_bytes(),
        SUB.as_bytes(),
        SCOPE.as_bytes(),
    ] {
        assert!(!leaks(dump, secret), "{what} holds the payload");
    }
}

#[tokio::test]
async fn a_dump_of_redis_reveals_neither_tokens_nor_answers() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let tokens = [
        "opaque-token-dump-1x9",
        "opaque-token-dump-2y8",
        "opaque-token-dump-3z7",
    ];
    ready(&a).await;
    for token in tokens {
        assert_eq!(
            a.put(
                token,
                &a.digest(token),
                &payload(),
                Duration::from_secs(60),
                now()
            )
            .await,
            WriteResult::Stored
        );
    }
    // A lock too (what a replica mid-introspection leaves).
    let SharedLookup::Miss { lock: Some(_held) } = lookup(&b, "opaque-token-dump-locked").await
    else {
        panic!("b takes the lock");
    };

    let mut raw = redis.raw().await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 4, "three entries and one lock");
    let mut everything = Vec::new();
    for key in &keys {
        everything.extend_from_slice(key);
        let value: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        everything.extend_from_slice(&value);
        let dumped: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        everything.extend_from_slice(&dumped);
    }
    let all_tokens = [&tokens[..], &["opaque-token-dump-locked"]].concat();
    assert_nothing_readable("KEYS/GET/DUMP", &everything, &all_tokens);

    let () = redis::cmd("SAVE").query_async(&mut raw).await.unwrap();
    let rdb = std::fs::read(redis.dir().join("dump.rdb")).unwrap();
    assert_nothing_readable("the RDB file", &rdb, &all_tokens);

    // The check can fail: a plaintext copy is found in the next dump.
    let () = redis::cmd("SET")
        .arg("plaintext-control")
        .arg(payload())
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = redis::cmd("SAVE").query_async(&mut raw).await.unwrap();
    let rdb = std::fs::read(redis.dir().join("dump.rdb")).unwrap();
    assert!(leaks(&rdb, SUB.as_bytes()) && leaks(&rdb, JWT.as_bytes()));
}

#[tokio::test]
async fn altered_or_moved_entries_are_misses_and_get_replaced() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let (token, other) = ("opaque-token-tamper", "opaque-token-victim");
    ready(&a).await;
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    let mut raw = redis.raw().await;

    // One flipped bit in the ciphertext.
    let mut value: Vec<u8> = redis::cmd("GET")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    let at = value.len() - 20;
    value[at] ^= 0x40;
    let () = redis::cmd("SET")
        .arg(a.value_key(token))
        .arg(&value)
        .arg("KEEPTTL")
        .query_async(&mut raw)
        .await
        .unwrap();
    let lock = match lookup(&b, token).await {
        SharedLookup::Tampered { lock: Some(lock) } => lock,
        found => panic!("expected tampered with the lock, got {found:?}"),
    };
    assert_eq!(b.stats().snapshot().tampered, 1);
    // The replica that took the lock replaces it with a fresh answer.
    assert_eq!(
        b.fill(lock, b"fresh answer", Duration::from_secs(60), now())
            .await,
        WriteResult::Stored
    );
    assert_eq!(hit(lookup(&a, token).await), b"fresh answer");

    // A valid entry copied under another token's key does not open there.
    let good: Vec<u8> = redis::cmd("GET")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(a.value_key(other))
        .arg(&good)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        lookup(&b, other).await,
        SharedLookup::Tampered { .. }
    ));

    // A replica with another server secret looks under other keys.
    let mut foreign = options(&redis.url());
    foreign.secret.0 = "another-secret".into();
    let foreign = SharedCache::connect(&foreign).unwrap();
    assert_ne!(foreign.value_key(token), a.value_key(token));
    assert!(matches!(
        lookup(&foreign, token).await,
        SharedLookup::Miss { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_introspects_while_the_others_wait_for_its_answer() {
    let redis = RedisServer::start().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let r = replica(&redis.url()).await;
        ready(&r).await;
        replicas.push(r);
    }
    let token = "opaque-token-stampede";
    let per_replica = 4;
    let barrier = Arc::new(Barrier::new(replicas.len() * per_replica));
    let introspections = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (n, cache) in replicas.iter().enumerate() {
        for m in 0..per_replica {
            let (cache, barrier, introspections) =
                (cache.clone(), barrier.clone(), introspections.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match cache.get_or_lock(token, &cache.digest(token)).await {
                    SharedLookup::Miss { lock: Some(lock) } => {
                        let answer = format!("answer from replica {n} task {m}").into_bytes();
                        introspections.lock().unwrap().push(answer.clone());
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        let stored = cache
                            .fill(lock, &answer, Duration::from_secs(60), now())
                            .await;
                        assert_eq!(stored, WriteResult::Stored);
                        answer
                    }
                    SharedLookup::Miss { lock: None } => {
                        match cache
                            .wait_for(token, &cache.digest(token), Duration::from_secs(2))
                            .await
                        {
                            Waited::Hit(entry) => entry.payload,
                            other => panic!("waiter got {other:?}"),
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }));
        }
    }
    let mut answers = HashSet::new();
    for task in tasks {
        answers.insert(task.await.unwrap());
    }
    let introspections = introspections.lock().unwrap().clone();
    assert_eq!(introspections.len(), 1, "exactly one lock winner");
    assert_eq!(answers, HashSet::from([introspections[0].clone()]));
    let won: u64 = replicas
        .iter()
        .map(|r| r.stats().snapshot().locks_won)
        .sum();
    let waited: u64 = replicas
        .iter()
        .map(|r| r.stats().snapshot().wait_hits)
        .sum();
    assert_eq!((won, waited), (1, 11));
    // The lock went with the write.
    let mut raw = redis.raw().await;
    let locked: i64 = redis::cmd("EXISTS")
        .arg(replicas[0].lock_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(locked, 0);
}

#[tokio::test]
async fn waiting_ends_early_when_the_lock_holder_gives_up_and_is_bounded_otherwise() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    ready(&b).await;
    let token = "opaque-token-abandoned";
    let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, token).await else {
        panic!("a takes the lock");
    };
    let mut raw = redis.raw().await;
    let lock_ttl: i64 = redis::cmd("PTTL")
        .arg(a.lock_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(lock_ttl > 0 && lock_ttl <= 5000, "lock PTTL {lock_ttl}");
    assert!(matches!(
        b.get_or_lock(token, &b.digest(token)).await,
        SharedLookup::Miss { lock: None }
    ));

    // Held: the wait ends at its bound.
    let started = Instant::now();
    assert_eq!(
        b.wait_for(token, &b.digest(token), Duration::from_millis(200))
            .await,
        Waited::TimedOut
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(400),
        "{took:?}"
    );

    // Released without an answer: the waiter stops at its next look.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (
                b.wait_for(token, &b.digest(token), Duration::from_secs(5))
                    .await,
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.release(lock).await;
    let (waited, took) = waiter.await.unwrap();
    assert_eq!(waited, Waited::Abandoned);
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A dropped guard releases the lock too.
    let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, token).await else {
        panic!("a takes the lock again");
    };
    drop(lock);
    assert_eq!(
        b.wait_for(token, &b.digest(token), Duration::from_secs(2))
            .await,
        Waited::Abandoned
    );
}

fn unavailable_within(found: &SharedLookup, started: Instant, bound: Duration) -> Unavailable {
    let took = started.elapsed();
    assert!(took < bound, "a call took {took:?}");
    match found {
        SharedLookup::Unavailable(why) => *why,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

/// Looks up until the breaker has closed and a fresh entry is a hit again.
async fn recovers(a: &SharedCache, b: &SharedCache) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if a.put(
            "opaque-token-after",
            &a.digest("opaque-token-after"),
            b"again",
            Duration::from_secs(60),
            now(),
        )
        .await
            == WriteResult::Stored
            && matches!(
                b.get_or_lock("opaque-token-after", &b.digest("opaque-token-after"))
                    .await,
                SharedLookup::Hit(_)
            )
        {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {:?}", b.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.health(), Health::Healthy);
    assert_eq!(b.health(), Health::Healthy);
}

#[tokio::test]
async fn a_redis_crash_fails_fast_opens_the_breaker_and_hits_resume_after_restart() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let token = "opaque-token-outage";
    ready(&b).await;
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    assert_eq!(hit(b.get_or_lock(token, &b.digest(token)).await), payload());

    redis.kill();
    let bound = 2 * OP_TIMEOUT;
    let mut reasons = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let found = b.get_or_lock(token, &b.digest(token)).await;
        reasons.push(unavailable_within(&found, started, bound));
    }
    assert!(
        reasons[..3].iter().all(|r| *r != Unavailable::BreakerOpen),
        "{reasons:?}"
    );
    assert!(
        reasons[3..].iter().all(|r| *r == Unavailable::BreakerOpen),
        "{reasons:?}"
    );
    assert_eq!(b.health(), Health::Degraded);
    assert_eq!(b.stats().snapshot().breaker_state, 1);
    let started = Instant::now();
    assert_eq!(
        b.wait_for(token, &b.digest(token), Duration::from_secs(2))
            .await,
        Waited::Unavailable(Unavailable::BreakerOpen)
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    redis.restart().await;
    recovers(&a, &b).await;
    assert_eq!(b.stats().snapshot().breaker_state, 0);
}

#[tokio::test]
async fn a_hung_redis_times_out_within_the_bound_then_the_breaker_takes_over() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let token = "opaque-token-hung";
    ready(&b).await;
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;

    redis.pause();
    let bound = 2 * OP_TIMEOUT;
    let mut reasons = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let found = b.get_or_lock(token, &b.digest(token)).await;
        reasons.push(unavailable_within(&found, started, bound));
    }
    assert_eq!(&reasons[..3], &[Unavailable::Timeout; 3], "{reasons:?}");
    assert!(
        reasons[3..].iter().all(|r| *r == Unavailable::BreakerOpen),
        "{reasons:?}"
    );
    let started = Instant::now();
    assert_eq!(
        b.put(token, &b.digest(token), b"x", Duration::from_secs(1), now())
            .await,
        WriteResult::Failed
    );
    assert!(started.elapsed() < bound);
    assert_eq!(b.stats().snapshot().timeouts, 3);

    redis.resume();
    recovers(&a, &b).await;
    assert_eq!(hit(b.get_or_lock(token, &b.digest(token)).await), payload());
}

#[tokio::test]
async fn redis_down_at_start_delays_nothing() {
    let port = redis_support::free_port();
    let started = Instant::now();
    let cache = replica(&format!("redis://127.0.0.1:{port}")).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    let started = Instant::now();
    let found = cache
        .get_or_lock(
            "opaque-token-nowhere",
            &cache.digest("opaque-token-nowhere"),
        )
        .await;
    unavailable_within(&found, started, Duration::from_millis(200));
}

async fn wait_for_digests(received: &Arc<Mutex<Vec<FleetDigest>>>, want: FleetDigest) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if received.lock().unwrap().contains(&want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn collector() -> (
    Arc<Mutex<Vec<FleetDigest>>>,
    impl Fn(FleetDigest) + Send + Sync + 'static,
) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    (received, move |d| sink.lock().unwrap().push(d))
}

#[tokio::test]
async fn a_purge_reaches_every_replica_and_removes_the_entry() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (
        replica(&redis.url()).await,
        replica(&redis.url()).await,
        replica(&redis.url()).await,
    );
    let (heard_b, on_b) = collector();
    let (heard_c, on_c) = collector();
    let mut sub_b = b.subscribe_purges(on_b);
    let mut sub_c = c.subscribe_purges(on_c);
    assert!(sub_b.wait_subscribed(Duration::from_secs(5)).await);
    assert!(sub_c.wait_subscribed(Duration::from_secs(5)).await);

    let token = "opaque-token-revoked";
    ready(&a).await;
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    assert_eq!(a.purge(token).await, Ok(true));
    let digest = a.digest(token);
    assert!(
        wait_for_digests(&heard_b, digest).await,
        "b heard the purge"
    );
    assert!(
        wait_for_digests(&heard_c, digest).await,
        "c heard the purge"
    );
    assert_eq!(
        b.digest(token),
        digest,
        "every replica names the token alike"
    );
    assert_eq!(heard_b.lock().unwrap().len(), 1);
    assert_eq!(b.stats().snapshot().purges_received, 1);

    let mut raw = redis.raw().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert!(matches!(
        b.get_or_lock(token, &b.digest(token)).await,
        SharedLookup::Miss { .. }
    ));
    assert_eq!(a.purge(token).await, Ok(false), "nothing left to purge");
}

#[tokio::test]
async fn an_answer_introspected_across_a_purge_is_not_stored() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let token = "opaque-token-race";
    let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, token).await else {
        panic!("a takes the lock");
    };
    assert_eq!(lookup_purge(&b, token).await, Ok(false));
    assert_eq!(
        a.fill(lock, &payload(), Duration::from_secs(60), now())
            .await,
        WriteResult::LockLost
    );
    assert!(matches!(
        b.get_or_lock(token, &b.digest(token)).await,
        SharedLookup::Miss { .. }
    ));
}

async fn lookup_purge(cache: &SharedCache, token: &str) -> Result<bool, Unavailable> {
    ready(cache).await;
    cache.purge(token).await
}

#[tokio::test]
async fn the_purge_subscription_comes_back_after_redis_restarts() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    let (heard, on_purge) = collector();
    let mut sub = b.subscribe_purges(on_purge);
    assert!(sub.wait_subscribed(Duration::from_secs(5)).await);

    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sub.is_subscribed() {
        assert!(Instant::now() < deadline, "the loss was noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart().await;
    assert!(
        sub.wait_subscribed(Duration::from_secs(10)).await,
        "resubscribed"
    );

    let token = "opaque-token-after-restart";
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.purge(token).await.is_err() {
        assert!(Instant::now() < deadline, "purge after restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wait_for_digests(&heard, a.digest(token)).await);
}

#[tokio::test]
async fn the_cluster_form_serves_lookups_locks_writes_and_purges() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (replica(&cluster.url()).await, replica(&cluster.url()).await);
    let (heard, on_purge) = collector();
    let mut sub = b.subscribe_purges(on_purge);
    assert!(sub.wait_subscribed(Duration::from_secs(5)).await);

    let mut nodes_used = HashSet::new();
    for n in 0..12 {
        let token = format!("opaque-cluster-token-{n}");
        let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, &token).await else {
            panic!("a takes the lock for {token}");
        };
        assert!(matches!(
            lookup(&b, &token).await,
            SharedLookup::Miss { lock: None }
        ));
        let answer = format!("answer {n}").into_bytes();
        assert_eq!(
            a.fill(lock, &answer, Duration::from_secs(60), now()).await,
            WriteResult::Stored
        );
        assert_eq!(hit(lookup(&b, &token).await), answer);
        let value_node = cluster.node_for(&a.value_key(&token)).await.port();
        let lock_node = cluster.node_for(&a.lock_key(&token)).await.port();
        assert_eq!(value_node, lock_node, "value and lock share a slot");
        nodes_used.insert(value_node);
    }
    assert!(nodes_used.len() > 1, "entries spread over the masters");

    let token = "opaque-cluster-token-3";
    assert_eq!(a.purge(token).await, Ok(true));
    assert!(
        wait_for_digests(&heard, a.digest(token)).await,
        "purge heard across the cluster"
    );
    assert!(matches!(lookup(&b, token).await, SharedLookup::Miss { .. }));
}

#[tokio::test]
async fn the_sentinel_form_finds_the_master() {
    let master = RedisServer::start().await;
    let sentinel = RedisSentinel::start(&master, "phantom-master").await;
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/phantom-master",
        sentinel.port()
    );
    let (a, b) = (replica(&url).await, replica(&url).await);
    let token = "opaque-token-sentinel";
    ready(&a).await;
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now()
        )
        .await,
        WriteResult::Stored
    );
    assert_eq!(hit(lookup(&b, token).await), payload());
    // Written on the master the Sentinel named.
    let mut raw = master.raw().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(a.value_key(token))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

#[tokio::test]
async fn rediss_with_a_ca_file_and_a_client_certificate() {
    let tls = TlsSetup::new();
    let redis = RedisServer::start_tls(&tls).await;
    let mut opts = options(&redis.url());
    opts.tls = TlsFiles {
        ca_file: Some(tls.ca_cert.clone()),
        cert_file: Some(tls.client_cert.clone()),
        key_file: Some(tls.client_key.clone()),
    };
    opts.op_timeout = Duration::from_millis(500);
    let a = SharedCache::connect(&opts).unwrap();
    let b = SharedCache::connect(&opts).unwrap();
    let token = "opaque-token-tls";
    ready(&a).await;
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now()
        )
        .await,
        WriteResult::Stored
    );
    assert_eq!(hit(lookup(&b, token).await), payload());

    // Without the client certificate the server refuses the connection.
    opts.tls.cert_file = None;
    opts.tls.key_file = None;
    let anonymous = SharedCache::connect(&opts).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            anonymous.get_or_lock(token, &anonymous.digest(token)).await,
            SharedLookup::Unavailable(_)
        ));
    }
    // Nor does a client trusting only the system's roots accept the server.
    opts.tls = TlsFiles::default();
    let untrusting = SharedCache::connect(&opts).unwrap();
    assert!(matches!(
        untrusting
            .get_or_lock(token, &untrusting.digest(token))
            .await,
        SharedLookup::Unavailable(_)
    ));
}

#[tokio::test]
async fn a_cluster_master_crash_fails_fast_and_its_keys_come_back_after_restart() {
    let mut cluster = RedisCluster::start().await;
    let (a, b) = (replica(&cluster.url()).await, replica(&cluster.url()).await);
    ready(&a).await;
    ready(&b).await;
    // A token whose entry lives on the first node.
    let first = cluster.nodes[0].port();
    let mut token = String::new();
    for n in 0.. {
        token = format!("opaque-cluster-outage-{n}");
        if cluster.node_for(&a.value_key(&token)).await.port() == first {
            break;
        }
    }
    a.put(
        &token,
        &a.digest(&token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    assert_eq!(hit(lookup(&b, &token).await), payload());

    cluster.nodes[0].kill();
    for _ in 0..6 {
        let started = Instant::now();
        let found = b.get_or_lock(&token, &b.digest(&token)).await;
        unavailable_within(&found, started, 2 * OP_TIMEOUT);
    }
    assert_eq!(b.health(), Health::Degraded);

    cluster.nodes[0].restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The node kept no data (no persistence): the entry is written again.
        if a.put(
            &token,
            &a.digest(&token),
            b"after restart",
            Duration::from_secs(60),
            now(),
        )
        .await
            == WriteResult::Stored
            && matches!(
                b.get_or_lock(&token, &b.digest(&token)).await,
                SharedLookup::Hit(_)
            )
        {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {:?}", b.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.health(), Health::Healthy);
}

#[tokio::test]
async fn a_connection_refused_at_set_up_is_tried_again_once_redis_accepts_it() {
    // The replica has a password the server does not ask for yet (as after
    // a restart, before its configuration is applied): AUTH fails.
    let redis = RedisServer::start().await;
    let url = redis.url().replace("redis://", "redis://:late-password@");
    let a = replica(&url).await;
    for _ in 0..5 {
        let started = Instant::now();
        let found = a
            .get_or_lock("opaque-token-auth", &a.digest("opaque-token-auth"))
            .await;
        unavailable_within(&found, started, 2 * OP_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut raw = redis.raw().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("late-password")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        lookup(&a, "opaque-token-auth").await,
        SharedLookup::Miss { lock: Some(_) }
    ));
    assert_eq!(a.health(), Health::Healthy);
}
