//! Hostile requests end to end: oversized and malformed tokens, control and
//! non-ASCII characters, odd schemes, hundreds of headers, a huge
//! `config_data`, binary bodies and random bytes in the URL.
//!
//! Each gets the plugin's answer with the right status and challenge, never a
//! gRPC failure (the gateway would turn that into `403 Key not authorised`)
//! and never a dropped connection; requests without a usable token never reach
//! the authorization server.

use crate::support::fake_tyk::{Gateway, template_body};
use crate::support::*;

const BARE: &str = "Bearer realm=\"api\"";
const INVALID: &str = "Bearer realm=\"api\", error=\"invalid_token\"";
const NO_CREDENTIALS: &str = "Authorization required";
const INVALID_TOKEN: &str = "Invalid access token";

/// Deterministic noise (xorshift64*), so a failure reproduces.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every byte percent-encoded, so arbitrary bytes fit in a request target.
fn percent_encoded(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A 401 from the plugin through Tyk's error template, the upstream not
/// called.
async fn assert_401(app: &TestApp, request: ClientRequest, challenge: &str, message: &str) {
    let shown = format!("{:?}", request.headers);
    let outcome = app.send(request).await;
    let response = outcome
        .client
        .as_ref()
        .unwrap_or_else(|| panic!("the gateway dropped the connection for {shown}"));
    assert_eq!(
        (response.status, response.text()),
        (401, String::from_utf8(template_body(message)).unwrap()),
        "headers {shown}"
    );
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some(challenge),
        "headers {shown}"
    );
    assert!(outcome.upstream.is_none(), "upstream called for {shown}");
    assert_eq!(outcome.events, vec!["AuthFailure".to_owned()]);
}

fn with_authorization(value: &str) -> ClientRequest {
    ClientRequest::get("/orders/api/items").header("Authorization", value)
}

/// The plugin still decides requests normally.
async fn assert_still_serving(app: &TestApp) {
    app.fake_as.script(
        "still-serving",
        Behaviour::Jwt(Claims::valid_for("alive", 600)),
    );
    assert_eq!(app.get_with_token("still-serving").await.status(), 200);
}

