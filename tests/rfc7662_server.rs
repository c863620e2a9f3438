//! The plugin against a second real OAuth server, of another family than
//! node-oidc-provider: django-oauth-toolkit (started by the tests on
//! loopback, see tests/support/django_oauth.rs). Its RFC 7662 answers differ
//! where it matters: the user is named in `username` and there is no `sub`;
//! `aud` is there only when the token was issued for RFC 8707 resources; no
//! caching headers at all.
//!
//! First what the server sends, read from its real HTTP answers (the facts
//! the plugin's behaviour rests on); then the plugin end to end through the
//! fake Tyk gateway, minting the JWT the upstream receives, verified here
//! with the JWKS its admin endpoint serves. Introspections are counted from
//! the server's own request log.

#[path = "support/django_oauth.rs"]
mod django_oauth;
#[allow(dead_code)]
#[path = "support/fake_tyk.rs"]
mod fake_tyk;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use django_oauth::DjangoOauth;
use fake_tyk::{Api, ClientRequest, Gateway, Outcome};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::oneshot;
use tyk_phantom_token::app::App;
use tyk_phantom_token::config::{Config, ListenAddr, MapSource};

const MINTED_ISSUER: &str = "https://gateway.example";
const MINTED_AUDIENCE: &str = "orders-api";
const INVALID_TOKEN: &str = "Bearer realm=\"api\", error=\"invalid_token\"";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token the server never issued, shaped like its own (30 characters
/// from the same alphabet).
fn unknown_token() -> String {
    (0..30)
        .map(|_| fastrand::alphanumeric())
        .collect::<String>()
}

/// The member names of a JSON object.
fn members(body: &serde_json::Value) -> BTreeSet<&str> {
    body.as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Introspects `token` as the gateway: the status, the headers as sent and
/// the body as JSON.
async fn introspect(
    server: &DjangoOauth,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = server.introspect(token).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("introspection body");
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {:?}\nserver stderr:\n{}",
            String::from_utf8_lossy(&body),
            server.stderr()
        )
    });
    (status, headers, body)
}

#[tokio::test]
async fn what_the_server_sends_in_its_introspection_answers() {
    let server = DjangoOauth::start().await;

    // An active user's token: the user is `username`; no `sub`, no `aud`.
    let alice = server.user_token("alice", "orders:read", None).await;
    let issued = now();
    let (status, headers, body) = introspect(&server, &alice).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    for header in ["cache-control", "pragma", "expires"] {
        assert!(
            !headers.contains_key(header),
            "no caching header: {header}: {:?}",
            headers.get(header)
        );
    }
    assert_eq!(
        members(&body),
        BTreeSet::from(["active", "client_id", "exp", "scope", "username"]),
        "{body}"
    );
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], "alice");
    assert_eq!(body["client_id"], server.clients.app.client_id);
    assert_eq!(body["scope"], "orders:read");
    let exp = body["exp"].as_u64().expect("exp is an integer");
    assert!(
        (issued + 290..=issued + 301).contains(&exp),
        "exp {exp} is the token's lifetime (300 s) after {issued}"
    );

    // Another user of the same client: only `username` tells them apart.
    let bob = server
        .user_token("bob", "orders:read orders:write", None)
        .await;
    let (_, _, body) = introspect(&server, &bob).await;
    assert_eq!(body["username"], "bob");
    assert_eq!(body["client_id"], server.clients.app.client_id);
    assert_eq!(body["scope"], "orders:read orders:write");
    assert!(body.get("sub").is_none(), "{body}");

    // Asked for an RFC 8707 resource, the answer carries `aud`: an array.
    let bound = server
        .user_token("alice", "orders:read", Some("https://orders.example"))
        .await;
    let (_, headers, body) = introspect(&server, &bound).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        members(&body),
        BTreeSet::from(["active", "aud", "client_id", "exp", "scope", "username"]),
        "{body}"
    );
    assert_eq!(body["aud"], serde_json::json!(["https://orders.example"]));
    assert_eq!(body["username"], "alice");
    let billing = server
        .user_token("bob", "orders:read", Some("https://billing.example"))
        .await;
    let (_, _, body) = introspect(&server, &billing).await;
    assert_eq!(body["aud"], serde_json::json!(["https://billing.example"]));

    // A client-credentials token: no resource owner, so no `username`.
    let service = server.client_token("orders:read").await;
    let (status, _, body) = introspect(&server, &service).await;
    assert_eq!(status, 200);
    assert_eq!(
        members(&body),
        BTreeSet::from(["active", "client_id", "exp", "scope"]),
        "{body}"
    );
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], server.clients.service.client_id);

    // A string it never issued: inactive, nothing else.
    let (status, headers, body) = introspect(&server, &unknown_token()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(!headers.contains_key("cache-control"));
    assert_eq!(body, serde_json::json!({"active": false}));

    // A revoked token (RFC 7009): inactive.
    assert_eq!(server.revoke(&alice).await, 200);
    let (status, _, body) = introspect(&server, &alice).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"active": false}));
    let (_, _, body) = introspect(&server, &bob).await;
    assert_eq!(body["active"], true, "only that token is revoked");

    // The gateway with a wrong secret: 403 with an empty body, not an
    // RFC 7662 answer.
    let response = server
        .introspect_as(&server.gateway().client_id, "not-the-secret", &bob)
        .await;
    assert_eq!(response.status(), 403);
    assert!(response.bytes().await.unwrap().is_empty());
}

