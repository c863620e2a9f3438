//! DPoP at the gateway (RFC 9449) through the fake Tyk gateway: real client
//! keys and proofs, tokens bound with `cnf.jkt` in the AS's JWT.

use serde_json::json;

use crate::dpop_client::{DpopClient, now};
use crate::support::fake_as::make_jwt;
use crate::support::*;

/// What the client calls (the fake gateway's `Host` and scheme).
const TARGET: &str = "/orders/api/items?page=2";
const HTU: &str = "http://gateway.test/orders/api/items";

fn bound_to(client: &DpopClient, sub: &str) -> Behaviour {
    let mut claims = Claims::valid_for(sub, 600);
    claims.extra["cnf"] = json!({ "jkt": client.jkt });
    Behaviour::Jwt(claims)
}

fn dpop_request(token: &str, proof: &str) -> ClientRequest {
    ClientRequest::get(TARGET)
        .header("Authorization", &format!("DPoP {token}"))
        .header("DPoP", proof)
}

fn challenge(outcome: &Outcome) -> String {
    outcome
        .response()
        .header("WWW-Authenticate")
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_valid_proof_forwards_the_jwt_without_the_proof_header() {
    let app = spawn_app_with(|s| s.admin = true).await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "ann"));

    let outcome = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let upstream = outcome.upstream.as_ref().unwrap();
    let jwt = app.fake_as.jwt_for("bound").unwrap();
    assert_eq!(
        upstream.header("Authorization"),
        Some(format!("Bearer {jwt}").as_str())
    );
    assert_eq!(upstream.header("DPoP"), None, "the proof is removed");
    assert_eq!(
        app.metric("phantom_dpop_checks_total{result=\"accepted\"}")
            .await,
        1.0
    );

    // Each request needs its own proof; the answer is cached.
    let again = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn with_dpop_forward_proof_the_header_goes_upstream() {
    let app = spawn_app_with(|s| {
        s.env("DPOP_FORWARD_PROOF", "true");
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "ben"));
    let proof = client.proof("GET", HTU, "bound");
    let outcome = app.send(dpop_request("bound", &proof)).await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(
        outcome.upstream.unwrap().header("DPoP"),
        Some(proof.as_str())
    );
}

#[tokio::test]
async fn proofs_that_do_not_fit_the_request_are_refused_without_asking_the_as() {
    let app = spawn_app_with(|s| s.admin = true).await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "cat"));
    let fresh = || client.claims("GET", HTU, "bound");
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = fresh();
        claims[name] = value;
        client.sign(&client.header(), &claims)
    };
    let valid = client.proof("GET", HTU, "bound");
    let cases = [
        ("wrong method", with("htm", json!("POST"))),
        (
            "wrong URL",
            with("htu", json!("http://gateway.test/orders/api/other")),
        ),
        ("stale iat", with("iat", json!(now() - 600))),
        ("iat ahead", with("iat", json!(now() + 600))),
        (
            "wrong ath",
            with("ath", json!(crate::dpop_client::ath("other"))),
        ),
        ("alg none", client.unsigned(&fresh())),
        (
            "HS256 keyed with the public key",
            client.hs256_with_public_key(&fresh()),
        ),
        ("two proofs in one value", format!("{valid}, {valid}")),
        ("not a JWS", "not-a-proof".to_owned()),
    ];
    for (why, proof) in &cases {
        let outcome = app.send(dpop_request("bound", proof)).await;
        assert_eq!(outcome.status(), 401, "{why}: {:?}", outcome.client);
        assert!(outcome.upstream.is_none(), "{why}");
        let challenge = challenge(&outcome);
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("error=\"invalid_dpop_proof\""),
            "{why}: {challenge}"
        );
        assert!(
            challenge.contains("algs=\"ES256 ES384 EdDSA RS256 PS256\""),
            "{challenge}"
        );
    }
    // A DPoP token without any proof.
    let outcome = app
        .send(ClientRequest::get(TARGET).header("Authorization", "DPoP bound"))
        .await;
    assert_eq!(outcome.status(), 401);
    assert!(challenge(&outcome).contains("invalid_dpop_proof"));
    assert_eq!(app.fake_as.calls(), 0, "no proof failure reached the AS");
    assert_eq!(
        app.metric("phantom_dpop_checks_total{result=\"wrong_htm\"}")
            .await,
        1.0
    );

    // The valid one still passes: the failed ones left nothing behind.
    let outcome = app.send(dpop_request("bound", &valid)).await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let app = spawn_app().await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "dan"));
    let proof = client.proof("GET", HTU, "bound");
    assert_eq!(app.send(dpop_request("bound", &proof)).await.status(), 200);
    let replay = app.send(dpop_request("bound", &proof)).await;
    assert_eq!(replay.status(), 401);
    assert!(challenge(&replay).contains("invalid_dpop_proof"));
    assert!(replay.upstream.is_none());
}

