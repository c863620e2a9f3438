//! The introspection section: the AS's address, the client's credentials
//! and proxy, and that none of them is ever shown.

use super::*;

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let config = minimal().parse().unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t-value"));

    let err = minimal()
        .with(ENV_CLIENT_SECRET_FILE, "/run/secrets/client")
        .parse()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t-value"));
    assert!(err.to_string().contains("both set"));
}

#[test]
fn client_secret_file_is_read_and_its_trailing_newline_dropped() {
    let config = minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/run/secrets/client")
        .with_file("/run/secrets/client", "from-file\n")
        .parse()
        .unwrap();
    assert_eq!(
        config
            .introspection
            .client_secret
            .as_ref()
            .unwrap()
            .expose(),
        "from-file"
    );
}

#[test]
fn unreadable_or_empty_secret_file_is_reported() {
    let missing = minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/nope")
        .problems();
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with("CLIENT_SECRET_FILE=\"/nope\": cannot read the file"),
        "{missing:?}"
    );

    let empty = minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/empty")
        .with_file("/empty", "\n")
        .problems();
    assert_eq!(
        empty,
        vec!["CLIENT_SECRET_FILE=\"/empty\": the file is empty".to_owned()]
    );
}

#[test]
fn plain_http_introspection_needs_an_explicit_opt_in() {
    let problems = minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("INTROSPECTION_ALLOW_HTTP=true"),
        "{problems:?}"
    );
    let config = minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .with(ENV_INTROSPECTION_ALLOW_HTTP, "true")
        .parse()
        .unwrap();
    assert_eq!(config.introspection.url.scheme(), "http");
}

/// Refused or accepted, plain http:// is described the same way, as the
/// README and .env.example do: what crosses in clear, and the variable.
#[test]
fn plain_http_is_described_alike_when_refused_and_when_accepted() {
    const IN_CLEAR: &str = "tokens and client credentials cross the network in clear";
    let refused = minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .problems();
    assert!(refused[0].contains(IN_CLEAR), "{refused:?}");
    assert!(refused[0].contains("use https://"), "{refused:?}");

    let accepted = minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .with(ENV_INTROSPECTION_ALLOW_HTTP, "true")
        .parse()
        .unwrap();
    let note = accepted.introspection.plain_http_note().unwrap();
    assert!(note.contains(IN_CLEAR), "{note}");
    assert!(note.contains("INTROSPECTION_ALLOW_HTTP=true"), "{note}");

    let secure = minimal().parse().unwrap();
    assert_eq!(secure.introspection.plain_http_note(), None);
}

/// The comment above INTROSPECTION_URL in .env.example names the opt-in, so
/// a user who writes http:// there learns why start-up stops.
#[test]
fn env_example_names_the_opt_in_next_to_the_introspection_url() {
    let example = include_str!("../../../.env.example");
    let lines: Vec<&str> = example.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with("INTROSPECTION_URL="))
        .unwrap();
    let comment: String = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('#'))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        comment.contains("INTROSPECTION_ALLOW_HTTP=true"),
        "{comment}"
    );
    assert!(comment.contains("in clear"), "{comment}");
}

#[test]
fn credentials_in_a_rejected_url_are_masked_in_the_message() {
    let problems = minimal()
        .with(
            ENV_INTROSPECTION_URL,
            "https://gateway:Pw-9f8e7d@idsvr.example.com/introspect",
        )
        .problems();
    assert_eq!(problems.len(), 1);
    assert!(!problems[0].contains("Pw-9f8e7d"), "{problems:?}");
    assert!(
        problems[0].contains("https://***@idsvr.example.com/introspect"),
        "{problems:?}"
    );
}

#[test]
fn introspection_proxy_is_off_unless_set_and_must_be_a_plain_proxy_url() {
    assert_eq!(minimal().parse().unwrap().introspection.proxy, None);
    for good in [
        "http://proxy.internal:3128",
        "https://proxy.internal",
        "http://user:pa%3Ass@10.0.0.1:8080/",
    ] {
        let config = minimal()
            .with(ENV_INTROSPECTION_PROXY, good)
            .parse()
            .unwrap();
        let proxy = config.introspection.proxy.expect(good);
        assert_eq!(
            proxy.url().as_str().trim_end_matches('/'),
            good.trim_end_matches('/')
        );
    }
    for bad in [
        "proxy.internal:3128",
        "socks5://proxy.internal:1080",
        "http://",
        "http://proxy.internal:3128/path",
        "http://proxy.internal:3128/?q=1",
        "not a url",
    ] {
        let problems = minimal().with(ENV_INTROSPECTION_PROXY, bad).problems();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(
            problems[0].starts_with("INTROSPECTION_PROXY="),
            "{problems:?}"
        );
    }
}