#[tokio::test]
async fn oversized_tokens_are_invalid_without_an_as_call() {
    let app = spawn_app().await;
    for len in [4097, 10 * 1024, 64 * 1024, 1 << 20] {
        let token = "A".repeat(len);
        assert_401(
            &app,
            ClientRequest::get("/orders").bearer(&token),
            INVALID,
            INVALID_TOKEN,
        )
        .await;
    }
    // Past the limit the content is not even looked at.
    let junk = format!("{}\u{0}\r\n\"", "x".repeat(10 * 1024));
    assert_401(
        &app,
        with_authorization(&format!("Bearer {junk}")),
        INVALID,
        INVALID_TOKEN,
    )
    .await;
    assert_eq!(app.fake_as.calls(), 0);

    // Exactly at the default limit (4096 bytes) the token is introspected.
    let at_limit = "B".repeat(4096);
    app.fake_as
        .script(&at_limit, Behaviour::Jwt(Claims::valid_for("max", 600)));
    assert_eq!(app.get_with_token(&at_limit).await.status(), 200);
    assert_eq!(app.fake_as.calls_for(&at_limit), 1);
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn control_characters_never_reach_the_as() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("nobody", 600)));
    // Inside or after the token: a malformed token.
    for header in [
        "Bearer abc\u{0}def",
        "Bearer abc\u{0}",
        "Bearer \u{0}abc",
        "Bearer abc\r\nX-Injected: yes",
        "Bearer abc\r",
        "Bearer abc\n",
        "Bearer abc\u{7f}",
        "Bearer \u{1b}[31mabc",
        "Bearer abc\u{8}\u{8}\u{8}xyz",
        "Bearer abc\u{b}",
        "Bearer abc\u{c}",
        "Bearer abc\u{85}",
    ] {
        assert_401(&app, with_authorization(header), INVALID, INVALID_TOKEN).await;
    }
    // Before the scheme, or in place of the blank after it: not a bearer
    // scheme at all.
    for header in [
        "\u{0}Bearer abc",
        "Bearer\u{0}abc",
        "Bearer\r\nabc",
        "Bearer\nabc",
        "\r\nBearer abc",
        "Bearer\u{b}abc",
    ] {
        assert_401(&app, with_authorization(header), BARE, NO_CREDENTIALS).await;
    }
    assert_eq!(app.fake_as.calls(), 0);
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn non_ascii_tokens_and_schemes_never_reach_the_as() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("nobody", 600)));
    for header in [
        "Bearer t\u{f6}k\u{e9}n",
        "Bearer \u{ff41}\u{ff42}\u{ff43}",
        "Bearer abc\u{200b}",
        "Bearer abc\u{202e}fed",
        "Bearer \u{1f600}",
        "Bearer abc\u{fffd}",
        "Bearer \u{a0}abc",
        "Bearer abc\u{3000}def",
    ] {
        assert_401(&app, with_authorization(header), INVALID, INVALID_TOKEN).await;
    }
    for header in [
        "B\u{435}arer abc",
        "Bearer\u{a0}abc",
        "Bearer\u{3000}abc",
        "\u{feff}Bearer abc",
        "\u{1d401}earer abc",
    ] {
        assert_401(&app, with_authorization(header), BARE, NO_CREDENTIALS).await;
    }
    assert_eq!(app.fake_as.calls(), 0);
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn odd_schemes_and_token_shapes_are_denied_without_an_as_call() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("nobody", 600)));
    for header in [
        "Bearer:abc",
        "Bearer,abc",
        "Bearer=abc",
        "Bearerabc",
        "bearer-abc",
        "Negotiate YIIGhgYJKoZIhvcSAQICAQ",
        "Basic dXNlcjpwYXNz",
        "Digest username=\"a\", realm=\"api\"",
        "Token abc",
        "Bearer-Token abc",
        "abc",
    ] {
        assert_401(&app, with_authorization(header), BARE, NO_CREDENTIALS).await;
    }
    for header in [
        "Bearer",
        "bearer \t ",
        "Bearer Bearer abc",
        "Bearer abc def",
        "Bearer abc,def",
        "Bearer \"abc\"",
        "Bearer =abc",
        "Bearer a=b",
        "Bearer abc;",
        "Bearer realm=\"api\"",
        "Bearer ===",
        "Bearer abc\\",
        "Bearer %61%62%63",
    ] {
        assert_401(&app, with_authorization(header), INVALID, INVALID_TOKEN).await;
    }
    // The DPoP scheme without its proof (RFC 9449 §7.1).
    for header in ["DPoP abc", "dpop abc"] {
        assert_401(
            &app,
            with_authorization(header),
            "DPoP realm=\"api\", error=\"invalid_dpop_proof\", algs=\"ES256 ES384 EdDSA RS256 PS256\"",
            "Invalid DPoP proof",
        )
        .await;
    }
    // Tyk passes the first value of a repeated header: that one decides.
    assert_401(
        &app,
        with_authorization("Basic dXNlcjpwYXNz").header("authorization", "Bearer good-token"),
        BARE,
        NO_CREDENTIALS,
    )
    .await;
    assert_eq!(app.fake_as.calls(), 0);
}

#[tokio::test]
async fn lenient_but_valid_spellings_are_accepted() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("lenient", 600)));
    for (header, token) in [
        ("bearer lower-case-scheme", "lower-case-scheme"),
        ("BEARER upper-case-scheme", "upper-case-scheme"),
        ("Bearer\ttab-separated", "tab-separated"),
        ("Bearer \t  mixed-blanks", "mixed-blanks"),
        ("  Bearer surrounding-blanks \t", "surrounding-blanks"),
        ("Bearer AZaz09-._~+/==", "AZaz09-._~+/=="),
    ] {
        let outcome = app.send(with_authorization(header)).await;
        assert_eq!(outcome.status(), 200, "{header:?}: {:?}", outcome.client);
        // The AS was asked about exactly the token, nothing around it.
        assert_eq!(app.fake_as.calls_for(token), 1, "{header:?}");
        let jwt = app.fake_as.jwt_for(token).unwrap();
        assert_eq!(
            outcome.upstream.unwrap().header("Authorization"),
            Some(format!("Bearer {jwt}").as_str())
        );
    }
    assert_eq!(app.fake_as.calls(), 6);
}

