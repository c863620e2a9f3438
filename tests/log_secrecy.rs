//! Log secrecy: with every target at TRACE, the logs of a run that exercises
//! each outcome contain no token, no JWT and no client secret.
//!
//! Its own test binary, because it installs the global subscriber.

#[path = "support/captured_logs.rs"]
mod captured_logs;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use base64::Engine;
use tyk_phantom_token::pb::dispatcher_client::DispatcherClient;
use tyk_phantom_token::pb::{Event, HookType, MiniRequestObject, Object, ReturnOverrides};

use captured_logs::Captured;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_jwt_or_secret_reaches_the_logs_at_trace_level() {
    let captured = Captured::install();

    let app = spawn_app_with(|s| {
        s.env("TIMEOUT_SECONDS", "0.3");
        s.api.post_key_auth = vec!["InjectJwtPostKeyAuth".to_owned()];
    })
    .await;
    let tokens = [
        (
            "TOKEN-allowed-4f1c2a",
            Behaviour::Jwt(Claims::valid_for("alice", 600)),
        ),
        ("TOKEN-inactive-8b3d5e", Behaviour::NoContent),
        ("TOKEN-json-inactive-1a2b", Behaviour::InactiveJson),
        ("TOKEN-as500-9c8d7e", Behaviour::Status(500)),
        ("TOKEN-as401-6e5f4a", Behaviour::Status(401)),
        (
            "TOKEN-garbage-3b2c1d",
            Behaviour::Garbage("<html>TOKEN-echoed-in-body</html>"),
        ),
        ("TOKEN-reset-7a6b5c", Behaviour::Reset),
        (
            "TOKEN-slow-2d3e4f",
            Behaviour::Slow(Duration::from_secs(2), Box::new(Behaviour::NoContent)),
        ),
    ];
    for (token, behaviour) in tokens.iter().cloned() {
        app.fake_as.script(token, behaviour);
        app.get_with_token(token).await;
        app.get_with_token(token).await;
    }
    // A denied request carrying Tyk's trace context: its trace id is logged.
    app.send(
        ClientRequest::get("/x")
            .bearer("TOKEN-inactive-8b3d5e")
            .traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    .await;
    let malformed = "TOKEN malformed with spaces";
    app.send(ClientRequest::get("/x").header("Authorization", &format!("Bearer {malformed}")))
        .await;
    let long = format!("TOKEN-long-{}", "x".repeat(5000));
    app.send(ClientRequest::get("/x").bearer(&long)).await;
    app.send(ClientRequest::get("/x").header("Authorization", "Basic VE9LRU4tYmFzaWM6cHc="))
        .await;

    let mut client = DispatcherClient::new(app.channel().await);
    let event = r#"{"message":{"Type":"AuthFailure","Meta":{"Key":"TOKEN-in-event-5e6f","OriginatingRequest":"R0VUIC8gSFRUUC8xLjENCkF1dGhvcml6YXRpb246IEJlYXJlciBUT0tFTi1pbi1ldmVudC01ZTZm"}}}"#;
    client
        .dispatch_event(Event {
            payload: event.to_owned(),
        })
        .await
        .unwrap();
    let post = Object {
        hook_type: HookType::PostKeyAuth as i32,
        hook_name: "InjectJwtPostKeyAuth".into(),
        request: Some(MiniRequestObject {
            headers: [(
                "Authorization".to_owned(),
                "Bearer TOKEN-allowed-4f1c2a".to_owned(),
            )]
            .into(),
            url: "/x".into(),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    client.dispatch(post).await.unwrap();

    // VERIFY_JWT=true: a JWT that fails verification is logged by reason only.
    let jwks_pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let jwks = tyk_phantom_token::keys::SigningKeys::from_pem(&jwks_pem)
        .unwrap()
        .jwks_json();
    let jwks_app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { jwks }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, jwks_app).await.unwrap() });
    let verifying = spawn_app_with(|s| {
        s.env("VERIFY_JWT", "true")
            .env("INTROSPECTION_JWKS_URL", &jwks_url)
            .env("JWT_ISSUER", "https://idsvr.test/oauth/v2/oauth-anonymous")
            .env("JWT_AUDIENCE", "orders-api");
    })
    .await;
    verifying.fake_as.script(
        "TOKEN-unverified-0c1d2e",
        Behaviour::Jwt(Claims::valid_for("mallory", 600)),
    );
    assert_eq!(
        verifying
            .get_with_token("TOKEN-unverified-0c1d2e")
            .await
            .status(),
        502
    );
    let unverified = verifying
        .fake_as
        .jwt_for("TOKEN-unverified-0c1d2e")
        .expect("a JWT was issued");

    let jwt = app
        .fake_as
        .jwt_for("TOKEN-allowed-4f1c2a")
        .expect("a JWT was issued");
    let logs = captured.text();

    // The run produced the lines we rely on, so the absence checks mean something.
    for expected in [
        "0af7651916cd43dd8448eb211c80319c",
        "Request denied",
        "Introspection failed",
        "token.id=",
        "Request allowed",
        "status=504",
        "failed verification",
    ] {
        assert!(logs.contains(expected), "logs lack {expected:?}");
    }

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut forbidden: Vec<String> = tokens.iter().map(|(t, _)| (*t).to_owned()).collect();
    forbidden.extend([
        "TOKEN-in-event-5e6f".to_owned(),
        "TOKEN malformed".to_owned(),
        "TOKEN-long-".to_owned(),
        "VE9LRU4tYmFzaWM6cHc=".to_owned(),
        "R0VUIC8gSFRUUC8x".to_owned(),
        "TOKEN-echoed-in-body".to_owned(),
        "internal detail from the fake AS".to_owned(),
        CLIENT_SECRET.to_owned(),
        basic,
        jwt.clone(),
        "TOKEN-unverified-0c1d2e".to_owned(),
        unverified.split('.').nth(1).unwrap().to_owned(),
        unverified.split('.').nth(2).unwrap().to_owned(),
    ]);
    let segments: Vec<&str> = jwt.split('.').collect();
    forbidden.push(segments[1].to_owned());
    forbidden.push(segments[2].to_owned());
    for secret in &forbidden {
        let shown: String = secret.chars().take(40).collect();
        assert!(!logs.contains(secret.as_str()), "logs contain {shown:?}");
    }
}
