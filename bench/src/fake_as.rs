//! A fast fake introspection endpoint: every POST with a `token` form field
//! is answered, after the set latency, with a JWT (`application/jwt`) whose
//! `sub` is distinct per token and whose `exp` is `jwt_ttl` ahead, sized like
//! one from Curity. `GET /calls` returns how many introspections were asked.
//! Calls can also be counted per token ([`FakeAs::count_per_token`]), so a
//! fleet benchmark can tell how many introspections each token cost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct State {
    calls: AtomicU64,
    latency_us: AtomicU64,
    jwt_ttl: u64,
    header: String,
    signature: String,
    per_token: AtomicBool,
    counts: Mutex<HashMap<String, u32>>,
    /// Tokens bound to a DPoP key: their JWT carries `cnf.jkt`.
    bound: Mutex<HashMap<String, String>>,
}

/// A running fake; it stops when dropped.
pub struct FakeAs {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAs {
    /// Binds `listen` and serves on the current runtime.
    pub async fn start(
        listen: SocketAddr,
        latency: Duration,
        jwt_ttl: u64,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        // A 2048-bit RS256 signature is 256 bytes; the plugin does not check it.
        let signature: Vec<u8> = (0..256u32).map(|i| (i * 151 + 7) as u8).collect();
        let state = Arc::new(State {
            calls: AtomicU64::new(0),
            latency_us: AtomicU64::new(micros(latency)),
            jwt_ttl,
            header: URL_SAFE_NO_PAD.encode(r#"{"kid":"-1320401734","alg":"RS256"}"#),
            signature: URL_SAFE_NO_PAD.encode(signature),
            per_token: AtomicBool::new(false),
            counts: Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone()));
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeAs { addr, state, task })
    }

    /// Introspections asked so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// From now on, also count the calls for each token (kept in memory:
    /// meant for runs of a few hundred thousand tokens).
    pub fn count_per_token(&self) {
        self.state.per_token.store(true, Ordering::SeqCst);
    }

    /// Introspections asked for `token` since [`FakeAs::count_per_token`].
    pub fn calls_for(&self, token: &str) -> u32 {
        let counts = self
            .state
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.get(token).copied().unwrap_or(0)
    }

    /// Answers `token` as bound to the DPoP key whose RFC 7638 thumbprint
    /// is `jkt`: its JWT carries `"cnf":{"jkt":…}`.
    pub fn bind_dpop(&self, token: &str, jkt: &str) {
        let mut bound = self
            .state
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        bound.insert(token.to_owned(), jkt.to_owned());
    }

    /// The JWT this fake answers for `token` (for sizing and sealing tests).
    pub fn jwt_for(&self, token: &str) -> String {
        jwt(&self.state, token)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_us
            .store(micros(latency), Ordering::SeqCst);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::GET && request.uri().path() == "/calls" {
        let calls = state.calls.load(Ordering::SeqCst);
        return Ok(reply(StatusCode::OK, "text/plain", format!("{calls}\n")));
    }
    if request.method() != Method::POST {
        return Ok(reply(StatusCode::NOT_FOUND, "text/plain", String::new()));
    }
    state.calls.fetch_add(1, Ordering::SeqCst);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", String::new())),
    };
    let token = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if state.per_token.load(Ordering::Relaxed) {
        let mut counts = state.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(token.clone()).or_insert(0) += 1;
    }
    let latency = state.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    if token.is_empty() {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"invalid_request"}"#.into(),
        ));
    }
    Ok(reply(
        StatusCode::OK,
        "application/jwt",
        jwt(&state, &token),
    ))
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("static header"));
    response
}

/// A JWT shaped like Curity's phantom token, about 870 bytes.
fn jwt(state: &State, token: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    let id = hasher.finish();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let payload = format!(
        concat!(
            r#"{{"jti":"{id:016x}-6d3c-4b1a-9f2e-{id2:012x}","delegationId":"{id2:016x}-a4e1-4c59-8d63","#,
            r#""exp":{exp},"nbf":{now},"scope":"openid orders:read orders:write","#,
            r#""iss":"https://idsvr.example.com/oauth/v2/oauth-anonymous","sub":"user-{id:016x}","#,
            r#""aud":"api.example.com","iat":{now},"purpose":"access_token","client_id":"web-app"}}"#
        ),
        id = id,
        id2 = id.rotate_left(17) & 0xffff_ffff_ffff,
        exp = now + state.jwt_ttl,
        now = now,
    );
    let jkt = {
        let bound = state.bound.lock().unwrap_or_else(PoisonError::into_inner);
        bound.get(token).cloned()
    };
    let payload = match (jkt, serde_json::from_str::<serde_json::Value>(&payload)) {
        (Some(jkt), Ok(mut claims)) => {
            claims["cnf"] = serde_json::json!({ "jkt": jkt });
            claims.to_string()
        }
        _ => payload,
    };
    format!(
        "{}.{}.{}",
        state.header,
        URL_SAFE_NO_PAD.encode(payload),
        state.signature
    )
}

/// `phantom-bench fake-as`: serves until SIGTERM or SIGINT.
pub async fn serve(listen: SocketAddr, latency: Duration, jwt_ttl: u64) -> Result<(), String> {
    let fake = FakeAs::start(listen, latency, jwt_ttl)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("{}", fake.addr);
    tyk_phantom_token::signal::shutdown().await;
    eprintln!("introspections: {}", fake.calls());
    Ok(())
}
