//! Test support: the plugin in-process on an ephemeral loopback port, a fake
//! Curity introspection endpoint, and a fake Tyk gateway calling the plugin.
#![allow(dead_code)]

pub mod fake_as;
pub mod fake_tyk;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tyk_phantom_token::app::App;
use tyk_phantom_token::config::{Config, ListenAddr, MapSource};

pub use fake_as::{Behaviour, Claims, FakeAs};
pub use fake_tyk::{Api, ClientRequest, Gateway, Outcome};

pub const CLIENT_ID: &str = "gateway-client";
pub const CLIENT_SECRET: &str = "gw-secret-7f3a9c41";

/// A running plugin with its fakes.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin endpoint, when the setup asked for it.
    pub admin: Option<SocketAddr>,
    /// The JWKS listener, when `JWKS_ADDR` is set.
    pub jwks: Option<SocketAddr>,
    pub fake_as: FakeAs,
    pub gateway: Gateway,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

/// What a test may change before the plugin starts.
pub struct Setup {
    pub env: MapSource,
    pub api: Api,
    /// Also serve the admin endpoint on an ephemeral loopback port.
    pub admin: bool,
}

impl Setup {
    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.set(name, value);
        self
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(change: impl FnOnce(&mut Setup)) -> TestApp {
    spawn_app_against(FakeAs::start().await, change).await
}

/// The plugin pointed at a given fake authorization server.
pub async fn spawn_app_against(fake_as: FakeAs, change: impl FnOnce(&mut Setup)) -> TestApp {
    let mut setup = Setup {
        env: MapSource::new(&[
            ("INTROSPECTION_URL", &fake_as.url()),
            ("INTROSPECTION_ALLOW_HTTP", "true"),
            ("CLIENT_ID", CLIENT_ID),
            ("CLIENT_SECRET", CLIENT_SECRET),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("TIMEOUT_SECONDS", "1"),
            ("SHUTDOWN_GRACE_SECONDS", "2"),
        ]),
        api: Api::default(),
        admin: false,
    };
    change(&mut setup);
    if setup.admin {
        setup.env("ADMIN_ADDR", "127.0.0.1:0");
    }
    let config = setup.env.parse().expect("test configuration is valid");
    let app = App::bind(&config).await.expect("the plugin starts");
    let ListenAddr::Tcp(addr) = *app.grpc_addr() else {
        panic!("tests listen on TCP");
    };
    let admin_addr = app.admin_addr();
    let jwks_addr = app.jwks_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let gateway = Gateway::connect(addr, setup.api).await;
    TestApp {
        addr,
        admin: admin_addr,
        jwks: jwks_addr,
        fake_as,
        gateway,
        config,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// Sends one request through the fake gateway.
    pub async fn send(&self, request: ClientRequest) -> Outcome {
        self.gateway.request(request).await
    }

    /// A GET with a bearer token.
    pub async fn get_with_token(&self, token: &str) -> Outcome {
        self.send(ClientRequest::get("/orders/api/items?page=2").bearer(token))
            .await
    }

    /// Starts the plugin's graceful shutdown and waits for it to finish.
    pub async fn shutdown(&mut self) -> Result<(), tonic::transport::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("shutdown finished within 10 s")
                .expect("server task did not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl TestApp {
    /// A direct gRPC client to the plugin (for hooks the fake gateway does not
    /// model, and for the health service).
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("plugin accepts connections")
    }
}

impl TestApp {
    /// GET on the admin endpoint: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self.admin.expect("spawned with admin: true");
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("admin endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// One value from the admin endpoint's metrics (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}