/// The plugin in-process with its admin endpoint, behind the fake gateway.
struct Plugin {
    gateway: Gateway,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// What every test here configures: RFC 7662 JSON, minted JWTs.
fn base_env(server: &DjangoOauth, key_dir: &tempfile::TempDir) -> HashMap<String, String> {
    let key = key_dir.path().join("mint.pem");
    std::fs::write(
        &key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let gateway = server.gateway();
    HashMap::from(
        [
            ("INTROSPECTION_URL", server.introspection_endpoint.as_str()),
            ("INTROSPECTION_ALLOW_HTTP", "true"),
            ("INTROSPECTION_ACCEPT", "application/json"),
            ("CLIENT_ID", gateway.client_id.as_str()),
            ("CLIENT_SECRET", gateway.client_secret.as_str()),
            ("SIGNING_KEY_FILE", key.to_str().unwrap()),
            ("MINTED_ISSUER", MINTED_ISSUER),
            ("MINTED_AUDIENCE", MINTED_AUDIENCE),
            // The server names the user only there.
            ("MINTED_CLAIMS", "username"),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("ADMIN_ADDR", "127.0.0.1:0"),
            ("TIMEOUT_SECONDS", "10"),
            ("SHUTDOWN_GRACE_SECONDS", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
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

/// Introspection requests the server has logged so far.
fn introspections(server: &DjangoOauth) -> usize {
    server
        .stderr()
        .lines()
        .filter(|line| line.contains("\"POST /o/introspect/ "))
        .count()
}

/// The server logs a request just after answering it: waits (up to 5 s)
/// for at least `at_least` lines, then returns the count.
async fn introspections_after(server: &DjangoOauth, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while introspections(server) < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    introspections(server)
}

fn assert_invalid_token(outcome: &Outcome) {
    assert_eq!(outcome.status(), 401, "{:?}", outcome.client);
    assert!(outcome.upstream.is_none(), "never forwarded");
    assert_eq!(
        outcome.response().header("WWW-Authenticate"),
        Some(INVALID_TOKEN)
    );
}

#[tokio::test]
async fn a_users_token_is_allowed_with_a_minted_jwt_that_is_cached_without_caching_headers() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = start_plugin(&base_env(&server, &dir)).await;

    let token = server.user_token("alice", "orders:read", None).await;
    let issued = now();
    let first = plugin.get(&token).await;
    let (header, claims) = upstream_jwt(&plugin, &first).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["iss"], MINTED_ISSUER);
    assert_eq!(claims["aud"], MINTED_AUDIENCE);
    assert_eq!(claims["client_id"], server.clients.app.client_id);
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["username"], "alice", "copied from the answer");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp <= issued + 300 + 1, "never later than the token's exp");
    assert!(exp > issued + 250);
    let forwarded = first.upstream.as_ref().unwrap().header("Authorization");
    assert_ne!(
        forwarded,
        Some(format!("Bearer {token}").as_str()),
        "the opaque token never goes upstream"
    );

    // No Cache-Control from the server: the answer is cached all the same.
    for _ in 0..9 {
        let again = plugin.get(&token).await;
        assert_eq!(again.status(), 200);
        assert_eq!(
            again.upstream.as_ref().unwrap().header("Authorization"),
            forwarded,
            "the cached JWT is forwarded"
        );
    }
    assert_eq!(
        introspections_after(&server, 1).await,
        1,
        "10 requests, 1 introspection"
    );

    // Another user of the same client gets their own JWT.
    let bob = server.user_token("bob", "orders:read", None).await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&bob).await).await;
    assert_eq!(claims["username"], "bob");
    assert_eq!(claims["client_id"], server.clients.app.client_id);

