//! The gRPC transport: health, message sizes, graceful drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::fake_tyk::Gateway;
use crate::support::*;

#[tokio::test]
async fn the_health_service_reports_serving() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "coprocess.Dispatcher"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn a_sixteen_mib_body_echoed_twice_fits_the_default_limits() {
    let app = spawn_app().await;
    app.fake_as
        .script("bulk-token", Behaviour::Jwt(Claims::valid_for("vic", 600)));
    // Tyk's grpc_recv_max_size raised as the README says for large bodies.
    let gateway = Gateway::connect_with_limit(app.addr, Api::default(), 64 << 20).await;
    // Valid UTF-8, so Tyk sends it as both `body` and `raw_body`.
    let body: Vec<u8> = (0..(16usize << 20))
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let outcome = gateway
        .request(
            ClientRequest::get("/bulk")
                .method("PUT")
                .bearer("bulk-token")
                .body(body.clone()),
        )
        .await;
    assert_eq!(
        outcome.status(),
        200,
        "{:?}",
        outcome.client.map(|c| c.text())
    );
    assert!(outcome.upstream.unwrap().body == body);
}

#[tokio::test]
async fn a_message_over_the_limit_fails_as_tyk_shows_it() {
    let app = spawn_app_with(|s| {
        s.env("GRPC_MAX_MESSAGE_BYTES", "4MiB");
    })
    .await;
    let gateway = Gateway::connect_with_limit(app.addr, Api::default(), 64 << 20).await;
    let body = vec![b'x'; 3 << 20];
    let outcome = gateway
        .request(
            ClientRequest::get("/bulk")
                .method("PUT")
                .bearer("t")
                .body(body),
        )
        .await;
    assert_eq!(outcome.status(), 403);
    assert_eq!(
        outcome.response().text(),
        "{\n    \"error\": \"Key not authorised\"\n}"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish() {
    let mut app = spawn_app().await;
    app.fake_as.script(
        "in-flight",
        Behaviour::Slow(
            Duration::from_millis(400),
            Box::new(Behaviour::Jwt(Claims::valid_for("wes", 600))),
        ),
    );
    let gateway = Arc::new(Gateway::connect(app.addr, Api::default()).await);
    let request = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            gateway
                .request(ClientRequest::get("/x").bearer("in-flight"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shutdown().await.expect("clean shutdown");
    assert_eq!(request.await.unwrap().status(), 200);
    // After shutdown, nothing is listening: Tyk answers 403.
    let after = Gateway::connect(app.addr, Api::default()).await;
    assert_eq!(
        after
            .request(ClientRequest::get("/x").bearer("in-flight"))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let mut app = spawn_app_with(|s| {
        s.env("SHUTDOWN_GRACE_SECONDS", "1")
            .env("TIMEOUT_SECONDS", "30");
    })
    .await;
    app.fake_as.script(
        "stuck",
        Behaviour::Slow(Duration::from_secs(20), Box::new(Behaviour::NoContent)),
    );
    let gateway = Arc::new(Gateway::connect(app.addr, Api::default()).await);
    let request = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            gateway
                .request(ClientRequest::get("/x").bearer("stuck"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    app.shutdown().await.expect("shutdown returns");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The cut call is answered, not dropped: a 503 the client can retry.
    let cut = request.await.unwrap();
    assert_eq!(cut.status(), 503);
    assert!(cut.response().header("Retry-After").is_some());
}

#[tokio::test]
async fn the_plugin_can_listen_on_a_unix_socket_only() {
    use tyk_phantom_token::server::{self, ListenAddr, ServeOptions};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin.sock");
    let fake_as = FakeAs::start().await;
    fake_as.script("uds-token", Behaviour::Jwt(Claims::valid_for("una", 600)));
    let config = tyk_phantom_token::config::MapSource::new(&[
        ("INTROSPECTION_URL", &fake_as.url()),
        ("INTROSPECTION_ALLOW_HTTP", "true"),
        ("CLIENT_ID", CLIENT_ID),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("LISTEN_ADDR", &format!("unix://{}", socket.display())),
    ])
    .parse()
    .unwrap();
    assert_eq!(config.listen, ListenAddr::Unix(socket.clone()));
    let metrics = Arc::new(tyk_phantom_token::metrics::Metrics::new());
    let authz = Arc::new(tyk_phantom_token::authz::Authorizer::new(&config, metrics).unwrap());
    let listener = server::bind(&config.listen).unwrap();
    let service = tyk_phantom_token::dispatch::DispatchService::new(authz, &config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        max_message_bytes: config.grpc_max_message_bytes,
        shutdown_grace: Duration::from_secs(1),
        serving: server::Serving::default(),
    };
    let task = tokio::spawn(server::serve(listener, service, options, async {
        let _ = stopped.await;
    }));

    let channel = server::connect(&config.listen)
        .await
        .expect("connects over the socket");
    let gateway = Gateway::with_channel(channel, Api::default(), 4 << 20);
    let outcome = gateway
        .request(ClientRequest::get("/").bearer("uds-token"))
        .await;
    assert_eq!(outcome.status(), 200);
    let jwt = fake_as.jwt_for("uds-token").unwrap();
    assert_eq!(
        outcome.upstream.unwrap().header("Authorization"),
        Some(format!("Bearer {jwt}").as_str())
    );

    // A second instance must not steal a socket in use...
    assert!(server::bind(&config.listen).is_err());
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    // ...and the socket file is removed on shutdown.
    assert!(!socket.exists());
    // A stale socket file left by a crash is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    assert!(socket.exists());
    assert!(server::bind(&config.listen).is_ok());
}

#[tokio::test]
async fn only_sockets_are_replaced_at_a_unix_listen_path() {
    use std::os::unix::fs::FileTypeExt;
    use tyk_phantom_token::server::{self, ListenAddr};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "keep").unwrap();
    let folder = dir.path().join("folder.sock");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("inside"), "keep").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for path in [&file, &folder, &link] {
        let error = match server::bind(&ListenAddr::Unix(path.clone())) {
            Ok(_) => panic!("{path:?} was replaced by a socket"),
            Err(error) => error,
        };
        assert!(
            error.to_string().contains("not a socket"),
            "{path:?}: {error}"
        );
        assert!(
            !std::fs::symlink_metadata(path)
                .unwrap()
                .file_type()
                .is_socket()
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    assert_eq!(
        std::fs::read_to_string(folder.join("inside")).unwrap(),
        "keep"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
