//! Tyk's id_extractor fast path: the gateway caches the session per credential
//! and skips the plugin until `id_extractor_deadline`.

use std::time::Duration;

use crate::support::*;

fn extractor_api(setup: &mut Setup) {
    setup.api.id_extractor_header = Some("Authorization".into());
    setup.api.inject_headers = vec![(
        "Authorization".into(),
        "Bearer $tyk_meta.phantom_jwt".into(),
    )];
    setup.api.config_data = Some(serde_json::json!({ "jwt_in_metadata": true }));
}

#[tokio::test]
async fn the_plugin_is_called_once_until_the_deadline_and_the_jwt_still_flows() {
    let app = spawn_app_with(|s| {
        s.env("CACHE_MAX_TTL_SECONDS", "2");
        extractor_api(s);
    })
    .await;
    app.fake_as
        .script("fast-path", Behaviour::Jwt(Claims::valid_for("jan", 600)));

    let first = app.get_with_token("fast-path").await;
    assert_eq!(first.status(), 200);
    assert!(first.plugin_called);
    let jwt = app.fake_as.jwt_for("fast-path").unwrap();
    let expected = format!("Bearer {jwt}");
    let key = first.session_key.clone().unwrap();
    let session = app.gateway.stored(&key).unwrap();
    let now = crate::support::fake_as::now() as i64;
    assert!(session.id_extractor_deadline > now && session.id_extractor_deadline <= now + 2);

    for _ in 0..5 {
        let hit = app.get_with_token("fast-path").await;
        assert_eq!(hit.status(), 200);
        assert!(!hit.plugin_called, "answered from Tyk's cache");
        assert_eq!(
            hit.upstream.unwrap().header("Authorization"),
            Some(expected.as_str())
        );
    }
    assert_eq!(app.gateway.auth_calls(), 1);

    tokio::time::sleep(Duration::from_millis(2600)).await;
    let after = app.get_with_token("fast-path").await;
    assert_eq!(after.status(), 200);
    assert!(
        after.plugin_called,
        "past the deadline Tyk calls the plugin again"
    );
    assert_eq!(app.gateway.auth_calls(), 2);
}

#[tokio::test]
async fn the_deadline_never_passes_the_tokens_expiry() {
    let app = spawn_app_with(|s| {
        s.env("CLOCK_SKEW_SECONDS", "5");
        extractor_api(s);
    })
    .await;
    let claims = Claims::valid_for("kai", 60);
    let exp = claims.exp.unwrap() as i64;
    app.fake_as.script("short", Behaviour::Jwt(claims));
    let first = app.get_with_token("short").await;
    let session = app.gateway.stored(&first.session_key.unwrap()).unwrap();
    assert!(
        session.id_extractor_deadline <= exp - 5,
        "{} vs exp {exp}",
        session.id_extractor_deadline
    );
    assert!(session.id_extractor_deadline >= exp - 7);
}

#[tokio::test]
async fn without_jwt_in_metadata_curitys_post_hook_swaps_the_jwt_from_the_cache() {
    let app = spawn_app_with(|s| {
        s.api.id_extractor_header = Some("Authorization".into());
        s.api.post_key_auth = vec!["InjectJwtPostKeyAuth".into()];
    })
    .await;
    app.fake_as
        .script("post-hook", Behaviour::Jwt(Claims::valid_for("lou", 600)));
    for n in 0..4 {
        let outcome = app.get_with_token("post-hook").await;
        assert_eq!(outcome.status(), 200);
        assert_eq!(outcome.plugin_called, n == 0);
        let expected = format!("Bearer {}", app.fake_as.jwt_for("post-hook").unwrap());
        assert_eq!(
            outcome.upstream.unwrap().header("Authorization"),
            Some(expected.as_str())
        );
        let session = app
            .gateway
            .stored(outcome.session_key.as_ref().unwrap())
            .unwrap();
        assert!(!session.metadata.contains_key("phantom_jwt"));
    }
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn extractor_misses_answer_400_without_calling_the_plugin() {
    let app = spawn_app_with(extractor_api).await;
    let outcome = app.send(ClientRequest::get("/")).await;
    assert_eq!(outcome.status(), 400);
    assert!(!outcome.plugin_called);
}

#[tokio::test]
async fn with_revalidation_a_revoked_token_stops_working_within_the_bound() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1");
        extractor_api(s);
    })
    .await;
    app.fake_as.script(
        "revoked-later",
        Behaviour::Jwt(Claims::valid_for("rae", 600)),
    );

    let first = app.get_with_token("revoked-later").await;
    assert_eq!(first.status(), 200);
    let session = app.gateway.stored(&first.session_key.unwrap()).unwrap();
    let now = crate::support::fake_as::now() as i64;
    assert!(
        session.id_extractor_deadline <= now + 1,
        "Tyk must come back once the answer is due for revalidation, not at exp: \
         deadline {} at {now}",
        session.id_extractor_deadline
    );

    // Revoked at the AS. Past the bound, Tyk calls the plugin again; that
    // request is still served (and starts the re-introspection), later ones
    // are refused.
    app.fake_as.script("revoked-later", Behaviour::NoContent);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let due = app.get_with_token("revoked-later").await;
    assert!(due.plugin_called, "past the deadline Tyk asks the plugin");
    let mut refused = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let outcome = app.get_with_token("revoked-later").await;
        if outcome.status() == 401 {
            refused = true;
            break;
        }
        assert_eq!(outcome.status(), 200);
    }
    assert!(refused, "the revoked token kept working past the bound");
    assert_eq!(app.fake_as.calls_for("revoked-later"), 2);
}
