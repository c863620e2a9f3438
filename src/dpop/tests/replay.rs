//! The replay store: how long a claim lives, what happens when it is full,
//! and that screening alone never takes room in it.

use super::screen::facts;
use super::*;

const WINDOW: u64 = 60;
const SKEW: u64 = 5;

fn at(secs: u64, millis: u64) -> Duration {
    Duration::from_secs(secs) + Duration::from_millis(millis)
}

/// Whether the proof check itself accepts a proof dated `iat` at `now`.
fn accepted(iat: u64, now: Duration) -> bool {
    let url = Url::parse(URL).unwrap();
    let proof = Proof {
        jkt: "k".into(),
        jti: "j".into(),
        htm: "GET".into(),
        htu: URL.into(),
        iat,
        ath: Some(ath_of(TOKEN)),
        nonce: None,
    };
    proof
        .check(&Expected {
            method: "GET",
            htu: &url,
            access_token: TOKEN,
            now: now.as_secs(),
            window: WINDOW,
            skew: SKEW,
        })
        .is_ok()
}

#[test]
fn a_claim_lives_exactly_as_long_as_its_proof_is_accepted() {
    // Dated as far ahead as the skew allows, the oldest allowed, and now.
    for iat in [NOW + SKEW, NOW - WINDOW, NOW] {
        let store = ReplayCache::new(10);
        let claim = ProofClaim::new("k", &format!("j-{iat}"), iat, WINDOW);
        assert!(accepted(iat, at(NOW, 0)));
        assert_eq!(store.claim(&claim, at(NOW, 0)), Seen::First);
        let last = at(iat + WINDOW, 999);
        // To the last millisecond the proof is accepted, it is remembered...
        assert!(accepted(iat, last), "iat {iat}");
        assert_eq!(store.claim(&claim, last), Seen::Replayed, "iat {iat}");
        // ...and from the first one it is not, it is forgotten.
        let end = at(iat + WINDOW + 1, 0);
        assert!(!accepted(iat, end), "iat {iat}");
        assert!(!store.seen(&claim, end), "iat {iat}");
        assert_eq!(store.held(), 0, "its room is free again");
        assert_eq!(claim.ends_at(), end);
    }
}

#[test]
fn a_proof_past_its_window_takes_no_room() {
    let store = ReplayCache::new(1);
    let claim = ProofClaim::new("k", "late", NOW - WINDOW, WINDOW);
    // Screened in time, its token decided a second later.
    assert_eq!(store.claim(&claim, at(NOW + 1, 0)), Seen::First);
    assert_eq!(store.held(), 0);
}

#[test]
fn a_full_store_refuses_and_keeps_every_live_claim() {
    let store = ReplayCache::new(3);
    let now = at(NOW, 0);
    // Ending at NOW+1+WINDOW, +2, +3 (different shards, most likely).
    let claims: Vec<ProofClaim> = (0..3)
        .map(|n| ProofClaim::new("k", &format!("j{n}"), NOW + n, WINDOW))
        .collect();
    for claim in &claims {
        assert_eq!(store.claim(claim, now), Seen::First);
    }
    let extra = ProofClaim::new("k", "extra", NOW + 3, WINDOW);
    for _ in 0..100 {
        assert_eq!(store.claim(&extra, now), Seen::Full);
    }
    assert_eq!(store.held(), 3);
    for claim in &claims {
        assert_eq!(store.claim(claim, now), Seen::Replayed);
    }
    // The first window ends: its room goes to the next proof.
    let later = claims[0].ends_at();
    assert_eq!(store.claim(&extra, later), Seen::First);
    assert_eq!(store.claim(&claims[1], later), Seen::Replayed);
    assert_eq!(store.claim(&claims[2], later), Seen::Replayed);
    assert_eq!(store.held(), 3);
    assert!(!store.seen(&claims[0], later));
}

#[test]
fn every_shard_frees_its_ended_claims_when_the_store_looks_full() {
    let store = ReplayCache::new(64);
    // 64 claims spread over every shard, all ending at NOW+1+WINDOW.
    for n in 0..64 {
        let claim = ProofClaim::new("k", &format!("old-{n}"), NOW, WINDOW);
        assert_eq!(store.claim(&claim, at(NOW, 0)), Seen::First);
    }
    let after = at(NOW + WINDOW + 1, 0);
    // Each new claim lands in one shard; the ended claims of the others
    // must not keep it out.
    for n in 0..64 {
        let claim = ProofClaim::new("k", &format!("new-{n}"), NOW + WINDOW, WINDOW);
        assert_eq!(store.claim(&claim, after), Seen::First, "claim {n}");
    }
    assert_eq!(store.held(), 64);
}

#[tokio::test]
async fn screening_any_number_of_proofs_takes_no_room() {
    let config = DpopConfig {
        replay_capacity: 1,
        ..DpopConfig::default()
    };
    let dpop = Dpop::new(&config, Duration::from_secs(SKEW), b"secret", 4096);
    let key = ClientKey::es256();
    let scheme = format!("DPoP {TOKEN}");
    for n in 0..50 {
        let proof = key.proof(&with(claims(), "jti", json!(format!("flood-{n}"))));
        assert!(matches!(
            dpop.screen(&facts(&scheme, Some(&proof)), &DpopRules::default(), NOW),
            Screened::Dpop { claim: Some(_), .. }
        ));
    }
    assert_eq!(dpop.replay.held(), 0);
    // The one proof whose token checked out has its room.
    let proof = key.proof(&claims());
    let Screened::Dpop {
        claim: Some(claim), ..
    } = dpop.screen(&facts(&scheme, Some(&proof)), &DpopRules::default(), NOW)
    else {
        panic!("screened");
    };
    let now = Duration::from_secs(NOW);
    assert_eq!(dpop.remember(&claim, None, now).await, Ok(()));
    let other = ProofClaim::new(&key.jkt, "second", NOW, WINDOW);
    assert_eq!(
        dpop.remember(&other, None, now).await,
        Err(DpopDenial::ReplayStoreFull)
    );
    assert_eq!(DpopDenial::ReplayStoreFull.as_str(), "replay_store_full");
}
