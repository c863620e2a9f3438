//! A real OAuth 2.0 authorization server for tests: node-oidc-provider
//! (tests/oidc-provider, pinned by its package-lock.json), installed on first
//! use and started on an ephemeral loopback port.
//!
//! - Install: `npm ci` in tests/oidc-provider when `node_modules` does not
//!   hold the locked version, under an exclusive file lock so concurrent test
//!   binaries do not race.
//! - Start: `node server.mjs`; it prints one JSON line when ready (issuer,
//!   clients, a test-only control address). Its stderr goes to a temporary
//!   file that is shown if start-up fails.
//! - Stop: killed when the handle drops (and it exits by itself when its
//!   stdin closes).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long installing and starting may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts tried before a test gives up (see [`OidcProvider::start_with`]).
const START_ATTEMPTS: u32 = 3;

/// Start-up options passed to the server script.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of access tokens, seconds.
    pub access_token_ttl: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            access_token_ttl: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_secret: Option<String>,
}

impl Client {
    pub fn secret(&self) -> &str {
        self.client_secret.as_deref().unwrap_or_default()
    }
}

/// The clients the server is configured with (see server.mjs).
#[derive(Debug, Clone, Deserialize)]
pub struct Clients {
    /// client_secret_basic; RFC 9701 answers signed with ES256.
    pub gateway: Client,
    /// client_secret_post; no signed answers.
    #[serde(rename = "gatewayPost")]
    pub gateway_post: Client,
    /// private_key_jwt (key in `assertion_key_pem`); RFC 9701 answers with RS256.
    #[serde(rename = "gatewayJwt")]
    pub gateway_jwt: Client,
    /// An application that obtains and revokes tokens.
    pub app: Client,
}

#[derive(Deserialize)]
struct Ready {
    issuer: String,
    control: String,
    clients: Clients,
    assertion_key_pem: String,
}

/// A running node-oidc-provider.
pub struct OidcProvider {
    pub issuer: String,
    pub clients: Clients,
    /// PKCS#8 PEM of the key registered for `gateway-jwt`.
    pub assertion_key_pem: String,
    control: String,
    http: reqwest::Client,
    child: tokio::process::Child,
    _stderr: tempfile::NamedTempFile,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// The oidc-provider version the lockfile pins.
fn locked_version(dir: &Path) -> String {
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package-lock.json")).expect("package-lock.json"),
    )
    .expect("package-lock.json is JSON");
    lock["packages"]["node_modules/oidc-provider"]["version"]
        .as_str()
        .expect("the lockfile pins oidc-provider")
        .to_owned()
}

fn installed_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json")).ok()?;
    let package: serde_json::Value = serde_json::from_str(&text).ok()?;
    package["version"].as_str().map(str::to_owned)
}

/// Runs `npm ci` unless the locked version is already installed. Safe to
/// call from many threads and many test binaries at once.
pub fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = provider_dir();
        let wanted = locked_version(&dir);
        if installed_version(&dir).as_deref() == Some(wanted.as_str()) {
            return;
        }
        let lock = File::create(dir.join(".install.lock")).expect("create the install lock");
        lock.lock().expect("take the install lock");
        // Another process may have installed it while we waited.
        if installed_version(&dir).as_deref() == Some(wanted.as_str()) {
            return;
        }
        let output = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("npm is needed for the OAuth-server tests (Debian: apt-get install nodejs npm): {e}")
            });
        assert!(
            output.status.success(),
            "npm ci in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(installed_version(&dir), Some(wanted), "npm ci installed another version");
    });
}

impl OidcProvider {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        tokio::task::spawn_blocking(ensure_installed)
            .await
            .expect("install task");
        // node-oidc-provider on Node 20 (which it no longer supports) now
        // and then never finishes starting: about one start in fifteen when
        // many start at once. Such a start is killed and tried again.
        let mut attempt = 0;
        let (ready, child, lines, stderr) = loop {
            attempt += 1;
            let stderr = tempfile::NamedTempFile::new().expect("temporary file for stderr");
            let mut child = tokio::process::Command::new("node")
                .arg("server.mjs")
                .current_dir(provider_dir())
                .env(
                    "OIDC_TEST_OPTIONS",
                    serde_json::json!({"accessTokenTtl": options.access_token_ttl}).to_string(),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().expect("reopen the stderr file"))
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("node is needed for the OAuth-server tests (Debian: apt-get install nodejs): {e}")
                });
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
            let ready: Ready = match line {
                Ok(Ok(Some(line))) => serde_json::from_str(&line).expect("the ready line is JSON"),
                Err(_) if attempt < START_ATTEMPTS => {
                    let _ = child.start_kill();
                    continue;
                }
                other => panic!(
                    "oidc-provider did not start ({other:?}); its stderr:\n{}",
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                ),
            };
            break (ready, child, lines, stderr);
        };
        let mut lines = lines;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OidcProvider {
            issuer: ready.issuer,
            clients: ready.clients,
            assertion_key_pem: ready.assertion_key_pem,
            control: ready.control,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            child,
            _stderr: stderr,
        }
    }

    /// What the server wrote to stderr so far (refusal reasons, warnings).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._stderr.path()).unwrap_or_default()
    }

    /// Endpoints as node-oidc-provider mounts them (tests that check
    /// discovery get them from the metadata instead).
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// A real opaque access token for a user, issued through the provider's
    /// own model. `request`: `{"sub", "client_id"?, "scope"?, "ttl"?, "aud"?,
    /// "extra"?, "jkt"?}`.
    pub async fn issue_token(&self, request: serde_json::Value) -> String {
        let response = self
            .http
            .post(format!("{}/tokens", self.control))
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .expect("control endpoint reachable");
        assert!(
            response.status().is_success(),
            "token not issued: {response:?}"
        );
        let body = json_body(response).await;
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// A client-credentials token for `app` from the real token endpoint.
    pub async fn client_credentials_token(&self, scope: &str) -> String {
        let app = &self.clients.app;
        let response = self
            .http
            .post(self.token_endpoint())
            .header("authorization", basic(&app.client_id, app.secret()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ]))
            .send()
            .await
            .expect("token endpoint reachable");
        assert_eq!(response.status(), 200, "client credentials refused");
        let body = json_body(response).await;
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Revokes `token` at the real revocation endpoint, as `app` (the client
    /// it was issued to). Returns the HTTP status.
    pub async fn revoke(&self, token: &str) -> u16 {
        let app = &self.clients.app;
        self.http
            .post(self.revocation_endpoint())
            .header("authorization", basic(&app.client_id, app.secret()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ]))
            .send()
            .await
            .expect("revocation endpoint reachable")
            .status()
            .as_u16()
    }
}

/// `client_secret_basic` per RFC 6749 §2.3.1 (form-encode each part first).
pub fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// A form-encoded body.
pub fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// A response body parsed as JSON.
pub async fn json_body(response: reqwest::Response) -> serde_json::Value {
    let bytes = response.bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}
