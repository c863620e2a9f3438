//! The introspection client: one pooled HTTP client that asks the authorization
//! server (AS) about a token (`Accept` from `INTROSPECTION_ACCEPT`, by default
//! `application/jwt`) and turns the answer into a JWT to forward.
//!
//! Answers are told apart by their `Content-Type` (see [`crate::answer`]):
//! - `application/jwt` (or no known type): Curity's phantom token, the JWT
//!   itself; `{"active":false}` and 204 are inactive.
//! - `application/json`: RFC 7662; a ready JWT is taken from the member named
//!   by `INTROSPECTION_JWT_FIELD`, otherwise one is minted ([`crate::mint`]).
//! - `application/token-introspection+jwt`: RFC 9701, verified against the
//!   AS's JWKS, then read as JSON.
//!
//! Whatever the AS sent, [`Introspection::Active`] carries a JWT and its
//! claims. Everything that is not an answer about the token (an unverifiable
//! signature, a malformed answer, nothing to mint from) is a fault of the AS
//! or of our configuration and is reported as such, never as an invalid
//! token. A minted token whose source has expired is inactive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA};
use reqwest::{StatusCode, Url};

use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, warn};

use crate::answer::{self, AnswerError, MediaType, Verdict};
use crate::breaker::Breaker;
use crate::client_auth::{ClientAuth, ClientSecretPost, PrivateKeyJwt, encode_form};
use crate::config::{ClientAuthMethod, IntrospectionConfig};
use crate::jwks::{AsKeySet, JwksOptions};
use crate::jwt::{self, Claims, JwtError};
use crate::keys::SigningKeys;
use crate::metrics::{AsOutcome, Metrics};
use crate::mint::{MintError, MintRules, Minter};
use crate::token::BearerToken;
use crate::trace::TraceContext;

/// What the AS said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    Active(ActiveToken),
    Inactive,
}

/// An active token: the phantom JWT and what the plugin reads from it.
#[derive(Clone, PartialEq)]
pub struct ActiveToken {
    pub jwt: String,
    pub claims: Claims,
    /// What the AS's caching headers said.
    pub cache: CacheDirectives,
}

impl std::fmt::Debug for ActiveToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveToken")
            .field("jwt", &"[redacted]")
            .field("exp", &self.claims.exp)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Why introspection gave no answer about the token. Messages name the
/// condition only: never the token, the AS's URL or its response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    /// No complete answer within the time budget.
    #[error("introspection timed out")]
    Timeout,
    /// Connection refused or reset, name not resolved.
    #[error("authorization server unreachable: {0}")]
    Unreachable(String),
    /// The TLS handshake failed (untrusted or wrong certificate, protocol
    /// mismatch): a configuration fault, not an outage.
    #[error("TLS to the authorization server failed: {0}")]
    Tls(String),
    /// The AS said it is overloaded or down (503, 429).
    #[error("authorization server unavailable (HTTP {0})")]
    Unavailable(u16),
    /// The AS refused our client credentials (401, 403): a configuration fault.
    #[error("authorization server rejected the client credentials (HTTP {0})")]
    CredentialsRejected(u16),
    /// Any other status, e.g. 404 for a wrong URL, 500, a redirect.
    #[error("authorization server answered HTTP {0}")]
    UnexpectedStatus(u16),
    /// A 200 whose body is not a JWT (for example JSON from an AS that ignores
    /// `Accept: application/jwt`).
    #[error("authorization server answer is not a JWT: {0}")]
    NotJwt(JwtError),
    #[error("authorization server answer is larger than {0} bytes")]
    TooLarge(usize),
    /// Every introspection slot stayed busy for the whole wait: a 503 now
    /// instead of a pile-up in front of the AS.
    #[error("too many introspections in flight")]
    Overloaded,
    /// The breaker is open after repeated connection failures.
    #[error("authorization server marked down after repeated failures")]
    BreakerOpen { retry_after: Duration },
    /// An RFC 7662 or RFC 9701 answer that cannot be used (malformed,
    /// unverified signature, a ready JWT that disagrees).
    #[error("{0}")]
    Answer(AnswerError),
    /// An RFC 9701 answer when the AS's keys are not configured.
    #[error(
        "signed introspection answer, but no AS keys to verify it (set ISSUER or INTROSPECTION_JWKS_URL)"
    )]
    SignedUnverifiable,
    /// An active JSON answer without a ready JWT, and no key to mint one.
    #[error("active introspection answer without a JWT, and no SIGNING_KEY_FILE to mint one")]
    NoJwt,
    /// Minting failed (the answer lacks `client_id` or an audience, signing
    /// failed).
    #[error("cannot mint the upstream JWT: {0}")]
    Mint(String),
    /// The client assertion for `private_key_jwt` could not be signed.
    #[error("cannot authenticate to the authorization server: {0}")]
    ClientAuth(String),
}

