//! Integrity against someone who can write to Redis: entries sealed without
//! the server secret, old entries written back after a purge, answers in
//! flight during a purge, oversized values.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use tyk_phantom_token::shared::seal::{FleetKeys, MAX_SEALED_BYTES, OpenError, SEAL_OVERHEAD};
use tyk_phantom_token::shared::{MAX_ENTRY_TTL, PURGE_MARKER_TTL};

use super::*;

fn micros(d: Duration) -> [u8; 8] {
    u64::try_from(d.as_micros()).unwrap().to_be_bytes()
}

/// A value sealed under a key derived from the token alone, which anyone
/// who knows (or picked) the token can compute: format 1 as it was
/// (`version` 1, expiry in ms), or shaped as format 2.
fn sealed_with_the_token_alone(version: u8, token: &str, redis_key: &str) -> Vec<u8> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"tyk-phantom-token/fleet-cache/v1"), token.as_bytes())
        .expand(b"entry sealing key", &mut key)
        .unwrap();
    let expires = now() + Duration::from_secs(600);
    let mut plain = if version == 1 {
        u64::try_from(expires.as_millis())
            .unwrap()
            .to_be_bytes()
            .to_vec()
    } else {
        [micros(now()), micros(expires)].concat()
    };
    plain.extend_from_slice(b"A");
    plain.extend_from_slice(JWT.as_bytes());
    let nonce = [7u8; 24];
    let aad = [&[version][..], redis_key.as_bytes()].concat();
    let sealed = XChaCha20Poly1305::new(&key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .unwrap();
    [&[version][..], &nonce, &sealed].concat()
}

async fn raw_get(redis: &RedisServer, key: &str) -> Vec<u8> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis.raw().await)
        .await
        .unwrap()
}

async fn raw_set(redis: &RedisServer, key: &str, value: &[u8]) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis.raw().await)
        .await
        .unwrap();
}

async fn pttl(redis: &RedisServer, key: &str) -> Duration {
    let ms: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut redis.raw().await)
        .await
        .unwrap();
    assert!(ms > 0, "{key} has no expiry ({ms})");
    Duration::from_millis(ms.unsigned_abs())
}

/// The Redis key of `token`'s purge marker (beside its value).
fn marker_key(cache: &SharedCache, token: &str) -> String {
    cache.value_key(token).replace("}:v", "}:purged")
}

#[tokio::test]
async fn an_entry_forged_with_the_token_alone_is_refused() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    ready(&a).await;
    // The attacker picks a string and sends it once: the fleet stores
    // "inactive" under its key.
    let token = "opaque-token-picked-by-a-redis-writer";
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            b"I",
            Duration::from_secs(60),
            now()
        )
        .await,
        WriteResult::Stored
    );
    // It finds the key (the only one) and re-seals an active answer, in
    // the old format and in the new one.
    for version in [1, 2] {
        let forged = sealed_with_the_token_alone(version, token, &a.value_key(token));
        raw_set(&redis, &a.value_key(token), &forged).await;
        let found = lookup(&a, token).await;
        assert!(
            matches!(found, SharedLookup::Tampered { .. }),
            "a forged entry (format {version}) was {found:?}"
        );
    }
    assert_eq!(a.stats().snapshot().tampered, 2);
    assert_eq!(a.stats().snapshot().hits, 0);
}

#[tokio::test]
async fn a_dump_and_the_secret_without_the_token_open_nothing() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    ready(&a).await;
    let tokens = ["opaque-token-dumped-1", "opaque-token-dumped-2"];
    for token in tokens {
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now(),
        )
        .await;
    }
    let with_secret = FleetKeys::new(SECRET.as_bytes());
    let without_secret = FleetKeys::new(b"");
    for token in tokens {
        let key = a.value_key(token);
        let value = raw_get(&redis, &key).await;
        // Both: it opens (the check can fail).
        assert_eq!(
            with_secret
                .open(token.as_bytes(), key.as_bytes(), &value)
                .unwrap()
                .payload,
            payload()
        );
        // The secret and every other token of the dump, or none.
        for guess in ["", "opaque-token-dumped", tokens[0], tokens[1]] {
            if guess == token {
                continue;
            }
            assert_eq!(
                with_secret.open(guess.as_bytes(), key.as_bytes(), &value),
                Err(OpenError::Forged),
                "{guess:?}"
            );
        }
        // The token without the secret.
        assert_eq!(
            without_secret.open(token.as_bytes(), key.as_bytes(), &value),
            Err(OpenError::Forged)
        );
    }
}

