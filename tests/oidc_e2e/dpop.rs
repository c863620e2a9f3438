//! DPoP against the real server: node-oidc-provider issues a token bound to
//! the client's key (its answer carries `cnf.jkt`), the client signs real
//! proofs, and the plugin checks them before it introspects.

use serde_json::json;

use super::*;
use crate::dpop_client::{DpopClient, ath, now};

const TARGET: &str = "/orders/api/items?page=2";
const HTU: &str = "http://gateway.test/orders/api/items";

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

/// Both answer formats the server gives: RFC 7662 JSON and RFC 9701 signed.
#[tokio::test]
async fn real_proofs_for_a_bound_token_from_the_real_server() {
    for accept in ["application/json", "application/token-introspection+jwt"] {
        bound_token_end_to_end(accept).await;
    }
}

async fn bound_token_end_to_end(accept: &str) {
    let provider = OidcProvider::start().await;
    let proxy = Proxy::start(&provider.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    env.insert("ISSUER".into(), provider.issuer.clone());
    env.insert("INTROSPECTION_URL".into(), proxy.introspection_url());
    env.insert("INTROSPECTION_ACCEPT".into(), accept.into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    let client = DpopClient::new();
    let thief = DpopClient::new();
    let token = provider
        .issue_token(json!({"sub": "kim", "scope": "orders:read", "jkt": client.jkt}))
        .await;

    // Malformed or foreign proofs: refused before any introspection.
    let fresh = || client.claims("GET", HTU, &token);
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = fresh();
        claims[name] = value;
        client.sign(&client.header(), &claims)
    };
    let cases = [
        ("wrong method", with("htm", json!("DELETE"))),
        ("wrong URL", with("htu", json!("http://gateway.test/admin"))),
        ("stale iat", with("iat", json!(now() - 3600))),
        ("wrong ath", with("ath", json!(ath("another-token")))),
        ("alg none", client.unsigned(&fresh())),
        (
            "HS256 with the public key",
            client.hs256_with_public_key(&fresh()),
        ),
    ];
    for (why, proof) in &cases {
        let outcome = plugin.gateway.request(dpop_request(&token, proof)).await;
        assert_eq!(
            outcome.status(),
            401,
            "{accept} {why}: {:?}",
            outcome.client
        );
        assert!(
            challenge(&outcome).contains("error=\"invalid_dpop_proof\""),
            "{why}"
        );
        assert!(outcome.upstream.is_none());
    }
    assert_eq!(
        proxy.introspections(),
        0,
        "{accept}: no AS call for a bad proof"
    );

    // The client's own proof: the minted JWT goes upstream, bound.
    let proof = client.proof("GET", HTU, &token);
    let outcome = plugin.gateway.request(dpop_request(&token, &proof)).await;
    let (_, claims) = upstream_jwt(&plugin, &outcome).await;
    assert_eq!(claims["sub"], "kim");
    assert_eq!(claims["cnf"], json!({"jkt": client.jkt}), "{accept}");
    assert_eq!(outcome.upstream.as_ref().unwrap().header("DPoP"), None);
    assert_eq!(proxy.introspections(), 1);

    // The same proof again: a replay.
    let replay = plugin.gateway.request(dpop_request(&token, &proof)).await;
    assert_eq!(replay.status(), 401);
    assert!(challenge(&replay).contains("invalid_dpop_proof"));

    // A stolen token with the thief's own valid proof; then as Bearer.
    let stolen = plugin
        .gateway
        .request(dpop_request(&token, &thief.proof("GET", HTU, &token)))
        .await;
    assert_eq!(stolen.status(), 401, "{accept}");
    assert!(challenge(&stolen).contains("error=\"invalid_token\""));
    let bearer = plugin.get(&token).await;
    assert_eq!(bearer.status(), 401, "{accept}");
    assert!(challenge(&bearer).starts_with("DPoP "));
    assert!(bearer.upstream.is_none());
    assert_eq!(proxy.introspections(), 1, "the answer was cached");

    // An unbound token with the DPoP scheme.
    let plain = provider.issue_token(json!({"sub": "lou"})).await;
    let outcome = plugin
        .gateway
        .request(dpop_request(&plain, &client.proof("GET", HTU, &plain)))
        .await;
    assert_eq!(outcome.status(), 401);
    assert!(challenge(&outcome).contains("error=\"invalid_token\""));
}
