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

/// A plugin that mints for JSON answers, with `MINTED_AUDIENCE` and any
/// other settings `more` adds.
async fn minting_app(key: &str, more: impl FnOnce(&mut crate::support::Setup)) -> TestApp {
    spawn_app_with(|s| {
        s.env("INTROSPECTION_ACCEPT", JSON)
            .env("SIGNING_KEY_FILE", key)
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", "orders-api");
        s.admin = true;
        more(s);
    })
    .await
}

/// An active JSON answer for `sub` with `aud` (none when `None`).
fn answer_with_audience(sub: &str, aud: Option<&str>) -> Behaviour {
    let mut answer = serde_json::json!({
        "active": true, "sub": sub, "client_id": "web", "scope": "read", "exp": now() + 600,
    });
    if let Some(aud) = aud {
        answer["aud"] = aud.into();
    }
    Behaviour::Answer(JSON, answer.to_string())
}

fn api_with(api_id: &str, config_data: serde_json::Value) -> Api {
    Api {
        api_id: api_id.into(),
        config_data: Some(config_data),
        ..Api::default()
    }
}

async fn call(app: &TestApp, api: &Api, token: &str) -> Outcome {
    app.gateway
        .request_to(api, ClientRequest::get("/orders/api/items").bearer(token))
        .await
}

/// `required_audience` is checked against the audience the AS gave the
/// token (RFC 8707), never the one the plugin signed into its own JWT.
#[tokio::test]
async fn required_audience_reads_the_audience_the_as_gave_not_the_minted_one() {
    let (_dir, key) = key_file();
    let app = minting_app(&key, |_| {}).await;
    app.fake_as.script(
        "for-billing",
        answer_with_audience("alice", Some("https://billing.example")),
    );
    app.fake_as.script(
        "for-orders",
        answer_with_audience("alice", Some("https://orders.example")),
    );
    app.fake_as
        .script("unrestricted", answer_with_audience("alice", None));

    // MINTED_AUDIENCE is orders-api, but the AS said billing (or nothing).
    let orders_api = api_with(
        "orders",
        serde_json::json!({"required_audience": "orders-api"}),
    );
    for token in ["for-billing", "unrestricted"] {
        let outcome = call(&app, &orders_api, token).await;
        assert_eq!(outcome.status(), 401, "{token}: {:?}", outcome.client);
        assert!(outcome.upstream.is_none(), "{token}");
    }
    // The AS's own name for the API passes; another one does not.
    let by_url = api_with(
        "orders-url",
        serde_json::json!({"required_audience": "https://orders.example"}),
    );
    assert_eq!(call(&app, &by_url, "for-orders").await.status(), 200);
    assert_eq!(call(&app, &by_url, "for-billing").await.status(), 401);
    // minted_audience equal to required_audience: checked before nothing,
    // signed after.
    let both = api_with(
        "orders-both",
        serde_json::json!({
            "required_audience": "https://orders.example",
            "minted_audience": "https://orders.example",
        }),
    );
    let outcome = call(&app, &both, "for-orders").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
    assert_eq!(claims["aud"], "https://orders.example");
}

/// A token the AS issued for other resources only is never signed for an
/// API's own audience, nor for `MINTED_AUDIENCE`.
#[tokio::test]
async fn a_token_for_other_resources_is_never_signed_for_another_audience() {
    let (_dir, key) = key_file();
    let app = minting_app(&key, |_| {}).await;
    app.fake_as.script(
        "for-billing",
        answer_with_audience("alice", Some("https://billing.example")),
    );
    app.fake_as
        .script("unrestricted", answer_with_audience("alice", None));
    app.fake_as
        .script("for-orders", answer_with_audience("alice", Some("orders")));

    let orders = api_minting_for("orders-api", "orders");
    let outcome = call(&app, &orders, "for-billing").await;
    assert_eq!(outcome.status(), 401, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());
    assert!(
        outcome
            .response()
            .header("WWW-Authenticate")
            .is_some_and(|h| h.contains("invalid_token"))
    );
    for meant in ["unrestricted", "for-orders"] {
        let outcome = call(&app, &orders, meant).await;
        assert_eq!(outcome.status(), 200, "{meant}: {:?}", outcome.client);
        let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
        assert_eq!(claims["aud"], "orders", "{meant}");
    }
    // The API says it accepts tokens the AS issued for billing.
    let accepting = api_with(
        "billing-api",
        serde_json::json!({
            "required_audience": "https://billing.example",
            "minted_audience": "billing-api",
        }),
    );
    let outcome = call(&app, &accepting, "for-billing").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
    assert_eq!(claims["aud"], "billing-api");
    // No API audience: the JWT keeps the AS's audience, not MINTED_AUDIENCE.
    let outcome = app.get_with_token("for-billing").await;
    assert_eq!(outcome.status(), 200);
    let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
    assert_eq!(claims["aud"], "https://billing.example");
    let outcome = app.get_with_token("unrestricted").await;
    let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
    assert_eq!(claims["aud"], "orders-api");
}

