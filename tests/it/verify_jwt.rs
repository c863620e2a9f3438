//! `VERIFY_JWT=true` through the fake gateway: JWTs the AS hands over to
//! forward (Curity's `application/jwt` answer, a ready JWT in a JSON
//! member) are verified against the AS's JWKS before they are cached. The
//! fake AS stands in for Curity here, signing with a key whose JWKS a
//! loopback endpoint serves: the real server in tests/oidc_e2e.rs
//! (node-oidc-provider) hands no JWT to forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tyk_phantom_token::keys::SigningKeys;

use crate::support::fake_as::now;
use crate::support::*;

const ISSUER: &str = "https://idsvr.test/oauth/v2/oauth-anonymous";
const AUDIENCE: &str = "orders-api";

/// The AS's signing key and its JWKS on loopback.
struct AsKeys {
    keys: SigningKeys,
    jwks_url: String,
    fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl AsKeys {
    async fn start() -> Self {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let keys = SigningKeys::from_pem(&pem).unwrap();
        let jwks = keys.jwks_json();
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { ([("content-type", "application/jwk-set+json")], jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        AsKeys {
            keys,
            jwks_url,
            fetches,
            _server: server,
        }
    }

    /// A JWT as Curity issues it, with `change` applied to the claims.
    fn jwt(&self, sub: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": AUDIENCE, "client_id": "web-app",
            "scope": "read", "iat": now(), "exp": now() + 600, "jti": format!("jti-{sub}"),
        });
        change(&mut claims);
        self.keys.current().sign("at+jwt", &claims).unwrap()
    }
}

async fn verifying_app(keys: &AsKeys) -> TestApp {
    spawn_app_with(|s| {
        s.env("VERIFY_JWT", "true")
            .env("INTROSPECTION_JWKS_URL", &keys.jwks_url)
            .env("JWT_ISSUER", ISSUER)
            .env("JWT_AUDIENCE", AUDIENCE)
            .env("INTROSPECTION_JWT_FIELD", "jwt");
    })
    .await
}

fn curity_answer(jwt: &str) -> Behaviour {
    Behaviour::Answer("application/jwt", jwt.to_owned())
}

fn forwarded(outcome: &Outcome) -> Option<String> {
    outcome
        .upstream
        .as_ref()
        .and_then(|u| u.header("Authorization"))
        .map(str::to_owned)
}

/// One character of the signature changed.
fn tampered(jwt: &str) -> String {
    let (rest, signature) = jwt.rsplit_once('.').unwrap();
    let mut signature = signature.to_owned().into_bytes();
    signature[3] = if signature[3] == b'A' { b'B' } else { b'A' };
    format!("{rest}.{}", String::from_utf8(signature).unwrap())
}

/// The same claims signed with HS256, the AS's public JWKS as the secret.
fn hs256_with_public_key(keys: &AsKeys, jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(keys.keys.current().kid().to_owned());
    let secret = jsonwebtoken::EncodingKey::from_secret(keys.keys.jwks_json().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &secret).unwrap()
}

#[tokio::test]
async fn a_jwt_that_verifies_is_forwarded_and_cached() {
    let keys = AsKeys::start().await;
    let app = verifying_app(&keys).await;
    let jwt = keys.jwt("alice", |_| {});
    app.fake_as.script("good", curity_answer(&jwt));
    for _ in 0..3 {
        let outcome = app.get_with_token("good").await;
        assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
        assert_eq!(forwarded(&outcome), Some(format!("Bearer {jwt}")));
    }
    assert_eq!(
        app.fake_as.calls_for("good"),
        1,
        "verified once, then cached"
    );
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 1, "one JWKS fetch");

    // A ready JWT in a JSON answer is verified the same way.
    let ready = keys.jwt("bob", |_| {});
    let answer =
        serde_json::json!({"active": true, "sub": "bob", "exp": now() + 600, "jwt": ready});
    app.fake_as.script(
        "ready",
        Behaviour::Answer("application/json", answer.to_string()),
    );
    let outcome = app.get_with_token("ready").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(forwarded(&outcome), Some(format!("Bearer {ready}")));
}

