//! DPoP at the gateway (RFC 9449): requests with `Authorization: DPoP
//! <token>` and a `DPoP` proof are checked here before the token is looked
//! up, and the token's binding (`cnf.jkt` of the introspection answer) after.
//!
//! What must hold:
//! - A malformed, foreign or stale proof never reaches the AS:
//!   [`Dpop::screen`] runs on the request alone, the lookup comes after. So
//!   does a proof this replica already remembers.
//! - A proof is remembered ([`Dpop::remember`]) only once its token was
//!   decided and bound to the proof's key: proofs for junk or unbound tokens
//!   take no room in the replay store, so they cannot push a victim's proof
//!   out. A replay of a proof remembered only by another replica is caught
//!   there, through Redis, after the lookup.
//! - A token whose answer carries `cnf.jkt` is accepted only with a proof
//!   signed by that key ([`Dpop::bind`]); presented as `Bearer` it is refused.
//! - Tyk passes the first `DPoP` header only, so "exactly one proof" is
//!   checked as far as Tyk lets us: a value holding two proofs joined by a
//!   comma is refused; a second header line never reaches the plugin.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Url;

use crate::authz::Grant;
use crate::config::DpopConfig;
use crate::shared::SharedCache;
use crate::token::{TokenError, extract_bearer};

mod nonce;
mod outcome;
mod proof;
mod replay;

pub use nonce::Nonces;
pub use outcome::{DpopOutcome, register_outcomes};
pub use proof::{
    DPOP_TYP, Expected, MAX_JTI_BYTES, MAX_PROOF_BYTES, Proof, ProofError, ath_of, same_target,
    verify_signature,
};
pub use replay::{ProofClaim, ReplayCache, Seen};

/// The header that carries the proof, as Tyk passes it (Go-canonical).
pub const PROOF_HEADER: &str = "Dpop";

/// An API's DPoP settings, from its `config_data`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DpopRules {
    /// `dpop_base_url`: the external scheme, host (and path prefix) the
    /// proofs' `htu` names; the request path is appended. Default:
    /// `DPOP_BASE_URL`, else the request's scheme and `Host` header (which
    /// the client chooses).
    pub base_url: Option<Url>,
    /// `dpop_required`: refuse `Bearer` requests.
    pub required: bool,
}

/// Parses `dpop_base_url` (and `DPOP_BASE_URL`): an absolute `http(s)` URL
/// without user, query or fragment.
///
/// # Errors
///
/// A message for the log.
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http or https URL with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("no user information allowed".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("no query or fragment allowed".to_owned());
    }
    Ok(url)
}

/// Why a DPoP request (or a bound token without one) is refused; answered
/// in [`crate::reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopDenial {
    /// The proof is missing or wrong: 401 `invalid_dpop_proof`.
    Proof(ProofError),
    /// The server nonce is missing or stale: 401 `use_dpop_nonce` with this
    /// fresh nonce in `DPoP-Nonce`.
    UseNonce(String),
    /// `DPoP` scheme, but the answer binds the token to no key.
    Unbound,
    /// The answer binds the token to another key.
    KeyMismatch,
    /// A DPoP-bound token presented as `Bearer`.
    BoundAsBearer,
    /// The API requires DPoP and the request is not one; `token` when it
    /// carried some other credentials.
    Required { token: bool },
    /// The proof checked out but the replay store is full of live proofs:
    /// not the client's fault, answered 503 with `Retry-After`.
    ReplayStoreFull,
}

impl DpopDenial {
    pub fn outcome(&self) -> DpopOutcome {
        match self {
            DpopDenial::Proof(e) => DpopOutcome::from(*e),
            DpopDenial::UseNonce(_) => DpopOutcome::Nonce,
            DpopDenial::Unbound => DpopOutcome::Unbound,
            DpopDenial::KeyMismatch => DpopOutcome::KeyMismatch,
            DpopDenial::BoundAsBearer => DpopOutcome::BoundAsBearer,
            DpopDenial::Required { .. } => DpopOutcome::Required,
            DpopDenial::ReplayStoreFull => DpopOutcome::ReplayStoreFull,
        }
    }

