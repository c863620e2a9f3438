//! The set-up probe against the real server: node-oidc-provider answers
//! RFC 7662 JSON, so the README's three variables (Curity's defaults) cannot
//! allow a valid token there. `check` and start-up must say so and name the
//! settings; once they are set (with a key from `keygen`), tokens pass.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-phantom-token");

/// The binary with exactly the README's three variables, pointed at the
/// real server, plus `extra`.
fn binary(provider: &OidcProvider, dir: &Path, extra: &[(&str, &str)]) -> Command {
    let gateway = &provider.clients.gateway;
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("INTROSPECTION_URL", provider.introspection_endpoint())
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", &gateway.client_id)
        .env("CLIENT_SECRET", gateway.secret())
        .stdin(Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    command
}

/// `check` (no token): its exit code and standard output.
fn check(provider: &OidcProvider, dir: &Path, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = binary(provider, dir, extra).arg("check").output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        !stdout.contains(provider.clients.gateway.secret()),
        "{stdout}"
    );
    (output.status.code(), stdout)
}

#[tokio::test]
async fn check_names_what_a_json_server_needs_and_passes_once_it_is_set() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();

    let (code, stdout) = check(&provider, dir.path(), &[]);
    assert_eq!(code, Some(78), "{stdout}");
    let format = stdout
        .lines()
        .find(|l| l.starts_with("answer format:"))
        .unwrap_or_else(|| panic!("no answer format in {stdout}"));
    for named in [
        "problem",
        "RFC 7662 JSON",
        "INTROSPECTION_ACCEPT=application/json",
        "SIGNING_KEY_FILE",
        "MINTED_ISSUER",
        "MINTED_AUDIENCE",
    ] {
        assert!(format.contains(named), "{named} missing from {format}");
    }

    let keygen = Command::new(BIN)
        .current_dir(dir.path())
        .args(["keygen", "mint.pem"])
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let minting = [
        ("INTROSPECTION_ACCEPT", "application/json"),
        ("SIGNING_KEY_FILE", "mint.pem"),
        ("MINTED_ISSUER", MINTED_ISSUER),
        ("MINTED_AUDIENCE", MINTED_AUDIENCE),
    ];
    let (code, stdout) = check(&provider, dir.path(), &minting);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout
            .contains("answer format: RFC 7662 JSON (application/json); the plugin mints the JWT"),
        "{stdout}"
    );
    // The server sends no max-age (only no-store): revocation needs a bound.
    const NO_MAX_AGE: &str = "sends no Cache-Control max-age";
    assert!(
        stdout.contains(NO_MAX_AGE) && stdout.contains("REVALIDATE_AFTER_SECONDS"),
        "{stdout}"
    );
    let mut bounded = minting.to_vec();
    bounded.push(("REVALIDATE_AFTER_SECONDS", "60"));
    let (code, stdout) = check(&provider, dir.path(), &bounded);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(!stdout.contains(NO_MAX_AGE), "{stdout}");
}

#[tokio::test]
async fn check_says_the_server_refused_the_client_credentials() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-gateway-secret-81d2";
    let output = binary(&provider, dir.path(), &[("CLIENT_SECRET", wrong)])
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(78), "{stdout}");
    assert!(
        stdout.contains("refused the plugin's client credentials (HTTP 401)"),
        "{stdout}"
    );
    assert!(stdout.contains("CLIENT_SECRET"), "{stdout}");
    assert!(!stdout.contains(wrong), "{stdout}");
}

#[tokio::test]
async fn start_up_logs_one_error_naming_the_missing_settings_while_serving() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let log = dir.path().join("stderr.log");
    let mut child = binary(
        &provider,
        dir.path(),
        &[("LISTEN_ADDR", &format!("127.0.0.1:{port}"))],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    const ERROR: &str = "Valid tokens cannot be allowed with this configuration";
    let deadline = Instant::now() + Duration::from_secs(20);
    let logged = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(ERROR) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The service started regardless, and keeps serving.
    let health = Command::new(BIN)
        .args(["health", "--addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(health.status.success(), "{health:?}\n{logged}");
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains(ERROR)).collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    for named in ["RFC 7662 JSON", "SIGNING_KEY_FILE", "MINTED_AUDIENCE"] {
        assert!(
            lines[0].contains(named),
            "{named} missing from {}",
            lines[0]
        );
    }
    assert!(!logged.contains(provider.clients.gateway.secret()));
}

#[tokio::test]
async fn a_key_from_keygen_mints_the_jwts_with_the_kid_it_printed() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mint.pem");
    let kid = tyk_phantom_token::keygen::write_p256_key(&key, false).unwrap();
    let mut env = base_env(&provider);
    env.insert(
        "INTROSPECTION_URL".into(),
        provider.introspection_endpoint(),
    );
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), key.display().to_string());
    let plugin = start_plugin(&env).await;

    let token = provider
        .issue_token(serde_json::json!({"sub": "keygen-user", "scope": "orders:read"}))
        .await;
    let (header, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    assert_eq!(claims["sub"], "keygen-user");
}