impl IntrospectError {
    /// The metrics outcome of this error.
    pub fn outcome(&self) -> AsOutcome {
        match self {
            IntrospectError::Timeout => AsOutcome::Timeout,
            IntrospectError::Unreachable(_) => AsOutcome::Unreachable,
            IntrospectError::Tls(_) => AsOutcome::Tls,
            IntrospectError::Unavailable(_) => AsOutcome::Unavailable,
            IntrospectError::CredentialsRejected(_) => AsOutcome::Rejected,
            IntrospectError::UnexpectedStatus(_) => AsOutcome::BadStatus,
            IntrospectError::NotJwt(_)
            | IntrospectError::TooLarge(_)
            | IntrospectError::Answer(_)
            | IntrospectError::SignedUnverifiable
            | IntrospectError::NoJwt
            | IntrospectError::Mint(_)
            | IntrospectError::ClientAuth(_) => AsOutcome::BadBody,
            IntrospectError::Overloaded => AsOutcome::Overloaded,
            IntrospectError::BreakerOpen { .. } => AsOutcome::BreakerOpen,
        }
    }

    /// Whether the AS could not be reached at all (what trips the breaker).
    fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            IntrospectError::Timeout | IntrospectError::Unreachable(_)
        )
    }
}

/// Problems building the client at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot read INTROSPECTION_CA_FILE {path:?}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("INTROSPECTION_CA_FILE {path:?} holds no usable PEM certificate")]
    CaPem { path: String },
    #[error("cannot read the client certificate or key {path:?}: {source}")]
    ClientIdentityFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "INTROSPECTION_CLIENT_CERT_FILE / INTROSPECTION_CLIENT_KEY_FILE: not a usable PEM certificate chain and private key"
    )]
    ClientIdentity,
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("SIGNING_KEY_FILE: {0}")]
    SigningKey(crate::keys::KeyError),
    #[error("CLIENT_ASSERTION_KEY_FILE: {0}")]
    AssertionKey(String),
    #[error("cannot mint JWTs: {0}")]
    Minter(String),
    #[error("CLIENT_SECRET is required for client_secret_basic and client_secret_post")]
    NoClientSecret,
    #[error(
        "INTROSPECTION_ACCEPT asks for signed answers, but the AS's JWKS is unknown: set INTROSPECTION_JWKS_URL or an ISSUER whose metadata names jwks_uri"
    )]
    NoJwksUrl,
}

/// How the gateway proves who it is to the AS.
enum Auth {
    /// `Authorization: Basic …`, built once; marked sensitive so it is never
    /// logged.
    Basic(HeaderValue),
    /// Form fields appended to every request body.
    Form(ClientAuth),
}