    /// The log reason.
    pub fn as_str(&self) -> &'static str {
        self.outcome().as_str()
    }
}

/// The request facts a proof is checked against, as Tyk sends them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub authorization: Option<&'a str>,
    pub proof: Option<&'a str>,
    pub method: &'a str,
    /// Path and query (listen path included).
    pub url: &'a str,
    /// `http` or `https`, as the client reached Tyk.
    pub scheme: &'a str,
    pub host: Option<&'a str>,
}

/// What [`Dpop::screen`] makes of a request.
#[derive(Debug)]
pub enum Screened {
    /// Not a DPoP request: decided as before, then [`Dpop::bind`] with
    /// `None` refuses a bound token.
    Bearer,
    /// A valid, fresh proof: decide with `authorization` (`Bearer
    /// <token>`), then [`Dpop::bind`] with `jkt`, then, if both passed,
    /// [`Dpop::remember`] the `claim`. `claim` is `None` (and `jkt` empty)
    /// when the token itself is malformed: it is refused as such when
    /// decided.
    Dpop {
        authorization: String,
        jkt: String,
        claim: Option<ProofClaim>,
    },
    Refused(DpopDenial),
}

/// The gateway's DPoP checks.
pub struct Dpop {
    algs: Vec<Algorithm>,
    window: u64,
    skew: u64,
    replay: ReplayCache,
    nonces: Option<Nonces>,
    forward_proof: bool,
    max_token_bytes: usize,
    /// `DPOP_BASE_URL`, for APIs without their own.
    base_url: Option<Url>,
}

impl Dpop {
    /// `nonce_secret` keys the server nonces (shared by the fleet);
    /// `skew` is the clock skew allowed for `iat` in the future.
    pub fn new(
        config: &DpopConfig,
        skew: Duration,
        nonce_secret: &[u8],
        max_token_bytes: usize,
    ) -> Self {
        Dpop {
            algs: config.algs.clone(),
            window: config.iat_window_seconds,
            skew: skew.as_secs(),
            replay: ReplayCache::new(config.replay_capacity),
            nonces: config
                .nonce
                .then(|| Nonces::new(nonce_secret, config.iat_window_seconds)),
            forward_proof: config.forward_proof,
            max_token_bytes,
            base_url: config.base_url.clone(),
        }
    }

    /// Whether the `DPoP` header goes upstream (`DPOP_FORWARD_PROOF`).
    pub fn forwards_proof(&self) -> bool {
        self.forward_proof
    }

    /// Checks everything the request alone can show, before any lookup:
    /// the scheme, the proof, its claims against the request, the nonce,
    /// and whether this replica already remembers the proof. Nothing is
    /// remembered here; see [`Dpop::remember`]. `now` is unix seconds.
    pub fn screen(&self, request: &RequestFacts<'_>, rules: &DpopRules, now: u64) -> Screened {
        let header = request
            .authorization
            .unwrap_or_default()
            .trim_matches([' ', '\t']);
        let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("dpop") {
            if rules.required {
                return Screened::Refused(DpopDenial::Required {
                    token: !header.is_empty(),
                });
            }
            return Screened::Bearer;
        }
        // The token is checked as a bearer token is; a malformed one is
        // refused as such when it is decided.
        let authorization = format!("Bearer {}", rest.trim_start_matches([' ', '\t']));
        let token = match extract_bearer(Some(&authorization), self.max_token_bytes) {
            Ok(token) => token.expose(),
            Err(TokenError::Missing | TokenError::Malformed | TokenError::TooLong) => {
                return Screened::Dpop {
                    authorization,
                    jkt: String::new(),
                    claim: None,
                };
            }
        };
        match self.check_proof(request, rules, token, now) {
            Ok((jkt, claim)) => Screened::Dpop {
                authorization,
                jkt,
                claim: Some(claim),
            },
            Err(denial) => Screened::Refused(denial),
        }
    }