#[tokio::test]
async fn the_token_must_be_bound_to_the_proofs_key() {
    let app = spawn_app().await;
    let client = DpopClient::new();
    let thief = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "eve"));
    app.fake_as
        .script("plain", Behaviour::Jwt(Claims::valid_for("fay", 600)));

    // Another key's valid proof: only the answer shows the mismatch.
    let outcome = app
        .send(dpop_request("bound", &thief.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 401);
    let text = challenge(&outcome);
    assert!(
        text.starts_with("DPoP ") && text.contains("error=\"invalid_token\""),
        "{text}"
    );
    assert!(outcome.upstream.is_none());

    // A token bound to no key, with the DPoP scheme.
    let outcome = app
        .send(dpop_request("plain", &client.proof("GET", HTU, "plain")))
        .await;
    assert_eq!(outcome.status(), 401);
    assert!(challenge(&outcome).contains("error=\"invalid_token\""));

    // The bound token as a plain bearer token.
    let outcome = app.get_with_token("bound").await;
    assert_eq!(outcome.status(), 401);
    let text = challenge(&outcome);
    assert!(
        text.starts_with("DPoP ") && text.contains("error=\"invalid_token\""),
        "{text}"
    );
    assert!(text.contains(", Bearer realm=\"api\""), "{text}");
    assert!(outcome.upstream.is_none());

    // The unbound token as a bearer token still works; a stray proof
    // header is not forwarded.
    let outcome = app
        .send(
            ClientRequest::get(TARGET)
                .bearer("plain")
                .header("DPoP", &client.proof("GET", HTU, "plain")),
        )
        .await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.upstream.unwrap().header("DPoP"), None);
}

#[tokio::test]
async fn an_api_that_requires_dpop_refuses_bearer_requests_before_the_lookup() {
    let app = spawn_app_with(|s| {
        s.api.config_data = Some(json!({
            "dpop_required": true,
            "dpop_base_url": "https://api.example.com/",
        }));
    })
    .await;
    let client = DpopClient::new();
    app.fake_as
        .script("plain", Behaviour::Jwt(Claims::valid_for("gus", 600)));
    app.fake_as.script("bound", bound_to(&client, "hal"));

    let outcome = app.get_with_token("plain").await;
    assert_eq!(outcome.status(), 401);
    let text = challenge(&outcome);
    assert!(
        text.starts_with("DPoP ") && text.contains("algs="),
        "{text}"
    );
    let outcome = app.send(ClientRequest::get(TARGET)).await;
    assert_eq!(outcome.status(), 401);
    assert_eq!(
        challenge(&outcome),
        "DPoP realm=\"api\", algs=\"ES256 ES384 EdDSA RS256 PS256\""
    );
    assert_eq!(app.fake_as.calls(), 0);

    // The htu is the configured external URL, not the gateway's Host.
    let outcome = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 401);
    let external = "https://api.example.com/orders/api/items";
    let outcome = app
        .send(dpop_request(
            "bound",
            &client.proof("GET", external, "bound"),
        ))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
}