pub struct IntrospectionClient {
    http: reqwest::Client,
    url: Url,
    auth: Auth,
    accept: HeaderValue,
    /// The member of a JSON answer holding a ready JWT.
    jwt_field: Option<String>,
    /// The AS's keys and what its RFC 9701 answers must match.
    signed: Option<(AsKeySet, answer::signed::SignedAnswerRules)>,
    /// Signs the upstream JWT when the AS gives none.
    minter: Option<Minter>,
    max_jwt_bytes: usize,
    timeout: Duration,
    /// Bounds introspections in flight; a miss waits at most `slot_wait`.
    slots: Semaphore,
    slot_wait: Duration,
    /// Slots only background revalidations use, when every one of `slots`
    /// is busy (see [`RESERVED_REVALIDATIONS`]).
    reserve: Semaphore,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

/// A failed attempt, and whether the AS can have seen the request.
struct AttemptError {
    error: IntrospectError,
    /// No byte of the request was written (see [`request_unsent`]): the
    /// only failure that is retried.
    unsent: bool,
}

impl From<IntrospectError> for AttemptError {
    fn from(error: IntrospectError) -> Self {
        AttemptError {
            error,
            unsent: false,
        }
    }
}

/// Background revalidations that may run beyond `MAX_INFLIGHT_INTROSPECTIONS`
/// when every slot is busy (a slow AS, a flood of new tokens): without them a
/// revoked token would be served until its expiry for as long as the slots
/// stay full. They only ever take a free slot or one of these, never wait.
pub const RESERVED_REVALIDATIONS: usize = 2;

/// The shortest time budget worth a retry.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(20);

const ACCEPT_JWT: HeaderValue = HeaderValue::from_static("application/jwt");

/// The pooled HTTP client every request to the AS uses (introspection,
/// discovery, JWKS): rustls with the system's roots plus the extra CA, no
/// redirects (they would carry the token elsewhere), the time budget applied
/// to the whole exchange, body included, mutual TLS when configured, and no
/// proxy but `INTROSPECTION_PROXY`: the environment's `HTTP_PROXY`,
/// `HTTPS_PROXY` and `ALL_PROXY` are set for other traffic, and must not
/// route tokens and client credentials through a proxy nobody chose for
/// them.
///
/// # Errors
///
/// When the CA file or client identity cannot be read or parsed, or TLS
/// cannot be set up.
pub fn http_client(config: &IntrospectionConfig) -> Result<reqwest::Client, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("tyk-phantom-token/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    builder = match &config.proxy {
        // Used for every introspection request: NO_PROXY does not apply.
        Some(proxy) => {
            builder.proxy(reqwest::Proxy::all(proxy.url().clone()).map_err(|e| e.without_url())?)
        }
        None => builder.no_proxy(),
    };
    if let Some(path) = &config.ca_file {
        let display = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| ClientBuildError::CaFile {
            path: display.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ClientBuildError::CaPem { path: display })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &config.client_identity {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|source| ClientBuildError::ClientIdentityFile {
                path: path.display().to_string(),
                source,
            })
        };
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|_| ClientBuildError::ClientIdentity)?;
        builder = builder.identity(identity);
    }
    Ok(builder.build()?)
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

