//! Hook routing: every CustomKeyCheck is decided, Curity's post_key_auth hook
//! works without a second introspection, every other hook is echoed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tyk_phantom_token::pb::dispatcher_client::DispatcherClient;
use tyk_phantom_token::pb::{Event, HookType, MiniRequestObject, Object, ReturnOverrides};

use crate::support::fake_as;
use crate::support::*;

fn object(hook: HookType, name: &str, authorization: &str) -> Object {
    Object {
        hook_type: hook as i32,
        hook_name: name.into(),
        request: Some(MiniRequestObject {
            headers: [("Authorization".to_owned(), authorization.to_owned())].into(),
            url: "/orders/1?x=1".into(),
            method: "DELETE".into(),
            raw_body: Bytes::from_static(b"\x00\x01body"),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: [("APIID".to_owned(), "orders-api".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_auth_hook_is_decided_whatever_its_name() {
    for name in ["", "MyCustomAuth"] {
        let app = spawn_app_with(|s| s.api.auth_check = name.to_owned()).await;
        app.fake_as.script(
            "named-token",
            Behaviour::Jwt(Claims::valid_for("rita", 600)),
        );
        assert_eq!(
            app.get_with_token("named-token").await.status(),
            200,
            "hook name {name:?}"
        );
        assert_eq!(
            app.send(ClientRequest::get("/x")).await.status(),
            401,
            "hook name {name:?}"
        );
    }
}

#[tokio::test]
async fn other_hooks_get_their_object_back_unchanged() {
    let app = spawn_app().await;
    app.fake_as
        .script("tok", Behaviour::Jwt(Claims::valid_for("sam", 600)));
    let mut client = DispatcherClient::new(app.channel().await);
    for (hook, name) in [
        (HookType::Pre, "PhantomAuthCheck"),
        (HookType::Post, "Anything"),
        (HookType::PostKeyAuth, "SomeOtherHook"),
        (HookType::Response, "InjectJwtPostKeyAuth"),
        (HookType::Unknown, "PhantomAuthCheck"),
    ] {
        let sent = object(hook, name, "Bearer tok");
        let reply = client.dispatch(sent.clone()).await.unwrap().into_inner();
        assert_eq!(reply, sent, "{hook:?} {name}");
    }
    let mut unknown = object(HookType::Pre, "x", "Bearer tok");
    unknown.hook_type = 42;
    assert_eq!(
        client.dispatch(unknown.clone()).await.unwrap().into_inner(),
        unknown
    );
    assert_eq!(app.fake_as.calls(), 0);
}

#[tokio::test]
async fn curitys_manifest_works_and_introspects_once() {
    let app =
        spawn_app_with(|s| s.api.post_key_auth = vec!["InjectJwtPostKeyAuth".to_owned()]).await;
    app.fake_as.script(
        "curity-token",
        Behaviour::Jwt(Claims::valid_for("tess", 600)),
    );
    for _ in 0..3 {
        let outcome = app.get_with_token("curity-token").await;
        assert_eq!(outcome.status(), 200);
        let jwt = app.fake_as.jwt_for("curity-token").unwrap();
        assert_eq!(
            outcome.upstream.unwrap().header("Authorization"),
            Some(format!("Bearer {jwt}").as_str())
        );
    }
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn the_post_key_auth_hook_swaps_a_still_opaque_token_from_the_cache() {
    // Tyk's id_extractor skipped the auth hook: the request still carries the
    // opaque token when post_key_auth runs.
    let app = spawn_app().await;
    app.fake_as.script(
        "cached-token",
        Behaviour::Jwt(Claims::valid_for("uma", 600)),
    );
    assert_eq!(app.get_with_token("cached-token").await.status(), 200);
    let jwt = app.fake_as.jwt_for("cached-token").unwrap();

    let mut client = DispatcherClient::new(app.channel().await);
    let reply = client
        .dispatch(object(
            HookType::PostKeyAuth,
            "InjectJwtPostKeyAuth",
            "Bearer cached-token",
        ))
        .await
        .unwrap()
        .into_inner();
    let request = reply.request.unwrap();
    assert_eq!(
        request.set_headers["Authorization"],
        format!("Bearer {jwt}")
    );
    assert_eq!(request.return_overrides.unwrap().response_code, -1);
    assert_eq!(request.url, "/orders/1?x=1");
    assert_eq!(&request.raw_body[..], b"\x00\x01body");
    assert_eq!(app.fake_as.calls(), 1, "no second introspection");

    // A request already carrying the JWT is left alone.
    let sent = object(
        HookType::PostKeyAuth,
        "InjectJwtPostKeyAuth",
        &format!("Bearer {jwt}"),
    );
    assert_eq!(
        client.dispatch(sent.clone()).await.unwrap().into_inner(),
        sent
    );
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn a_refreshed_jwt_with_an_earlier_exp_ends_its_entry_and_is_never_forwarded_expired() {
    let app = spawn_app_with(|s| {
        s.env("REVALIDATE_AFTER_SECONDS", "1")
            .env("CLOCK_SKEW_SECONDS", "0");
    })
    .await;
    let mut shorter = Claims::valid_for("una", 0);
    shorter.exp = Some(fake_as::now() + 3);
    app.fake_as.script_sequence(
        "shortened",
        vec![
            Behaviour::Jwt(Claims::valid_for("una", 600)),
            Behaviour::Jwt(shorter),
            Behaviour::Jwt(Claims::valid_for("una", 600)),
        ],
    );
    assert_eq!(app.get_with_token("shortened").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Served from the cache; the background revalidation brings the JWT
    // that expires sooner.
    assert_eq!(app.get_with_token("shortened").await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while app.fake_as.calls() < 2 {
        assert!(Instant::now() < deadline, "the revalidation never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Past that JWT's exp: Tyk's id_extractor skipped the auth hook, and
    // post_key_auth must not forward the expired JWT.
    let mut client = DispatcherClient::new(app.channel().await);
    let reply = client
        .dispatch(object(
            HookType::PostKeyAuth,
            "InjectJwtPostKeyAuth",
            "Bearer shortened",
        ))
        .await
        .unwrap()
        .into_inner();
    let forwarded = reply.request.unwrap().set_headers["Authorization"].clone();
    assert_eq!(
        app.fake_as.calls(),
        3,
        "asked again, not served from the cache"
    );
    let fresh = app.fake_as.jwt_for("shortened").unwrap();
    assert_eq!(forwarded, format!("Bearer {fresh}"));
    assert_eq!(app.get_with_token("shortened").await.status(), 200);
}

#[tokio::test]
async fn the_post_key_auth_hook_decides_an_opaque_token_it_has_never_seen() {
    let app = spawn_app().await;
    app.fake_as.script("unseen", Behaviour::NoContent);
    let mut client = DispatcherClient::new(app.channel().await);
    let reply = client
        .dispatch(object(
            HookType::PostKeyAuth,
            "InjectJwtPostKeyAuth",
            "Bearer unseen",
        ))
        .await
        .unwrap()
        .into_inner();
    let overrides = reply.request.unwrap().return_overrides.unwrap();
    assert_eq!(overrides.response_code, 401);
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn dispatch_event_answers_an_empty_reply() {
    let app = spawn_app_with(|s| s.api.event_handler = Some("PhantomEvents".to_owned())).await;
    let mut client = DispatcherClient::new(app.channel().await);
    let payload = r#"{"message":{"Type":"AuthFailure","Meta":{"Key":"secret-token"}},"handler_name":"PhantomEvents"}"#;
    let reply = client
        .dispatch_event(Event {
            payload: payload.to_owned(),
        })
        .await
        .expect("DispatchEvent answers OK");
    assert_eq!(reply.into_inner(), tyk_phantom_token::pb::EventReply {});
    let garbage = client
        .dispatch_event(Event {
            payload: "not json".into(),
        })
        .await;
    assert!(garbage.is_ok());
    // Through the gateway: a 401 fires AuthFailure, which reaches the plugin.
    let outcome = app.send(ClientRequest::get("/x")).await;
    assert_eq!(outcome.events, vec!["AuthFailure".to_owned()]);
}
