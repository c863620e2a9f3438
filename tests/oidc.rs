//! The any-AS building blocks against a real OAuth server (node-oidc-provider
//! on loopback, started by the tests): discovery, RFC 7662 JSON answers,
//! RFC 9701 signed answers verified with the server's real JWKS, revocation
//! and expiry, client authentication methods, and the headers the server
//! really sends.

#[path = "support/oidc_provider.rs"]
mod oidc_provider;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use oidc_provider::{OidcProvider, Options, basic, json_body};
use tyk_phantom_token::answer::signed::{SignedAnswerRules, read_signed};
use tyk_phantom_token::answer::{
    ActiveAnswer, AnswerError, MEDIA_INTROSPECTION_JWT, MediaType, Verdict, media_type, read_json,
};
use tyk_phantom_token::client_auth::{ClientSecretPost, PrivateKeyJwt, encode_form};
use tyk_phantom_token::discovery::{AsMetadata, DiscoveryError, discover};
use tyk_phantom_token::jwks::{AsKeySet, JwksOptions, VerifyError};
use tyk_phantom_token::keys::SigningKeys;
use tyk_phantom_token::mint::{MintRules, Minter};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// How the gateway authenticates one introspection call.
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Form(Vec<(&'static str, String)>),
}

/// One introspection call, as the plugin would make it.
async fn introspect(
    endpoint: &str,
    token: &str,
    auth: Auth<'_>,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut fields = vec![("token", token.to_owned())];
    let mut request = http()
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded");
    match auth {
        Auth::Basic(id, secret) => request = request.header("authorization", basic(id, secret)),
        Auth::Form(extra) => fields.extend(extra),
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request
        .body(encode_form(&fields))
        .send()
        .await
        .expect("introspection endpoint reachable")
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn json_verdict(response: reqwest::Response) -> Verdict {
    if response.status() != 200 {
        panic!("{} {:?}", response.status(), response.text().await);
    }
    assert_eq!(
        media_type(content_type(&response).as_deref()),
        MediaType::Json
    );
    read_json(&response.bytes().await.expect("body"), None).expect("a well-formed answer")
}

fn active(verdict: Verdict) -> ActiveAnswer {
    match verdict {
        Verdict::Active(answer) => *answer,
        Verdict::Inactive => panic!("expected an active token"),
    }
}

async fn metadata(provider: &OidcProvider) -> AsMetadata {
    discover(&http(), &provider.issuer, Duration::from_secs(5))
        .await
        .expect("discovery succeeds")
}

#[tokio::test]
async fn discovery_finds_the_real_servers_endpoints() {
    let provider = OidcProvider::start().await;
    let metadata = metadata(&provider).await;
    assert_eq!(metadata.issuer, provider.issuer);
    assert_eq!(
        metadata.introspection_endpoint.as_str(),
        provider.introspection_endpoint()
    );
    assert_eq!(
        metadata.jwks_uri.as_ref().map(|u| u.as_str()),
        Some(format!("{}/jwks", provider.issuer).as_str())
    );
    assert_eq!(
        metadata.revocation_endpoint.as_ref().map(|u| u.as_str()),
        Some(provider.revocation_endpoint().as_str())
    );
    // Version 9 serves RFC 8414 metadata at the root, so that is what is read.
    assert_eq!(
        metadata.source.path(),
        "/.well-known/oauth-authorization-server"
    );
    for alg in ["ES256", "RS256"] {
        assert!(
            metadata
                .introspection_signing_alg_values_supported
                .iter()
                .any(|a| a == alg),
            "{alg} missing from {:?}",
            metadata.introspection_signing_alg_values_supported
        );
    }
    // The issuer must match exactly: a trailing slash is another issuer.
    let error = discover(
        &http(),
        &format!("{}/", provider.issuer),
        Duration::from_secs(5),
    )
    .await
    .expect_err("a different issuer string");
    assert!(
        matches!(error, DiscoveryError::IssuerMismatch { .. }),
        "{error}"
    );

    // The introspection endpoint's methods are not listed separately; they
    // are the token endpoint's.
    assert!(
        metadata
            .introspection_endpoint_auth_methods_supported
            .is_empty()
    );
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        assert!(
            metadata
                .token_endpoint_auth_methods_supported
                .iter()
                .any(|m| m == method),
            "{method} missing from {:?}",
            metadata.token_endpoint_auth_methods_supported
        );
    }
}

#[tokio::test]
async fn json_introspection_of_a_user_token_is_active_with_the_real_claims() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let token = provider
        .issue_token(serde_json::json!({
            "sub": "alice", "scope": "orders:read orders:write", "ttl": 120,
            "extra": {"department": "ops", "acr": "urn:example:mfa"},
        }))
        .await;
    let before = now();
    let response = introspect(
        &provider.introspection_endpoint(),
        &token,
        Auth::Basic(&gateway.client_id, gateway.secret()),
        Some("application/json"),
    )
    .await;
    let answer = active(json_verdict(response).await);
    assert_eq!(answer.sub(), Some("alice"));
    assert_eq!(answer.client_id(), Some("app"));
    assert_eq!(answer.scope(), Some("orders:read orders:write"));
    assert_eq!(answer.string("iss"), Some(provider.issuer.as_str()));
    assert_eq!(answer.string("token_type"), Some("Bearer"));
    assert_eq!(answer.string("department"), Some("ops"));
    let exp = answer.exp.expect("exp");
    assert!((before + 115..=before + 125).contains(&exp), "exp {exp}");

    // And the plugin can mint the upstream JWT from it.
    let keys = Arc::new(
        SigningKeys::from_pem(
            &rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .expect("key")
                .serialize_pem(),
        )
        .expect("key loads"),
    );
    let minter = Minter::new(
        keys,
        MintRules {
            issuer: "https://gateway.example".into(),
            audience: vec!["orders-api".into()],
            max_lifetime: Duration::from_secs(60),
            copy_claims: vec!["acr".into(), "department".into()],
            owner_claim: "username".into(),
        },
    )
    .expect("rules are valid");
    let minted = minter.mint(&answer, now()).expect("mints");
    assert!(minted.exp <= exp && minted.exp <= now() + 60);
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&minted.jwt).expect("decodes");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["acr"], "urn:example:mfa");
}

