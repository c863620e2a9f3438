//! Answers other than Curity's `application/jwt`, from the fake AS for what
//! a real server cannot be made to send (a ready JWT that disagrees with its
//! answer, a malformed answer, an answer with nothing to mint from). The
//! same paths against a real server are in tests/oidc_e2e.rs.

use crate::support::fake_as::{NO_STORE_HEADERS, make_jwt, now};
use crate::support::*;

const JSON: &str = "application/json";

fn bearer_of(outcome: &Outcome) -> Option<String> {
    outcome
        .upstream
        .as_ref()
        .and_then(|u| u.header("Authorization"))
        .map(str::to_owned)
}

/// A PEM file with a fresh P-256 key, kept alive by the returned dir.
fn key_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mint.pem");
    std::fs::write(
        &path,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[tokio::test]
async fn a_ready_jwt_in_a_json_member_is_forwarded_as_keycloak_sends_it() {
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_JWT_FIELD", "jwt");
    })
    .await;
    app.fake_as.always_send(NO_STORE_HEADERS);
    let exp = now() + 600;
    let jwt = make_jwt(&Claims::valid_for("alice", 600), 7);
    let answer = serde_json::json!({"active": true, "sub": "alice", "exp": exp, "jwt": jwt});
    app.fake_as
        .script("kc-token", Behaviour::Answer(JSON, answer.to_string()));
    let outcome = app.get_with_token("kc-token").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(bearer_of(&outcome), Some(format!("Bearer {jwt}")));
    assert_eq!(
        app.fake_as.requests()[0].header("accept"),
        Some("application/jwt"),
        "Curity's default Accept is unchanged"
    );
    assert_eq!(app.get_with_token("kc-token").await.status(), 200);
    assert_eq!(app.fake_as.calls(), 1, "cached despite no-store");
}

#[tokio::test]
async fn answers_the_plugin_cannot_forward_are_as_faults_never_401() {
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_JWT_FIELD", "jwt");
    })
    .await;
    let exp = now() + 600;
    let disagreeing = make_jwt(&Claims::valid_for("mallory", 600), 1);
    let cases = [
        // Active, but no JWT and no key to mint one.
        (
            JSON,
            serde_json::json!({"active": true, "sub": "a", "exp": exp}).to_string(),
        ),
        // A ready JWT about someone else.
        (
            JSON,
            serde_json::json!({"active": true, "sub": "a", "exp": exp, "jwt": disagreeing})
                .to_string(),
        ),
        // Malformed members.
        (JSON, r#"{"active":true,"exp":"soon"}"#.to_owned()),
        (JSON, "not json".to_owned()),
        // A signed answer with no AS keys configured to verify it.
        (
            "application/token-introspection+jwt",
            make_jwt(&Claims::valid_for("a", 600), 2),
        ),
    ];
    for (i, (content_type, body)) in cases.into_iter().enumerate() {
        let token = format!("fault-{i}");
        app.fake_as
            .script(&token, Behaviour::Answer(content_type, body.clone()));
        let outcome = app.get_with_token(&token).await;
        assert_eq!(outcome.status(), 502, "{content_type} {body}");
        assert!(outcome.upstream.is_none());
    }
    // Inactive JSON is an ordinary 401.
    app.fake_as.script(
        "dead",
        Behaviour::Answer(JSON, r#"{"active":false}"#.to_owned()),
    );
    assert_eq!(app.get_with_token("dead").await.status(), 401);
}

#[tokio::test]
async fn minting_refuses_expired_answers_and_needs_a_client_id() {
    let (_dir, key) = key_file();
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_ACCEPT", JSON)
            .env("SIGNING_KEY_FILE", &key)
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", "orders")
            .env("CLIENT_AUTH_METHOD", "client_secret_post");
        s.admin = true;
    })
    .await;
    let past =
        serde_json::json!({"active": true, "sub": "a", "client_id": "web", "exp": now() - 5});
    app.fake_as
        .script("expired", Behaviour::Answer(JSON, past.to_string()));
    assert_eq!(app.get_with_token("expired").await.status(), 401);

    let anonymous = serde_json::json!({"active": true, "sub": "a", "exp": now() + 60});
    app.fake_as
        .script("no-client", Behaviour::Answer(JSON, anonymous.to_string()));
    assert_eq!(app.get_with_token("no-client").await.status(), 502);

    let good =
        serde_json::json!({"active": true, "sub": "a", "client_id": "web", "exp": now() + 60});
    app.fake_as
        .script("good", Behaviour::Answer(JSON, good.to_string()));
    let outcome = app.get_with_token("good").await;
    assert_eq!(outcome.status(), 200);
    let jwt = bearer_of(&outcome).unwrap();
    let header = jsonwebtoken::decode_header(jwt.trim_start_matches("Bearer ")).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let (status, jwks) = app.admin_get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert!(jwks.contains(header.kid.as_deref().unwrap()), "{jwks}");

    // client_secret_post: the credentials are in the body, not a header.
    let request = &app.fake_as.requests()[0];
    assert_eq!(request.header("accept"), Some(JSON));
    assert_eq!(request.header("authorization"), None);
    assert!(
        request.body.contains(&format!("client_id={CLIENT_ID}")),
        "{}",
        request.body
    );
    assert!(request.body.contains("client_secret="));
    assert_eq!(request.token, "expired");
}

