//! What a decision comes to: the grant, or why the request is denied.

use std::sync::Arc;

use super::Grant;
use crate::api_rules::{RuleDenial, StepUpChallenge};
use crate::cache::Lookup;
use crate::introspect::IntrospectError;
use crate::token::TokenDigest;

/// Why a request is denied. Turned into Tyk's answer in one place
/// ([`Replies::rescue`](crate::reply::Replies::rescue)).
#[derive(Debug, Clone)]
pub enum Denial {
    /// No bearer credentials at all: a bare challenge.
    NoCredentials,
    /// The token is malformed, too long, inactive, expired, or not meant
    /// for this API.
    InvalidToken(InvalidToken),
    /// The token lacks scopes the API requires (space-separated here).
    InsufficientScope(String),
    /// The user's authentication is too weak or too old for the API
    /// (RFC 9470 step-up).
    InsufficientUserAuthentication(StepUpChallenge),
    /// The API's `config_data` is invalid: no request to it can be decided.
    InvalidApiConfig,
    /// The AS gave no answer about the token.
    Introspection(Arc<IntrospectError>),
    /// The service is stopping and the grace period for this call is over.
    ShuttingDown,
    /// A DPoP proof or key binding failed (RFC 9449).
    Dpop(crate::dpop::DpopDenial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidToken {
    Malformed,
    TooLong,
    /// 204, or `{"active":false}`.
    Inactive,
    /// The AS answered with a JWT whose `exp` has passed.
    Expired,
    /// Its `aud` does not name this API, or the AS issued it for other
    /// resources than the audience this API's JWTs are minted for.
    WrongAudience,
    /// It is bound to a key in a way the plugin cannot check (e.g. a
    /// mutual-TLS certificate thumbprint).
    UncheckedBinding,
}

impl InvalidToken {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidToken::Malformed => "malformed",
            InvalidToken::TooLong => "too_long",
            InvalidToken::Inactive => "inactive",
            InvalidToken::Expired => "expired",
            InvalidToken::WrongAudience => "audience",
            InvalidToken::UncheckedBinding => "unchecked_binding",
        }
    }
}

impl From<RuleDenial> for Denial {
    fn from(refused: RuleDenial) -> Self {
        match refused {
            RuleDenial::WrongAudience => Denial::InvalidToken(InvalidToken::WrongAudience),
            RuleDenial::InsufficientScope(scopes) => Denial::InsufficientScope(scopes),
            RuleDenial::InsufficientUserAuthentication(challenge) => {
                Denial::InsufficientUserAuthentication(challenge)
            }
        }
    }
}

/// The outcome of a decision, with what logging needs.
pub struct Verdict {
    /// Digest of the token (or of the malformed header), when there was one.
    pub digest: Option<TokenDigest>,
    /// Whether the answer came from the cache, when the AS was consulted.
    pub lookup: Option<Lookup>,
    pub result: Result<Arc<Grant>, Denial>,
}

impl Verdict {
    pub(super) fn denied(digest: Option<TokenDigest>, denial: Denial) -> Self {
        Verdict {
            digest,
            lookup: None,
            result: Err(denial),
        }
    }
}

/// What Curity's `post_key_auth` hook does with a request Tyk already
/// authenticated (see [`Authorizer::upstream`](super::Authorizer::upstream)).
#[derive(Debug)]
pub enum Upstream {
    /// Leave the request as it is: it carries no usable bearer token, or the
    /// JWT already.
    Unchanged,
    /// Forward this `Authorization` value (`Bearer <JWT>`) upstream.
    Forward(String),
    /// Deny the request; `digest` identifies the token in the log line.
    Deny {
        digest: Option<TokenDigest>,
        denial: Denial,
    },
}