/// `DPOP_BASE_URL` names the external origin for every API: the `Host`
/// the client sent no longer decides `htu`. An API's own `dpop_base_url`
/// wins over it.
#[tokio::test]
async fn a_global_dpop_base_url_replaces_the_host_and_an_apis_own_wins() {
    let client = DpopClient::new();
    let global = spawn_app_with(|s| {
        s.env("DPOP_BASE_URL", "https://api.example.com/");
    })
    .await;
    global.fake_as.script("bound", bound_to(&client, "ike"));
    let outcome = global
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 401, "the Host no longer names the URL");
    assert!(challenge(&outcome).contains("invalid_dpop_proof"));
    assert_eq!(global.fake_as.calls(), 0);
    let external = "https://api.example.com/orders/api/items";
    let outcome = global
        .send(dpop_request(
            "bound",
            &client.proof("GET", external, "bound"),
        ))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);

    let own = spawn_app_with(|s| {
        s.env("DPOP_BASE_URL", "https://api.example.com/");
        s.api.config_data = Some(json!({ "dpop_base_url": "https://edge.example.net/" }));
    })
    .await;
    own.fake_as.script("bound", bound_to(&client, "ike"));
    let outcome = own
        .send(dpop_request(
            "bound",
            &client.proof("GET", external, "bound"),
        ))
        .await;
    assert_eq!(outcome.status(), 401, "the API's own base URL wins");
    let edge = "https://edge.example.net/orders/api/items";
    let outcome = own
        .send(dpop_request("bound", &client.proof("GET", edge, "bound")))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
}

#[tokio::test]
async fn with_nonces_on_the_client_is_given_one_and_then_accepted() {
    let app = spawn_app_with(|s| {
        s.env("DPOP_NONCE", "true")
            .env("SESSION_KEY_SECRET", "session-and-nonce-key");
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "ida"));
    let outcome = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 401);
    assert!(challenge(&outcome).contains("error=\"use_dpop_nonce\""));
    let nonce = outcome
        .response()
        .header("DPoP-Nonce")
        .expect("a fresh nonce")
        .to_owned();
    assert_eq!(app.fake_as.calls(), 0);

    let mut claims = client.claims("GET", HTU, "bound");
    claims["nonce"] = json!(nonce);
    let outcome = app
        .send(dpop_request(
            "bound",
            &client.sign(&client.header(), &claims),
        ))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
}

#[tokio::test]
async fn tyks_id_extractor_never_skips_the_proof_check() {
    let app = spawn_app_with(|s| {
        s.api.id_extractor_header = Some("Authorization".into());
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "joe"));
    let proof = client.proof("GET", HTU, "bound");
    let first = app.send(dpop_request("bound", &proof)).await;
    assert_eq!(first.status(), 200, "{:?}", first.client);
    let session = app.gateway.stored(&first.session_key.unwrap()).unwrap();
    assert_eq!(session.id_extractor_deadline, 0);

    let replay = app.send(dpop_request("bound", &proof)).await;
    assert!(replay.plugin_called, "Tyk's cache did not answer");
    assert_eq!(replay.status(), 401);
}

/// Two replicas sharing one Redis: a proof accepted by one is a replay on
/// the other; with Redis gone each replica still refuses its own replays.
#[tokio::test]
async fn a_proof_replayed_to_another_replica_is_refused_through_redis() {
    let mut redis = crate::redis_support::RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let mut fleet = Vec::new();
    for _ in 0..2 {
        fleet.push(
            spawn_app_with(|s| {
                s.env("INTROSPECTION_URL", &fake_as.url())
                    .env("REDIS_URL", &redis.url())
                    .env("REDIS_KEY_SECRET", "fleet-key-secret-dpop");
                s.admin = true;
            })
            .await,
        );
    }
    let client = DpopClient::new();
    fake_as.script("bound", bound_to(&client, "kay"));

    let proof = client.proof("GET", HTU, "bound");
    assert_eq!(
        fleet[0].send(dpop_request("bound", &proof)).await.status(),
        200
    );
    let replay = fleet[1].send(dpop_request("bound", &proof)).await;
    assert_eq!(replay.status(), 401, "{:?}", replay.client);
    assert!(challenge(&replay).contains("invalid_dpop_proof"));
    assert_eq!(
        fleet[1]
            .metric("phantom_dpop_checks_total{result=\"replayed_jti\"}")
            .await,
        1.0
    );
    // The binding came back from Redis with the answer: a fresh proof
    // passes on the second replica, the bearer form does not.
    let fresh = fleet[1]
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(fresh.status(), 200, "{:?}", fresh.client);
    assert_eq!(fleet[1].get_with_token("bound").await.status(), 401);
    assert_eq!(fake_as.calls(), 1, "one introspection for the fleet");

    redis.kill();
    let proof = client.proof("GET", HTU, "bound");
    assert_eq!(
        fleet[0].send(dpop_request("bound", &proof)).await.status(),
        200
    );
    assert_eq!(
        fleet[0].send(dpop_request("bound", &proof)).await.status(),
        401
    );
}