    // A client-credentials token: the subject is the client, no username.
    let service = server.client_token("orders:read").await;
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&service).await).await;
    assert_eq!(claims["sub"], server.clients.service.client_id);
    assert_eq!(claims["client_id"], server.clients.service.client_id);
    assert!(claims.get("username").is_none(), "{claims}");
}

#[tokio::test]
async fn a_token_the_server_never_issued_is_a_401_invalid_token() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = start_plugin(&base_env(&server, &dir)).await;

    let outcome = plugin.get(&unknown_token()).await;
    assert_invalid_token(&outcome);
    assert_eq!(
        introspections_after(&server, 1).await,
        1,
        "the server was asked"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_once_revalidation_finds_it_inactive() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&server, &dir);
    env.insert("REVALIDATE_AFTER_SECONDS".into(), "1".into());
    let plugin = start_plugin(&env).await;

    // Revoked before its first use: refused at once.
    let early = server.user_token("bob", "orders:read", None).await;
    assert_eq!(server.revoke(&early).await, 200);
    assert_invalid_token(&plugin.get(&early).await);

    let token = server.user_token("alice", "orders:read", None).await;
    assert_eq!(plugin.get(&token).await.status(), 200);
    assert_eq!(server.revoke(&token).await, 200);
    // Within the revalidation period the cached answer still serves it.
    let cached = plugin.get(&token).await;
    assert_eq!(cached.status(), 200, "{:?}", cached.client);

    // After it, a request starts a re-introspection that finds it revoked;
    // from then on it is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let outcome = plugin.get(&token).await;
        if outcome.status() != 200 || Instant::now() > deadline {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_invalid_token(&refused);
    assert_eq!(
        introspections_after(&server, 3).await,
        3,
        "bob's, alice's first and her re-introspection"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let server = DjangoOauth::start_with(django_oauth::Options {
        access_token_ttl: 5,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&server, &dir);
    // A token this short lives wholly inside the default skew, where it is
    // refused from the start.
    env.insert("CLOCK_SKEW_SECONDS".into(), "1".into());
    let plugin = start_plugin(&env).await;

    let token = server.user_token("alice", "orders:read", None).await;
    let issued = now();
    let (_, claims) = upstream_jwt(&plugin, &plugin.get(&token).await).await;
    assert!(
        claims["exp"].as_u64().unwrap() <= issued + 5,
        "never later than the token's exp: {claims}"
    );
    tokio::time::sleep(Duration::from_millis(5100)).await;
    assert_invalid_token(&plugin.get(&token).await);
}

#[tokio::test]
async fn a_wrong_gateway_secret_is_a_502_never_a_401() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&server, &dir);
    let wrong = "wrong-gateway-secret-4b1d";
    env.insert("CLIENT_SECRET".into(), wrong.into());
    let plugin = start_plugin(&env).await;

    let token = server.user_token("alice", "orders:read", None).await;
    for token in [token, unknown_token()] {
        let outcome = plugin.get(&token).await;
        assert_eq!(outcome.status(), 502, "{:?}", outcome.client);
        assert!(outcome.upstream.is_none(), "never forwarded");
        let shown = format!("{:?}", outcome.client);
        assert!(!shown.contains(&token), "the token is not echoed");
        assert!(!shown.contains(wrong), "nor the secret");
    }
    // Refused by the server, so not a 401 from a guess.
    assert!(
        server
            .stderr()
            .contains("\"POST /o/introspect/ HTTP/1.1\" 403"),
        "{}",
        server.stderr()
    );
}

