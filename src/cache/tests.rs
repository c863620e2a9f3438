use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn policy() -> TtlPolicy {
    TtlPolicy {
        clock_skew: Duration::from_secs(30),
        max_ttl: None,
        default_ttl: Duration::from_secs(20),
        negative_ttl: Duration::from_secs(5),
        honor_no_store: false,
    }
}

const NOW: Duration = Duration::from_secs(1_800_000_000);

#[test]
fn ttl_runs_to_exp_and_forwarding_to_exp_minus_skew() {
    let exp = NOW.as_secs() + 3600;
    assert_eq!(
        policy().active(Some(exp), None, NOW),
        Duration::from_secs(3600)
    );
    assert_eq!(
        policy().forwardable_for(Some(exp), NOW),
        Some(Duration::from_secs(3570))
    );
    assert_eq!(policy().forwardable_for(None, NOW), None);
}

#[test]
fn ttl_is_measured_from_fractional_now() {
    let now = NOW + Duration::from_millis(400);
    let exp = NOW.as_secs() + 100;
    assert_eq!(
        policy().active(Some(exp), None, now),
        Duration::from_millis(99_600)
    );
    assert_eq!(
        policy().forwardable_for(Some(exp), now),
        Some(Duration::from_millis(69_600))
    );
}

#[test]
fn tokens_inside_the_skew_are_kept_to_their_end_and_expired_ones_not_at_all() {
    // Kept (so the next requests are refused without asking the AS), but
    // never forwarded.
    let in_skew = NOW.as_secs() + 10;
    assert_eq!(
        policy().active(Some(in_skew), None, NOW),
        Duration::from_secs(10)
    );
    assert!(!policy().forwardable(Some(in_skew), NOW));
    assert_eq!(
        policy().forwardable_for(Some(in_skew), NOW),
        Some(Duration::ZERO)
    );
    assert_eq!(
        policy().active(Some(NOW.as_secs() - 10), None, NOW),
        Duration::ZERO
    );
    assert_eq!(policy().active(Some(0), None, NOW), Duration::ZERO);
}

#[test]
fn ttl_is_capped_by_the_configured_maximum_and_max_age() {
    let exp = Some(NOW.as_secs() + 3600);
    let capped = TtlPolicy {
        max_ttl: Some(Duration::from_secs(300)),
        ..policy()
    };
    assert_eq!(capped.active(exp, None, NOW), Duration::from_secs(300));
    assert_eq!(
        capped.active(exp, Some(Duration::from_secs(120)), NOW),
        Duration::from_secs(120)
    );
    assert_eq!(
        policy().active(exp, Some(Duration::from_secs(7200)), NOW),
        Duration::from_secs(3600)
    );
    assert_eq!(
        policy().active(exp, Some(Duration::ZERO), NOW),
        Duration::ZERO
    );
}

#[test]
fn jwt_without_exp_gets_the_short_default_under_the_same_caps() {
    assert_eq!(policy().active(None, None, NOW), Duration::from_secs(20));
    assert_eq!(
        policy().active(None, Some(Duration::from_secs(5)), NOW),
        Duration::from_secs(5)
    );
    let capped = TtlPolicy {
        max_ttl: Some(Duration::from_secs(1)),
        ..policy()
    };
    assert_eq!(capped.active(None, None, NOW), Duration::from_secs(1));
}

#[test]
fn no_store_limits_the_ttl_only_when_honoured() {
    let exp = Some(NOW.as_secs() + 3600);
    let no_store = CacheDirectives {
        max_age: None,
        no_store: true,
    };
    assert_eq!(
        policy().for_answer(exp, &no_store, NOW),
        Duration::from_secs(3600)
    );
    let strict = TtlPolicy {
        honor_no_store: true,
        ..policy()
    };
    assert_eq!(strict.for_answer(exp, &no_store, NOW), Duration::ZERO);
    let capped = CacheDirectives {
        max_age: Some(Duration::from_secs(60)),
        no_store: true,
    };
    assert_eq!(
        policy().for_answer(exp, &capped, NOW),
        Duration::from_secs(60)
    );
    let zero = CacheDirectives {
        max_age: Some(Duration::ZERO),
        no_store: false,
    };
    assert_eq!(policy().for_answer(exp, &zero, NOW), Duration::ZERO);
}

#[test]
fn a_jwt_is_forwardable_until_exp_minus_skew() {
    let exp = NOW.as_secs() + 100;
    assert!(policy().forwardable(Some(exp), NOW));
    assert!(policy().forwardable(Some(exp), NOW + Duration::from_millis(69_999)));
    assert!(!policy().forwardable(Some(exp), NOW + Duration::from_secs(70)));
    assert!(!policy().forwardable(Some(NOW.as_secs() - 1), NOW));
    assert!(policy().forwardable(None, NOW));
}

fn digest(n: u8) -> TokenDigest {
    TokenDigest([n; 32])
}