impl IntrospectionClient {
    /// Builds the client (see [`http_client`]), loads the signing and
    /// assertion keys and sets up verification of signed answers. Discovery
    /// has already filled in the endpoints ([`crate::app::App::bind`]).
    ///
    /// # Errors
    ///
    /// When the CA file or a key file cannot be read or parsed, TLS cannot be
    /// set up, or signed answers are wanted without a JWKS URL.
    pub fn new(
        config: &IntrospectionConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClientBuildError> {
        let http = http_client(config)?;
        let any_as = &config.any_as;
        let auth = match &any_as.client_auth {
            ClientAuthMethod::SecretBasic => {
                Auth::Basic(basic_credentials(&config.client_id, secret(config)?))
            }
            ClientAuthMethod::SecretPost => Auth::Form(ClientAuth::SecretPost(
                ClientSecretPost::new(&config.client_id, secret(config)?),
            )),
            ClientAuthMethod::PrivateKeyJwt(path) => {
                // The issuer is the audience every server accepts; without
                // one, the endpoint the assertion is presented to.
                let audience = any_as
                    .issuer
                    .clone()
                    .unwrap_or_else(|| config.url.to_string());
                let jwt = PrivateKeyJwt::from_pem_file(&config.client_id, audience, path)
                    .map_err(|e| ClientBuildError::AssertionKey(e.to_string()))?;
                Auth::Form(ClientAuth::PrivateKeyJwt(Box::new(jwt)))
            }
        };
        let signed = match (&any_as.issuer, &any_as.jwks_url) {
            (Some(issuer), Some(jwks_url)) => Some((
                AsKeySet::new(
                    http.clone(),
                    jwks_url.clone(),
                    JwksOptions {
                        timeout: config.timeout,
                        ..JwksOptions::default()
                    },
                ),
                answer::signed::SignedAnswerRules::new(
                    issuer.clone(),
                    config.client_id.clone(),
                    any_as.signing_algs.clone(),
                ),
            )),
            _ if any_as.wants_signed() => return Err(ClientBuildError::NoJwksUrl),
            _ => None,
        };
        let minter = match &any_as.mint {
            Some(mint) => {
                let keys = SigningKeys::from_pem_file(&mint.key_file)
                    .map_err(ClientBuildError::SigningKey)?;
                Some(
                    Minter::new(
                        Arc::new(keys),
                        MintRules {
                            issuer: mint.issuer.clone(),
                            audience: mint.audience.clone(),
                            max_lifetime: mint.max_lifetime,
                            copy_claims: mint.copy_claims.clone(),
                        },
                    )
                    .map_err(|e| ClientBuildError::Minter(e.to_string()))?,
                )
            }
            None => None,
        };
        let accept = HeaderValue::try_from(any_as.accept.as_str()).unwrap_or(ACCEPT_JWT);
        Ok(IntrospectionClient {
            http,
            url: config.url.clone(),
            auth,
            accept,
            jwt_field: any_as.jwt_field.clone(),
            signed,
            minter,
            max_jwt_bytes: config.max_jwt_bytes,
            timeout: config.timeout,
            slots: Semaphore::new(config.max_inflight),
            slot_wait: config.inflight_wait,
            reserve: Semaphore::new(RESERVED_REVALIDATIONS),
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            metrics,
        })
    }

    /// The minter, when the plugin mints.
    pub fn minter(&self) -> Option<&Minter> {
        self.minter.as_ref()
    }

    /// The public JWK Set of the keys minted JWTs are signed with, when the
    /// plugin mints (served at `/.well-known/jwks.json`).
    pub fn minted_jwks(&self) -> Option<String> {
        self.minter.as_ref().map(|m| m.keys().jwks_json())
    }

    /// Asks the AS about `token`, within the time budget, with at most one
    /// retry for a failure before any byte of the request was written,
    /// through the in-flight bound and the breaker. `trace` is continued on
    /// the request.
    ///
    /// # Errors
    ///
    /// [`IntrospectError`] when the AS gave no usable answer.
    pub async fn introspect(
        &self,
        token: &BearerToken<'_>,
        trace: Option<&TraceContext>,
    ) -> Result<Introspection, IntrospectError> {
        let started = Instant::now();
        let result = self.guarded(token, trace, started, None).await;
        self.record(&result, started);
        result
    }

    /// Asks the AS about `token` for a background revalidation, now or never:
    /// in a free slot if there is one (requests are not kept waiting), else in
    /// one of the [`RESERVED_REVALIDATIONS`]. `None` when neither is free.
    ///
    /// Otherwise as [`IntrospectionClient::introspect`] (breaker, budget,
    /// retry).
    pub async fn introspect_in_background(
        &self,
        token: &BearerToken<'_>,
    ) -> Option<Result<Introspection, IntrospectError>> {
        let slot = self
            .slots
            .try_acquire()
            .or_else(|_| self.reserve.try_acquire())
            .ok()?;
        let started = Instant::now();
        let result = self.guarded(token, None, started, Some(slot)).await;
        self.record(&result, started);
        Some(result)
    }

    fn record(&self, result: &Result<Introspection, IntrospectError>, started: Instant) {
        let outcome = match result {
            Ok(Introspection::Active(_)) => AsOutcome::Active,
            Ok(Introspection::Inactive) => AsOutcome::Inactive,
            Err(e) => e.outcome(),
        };
        self.metrics.introspection(outcome, started.elapsed());
    }

    /// One exchange through the breaker and a slot: `slot` if given, else a
    /// request slot waited for at most `slot_wait`.
    async fn guarded(
        &self,
        token: &BearerToken<'_>,
        trace: Option<&TraceContext>,
        started: Instant,
        slot: Option<SemaphorePermit<'_>>,
    ) -> Result<Introspection, IntrospectError> {
        let permit =
            self.breaker
                .admit(started)
                .map_err(|rejected| IntrospectError::BreakerOpen {
                    retry_after: rejected.retry_after,
                })?;
        let slot = match slot {
            Some(slot) => slot,
            None => match tokio::time::timeout(self.slot_wait, self.slots.acquire()).await {
                Ok(Ok(slot)) => slot,
                // Closed never happens; timing out is the overload case.
                Ok(Err(_)) | Err(_) => return Err(IntrospectError::Overloaded),
            },
        };
        let _in_flight = self.metrics.in_flight();
        let deadline = Instant::now() + self.timeout;
        let mut result = self.send(token, trace, self.timeout).await;
        // One retry, inside the budget, and only when the AS cannot have seen
        // the request: once any of it was written, the AS may have read it
        // (and a reset then says nothing about the next try). TLS failures
        // and timeouts are not retried either.
        if let Err(failed) = &result
            && failed.unsent
            && matches!(failed.error, IntrospectError::Unreachable(_))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left >= MIN_RETRY_BUDGET {
                debug!("Retrying introspection: the request was not sent");
                result = self.send(token, trace, left).await;
            }
        }
        let result = result.map_err(|failed| failed.error);
        drop(slot);
        let reachable = !matches!(&result, Err(e) if e.is_connection_failure());
        if self.breaker.record(permit, reachable, Instant::now()) {
            warn!("Authorization server unreachable; failing fast while the breaker is open");
        }
        self.metrics.breaker(self.breaker.state());
        result
    }

