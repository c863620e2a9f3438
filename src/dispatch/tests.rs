//! The service's handler, called directly: an object in, the object Tyk gets
//! back out, with no gRPC in between. The authorization server is a loopback
//! listener started here, answering as Curity does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::MapSource;
use crate::metrics::Metrics;
use crate::server::Drain;
use crate::tyk::pb::{MiniRequestObject, ReturnOverrides};

/// A loopback authorization server answering every introspection with one
/// JWT, with the headers a real one sends (200, `application/jwt`,
/// `Cache-Control: no-store`, `Pragma: no-cache`). Records each request's
/// form body.
struct LoopbackAs {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl LoopbackAs {
    async fn start(jwt: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/oauth/v2/oauth-introspect",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, jwt.clone(), Arc::clone(&seen)));
            }
        });
        LoopbackAs { url, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Serves the requests of one connection, in order.
async fn answer(mut stream: TcpStream, jwt: String, bodies: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let (head, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = request.parse(&buf) {
                let length = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                break (head, length);
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        while buf.len() < head + length {
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        }
        let body: Vec<u8> = buf.drain(..head + length).skip(head).collect();
        bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/jwt\r\nCache-Control: no-store\r\n\
             Pragma: no-cache\r\nContent-Length: {}\r\n\r\n{jwt}",
            jwt.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn service(introspection_url: &str) -> DispatchService {
    let config = MapSource::new(&[
        ("INTROSPECTION_URL", introspection_url),
        ("INTROSPECTION_ALLOW_HTTP", "true"),
        ("CLIENT_ID", "gateway"),
        ("CLIENT_SECRET", "gateway-secret"),
        ("SESSION_KEY_SECRET", "session-key-secret"),
        ("REALM", "orders"),
    ])
    .parse()
    .unwrap();
    let authz = Authorizer::new(&config, Arc::new(Metrics::new())).unwrap();
    DispatchService::new(Arc::new(authz), &config)
}

fn object(hook: HookType, name: &str, authorization: Option<&str>) -> Object {
    Object {
        hook_type: hook as i32,
        hook_name: name.into(),
        request: Some(MiniRequestObject {
            headers: authorization
                .map(|value| ("Authorization".to_owned(), value.to_owned()))
                .into_iter()
                .collect(),
            url: "/orders/1?x=1".into(),
            method: "DELETE".into(),
            raw_body: bytes::Bytes::from_static(b"\x00\x01body"),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec: HashMap::from([
            ("APIID".to_owned(), "orders-api".to_owned()),
            ("OrgID".to_owned(), "acme".to_owned()),
        ]),
        ..Default::default()
    }
}

fn auth_check(authorization: Option<&str>) -> Object {
    object(HookType::CustomKeyCheck, "PhantomAuthCheck", authorization)
}

fn overrides(object: &Object) -> &ReturnOverrides {
    object
        .request
        .as_ref()
        .and_then(|r| r.return_overrides.as_ref())
        .unwrap()
}

fn set_header(object: &Object) -> Option<&str> {
    object
        .request
        .as_ref()
        .and_then(|r| r.set_headers.get("Authorization"))
        .map(String::as_str)
}

#[tokio::test]
async fn a_request_without_credentials_is_challenged_without_asking_the_as() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    for header in [None, Some("Basic Z2F0ZXdheTpzZWNyZXQ=")] {
        let mut object = auth_check(header);
        service.handle(&mut object, None).await;
        let o = overrides(&object);
        assert_eq!(o.response_code, 401, "{header:?}");
        assert_eq!(o.headers["WWW-Authenticate"], "Bearer realm=\"orders\"");
        assert_eq!(o.response_error, "Authorization required");
        assert!(!o.override_error, "Tyk's template and AuthFailure");
        assert!(object.session.is_none());
    }
    assert!(the_as.bodies().is_empty());
}

#[tokio::test]
async fn a_malformed_token_is_refused_without_asking_the_as() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    for header in ["Bearer", "Bearer two tokens", "Bearer not\"b64token"] {
        let mut object = auth_check(Some(header));
        service.handle(&mut object, None).await;
        let o = overrides(&object);
        assert_eq!(o.response_code, 401, "{header:?}");
        assert_eq!(
            o.headers["WWW-Authenticate"],
            "Bearer realm=\"orders\", error=\"invalid_token\""
        );
        assert_eq!(o.response_error, "Invalid access token");
        assert!(set_header(&object).is_none());
    }
    assert!(the_as.bodies().is_empty());
}

#[tokio::test]
async fn invalid_config_data_is_a_500_without_asking_the_as() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    for config_data in ["{not json", r#"{"required_scope":["a"]}"#] {
        let mut object = auth_check(Some("Bearer opaque-token"));
        object
            .spec
            .insert("config_data".into(), config_data.to_owned());
        service.handle(&mut object, None).await;
        let o = overrides(&object);
        assert_eq!(o.response_code, 500, "{config_data}");
        assert!(o.override_error, "raw JSON, no AuthFailure");
        assert_eq!(
            o.response_body,
            "{\n    \"error\": \"Invalid API configuration\"\n}"
        );
        assert_eq!(o.headers["Content-Type"], "application/json");
    }
    assert!(the_as.bodies().is_empty());
}

#[tokio::test]
async fn once_the_grace_period_is_over_calls_are_answered_503() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    service.stop_in_flight();
    for hook in [
        object(HookType::CustomKeyCheck, "", Some("Bearer opaque-token")),
        object(
            HookType::PostKeyAuth,
            INJECT_JWT_HOOK,
            Some("Bearer opaque-token"),
        ),
    ] {
        let mut object = hook;
        service.handle(&mut object, None).await;
        let o = overrides(&object);
        assert_eq!(o.response_code, 503);
        assert_eq!(o.headers["Retry-After"], "5");
        assert_eq!(
            o.response_body,
            "{\n    \"error\": \"Temporarily unavailable\"\n}"
        );
    }
    assert!(the_as.bodies().is_empty());
}

#[tokio::test]
async fn other_hooks_get_their_object_back_unchanged() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    for (hook, name) in [
        (HookType::Pre, "PhantomAuthCheck"),
        (HookType::Post, "AddHeaders"),
        (HookType::PostKeyAuth, "SomeOtherPostKeyAuth"),
        (HookType::Response, "Rewrite"),
        (HookType::Unknown, ""),
    ] {
        let mut object = object(hook, name, Some("Bearer opaque-token"));
        object.metadata.insert("tier".into(), "gold".into());
        let sent = object.clone();
        service.handle(&mut object, None).await;
        assert_eq!(object, sent, "{hook:?} {name}");
    }
    assert!(the_as.bodies().is_empty());
}

#[tokio::test]
async fn an_active_token_is_allowed_with_its_jwt_and_a_session_for_this_api() {
    let exp = unix_now().as_secs() + 600;
    let jwt = crate::jwt::for_test(&json!({
        "sub": "alice", "client_id": "web", "scope": "orders:read", "exp": exp,
    }));
    let the_as = LoopbackAs::start(jwt.clone()).await;
    let service = service(&the_as.url);

    let mut object = auth_check(Some("Bearer opaque-token-1"));
    service.handle(&mut object, None).await;

    let bearer = format!("Bearer {jwt}");
    assert_eq!(set_header(&object), Some(bearer.as_str()));
    assert_eq!(overrides(&object).response_code, -1, "no override");
    let session = object.session.as_ref().expect("a session");
    assert_eq!(session.expires, i64::try_from(exp).unwrap());
    assert_eq!(
        session.access_rights.keys().collect::<Vec<_>>(),
        ["orders-api"]
    );
    assert_eq!(session.alias, "alice");
    assert!(object.metadata["token"].starts_with("phantom-token:"));
    assert_eq!(object.metadata["sub"], "alice");
    assert_eq!(object.metadata["client_id"], "web");
    let request = object.request.as_ref().unwrap();
    assert_eq!(
        (request.url.as_str(), request.method.as_str()),
        ("/orders/1?x=1", "DELETE")
    );
    assert_eq!(the_as.bodies(), ["token=opaque-token-1"]);

    // The same token again: from the cache. Curity's post_key_auth hook,
    // after Tyk's id_extractor skipped the auth hook: the cached JWT.
    let mut again = auth_check(Some("Bearer opaque-token-1"));
    service.handle(&mut again, None).await;
    assert_eq!(set_header(&again), Some(bearer.as_str()));
    let mut post = object_for_post_key_auth("Bearer opaque-token-1");
    service.handle(&mut post, None).await;
    assert_eq!(set_header(&post), Some(bearer.as_str()));
    assert!(post.session.is_none());
    assert_eq!(the_as.bodies().len(), 1, "introspected once");
}

#[tokio::test]
async fn post_key_auth_leaves_a_request_that_carries_the_jwt_already() {
    let the_as = LoopbackAs::start(String::new()).await;
    let service = service(&the_as.url);
    let jwt = crate::jwt::for_test(&json!({"sub": "alice"}));
    let mut object = object_for_post_key_auth(&format!("Bearer {jwt}"));
    let sent = object.clone();
    service.handle(&mut object, None).await;
    assert_eq!(object, sent);
    assert!(the_as.bodies().is_empty());
}

fn object_for_post_key_auth(authorization: &str) -> Object {
    object(HookType::PostKeyAuth, INJECT_JWT_HOOK, Some(authorization))
}