#[tokio::test]
async fn a_client_credentials_token_from_the_real_token_endpoint_is_active_without_a_subject() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let token = provider.client_credentials_token("orders:read").await;
    let answer = active(
        json_verdict(
            introspect(
                &provider.introspection_endpoint(),
                &token,
                Auth::Basic(&gateway.client_id, gateway.secret()),
                None,
            )
            .await,
        )
        .await,
    );
    assert_eq!(answer.sub(), None);
    assert_eq!(answer.client_id(), Some("app"));
    assert_eq!(answer.scope(), Some("orders:read"));
}

#[tokio::test]
async fn a_revoked_token_is_inactive() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let endpoint = provider.introspection_endpoint();
    let token = provider
        .issue_token(serde_json::json!({"sub": "bob"}))
        .await;
    let ask = || {
        introspect(
            &endpoint,
            &token,
            Auth::Basic(&gateway.client_id, gateway.secret()),
            None,
        )
    };
    active(json_verdict(ask().await).await);
    assert_eq!(provider.revoke(&token).await, 200);
    assert_eq!(json_verdict(ask().await).await, Verdict::Inactive);
}

#[tokio::test]
async fn an_expired_token_is_inactive() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let token = provider
        .issue_token(serde_json::json!({"sub": "carol", "ttl": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = introspect(
        &provider.introspection_endpoint(),
        &token,
        Auth::Basic(&gateway.client_id, gateway.secret()),
        None,
    )
    .await;
    assert_eq!(json_verdict(response).await, Verdict::Inactive);
}

#[tokio::test]
async fn an_unknown_token_is_inactive_not_an_error() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let response = introspect(
        &provider.introspection_endpoint(),
        "no-such-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        Auth::Basic(&gateway.client_id, gateway.secret()),
        None,
    )
    .await;
    assert_eq!(json_verdict(response).await, Verdict::Inactive);
}

/// What the cache logic must cope with: node-oidc-provider marks every
/// introspection answer `Cache-Control: no-store`, sends no `Pragma`, and
/// labels JSON with a charset parameter.
#[tokio::test]
async fn the_real_server_sends_no_store_on_every_introspection_answer() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let endpoint = provider.introspection_endpoint();
    let token = provider
        .issue_token(serde_json::json!({"sub": "dave"}))
        .await;
    for (token, accept, expected_type) in [
        (token.as_str(), None, "application/json; charset=utf-8"),
        ("unknown-token", None, "application/json; charset=utf-8"),
        (
            token.as_str(),
            Some(MEDIA_INTROSPECTION_JWT),
            "application/token-introspection+jwt; charset=utf-8",
        ),
    ] {
        let response = introspect(
            &endpoint,
            token,
            Auth::Basic(&gateway.client_id, gateway.secret()),
            accept,
        )
        .await;
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(
            headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        assert_eq!(headers.get_all("cache-control").iter().count(), 1);
        assert!(headers.get("pragma").is_none(), "Pragma appeared");
        assert!(headers.get("expires").is_none());
        assert_eq!(content_type(&response).as_deref(), Some(expected_type));
    }
    // Wrong client credentials: 401 with an RFC 6749 error body.
    let response = introspect(
        &endpoint,
        &token,
        Auth::Basic(&gateway.client_id, "wrong"),
        None,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body = json_body(response).await;
    assert_eq!(body["error"], "invalid_client");
}

async fn key_set(provider: &OidcProvider) -> AsKeySet {
    let metadata = metadata(provider).await;
    AsKeySet::new(
        http(),
        metadata.jwks_uri.expect("jwks_uri"),
        JwksOptions::default(),
    )
}

async fn signed_body(provider: &OidcProvider, token: &str) -> Vec<u8> {
    let gateway = &provider.clients.gateway;
    let response = introspect(
        &provider.introspection_endpoint(),
        token,
        Auth::Basic(&gateway.client_id, gateway.secret()),
        Some(MEDIA_INTROSPECTION_JWT),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        media_type(content_type(&response).as_deref()),
        MediaType::IntrospectionJwt
    );
    response.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn rfc9701_answers_verify_against_the_real_jwks_found_by_discovery() {
    let provider = OidcProvider::start().await;
    let keys = key_set(&provider).await;
    let rules = SignedAnswerRules::new(&provider.issuer, "gateway", vec![Algorithm::ES256]);
    let token = provider
        .issue_token(serde_json::json!({"sub": "erin", "scope": "orders:read"}))
        .await;

    let body = signed_body(&provider, &token).await;
    let answer = active(
        read_signed(&body, &keys, &rules, None, now())
            .await
            .expect("the real signed answer verifies"),
    );
    assert_eq!(answer.sub(), Some("erin"));
    assert_eq!(answer.client_id(), Some("app"));
    assert_eq!(answer.scope(), Some("orders:read"));
    assert!(answer.exp.is_some());

    // What the server puts in it: typ, kid, iss/aud/iat, no exp or sub outside.
    let text = std::str::from_utf8(&body).expect("ASCII");
    let header = jsonwebtoken::decode_header(text).expect("header");
    assert_eq!(header.typ.as_deref(), Some("token-introspection+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    assert!(header.kid.is_some());
    let outer: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(text).expect("claims");
    assert_eq!(outer["aud"], "gateway");
    assert_eq!(outer["iss"], provider.issuer.as_str());
    assert!(
        outer.get("exp").is_none() && outer.get("sub").is_none(),
        "{outer}"
    );

    // Inactive tokens are signed statements too.
    let body = signed_body(&provider, "unknown-token").await;
    assert_eq!(
        read_signed(&body, &keys, &rules, None, now()).await,
        Ok(Verdict::Inactive)
    );

    // Addressed to the gateway, not to another client; not an allowed alg.
    let other = SignedAnswerRules::new(&provider.issuer, "gateway-jwt", vec![Algorithm::ES256]);
    let body = signed_body(&provider, &token).await;
    assert_eq!(
        read_signed(&body, &keys, &other, None, now()).await,
        Err(AnswerError::WrongAudience)
    );
    let rsa_only = SignedAnswerRules::new(&provider.issuer, "gateway", vec![Algorithm::RS256]);
    assert!(matches!(
        read_signed(&body, &keys, &rsa_only, None, now()).await,
        Err(AnswerError::Signature(VerifyError::AlgorithmNotAllowed(_)))
    ));
}

#[tokio::test]
async fn a_tampered_rfc9701_answer_is_an_as_fault() {
    let provider = OidcProvider::start().await;
    let keys = key_set(&provider).await;
    let rules = SignedAnswerRules::new(&provider.issuer, "gateway", vec![Algorithm::ES256]);
    let token = provider
        .issue_token(serde_json::json!({"sub": "frank"}))
        .await;
    let body = signed_body(&provider, &token).await;
    read_signed(&body, &keys, &rules, None, now())
        .await
        .expect("untouched, it verifies");

    let text = String::from_utf8(body).expect("ASCII");
    let parts: Vec<&str> = text.split('.').collect();
    let flip = |part: &str| {
        let mut bytes = part.as_bytes().to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ASCII")
    };
    // A byte flipped in the payload, in the signature, and a payload swapped
    // for one claiming an active admin.
    let admin = URL_SAFE_NO_PAD.encode(
        serde_json::json!({
            "iss": provider.issuer, "aud": "gateway", "iat": now(),
            "token_introspection": {"active": true, "sub": "admin", "client_id": "app"},
        })
        .to_string(),
    );
    for tampered in [
        format!("{}.{}.{}", parts[0], flip(parts[1]), parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], flip(parts[2])),
        format!("{}.{admin}.{}", parts[0], parts[2]),
    ] {
        assert_eq!(
            read_signed(tampered.as_bytes(), &keys, &rules, None, now()).await,
            Err(AnswerError::Signature(VerifyError::BadSignature)),
        );
    }
}

/// The format follows `Accept`, per request: the same client gets JSON
/// without asking and a signed answer when asking. A client registered
/// without `introspection_signed_response_alg` still gets one, signed with
/// the server's default (RS256).
#[tokio::test]
async fn the_answer_format_follows_accept_and_the_default_signing_alg_is_rs256() {
    let provider = OidcProvider::start().await;
    let client = &provider.clients.gateway_post;
    let post = ClientSecretPost::new(&client.client_id, client.secret());
    let fields = || {
        post.form_fields()
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let token = provider
        .issue_token(serde_json::json!({"sub": "gina"}))
        .await;
    let endpoint = provider.introspection_endpoint();

    let plain = introspect(&endpoint, &token, Auth::Form(fields()), None).await;
    assert_eq!(active(json_verdict(plain).await).sub(), Some("gina"));

    let signed = introspect(
        &endpoint,
        &token,
        Auth::Form(fields()),
        Some(MEDIA_INTROSPECTION_JWT),
    )
    .await;
    assert_eq!(
        media_type(content_type(&signed).as_deref()),
        MediaType::IntrospectionJwt
    );
    let body = signed.bytes().await.expect("body");
    let rules = SignedAnswerRules::new(&provider.issuer, &client.client_id, vec![Algorithm::RS256]);
    let keys = key_set(&provider).await;
    let answer = active(
        read_signed(&body, &keys, &rules, None, now())
            .await
            .expect("verifies with RS256"),
    );
    assert_eq!(answer.sub(), Some("gina"));
}

#[tokio::test]
async fn client_secret_post_is_accepted_and_a_wrong_secret_is_rejected() {
    let provider = OidcProvider::start().await;
    let client = &provider.clients.gateway_post;
    let token = provider
        .issue_token(serde_json::json!({"sub": "hank"}))
        .await;
    let fields = |secret: &str| {
        ClientSecretPost::new(&client.client_id, secret)
            .form_fields()
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let accepted = introspect(
        &provider.introspection_endpoint(),
        &token,
        Auth::Form(fields(client.secret())),
        None,
    )
    .await;
    assert_eq!(active(json_verdict(accepted).await).sub(), Some("hank"));

    let rejected = introspect(
        &provider.introspection_endpoint(),
        &token,
        Auth::Form(fields("wrong-secret")),
        None,
    )
    .await;
    assert_eq!(rejected.status(), 401);
    let body = json_body(rejected).await;
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn private_key_jwt_is_accepted_by_the_real_server_and_signs_rs256_answers_for_it() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let pem = dir.path().join("assertion.pem");
    std::fs::write(&pem, &provider.assertion_key_pem).expect("write the key");
    let client_id = &provider.clients.gateway_jwt.client_id;
    let endpoint = provider.introspection_endpoint();
    let token = provider
        .issue_token(serde_json::json!({"sub": "iris"}))
        .await;

    // Audience = the issuer, and audience = the endpoint called: both work.
    for audience in [provider.issuer.as_str(), endpoint.as_str()] {
        let auth = PrivateKeyJwt::from_pem_file(client_id, audience, &pem).expect("key loads");
        let response = introspect(
            &endpoint,
            &token,
            Auth::Form(auth.form_fields(now()).expect("assertion")),
            None,
        )
        .await;
        assert_eq!(response.status(), 200, "{audience}: {}", provider.stderr());
        assert_eq!(active(json_verdict(response).await).sub(), Some("iris"));
    }

    // Each request needs a fresh assertion: the server refuses a replay.
    let auth = PrivateKeyJwt::from_pem_file(client_id, &provider.issuer, &pem).expect("key");
    let fields = auth.form_fields(now()).expect("assertion");
    let first = introspect(&endpoint, &token, Auth::Form(fields.clone()), None).await;
    assert_eq!(first.status(), 200);
    let replay = introspect(&endpoint, &token, Auth::Form(fields), None).await;
    assert_eq!(replay.status(), 401);

    // A key the server does not know is refused.
    let stranger = dir.path().join("stranger.pem");
    std::fs::write(
        &stranger,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_pem(),
    )
    .expect("write");
    let auth = PrivateKeyJwt::from_pem_file(client_id, &provider.issuer, &stranger).expect("key");
    let refused = introspect(
        &endpoint,
        &token,
        Auth::Form(auth.form_fields(now()).expect("assertion")),
        None,
    )
    .await;
    assert_eq!(refused.status(), 401);

    // This client's signed answers use the AS's RSA key.
    let auth = PrivateKeyJwt::from_pem_file(client_id, &provider.issuer, &pem).expect("key");
    let response = introspect(
        &endpoint,
        &token,
        Auth::Form(auth.form_fields(now()).expect("assertion")),
        Some(MEDIA_INTROSPECTION_JWT),
    )
    .await;
    assert_eq!(
        media_type(content_type(&response).as_deref()),
        MediaType::IntrospectionJwt
    );
    let body = response.bytes().await.expect("body");
    let keys = key_set(&provider).await;
    let rules = SignedAnswerRules::new(&provider.issuer, client_id, vec![Algorithm::RS256]);
    let answer = active(
        read_signed(&body, &keys, &rules, None, now())
            .await
            .expect("verifies"),
    );
    assert_eq!(answer.sub(), Some("iris"));
}

#[tokio::test]
async fn the_access_token_lifetime_is_configurable() {
    let provider = OidcProvider::start_with(Options {
        access_token_ttl: 2,
    })
    .await;
    let gateway = &provider.clients.gateway;
    let token = provider.client_credentials_token("orders:read").await;
    let answer = active(
        json_verdict(
            introspect(
                &provider.introspection_endpoint(),
                &token,
                Auth::Basic(&gateway.client_id, gateway.secret()),
                None,
            )
            .await,
        )
        .await,
    );
    let exp = answer.exp.expect("exp");
    assert!(exp <= now() + 2, "exp {exp} is more than 2 s ahead");
}

/// DPoP is on (for sender-constrained tokens later): a bound token's answer
/// carries `cnf.jkt` and token type `DPoP`, and reads as an active answer.
#[tokio::test]
async fn a_dpop_bound_token_is_introspected_with_its_key_thumbprint() {
    let provider = OidcProvider::start().await;
    let gateway = &provider.clients.gateway;
    let jkt = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let token = provider
        .issue_token(serde_json::json!({"sub": "judy", "jkt": jkt}))
        .await;
    let answer = active(
        json_verdict(
            introspect(
                &provider.introspection_endpoint(),
                &token,
                Auth::Basic(&gateway.client_id, gateway.secret()),
                None,
            )
            .await,
        )
        .await,
    );
    assert_eq!(answer.string("token_type"), Some("DPoP"));
    assert_eq!(answer.get("cnf"), Some(&serde_json::json!({"jkt": jkt})));
}