    async fn send(
        &self,
        token: &BearerToken<'_>,
        trace: Option<&TraceContext>,
        budget: Duration,
    ) -> Result<Introspection, AttemptError> {
        let mut body = form_body(token.expose());
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(budget)
            .header(ACCEPT, self.accept.clone())
            .header(CONTENT_TYPE, FORM);
        match &self.auth {
            Auth::Basic(basic) => request = request.header(AUTHORIZATION, basic.clone()),
            Auth::Form(auth) => {
                // A fresh assertion per attempt: they are single-use.
                let fields = auth
                    .form_fields(unix_now())
                    .map_err(|e| IntrospectError::ClientAuth(e.to_string()))?;
                body.push('&');
                body.push_str(&encode_form(&fields));
            }
        }
        let mut request = request.body(body);
        if let Some(trace) = trace {
            request = request.header("traceparent", trace.child_traceparent());
            if let Some(state) = trace.tracestate() {
                request = request.header("tracestate", state);
            }
        }
        let response = request.send().await.map_err(|error| AttemptError {
            unsent: request_unsent(&error),
            error: transport_error(error),
        })?;

        match response.status() {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(Introspection::Inactive),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(IntrospectError::CredentialsRejected(s.as_u16()).into());
            }
            s @ (StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) => {
                return Err(IntrospectError::Unavailable(s.as_u16()).into());
            }
            s => return Err(IntrospectError::UnexpectedStatus(s.as_u16()).into()),
        }

