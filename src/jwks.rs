//! The authorization server's public keys (its JWKS, from `jwks_uri`), and
//! verifying a JWS the AS signed with them.
//!
//! What must hold:
//! - **The key fixes the algorithm.** A JWK's `kty`/`crv` (and `alg`, when
//!   present) decide which algorithms it may verify; the token header only
//!   picks among those. Symmetric keys (`oct`) and `HS*`/`none` are never
//!   used, whatever the allow-list says, so an RSA public key can never be
//!   used as an HMAC secret.
//! - **No fetch storm.** An unknown `kid` may trigger a refetch (the AS
//!   rotated its keys), but at most once per `refetch_interval`, and
//!   concurrent misses share one fetch. A flood of forged `kid`s costs the AS
//!   nothing more.
//! - Keys are refreshed after `max_age` even without a miss; when a refresh
//!   fails the keys already held stay in use.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use reqwest::Url;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use tracing::{debug, warn};

/// An unknown `kid` refetches the JWKS at most this often.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Keys are refetched when older than this, even without an unknown `kid`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// A JWKS is a few KiB; anything far larger is not one.
pub const DEFAULT_MAX_JWKS_BYTES: usize = 256 * 1024;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Asymmetric JWS algorithms the verifier can be allowed to accept. There is
/// deliberately no `HS*` and no `none`.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// How the key set behaves.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    pub refetch_interval: Duration,
    pub max_age: Duration,
    pub max_bytes: usize,
    /// Time budget of one fetch.
    pub timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_JWKS_BYTES,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why the JWKS could not be fetched. Messages never include the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS timed out")]
    Timeout,
    #[error("JWKS unreachable: {0}")]
    Unreachable(String),
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    #[error("JWKS larger than {0} bytes")]
    TooLarge(usize),
    #[error("JWKS is not a JSON object with a \"keys\" array: {0}")]
    Malformed(String),
    #[error("JWKS holds no usable signature-verification key")]
    NoUsableKeys,
}

/// Why a JWS was not accepted. Every variant means the signed statement
/// cannot be trusted: to the caller, a fault of the AS (or of an attacker in
/// between), never a verdict about a user's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    /// `alg` is not on the allow-list (this includes `none` and `HS*`).
    #[error("JWS algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key with this `kid` (after the one refetch the interval allows).
    #[error("no AS key matches the JWS kid")]
    UnknownKey,
    /// The key named by `kid` cannot verify the algorithm in the header.
    #[error("the AS key named by kid does not use algorithm {0:?}")]
    KeyAlgorithmMismatch(String),
    #[error("JWS signature does not verify")]
    BadSignature,
    #[error("JWS header or payload is not valid: {0}")]
    Invalid(String),
    #[error("AS keys unavailable: {0}")]
    Keys(JwksError),
}