    fn check_proof(
        &self,
        request: &RequestFacts<'_>,
        rules: &DpopRules,
        token: &str,
        now: u64,
    ) -> Result<(String, ProofClaim), DpopDenial> {
        let raw = request
            .proof
            .map(|p| p.trim_matches([' ', '\t']))
            .filter(|p| !p.is_empty())
            .ok_or(DpopDenial::Proof(ProofError::Missing))?;
        let proof = verify_signature(raw, &self.algs).map_err(DpopDenial::Proof)?;
        let base_url = rules.base_url.as_ref().or(self.base_url.as_ref());
        let htu = request_htu(request, base_url).ok_or(DpopDenial::Proof(ProofError::WrongUrl))?;
        proof
            .check(&Expected {
                method: request.method,
                htu: &htu,
                access_token: token,
                now,
                window: self.window,
                skew: self.skew,
            })
            .map_err(DpopDenial::Proof)?;
        if let Some(nonces) = &self.nonces
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.accepts(n, now))
        {
            return Err(DpopDenial::UseNonce(nonces.current(now)));
        }
        let claim = ProofClaim::new(&proof.jkt, &proof.jti, proof.iat, self.window);
        if self.replay.seen(&claim, Duration::from_secs(now)) {
            return Err(DpopDenial::Proof(ProofError::Replayed));
        }
        Ok((proof.jkt, claim))
    }

    /// Remembers a screened proof once its token was decided and bound to
    /// its key, until its window ends: here and, with `shared`, in Redis.
    /// `now` is unix time.
    ///
    /// # Errors
    ///
    /// [`ProofError::Replayed`] when this replica or another remembered it
    /// first (the request is refused like any replay);
    /// [`DpopDenial::ReplayStoreFull`] when this replica has no room (no
    /// live proof is ever forgotten to make some).
    pub async fn remember(
        &self,
        claim: &ProofClaim,
        shared: Option<&SharedCache>,
        now: Duration,
    ) -> Result<(), DpopDenial> {
        match self.replay.record(claim, now, shared).await {
            Seen::First => Ok(()),
            Seen::Replayed => Err(DpopDenial::Proof(ProofError::Replayed)),
            Seen::Full => Err(DpopDenial::ReplayStoreFull),
        }
    }

    /// The binding check once the token is decided: `jkt` is the proof's
    /// thumbprint for a DPoP request, `None` for a `Bearer` one.
    ///
    /// # Errors
    ///
    /// [`DpopDenial::BoundAsBearer`], [`DpopDenial::Unbound`] or
    /// [`DpopDenial::KeyMismatch`].
    pub fn bind(grant: &Grant, jkt: Option<&str>) -> Result<(), DpopDenial> {
        match (grant.claims.jkt(), jkt) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(DpopDenial::BoundAsBearer),
            (None, Some(_)) => Err(DpopDenial::Unbound),
            (Some(bound), Some(jkt)) if bound == jkt => Ok(()),
            (Some(_), Some(_)) => Err(DpopDenial::KeyMismatch),
        }
    }
}

/// `"ES256 ES384 …"`.
pub fn algs_param(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The URL the client sent the request to, without query or fragment:
/// `base_url` (the API's `dpop_base_url`, else `DPOP_BASE_URL`) followed by
/// the request path, or else the request's scheme, `Host` header and path.
/// `None` when they make no URL (a `Host` with characters a host cannot
/// have).
///
/// Without a base URL the `Host` header decides, and the client chooses it:
/// a proof made for another host (another API or deployment that takes the
/// same tokens) is accepted here when replayed with that `Host`.
pub fn request_htu(request: &RequestFacts<'_>, base_url: Option<&Url>) -> Option<Url> {
    let path = request.url.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    let text = match base_url {
        Some(base) => format!("{}{path}", base.as_str().trim_end_matches('/')),
        None => {
            let host = request.host.filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b))
            })?;
            let scheme = match request.scheme {
                "https" => "https",
                _ => "http",
            };
            format!("{scheme}://{host}{path}")
        }
    };
    Url::parse(&text).ok()
}

#[cfg(test)]
mod tests;