        let headers = response.headers();
        let mut cache = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(cache_control)
            .fold(CacheDirectives::default(), CacheDirectives::merge);
        cache.no_store |= headers
            .get_all(PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(pragma_no_cache);
        let media = answer::media_type(headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
        let body = read_capped(response, self.max_jwt_bytes).await?;
        Ok(self.read_answer(media, &body, cache).await?)
    }

    /// Turns a 200 answer into a verdict with a JWT to forward, by its media
    /// type (see the module docs).
    async fn read_answer(
        &self,
        media: MediaType,
        body: &[u8],
        cache: CacheDirectives,
    ) -> Result<Introspection, IntrospectError> {
        let verdict = match media {
            MediaType::Jwt | MediaType::Other => return classify_ok_body(body, cache),
            MediaType::Json => answer::read_json(body, self.jwt_field.as_deref())
                .map_err(IntrospectError::Answer)?,
            MediaType::IntrospectionJwt => {
                let Some((keys, rules)) = &self.signed else {
                    return Err(IntrospectError::SignedUnverifiable);
                };
                answer::signed::read_signed(
                    body,
                    keys,
                    rules,
                    self.jwt_field.as_deref(),
                    unix_now(),
                )
                .await
                .map_err(IntrospectError::Answer)?
            }
        };
        let Verdict::Active(active) = verdict else {
            return Ok(Introspection::Inactive);
        };
        let jwt = match &active.ready_jwt {
            Some(jwt) => jwt.clone(),
            None => {
                let minter = self.minter.as_ref().ok_or(IntrospectError::NoJwt)?;
                match minter.mint(&active, unix_now()) {
                    Ok(minted) => minted.jwt,
                    Err(MintError::Expired) => return Ok(Introspection::Inactive),
                    Err(e) => return Err(IntrospectError::Mint(e.to_string())),
                }
            }
        };
        let claims = jwt::parse(&jwt).map_err(IntrospectError::NotJwt)?;
        Ok(Introspection::Active(ActiveToken { jwt, claims, cache }))
    }
}

/// Reads a 200 body: a JWT (active), `{"active":false}` (inactive), or a fault.
fn classify_ok_body(body: &[u8], cache: CacheDirectives) -> Result<Introspection, IntrospectError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| IntrospectError::NotJwt(JwtError::NotCompact))?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if text.starts_with('{') {
        // RFC 7662: only the JSON boolean true means active. An active JSON
        // answer is still useless here (there is no JWT to forward).
        return match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.get("active") == Some(&serde_json::Value::Bool(false)) => {
                Ok(Introspection::Inactive)
            }
            _ => Err(IntrospectError::NotJwt(JwtError::NotCompact)),
        };
    }
    let claims = jwt::parse(text).map_err(IntrospectError::NotJwt)?;
    Ok(Introspection::Active(ActiveToken {
        jwt: text.to_owned(),
        claims,
        cache,
    }))
}

/// The client secret, which the configuration requires for every method
/// but `private_key_jwt`.
fn secret(config: &IntrospectionConfig) -> Result<&str, ClientBuildError> {
    config
        .client_secret
        .as_ref()
        .map(|s| s.expose())
        .ok_or(ClientBuildError::NoClientSecret)
}

async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, IntrospectError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(IntrospectError::TooLarge(cap));
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(2048, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(IntrospectError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a request failed before any byte of it was written, so the AS
/// cannot have seen it: the connection could not be made (refused,
/// unreachable; through a proxy, the tunnel was refused; for an `https://`
/// AS, the connection was cut during the TLS handshake).
///
/// Everything else came after hyper had started writing the request: a reset
/// or "connection closed before message completed" while waiting for the
/// answer, even on a reused connection the AS may have dropped at that
/// moment, or a failure in the middle of the answer. The AS may have read the
/// request, so none of those is retried. An idle pooled connection the AS had
/// already closed never gets that far: hyper notices the close and the pool
/// sends the request on a new connection, or hands it back unsent and the
/// pool sends it again itself.
fn request_unsent(error: &reqwest::Error) -> bool {
    error.is_connect()
}

fn transport_error(error: reqwest::Error) -> IntrospectError {
    if error.is_timeout() {
        return IntrospectError::Timeout;
    }
    // The chain of causes, without the URL reqwest puts in its own message.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut tls = false;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        tls |= is_tls_error(cause);
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause's message; say each thing once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if tls {
        IntrospectError::Tls(text)
    } else {
        IntrospectError::Unreachable(text)
    }
}

/// Whether `error` is rustls's, directly or inside (possibly nested)
/// `io::Error`s, whose `source()` skips the error they wrap.
fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = error;
    loop {
        if current.is::<rustls::Error>() {
            return true;
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

/// `token=<form-encoded token>`: `+`, `/` and `=` must not reach the AS raw.
fn form_body(token: &str) -> String {
    let mut body = String::with_capacity(6 + token.len() * 3 / 2);
    body.push_str("token=");
    body.extend(form_urlencoded::byte_serialize(token.as_bytes()));
    body
}

/// RFC 6749 §2.3.1: id and secret are each form-encoded, then joined by `:`,
/// then base64-encoded. Plain Basic helpers skip the first step.
fn basic_credentials(client_id: &str, secret: &str) -> HeaderValue {
    let mut pair = String::new();
    pair.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(pair)))
        .unwrap_or_else(|_| unreachable!("base64 is a valid header value"));
    value.set_sensitive(true);
    value
}

/// What an answer's caching headers say: `Cache-Control` (every line) and
/// `Pragma`.
///
/// Only a positive `max-age` limits the token cache by default (Curity's own
/// gateway plugins read it as an upper bound); `max-age=0` means "do not
/// cache". `no-store`, `no-cache` and `Pragma: no-cache`, which most
/// authorization servers send on every response, address HTTP caches between
/// the AS and its client: the phantom-token pattern is the gateway keeping the
/// answer until the token expires, so they are heeded only when
/// `HONOR_CACHE_CONTROL_NO_STORE` asks for it. `private` never limits (the
/// gateway is the answer's only recipient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// The smallest `max-age`, if any.
    pub max_age: Option<Duration>,
    /// `no-store` or `no-cache` in `Cache-Control`, or `Pragma: no-cache`.
    pub no_store: bool,
}