/// The claims of the JWT the upstream received, verified with the plugin's
/// JWKS (signature and issuer), whatever its audience.
async fn upstream_claims(plugin: &Plugin, outcome: &Outcome) -> serde_json::Value {
    assert_eq!(outcome.status(), 200, "{:?}", outcome.client);
    let jwt = outcome
        .upstream
        .as_ref()
        .and_then(|u| u.header("Authorization"))
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer JWT upstream");
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks = plugin.jwks().await;
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_aud = false;
    validation.set_issuer(&[MINTED_ISSUER]);
    jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("verifies with the plugin's JWKS")
    .claims
}

fn api(api_id: &str, config_data: serde_json::Value) -> Api {
    Api {
        api_id: api_id.into(),
        config_data: Some(config_data),
        ..Api::default()
    }
}

impl Plugin {
    async fn get_from(&self, api: &Api, token: &str) -> Outcome {
        self.gateway
            .request_to(api, ClientRequest::get("/orders/api/items").bearer(token))
            .await
    }
}

/// The server restricts a token to a resource (RFC 8707) only when one is
/// asked for: an API's `required_audience` is checked against that, never
/// against the `MINTED_AUDIENCE` the plugin signs, and a token for other
/// resources is not signed for an API's own audience.
#[tokio::test]
async fn audiences_are_those_the_server_granted() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = start_plugin(&base_env(&server, &dir)).await;
    let billing = server
        .user_token("alice", "orders:read", Some("https://billing.example"))
        .await;
    let orders = server
        .user_token("alice", "orders:read", Some("https://orders.example"))
        .await;
    let open = server.user_token("alice", "orders:read", None).await;

    // MINTED_AUDIENCE is orders-api; the server said billing, or nothing.
    let requires_minted = api(
        "a1",
        serde_json::json!({"required_audience": MINTED_AUDIENCE}),
    );
    for token in [&billing, &open] {
        assert_invalid_token(&plugin.get_from(&requires_minted, token).await);
    }
    // The server's own name for the API.
    let requires_orders = api(
        "a2",
        serde_json::json!({"required_audience": "https://orders.example"}),
    );
    assert_eq!(
        plugin.get_from(&requires_orders, &orders).await.status(),
        200
    );
    assert_invalid_token(&plugin.get_from(&requires_orders, &billing).await);
    // The same name signed for the API.
    let both = api(
        "a3",
        serde_json::json!({
            "required_audience": "https://orders.example",
            "minted_audience": "https://orders.example",
        }),
    );
    let claims = upstream_claims(&plugin, &plugin.get_from(&both, &orders).await).await;
    assert_eq!(claims["aud"], "https://orders.example");
    // An API with its own audience: a token for billing is not re-signed
    // for it; an unrestricted one is.
    let own = api("a4", serde_json::json!({"minted_audience": "orders"}));
    assert_invalid_token(&plugin.get_from(&own, &billing).await);
    let claims = upstream_claims(&plugin, &plugin.get_from(&own, &open).await).await;
    assert_eq!(claims["aud"], "orders");
    // No API audience: the JWT keeps the audience the server granted.
    let claims = upstream_claims(&plugin, &plugin.get(&billing).await).await;
    assert_eq!(claims["aud"], "https://billing.example");
    let claims = upstream_claims(&plugin, &plugin.get(&open).await).await;
    assert_eq!(claims["aud"], MINTED_AUDIENCE);
}

