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
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, PRAGMA,
};
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

mod cache_control;
mod errors;
mod http;
mod probe;
mod verifying;

pub use cache_control::*;
pub use errors::*;
pub use http::*;
pub use probe::ProbeAnswer;

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
    signed: Option<(Arc<AsKeySet>, answer::signed::SignedAnswerRules)>,
    /// `VERIFY_JWT=true`: checks the JWTs the AS gives to forward.
    verifier: Option<answer::verify::JwtVerifier>,
    /// Signs the upstream JWT when the AS gives none.
    minter: Option<Minter>,
    /// The claim naming the resource owner when an answer has no `sub`.
    owner_claim: String,
    /// `INTROSPECTION_ACCEPT` asks for RFC 9701 signed answers: no other
    /// kind of answer may allow a request.
    require_signed: bool,
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
        let keys = verifying::as_keys(&http, config);
        let verifier = verifying::jwt_verifier(config, keys.as_ref())?;
        let signed = match (&any_as.issuer, keys) {
            (Some(issuer), Some(keys)) => Some((
                keys,
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
                            owner_claim: any_as.owner_claim.clone(),
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
            verifier,
            minter,
            owner_claim: any_as.owner_claim.clone(),
            require_signed: any_as.wants_signed(),
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
        let response = self
            .request(token, trace, budget)?
            .send()
            .await
            .map_err(|error| AttemptError {
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
        let cache = cache_directives(headers);
        let media = answer::media_type(headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
        let body = read_capped(response, self.max_jwt_bytes).await?;
        Ok(self.read_answer(media, &body, cache).await?)
    }

    /// The introspection request for `token`, as every exchange with the AS
    /// sends it: `Accept`, client authentication (a fresh assertion each
    /// time), the form body and the trace context.
    fn request(
        &self,
        token: &BearerToken<'_>,
        trace: Option<&TraceContext>,
        budget: Duration,
    ) -> Result<reqwest::RequestBuilder, IntrospectError> {
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
        Ok(request)
    }

    /// Turns a 200 answer into a verdict with a JWT to forward, by its media
    /// type (see the module docs).
    ///
    /// When the operator asked for signed answers (RFC 9701) or verified
    /// JWTs (`VERIFY_JWT`), the `Content-Type` cannot choose a weaker path:
    /// anyone on the path can send `application/json`. An answer that is not
    /// signed and verified then means inactive or a fault, never an allow.
    async fn read_answer(
        &self,
        media: MediaType,
        body: &[u8],
        cache: CacheDirectives,
    ) -> Result<Introspection, IntrospectError> {
        let verdict = match media {
            MediaType::Jwt | MediaType::Other => {
                let answer = classify_ok_body(body, cache, &self.owner_claim)?;
                if let Introspection::Active(token) = &answer {
                    if self.require_signed {
                        return Err(IntrospectError::Answer(AnswerError::Unsigned("JWT")));
                    }
                    self.verify_as_jwt(&token.jwt).await?;
                }
                return Ok(answer);
            }
            MediaType::Json => {
                let verdict = answer::read_json(body, self.jwt_field.as_deref())
                    .map_err(IntrospectError::Answer)?;
                if self.require_signed && matches!(verdict, Verdict::Active(_)) {
                    return Err(IntrospectError::Answer(AnswerError::Unsigned("JSON")));
                }
                verdict
            }
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
        // The members of a JSON answer are only as trustworthy as the
        // channel; those of an RFC 9701 answer are signed by the AS.
        let signed = media == MediaType::IntrospectionJwt;
        let mut claims = active
            .claims(&self.owner_claim)
            .map_err(IntrospectError::Answer)?;
        let (jwt, minted) = match &active.ready_jwt {
            Some(jwt) => {
                self.verify_as_jwt(jwt).await?;
                if self.verifier.is_some() && !signed {
                    // Under VERIFY_JWT, what the verified JWT says decides,
                    // not the unsigned members around it; a binding in the
                    // answer still applies (it can only restrict).
                    let cnf = claims.get("cnf").filter(|c| c.is_object()).cloned();
                    claims = jwt::parse(jwt).map_err(IntrospectError::NotJwt)?;
                    claims.fill_subject(&self.owner_claim);
                    if let Some(cnf) = cnf {
                        claims.set("cnf", cnf);
                    }
                }
                (jwt.clone(), false)
            }
            None => {
                if self.verifier.is_some() && !signed {
                    return Err(IntrospectError::Answer(AnswerError::Unsigned("JSON")));
                }
                let minter = self.minter.as_ref().ok_or(IntrospectError::NoJwt)?;
                match minter.mint(&active, unix_now()) {
                    Ok(minted) => (minted.jwt, true),
                    Err(MintError::Expired) => return Ok(Introspection::Inactive),
                    Err(e) => return Err(IntrospectError::Mint(e.to_string())),
                }
            }
        };
        // The forwarded JWT must be one, whoever made it.
        jwt::parse(&jwt).map_err(IntrospectError::NotJwt)?;
        Ok(Introspection::Active(ActiveToken {
            jwt,
            claims,
            minted,
            cache,
        }))
    }
}

mod curity;
use curity::{classify_ok_body, read_capped};

#[cfg(test)]
mod tests;
