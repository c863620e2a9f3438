//! The auth_check hook end to end: allow and every client-side denial.

use crate::support::fake_as::now;
use crate::support::fake_tyk::template_body;
use crate::support::*;

#[tokio::test]
async fn allowed_request_reaches_the_upstream_with_the_jwt_and_nothing_else_changed() {
    let app = spawn_app().await;
    app.fake_as.script(
        "opaque-token-1",
        Behaviour::Jwt(Claims::valid_for("alice", 600)),
    );
    let body: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x80, b'{', 0xc3, 0x28];

    let outcome = app
        .send(
            ClientRequest::get("/orders/api/items?page=2&sort=asc&page=3")
                .method("PATCH")
                .bearer("opaque-token-1")
                .header("X-Request-Id", "r-1")
                .header("Content-Type", "application/octet-stream")
                .body(body.clone()),
        )
        .await;

    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let upstream = outcome.upstream.expect("the upstream was called");
    let jwt = app.fake_as.jwt_for("opaque-token-1").unwrap();
    assert_eq!(
        upstream.header("Authorization"),
        Some(format!("Bearer {jwt}").as_str())
    );
    assert_eq!(upstream.method, "PATCH");
    assert_eq!(upstream.url, "/orders/api/items?page=2&sort=asc&page=3");
    assert_eq!(upstream.body, body, "non-UTF-8 body must be byte-identical");
    assert_eq!(upstream.header("X-Request-Id"), Some("r-1"));
    assert_eq!(
        upstream.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(upstream.headers["Authorization"].len(), 1);
}

#[tokio::test]
async fn a_one_mib_body_passes_through_byte_identical() {
    let app = spawn_app().await;
    app.fake_as.script(
        "big-body-token",
        Behaviour::Jwt(Claims::valid_for("bob", 600)),
    );
    let body: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 7 % 256) as u8).collect();

    let outcome = app
        .send(
            ClientRequest::get("/upload")
                .method("POST")
                .bearer("big-body-token")
                .body(body.clone()),
        )
        .await;

    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let upstream = outcome.upstream.unwrap();
    assert_eq!(upstream.body.len(), body.len());
    assert!(upstream.body == body, "1 MiB body changed on the way");
}

#[tokio::test]
async fn allowed_session_carries_expiry_lifetime_metadata_and_a_safe_key() {
    let app = spawn_app().await;
    let token = "tok+with/b64=";
    let claims = Claims::valid_for("alice", 900);
    let exp = claims.exp.unwrap();
    app.fake_as.script(token, Behaviour::Jwt(claims));

    let outcome = app.get_with_token(token).await;

    assert_eq!(outcome.status(), 200);
    let key = outcome.session_key.expect("a session was stored");
    assert!(key.starts_with("phantom-token:"), "{key}");
    assert!(
        !key.contains(token) && !key["phantom-token:".len()..].contains("tok"),
        "{key}"
    );
    let session = app
        .gateway
        .stored(&key)
        .expect("session stored under the key");
    assert_eq!(session.expires, exp as i64);
    assert_eq!(session.metadata["token"], key);
    assert_eq!(session.metadata["sub"], "alice");
    assert_eq!(session.metadata["client_id"], "web-app");
    assert_eq!(session.metadata["scope"], "read write");
    assert!(!session.metadata.values().any(|v| v.contains(token)));
    assert!(
        !session
            .metadata
            .values()
            .any(|v| v.contains('.') && v.len() > 100),
        "the JWT must not be in session metadata"
    );
    assert_eq!(session.rate, 0.0);
    assert!(session.quota_max <= 0);
    // The stored copy lives until shortly after the token expires.
    let ttl = app.gateway.stored_ttl(&key).unwrap().as_secs();
    let remaining = exp - now();
    assert!(
        ttl >= remaining && ttl <= remaining + 61,
        "ttl {ttl}, token has {remaining} s left"
    );
}

#[tokio::test]
async fn the_same_token_always_maps_to_the_same_session_and_others_do_not() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("carol", 600)));
    let a1 = app.get_with_token("token-a").await.session_key.unwrap();
    let a2 = app.get_with_token("token-a").await.session_key.unwrap();
    let b = app.get_with_token("token-b").await.session_key.unwrap();
    assert_eq!(a1, a2);
    assert_ne!(a1, b);
}

#[tokio::test]
async fn configured_rate_and_quota_reach_the_session_and_tyk_enforces_them() {
    let app = spawn_app_with(|s| {
        s.env("SESSION_QUOTA_MAX", "2")
            .env("SESSION_QUOTA_RENEWAL_SECONDS", "3600");
    })
    .await;
    app.fake_as.script(
        "quota-token",
        Behaviour::Jwt(Claims::valid_for("dave", 600)),
    );
    assert_eq!(app.get_with_token("quota-token").await.status(), 200);
    assert_eq!(app.get_with_token("quota-token").await.status(), 200);
    let third = app.get_with_token("quota-token").await;
    assert_eq!(third.status(), 403);
    assert_eq!(third.response().body, template_body("Quota exceeded"));
}

