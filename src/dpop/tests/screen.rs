//! Screening a request: the URL it names, the replay cache, nonces, the
//! scheme, and the key binding after the lookup.

use super::*;

#[test]
fn the_request_url_comes_from_the_base_url_or_the_host_header() {
    let facts = RequestFacts {
        method: "GET",
        url: "/orders/1?x=1",
        scheme: "https",
        host: Some("api.example.com"),
        ..RequestFacts::default()
    };
    let htu = |facts: &RequestFacts<'_>, rules: &DpopRules| {
        request_htu(facts, rules.base_url.as_ref()).map(|u| u.to_string())
    };
    assert_eq!(htu(&facts, &DpopRules::default()).as_deref(), Some(URL));
    let http = RequestFacts {
        scheme: "",
        ..facts
    };
    assert_eq!(
        htu(&http, &DpopRules::default()).as_deref(),
        Some("http://api.example.com/orders/1")
    );
    let rules = DpopRules {
        base_url: Some(parse_base_url("https://edge.example.com/v1/").unwrap()),
        required: false,
    };
    let behind = RequestFacts {
        host: Some("10.0.0.7:8080"),
        scheme: "http",
        ..facts
    };
    assert_eq!(
        htu(&behind, &rules).as_deref(),
        Some("https://edge.example.com/v1/orders/1")
    );
    for host in [
        None,
        Some(""),
        Some("evil.com/x?"),
        Some("a@b"),
        Some("a b"),
    ] {
        let bad = RequestFacts { host, ..facts };
        assert_eq!(htu(&bad, &DpopRules::default()), None, "{host:?}");
    }
    for bad in [
        "ftp://x",
        "https://u:p@x",
        "https://x/?q",
        "/relative",
        "https://x/#f",
    ] {
        assert!(parse_base_url(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_proof_is_accepted_once_per_key() {
    let cache = ReplayCache::new(100);
    let now = Duration::from_secs(NOW);
    let claim = |jkt: &str, jti: &str| ProofClaim::new(jkt, jti, NOW, 60);
    assert_eq!(
        cache.record(&claim("k1", "j1"), now, None).await,
        Seen::First
    );
    assert_eq!(
        cache.record(&claim("k1", "j1"), now, None).await,
        Seen::Replayed
    );
    assert_eq!(
        cache.record(&claim("k2", "j1"), now, None).await,
        Seen::First
    );
    assert_eq!(
        cache.record(&claim("k1", "j2"), now, None).await,
        Seen::First
    );
    assert_eq!(cache.held(), 3);
}

#[test]
fn nonces_live_for_their_slot_and_the_next() {
    let nonces = Nonces::new(b"secret", 60);
    let nonce = nonces.current(NOW);
    assert!(nonces.accepts(&nonce, NOW));
    assert!(nonces.accepts(&nonce, NOW + 60));
    assert!(!nonces.accepts(&nonce, NOW + 120));
    assert!(!Nonces::new(b"other", 60).accepts(&nonce, NOW));
    for junk in ["", "!!", "AAAA"] {
        assert!(!nonces.accepts(junk, NOW), "{junk}");
    }
}

fn dpop(nonce: bool) -> Dpop {
    let config = DpopConfig {
        nonce,
        ..DpopConfig::default()
    };
    Dpop::new(&config, Duration::from_secs(5), b"secret", 4096)
}

pub(super) fn facts<'a>(authorization: &'a str, proof: Option<&'a str>) -> RequestFacts<'a> {
    RequestFacts {
        authorization: Some(authorization),
        proof,
        method: "GET",
        url: "/orders/1?x=1",
        scheme: "https",
        host: Some("api.example.com"),
    }
}

#[tokio::test]
async fn screening_checks_scheme_and_proof_and_remembering_comes_after() {
    let dpop = dpop(false);
    let key = ClientKey::es256();
    let rules = DpopRules::default();
    let required = DpopRules {
        required: true,
        ..DpopRules::default()
    };
    let bearer = format!("Bearer {TOKEN}");
    let scheme = format!("DPoP {TOKEN}");
    assert!(matches!(
        dpop.screen(&facts(&bearer, None), &rules, NOW),
        Screened::Bearer
    ));
    assert!(matches!(
        dpop.screen(&facts(&bearer, None), &required, NOW),
        Screened::Refused(DpopDenial::Required { token: true })
    ));
    assert!(matches!(
        dpop.screen(&facts("", None), &required, NOW),
        Screened::Refused(DpopDenial::Required { token: false })
    ));
    assert!(matches!(
        dpop.screen(&facts(&scheme, None), &rules, NOW),
        Screened::Refused(DpopDenial::Proof(ProofError::Missing))
    ));
    let proof = key.proof(&claims());
    let claim = match dpop.screen(&facts(&scheme, Some(&proof)), &required, NOW) {
        Screened::Dpop {
            authorization,
            jkt,
            claim: Some(claim),
        } => {
            assert_eq!(authorization, format!("Bearer {TOKEN}"));
            assert_eq!(jkt, key.jkt);
            claim
        }
        other => panic!("{other:?}"),
    };
    // Screening remembers nothing: until its token checks out and the
    // proof is remembered, the same proof screens again.
    assert!(matches!(
        dpop.screen(&facts(&scheme, Some(&proof)), &rules, NOW),
        Screened::Dpop { .. }
    ));
    let now = Duration::from_secs(NOW);
    assert_eq!(dpop.remember(&claim, None, now).await, Ok(()));
    // Remembered: refused before any lookup, and at the remember step.
    assert!(matches!(
        dpop.screen(&facts(&scheme, Some(&proof)), &rules, NOW),
        Screened::Refused(DpopDenial::Proof(ProofError::Replayed))
    ));
    assert_eq!(
        dpop.remember(&claim, None, now).await,
        Err(DpopDenial::Proof(ProofError::Replayed))
    );
    // A proof that fails a check is not remembered either: the same jti,
    // right, is still accepted after a wrong one.
    let wrong = key.proof(&with(claims(), "jti", json!("fresh")));
    let post = RequestFacts {
        method: "POST",
        ..facts(&scheme, Some(&wrong))
    };
    assert!(matches!(
        dpop.screen(&post, &rules, NOW),
        Screened::Refused(DpopDenial::Proof(ProofError::WrongMethod))
    ));
    assert!(matches!(
        dpop.screen(&facts(&scheme, Some(&wrong)), &rules, NOW),
        Screened::Dpop { claim: Some(_), .. }
    ));
    // A malformed token is left to the decision, with nothing to remember.
    assert!(matches!(
        dpop.screen(&facts("DPoP a b", Some(&proof)), &rules, NOW),
        Screened::Dpop { claim: None, .. }
    ));
}

#[test]
fn with_nonces_on_a_proof_without_a_fresh_one_gets_one() {
    let dpop = dpop(true);
    let key = ClientKey::es256();
    let scheme = format!("DPoP {TOKEN}");
    let rules = DpopRules::default();
    let proof = key.proof(&claims());
    let nonce = match dpop.screen(&facts(&scheme, Some(&proof)), &rules, NOW) {
        Screened::Refused(DpopDenial::UseNonce(nonce)) => nonce,
        other => panic!("{other:?}"),
    };
    let stale = key.proof(&with(
        with(claims(), "nonce", json!("old")),
        "jti",
        json!("2"),
    ));
    assert!(matches!(
        dpop.screen(&facts(&scheme, Some(&stale)), &rules, NOW),
        Screened::Refused(DpopDenial::UseNonce(_))
    ));
    let proof = key.proof(&with(
        with(claims(), "nonce", json!(nonce)),
        "jti",
        json!("3"),
    ));
    assert!(matches!(
        dpop.screen(&facts(&scheme, Some(&proof)), &rules, NOW),
        Screened::Dpop { .. }
    ));
}

fn grant(cnf: Option<Value>) -> Grant {
    let mut claims = crate::jwt::Claims::default();
    if let Some(cnf) = cnf {
        claims.set("cnf", cnf);
    }
    Grant::new(
        "h.p.s",
        &claims,
        false,
        "phantom-token:00".to_owned(),
        0,
        std::time::Duration::ZERO,
    )
}

#[test]
fn the_binding_must_match_the_scheme_and_the_key() {
    let bound = grant(Some(json!({"jkt": "abc"})));
    let unbound = grant(None);
    let other_cnf = grant(Some(json!({"x5t#S256": "abc"})));
    assert_eq!(Dpop::bind(&unbound, None), Ok(()));
    assert_eq!(Dpop::bind(&other_cnf, None), Ok(()));
    assert_eq!(Dpop::bind(&bound, Some("abc")), Ok(()));
    assert_eq!(Dpop::bind(&bound, None), Err(DpopDenial::BoundAsBearer));
    assert_eq!(
        Dpop::bind(&bound, Some("abd")),
        Err(DpopDenial::KeyMismatch)
    );
    assert_eq!(Dpop::bind(&unbound, Some("abc")), Err(DpopDenial::Unbound));
    assert_eq!(
        Dpop::bind(&other_cnf, Some("abc")),
        Err(DpopDenial::Unbound)
    );
}

#[test]
fn the_global_base_url_is_the_default_and_an_apis_own_wins() {
    let config = DpopConfig {
        base_url: Some(parse_base_url("https://edge.example.com/v1").unwrap()),
        ..DpopConfig::default()
    };
    let dpop = Dpop::new(&config, Duration::from_secs(5), b"secret", 4096);
    let key = ClientKey::es256();
    let scheme = format!("DPoP {TOKEN}");
    let proof_for = |htu: &str| key.proof(&with(claims(), "htu", json!(htu)));
    let at_host = proof_for(URL);
    let at_edge = proof_for("https://edge.example.com/v1/orders/1");
    let own = DpopRules {
        base_url: Some(parse_base_url("https://own.example.org").unwrap()),
        required: false,
    };
    let own_url = proof_for("https://own.example.org/orders/1");
    let screen =
        |proof: &str, rules: &DpopRules| dpop.screen(&facts(&scheme, Some(proof)), rules, NOW);
    assert!(matches!(
        screen(&at_host, &DpopRules::default()),
        Screened::Refused(DpopDenial::Proof(ProofError::WrongUrl))
    ));
    assert!(matches!(
        screen(&at_edge, &DpopRules::default()),
        Screened::Dpop { .. }
    ));
    assert!(matches!(
        screen(&at_edge, &own),
        Screened::Refused(DpopDenial::Proof(ProofError::WrongUrl))
    ));
    assert!(matches!(screen(&own_url, &own), Screened::Dpop { .. }));
}
