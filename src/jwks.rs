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

/// One JWK as found in the set; members we do not use are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWK Set, keeping the keys that can verify signatures. Keys of
/// other types, for encryption, or malformed, are skipped one by one.
fn parse_jwks(body: &[u8]) -> Result<Vec<AsKey>, JwksError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
    let keys: Vec<AsKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<RawJwk>(value).ok())
        .filter_map(usable_key)
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

fn usable_key(jwk: RawJwk) -> Option<AsKey> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let decoded_len = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .map(|b| b.len())
    };
    let (family, key): (&[Algorithm], DecodingKey) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let n = jwk.n.as_deref()?;
            let modulus = URL_SAFE_NO_PAD.decode(n).ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            (
                RSA_ALGS,
                DecodingKey::from_rsa_components(n, jwk.e.as_deref()?).ok()?,
            )
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (size, alg) = if crv == "P-256" {
                (32, &[Algorithm::ES256][..])
            } else {
                (48, &[Algorithm::ES384][..])
            };
            if decoded_len(&jwk.x) != Some(size) || decoded_len(&jwk.y) != Some(size) {
                return None;
            }
            (
                alg,
                DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?,
            )
        }
        ("OKP", Some("Ed25519")) => {
            if decoded_len(&jwk.x) != Some(32) {
                return None;
            }
            (
                &[Algorithm::EdDSA][..],
                DecodingKey::from_ed_components(jwk.x.as_deref()?).ok()?,
            )
        }
        // "oct" (symmetric) and anything else: never a verification key here.
        _ => return None,
    };
    let algs: Vec<Algorithm> = match jwk.alg.as_deref() {
        None => family.to_vec(),
        // RFC 8037 allows "Ed25519" as a fully specified name.
        Some("Ed25519") if family == [Algorithm::EdDSA] => family.to_vec(),
        Some(name) => {
            let alg = name.parse::<Algorithm>().ok()?;
            family.contains(&alg).then(|| vec![alg])?
        }
    };
    Some(AsKey {
        kid: jwk.kid,
        algs,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeys;
    use crate::keys::tests::{ed25519_pem, p256_pem, rsa_pem};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback JWKS endpoint that counts its fetches and serves whatever
    /// set the test puts in it.
    struct JwksServer {
        url: Url,
        fetches: Arc<AtomicUsize>,
        body: Arc<Mutex<String>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn jwks_server(body: String) -> JwksServer {
        let fetches = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(body));
        let (count, served) = (Arc::clone(&fetches), Arc::clone(&body));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (count, served) = (Arc::clone(&count), Arc::clone(&served));
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    ([("content-type", "application/json")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url: Url::parse(&format!("http://{addr}/jwks")).unwrap(),
            fetches,
            body,
            task,
        }
    }

    fn key_set(server: &JwksServer, refetch_interval: Duration) -> AsKeySet {
        AsKeySet::new(
            reqwest::Client::new(),
            server.url.clone(),
            JwksOptions {
                refetch_interval,
                ..JwksOptions::default()
            },
        )
    }

    fn sign(keys: &SigningKeys, claims: serde_json::Value) -> String {
        keys.current().sign("JWT", &claims).unwrap()
    }

    /// A JWS with an arbitrary header, signed with `keys` regardless of what
    /// the header says.
    fn forge(keys: &SigningKeys, header: serde_json::Value) -> String {
        let honest = sign(keys, serde_json::json!({"sub": "x"}));
        let mut parts = honest.split('.');
        let _ = parts.next();
        let payload = parts.next().unwrap();
        let signature = parts.next().unwrap();
        format!(
            "{}.{payload}.{signature}",
            URL_SAFE_NO_PAD.encode(header.to_string())
        )
    }

    #[tokio::test]
    async fn verifies_with_each_key_type_and_the_key_decides_the_algorithm() {
        for pem in [p256_pem(), ed25519_pem(), rsa_pem()] {
            let keys = SigningKeys::from_pem(&pem).unwrap();
            let server = jwks_server(keys.jwks_json()).await;
            let set = key_set(&server, Duration::from_secs(60));
            let jws = sign(&keys, serde_json::json!({"sub": "alice"}));
            let verified = set.verify(&jws, ASYMMETRIC).await.unwrap();
            assert_eq!(verified.claims["sub"], "alice");
            assert_eq!(verified.header.alg, keys.current().alg());

            // The same key may not be used with another algorithm of the
            // allow-list, even when the header asks for it.
            let other = if keys.current().alg() == Algorithm::ES256 {
                "EdDSA"
            } else {
                "ES256"
            };
            let kid = keys.current().kid();
            let swapped = forge(&keys, serde_json::json!({"alg": other, "kid": kid}));
            assert_eq!(
                set.verify(&swapped, ASYMMETRIC).await.unwrap_err(),
                VerifyError::KeyAlgorithmMismatch(other.to_owned())
            );
            // Not on the caller's allow-list.
            assert!(matches!(
                set.verify(&jws, &[Algorithm::PS512]).await,
                Err(VerifyError::AlgorithmNotAllowed(_))
            ));
        }
    }

    #[tokio::test]
    async fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused() {
        let keys = SigningKeys::from_pem(&rsa_pem()).unwrap();
        let server = jwks_server(keys.jwks_json()).await;
        let set = key_set(&server, Duration::from_secs(60));
        let kid = keys.current().kid().to_owned();
        // The classic confusion: the attacker knows the public key and uses
        // its bytes (JWK JSON, or n) as the HMAC secret.
        let public_bytes = keys.jwks_json();
        let n = keys.current().public_jwk().n.clone().unwrap();
        for secret in [public_bytes.as_bytes(), n.as_bytes()] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "mallory"}),
                &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
            )
            .unwrap();
            // Even an allow-list that names HS256 does not admit it.
            assert_eq!(
                set.verify(&forged, &[Algorithm::HS256, Algorithm::RS256])
                    .await
                    .unwrap_err(),
                VerifyError::AlgorithmNotAllowed("HS256".to_owned())
            );
        }
        // An "oct" key in the AS's set is never used either.
        let with_oct = format!(r#"{{"keys":[{{"kty":"oct","kid":"{kid}","k":"c2VjcmV0"}}]}}"#);
        assert_eq!(
            parse_jwks(with_oct.as_bytes()).err(),
            Some(JwksError::NoUsableKeys)
        );
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
        let server = jwks_server(keys.jwks_json()).await;
        let set = key_set(&server, Duration::from_secs(60));
        let kid = keys.current().kid();
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#);
        for header in [
            serde_json::json!({"alg": "none", "kid": kid}),
            serde_json::json!({"alg": "None"}),
        ] {
            let header = URL_SAFE_NO_PAD.encode(header.to_string());
            for jws in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.c2ln"),
            ] {
                assert!(
                    matches!(
                        set.verify(&jws, ASYMMETRIC).await,
                        Err(VerifyError::AlgorithmNotAllowed(_))
                    ),
                    "{jws}"
                );
            }
        }
        assert_eq!(
            server.fetches.load(Ordering::SeqCst),
            0,
            "no key was needed"
        );
    }

    #[tokio::test]
    async fn tampering_with_payload_or_signature_fails_verification() {
        let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
        let server = jwks_server(keys.jwks_json()).await;
        let set = key_set(&server, Duration::from_secs(60));
        let jws = sign(&keys, serde_json::json!({"sub": "alice", "active": true}));
        let (head, signature) = jws.rsplit_once('.').unwrap();
        let (header, payload) = head.split_once('.').unwrap();
        let other_payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","active":true}"#);
        let mut flipped = signature.as_bytes().to_vec();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for tampered in [
            format!("{header}.{other_payload}.{signature}"),
            format!("{header}.{payload}.{flipped}"),
        ] {
            assert_eq!(
                set.verify(&tampered, ASYMMETRIC).await.unwrap_err(),
                VerifyError::BadSignature
            );
        }
    }

    #[tokio::test]
    async fn forged_kids_refetch_at_most_once_per_interval() {
        let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
        let server = jwks_server(keys.jwks_json()).await;
        let interval = Duration::from_millis(700);
        let set = Arc::new(key_set(&server, interval));
        assert_eq!(set.refresh().await, Ok(1));
        let started = Instant::now();

        // 100 forged kids, half at once, half one after another.
        let concurrent: Vec<_> = (0..50)
            .map(|i| {
                let set = Arc::clone(&set);
                let jws = forge(
                    &keys,
                    serde_json::json!({"alg": "ES256", "kid": format!("forged-{i}")}),
                );
                tokio::spawn(async move { set.verify(&jws, ASYMMETRIC).await })
            })
            .collect();
        for task in concurrent {
            assert_eq!(task.await.unwrap().unwrap_err(), VerifyError::UnknownKey);
        }
        for i in 50..100 {
            let jws = forge(
                &keys,
                serde_json::json!({"alg": "ES256", "kid": format!("forged-{i}")}),
            );
            assert_eq!(
                set.verify(&jws, ASYMMETRIC).await.unwrap_err(),
                VerifyError::UnknownKey
            );
        }
        assert!(
            started.elapsed() < interval,
            "the test ran too slowly to judge"
        );
        let fetches = server.fetches.load(Ordering::SeqCst);
        assert!(fetches <= 2, "{fetches} fetches for one interval");

        // A genuine key still verifies without a fetch.
        let good = sign(&keys, serde_json::json!({"sub": "a"}));
        set.verify(&good, ASYMMETRIC).await.unwrap();
        assert_eq!(server.fetches.load(Ordering::SeqCst), fetches);

        // After the interval, one more miss may fetch once more.
        tokio::time::sleep(interval).await;
        for i in 0..20 {
            let jws = forge(
                &keys,
                serde_json::json!({"alg": "ES256", "kid": format!("later-{i}")}),
            );
            let _ = set.verify(&jws, ASYMMETRIC).await;
        }
        assert_eq!(server.fetches.load(Ordering::SeqCst), fetches + 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_refetching() {
        let old = SigningKeys::from_pem(&p256_pem()).unwrap();
        let new = SigningKeys::from_pem(&ed25519_pem()).unwrap();
        let server = jwks_server(old.jwks_json()).await;
        let set = key_set(&server, Duration::ZERO);
        set.verify(&sign(&old, serde_json::json!({})), ASYMMETRIC)
            .await
            .unwrap();
        *server.body.lock().unwrap() = new.jwks_json();
        let verified = set
            .verify(&sign(&new, serde_json::json!({"sub": "b"})), ASYMMETRIC)
            .await
            .unwrap();
        assert_eq!(verified.claims["sub"], "b");
        assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_jwks_is_a_typed_error() {
        let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let set = AsKeySet::new(reqwest::Client::new(), url, JwksOptions::default());
        let jws = sign(&keys, serde_json::json!({}));
        assert!(matches!(
            set.verify(&jws, ASYMMETRIC).await,
            Err(VerifyError::Keys(JwksError::Unreachable(_)))
        ));
    }

    #[test]
    fn the_jwk_fixes_which_algorithms_a_key_verifies() {
        let p256 = SigningKeys::from_pem(&p256_pem()).unwrap();
        let rsa = SigningKeys::from_pem(&rsa_pem()).unwrap();
        let mut rsa_no_alg = serde_json::to_value(rsa.current().public_jwk()).unwrap();
        rsa_no_alg.as_object_mut().unwrap().remove("alg");
        let mut ec_wrong_alg = serde_json::to_value(p256.current().public_jwk()).unwrap();
        ec_wrong_alg["alg"] = "ES384".into();
        let mut enc = serde_json::to_value(p256.current().public_jwk()).unwrap();
        enc["use"] = "enc".into();
        let set = serde_json::json!({"keys": [
            p256.current().public_jwk(), rsa.current().public_jwk(), rsa_no_alg, ec_wrong_alg, enc,
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc3; 128]), "e": "AQAB"},
            "not an object",
        ]});
        let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
        let algs: Vec<Vec<Algorithm>> = keys.iter().map(|k| k.algs.clone()).collect();
        assert_eq!(
            algs,
            vec![
                vec![Algorithm::ES256],
                vec![Algorithm::RS256],
                RSA_ALGS.to_vec()
            ]
        );
        assert!(matches!(parse_jwks(b"[]"), Err(JwksError::Malformed(_))));
        assert!(matches!(
            parse_jwks(b"{\"keys\":{}}"),
            Err(JwksError::Malformed(_))
        ));
    }
}