async fn assert_denied_without_as_call(app: &TestApp, request: ClientRequest, challenge: &str) {
    let outcome = app.send(request).await;
    let response = outcome.response();
    assert_eq!(response.status, 401);
    assert_eq!(response.header("WWW-Authenticate"), Some(challenge));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert!(outcome.upstream.is_none());
    assert_eq!(
        outcome.events,
        vec!["AuthFailure".to_owned()],
        "Tyk fires AuthFailure on 401"
    );
    assert_eq!(app.fake_as.calls(), 0, "the AS must not be called");
}

#[tokio::test]
async fn missing_credentials_get_a_bare_challenge() {
    let app = spawn_app().await;
    let bare = "Bearer realm=\"api\"";
    assert_denied_without_as_call(&app, ClientRequest::get("/orders"), bare).await;
    assert_denied_without_as_call(
        &app,
        ClientRequest::get("/orders").header("Authorization", "Basic dXNlcjpwYXNz"),
        bare,
    )
    .await;
    let outcome = app.send(ClientRequest::get("/orders")).await;
    assert_eq!(
        outcome.response().body,
        template_body("Authorization required")
    );
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_invalid_without_an_as_call() {
    let app = spawn_app_with(|s| {
        s.env("MAX_TOKEN_BYTES", "64");
    })
    .await;
    let invalid = "Bearer realm=\"api\", error=\"invalid_token\"";
    for header in [
        "Bearer",
        "Bearer a b",
        "Bearer a,b",
        "bearer \"quoted\"",
        "Bearer tok=en",
    ] {
        assert_denied_without_as_call(
            &app,
            ClientRequest::get("/orders").header("Authorization", header),
            invalid,
        )
        .await;
    }
    let long = "a".repeat(65);
    assert_denied_without_as_call(&app, ClientRequest::get("/orders").bearer(&long), invalid).await;
    let outcome = app.send(ClientRequest::get("/orders").bearer(&long)).await;
    assert_eq!(
        outcome.response().body,
        template_body("Invalid access token")
    );
}

#[tokio::test]
async fn a_realm_can_be_configured() {
    let app = spawn_app_with(|s| {
        s.env("REALM", "orders");
    })
    .await;
    let outcome = app.send(ClientRequest::get("/orders")).await;
    assert_eq!(
        outcome.response().header("WWW-Authenticate"),
        Some("Bearer realm=\"orders\"")
    );
}

#[tokio::test]
async fn inactive_tokens_are_invalid_tokens() {
    let app = spawn_app().await;
    app.fake_as.script("curity-204", Behaviour::NoContent);
    app.fake_as
        .script("rfc7662-inactive", Behaviour::InactiveJson);
    for token in ["curity-204", "rfc7662-inactive"] {
        let outcome = app.get_with_token(token).await;
        let response = outcome.response();
        assert_eq!(response.status, 401, "{token}");
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\"")
        );
        assert_eq!(response.body, template_body("Invalid access token"));
        assert!(outcome.upstream.is_none());
        assert_eq!(app.fake_as.calls_for(token), 1);
    }
}

#[tokio::test]
async fn a_jwt_that_has_already_expired_is_an_invalid_token() {
    let app = spawn_app().await;
    let mut claims = Claims::valid_for("erin", 0);
    claims.exp = Some(now() - 5);
    app.fake_as.script("expired-jwt", Behaviour::Jwt(claims));
    let outcome = app.get_with_token("expired-jwt").await;
    assert_eq!(outcome.status(), 401);
    assert_eq!(
        outcome.response().header("WWW-Authenticate"),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert!(outcome.upstream.is_none());
}

#[tokio::test]
async fn the_introspection_request_is_what_curity_expects() {
    let app = spawn_app().await;
    app.fake_as
        .script("a+b/c=", Behaviour::Jwt(Claims::valid_for("frank", 600)));
    assert_eq!(app.get_with_token("a+b/c=").await.status(), 200);

    let requests = app.fake_as.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/oauth/v2/oauth-introspect");
    assert_eq!(r.header("Accept"), Some("application/jwt"));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("gateway-client:gw-secret-7f3a9c41"): both parts are unreserved.
    assert_eq!(
        r.header("Authorization"),
        Some("Basic Z2F0ZXdheS1jbGllbnQ6Z3ctc2VjcmV0LTdmM2E5YzQx")
    );
    assert_eq!(r.body, "token=a%2Bb%2Fc%3D");
    assert_eq!(r.token, "a+b/c=");
}

#[tokio::test]
async fn introspections_reuse_a_kept_alive_connection() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("zoe", 600)));
    for n in 0..10 {
        assert_eq!(
            app.get_with_token(&format!("distinct-{n}")).await.status(),
            200
        );
    }
    assert_eq!(app.fake_as.calls(), 10);
    assert_eq!(app.fake_as.connections(), 1);
}