#[tokio::test]
async fn blank_authorization_headers_are_missing_credentials() {
    let app = spawn_app().await;
    for header in ["", " ", "          ", "\t", "\t \t", &" ".repeat(10 * 1024)] {
        assert_401(&app, with_authorization(header), BARE, NO_CREDENTIALS).await;
    }
    assert_eq!(app.fake_as.calls(), 0);
}

#[tokio::test]
async fn five_hundred_extra_headers_pass_through_untouched() {
    let app = spawn_app().await;
    app.fake_as.script(
        "many-headers-token",
        Behaviour::Jwt(Claims::valid_for("hydra", 600)),
    );
    let headers: Vec<(String, String)> = (0..500)
        .map(|i| {
            let value = match i % 5 {
                0 => format!("plain-{i}"),
                1 => format!("unicode-{i}-\u{e9}\u{1f600}"),
                2 => format!("ctl-{i}-\u{0}\u{7f}"),
                3 => "v".repeat(1024),
                _ => format!("Bearer decoy-{i}"),
            };
            (format!("X-Extra-{i}"), value)
        })
        .collect();
    let mut request = ClientRequest::get("/orders/api/items").bearer("many-headers-token");
    for (name, value) in &headers {
        request = request.header(name, value);
    }

    let outcome = app.send(request.clone()).await;

    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let upstream = outcome.upstream.unwrap();
    for (name, value) in &headers {
        assert_eq!(upstream.header(name), Some(value.as_str()), "{name}");
    }
    assert_eq!(upstream.headers.len(), headers.len() + 1);
    let jwt = app.fake_as.jwt_for("many-headers-token").unwrap();
    assert_eq!(
        upstream.header("Authorization"),
        Some(format!("Bearer {jwt}").as_str())
    );
    assert_eq!(app.fake_as.calls(), 1);
    // The client's headers are not forwarded to the AS.
    let asked = &app.fake_as.requests()[0];
    assert!(
        asked
            .headers
            .iter()
            .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-extra")),
        "{:?}",
        asked.headers
    );

    // The same headers with a malformed token: denied, AS not asked again.
    let mut bad = request;
    bad.headers[0].1 = "Bearer bad token".to_owned();
    assert_401(&app, bad, INVALID, INVALID_TOKEN).await;
    assert_eq!(app.fake_as.calls(), 1);
}

/// `{"apply_policies": [...]}` serialised to exactly `size` bytes (IDs stay
/// under the 256-byte limit, so only the size can make it invalid).
fn config_data_of_size(size: usize) -> serde_json::Value {
    // `{"apply_policies":[]}`, then each ID adds its quotes and a comma.
    let mut len = r#"{"apply_policies":[]}"#.len();
    let mut ids: Vec<String> = Vec::new();
    while size - len > 260 {
        let id = format!("pol-{:0>196}", ids.len());
        len += id.len() + 2 + usize::from(!ids.is_empty());
        ids.push(id);
    }
    let overhead = 2 + usize::from(!ids.is_empty());
    ids.push("p".repeat(size - len - overhead));
    let value = serde_json::json!({ "apply_policies": ids });
    assert_eq!(value.to_string().len(), size);
    value
}

