//! The plugin end to end against a real OAuth server: node-oidc-provider
//! (started by the tests on loopback) answers RFC 7662 JSON and RFC 9701
//! signed introspection; the fake Tyk gateway calls the plugin in-process;
//! the JWT the upstream receives is minted by the plugin and verified here
//! with the JWKS its admin endpoint serves.
//!
//! A loopback proxy stands between the plugin and the server: it passes
//! every request and answer through unchanged (headers included), counts
//! introspections, and on demand flips one character of a signed answer's
//! signature (a fault the real server cannot be made to produce).

#[allow(dead_code)]
#[path = "support/dpop_client.rs"]
mod dpop_client;
#[allow(dead_code)]
#[path = "support/fake_tyk.rs"]
mod fake_tyk;
#[path = "support/oidc_provider.rs"]
mod oidc_provider;

#[path = "oidc_e2e/dpop.rs"]
mod dpop;
#[path = "oidc_e2e/setup_probe.rs"]
mod setup_probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fake_tyk::{Api, ClientRequest, Gateway, Outcome};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oidc_provider::OidcProvider;
use tokio::sync::oneshot;
use tyk_phantom_token::app::{App, StartError};
use tyk_phantom_token::config::{Config, ListenAddr, MapSource};

const MINTED_ISSUER: &str = "https://gateway.example";
const MINTED_AUDIENCE: &str = "orders-api";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The introspection traffic, passed through and observed.
#[derive(Clone)]
struct ProxyState {
    target: String,
    http: reqwest::Client,
    introspections: Arc<AtomicUsize>,
    /// `Cache-Control` of every introspection answer, as the server sent it.
    cache_control: Arc<Mutex<Vec<String>>>,
    tamper: Arc<AtomicBool>,
    /// Replace each signed answer with the same statement in plain JSON, as
    /// anyone on the path could.
    downgrade: Arc<AtomicBool>,
}

