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
    let ok = plugin(dir.path())
        .env("INTROSPECTION_URL", "https://idsvr.test/introspect")
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "hidden-secret")
        .arg("check")
        .output()
        .unwrap();
    assert!(ok.status.success());
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        stdout.contains("configuration: ok") && !stdout.contains("hidden-secret"),
        "{stdout}"
    );
    let bad = plugin(dir.path())
        .env("CLIENT_ID", "c")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
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
