//! A second real OAuth 2.0 authorization server for tests, of another family
//! than node-oidc-provider: django-oauth-toolkit (tests/django-oauth, every
//! Python package pinned with its sha256 by requirements.txt), installed on
//! first use and started on an ephemeral loopback port.
//!
//! - Install: a venv under the target directory (`target/tmp/django-oauth/`),
//!   one per content of requirements.txt, filled with
//!   `pip install --require-hashes --no-deps --only-binary=:all:` under an
//!   exclusive file lock so concurrent test binaries do not race; later runs
//!   reuse it. Python 3.11 (with venv) must be installed: a missing or other
//!   Python fails the test with what to install, it never skips.
//! - Start: `python server.py` with its SQLite file in a temporary directory
//!   this handle owns; it prints one JSON line when ready (endpoints,
//!   clients, users). Its stderr goes to a temporary file that is shown if
//!   start-up fails.
//! - Stop: killed when the handle drops (and it exits by itself when its
//!   stdin closes).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long starting may take before the test fails (migrations and the
/// password hashing of the clients and users: a few seconds when idle).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts tried before a test gives up, as for node-oidc-provider.
const START_ATTEMPTS: u32 = 3;

/// Start-up options passed to the server script.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of access tokens, seconds (`ACCESS_TOKEN_EXPIRE_SECONDS`).
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
    pub client_secret: String,
}

/// The confidential clients the server is configured with (see server.py).
#[derive(Debug, Clone, Deserialize)]
pub struct Clients {
    /// The plugin's client: introspects with `client_secret_basic`.
    pub gateway: Client,
    /// Obtains users' tokens (password grant), with or without resources.
    pub app: Client,
    /// Obtains tokens for itself (client credentials): no resource owner.
    pub service: Client,
}

#[derive(Deserialize)]
struct Ready {
    base_url: String,
    token_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    clients: Clients,
    users: HashMap<String, String>,
}

/// A running django-oauth-toolkit.
pub struct DjangoOauth {
    pub base_url: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub clients: Clients,
    /// Username → password.
    users: HashMap<String, String>,
    /// Token → the client it was issued to (revocation is per client).
    issued: Mutex<HashMap<String, Client>>,
    http: reqwest::Client,
    child: tokio::process::Child,
    stderr: tempfile::NamedTempFile,
    _data: tempfile::TempDir,
}

impl Drop for DjangoOauth {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django-oauth")
}

/// Where the venvs live: inside the target directory, which Cargo gives
/// integration tests for their own files.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("django-oauth")
}

/// Runs a command to completion; panics with `missing` when it cannot be
/// started and with its output when it fails.
fn run(command: &mut Command, missing: &str, failed: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{missing}: {e}"));
    assert!(
        output.status.success(),
        "{failed} ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates the venv for the current requirements.txt unless it is already
/// complete, and returns its python. Safe to call from many threads and
/// many test binaries at once.
pub fn ensure_installed() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let requirements = server_dir().join("requirements.txt");
            let digest = hex::encode(Sha256::digest(
                std::fs::read(&requirements)
                    .expect("tests/django-oauth/requirements.txt is readable"),
            ));
            let cache = cache_dir();
            let venv = cache.join(format!("venv-{}", &digest[..16]));
            let python = venv.join("bin/python");
            // Written last: a venv without it is an interrupted install.
            let marker = venv.join(".installed");
            let complete = || std::fs::read_to_string(&marker).ok().as_deref() == Some(&digest);
            if complete() {
                return python;
            }
            std::fs::create_dir_all(&cache).expect("create the venv cache directory");
            let lock = File::create(cache.join(".install.lock")).expect("create the install lock");
            lock.lock().expect("take the install lock");
            // Another process may have installed it while we waited.
            if complete() {
                return python;
            }
            // Venvs of older requirements, and this one if interrupted.
            for entry in std::fs::read_dir(&cache)
                .expect("read the venv cache")
                .flatten()
            {
                if entry.file_name().to_string_lossy().starts_with("venv-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 is needed for the django-oauth-toolkit tests \
                 (Debian: apt-get install python3 python3-venv)",
                "python3 -m venv failed (Debian: apt-get install python3-venv)",
            );
            let found = run(
                Command::new(&python).args([
                    "-c",
                    "import platform, sys; \
                     print(sys.implementation.name, *sys.version_info[:2], platform.machine())",
                ]),
                "the venv has no python",
                "the venv's python does not run",
            );
            assert_eq!(
                found.split_whitespace().collect::<Vec<_>>(),
                ["cpython", "3", "11", "x86_64"],
                "tests/django-oauth/requirements.txt pins wheels for CPython 3.11 on x86_64 \
                 Linux; python3 here is {found:?}"
            );
            run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--require-hashes",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--requirement",
                    ])
                    .arg(&requirements),
                "the venv has no pip (Debian: apt-get install python3-venv)",
                "pip could not install tests/django-oauth/requirements.txt",
            );
            // --no-deps trusts the lockfile to be the whole closure: check it.
            run(
                Command::new(&python).args(["-m", "pip", "check", "--disable-pip-version-check"]),
                "the venv has no pip",
                "tests/django-oauth/requirements.txt misses a dependency",
            );
            std::fs::write(&marker, &digest).expect("mark the venv complete");
            python
        })
        .clone()
}