#[tokio::test]
async fn config_data_over_64_kib_is_an_invalid_api_configuration() {
    let app = spawn_app().await;
    app.fake_as
        .script_default(Behaviour::Jwt(Claims::valid_for("cfg", 600)));
    let gateway = |config: serde_json::Value| {
        Gateway::connect(
            app.addr,
            Api {
                config_data: Some(config),
                ..Api::default()
            },
        )
    };

    let at_limit = gateway(config_data_of_size(64 * 1024)).await;
    let outcome = at_limit
        .request(ClientRequest::get("/").bearer("cfg-token"))
        .await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    assert_eq!(app.fake_as.calls(), 1);

    let deeply_nested = (0..1000).fold(serde_json::json!("x"), |v, _| serde_json::json!([v]));
    for config in [
        config_data_of_size(64 * 1024 + 1),
        config_data_of_size(1 << 20),
        serde_json::json!({ "required_scopes": deeply_nested }),
    ] {
        let api = gateway(config).await;
        for token in ["cfg-token", "other-token"] {
            let outcome = api.request(ClientRequest::get("/").bearer(token)).await;
            let response = outcome.response();
            assert_eq!(response.status, 500);
            assert_eq!(response.body, template_body("Invalid API configuration"));
            assert_eq!(response.header("WWW-Authenticate"), None);
            assert!(outcome.upstream.is_none());
            assert!(outcome.events.is_empty(), "a 5xx is no AuthFailure");
        }
    }
    assert_eq!(app.fake_as.calls(), 1, "an invalid API never asks the AS");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn binary_and_huge_bodies_change_nothing_about_a_denial() {
    let app = spawn_app().await;
    let invalid_utf8: Vec<u8> = vec![
        0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x00, 0x80,
    ];
    let random = noise(1 << 20, 0x9e37_79b9_7f4a_7c15);
    assert!(std::str::from_utf8(&random).is_err());

    for body in [invalid_utf8.clone(), random.clone()] {
        let post = |auth: Option<&str>| {
            let request = ClientRequest::get("/upload")
                .method("POST")
                .header("Content-Type", "application/octet-stream")
                .body(body.clone());
            match auth {
                Some(value) => request.header("Authorization", value),
                None => request,
            }
        };
        assert_401(&app, post(None), BARE, NO_CREDENTIALS).await;
        assert_401(&app, post(Some("Basic dXNlcjpwYXNz")), BARE, NO_CREDENTIALS).await;
        assert_401(&app, post(Some("Bearer bad token")), INVALID, INVALID_TOKEN).await;
        let long = format!("Bearer {}", "t".repeat(5000));
        assert_401(&app, post(Some(&long)), INVALID, INVALID_TOKEN).await;
    }
    assert_eq!(app.fake_as.calls(), 0);

    // A well-formed token the AS calls inactive: one call carrying the token
    // only, never the body.
    app.fake_as.script("inactive-token", Behaviour::NoContent);
    let request = ClientRequest::get("/upload")
        .method("PUT")
        .bearer("inactive-token")
        .body(random);
    assert_401(&app, request, INVALID, INVALID_TOKEN).await;
    assert_eq!(app.fake_as.calls(), 1);
    assert_eq!(app.fake_as.requests()[0].body, "token=inactive-token");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn random_bytes_in_the_path_and_query_are_harmless() {
    let app = spawn_app().await;
    app.fake_as.script(
        "url-token",
        Behaviour::Jwt(Claims::valid_for("walker", 600)),
    );
    let targets = [
        format!(
            "/{}?q={}",
            percent_encoded(&noise(512, 1)),
            percent_encoded(&noise(512, 2))
        ),
        "/orders?%ZZ&&=&a=%00&b=%FF%FE&c=%&d=%%%&e=+&access_token=x".to_owned(),
        "/\u{fc}n\u{ef}/\u{1f600}?q=\u{7f}\u{0}&r=\u{202e}".to_owned(),
        format!("/{}", "a/".repeat(4096)),
        format!("/orders?{}", "k=v&".repeat(2000)),
        "//..//../%2e%2e/%2F?#frag".to_owned(),
    ];
    for target in &targets {
        assert_401(
            &app,
            ClientRequest::get(target).header("Authorization", "Bearer not a token"),
            INVALID,
            INVALID_TOKEN,
        )
        .await;
        assert_401(&app, ClientRequest::get(target), BARE, NO_CREDENTIALS).await;
    }
    assert_eq!(app.fake_as.calls(), 0);

    // With a good token the URL reaches the upstream exactly as sent.
    for target in &targets {
        let outcome = app
            .send(ClientRequest::get(target).bearer("url-token"))
            .await;
        assert_eq!(outcome.status(), 200, "{target:?}: {:?}", outcome.client);
        assert_eq!(&outcome.upstream.unwrap().url, target);
    }
    assert_eq!(app.fake_as.calls(), 1, "cached after the first");
}