impl CacheDirectives {
    /// The directives of two header values together: the smaller `max-age`,
    /// and `no_store` if either has it.
    #[must_use]
    pub fn merge(self, other: CacheDirectives) -> CacheDirectives {
        CacheDirectives {
            max_age: match (self.max_age, other.max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            no_store: self.no_store || other.no_store,
        }
    }

    /// The limit these put on the token cache's TTL: `max-age`, or zero for
    /// `no-store` / `no-cache` when `honor_no_store`.
    pub fn limit(&self, honor_no_store: bool) -> Option<Duration> {
        if honor_no_store && self.no_store {
            Some(Duration::ZERO)
        } else {
            self.max_age
        }
    }
}

/// The directives in one `Cache-Control` header value. Unknown directives and
/// unreadable `max-age` values are ignored.
pub fn cache_control(value: &str) -> CacheDirectives {
    let mut found = CacheDirectives::default();
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            found.no_store = true;
        } else if name.eq_ignore_ascii_case("max-age")
            && let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok())
        {
            found = found.merge(CacheDirectives {
                max_age: Some(Duration::from_secs(secs)),
                no_store: false,
            });
        }
    }
    found
}

/// Whether a `Pragma` header value holds `no-cache` (HTTP/1.0's `no-cache`).
pub fn pragma_no_cache(value: &str) -> bool {
    value
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a request to a loopback server that runs `serve` on the
    /// one connection it accepts.
    async fn failed_request<F>(serve: impl FnOnce(tokio::net::TcpStream) -> F) -> reqwest::Error
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let request = tokio::spawn(
            client
                .post(format!("http://{addr}/introspect"))
                .body("token=abc")
                .send(),
        );
        let (stream, _) = listener.accept().await.unwrap();
        tokio::spawn(serve(stream));
        request.await.unwrap().unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("http://{addr}/introspect"))
            .send()
            .await
            .unwrap_err();
        assert!(request_unsent(&error), "{error:?}");
        assert!(matches!(
            transport_error(error),
            IntrospectError::Unreachable(_)
        ));
    }

    /// Reads until the whole request (ending with the form body) is in.
    async fn read_request(stream: &mut tokio::net::TcpStream) {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.ends_with(b"token=abc") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[tokio::test]
    async fn a_reset_after_the_request_was_read_was_sent() {
        let error = failed_request(|mut stream| async move {
            read_request(&mut stream).await;
            let _ = stream.set_zero_linger();
        })
        .await;
        assert!(!request_unsent(&error), "{error:?}");
    }

    #[tokio::test]
    async fn a_close_after_the_request_was_read_was_sent() {
        // hyper: "connection closed before message completed".
        let error = failed_request(|mut stream| async move {
            read_request(&mut stream).await;
        })
        .await;
        assert!(!request_unsent(&error), "{error:?}");
    }

    #[test]
    fn basic_credentials_follow_rfc6749_vectors() {
        assert_eq!(
            basic_credentials("gateway", "s3cr3t"),
            "Basic Z2F0ZXdheTpzM2NyM3Q="
        );
        assert_eq!(
            basic_credentials("gateway", "a+b:c d%"),
            "Basic Z2F0ZXdheTphJTJCYiUzQWMrZCUyNQ=="
        );
        assert!(basic_credentials("gateway", "s3cr3t").is_sensitive());
        assert!(!format!("{:?}", basic_credentials("gateway", "s3cr3t")).contains("Z2F0"));
    }

    #[test]
    fn the_token_is_form_encoded() {
        assert_eq!(form_body("abc"), "token=abc");
        assert_eq!(form_body("a+b/c=="), "token=a%2Bb%2Fc%3D%3D");
    }

    fn directives(max_age: Option<u64>, no_store: bool) -> CacheDirectives {
        CacheDirectives {
            max_age: max_age.map(Duration::from_secs),
            no_store,
        }
    }

    #[test]
    fn cache_control_gives_the_smallest_max_age_and_any_no_store() {
        assert_eq!(cache_control("max-age=300"), directives(Some(300), false));
        assert_eq!(
            cache_control("public, MAX-AGE=60, must-revalidate, max-age=90"),
            directives(Some(60), false)
        );
        assert_eq!(cache_control("max-age=\"90\""), directives(Some(90), false));
        assert_eq!(cache_control("no-store"), directives(None, true));
        assert_eq!(
            cache_control("max-age=300, no-cache"),
            directives(Some(300), true)
        );
        assert_eq!(cache_control("private"), directives(None, false));
        assert_eq!(cache_control("max-age=soon"), directives(None, false));
        assert_eq!(cache_control("max-age=-1"), directives(None, false));
    }

    #[test]
    fn only_max_age_limits_the_cache_unless_no_store_is_honoured() {
        let no_store = cache_control("no-store, private");
        assert_eq!(no_store.limit(false), None);
        assert_eq!(no_store.limit(true), Some(Duration::ZERO));
        let capped = cache_control("no-cache, max-age=60");
        assert_eq!(capped.limit(false), Some(Duration::from_secs(60)));
        assert_eq!(capped.limit(true), Some(Duration::ZERO));
        assert_eq!(
            cache_control("max-age=0").limit(false),
            Some(Duration::ZERO),
            "max-age=0 still means do not cache"
        );
    }

    #[test]
    fn pragma_no_cache_is_read_in_any_case_among_other_directives() {
        assert!(pragma_no_cache("no-cache"));
        assert!(pragma_no_cache("x-thing, No-Cache "));
        assert!(!pragma_no_cache("no-cache-please"));
        assert!(!pragma_no_cache(""));
    }

    #[test]
    fn ok_bodies_are_classified() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE5MDAwMDAwMDB9.c2ln";
        match classify_ok_body(format!("{jwt}\r\n").as_bytes(), CacheDirectives::default()) {
            Ok(Introspection::Active(active)) => {
                assert_eq!(active.jwt, jwt);
                assert_eq!(active.claims.exp, Some(1_900_000_000));
            }
            other => panic!("expected active, got {other:?}"),
        }
        assert_eq!(
            classify_ok_body(br#"{"active":false}"#, CacheDirectives::default()),
            Ok(Introspection::Inactive)
        );
        for fault in [
            &br#"{"active":true,"sub":"x"}"#[..],
            br#"{"active":"false"}"#,
            br#"{"error":"server_error"}"#,
            b"<html>oops</html>",
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    classify_ok_body(fault, CacheDirectives::default()),
                    Err(IntrospectError::NotJwt(_))
                ),
                "{:?}",
                String::from_utf8_lossy(fault)
            );
        }
    }
}