impl DjangoOauth {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let python = tokio::task::spawn_blocking(ensure_installed)
            .await
            .expect("install task");
        let mut attempt = 0;
        let (ready, child, lines, stderr, data) = loop {
            attempt += 1;
            let data = tempfile::tempdir().expect("temporary directory for the database");
            let stderr = tempfile::NamedTempFile::new().expect("temporary file for stderr");
            let mut child = tokio::process::Command::new(&python)
                // Isolated: no PYTHONPATH, user site-packages or the like
                // from the environment.
                .arg("-I")
                .arg("server.py")
                .current_dir(server_dir())
                .env(
                    "DJANGO_OAUTH_TEST_OPTIONS",
                    serde_json::json!({"accessTokenTtl": options.access_token_ttl}).to_string(),
                )
                .env("DJANGO_OAUTH_DATA_DIR", data.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().expect("reopen the stderr file"))
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("the venv's python did not start: {e}"));
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
                    "django-oauth-toolkit did not start ({other:?}); its stderr:\n{}",
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                ),
            };
            break (ready, child, lines, stderr, data);
        };
        let mut lines = lines;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        DjangoOauth {
            base_url: ready.base_url,
            token_endpoint: ready.token_endpoint,
            introspection_endpoint: ready.introspection_endpoint,
            revocation_endpoint: ready.revocation_endpoint,
            clients: ready.clients,
            users: ready.users,
            issued: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .no_proxy()
                .build()
                .expect("HTTP client"),
            child,
            stderr,
            _data: data,
        }
    }

    /// What the server wrote to stderr so far (request lines, warnings,
    /// tracebacks).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// The gateway client the plugin introspects with.
    pub fn gateway(&self) -> &Client {
        &self.clients.gateway
    }

    /// A user's access token from the real token endpoint (password grant,
    /// as `app`), for RFC 8707 `resource` when given.
    pub async fn user_token(&self, user: &str, scope: &str, resource: Option<&str>) -> String {
        let password = self
            .users
            .get(user)
            .unwrap_or_else(|| panic!("no user {user:?} on the server (see server.py)"));
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", password.as_str()),
            ("scope", scope),
        ];
        if let Some(resource) = resource {
            fields.push(("resource", resource));
        }
        self.token(&self.clients.app, &fields).await
    }

    /// A client-credentials token (no resource owner), as `service`.
    pub async fn client_token(&self, scope: &str) -> String {
        let fields = [("grant_type", "client_credentials"), ("scope", scope)];
        self.token(&self.clients.service, &fields).await
    }

    async fn token(&self, client: &Client, fields: &[(&str, &str)]) -> String {
        let response = self
            .http
            .post(&self.token_endpoint)
            .header(
                "authorization",
                basic(&client.client_id, &client.client_secret),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields))
            .send()
            .await
            .expect("token endpoint reachable");
        let status = response.status();
        let body = response.text().await.expect("token response body");
        assert_eq!(
            status,
            200,
            "token refused: {body}\nserver stderr:\n{}",
            self.stderr()
        );
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON token response");
        let token = body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        self.issued
            .lock()
            .unwrap()
            .insert(token.clone(), client.clone());
        token
    }

    /// Revokes `token` at the real RFC 7009 endpoint, as the client it was
    /// issued to (the server ignores other clients' requests). Returns the
    /// HTTP status.
    pub async fn revoke(&self, token: &str) -> u16 {
        let client = self
            .issued
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .expect("revoke: a token this server issued");
        self.http
            .post(&self.revocation_endpoint)
            .header(
                "authorization",
                basic(&client.client_id, &client.client_secret),
            )
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

    /// An RFC 7662 request as the gateway (`client_secret_basic`), with its
    /// answer untouched.
    pub async fn introspect(&self, token: &str) -> reqwest::Response {
        let gateway = self.gateway();
        self.introspect_as(&gateway.client_id, &gateway.client_secret, token)
            .await
    }

    /// An RFC 7662 request with the given client credentials
    /// (`client_secret_basic`), with its answer untouched.
    pub async fn introspect_as(
        &self,
        client_id: &str,
        secret: &str,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .post(&self.introspection_endpoint)
            .header("authorization", basic(client_id, secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", token)]))
            .send()
            .await
            .expect("introspection endpoint reachable")
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
