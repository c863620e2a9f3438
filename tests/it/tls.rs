//! TLS to the authorization server: system roots plus an extra CA file.

use std::io::Write;

use crate::support::*;

fn ca_file(pem: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pem.as_bytes()).unwrap();
    file
}

#[tokio::test]
async fn an_as_signed_by_the_extra_ca_is_trusted() {
    let fake_as = FakeAs::start_tls().await;
    let ca = ca_file(fake_as.ca_pem().unwrap());
    let app = spawn_app_against(fake_as, |s| {
        s.env("INTROSPECTION_CA_FILE", ca.path().to_str().unwrap());
    })
    .await;
    app.fake_as
        .script("tls-token", Behaviour::Jwt(Claims::valid_for("xena", 600)));
    let outcome = app.get_with_token("tls-token").await;
    assert_eq!(
        outcome.status(),
        200,
        "{:?}",
        outcome.client.map(|c| c.text())
    );
    assert_eq!(app.fake_as.calls(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_configuration_fault_not_an_invalid_token() {
    let fake_as = FakeAs::start_tls().await;
    let app = spawn_app_against(fake_as, |_| {}).await;
    app.fake_as
        .script("tls-token", Behaviour::Jwt(Claims::valid_for("yuri", 600)));
    let outcome = app.get_with_token("tls-token").await;
    assert_eq!(
        outcome.status(),
        502,
        "{:?}",
        outcome.client.map(|c| c.text())
    );
    assert_eq!(
        app.fake_as.calls(),
        0,
        "no request was sent over the untrusted connection"
    );
}

#[test]
fn an_unreadable_or_empty_ca_file_stops_start_up() {
    use tyk_phantom_token::authz::Authorizer;
    use tyk_phantom_token::config::MapSource;
    let base = [
        ("INTROSPECTION_URL", "https://idsvr.test/introspect"),
        ("CLIENT_ID", "c"),
        ("CLIENT_SECRET", "s"),
    ];
    let not_pem = ca_file("this is not a certificate");
    for (path, expected) in [
        ("/nonexistent/ca.pem", "cannot read INTROSPECTION_CA_FILE"),
        (
            not_pem.path().to_str().unwrap(),
            "holds no usable PEM certificate",
        ),
    ] {
        let config = MapSource::new(&base)
            .with("INTROSPECTION_CA_FILE", path)
            .parse()
            .unwrap();
        let metrics = std::sync::Arc::new(tyk_phantom_token::metrics::Metrics::new());
        let error = Authorizer::new(&config, metrics)
            .err()
            .expect("start-up refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

fn write_pem(pem: &str) -> tempfile::NamedTempFile {
    ca_file(pem)
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let fake_as = FakeAs::start_mtls().await;
    let ca = ca_file(fake_as.ca_pem().unwrap());
    let (cert_pem, key_pem) = fake_as.client_identity().unwrap();
    let (cert, key) = (write_pem(cert_pem), write_pem(key_pem));
    let app = spawn_app_against(fake_as, |s| {
        s.env("INTROSPECTION_CA_FILE", ca.path().to_str().unwrap())
            .env(
                "INTROSPECTION_CLIENT_CERT_FILE",
                cert.path().to_str().unwrap(),
            )
            .env(
                "INTROSPECTION_CLIENT_KEY_FILE",
                key.path().to_str().unwrap(),
            );
    })
    .await;
    app.fake_as
        .script("mtls-token", Behaviour::Jwt(Claims::valid_for("lee", 600)));
    assert_eq!(app.get_with_token("mtls-token").await.status(), 200);
}

#[tokio::test]
async fn without_the_client_certificate_mutual_tls_fails_as_a_configuration_fault() {
    let fake_as = FakeAs::start_mtls().await;
    let ca = ca_file(fake_as.ca_pem().unwrap());
    let app = spawn_app_against(fake_as, |s| {
        s.env("INTROSPECTION_CA_FILE", ca.path().to_str().unwrap());
    })
    .await;
    app.fake_as
        .script("mtls-token", Behaviour::Jwt(Claims::valid_for("lee", 600)));
    assert_eq!(app.get_with_token("mtls-token").await.status(), 502);
    assert_eq!(app.fake_as.calls(), 0);
}
