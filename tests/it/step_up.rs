//! Step-up authentication (RFC 9470) through the fake gateway: an API's
//! `required_acr` and `max_auth_age`, checked on every request, cached or
//! not, with the challenge the RFC prescribes. The same check against
//! node-oidc-provider is in tests/oidc_e2e.rs.

use crate::support::fake_as::now;
use crate::support::fake_tyk::{Gateway, template_body};
use crate::support::*;

const MFA: &str = "urn:example:acr:mfa";

fn token_with(extra: serde_json::Value) -> Behaviour {
    let mut claims = Claims::valid_for("alice", 600);
    claims.extra = extra;
    Behaviour::Jwt(claims)
}

async fn gateway_with(app: &TestApp, api_id: &str, config: serde_json::Value) -> Gateway {
    let api = Api {
        api_id: api_id.into(),
        config_data: Some(config),
        ..Api::default()
    };
    Gateway::connect(app.addr, api).await
}

#[tokio::test]
async fn a_token_without_the_required_acr_gets_the_step_up_challenge_even_from_the_cache() {
    let app = spawn_app_with(|s| s.admin = true).await;
    app.fake_as.script(
        "password-only",
        token_with(serde_json::json!({"acr": "urn:example:acr:pwd", "auth_time": now()})),
    );
    app.fake_as.script(
        "with-mfa",
        token_with(serde_json::json!({"acr": MFA, "auth_time": now()})),
    );
    let open = gateway_with(&app, "open", serde_json::json!({})).await;
    let strict = gateway_with(
        &app,
        "payments",
        serde_json::json!({"required_acr": [MFA, "urn:example:acr:hwk"]}),
    )
    .await;

    // Cached through the open API first: the strict one still checks.
    assert_eq!(
        open.request(ClientRequest::get("/").bearer("password-only"))
            .await
            .status(),
        200
    );
    let denied = strict
        .request(ClientRequest::get("/").bearer("password-only"))
        .await;
    let response = denied.response();
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"A different authentication level is required\", \
             acr_values=\"urn:example:acr:mfa urn:example:acr:hwk\""
        )
    );
    assert_eq!(
        response.body,
        template_body("Insufficient user authentication")
    );
    assert!(denied.upstream.is_none());
    assert_eq!(
        app.fake_as.calls_for("password-only"),
        1,
        "served from the cache"
    );

    let allowed = strict
        .request(ClientRequest::get("/").bearer("with-mfa"))
        .await;
    assert_eq!(allowed.status(), 200, "{:?}", allowed.client);
    assert!(allowed.upstream.is_some());
    assert_eq!(
        app.metric(
            "phantom_decisions_total{outcome=\"insufficient_user_authentication\",status=\"401\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn an_old_or_missing_auth_time_gets_the_max_age_challenge() {
    let app = spawn_app().await;
    app.fake_as.script(
        "recent",
        token_with(serde_json::json!({"auth_time": now() - 10})),
    );
    app.fake_as.script(
        "old",
        token_with(serde_json::json!({"auth_time": now() - 3600})),
    );
    app.fake_as
        .script("unknown", token_with(serde_json::json!({"acr": MFA})));
    let recent_only = gateway_with(&app, "admin", serde_json::json!({"max_auth_age": 300})).await;

    assert_eq!(
        recent_only
            .request(ClientRequest::get("/").bearer("recent"))
            .await
            .status(),
        200
    );
    for token in ["old", "unknown"] {
        let denied = recent_only
            .request(ClientRequest::get("/").bearer(token))
            .await;
        let response = denied.response();
        assert_eq!(response.status, 401, "{token}");
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some(
                "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
                 error_description=\"More recent authentication is required\", max_age=\"300\""
            ),
            "{token}"
        );
        assert!(denied.upstream.is_none(), "{token}");
    }
}

#[tokio::test]
async fn invalid_step_up_settings_are_an_invalid_api_configuration() {
    let app = spawn_app().await;
    app.fake_as.script(
        "any",
        token_with(serde_json::json!({"acr": MFA, "auth_time": now()})),
    );
    for config in [
        serde_json::json!({"required_acr": []}),
        serde_json::json!({"required_acr": [1]}),
        serde_json::json!({"max_auth_age": -1}),
        serde_json::json!({"max_auth_age": 1.5}),
    ] {
        let gateway = gateway_with(&app, "broken", config.clone()).await;
        let outcome = gateway.request(ClientRequest::get("/").bearer("any")).await;
        assert_eq!(outcome.status(), 500, "{config}");
        assert!(outcome.upstream.is_none(), "{config}");
    }
}
