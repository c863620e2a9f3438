//! The service binary as an operator runs it: `.env` loading, start-up
//! validation and exit codes, serving, and stopping on SIGTERM.

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
