//! Per-API settings from `config_data` and per-identity sessions.

use crate::support::fake_tyk::{Gateway, template_body};
use crate::support::*;

fn claims(sub: &str, extra: serde_json::Value) -> Claims {
    let mut claims = Claims::valid_for(sub, 600);
    claims.extra = extra;
    claims
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
async fn required_scopes_are_checked_on_every_request_including_cache_hits() {
    let app = spawn_app().await;
    app.fake_as.script(
        "reader",
        Behaviour::Jwt(claims(
            "ann",
            serde_json::json!({ "scope": "openid orders:read" }),
        )),
    );
    let open = gateway_with(&app, "open-api", serde_json::json!({})).await;
    let strict = gateway_with(
        &app,
        "orders-api",
        serde_json::json!({ "required_scopes": ["orders:read", "orders:write"] }),
    )
    .await;
    let lenient = gateway_with(
        &app,
        "read-api",
        serde_json::json!({ "required_scopes": "orders:read" }),
    )
    .await;

    assert_eq!(
        open.request(ClientRequest::get("/").bearer("reader"))
            .await
            .status(),
        200
    );
    // Now cached: the stricter API still checks.
    let denied = strict
        .request(ClientRequest::get("/").bearer("reader"))
        .await;
    let response = denied.response();
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"orders:read orders:write\""
        )
    );
    assert_eq!(response.body, template_body("Insufficient scope"));
    assert!(denied.upstream.is_none());
    assert_eq!(
        lenient
            .request(ClientRequest::get("/").bearer("reader"))
            .await
            .status(),
        200
    );
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn a_token_for_another_audience_is_an_invalid_token() {
    let app = spawn_app().await;
    app.fake_as.script(
        "aud-web",
        Behaviour::Jwt(claims("bo", serde_json::json!({ "aud": ["web"] }))),
    );
    app.fake_as.script(
        "aud-orders",
        Behaviour::Jwt(claims(
            "bo",
            serde_json::json!({ "aud": ["web", "orders-api"] }),
        )),
    );
    let gateway = gateway_with(
        &app,
        "orders-api",
        serde_json::json!({ "required_audience": "orders-api" }),
    )
    .await;
    let wrong = gateway
        .request(ClientRequest::get("/").bearer("aud-web"))
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.response().header("WWW-Authenticate"),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert_eq!(
        gateway
            .request(ClientRequest::get("/").bearer("aud-orders"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn invalid_config_data_denies_without_asking_the_as() {
    let app = spawn_app().await;
    app.fake_as
        .script("any", Behaviour::Jwt(Claims::valid_for("cy", 600)));
    let gateway = gateway_with(
        &app,
        "typo-api",
        serde_json::json!({ "required_scope": "orders:read" }),
    )
    .await;
    for _ in 0..3 {
        let outcome = gateway.request(ClientRequest::get("/").bearer("any")).await;
        assert_eq!(outcome.status(), 500);
        assert_eq!(
            outcome.response().body,
            template_body("Invalid API configuration")
        );
        assert!(outcome.upstream.is_none());
    }
    assert_eq!(app.fake_as.calls(), 0);
}

#[tokio::test]
async fn sessions_keyed_by_a_claim_share_quota_across_an_identitys_tokens() {
    let app = spawn_app_with(|s| {
        s.env("SESSION_QUOTA_MAX", "3")
            .env("SESSION_QUOTA_RENEWAL_SECONDS", "3600");
        s.api.config_data = Some(serde_json::json!({ "session_key_claim": "sub" }));
    })
    .await;
    for token in ["dee-phone", "dee-laptop"] {
        app.fake_as
            .script(token, Behaviour::Jwt(Claims::valid_for("dee", 600)));
    }
    app.fake_as
        .script("eve-phone", Behaviour::Jwt(Claims::valid_for("eve", 600)));

    let first = app.get_with_token("dee-phone").await;
    let second = app.get_with_token("dee-laptop").await;
    let key = first.session_key.clone().unwrap();
    assert!(key.starts_with("phantom-token:id:"), "{key}");
    assert!(!key.contains("dee"), "the identity is hashed: {key}");
    assert_eq!(second.session_key.as_deref(), Some(key.as_str()));
    assert_ne!(
        app.get_with_token("eve-phone").await.session_key.as_deref(),
        Some(key.as_str())
    );

    assert_eq!(app.get_with_token("dee-phone").await.status(), 200);
    let over = app.get_with_token("dee-laptop").await;
    assert_eq!(
        over.status(),
        403,
        "quota of 3 shared by both of dee's tokens"
    );
    assert_eq!(over.response().body, template_body("Quota exceeded"));
    assert_eq!(app.get_with_token("eve-phone").await.status(), 200);
}

#[tokio::test]
async fn a_global_identity_rule_applies_unless_an_api_overrides_it() {
    let app = spawn_app_with(|s| {
        s.env("SESSION_KEY_CLAIM", "sub");
    })
    .await;
    app.fake_as
        .script("fay-1", Behaviour::Jwt(Claims::valid_for("fay", 600)));
    app.fake_as
        .script("fay-2", Behaviour::Jwt(Claims::valid_for("fay", 600)));
    let global_1 = app.get_with_token("fay-1").await.session_key.unwrap();
    let global_2 = app.get_with_token("fay-2").await.session_key.unwrap();
    assert_eq!(global_1, global_2);

    let per_token = gateway_with(
        &app,
        "per-token-api",
        serde_json::json!({ "session_key_claim": "" }),
    )
    .await;
    let own_1 = per_token
        .request(ClientRequest::get("/").bearer("fay-1"))
        .await
        .session_key
        .unwrap();
    let own_2 = per_token
        .request(ClientRequest::get("/").bearer("fay-2"))
        .await
        .session_key
        .unwrap();
    assert_ne!(own_1, own_2);
    assert!(own_1.starts_with("phantom-token:") && !own_1.starts_with("phantom-token:id:"));
}

#[tokio::test]
async fn a_token_without_the_identity_claim_keeps_a_per_token_session() {
    let app = spawn_app_with(|s| {
        s.env("SESSION_KEY_CLAIM", "email");
    })
    .await;
    app.fake_as
        .script("no-email", Behaviour::Jwt(Claims::valid_for("gus", 600)));
    let outcome = app.get_with_token("no-email").await;
    assert_eq!(outcome.status(), 200);
    assert!(
        !outcome
            .session_key
            .unwrap()
            .starts_with("phantom-token:id:")
    );
}

#[tokio::test]
async fn policies_come_from_claims_through_the_map() {
    let app = spawn_app_with(|s| {
        s.api.config_data = Some(serde_json::json!({
            "apply_policies": ["pol-base"],
            "policy_claim": "scope",
            "policy_map": { "orders:read": "pol-read", "orders:admin": ["pol-admin", "pol-audit"] }
        }));
    })
    .await;
    app.fake_as.script(
        "admin",
        Behaviour::Jwt(claims(
            "hal",
            serde_json::json!({ "scope": "orders:admin openid orders:read" }),
        )),
    );
    let outcome = app.get_with_token("admin").await;
    let session = app.gateway.stored(&outcome.session_key.unwrap()).unwrap();
    assert_eq!(
        session.apply_policies,
        vec!["pol-base", "pol-admin", "pol-audit", "pol-read"]
    );
}

#[tokio::test]
async fn chosen_claims_reach_metadata_and_upstream_headers_via_tyk_meta() {
    let app = spawn_app_with(|s| {
        s.env("METADATA_CLAIMS", "tenant");
        s.api.config_data = Some(
            serde_json::json!({ "metadata_claims": { "email": "user_email", "tier": "tier" } }),
        );
        s.api.inject_headers = vec![
            ("X-User-Email".into(), "$tyk_meta.user_email".into()),
            ("X-Tier".into(), "$tyk_meta.tier".into()),
            ("X-Subject".into(), "$tyk_meta.sub".into()),
        ];
    })
    .await;
    app.fake_as.script(
        "rich",
        Behaviour::Jwt(claims(
            "ivy",
            serde_json::json!({ "email": "ivy@example.com", "tier": 2, "tenant": "acme" }),
        )),
    );
    let outcome = app.get_with_token("rich").await;
    let upstream = outcome.upstream.as_ref().unwrap();
    assert_eq!(upstream.header("X-User-Email"), Some("ivy@example.com"));
    assert_eq!(upstream.header("X-Tier"), Some("2"));
    assert_eq!(upstream.header("X-Subject"), Some("ivy"));
    let session = app
        .gateway
        .stored(outcome.session_key.as_ref().unwrap())
        .unwrap();
    assert_eq!(
        session.metadata.get("user_email").map(String::as_str),
        Some("ivy@example.com")
    );
    assert!(
        !session.metadata.contains_key("tenant"),
        "the API's list replaces the global one"
    );
    assert!(!session.metadata.contains_key("phantom_jwt"));
}

#[tokio::test]
async fn a_comma_inside_a_granted_scope_is_part_of_that_scope() {
    let app = spawn_app().await;
    app.fake_as.script(
        "comma-scope",
        Behaviour::Jwt(claims(
            "jo",
            serde_json::json!({ "scope": "openid orders:x,orders:admin" }),
        )),
    );
    let admin = gateway_with(
        &app,
        "admin-api",
        serde_json::json!({ "required_scopes": ["orders:admin"] }),
    )
    .await;
    let outcome = admin
        .request(ClientRequest::get("/").bearer("comma-scope"))
        .await;
    assert_eq!(outcome.status(), 403, "{:?}", outcome.client);
    assert_eq!(outcome.response().body, template_body("Insufficient scope"));
}

#[tokio::test]
async fn analytics_alias_and_tags_identify_the_caller() {
    let app = spawn_app_with(|s| {
        s.env("ANALYTICS_TAG_CLAIMS", "tenant,groups,note");
    })
    .await;
    app.fake_as.script(
        "analytics",
        Behaviour::Jwt(claims(
            "kim",
            serde_json::json!({
                "email": "kim@example.com",
                "tenant": "acme",
                "groups": ["ops", "dev"],
                "note": "line\nbreak",
            }),
        )),
    );
    let outcome = app.get_with_token("analytics").await;
    assert_eq!(outcome.status(), 200);
    let session = app.gateway.stored(&outcome.session_key.unwrap()).unwrap();
    assert_eq!(session.alias, "kim", "sub by default");
    assert_eq!(session.tags, ["tenant:acme", "groups:ops", "groups:dev"]);

    // Keyed by a claim: the alias is that identity.
    let by_email = gateway_with(
        &app,
        "email-api",
        serde_json::json!({ "session_key_claim": "email" }),
    )
    .await;
    let outcome = by_email
        .request(ClientRequest::get("/").bearer("analytics"))
        .await;
    let session = by_email.stored(&outcome.session_key.unwrap()).unwrap();
    assert_eq!(session.alias, "kim@example.com");
}

#[tokio::test]
async fn the_analytics_alias_claim_can_be_chosen() {
    let app = spawn_app_with(|s| {
        s.env("ANALYTICS_ALIAS_CLAIM", "client_id");
    })
    .await;
    app.fake_as
        .script("by-client", Behaviour::Jwt(Claims::valid_for("lee", 600)));
    let outcome = app.get_with_token("by-client").await;
    let session = app.gateway.stored(&outcome.session_key.unwrap()).unwrap();
    assert_eq!(session.alias, "web-app");
    assert!(session.tags.is_empty());
}
