//! Driving `Dispatch` the way Tyk does: the objects it builds for an
//! auth_check, sent over one HTTP/2 connection with many concurrent streams
//! (or over several connections), with the reply checked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};
use tyk_phantom_token::pb::dispatcher_client::DispatcherClient;
use tyk_phantom_token::pb::{HookType, MiniRequestObject, Object, ReturnOverrides};

pub type Client = DispatcherClient<Channel>;

/// No single call may take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `connections` HTTP/2 connections to `addr`.
pub async fn connect(addr: SocketAddr, connections: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        clients.push(
            DispatcherClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        );
    }
    Ok(clients)
}

/// The object Tyk builds for `auth_check` (raw_body_only: `body` empty), minus
/// the `Authorization` header, which each request adds.
pub fn template(body: usize) -> Object {
    let mut headers = HashMap::from([
        ("Host".to_owned(), "gateway.example.com".to_owned()),
        ("User-Agent".to_owned(), "curl/8.5.0".to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
        (
            "X-Request-Id".to_owned(),
            "6b1f0c1e-8d5e-4a43-9f59-2f1c3b7a9e01".to_owned(),
        ),
    ]);
    let (method, raw_body) = if body > 0 {
        headers.insert("Content-Type".into(), "application/octet-stream".into());
        headers.insert("Content-Length".into(), body.to_string());
        let bytes: Vec<u8> = (0..body).map(|i| (i % 251) as u8).collect();
        ("POST", Bytes::from(bytes))
    } else {
        ("GET", Bytes::new())
    };
    Object {
        hook_type: HookType::CustomKeyCheck as i32,
        hook_name: "PhantomAuthCheck".into(),
        request: Some(MiniRequestObject {
            headers,
            url: "/orders/v1/orders?page=2".into(),
            params: HashMap::from([("page".to_owned(), "2".to_owned())]),
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            method: method.into(),
            request_uri: "/orders/v1/orders?page=2".into(),
            scheme: "http".into(),
            raw_body,
            ..Default::default()
        }),
        spec: HashMap::from([
            ("OrgID".to_owned(), "5e9d9544a1dcd60001d0ed20".to_owned()),
            ("APIID".to_owned(), "orders-api".to_owned()),
            (
                "bundle_hash".to_owned(),
                "9b5ffbba2b1c1f5a4a0b1c5e0b1f6d2c".to_owned(),
            ),
        ]),
        ..Default::default()
    }
}

/// An opaque token like Curity's, distinct per (`kind`, `index`).
pub fn token(kind: &str, index: u64) -> String {
    format!("_0XBPWQQ_{kind}-{index:012}-8b6f0d4c-3e8a-4f0b-a1c2")
}

/// Which token each request carries.
pub enum Tokens {
    One(String),
    /// `kind` 0..n, in turn.
    RoundRobin {
        kind: &'static str,
        n: u64,
        next: AtomicU64,
    },
    /// A token never sent before (from `next` on).
    Fresh {
        kind: &'static str,
        next: AtomicU64,
    },
    /// `kind` 0..n, at random.
    Random {
        kind: &'static str,
        n: u64,
    },
}

impl Tokens {
    pub fn round_robin(kind: &'static str, n: u64) -> Self {
        Tokens::RoundRobin {
            kind,
            n,
            next: AtomicU64::new(0),
        }
    }

    pub fn fresh(kind: &'static str, from: u64) -> Self {
        Tokens::Fresh {
            kind,
            next: AtomicU64::new(from),
        }
    }

    fn pick(&self, rng: &mut Rng) -> String {
        match self {
            Tokens::One(token) => token.clone(),
            Tokens::RoundRobin { kind, n, next } => {
                token(kind, next.fetch_add(1, Ordering::Relaxed) % n.max(&1))
            }
            Tokens::Fresh { kind, next } => token(kind, next.fetch_add(1, Ordering::Relaxed)),
            Tokens::Random { kind, n } => token(kind, rng.below(*n)),
        }
    }
}

/// xorshift64*: enough to spread picks, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What a correct reply looks like.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object back, not denied.
    Echo,
    /// Allowed: not denied, and `Authorization: Bearer <JWT>` set for the upstream.
    Allow,
}

/// Sends one request; `Err` describes what was wrong.
pub async fn call(
    client: &mut Client,
    template: &Object,
    token: &str,
    expect: Expect,
) -> Result<(), String> {
    let auth = [("Authorization".to_owned(), format!("Bearer {token}"))];
    call_with(client, template, auth, expect).await
}

/// Sends one request with `headers` added to `template`'s.
pub async fn call_with(
    client: &mut Client,
    template: &Object,
    headers: impl IntoIterator<Item = (String, String)>,
    expect: Expect,
) -> Result<(), String> {
    let mut object = template.clone();
    let sent_body = object.request.as_ref().map_or(0, |r| r.raw_body.len());
    if let Some(request) = object.request.as_mut() {
        request.headers.extend(headers);
    }
    let mut request = tonic::Request::new(object);
    request.set_timeout(CALL_TIMEOUT);
    let reply = match tokio::time::timeout(CALL_TIMEOUT, client.dispatch(request)).await {
        Ok(Ok(reply)) => reply.into_inner(),
        Ok(Err(status)) => return Err(format!("gRPC {:?}: {}", status.code(), status.message())),
        Err(_) => return Err("no reply within 10 s".into()),
    };
    let request = reply.request.as_ref().ok_or("reply without request")?;
    let code = request
        .return_overrides
        .as_ref()
        .map(|o| o.response_code)
        .ok_or("reply without return_overrides")?;
    if code != -1 {
        return Err(format!("denied with {code}"));
    }
    if request.raw_body.len() != sent_body {
        return Err(format!(
            "raw_body of {} bytes back, {sent_body} sent",
            request.raw_body.len()
        ));
    }
    if expect == Expect::Allow
        && !request
            .set_headers
            .get("Authorization")
            .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7)
    {
        return Err("allowed without the Authorization set-header".into());
    }
    Ok(())
}