/// A JSON answer binds the token (`cnf.jkt`) while its ready JWT says
/// nothing of it: the answer's binding decides, in memory and through Redis.
#[tokio::test]
async fn the_json_answers_binding_holds_when_the_ready_jwt_lacks_it() {
    let redis = crate::redis_support::RedisServer::start().await;
    let fake_as = FakeAs::start().await;
    let mut fleet = Vec::new();
    for _ in 0..2 {
        fleet.push(
            spawn_app_with(|s| {
                s.env("INTROSPECTION_URL", &fake_as.url())
                    .env("INTROSPECTION_JWT_FIELD", "jwt")
                    .env("REDIS_URL", &redis.url())
                    .env("REDIS_KEY_SECRET", "fleet-key-secret-dpop");
            })
            .await,
        );
    }
    let client = DpopClient::new();
    let jwt = make_jwt(&Claims::valid_for("lee", 600), 3);
    let answer = json!({
        "active": true, "sub": "lee", "exp": now() + 600, "jwt": jwt,
        "token_type": "DPoP", "cnf": {"jkt": client.jkt},
    });
    fake_as.script(
        "bound",
        Behaviour::Answer("application/json", answer.to_string()),
    );

    for app in &fleet {
        let outcome = app
            .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
            .await;
        assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
        assert_eq!(
            outcome.upstream.unwrap().header("Authorization"),
            Some(format!("Bearer {jwt}").as_str())
        );
        let bearer = app.get_with_token("bound").await;
        assert_eq!(bearer.status(), 401, "bound, so never as Bearer");
    }
    assert_eq!(fake_as.calls(), 1, "the second replica read it from Redis");
}

#[tokio::test]
async fn denials_after_a_valid_proof_are_challenged_in_the_dpop_scheme() {
    let app = spawn_app_with(|s| {
        s.api.config_data = Some(json!({
            "required_scopes": ["orders:write"],
            "required_acr": ["urn:example:acr:mfa"],
        }));
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "ida"));

    // An inactive token: the AS decides, the challenge is DPoP's.
    let outcome = app
        .send(dpop_request("gone", &client.proof("GET", HTU, "gone")))
        .await;
    assert_eq!(outcome.status(), 401);
    assert_eq!(
        challenge(&outcome),
        "DPoP realm=\"api\", error=\"invalid_token\", algs=\"ES256 ES384 EdDSA RS256 PS256\""
    );

    // The API's own checks: scope, then step-up, in the DPoP scheme too.
    let outcome = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(outcome.status(), 403, "{:?}", outcome.client);
    let text = challenge(&outcome);
    assert!(
        text.starts_with("DPoP realm=\"api\", error=\"insufficient_scope\"")
            && text.ends_with(", algs=\"ES256 ES384 EdDSA RS256 PS256\""),
        "{text}"
    );
    assert!(outcome.upstream.is_none());

    let mut writer = Claims::valid_for("jon", 600);
    writer.extra["scope"] = json!("orders:write");
    writer.extra["cnf"] = json!({ "jkt": client.jkt });
    app.fake_as.script("writer", Behaviour::Jwt(writer));
    let outcome = app
        .send(dpop_request("writer", &client.proof("GET", HTU, "writer")))
        .await;
    assert_eq!(outcome.status(), 401, "{:?}", outcome.client);
    let text = challenge(&outcome);
    assert!(
        text.starts_with("DPoP realm=\"api\", error=\"insufficient_user_authentication\"")
            && text.contains("acr_values=\"urn:example:acr:mfa\"")
            && text.ends_with(", algs=\"ES256 ES384 EdDSA RS256 PS256\""),
        "{text}"
    );

    // The same token as plain Bearer is still refused for its binding.
    let outcome = app.get_with_token("bound").await;
    assert_eq!(outcome.status(), 401);
    assert!(challenge(&outcome).starts_with("DPoP "));
}

