//! A fake Curity introspection endpoint on loopback with scripted answers.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to serve
//! reqwest, counts every call, records what each request carried, and can do
//! what a real server cannot be made to do on demand: answer slowly, reset the
//! connection, or send garbage.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake answers for a token.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a JWT (`Content-Type: application/jwt`) carrying these claims.
    Jwt(Claims),
    /// 204 No Content: Curity's "not active" in JWT mode.
    NoContent,
    /// 200 `{"active":false}`.
    InactiveJson,
    /// This status with a small JSON error body.
    Status(u16),
    /// Wait, then behave.
    Slow(Duration, Box<Behaviour>),
    /// Read the request, then reset the connection.
    Reset,
    /// A 200 whose headers promise a longer body than is sent before the
    /// connection is reset: a failure in the middle of the answer.
    Truncated,
    /// Behave, then reset the connection once it is idle (a keep-alive
    /// connection the server drops between requests).
    ThenResetIdle(Box<Behaviour>),
    /// 200 with this body and `Content-Type: text/html`.
    Garbage(&'static str),
    /// 200 with this `Content-Type` and body (RFC 7662 JSON, RFC 9701).
    Answer(&'static str, String),
}

/// The caching headers most authorization servers put on every response,
/// introspection included (node-oidc-provider, Keycloak, Spring Authorization
/// Server): for HTTP caches between client and server, not for the gateway.
pub const NO_STORE_HEADERS: &[(&str, &str)] =
    &[("Cache-Control", "no-store"), ("Pragma", "no-cache")];

/// Claims of a scripted JWT.
#[derive(Debug, Clone)]
pub struct Claims {
    pub exp: Option<u64>,
    pub sub: String,
    pub extra: serde_json::Value,
    /// `Cache-Control: max-age` on the answer.
    pub max_age: Option<u64>,
}

impl Claims {
    /// A token for `sub` valid for `seconds` from now.
    pub fn valid_for(sub: &str, seconds: u64) -> Self {
        Claims {
            exp: Some(now() + seconds),
            sub: sub.to_owned(),
            extra: serde_json::json!({ "client_id": "web-app", "scope": "read write" }),
            max_age: None,
        }
    }
}

/// A JWT-shaped answer for `claims` (signature bytes are random-looking but
/// not checked by the plugin).
pub fn make_jwt(claims: &Claims, serial: usize) -> String {
    let header = r#"{"alg":"RS256","typ":"JWT","kid":"fake-as-key"}"#;
    let mut payload = serde_json::json!({
        "sub": claims.sub,
        "iss": "https://idsvr.test/oauth/v2/oauth-anonymous",
        "jti": format!("jti-{serial}"),
    });
    if let Some(exp) = claims.exp {
        payload["exp"] = exp.into();
    }
    if let (Some(obj), Some(extra)) = (payload.as_object_mut(), claims.extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(format!(
            "signature-{serial}-of-the-fake-authorization-server"
        ))
    )
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The `token` form field, decoded.
    pub token: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    /// Per token: answers in order; the last one repeats.
    script: Mutex<HashMap<String, Vec<Behaviour>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
    default: Mutex<Option<Behaviour>>,
    /// Header lines (`Name: value\r\n`) sent on every response.
    always: Mutex<String>,
    issued: Mutex<HashMap<String, String>>,
    requests: Mutex<Vec<Recorded>>,
    calls: AtomicUsize,
    connections: AtomicUsize,
    /// Connections still to be closed as soon as they are accepted.
    drop_next: AtomicUsize,
}

/// Handle to a running fake; the server stops when the handle is dropped.
pub struct FakeAs {
    addr: SocketAddr,
    state: Arc<State>,
    task: Mutex<tokio::task::JoinHandle<()>>,
    tls_ca_pem: Option<String>,
    client_identity: Option<(String, String)>,
}

impl Drop for FakeAs {
    fn drop(&mut self) {
        self.task.lock().unwrap().abort();
        for conn in self.state.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl FakeAs {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let task = accept_plain(listener, state.clone());
        FakeAs {
            addr,
            state,
            task: Mutex::new(task),
            tls_ca_pem: None,
            client_identity: None,
        }
    }

    /// The same fake over TLS, with a certificate for `localhost` issued by a
    /// fresh CA whose PEM is [`FakeAs::ca_pem`].
    pub async fn start_tls() -> Self {
        Self::start_tls_with(false).await
    }

    /// A TLS fake that also requires a client certificate from the same CA;
    /// [`FakeAs::client_identity`] holds one.
    pub async fn start_mtls() -> Self {
        Self::start_tls_with(true).await
    }

    async fn start_tls_with(mutual: bool) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake-as test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tyk-phantom-token test client");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

        let builder = tokio_rustls::rustls::ServerConfig::builder();
        let builder = if mutual {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.add(ca_cert.der().clone()).unwrap();
            let verifier =
                tokio_rustls::rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![server_cert.der().clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                    server_key.serialize_der().into(),
                ),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if drop_if_asked(&shared) {
                    drop(stream);
                    continue;
                }
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_connection(tls, shared).await;
                    }
                });
            }
        });
        FakeAs {
            addr,
            state,
            task: Mutex::new(task),
            tls_ca_pem: Some(ca_cert.pem()),
            client_identity: Some((client_cert.pem(), client_key.serialize_pem())),
        }
    }

    /// PEM certificate and key of a client the TLS fake's CA issued.
    pub fn client_identity(&self) -> Option<(&str, &str)> {
        self.client_identity
            .as_ref()
            .map(|(c, k)| (c.as_str(), k.as_str()))
    }

    /// The introspection URL (`https://localhost:…` for a TLS fake).
    pub fn url(&self) -> String {
        match self.tls_ca_pem {
            Some(_) => format!(
                "https://localhost:{}/oauth/v2/oauth-introspect",
                self.addr.port()
            ),
            None => format!("http://{}/oauth/v2/oauth-introspect", self.addr),
        }
    }

    /// PEM of the CA that issued a TLS fake's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls_ca_pem.as_deref()
    }

    /// Takes the server down: the port refuses connections and open ones are
    /// closed. (Plain-HTTP fakes only.)
    pub fn go_down(&self) {
        self.task.lock().unwrap().abort();
        for conn in self.state.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Brings it back on the same port.
    pub async fn come_up(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        *self.task.lock().unwrap() = accept_plain(listener, self.state.clone());
    }

    /// Scripts the answer for one token.
    pub fn script(&self, token: &str, behaviour: Behaviour) {
        self.script_sequence(token, vec![behaviour]);
    }

    /// Scripts successive answers for one token; the last one repeats.
    pub fn script_sequence(&self, token: &str, behaviours: Vec<Behaviour>) {
        assert!(!behaviours.is_empty());
        self.state
            .script
            .lock()
            .unwrap()
            .insert(token.to_owned(), behaviours);
    }

    /// The most requests this fake has been answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Scripts the answer for tokens without their own script (without one,
    /// unknown tokens get 204).
    pub fn script_default(&self, behaviour: Behaviour) {
        *self.state.default.lock().unwrap() = Some(behaviour);
    }

    /// Sends these headers on every response from now on, as real servers
    /// send their caching headers (see [`NO_STORE_HEADERS`]).
    pub fn always_send(&self, headers: &[(&str, &str)]) {
        *self.state.always.lock().unwrap() = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
    }

    /// Total introspection calls.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Closes the next `n` connections as soon as they are accepted, before
    /// reading anything: for a TLS fake, before the handshake.
    pub fn drop_next_connections(&self, n: usize) {
        self.state.drop_next.store(n, Ordering::SeqCst);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Calls for one token.
    pub fn calls_for(&self, token: &str) -> usize {
        self.requests().iter().filter(|r| r.token == token).count()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The last JWT issued for `token`.
    pub fn jwt_for(&self, token: &str) -> Option<String> {
        self.state.issued.lock().unwrap().get(token).cloned()
    }
}

struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_plain(listener: TcpListener, state: Arc<State>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if drop_if_asked(&state) {
                drop(stream);
                continue;
            }
            let conn = tokio::spawn(serve_connection(stream, state.clone()));
            state.conns.lock().unwrap().push(conn.abort_handle());
        }
    })
}