fn value(ttl: Duration, weight: u32) -> Cached<u32> {
    Cached {
        value: 7,
        ttl,
        weight,
    }
}

#[tokio::test]
async fn concurrent_misses_run_one_fetch() {
    let cache = Arc::new(TokenCache::<u32>::new(1 << 20, None, |_| {}));
    let fetches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, fetches) = (cache.clone(), fetches.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch::<(), _>(digest(1), || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(value(Duration::from_secs(60), 100))
                })
                .await
                .map(|(v, _)| v.value)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(7));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn errors_reach_waiters_but_are_not_stored() {
    let cache = TokenCache::<u32>::new(1 << 20, None, |_| {});
    let failed = cache
        .get_or_fetch(digest(2), || async { Err::<Cached<u32>, _>("down") })
        .await;
    assert_eq!(failed.map(|_| ()), Err(Arc::new("down")));
    let (_, how) = cache
        .get_or_fetch::<&str, _>(digest(2), || async {
            Ok(value(Duration::from_secs(60), 1))
        })
        .await
        .unwrap();
    assert_eq!(how, Lookup::Fetched);
    let (_, how) = cache
        .get_or_fetch::<&str, _>(digest(2), || async { Err("not called") })
        .await
        .unwrap();
    assert_eq!(how, Lookup::Hit);
}

#[tokio::test]
async fn an_entry_refused_as_invalid_is_fetched_again() {
    let cache = TokenCache::<u32>::new(1 << 20, None, |_| {});
    cache
        .insert(digest(6), value(Duration::from_secs(60), 1))
        .await;
    let (_, how) = cache
        .get_valid_or_fetch::<(), _>(
            digest(6),
            |c| c.value != 7,
            || async {
                Ok(Cached {
                    value: 8,
                    ttl: Duration::from_secs(60),
                    weight: 1,
                })
            },
        )
        .await
        .unwrap();
    assert_eq!(how, Lookup::Fetched);
    let (found, how) = cache
        .get_valid_or_fetch::<(), _>(digest(6), |c| c.value != 7, || async { Err(()) })
        .await
        .unwrap();
    assert_eq!((found.value, how), (8, Lookup::Hit));
}

#[tokio::test]
async fn entries_expire_after_their_own_ttl() {
    let cache = TokenCache::<u32>::new(1 << 20, None, |_| {});
    cache
        .get_or_fetch::<(), _>(digest(3), || async {
            Ok(value(Duration::from_millis(80), 1))
        })
        .await
        .unwrap();
    assert!(cache.peek(&digest(3)).await.is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(cache.peek(&digest(3)).await.is_none());
}

#[tokio::test]
async fn a_replacement_lives_for_its_own_shorter_ttl() {
    let cache = TokenCache::<u32>::new(1 << 20, None, |_| {});
    cache
        .insert(digest(4), value(Duration::from_secs(60), 1))
        .await;
    cache
        .insert(digest(4), value(Duration::from_millis(80), 1))
        .await;
    assert!(cache.peek(&digest(4)).await.is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        cache.peek(&digest(4)).await.is_none(),
        "the old, longer life was kept"
    );
    cache
        .insert(digest(4), value(Duration::from_secs(60), 1))
        .await;
    cache.insert(digest(4), value(Duration::ZERO, 1)).await;
    assert!(
        cache.peek(&digest(4)).await.is_none(),
        "a zero TTL keeps nothing"
    );
}

#[tokio::test]
async fn a_replacement_lives_for_its_own_longer_ttl() {
    let cache = TokenCache::<u32>::new(1 << 20, None, |_| {});
    cache
        .insert(digest(5), value(Duration::from_millis(100), 1))
        .await;
    cache
        .insert(digest(5), value(Duration::from_secs(60), 1))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        cache.peek(&digest(5)).await.is_some(),
        "the old, shorter life was kept"
    );
}

#[tokio::test]
async fn byte_bound_is_kept() {
    let cache = TokenCache::<u32>::new(64 * 1024, None, |_| {});
    for n in 0..=255u8 {
        cache
            .get_or_fetch::<(), _>(digest(n), || async {
                Ok(value(Duration::from_secs(60), 1024))
            })
            .await
            .unwrap();
    }
    cache.run_pending_tasks().await;
    assert!(
        cache.weighted_size() <= 64 * 1024,
        "{}",
        cache.weighted_size()
    );
    assert!(cache.entry_count() <= 64, "{}", cache.entry_count());
    assert!(cache.entry_count() > 0);
}

#[tokio::test]
async fn entry_bound_is_kept_even_for_small_entries() {
    let cache = TokenCache::<u32>::new(1 << 20, Some(10), |_| {});
    for n in 0..100u8 {
        cache
            .get_or_fetch::<(), _>(digest(n), || async {
                Ok(value(Duration::from_secs(60), 10))
            })
            .await
            .unwrap();
    }
    cache.run_pending_tasks().await;
    assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
    assert!(cache.entry_count() > 0);
}