struct Proxy {
    addr: SocketAddr,
    state: ProxyState,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ProxyState {
            target: target.to_owned(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            introspections: Arc::default(),
            cache_control: Arc::default(),
            tamper: Arc::default(),
            downgrade: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { addr, state }
    }

    fn introspection_url(&self) -> String {
        format!("http://{}/token/introspection", self.addr)
    }

    fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let introspection = uri.path() == "/token/introspection";
    let mut request = state
        .http
        .request(method, format!("{}{path}", state.target))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = response.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let mut body = response.bytes().await.unwrap_or_default().to_vec();
    if introspection {
        state.introspections.fetch_add(1, Ordering::SeqCst);
        let cache_control = out_headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        state.cache_control.lock().unwrap().push(cache_control);
        let signed = out_headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/token-introspection+jwt"));
        if signed && state.tamper.load(Ordering::SeqCst) {
            // One character in the middle of the signature.
            let at = body.len() - 10;
            body[at] = if body[at] == b'A' { b'B' } else { b'A' };
        }
        if signed && state.downgrade.load(Ordering::SeqCst) {
            let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(
                std::str::from_utf8(&body).unwrap(),
            )
            .unwrap();
            body = claims["token_introspection"].to_string().into_bytes();
            out_headers.insert("content-type", "application/json".parse().unwrap());
        }
    }
    (status, out_headers, body).into_response()
}

/// The plugin in-process with its admin endpoint, behind the fake gateway.
struct Plugin {
    gateway: Gateway,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

fn base_env(provider: &OidcProvider) -> HashMap<String, String> {
    let gateway = &provider.clients.gateway;
    HashMap::from(
        [
            ("INTROSPECTION_ALLOW_HTTP", "true"),
            ("CLIENT_ID", gateway.client_id.as_str()),
            ("CLIENT_SECRET", gateway.secret()),
            ("SESSION_KEY_SECRET", "session-key-secret-for-tests"),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("ADMIN_ADDR", "127.0.0.1:0"),
            ("TIMEOUT_SECONDS", "5"),
            ("SHUTDOWN_GRACE_SECONDS", "1"),
            ("MINTED_ISSUER", MINTED_ISSUER),
            ("MINTED_AUDIENCE", MINTED_AUDIENCE),
            ("MINTED_CLAIMS", "department"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

/// A fresh P-256 signing key in a PEM file that lives as long as the dir.
fn signing_key(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("mint.pem");
    std::fs::write(
        &path,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    path.display().to_string()
}

async fn start_plugin(env: &HashMap<String, String>) -> Plugin {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = Config::from_source(&MapSource::new(&pairs)).expect("test configuration is valid");
    let app = App::bind(&config).await.expect("the plugin starts");
    let ListenAddr::Tcp(addr) = *app.grpc_addr() else {
        panic!("TCP");
    };
    let admin = app.admin_addr().expect("admin endpoint");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Plugin {
        gateway: Gateway::connect(addr, Api::default()).await,
        admin,
        _stop: stop,
    }
}

impl Plugin {
    async fn get(&self, token: &str) -> Outcome {
        self.gateway
            .request(ClientRequest::get("/orders/api/items").bearer(token))
            .await
    }

    async fn jwks(&self) -> JwkSet {
        let response = reqwest::get(format!("http://{}/.well-known/jwks.json", self.admin))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/jwk-set+json"
        );
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }
}

/// The JWT the upstream received, verified with the plugin's published
/// JWKS as an API would: its header and claims.
async fn upstream_jwt(
    plugin: &Plugin,
    outcome: &Outcome,
) -> (jsonwebtoken::Header, serde_json::Value) {
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let upstream = outcome.upstream.as_ref().expect("forwarded upstream");
    let jwt = upstream
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer JWT upstream");
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks = plugin.jwks().await;
    let kid = header.kid.as_deref().expect("kid");
    let jwk = jwks.find(kid).expect("the kid is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[MINTED_AUDIENCE]);
    validation.set_issuer(&[MINTED_ISSUER]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("the upstream JWT verifies with the plugin's JWKS");
    (header, data.claims)
}

#[tokio::test]
async fn json_answers_become_minted_jwts_that_verify_and_are_cached() {
    let provider = OidcProvider::start().await;
    let proxy = Proxy::start(&provider.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    env.insert("INTROSPECTION_URL".into(), proxy.introspection_url());
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    let token = provider
        .issue_token(serde_json::json!({
            "sub": "alice", "scope": "orders:read", "ttl": 300,
            "extra": {"department": "ops", "secret_level": 3},
        }))
        .await;
    let issued = now();
    let first = plugin.get(&token).await;
    let (header, claims) = upstream_jwt(&plugin, &first).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["iss"], MINTED_ISSUER);
    assert_eq!(claims["aud"], MINTED_AUDIENCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], provider.clients.app.client_id);
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["department"], "ops", "a chosen claim is copied");
    assert!(claims.get("secret_level").is_none(), "others are not");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp <= issued + 300 + 2, "never later than the token's exp");
    assert!(exp > issued + 250);
    assert_ne!(
        first.upstream.as_ref().unwrap().header("Authorization"),
        Some(format!("Bearer {token}").as_str()),
        "the opaque token never goes upstream"
    );

    for _ in 0..19 {
        let again = plugin.get(&token).await;
        assert_eq!(again.status(), 200);
        assert_eq!(
            again.upstream.as_ref().unwrap().header("Authorization"),
            first.upstream.as_ref().unwrap().header("Authorization"),
            "the cached JWT is forwarded"
        );
    }
    assert_eq!(proxy.introspections(), 1, "20 requests, 1 introspection");
    assert_eq!(
        proxy.state.cache_control.lock().unwrap().as_slice(),
        ["no-store"],
        "the server's own caching header did not stop the plugin's cache"
    );
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    env.insert(
        "INTROSPECTION_URL".into(),
        provider.introspection_endpoint(),
    );
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    let revoked = provider.client_credentials_token("orders:read").await;
    assert_eq!(provider.revoke(&revoked).await, 200);
    let outcome = plugin.get(&revoked).await;
    assert_eq!(outcome.status(), 401, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());

    let short = provider
        .issue_token(serde_json::json!({"sub": "bob", "ttl": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let outcome = plugin.get(&short).await;
    assert_eq!(outcome.status(), 401, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());

    // A live client-credentials token passes: sub is the client.
    let live = provider.client_credentials_token("orders:read").await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&live).await).await;
    assert_eq!(claims["sub"], provider.clients.app.client_id);
}

#[tokio::test]
async fn signed_answers_are_verified_with_discovered_keys_and_a_tampered_one_is_a_502() {
    let provider = OidcProvider::start().await;
    let proxy = Proxy::start(&provider.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    // The explicit endpoint wins over the discovered one; the JWKS comes
    // from discovery.
    env.insert("ISSUER".into(), provider.issuer.clone());
    env.insert("INTROSPECTION_URL".into(), proxy.introspection_url());
    env.insert(
        "INTROSPECTION_ACCEPT".into(),
        "application/token-introspection+jwt".into(),
    );
    env.insert("INTROSPECTION_SIGNING_ALGS".into(), "ES256".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    let token = provider
        .issue_token(serde_json::json!({"sub": "carol", "extra": {"department": "sales"}}))
        .await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["department"], "sales");
    assert_eq!(proxy.introspections(), 1, "through the explicit URL");

    let revoked = provider.client_credentials_token("orders:read").await;
    assert_eq!(provider.revoke(&revoked).await, 200);
    assert_eq!(plugin.get(&revoked).await.status(), 401);

    proxy.state.tamper.store(true, Ordering::SeqCst);
    let other = provider
        .issue_token(serde_json::json!({"sub": "dave"}))
        .await;
    let outcome = plugin.get(&other).await;
    assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none(), "never an allow");
    assert_eq!(proxy.introspections(), 3);

    // The same statement as plain JSON (anyone on the path can send
    // application/json): with signed answers configured it cannot allow,
    // and an inactive one is still an ordinary 401.
    proxy.state.tamper.store(false, Ordering::SeqCst);
    proxy.state.downgrade.store(true, Ordering::SeqCst);
    let downgraded = provider
        .issue_token(serde_json::json!({"sub": "erin"}))
        .await;
    let outcome = plugin.get(&downgraded).await;
    assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none(), "never an allow");
    let gone = provider.client_credentials_token("orders:read").await;
    assert_eq!(provider.revoke(&gone).await, 200);
    assert_eq!(plugin.get(&gone).await.status(), 401);
    assert_eq!(proxy.introspections(), 5);
}

#[tokio::test]
async fn discovery_alone_with_client_secret_post() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    let post = &provider.clients.gateway_post;
    env.insert("ISSUER".into(), provider.issuer.clone());
    env.insert("CLIENT_ID".into(), post.client_id.clone());
    env.insert("CLIENT_SECRET".into(), post.secret().to_owned());
    env.insert("CLIENT_AUTH_METHOD".into(), "client_secret_post".into());
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    let token = provider
        .issue_token(serde_json::json!({"sub": "erin"}))
        .await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
    assert_eq!(claims["sub"], "erin");
}

#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_per_introspection() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let assertion_key = dir.path().join("assertion.pem");
    std::fs::write(&assertion_key, &provider.assertion_key_pem).unwrap();
    let mut env = base_env(&provider);
    env.insert("ISSUER".into(), provider.issuer.clone());
    env.insert(
        "CLIENT_ID".into(),
        provider.clients.gateway_jwt.client_id.clone(),
    );
    // No client secret: private_key_jwt needs none (base_env sets
    // SESSION_KEY_SECRET, which is then required).
    env.remove("CLIENT_SECRET");
    env.insert("CLIENT_AUTH_METHOD".into(), "private_key_jwt".into());
    env.insert(
        "CLIENT_ASSERTION_KEY_FILE".into(),
        assertion_key.display().to_string(),
    );
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;

    // Assertions are single-use at the server: two introspections pass only
    // if each carries its own.
    for sub in ["frank", "grace"] {
        let token = provider.issue_token(serde_json::json!({"sub": sub})).await;
        let (_, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
        assert_eq!(claims["sub"], sub, "{}", provider.stderr());
    }
}

#[tokio::test]
async fn an_unreachable_issuer_stops_the_start_with_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = MapSource::new(&[
        ("ISSUER", issuer.as_str()),
        ("INTROSPECTION_ALLOW_HTTP", "true"),
        ("CLIENT_ID", "gateway"),
        ("CLIENT_SECRET", "secret"),
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("TIMEOUT_SECONDS", "1"),
    ]);
    let config = Config::from_source(&env).expect("valid");
    match App::bind(&config).await {
        Err(error @ StartError::Discovery(_)) => {
            let text = error.to_string();
            assert!(text.contains("ISSUER"), "{text}");
            assert!(text.contains("unreachable"), "{text}");
        }
        Err(other) => panic!("expected a discovery error, got {other}"),
        Ok(_) => panic!("started without the AS's metadata"),
    }
}

/// An API of the same gateway with this `config_data`.
fn api_with(config_data: serde_json::Value) -> Api {
    Api {
        api_id: "step-up-api".into(),
        config_data: Some(config_data),
        ..Api::default()
    }
}

#[tokio::test]
async fn step_up_uses_the_acr_and_auth_time_the_server_puts_in_its_answers() {
    let provider = OidcProvider::start().await;
    let proxy = Proxy::start(&provider.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    env.insert("INTROSPECTION_URL".into(), proxy.introspection_url());
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    let plugin = start_plugin(&env).await;
    let mfa = "urn:example:acr:mfa";
    let payments = api_with(serde_json::json!({"required_acr": [mfa], "max_auth_age": 300}));
    let get = |token: &str| ClientRequest::get("/payments").bearer(token);

    // acr and auth_time as the server adds them to a user's token (its
    // extraTokenClaims), in its introspection answer.
    let strong = provider
        .issue_token(serde_json::json!({
            "sub": "frank", "extra": {"acr": mfa, "auth_time": now() - 30},
        }))
        .await;
    let allowed = plugin.gateway.request_to(&payments, get(&strong)).await;
    let (_, claims) = upstream_jwt(&plugin, &allowed).await;
    assert_eq!(claims["acr"], mfa, "the minted JWT carries acr");
    assert!(claims["auth_time"].as_u64().is_some());

    let weak = provider
        .issue_token(serde_json::json!({
            "sub": "gina", "extra": {"acr": "urn:example:acr:pwd", "auth_time": now()},
        }))
        .await;
    // Cached through an API without step-up first; the check still runs.
    assert_eq!(plugin.get(&weak).await.status(), 200);
    let denied = plugin.gateway.request_to(&payments, get(&weak)).await;
    assert_eq!(denied.status(), 401, "{:?}", denied.client);
    assert_eq!(
        denied.response().header("WWW-Authenticate"),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"A different authentication level is required\", \
             acr_values=\"urn:example:acr:mfa\", max_age=\"300\""
        )
    );
    assert!(denied.upstream.is_none());

    let stale = provider
        .issue_token(serde_json::json!({
            "sub": "hank", "extra": {"acr": mfa, "auth_time": now() - 3600},
        }))
        .await;
    let denied = plugin.gateway.request_to(&payments, get(&stale)).await;
    assert_eq!(denied.status(), 401, "{:?}", denied.client);
    assert!(
        denied
            .response()
            .header("WWW-Authenticate")
            .is_some_and(|h| h.contains("More recent authentication is required")),
        "{:?}",
        denied.response().header("WWW-Authenticate")
    );
    assert!(denied.upstream.is_none());
    assert_eq!(proxy.introspections(), 3, "one per token");
}

#[tokio::test]
async fn verify_jwt_allows_only_what_the_real_server_signed() {
    // node-oidc-provider hands no JWT to forward (JSON and RFC 9701 only),
    // so what VERIFY_JWT can verify from it is its signed answers.
    let provider = OidcProvider::start().await;
    let proxy = Proxy::start(&provider.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&provider);
    env.insert("ISSUER".into(), provider.issuer.clone());
    env.insert("INTROSPECTION_URL".into(), proxy.introspection_url());
    env.insert("SIGNING_KEY_FILE".into(), signing_key(&dir));
    env.insert("VERIFY_JWT".into(), "true".into());
    env.insert("JWT_AUDIENCE".into(), MINTED_AUDIENCE.into());

    // Plain JSON carries nothing to verify: refused at start-up, by name.
    env.insert("INTROSPECTION_ACCEPT".into(), "application/json".into());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let problems = Config::from_source(&MapSource::new(&pairs))
        .expect_err("nothing would be verified")
        .problems
        .join("; ");
    assert!(problems.contains("INTROSPECTION_JWT_FIELD"), "{problems}");

    // Signed answers: verified with the discovered keys; the JWT the plugin
    // mints from them is its own and is not checked against the AS's keys.
    env.insert(
        "INTROSPECTION_ACCEPT".into(),
        "application/token-introspection+jwt".into(),
    );
    env.insert("INTROSPECTION_SIGNING_ALGS".into(), "ES256".into());
    let plugin = start_plugin(&env).await;
    let token = provider
        .issue_token(serde_json::json!({"sub": "ivy"}))
        .await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
    assert_eq!(claims["sub"], "ivy");

    // The same statement sent unsigned, as anyone on the path could: the
    // real server's own answer, and still never an allow.
    proxy.state.downgrade.store(true, Ordering::SeqCst);
    let other = provider
        .issue_token(serde_json::json!({"sub": "jay"}))
        .await;
    let outcome = plugin.get(&other).await;
    assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none());
    assert_eq!(proxy.introspections(), 2);
}