/// Whether a connection just accepted is to be closed at once (counted as
/// a connection, never read).
fn drop_if_asked(state: &State) -> bool {
    let dropped = state
        .drop_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if dropped {
        state.connections.fetch_add(1, Ordering::SeqCst);
    }
    dropped
}

/// A connection the fake can reset (TCP) or at least close (TLS).
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {
    fn reset(&self);
}

impl Connection for TcpStream {
    fn reset(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Connection for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset(&self) {
        let _ = self.get_ref().0.set_zero_linger();
    }
}

async fn serve_connection(mut stream: impl Connection, state: Arc<State>) {
    state.connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = Vec::with_capacity(8192);
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let serial = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let behaviour = {
            let mut script = state.script.lock().unwrap();
            let own = script.get_mut(&request.token).map(|queue| {
                if queue.len() > 1 {
                    queue.remove(0)
                } else {
                    queue[0].clone()
                }
            });
            own.or_else(|| state.default.lock().unwrap().clone())
                .unwrap_or(Behaviour::NoContent)
        };
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _done = InFlightGuard(&state.in_flight);
        let token = request.token.clone();
        state.requests.lock().unwrap().push(request);
        let mut behaviour = behaviour;
        let mut reset_when_idle = false;
        loop {
            match behaviour {
                Behaviour::Slow(delay, then) => {
                    tokio::time::sleep(delay).await;
                    behaviour = *then;
                }
                Behaviour::ThenResetIdle(then) => {
                    reset_when_idle = true;
                    behaviour = *then;
                }
                _ => break,
            }
        }
        let always = state.always.lock().unwrap().clone();
        let response = match behaviour {
            Behaviour::Jwt(claims) => {
                let jwt = make_jwt(&claims, serial);
                state.issued.lock().unwrap().insert(token, jwt.clone());
                let cache = claims
                    .max_age
                    .map(|m| format!("Cache-Control: max-age={m}\r\n"))
                    .unwrap_or_default();
                response(200, "application/jwt", &format!("{always}{cache}"), &jwt)
            }
            Behaviour::NoContent => format!("HTTP/1.1 204 No Content\r\n{always}\r\n"),
            Behaviour::InactiveJson => {
                response(200, "application/json", &always, r#"{"active":false}"#)
            }
            Behaviour::Status(code) => response(
                code,
                "application/json",
                &always,
                r#"{"error":"server_error","error_description":"internal detail from the fake AS"}"#,
            ),
            Behaviour::Garbage(body) => response(200, "text/html", &always, body),
            Behaviour::Answer(content_type, body) => response(200, content_type, &always, &body),
            Behaviour::Reset => {
                stream.reset();
                return;
            }
            Behaviour::Truncated => {
                let jwt = make_jwt(&Claims::valid_for("cut", 600), serial);
                let head = format!(
                    "HTTP/1.1 200 Scripted\r\nContent-Type: application/jwt\r\nContent-Length: {}\r\n\r\n",
                    jwt.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&jwt.as_bytes()[..jwt.len() / 2]).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                stream.reset();
                return;
            }
            Behaviour::Slow(..) | Behaviour::ThenResetIdle(_) => unreachable!(),
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if reset_when_idle {
            let _ = stream.flush().await;
            // Long enough for the client to read the answer and pool the
            // connection; then the connection dies while idle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.reset();
            return;
        }
    }
}

fn response(status: u16, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<Recorded> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = req.parse(buf).ok()? {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let method = req.method?.to_owned();
            let path = req.path?.to_owned();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_len + length {
                read_more(stream, buf).await?;
            }
            let body = String::from_utf8_lossy(&buf[head_len..head_len + length]).into_owned();
            buf.drain(..head_len + length);
            let token = form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            return Some(Recorded {
                method,
                path,
                headers,
                body,
                token,
            });
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// An address on loopback where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/oauth/v2/oauth-introspect")
}
