//! Who may use the admin endpoint's write routes, and the JWKS listener that
//! serves APIs the minted JWTs' keys without the rest. Real HTTP on loopback.

use std::net::SocketAddr;

use crate::support::*;

const ADMIN_TOKEN: &str = "adm-4f9a7c1e2b3d5a6f";

/// The address to call a listener at (one bound to all interfaces is
/// called on loopback).
fn on_loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// `POST /tokens/revoke` with `token=<token>` and, if given, this
/// `Authorization`: (status, `WWW-Authenticate`, body).
async fn revoke(
    addr: SocketAddr,
    token: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/tokens/revoke", on_loopback(addr)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"));
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.expect("admin endpoint answers");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.text().await.unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> reqwest::Response {
    reqwest::get(format!("http://{}{path}", on_loopback(addr)))
        .await
        .expect("listener answers")
}

/// A token cached by one request (one introspection so far).
async fn cached_token(app: &TestApp, token: &str) {
    app.fake_as
        .script(token, Behaviour::Jwt(Claims::valid_for("ann", 600)));
    assert_eq!(app.get_with_token(token).await.status(), 200);
    assert_eq!(app.fake_as.calls_for(token), 1);
}

#[tokio::test]
async fn with_admin_token_revocation_needs_the_bearer_secret_and_reads_do_not() {
    let app = spawn_app_with(|s| {
        s.env("ADMIN_TOKEN", ADMIN_TOKEN);
        s.admin = true;
    })
    .await;
    let admin = app.admin.unwrap();
    cached_token(&app, "kept").await;

    let (status, challenge, body) = revoke(admin, "kept", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="admin""#));
    assert!(body.contains("ADMIN_TOKEN"), "{body}");
    for wrong in [
        "Bearer adm-4f9a7c1e2b3d5a6",
        "Bearer adm-4f9a7c1e2b3d5a6f0",
        "Basic YWRtaW46YWRtLTRmOWE3YzFlMmIzZDVhNmY=",
        ADMIN_TOKEN,
    ] {
        let (status, _, body) = revoke(admin, "kept", Some(wrong)).await;
        assert_eq!(status, 401, "{wrong}: {body}");
        assert!(!body.contains(ADMIN_TOKEN), "{body}");
    }
    let (_, challenge, _) = revoke(admin, "kept", Some("Bearer not-the-token-at-all")).await;
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="admin", error="invalid_token""#)
    );
    // Refused requests changed nothing: the token is still cached.
    assert_eq!(app.get_with_token("kept").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("kept"), 1);

    let (status, _, body) = revoke(admin, "kept", Some(&format!("Bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get_with_token("kept").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("kept"), 2, "dropped, so asked again");

    // Probes and scrapes need no secret.
    for path in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(get(admin, path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn without_admin_token_revocation_is_refused_on_an_address_others_can_reach() {
    let app = spawn_app_with(|s| {
        s.env("ADMIN_ADDR", "0.0.0.0:0");
    })
    .await;
    let admin = app.admin.expect("admin endpoint");
    cached_token(&app, "exposed").await;

    for authorization in [None, Some("Bearer anything-at-all-1234")] {
        let (status, _, body) = revoke(admin, "exposed", authorization).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("ADMIN_TOKEN"), "{body}");
    }
    assert_eq!(app.get_with_token("exposed").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("exposed"), 1, "still cached");
    assert_eq!(get(admin, "/readyz").await.status(), 200);
}

#[tokio::test]
async fn without_admin_token_revocation_is_open_on_loopback() {
    let app = spawn_app_with(|s| s.admin = true).await;
    cached_token(&app, "local").await;
    let (status, _, body) = revoke(app.admin.unwrap(), "local", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get_with_token("local").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("local"), 2);
}

#[tokio::test]
async fn the_jwks_listener_serves_the_public_keys_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mint.pem");
    std::fs::write(
        &key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let app = spawn_app_with(|s| {
        s.env("INTROSPECTION_ACCEPT", "application/json")
            .env("SIGNING_KEY_FILE", &key.display().to_string())
            .env("MINTED_ISSUER", "https://gateway.test")
            .env("MINTED_AUDIENCE", "orders")
            .env("JWKS_ADDR", "0.0.0.0:0");
        s.admin = true;
    })
    .await;
    let jwks = app.jwks.expect("JWKS listener");

    let response = get(jwks, "/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/jwk-set+json"
    );
    let served = response.text().await.unwrap();
    assert_eq!(
        app.admin_get("/.well-known/jwks.json").await,
        (200, served.clone())
    );
    let set: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(set["keys"][0]["kty"], "EC");
    assert!(set["keys"][0].get("d").is_none(), "never the private part");
    assert_eq!(get(jwks, "/livez").await.status(), 200);

    for path in ["/metrics", "/readyz", "/tokens/revoke"] {
        assert_eq!(get(jwks, path).await.status(), 404, "{path}");
    }
    cached_token(&app, "behind-the-jwks").await;
    let (status, _, _) = revoke(jwks, "behind-the-jwks", None).await;
    assert_eq!(status, 404);
    assert_eq!(app.get_with_token("behind-the-jwks").await.status(), 200);
    assert_eq!(app.fake_as.calls_for("behind-the-jwks"), 1);
}