#[tokio::test]
async fn no_jwks_is_served_when_the_plugin_does_not_mint() {
    let app = spawn_app_with(|s| s.admin = true).await;
    assert_eq!(app.admin_get("/.well-known/jwks.json").await.0, 404);
}

/// An API that names its own `minted_audience`.
fn api_minting_for(api_id: &str, audience: &str) -> Api {
    Api {
        api_id: api_id.into(),
        config_data: Some(serde_json::json!({ "minted_audience": audience })),
        ..Api::default()
    }
}

/// Verifies `authorization` (`Bearer <JWT>`) with the admin JWKS, as an API
/// would, and returns its claims.
async fn verify_with_admin_jwks(app: &TestApp, authorization: &str) -> serde_json::Value {
    let jwt = authorization.trim_start_matches("Bearer ");
    let (status, jwks) = app.admin_get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    validation.set_issuer(&["https://gateway.test"]);
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn each_api_gets_a_jwt_minted_for_its_own_audience_from_one_introspection() {
    let (_dir, key) = key_file();
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_ACCEPT", JSON)
            .env("SIGNING_KEY_FILE", &key)
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", "default-aud");
        s.admin = true;
    })
    .await;
    let exp = now() + 600;
    let answer = serde_json::json!({
        "active": true, "sub": "alice", "client_id": "web", "scope": "read", "exp": exp,
    });
    app.fake_as
        .script("one-token", Behaviour::Answer(JSON, answer.to_string()));
    let orders = api_minting_for("orders-api", "orders");
    let billing = api_minting_for("billing-api", "billing");
    let mut seen = Vec::new();
    for round in 0..2 {
        for (api, aud) in [(&orders, "orders"), (&billing, "billing")] {
            let outcome = app
                .gateway
                .request_to(
                    api,
                    ClientRequest::get("/orders/api/items").bearer("one-token"),
                )
                .await;
            assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
            let bearer = bearer_of(&outcome).unwrap();
            let claims = verify_with_admin_jwks(&app, &bearer).await;
            assert_eq!(claims["aud"], aud, "round {round}");
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["client_id"], "web");
            assert_eq!(claims["scope"], "read");
            assert!(claims["exp"].as_u64().unwrap() <= exp);
            seen.push(bearer);
        }
    }
    assert_eq!(seen[0], seen[2], "the orders JWT is remembered");
    assert_eq!(seen[1], seen[3], "the billing JWT is remembered");
    // An API without its own audience gets the global one.
    let plain = app.get_with_token("one-token").await;
    assert_eq!(plain.status(), 200);
    let claims = verify_with_admin_jwks(&app, &bearer_of(&plain).unwrap()).await;
    assert_eq!(claims["aud"], "default-aud");
    assert_eq!(app.fake_as.calls(), 1, "one introspection for every API");
}

#[tokio::test]
async fn a_ready_jwt_from_the_as_is_forwarded_unchanged_despite_minted_audience() {
    let (_dir, key) = key_file();
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_JWT_FIELD", "jwt")
            .env("SIGNING_KEY_FILE", &key)
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", "default-aud");
    })
    .await;
    let exp = now() + 600;
    let jwt = make_jwt(&Claims::valid_for("alice", 600), 7);
    let answer = serde_json::json!({"active": true, "sub": "alice", "exp": exp, "jwt": jwt});
    app.fake_as
        .script("kc-token", Behaviour::Answer(JSON, answer.to_string()));
    let outcome = app
        .gateway
        .request_to(
            &api_minting_for("orders-api", "orders"),
            ClientRequest::get("/orders/api/items").bearer("kc-token"),
        )
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(bearer_of(&outcome), Some(format!("Bearer {jwt}")));
}