/// Proofs for tokens that do not check out (inactive, or bound to no key)
/// are never remembered, so however many an attacker sends, the victim's
/// proof stays remembered and its replay is refused.
#[tokio::test]
async fn a_flood_of_proofs_for_junk_or_unbound_tokens_cannot_evict_a_victims_proof() {
    let app = spawn_app_with(|s| {
        s.env("DPOP_REPLAY_CAPACITY", "4");
    })
    .await;
    let victim = DpopClient::new();
    let attacker = DpopClient::new();
    app.fake_as.script("victim", bound_to(&victim, "val"));
    app.fake_as
        .script("unbound", Behaviour::Jwt(Claims::valid_for("ugo", 600)));
    let proof = victim.proof("GET", HTU, "victim");
    assert_eq!(app.send(dpop_request("victim", &proof)).await.status(), 200);

    for n in 0..40 {
        let token = if n % 2 == 0 {
            format!("junk-{n}")
        } else {
            "unbound".to_owned()
        };
        let flood = attacker.proof("GET", HTU, &token);
        assert_eq!(app.send(dpop_request(&token, &flood)).await.status(), 401);
    }

    let replay = app.send(dpop_request("victim", &proof)).await;
    assert_eq!(replay.status(), 401, "the replay was {:?}", replay.client);
    assert!(challenge(&replay).contains("invalid_dpop_proof"));
    assert!(replay.upstream.is_none());
    // The store holds the victim's proof alone: fresh ones still pass.
    for _ in 0..3 {
        let fresh = victim.proof("GET", HTU, "victim");
        assert_eq!(app.send(dpop_request("victim", &fresh)).await.status(), 200);
    }
}

/// A full replay store refuses new proofs (503, not the client's fault)
/// rather than forget one still inside its window.
#[tokio::test]
async fn a_full_replay_store_refuses_with_503_and_forgets_nothing() {
    let app = spawn_app_with(|s| {
        s.env("DPOP_REPLAY_CAPACITY", "2");
        s.admin = true;
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "wes"));
    let first = client.proof("GET", HTU, "bound");
    assert_eq!(app.send(dpop_request("bound", &first)).await.status(), 200);
    let second = client.proof("GET", HTU, "bound");
    assert_eq!(app.send(dpop_request("bound", &second)).await.status(), 200);

    let third = app
        .send(dpop_request("bound", &client.proof("GET", HTU, "bound")))
        .await;
    assert_eq!(third.status(), 503, "{:?}", third.client);
    assert!(third.response().header("Retry-After").is_some());
    assert!(third.upstream.is_none());
    assert_eq!(
        app.metric("phantom_dpop_checks_total{result=\"replay_store_full\"}")
            .await,
        1.0
    );
    // Both remembered proofs are still refused as replays.
    for proof in [&first, &second] {
        let replay = app.send(dpop_request("bound", proof)).await;
        assert_eq!(replay.status(), 401);
        assert!(challenge(&replay).contains("invalid_dpop_proof"));
    }
}

/// A proof's claim in Redis lives until its window ends, counted from its
/// `iat` (window 60 s, skew 30 s by default): exactly as long as another
/// replica would accept it.
#[tokio::test]
async fn a_proofs_claim_in_redis_lives_until_its_window_ends() {
    let redis = crate::redis_support::RedisServer::start().await;
    let app = spawn_app_with(|s| {
        s.env("REDIS_URL", &redis.url())
            .env("REDIS_KEY_SECRET", "fleet-key-secret-dpop");
    })
    .await;
    let client = DpopClient::new();
    app.fake_as.script("bound", bound_to(&client, "amo"));
    let mut raw = redis.raw().await;
    // Dated now, and as far ahead as the skew allows.
    for ahead in [0, 30] {
        let mut claims = client.claims("GET", HTU, "bound");
        let iat = now() + ahead;
        claims["iat"] = json!(iat);
        let proof = client.sign(&client.header(), &claims);
        let outcome = app.send(dpop_request("bound", &proof)).await;
        assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*dpop:*")
            .query_async(&mut raw)
            .await
            .unwrap();
        let mut left = Vec::new();
        for key in &keys {
            let pttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
            left.push(pttl);
        }
        let now_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let ends_ms = i64::try_from((iat + 60 + 1) * 1000).unwrap();
        let expected = ends_ms - now_ms;
        assert!(
            left.iter().any(|pttl| (pttl - expected).abs() <= 250),
            "iat +{ahead}s: PTTLs {left:?}, expected about {expected}"
        );
    }
}
