//! The service binary as an operator runs it: `.env` loading, start-up
//! validation and exit codes, serving, and stopping on SIGTERM.

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-phantom-token");

fn plugin(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn missing_configuration_is_reported_in_one_line_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let output = plugin(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for name in ["INTROSPECTION_URL", "CLIENT_ID", "CLIENT_SECRET"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn invalid_values_are_reported_together_and_secrets_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let output = plugin(dir.path())
        .env("INTROSPECTION_URL", "not a url")
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "never-print-me")
        .env("TIMEOUT_SECONDS", "-1")
        .env("PORT", "99999")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for name in ["INTROSPECTION_URL", "TIMEOUT_SECONDS", "PORT"] {
        assert!(stderr.contains(name), "{stderr}");
    }
    assert!(!stderr.contains("never-print-me"));
}

#[test]
fn a_malformed_env_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "CLIENT_ID='unterminated\n").unwrap();
    let output = plugin(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains(".env"));
}

#[test]
fn serves_from_a_dot_env_file_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "INTROSPECTION_URL=http://127.0.0.1:9/oauth/v2/oauth-introspect\n\
             INTROSPECTION_ALLOW_HTTP=true\n\
             CLIENT_ID=gateway\n\
             CLIENT_SECRET=dot-env-secret\n\
             LISTEN_ADDR=127.0.0.1:{port}\n\
             CACHE_JANITOR_SECONDS=60\n"
        ),
    )
    .unwrap();
    let child = plugin(dir.path()).spawn().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let serving = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let endpoint =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap();
            if let Ok(channel) = endpoint.connect().await {
                let mut health = HealthClient::new(channel);
                if let Ok(reply) = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    return reply.into_inner().status == ServingStatus::Serving as i32;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let health = plugin(dir.path())
        .args(["health", "--addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(health.status.success(), "{health:?}");
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "SERVING");
    // Without --addr it reads LISTEN_ADDR from the same .env.
    let health = plugin(dir.path()).arg("health").output().unwrap();
    assert!(health.status.success(), "{health:?}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(serving, "the plugin never reported SERVING");
    assert!(output.status.success(), "exit status {:?}", output.status);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("Listening for Tyk"), "{stderr}");
    assert!(stderr.contains("CACHE_JANITOR_SECONDS"), "{stderr}");
    assert!(stderr.contains("Stopped"), "{stderr}");
    assert!(!stderr.contains("dot-env-secret"));
}

/// Starts the plugin with the minimal settings plus `extra`, waits until it
/// reports SERVING, stops it with SIGTERM, and returns its standard error.
fn serve_and_stop(extra: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = plugin(dir.path());
    command
        .env("INTROSPECTION_URL", "http://127.0.0.1:9/introspect")
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", "gateway")
        .env("CLIENT_SECRET", "startup-secret")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"));
    for (name, value) in extra {
        command.env(name, value);
    }
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut serving = false;
    while !serving && Instant::now() < deadline {
        let health = plugin(dir.path())
            .args(["health", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--timeout", "1"])
            .output()
            .unwrap();
        serving = health.status.success();
        if !serving {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(serving, "the plugin never reported SERVING");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn start_up_warns_once_when_session_keys_derive_from_the_client_secret() {
    const WARNING: &str = "SESSION_KEY_SECRET is not set";
    let without = serve_and_stop(&[]);
    assert_eq!(without.matches(WARNING).count(), 1, "{without}");
    assert!(!without.contains("startup-secret"));
    let with = serve_and_stop(&[("SESSION_KEY_SECRET", "a-separate-key")]);
    assert!(with.contains("Listening for Tyk"), "{with}");
    assert!(!with.contains(WARNING), "{with}");
    assert!(!with.contains("a-separate-key"));
}

/// Start-up and `check` describe plain http:// introspection in the same
/// words, whether they refuse it or, with INTROSPECTION_ALLOW_HTTP=true,
/// accept it.
#[test]
fn start_up_and_check_say_the_same_about_plain_http() {
    const IN_CLEAR: &str = "tokens and client credentials cross the network in clear";
    let started = serve_and_stop(&[]);
    assert_eq!(started.matches(IN_CLEAR).count(), 1, "{started}");

    let dir = tempfile::tempdir().unwrap();
    let check = |url: &str, allow: Option<&str>| {
        let mut command = plugin(dir.path());
        command
            .env("INTROSPECTION_URL", url)
            .env("CLIENT_ID", "c")
            .env("CLIENT_SECRET", "hidden-secret")
            // The configuration's words alone: no request to the AS.
            .args(["check", "--no-probe"]);
        if let Some(allow) = allow {
            command.env("INTROSPECTION_ALLOW_HTTP", allow);
        }
        command.output().unwrap()
    };
    let accepted = check("http://idsvr.test/introspect", Some("true"));
    assert!(accepted.status.success(), "{accepted:?}");
    let stdout = String::from_utf8(accepted.stdout).unwrap();
    assert!(stdout.contains(IN_CLEAR), "{stdout}");
    assert!(stdout.contains("INTROSPECTION_ALLOW_HTTP=true"), "{stdout}");

    let refused = check("http://idsvr.test/introspect", None);
    assert_eq!(refused.status.code(), Some(78));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.contains(IN_CLEAR), "{stderr}");
    assert!(stderr.contains("INTROSPECTION_ALLOW_HTTP=true"), "{stderr}");

    let secure = check("https://idsvr.test/introspect", None);
    assert!(secure.status.success());
    assert!(!String::from_utf8(secure.stdout).unwrap().contains(IN_CLEAR));
}

#[test]
fn health_fails_when_nothing_serves() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let output = plugin(dir.path())
        .args([
            "health",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("health check"));
}

/// Runs `check` against a fake AS, with the token on standard input.
fn run_check(url: &str, token: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = plugin(dir.path())
        .env("INTROSPECTION_URL", url)
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", support::CLIENT_ID)
        .env("CLIENT_SECRET", support::CLIENT_SECRET)
        .args(["check", "--token", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn check_introspects_one_token_and_prints_what_the_plugin_would_do() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake_as = runtime.block_on(support::FakeAs::start());
    fake_as.script(
        "check-active",
        support::Behaviour::Jwt(support::Claims::valid_for("alice", 600)),
    );
    fake_as.script("check-inactive", support::Behaviour::NoContent);
    fake_as.script("check-fault", support::Behaviour::Status(500));

    let active = run_check(&fake_as.url(), "check-active\n", &[]);
    assert!(active.status.success(), "{active:?}");
    let stdout = String::from_utf8(active.stdout).unwrap();
    for expected in [
        "configuration: ok",
        "token: active",
        "sub: alice",
        "scope: read write",
        "cached for: 5",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from {stdout}"
        );
    }
    let jwt = fake_as.jwt_for("check-active").unwrap();
    assert!(!stdout.contains(&jwt), "the JWT is shown only on request");
    assert!(!stdout.contains(support::CLIENT_SECRET));

    let shown = run_check(&fake_as.url(), "check-active", &["--show-jwt"]);
    let latest = fake_as.jwt_for("check-active").unwrap();
    assert!(String::from_utf8(shown.stdout).unwrap().contains(&latest));

    let inactive = run_check(&fake_as.url(), "check-inactive", &[]);
    assert_eq!(inactive.status.code(), Some(1));
    assert!(
        String::from_utf8(inactive.stdout)
            .unwrap()
            .contains("token: inactive")
    );

    let fault = run_check(&fake_as.url(), "check-fault", &[]);
    assert_eq!(fault.status.code(), Some(69));
    assert!(
        String::from_utf8(fault.stdout)
            .unwrap()
            .contains("HTTP 500")
    );

    let malformed = run_check(&fake_as.url(), "two words", &[]);
    assert_eq!(malformed.status.code(), Some(1));
    assert_eq!(fake_as.calls_for("two words"), 0);
}

#[test]
fn check_without_a_token_validates_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // --no-probe: the configuration alone, without asking the AS.
    let ok = plugin(dir.path())
        .env("INTROSPECTION_URL", "https://idsvr.test/introspect")
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "hidden-secret")
        .args(["check", "--no-probe"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        stdout.contains("configuration: ok") && !stdout.contains("hidden-secret"),
        "{stdout}"
    );
    assert!(!stdout.contains("answer format"), "{stdout}");
    let bad = plugin(dir.path())
        .env("CLIENT_ID", "c")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
}

/// `check` without a token against `url`, with extra variables.
fn check_set_up(url: &str, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = plugin(dir.path());
    command
        .env("INTROSPECTION_URL", url)
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", support::CLIENT_ID)
        .env("CLIENT_SECRET", support::CLIENT_SECRET)
        .arg("check");
    for (name, value) in extra {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains(support::CLIENT_SECRET), "{stdout}");
    (output.status.code(), stdout)
}

#[test]
fn check_finds_curitys_format_in_a_204_with_one_request_made_as_the_plugin_makes_them() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The fake answers 204 to a token it does not know: Curity's answer to
    // an inactive token with Accept: application/jwt.
    let fake_as = runtime.block_on(support::FakeAs::start());
    let (code, stdout) = check_set_up(&fake_as.url(), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("answer format: Curity's phantom token"),
        "{stdout}"
    );
    let requests = fake_as.requests();
    assert_eq!(requests.len(), 1, "one request");
    let probe = &requests[0];
    assert_eq!(probe.header("accept"), Some("application/jwt"));
    assert!(probe.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(probe.token.len(), 43, "32 random bytes");
    assert!(!stdout.contains(&probe.token), "{stdout}");
    let again = check_set_up(&fake_as.url(), &[]);
    assert_eq!(again.0, Some(0));
    assert_ne!(
        fake_as.requests()[1].token,
        probe.token,
        "a new token each time"
    );
}

#[test]
fn check_says_when_the_authorization_server_cannot_be_asked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let closed = runtime.block_on(support::fake_as::closed_port_url());
    let (code, stdout) = check_set_up(&closed, &[("TIMEOUT_SECONDS", "1")]);
    assert_eq!(code, Some(69), "{stdout}");
    assert!(stdout.contains("answer format: not checked"), "{stdout}");
    let failing = runtime.block_on(support::FakeAs::start());
    failing.script_default(support::Behaviour::Status(503));
    let (code, stdout) = check_set_up(&failing.url(), &[]);
    assert_eq!(code, Some(69), "{stdout}");
    assert!(stdout.contains("HTTP 503"), "{stdout}");
}

#[test]
fn bundle_subcommands_build_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.path().join("out/phantom-bundle-test.zip");
    let built = plugin(dir.path())
        .args(["bundle", "build", "--manifest"])
        .arg(root.join("manifest/manifest.json"))
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    assert!(String::from_utf8_lossy(&built.stdout).contains("d41d8cd98f00b204e9800998ecf8427e"));
    let verified = plugin(dir.path())
        .args(["bundle", "verify"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("auth_check: PhantomAuthCheck"));

    let unreadable = plugin(dir.path())
        .args(["bundle", "verify", "missing.zip"])
        .output()
        .unwrap();
    assert_eq!(unreadable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("bundle verify failed"));
}

/// `LISTEN_ADDR=unix://…` naming something that is not a socket: start-up
/// stops with an error naming the path, and the file is left as it was.
#[test]
fn a_unix_listen_path_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.sock");
    std::fs::write(&file, "operator's data\n").unwrap();
    let mut child = plugin(dir.path())
        .env(
            "INTROSPECTION_URL",
            "http://127.0.0.1:9/oauth/v2/oauth-introspect",
        )
        .env("INTROSPECTION_ALLOW_HTTP", "true")
        .env("CLIENT_ID", "gateway")
        .env("CLIENT_SECRET", "s")
        .env("LISTEN_ADDR", format!("unix://{}", file.display()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("operator's data\n"),
        "the file was replaced; stderr: {stderr}"
    );
    let status = status.expect("the plugin started serving instead of refusing the path");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

/// A forward proxy on loopback that records the first line of every
/// connection (`CONNECT host:port …` or `POST http://host:port/… …`) and
/// passes the traffic on, to loopback only.
struct RecordingProxy {
    addr: std::net::SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = lines.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let record = record.clone();
                std::thread::spawn(move || proxy_connection(client, &record));
            }
        });
        Self { addr, lines }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn proxy_connection(mut client: std::net::TcpStream, record: &std::sync::Mutex<Vec<String>>) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_owned();
    record.lock().unwrap().push(line.clone());
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (authority, rest) = if method == "CONNECT" {
        (target.to_owned(), None)
    } else {
        let Some(after) = target.strip_prefix("http://") else {
            return;
        };
        let slash = after.find('/').unwrap_or(after.len());
        let origin_form = head.replacen(target, &after[slash..], 1);
        (after[..slash].to_owned(), Some(origin_form))
    };
    let port = authority.rsplit_once(':').map_or("80", |(_, p)| p);
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "the test proxy forwards to loopback only, not {host}"
    );
    let Ok(mut upstream) = std::net::TcpStream::connect(format!("127.0.0.1:{port}")) else {
        return;
    };
    match rest {
        None => {
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        }
        Some(origin_form) => {
            let _ = upstream.write_all(origin_form.as_bytes());
        }
    }
    let (mut client_in, mut upstream_out) =
        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// `check` with a token on standard input and extra environment variables.
fn run_check_with(env: &[(&str, String)], token: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = plugin(dir.path());
    command
        .env("CLIENT_ID", support::CLIENT_ID)
        .env("CLIENT_SECRET", support::CLIENT_SECRET)
        .args(["check", "--token", "-"])
        .stdin(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Two fakes, plain HTTP and TLS, with one active token each; the TLS one's
/// CA written to a file in `dir`.
fn fakes_for_proxy_tests(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> (support::FakeAs, support::FakeAs, String) {
    let plain = runtime.block_on(support::FakeAs::start());
    let tls = runtime.block_on(support::FakeAs::start_tls());
    for fake in [&plain, &tls] {
        fake.script(
            "proxy-test-token",
            support::Behaviour::Jwt(support::Claims::valid_for("pia", 600)),
        );
    }
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, tls.ca_pem().unwrap()).unwrap();
    (plain, tls, ca.display().to_string())
}

#[test]
fn introspection_ignores_proxy_variables_of_the_environment() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (plain, tls, ca) = fakes_for_proxy_tests(&runtime, dir.path());
    let proxy = RecordingProxy::start();
    for fake in [&plain, &tls] {
        let mut env: Vec<(&str, String)> = PROXY_VARIABLES
            .iter()
            .map(|name| (*name, proxy.url()))
            .collect();
        env.push(("INTROSPECTION_URL", fake.url()));
        env.push(("INTROSPECTION_ALLOW_HTTP", "true".to_owned()));
        env.push(("INTROSPECTION_CA_FILE", ca.clone()));
        let output = run_check_with(&env, "proxy-test-token");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {output:?}", fake.url());
        assert!(stdout.contains("token: active"), "{stdout}");
        assert!(stdout.contains("proxy: none"), "{stdout}");
        assert_eq!(fake.calls_for("proxy-test-token"), 1, "{}", fake.url());
    }
    assert_eq!(
        proxy.lines(),
        Vec::<String>::new(),
        "introspection went through a proxy nobody configured for it"
    );
}

#[test]
fn introspection_goes_through_introspection_proxy_when_set() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (plain, tls, ca) = fakes_for_proxy_tests(&runtime, dir.path());
    let proxy = RecordingProxy::start();
    for fake in [&plain, &tls] {
        let env = [
            ("INTROSPECTION_URL", fake.url()),
            ("INTROSPECTION_ALLOW_HTTP", "true".to_owned()),
            ("INTROSPECTION_CA_FILE", ca.clone()),
            ("INTROSPECTION_PROXY", proxy.url()),
            // An explicit proxy is used for the AS whatever NO_PROXY says.
            ("NO_PROXY", "127.0.0.1,localhost".to_owned()),
        ];
        let output = run_check_with(&env, "proxy-test-token");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {output:?}", fake.url());
        assert!(stdout.contains("token: active"), "{stdout}");
        assert!(
            stdout.contains(&format!("proxy: {}", proxy.url())),
            "{stdout}"
        );
        assert_eq!(fake.calls_for("proxy-test-token"), 1, "{}", fake.url());
    }
    let plain_port = plain
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let tls_port = tls
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        proxy.lines(),
        [
            format!("POST http://127.0.0.1:{plain_port}/oauth/v2/oauth-introspect HTTP/1.1"),
            format!("CONNECT localhost:{tls_port} HTTP/1.1"),
        ]
    );
}

#[test]
fn jwks_prints_the_public_keys_of_the_signing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mint.pem");
    std::fs::write(
        &key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let output = plugin(dir.path())
        .arg("jwks")
        .env("SIGNING_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let jwks: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "never the private part");
    assert_eq!(keys[0]["kid"].as_str().map(str::len), Some(43));

    let missing = plugin(dir.path()).arg("jwks").output().unwrap();
    assert_eq!(missing.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("SIGNING_KEY_FILE"));
}

#[test]
fn start_up_errors_mask_credentials_in_the_issuer_and_jwks_urls() {
    let dir = tempfile::tempdir().unwrap();
    let output = plugin(dir.path())
        .env("ISSUER", "https://gw:Pw-issuer-5e1a@as.test/realms/main")
        .env(
            "INTROSPECTION_JWKS_URL",
            "https://gw:Pw-jwks-0b7c@as.test/jwks",
        )
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for masked in [
        "ISSUER=\"https://***@as.test/realms/main\"",
        "INTROSPECTION_JWKS_URL=\"https://***@as.test/jwks\"",
    ] {
        assert!(stderr.contains(masked), "{masked} missing from {stderr}");
    }
    for password in ["Pw-issuer-5e1a", "Pw-jwks-0b7c"] {
        assert!(!stderr.contains(password), "{stderr}");
    }
}

#[test]
fn start_up_warns_when_the_write_route_is_refused_on_a_reachable_admin_address() {
    const WARNING: &str = "ADMIN_TOKEN is not set: POST /tokens/revoke is refused";
    let exposed = serve_and_stop(&[("ADMIN_ADDR", "0.0.0.0:0")]);
    assert_eq!(exposed.matches(WARNING).count(), 1, "{exposed}");
    let loopback = serve_and_stop(&[("ADMIN_ADDR", "127.0.0.1:0")]);
    assert!(loopback.contains("Admin endpoint listening"), "{loopback}");
    assert!(!loopback.contains(WARNING), "{loopback}");
    let guarded = serve_and_stop(&[
        ("ADMIN_ADDR", "0.0.0.0:0"),
        ("ADMIN_TOKEN", "adm-never-printed-5d2c"),
    ]);
    assert!(!guarded.contains(WARNING), "{guarded}");
    assert!(!guarded.contains("adm-never-printed-5d2c"), "{guarded}");
}

#[test]
fn keygen_writes_a_key_the_plugin_loads_and_keeps_an_existing_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let written = plugin(dir.path())
        .args(["keygen", "mint.pem"])
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    let kid = String::from_utf8(written.stdout).unwrap().trim().to_owned();
    assert_eq!(kid.len(), 43, "{kid}");
    assert!(String::from_utf8_lossy(&written.stderr).contains("SIGNING_KEY_FILE=mint.pem"));
    let key = dir.path().join("mint.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let keys = tyk_phantom_token::keys::SigningKeys::from_pem_file(&key).unwrap();
    assert_eq!(keys.current().kid(), kid);
    assert_eq!(keys.current().alg(), jsonwebtoken::Algorithm::ES256);
    let jwks = plugin(dir.path())
        .args(["jwks", "--key-file", "mint.pem"])
        .output()
        .unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());

    let before = std::fs::read(&key).unwrap();
    let again = plugin(dir.path())
        .args(["keygen", "mint.pem"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let forced = plugin(dir.path())
        .args(["keygen", "mint.pem", "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(String::from_utf8_lossy(&forced.stdout).trim(), kid);
}

/// The plugin serving in the background, its standard error in a file.
struct Serving {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Serving {
    fn start(url: &str, extra: &[(&str, &str)]) -> Serving {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let free = TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap().port()
        };
        let log = dir.path().join("stderr.log");
        let mut command = plugin(dir.path());
        command
            .env("INTROSPECTION_URL", url)
            .env("INTROSPECTION_ALLOW_HTTP", "true")
            .env("CLIENT_ID", "gateway")
            .env("CLIENT_SECRET", "probe-secret-3a9d")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        Serving {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn healthy(&self) -> bool {
        plugin(self._dir.path())
            .args(["health", "--addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--timeout", "1"])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Waits (at most 15 s) until `until` holds.
    fn wait(&self, until: impl Fn(&Serving) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if until(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; whether it exited with status 0, and everything it logged.
    fn stop(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        (status.success(), self.logged())
    }
}

const PROBED: &str = "the authorization server's answer format";

#[test]
fn the_start_up_probe_never_holds_up_serving() {
    // An AS that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/introspect", silent.local_addr().unwrap());
    let plugin = Serving::start(&url, &[("TIMEOUT_SECONDS", "60")]);
    assert!(plugin.wait(Serving::healthy), "{}", plugin.logged());
    // Serving, while the probe still waits for its answer.
    assert!(!plugin.logged().contains(PROBED), "{}", plugin.logged());
    let (clean, _) = plugin.stop();
    assert!(clean);
}

#[test]
fn an_authorization_server_that_is_down_at_start_up_is_one_warning() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let closed = runtime.block_on(support::fake_as::closed_port_url());
    let plugin = Serving::start(&closed, &[]);
    assert!(
        plugin.wait(|p| p.logged().contains(PROBED)),
        "{}",
        plugin.logged()
    );
    assert!(plugin.healthy(), "still serving");
    let (clean, logged) = plugin.stop();
    assert!(clean, "{logged}");
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains(PROBED)).collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("Could not check"),
        "{logged}"
    );
    assert!(!logged.contains("probe-secret-3a9d"));
}

#[test]
fn a_curity_server_at_start_up_is_one_info_line() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake_as = runtime.block_on(support::FakeAs::start());
    let plugin = Serving::start(&fake_as.url(), &[]);
    assert!(
        plugin.wait(|p| p.logged().contains(PROBED)),
        "{}",
        plugin.logged()
    );
    let (_, logged) = plugin.stop();
    let line = logged.lines().find(|l| l.contains(PROBED)).unwrap();
    assert!(line.contains("INFO") && line.contains("Curity"), "{line}");
    assert_eq!(fake_as.calls(), 1);
    assert!(!logged.contains(&fake_as.requests()[0].token), "{logged}");
}

#[test]
fn startup_probe_false_asks_the_authorization_server_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake_as = runtime.block_on(support::FakeAs::start());
    let plugin = Serving::start(&fake_as.url(), &[("STARTUP_PROBE", "false")]);
    assert!(plugin.wait(Serving::healthy), "{}", plugin.logged());
    // The probe goes out within milliseconds of start-up when it is on.
    std::thread::sleep(Duration::from_millis(500));
    let (_, logged) = plugin.stop();
    assert_eq!(fake_as.calls(), 0, "{logged}");
    assert!(!logged.contains(PROBED), "{logged}");
}