#[test]
fn proxy_credentials_are_never_shown() {
    let config = minimal()
        .with(
            ENV_INTROSPECTION_PROXY,
            "http://user:Pw-4e5f@proxy.internal:3128",
        )
        .parse()
        .unwrap();
    let proxy = config.introspection.proxy.clone().unwrap();
    for shown in [
        proxy.to_string(),
        format!("{proxy:?}"),
        format!("{config:?}"),
    ] {
        assert!(!shown.contains("Pw-4e5f"), "{shown}");
    }
    assert!(
        proxy.to_string().contains("***@proxy.internal:3128"),
        "{proxy}"
    );
    let problems = minimal()
        .with(ENV_INTROSPECTION_PROXY, "ftp://user:Pw-4e5f@proxy.internal")
        .problems();
    assert!(!problems[0].contains("Pw-4e5f"), "{problems:?}");
}

#[test]
fn the_issuer_stands_in_for_the_introspection_url_until_discovery() {
    let config = minimal()
        .without(ENV_INTROSPECTION_URL)
        .with(ENV_ISSUER, "https://as.example.com/realms/main")
        .parse()
        .unwrap();
    assert!(config.introspection.any_as.discover_introspection_url);
    assert_eq!(
        config.introspection.url.as_str(),
        "https://as.example.com/realms/main"
    );
    // Set, the URL wins and is not discovered.
    let config = minimal()
        .with(ENV_ISSUER, "https://as.example.com/realms/main")
        .parse()
        .unwrap();
    assert!(!config.introspection.any_as.discover_introspection_url);
    assert_eq!(
        config.introspection.url.as_str(),
        "https://idsvr.example.com/oauth/v2/oauth-introspect"
    );
    // Problems of the any-AS settings are reported with the others.
    let problems = minimal()
        .with(ENV_INTROSPECTION_ACCEPT, "application/json")
        .with(ENV_TIMEOUT_SECONDS, "0")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn private_key_jwt_needs_no_client_secret_but_then_a_session_key_secret() {
    let pkjwt = || {
        minimal()
            .without(ENV_CLIENT_SECRET)
            .with(ENV_CLIENT_AUTH_METHOD, "private_key_jwt")
            .with(ENV_CLIENT_ASSERTION_KEY_FILE, "/keys/client.pem")
    };
    let config = pkjwt()
        .with(ENV_SESSION_KEY_SECRET, "own-session-secret")
        .parse()
        .unwrap();
    assert!(config.introspection.client_secret.is_none());
    assert_eq!(config.session.key_secret.expose(), "own-session-secret");
    assert!(!config.session.key_secret_is_client_secret);

    let problems = pkjwt().problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("SESSION_KEY_SECRET is required when no client secret is set"),
        "{problems:?}"
    );

    // Other methods still need the secret.
    let problems = minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_AUTH_METHOD, "client_secret_post")
        .with(ENV_SESSION_KEY_SECRET, "own-session-secret")
        .problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("CLIENT_SECRET (or CLIENT_SECRET_FILE) is required"));
}

/// Every problem `source` gives, joined, and the password it must not show.
fn problems_without(source: MapSource, password: &str) -> String {
    let problems = source.problems().join("; ");
    assert!(!problems.contains(password), "{problems}");
    problems
}

#[test]
fn issuer_credentials_are_masked_in_start_up_errors() {
    const PASSWORD: &str = "Pw-issuer-31c9";
    let issuer = format!("https://gateway:{PASSWORD}@as.example.com/realms/main");
    // Beside INTROSPECTION_URL, and standing in for it (read by two sections).
    for source in [
        minimal().with(ENV_ISSUER, &issuer),
        minimal()
            .without(ENV_INTROSPECTION_URL)
            .with(ENV_ISSUER, &issuer),
    ] {
        let problems = problems_without(source, PASSWORD);
        assert!(
            problems.contains("ISSUER=\"https://***@as.example.com/realms/main\""),
            "{problems}"
        );
    }
    // Plain http:// is refused with its own message; masked there too.
    let problems = problems_without(
        minimal().with(
            ENV_ISSUER,
            &format!("http://gateway:{PASSWORD}@as.example.com"),
        ),
        PASSWORD,
    );
    assert!(problems.contains("ISSUER="), "{problems}");
}

#[test]
fn jwks_url_credentials_are_masked_in_start_up_errors() {
    const PASSWORD: &str = "Pw-jwks-77ad";
    let problems = problems_without(
        minimal().with(
            ENV_INTROSPECTION_JWKS_URL,
            &format!("https://keys:{PASSWORD}@as.example.com/jwks"),
        ),
        PASSWORD,
    );
    assert!(
        problems.contains("INTROSPECTION_JWKS_URL=\"https://***@as.example.com/jwks\""),
        "{problems}"
    );
    let problems = problems_without(
        minimal().with(
            ENV_INTROSPECTION_JWKS_URL,
            &format!("http://keys:{PASSWORD}@as.example.com/jwks"),
        ),
        PASSWORD,
    );
    assert!(problems.contains("INTROSPECTION_JWKS_URL="), "{problems}");
}

#[test]
fn the_start_up_probe_is_on_unless_turned_off() {
    assert!(minimal().parse().unwrap().introspection.startup_probe);
    let off = minimal().with(ENV_STARTUP_PROBE, "false").parse().unwrap();
    assert!(!off.introspection.startup_probe);
    let problems = minimal().with(ENV_STARTUP_PROBE, "sometimes").problems();
    assert!(problems[0].starts_with("STARTUP_PROBE="), "{problems:?}");
}