/// Histogram of latencies in microseconds, 1 µs to 100 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us.max(1));
}

/// Outcome of one closed-loop phase.
pub struct Phase {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
}

/// `streams` workers, spread over `clients`, each sending one request at a
/// time until `duration` is over; requests in flight then are completed and
/// counted. Returns once every worker has stopped.
pub async fn closed_loop(
    clients: &[Client],
    streams: usize,
    duration: Duration,
    template: Arc<Object>,
    tokens: Arc<Tokens>,
    expect: Expect,
) -> Phase {
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(streams);
    for worker in 0..streams.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let template = template.clone();
        let tokens = tokens.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(worker as u64 + 1);
            let mut phase = Phase {
                requests: 0,
                errors: 0,
                first_error: None,
                hist: histogram(),
                elapsed: Duration::ZERO,
            };
            while Instant::now() < deadline {
                let token = tokens.pick(&mut rng);
                let sent = Instant::now();
                let result = call(&mut client, &template, &token, expect).await;
                record(&mut phase.hist, sent.elapsed());
                phase.requests += 1;
                if let Err(e) = result {
                    phase.errors += 1;
                    phase.first_error.get_or_insert(e);
                }
            }
            phase
        }));
    }
    join_phases(workers, start).await
}

/// Sends `kind` tokens 0..n once each, `concurrency` at a time; returns the
/// number of failed requests and the first failure.
pub async fn prefill(
    clients: &[Client],
    concurrency: usize,
    kind: &'static str,
    n: u64,
) -> (u64, Option<String>) {
    let template = Arc::new(template(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..concurrency.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let template = template.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let (mut errors, mut first) = (0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (errors, first);
                }
                if let Err(e) = call(&mut client, &template, &token(kind, i), Expect::Allow).await {
                    errors += 1;
                    first.get_or_insert(e);
                }
            }
        }));
    }
    let (mut errors, mut first) = (0, None);
    for worker in workers {
        let (e, f) = worker
            .await
            .unwrap_or((1, Some("prefill worker failed".into())));
        errors += e;
        if first.is_none() {
            first = f;
        }
    }
    (errors, first)
}

/// Sends `kind` tokens `from..from + n`, each once, `streams` at a time, and
/// measures them like [`closed_loop`]: for work that must not repeat a token
/// (a shared hit is one per token and replica).
pub async fn each_once(
    clients: &[Client],
    streams: usize,
    kind: &'static str,
    from: u64,
    n: u64,
) -> Phase {
    let template = Arc::new(template(0));
    let next = Arc::new(AtomicU64::new(from));
    let end = from + n;
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..streams.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let template = template.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut phase = Phase::empty();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return phase;
                }
                let sent = Instant::now();
                let result = call(&mut client, &template, &token(kind, i), Expect::Allow).await;
                phase.note(sent.elapsed(), result);
            }
        }));
    }
    join_phases(workers, start).await
}

/// Waits for every worker and adds their figures up; a worker that panicked
/// counts as an error. `elapsed` runs from `start`.
async fn join_phases(workers: Vec<tokio::task::JoinHandle<Phase>>, start: Instant) -> Phase {
    let mut total = Phase::empty();
    for worker in workers {
        match worker.await {
            Ok(phase) => total.merge(phase),
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    total.elapsed = start.elapsed();
    total
}

impl Phase {
    pub fn empty() -> Self {
        Phase {
            requests: 0,
            errors: 0,
            first_error: None,
            hist: histogram(),
            elapsed: Duration::ZERO,
        }
    }

    /// Adds `other`'s requests, errors and latencies (not its time).
    pub fn merge(&mut self, other: Phase) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let _ = self.hist.add(&other.hist);
    }

    /// One request's outcome.
    pub fn note(&mut self, latency: Duration, result: Result<(), String>) {
        record(&mut self.hist, latency);
        self.requests += 1;
        if let Err(e) = result {
            self.errors += 1;
            self.first_error.get_or_insert(e);
        }
    }
}

/// Sends `Authorization: DPoP <token>` with each of `proofs` once,
/// `streams` at a time, measured like [`closed_loop`].
pub async fn dpop_once(
    clients: &[Client],
    streams: usize,
    template: &Arc<Object>,
    token: &str,
    proofs: Arc<Vec<String>>,
) -> Phase {
    let next = Arc::new(AtomicU64::new(0));
    let auth = Arc::new(format!("DPoP {token}"));
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..streams.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let (template, next, proofs, auth) =
            (template.clone(), next.clone(), proofs.clone(), auth.clone());
        workers.push(tokio::spawn(async move {
            let mut phase = Phase::empty();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(proof) = proofs.get(i) else {
                    return phase;
                };
                let headers = [
                    ("Authorization".to_owned(), (*auth).clone()),
                    // As Tyk passes it: the Go-canonical form of `DPoP`.
                    ("Dpop".to_owned(), proof.clone()),
                ];
                let sent = Instant::now();
                let result = call_with(&mut client, &template, headers, Expect::Allow).await;
                phase.note(sent.elapsed(), result);
            }
        }));
    }
    join_phases(workers, start).await
}