#[tokio::test]
async fn an_entry_written_back_after_a_purge_is_refused() {
    let redis = RedisServer::start().await;
    let (a, b) = (replica(&redis.url()).await, replica(&redis.url()).await);
    ready(&a).await;
    let token = "opaque-token-revoked-then-replayed";
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    let old = raw_get(&redis, &a.value_key(token)).await;
    assert_eq!(a.purge(token).await, Ok(true));
    // The marker outlives any entry sealed before the purge.
    assert!(pttl(&redis, &marker_key(&a, token)).await > MAX_ENTRY_TTL);

    // Someone who kept the blob writes it back.
    raw_set(&redis, &a.value_key(token), &old).await;
    let found = lookup(&b, token).await;
    let SharedLookup::Tampered { lock: Some(lock) } = found else {
        panic!("the revoked answer came back: {found:?}");
    };
    assert_eq!(b.stats().snapshot().purged, 1);
    // A fresh answer replaces it...
    assert_eq!(
        b.fill(lock, b"fresh answer", Duration::from_secs(60), now())
            .await,
        WriteResult::Stored
    );
    assert_eq!(hit(lookup(&a, token).await), b"fresh answer");
    // ...and the old blob written over the fresh one is refused again.
    raw_set(&redis, &a.value_key(token), &old).await;
    assert!(matches!(
        lookup(&a, token).await,
        SharedLookup::Tampered { .. }
    ));
    assert_eq!(
        b.wait_for(token, &b.digest(token), Duration::from_millis(50))
            .await,
        Waited::Tampered
    );

    // A marker that is no purge time refuses everything: no guessing.
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(60),
        now(),
    )
    .await;
    assert_eq!(hit(lookup(&a, token).await), payload());
    raw_set(&redis, &marker_key(&a, token), b"not-a-time").await;
    assert!(matches!(
        lookup(&a, token).await,
        SharedLookup::Tampered { .. }
    ));
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now()
        )
        .await,
        WriteResult::Purged
    );
}

#[tokio::test]
async fn an_answer_introspected_before_a_purge_is_not_stored_after_it() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    ready(&a).await;
    let token = "opaque-token-in-flight";
    // The introspection leaves; the token is purged; its answer lands.
    let started = now();
    assert_eq!(a.purge(token).await, Ok(false));
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            started
        )
        .await,
        WriteResult::Purged
    );
    // Under the lock too (taken after the purge, for an answer from before).
    let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, token).await else {
        panic!("a takes the lock");
    };
    assert_eq!(
        a.fill(lock, &payload(), Duration::from_secs(60), started)
            .await,
        WriteResult::Purged
    );
    let locked: i64 = redis::cmd("EXISTS")
        .arg(a.lock_key(token))
        .query_async(&mut redis.raw().await)
        .await
        .unwrap();
    assert_eq!(locked, 0, "the lock was released");
    assert_eq!(a.stats().snapshot().writes_purged, 2);

    // An answer introspected after the purge is stored.
    let SharedLookup::Miss { lock: Some(lock) } = lookup(&a, token).await else {
        panic!("a takes the lock again");
    };
    assert_eq!(
        a.fill(lock, &payload(), Duration::from_secs(60), now())
            .await,
        WriteResult::Stored
    );
    match lookup(&a, token).await {
        SharedLookup::Hit(entry) => {
            assert_eq!(entry.payload, payload());
            assert!(entry.introspected_at > started);
        }
        other => panic!("expected a hit, got {other:?}"),
    }
}

#[tokio::test]
async fn an_entry_lives_at_most_its_bound_from_its_introspection() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    ready(&a).await;
    let token = "opaque-token-long-lived";
    let started = now();
    a.put(
        token,
        &a.digest(token),
        &payload(),
        Duration::from_secs(86_400),
        started,
    )
    .await;
    assert!(pttl(&redis, &a.value_key(token)).await <= MAX_ENTRY_TTL);
    match lookup(&a, token).await {
        SharedLookup::Hit(entry) => {
            assert!(entry.ttl <= MAX_ENTRY_TTL);
            // The stamp comes back as sealed (to the microsecond).
            assert_eq!(entry.introspected_at.as_micros(), started.as_micros());
        }
        other => panic!("expected a hit, got {other:?}"),
    }
    // Introspected longer ago than the bound: nothing to store.
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &payload(),
            Duration::from_secs(60),
            now() - MAX_ENTRY_TTL,
        )
        .await,
        WriteResult::Skipped
    );
    assert_eq!(a.purge(token).await, Ok(true));
    assert!(pttl(&redis, &marker_key(&a, token)).await > MAX_ENTRY_TTL);
    assert!(pttl(&redis, &marker_key(&a, token)).await <= PURGE_MARKER_TTL);
}

#[tokio::test]
async fn an_oversized_value_is_refused_before_it_is_opened() {
    let redis = RedisServer::start().await;
    let a = replica(&redis.url()).await;
    ready(&a).await;
    let keys = FleetKeys::new(SECRET.as_bytes());
    let token = "opaque-token-oversized";
    let key = a.value_key(token);
    let seal = |len: usize| {
        keys.seal(
            token.as_bytes(),
            key.as_bytes(),
            &vec![b'x'; len - SEAL_OVERHEAD],
            now(),
            now() + Duration::from_secs(600),
        )
        .unwrap()
    };
    // A genuine entry one byte over the cap: it would open, and is refused.
    raw_set(&redis, &key, &seal(MAX_SEALED_BYTES + 1)).await;
    assert!(matches!(
        lookup(&a, token).await,
        SharedLookup::Tampered { .. }
    ));
    assert_eq!(a.stats().snapshot().tampered, 1);
    assert_eq!(
        a.wait_for(token, &a.digest(token), Duration::from_millis(50))
            .await,
        Waited::Tampered
    );
    // At the cap it opens.
    raw_set(&redis, &key, &seal(MAX_SEALED_BYTES)).await;
    assert!(matches!(lookup(&a, token).await, SharedLookup::Hit(_)));
    // Such an answer is not written in the first place.
    assert_eq!(
        a.put(
            token,
            &a.digest(token),
            &vec![b'x'; MAX_SEALED_BYTES],
            Duration::from_secs(60),
            now(),
        )
        .await,
        WriteResult::TooLarge
    );
}
