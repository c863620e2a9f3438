use super::*;

/// The error of a request to a loopback server that runs `serve` on the
/// one connection it accepts.
async fn failed_request<F>(serve: impl FnOnce(tokio::net::TcpStream) -> F) -> reqwest::Error
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = tokio::spawn(
        client
            .post(format!("http://{addr}/introspect"))
            .body("token=abc")
            .send(),
    );
    let (stream, _) = listener.accept().await.unwrap();
    tokio::spawn(serve(stream));
    request.await.unwrap().unwrap_err()
}

#[tokio::test]
async fn a_refused_connection_was_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}/introspect"))
        .send()
        .await
        .unwrap_err();
    assert!(request_unsent(&error), "{error:?}");
    assert!(matches!(
        transport_error(error),
        IntrospectError::Unreachable(_)
    ));
}

/// Reads until the whole request (ending with the form body) is in.
async fn read_request(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"token=abc") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_reset_after_the_request_was_read_was_sent() {
    let error = failed_request(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.set_zero_linger();
    })
    .await;
    assert!(!request_unsent(&error), "{error:?}");
}

#[tokio::test]
async fn a_close_after_the_request_was_read_was_sent() {
    // hyper: "connection closed before message completed".
    let error = failed_request(|mut stream| async move {
        read_request(&mut stream).await;
    })
    .await;
    assert!(!request_unsent(&error), "{error:?}");
}

#[test]
fn basic_credentials_follow_rfc6749_vectors() {
    assert_eq!(
        basic_credentials("gateway", "s3cr3t"),
        "Basic Z2F0ZXdheTpzM2NyM3Q="
    );
    assert_eq!(
        basic_credentials("gateway", "a+b:c d%"),
        "Basic Z2F0ZXdheTphJTJCYiUzQWMrZCUyNQ=="
    );
    assert!(basic_credentials("gateway", "s3cr3t").is_sensitive());
    assert!(!format!("{:?}", basic_credentials("gateway", "s3cr3t")).contains("Z2F0"));
}

#[test]
fn the_token_is_form_encoded() {
    assert_eq!(form_body("abc"), "token=abc");
    assert_eq!(form_body("a+b/c=="), "token=a%2Bb%2Fc%3D%3D");
}

fn directives(max_age: Option<u64>, no_store: bool) -> CacheDirectives {
    CacheDirectives {
        max_age: max_age.map(Duration::from_secs),
        no_store,
    }
}

#[test]
fn cache_control_gives_the_smallest_max_age_and_any_no_store() {
    assert_eq!(cache_control("max-age=300"), directives(Some(300), false));
    assert_eq!(
        cache_control("public, MAX-AGE=60, must-revalidate, max-age=90"),
        directives(Some(60), false)
    );
    assert_eq!(cache_control("max-age=\"90\""), directives(Some(90), false));
    assert_eq!(cache_control("no-store"), directives(None, true));
    assert_eq!(
        cache_control("max-age=300, no-cache"),
        directives(Some(300), true)
    );
    assert_eq!(cache_control("private"), directives(None, false));
    assert_eq!(cache_control("max-age=soon"), directives(None, false));
    assert_eq!(cache_control("max-age=-1"), directives(None, false));
}

#[test]
fn only_max_age_limits_the_cache_unless_no_store_is_honoured() {
    let no_store = cache_control("no-store, private");
    assert_eq!(no_store.limit(false), None);
    assert_eq!(no_store.limit(true), Some(Duration::ZERO));
    let capped = cache_control("no-cache, max-age=60");
    assert_eq!(capped.limit(false), Some(Duration::from_secs(60)));
    assert_eq!(capped.limit(true), Some(Duration::ZERO));
    assert_eq!(
        cache_control("max-age=0").limit(false),
        Some(Duration::ZERO),
        "max-age=0 still means do not cache"
    );
}

#[test]
fn pragma_no_cache_is_read_in_any_case_among_other_directives() {
    assert!(pragma_no_cache("no-cache"));
    assert!(pragma_no_cache("x-thing, No-Cache "));
    assert!(!pragma_no_cache("no-cache-please"));
    assert!(!pragma_no_cache(""));
}

#[test]
fn ok_bodies_are_classified() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE5MDAwMDAwMDB9.c2ln";
    match classify_ok_body(
        format!("{jwt}\r\n").as_bytes(),
        CacheDirectives::default(),
        "username",
    ) {
        Ok(Introspection::Active(active)) => {
            assert_eq!(active.jwt, jwt);
            assert_eq!(active.claims.exp, Some(1_900_000_000));
        }
        other => panic!("expected active, got {other:?}"),
    }
    assert_eq!(
        classify_ok_body(
            br#"{"active":false}"#,
            CacheDirectives::default(),
            "username"
        ),
        Ok(Introspection::Inactive)
    );
    for fault in [
        &br#"{"active":true,"sub":"x"}"#[..],
        br#"{"active":"false"}"#,
        br#"{"error":"server_error"}"#,
        b"<html>oops</html>",
        b"",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(
                classify_ok_body(fault, CacheDirectives::default(), "username"),
                Err(IntrospectError::NotJwt(_))
            ),
            "{:?}",
            String::from_utf8_lossy(fault)
        );
    }
}