#[tokio::test]
async fn a_jwt_that_fails_verification_is_a_502_never_forwarded_nor_cached() {
    let keys = AsKeys::start().await;
    let app = verifying_app(&keys).await;
    let good = keys.jwt("carol", |_| {});
    let unsigned = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    let cases = [
        ("bad-signature", tampered(&good)),
        (
            "wrong-iss",
            keys.jwt("carol", |c| c["iss"] = "https://evil.test".into()),
        ),
        (
            "wrong-aud",
            keys.jwt("carol", |c| c["aud"] = "billing-api".into()),
        ),
        (
            "expired",
            keys.jwt("carol", |c| c["exp"] = (now() - 120).into()),
        ),
        (
            "not-yet-valid",
            keys.jwt("carol", |c| c["nbf"] = (now() + 600).into()),
        ),
        ("alg-none", unsigned),
        ("hs256-public-key", hs256_with_public_key(&keys, &good)),
        // Signed by the AS, but not an access token (RFC 9068 §4: at+jwt).
        (
            "wrong-typ",
            keys.keys
                .current()
                .sign(
                    "JWT",
                    &jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&good)
                        .unwrap(),
                )
                .unwrap(),
        ),
    ];
    for (token, jwt) in &cases {
        app.fake_as.script(token, curity_answer(jwt));
        for attempt in 1..=2 {
            let outcome = app.get_with_token(token).await;
            assert_eq!(outcome.status(), 502, "{token}: {:?}", outcome.client);
            assert!(outcome.upstream.is_none(), "{token}: never forwarded");
            assert!(
                !outcome.response().text().contains(jwt.as_str()),
                "{token}: the JWT is not echoed"
            );
            assert_eq!(
                app.fake_as.calls_for(token),
                attempt,
                "{token}: not cached, the AS is asked again"
            );
        }
    }
    // The same for a ready JWT in a JSON answer.
    let answer = serde_json::json!({"active": true, "sub": "carol", "exp": now() + 600, "jwt": tampered(&good)});
    app.fake_as.script(
        "ready-forged",
        Behaviour::Answer("application/json", answer.to_string()),
    );
    let outcome = app.get_with_token("ready-forged").await;
    assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());
}

/// With `VERIFY_JWT`, a request is allowed only on something the AS
/// signed and the plugin verified: an unsigned JSON answer (anyone on the
/// path can send one) is never minted into a JWT, and the unsigned members
/// around a verified JWT do not decide the API's rules.
#[tokio::test]
async fn under_verify_jwt_an_unsigned_answer_never_allows_a_request() {
    let keys = AsKeys::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("mint.pem");
    std::fs::write(
        &key_file,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let app = spawn_app_with(|s| {
        s.env("VERIFY_JWT", "true")
            .env("INTROSPECTION_JWKS_URL", &keys.jwks_url)
            .env("JWT_ISSUER", ISSUER)
            .env("JWT_AUDIENCE", AUDIENCE)
            .env("INTROSPECTION_JWT_FIELD", "jwt")
            .env("SIGNING_KEY_FILE", &key_file.display().to_string())
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", AUDIENCE);
    })
    .await;
    let forged = serde_json::json!({
        "active": true, "sub": "mallory", "client_id": "web-app", "scope": "admin",
        "exp": now() + 600,
    });
    app.fake_as.script(
        "json-only",
        Behaviour::Answer("application/json", forged.to_string()),
    );
    let outcome = app.get_with_token("json-only").await;
    assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
    assert!(
        outcome.upstream.is_none(),
        "never minted from an unsigned answer"
    );
    // Inactive is still an ordinary 401.
    app.fake_as.script(
        "json-inactive",
        Behaviour::Answer("application/json", r#"{"active":false}"#.to_owned()),
    );
    assert_eq!(app.get_with_token("json-inactive").await.status(), 401);

    // A verified JWT granting `read`, inside members that claim `admin`.
    let jwt = keys.jwt("frank", |_| {});
    let padded = serde_json::json!({
        "active": true, "sub": "frank", "scope": "admin read", "exp": now() + 600, "jwt": jwt,
    });
    app.fake_as.script(
        "padded",
        Behaviour::Answer("application/json", padded.to_string()),
    );
    let admin_api = Api {
        config_data: Some(serde_json::json!({"required_scopes": ["admin"]})),
        ..Api::default()
    };
    let outcome = app
        .gateway
        .request_to(
            &admin_api,
            ClientRequest::get("/orders/api/items").bearer("padded"),
        )
        .await;
    assert_eq!(outcome.status(), 403, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());
    let read_api = Api {
        config_data: Some(serde_json::json!({"required_scopes": ["read"]})),
        ..Api::default()
    };
    let outcome = app
        .gateway
        .request_to(
            &read_api,
            ClientRequest::get("/orders/api/items").bearer("padded"),
        )
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(forwarded(&outcome), Some(format!("Bearer {jwt}")));
}

#[tokio::test]
async fn without_verify_jwt_the_same_forged_jwt_is_forwarded_as_before() {
    // The control for the test above: only VERIFY_JWT refuses these.
    let keys = AsKeys::start().await;
    let app = spawn_app().await;
    let forged = tampered(&keys.jwt("dave", |c| c["iss"] = "https://evil.test".into()));
    app.fake_as.script("forged", curity_answer(&forged));
    let outcome = app.get_with_token("forged").await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(forwarded(&outcome), Some(format!("Bearer {forged}")));
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 0);
}