/// The server names users in `username` and sends no `sub`: two users of
/// one client are two subjects and two Tyk session keys; the client is the
/// subject only of a token without a user.
#[tokio::test]
async fn each_user_is_a_subject_and_a_session_of_its_own() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&server, &dir);
    env.remove("MINTED_CLAIMS");
    env.insert("SESSION_KEY_CLAIM".into(), "sub".into());
    let plugin = start_plugin(&env).await;
    let mut sessions = Vec::new();
    for (user, subject) in [
        (Some("alice"), "alice"),
        (Some("alice"), "alice"),
        (Some("bob"), "bob"),
        (None, server.clients.service.client_id.as_str()),
    ] {
        let token = match user {
            Some(user) => server.user_token(user, "orders:read", None).await,
            None => server.client_token("orders:read").await,
        };
        let outcome = plugin.get(&token).await;
        let claims = upstream_claims(&plugin, &outcome).await;
        assert_eq!(claims["sub"], subject);
        sessions.push(outcome.session_key.expect("a session"));
    }
    assert_eq!(
        sessions[0], sessions[1],
        "one user, one session, two tokens"
    );
    assert_ne!(sessions[0], sessions[2], "two users of one client");
    assert_ne!(sessions[0], sessions[3], "a user is not the client");
}

/// The server sends no `aud` for a token issued without a resource: such a
/// token is allowed (minted for `MINTED_AUDIENCE`), and a configuration that
/// could mint no audience for it is refused at start-up, by name.
#[tokio::test]
async fn a_token_without_an_audience_is_allowed_and_minting_without_one_cannot_start() {
    let server = DjangoOauth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&server, &dir);
    let plugin = start_plugin(&env).await;
    let token = server.user_token("bob", "orders:read", None).await;
    let claims = upstream_claims(&plugin, &plugin.get(&token).await).await;
    assert_eq!(claims["aud"], MINTED_AUDIENCE);

    env.remove("MINTED_AUDIENCE");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let problems = Config::from_source(&MapSource::new(&pairs))
        .expect_err("no audience to mint with")
        .problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("MINTED_AUDIENCE"), "{problems:?}");
}

/// The README's three variables (Curity's defaults) against this JSON
/// server: `check` finds out the format from the real server's answer to a
/// random token and names what is missing, and passes once it is set — with
/// a key written by `keygen` and no `max-age` bound noted until revocation
/// is bounded.
#[test]
fn check_names_what_this_server_needs() {
    const BIN: &str = env!("CARGO_BIN_EXE_tyk-phantom-token");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(DjangoOauth::start());
    let dir = tempfile::tempdir().unwrap();
    let gateway = server.gateway();
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = std::process::Command::new(BIN);
        command
            .current_dir(dir.path())
            .env_clear()
            .env("INTROSPECTION_URL", &server.introspection_endpoint)
            .env("INTROSPECTION_ALLOW_HTTP", "true")
            .env("CLIENT_ID", &gateway.client_id)
            .env("CLIENT_SECRET", &gateway.client_secret)
            .args(args)
            .stdin(std::process::Stdio::null());
        for (name, value) in extra {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(!stdout.contains(&gateway.client_secret), "{stdout}");
        (output.status.code(), stdout)
    };

    let (code, stdout) = run(&["check"], &[]);
    assert_eq!(code, Some(78), "{stdout}");
    let format = stdout
        .lines()
        .find(|l| l.starts_with("answer format:"))
        .unwrap_or_else(|| panic!("no answer format in {stdout}"));
    for named in [
        "RFC 7662 JSON",
        "INTROSPECTION_ACCEPT=application/json",
        "SIGNING_KEY_FILE",
        "MINTED_ISSUER",
        "MINTED_AUDIENCE",
    ] {
        assert!(format.contains(named), "{named} missing from {format}");
    }

    let (code, stdout) = run(&["keygen", "mint.pem"], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let minting = [
        ("INTROSPECTION_ACCEPT", "application/json"),
        ("SIGNING_KEY_FILE", "mint.pem"),
        ("MINTED_ISSUER", MINTED_ISSUER),
        ("MINTED_AUDIENCE", MINTED_AUDIENCE),
    ];
    let (code, stdout) = run(&["check"], &minting);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("the plugin mints the JWT"), "{stdout}");
    // The server sends no max-age at all: revocation needs a bound.
    assert!(
        stdout.contains("sends no Cache-Control max-age"),
        "{stdout}"
    );
    let mut bounded = minting.to_vec();
    bounded.push(("REVALIDATE_AFTER_SECONDS", "60"));
    let (code, stdout) = run(&["check"], &bounded);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        !stdout.contains("sends no Cache-Control max-age"),
        "{stdout}"
    );
    drop(server);
}