/// A verified JWS: its header and its claims (not yet checked).
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// One usable public key of the AS.
#[derive(Clone)]
struct AsKey {
    kid: Option<String>,
    /// The algorithms this key may verify: fixed by the JWK.
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Snapshot {
    keys: Arc<Vec<AsKey>>,
    fetched_at: Option<Instant>,
    /// When a fetch last started, successful or not (the rate limit).
    last_attempt: Option<Instant>,
    /// Bumped on every completed fetch attempt, so waiters know one happened.
    generation: u64,
    /// Why the last fetch failed, if it did.
    last_error: Option<JwksError>,
}

/// The AS's JWKS, fetched from `jwks_uri` and cached.
pub struct AsKeySet {
    http: reqwest::Client,
    url: Url,
    options: JwksOptions,
    state: RwLock<Snapshot>,
    /// Held while fetching: concurrent misses wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl AsKeySet {
    /// A key set that fetches `url` lazily (or eagerly with [`AsKeySet::refresh`]).
    pub fn new(http: reqwest::Client, url: Url, options: JwksOptions) -> Self {
        AsKeySet {
            http,
            url,
            options,
            state: RwLock::new(Snapshot::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Fetches the JWKS now (at start-up, to fail early), ignoring the rate
    /// limit. Returns the number of usable keys.
    ///
    /// # Errors
    ///
    /// [`JwksError`] when the JWKS cannot be fetched or holds no usable key.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _guard = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    /// Verifies a compact JWS signed by the AS with one of `allowed`
    /// algorithms (asymmetric ones only; others in the list are ignored).
    /// Only the signature is checked here; the caller checks the claims.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] naming the first thing that is wrong.
    pub async fn verify(&self, jws: &str, allowed: &[Algorithm]) -> Result<Verified, VerifyError> {
        let (header, alg) = read_header(jws, allowed)?;
        let kid = header.kid.as_deref();

        let stale = {
            let state = self.read_state();
            state
                .fetched_at
                .is_none_or(|at| at.elapsed() >= self.options.max_age)
        };
        if stale {
            // A refresh that fails keeps the keys already held.
            let _ = self.refetch_if_allowed(None).await;
        }

        let mut candidates = self.candidates(kid, alg)?;
        if candidates.is_empty() {
            let seen = self.read_state().generation;
            // Rate-limited or failed: the keys held are all there is.
            let _ = self.refetch_if_allowed(Some(seen)).await;
            candidates = self.candidates(kid, alg)?;
        }
        if candidates.is_empty() {
            let state = self.read_state();
            return Err(match (&state.last_error, state.keys.is_empty()) {
                (Some(e), true) => VerifyError::Keys(e.clone()),
                _ => VerifyError::UnknownKey,
            });
        }

        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        for key in candidates.iter() {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                jws,
                &key.key,
                &validation,
            ) {
                Ok(data) => {
                    return Ok(Verified {
                        header: data.header,
                        claims: data.claims,
                    });
                }
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey => continue,
                    _ => return Err(VerifyError::Invalid(e.to_string())),
                },
            }
        }
        Err(VerifyError::BadSignature)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        // A poisoned lock only means a panic elsewhere; the data is plain.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keys that may verify `alg` (and carry `kid`, when the header names one).
    fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<AsKey>, VerifyError> {
        let keys = Arc::clone(&self.read_state().keys);
        match kid {
            Some(kid) => {
                let named: Vec<&AsKey> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if !named.is_empty() && !named.iter().any(|k| k.algs.contains(&alg)) {
                    return Err(VerifyError::KeyAlgorithmMismatch(format!("{alg:?}")));
                }
                Ok(named
                    .into_iter()
                    .filter(|k| k.algs.contains(&alg))
                    .cloned()
                    .collect())
            }
            None => Ok(keys
                .iter()
                .filter(|k| k.algs.contains(&alg))
                .cloned()
                .collect()),
        }
    }

    /// Fetches unless a fetch started less than `refetch_interval` ago. With
    /// `seen`, a fetch completed by someone else since then counts as done.
    async fn refetch_if_allowed(&self, seen: Option<u64>) -> Result<(), JwksError> {
        let _guard = self.fetching.lock().await;
        {
            let state = self.read_state();
            if seen.is_some_and(|g| state.generation != g) {
                return Ok(());
            }
            if state
                .last_attempt
                .is_some_and(|at| at.elapsed() < self.options.refetch_interval)
            {
                return Ok(());
            }
        }
        self.fetch_and_store().await.map(|_| ())
    }

    /// Fetches and stores the JWKS; the caller holds `fetching`.
    async fn fetch_and_store(&self) -> Result<usize, JwksError> {
        let started = Instant::now();
        self.write_state().last_attempt = Some(started);
        let result = self.fetch().await;
        let mut state = self.write_state();
        state.generation += 1;
        match result {
            Ok(keys) => {
                let count = keys.len();
                debug!(jwks.keys = count, "Fetched the AS's JWKS");
                state.keys = Arc::new(keys);
                state.fetched_at = Some(started);
                state.last_error = None;
                Ok(count)
            }
            Err(e) => {
                warn!(error = %e, "Could not fetch the AS's JWKS");
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch(&self) -> Result<Vec<AsKey>, JwksError> {
        let mut response = self
            .http
            .get(self.url.clone())
            .timeout(self.options.timeout)
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(fetch_error)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let cap = self.options.max_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(JwksError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > cap {
                return Err(JwksError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

fn fetch_error(error: reqwest::Error) -> JwksError {
    if error.is_timeout() {
        JwksError::Timeout
    } else {
        JwksError::Unreachable(error.without_url().to_string())
    }
}

/// Reads the JOSE header and checks `alg` against the allow-list before any
/// key is looked up.
fn read_header(jws: &str, allowed: &[Algorithm]) -> Result<(Header, Algorithm), VerifyError> {
    let mut parts = jws.split('.');
    let (Some(header), Some(_), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed("not three dot-separated parts"));
    };
    if signature.is_empty() {
        return Err(VerifyError::AlgorithmNotAllowed("none".to_owned()));
    }
    let raw: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(VerifyError::Malformed("header is not base64url JSON"))?;
    let Some(name) = raw.get("alg").and_then(serde_json::Value::as_str) else {
        return Err(VerifyError::Malformed("header has no string \"alg\""));
    };
    let alg = name
        .parse::<Algorithm>()
        .ok()
        .filter(|a| ASYMMETRIC.contains(a) && allowed.contains(a))
        .ok_or_else(|| VerifyError::AlgorithmNotAllowed(name.chars().take(16).collect()))?;
    let header =
        jsonwebtoken::decode_header(jws).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    Ok((header, alg))
}

mod parse;
use parse::parse_jwks;
pub(crate) use parse::{PublicJwk, verifying_key};

#[cfg(test)]
mod tests;
