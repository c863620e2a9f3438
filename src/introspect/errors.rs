//! What introspection answers, and why it can give no answer.

use super::*;

/// What the AS said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    Active(ActiveToken),
    Inactive,
}

/// An active token: the JWT to forward, and what the AS said about the
/// token. The two are kept apart: an API's rules (scopes, audience, step-up,
/// the key binding) read `claims`, never a JWT the plugin minted.
#[derive(Clone, PartialEq)]
pub struct ActiveToken {
    /// The JWT to forward: the AS's own (Curity's answer, a ready JWT), or
    /// one the plugin minted.
    pub jwt: String,
    /// What the AS said: the claims of its JWT, or the members of its RFC
    /// 7662 answer, with `sub` set by the subject rule when it sent none.
    pub claims: Claims,
    /// Whether the plugin minted `jwt` (and may mint it again for an API's
    /// own audience).
    pub minted: bool,
    /// What the AS's caching headers said.
    pub cache: CacheDirectives,
}

impl std::fmt::Debug for ActiveToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveToken")
            .field("jwt", &"[redacted]")
            .field("exp", &self.claims.exp)
            .field("minted", &self.minted)
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
    pub(super) fn is_connection_failure(&self) -> bool {
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
    #[error(
        "VERIFY_JWT=true, but the AS's JWKS or issuer is unknown: set INTROSPECTION_JWKS_URL and JWT_ISSUER, or an ISSUER whose metadata names jwks_uri"
    )]
    NoJwksToVerify,
}