/// RFC 7662 servers name the user in `username` and may send no `sub`: two
/// users of one client are two subjects and two Tyk sessions; the client is
/// the subject only of a token without a user.
#[tokio::test]
async fn two_users_of_one_client_get_two_subjects_and_two_session_keys() {
    let (_dir, key) = key_file();
    let app = minting_app(&key, |s| {
        s.env("SESSION_KEY_CLAIM", "sub");
    })
    .await;
    let user = |name: &str| {
        Behaviour::Answer(
            JSON,
            serde_json::json!({
                "active": true, "username": name, "client_id": "web", "scope": "read",
                "exp": now() + 600,
            })
            .to_string(),
        )
    };
    app.fake_as.script("alice-1", user("alice"));
    app.fake_as.script("alice-2", user("alice"));
    app.fake_as.script("bob-1", user("bob"));
    app.fake_as.script(
        "batch-1",
        Behaviour::Answer(
            JSON,
            serde_json::json!({"active": true, "client_id": "web", "exp": now() + 600}).to_string(),
        ),
    );
    let mut keys = Vec::new();
    for (token, subject) in [
        ("alice-1", "alice"),
        ("alice-2", "alice"),
        ("bob-1", "bob"),
        ("batch-1", "web"),
    ] {
        let outcome = app.get_with_token(token).await;
        assert_eq!(outcome.status(), 200, "{token}: {:?}", outcome.client);
        let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
        assert_eq!(claims["sub"], subject, "{token}");
        keys.push(outcome.session_key.unwrap());
    }
    assert_eq!(keys[0], keys[1], "one user, one session");
    assert_ne!(keys[0], keys[2], "two users of one client, two sessions");
    assert_ne!(keys[2], keys[3]);
    assert_ne!(keys[0], keys[3], "a user is not the client");
}

/// An AS that sends no `aud` (RFC 8707 without a resource asked for):
/// every valid token is allowed, with `MINTED_AUDIENCE` in its JWT.
#[tokio::test]
async fn an_answer_without_an_audience_is_allowed_with_the_minted_audience() {
    let (_dir, key) = key_file();
    let app = minting_app(&key, |_| {}).await;
    app.fake_as
        .script("no-aud", answer_with_audience("alice", None));
    let outcome = app.get_with_token("no-aud").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let claims = verify_with_admin_jwks(&app, &bearer_of(&outcome).unwrap()).await;
    assert_eq!(claims["aud"], "orders-api");
}

/// A token bound in a way the plugin cannot check (mutual TLS, RFC 8705,
/// or a malformed `jkt`) is not a bearer token, unless the operator says so.
#[tokio::test]
async fn bindings_the_plugin_cannot_check_are_refused_unless_allowed() {
    let bound = |cnf: serde_json::Value| {
        Behaviour::Answer(
            JSON,
            serde_json::json!({
                "active": true, "sub": "alice", "client_id": "web", "exp": now() + 600,
                "cnf": cnf,
            })
            .to_string(),
        )
    };
    let script = |app: &TestApp| {
        app.fake_as.script(
            "mtls",
            bound(serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})),
        );
        app.fake_as
            .script("odd-jkt", bound(serde_json::json!({"jkt": 42})));
        app.fake_as.script(
            "both",
            bound(serde_json::json!({"jkt": "abc", "x5t#S256": "def"})),
        );
        app.fake_as.script("empty", bound(serde_json::json!({})));
    };
    let (_dir, key) = key_file();
    let strict = minting_app(&key, |_| {}).await;
    script(&strict);
    for token in ["mtls", "odd-jkt", "both"] {
        let outcome = strict.get_with_token(token).await;
        assert_eq!(outcome.status(), 401, "{token}: {:?}", outcome.client);
        assert!(outcome.upstream.is_none(), "{token}");
        assert!(
            outcome
                .response()
                .header("WWW-Authenticate")
                .is_some_and(|h| h.contains("invalid_token")),
            "{token}"
        );
    }
    assert_eq!(strict.get_with_token("empty").await.status(), 200);

    let lenient = minting_app(&key, |s| {
        s.env("ALLOW_UNCHECKED_BINDINGS", "true");
    })
    .await;
    script(&lenient);
    for token in ["mtls", "odd-jkt"] {
        assert_eq!(lenient.get_with_token(token).await.status(), 200, "{token}");
    }
}
