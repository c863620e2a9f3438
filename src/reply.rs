//! Denials as Tyk replies. [`Replies::rescue`] is the one place where a
//! [`Denial`] becomes a status, message and headers; each reply has a named
//! constructor on [`Deny`]. Nothing here knows Tyk's protobuf types:
//! [`crate::tyk::deny`] writes a [`Deny`] into the object.
//!
//! | denial | status | body | headers |
//! |---|---|---|---|
//! | no bearer credentials | 401 | Tyk template | `WWW-Authenticate: Bearer realm=".."` |
//! | malformed, inactive, expired, wrong audience | 401 | Tyk template | `.., error="invalid_token"` |
//! | scopes missing | 403 | Tyk template | `.., error="insufficient_scope", scope=".."` |
//! | step-up needed (RFC 9470) | 401 | Tyk template | `.., error="insufficient_user_authentication", error_description="..", acr_values="..", max_age=".."` |
//! | invalid `config_data` | 500 | JSON | — |
//! | AS error status, bad answer, credentials refused, TLS failure | 502 | JSON | — |
//! | AS unreachable or 503/429, breaker open, too many in flight | 503 | JSON | `Retry-After` |
//! | AS timed out | 504 | JSON | — |
//! | shutdown grace period over | 503 | JSON | `Retry-After` |
//! | DPoP proof missing or wrong | 401 | Tyk template | `DPoP realm="..", error="invalid_dpop_proof", algs=".."` |
//! | DPoP nonce missing or stale | 401 | Tyk template | `DPoP .., error="use_dpop_nonce", ..`, `DPoP-Nonce` |
//! | DPoP token unbound or bound to another key | 401 | Tyk template | `DPoP .., error="invalid_token", ..` |
//! | DPoP-bound token as `Bearer` | 401 | Tyk template | `DPoP .., error="invalid_token", .., Bearer realm=".."` |
//! | `dpop_required` API, no DPoP | 401 | Tyk template | `DPoP realm="..", algs=".."` (`error="invalid_token"` if a token came) |
//! | DPoP replay store full of live proofs | 503 | JSON | `Retry-After` |
//!
//! 401 and 403 go through Tyk's template with `override_error` off so Tyk
//! fires its AuthFailure event. The 5xx are not the client's authentication
//! failure: they are sent as raw JSON in the template's layout and fire no
//! event.

use tracing::{debug, info, warn};

use crate::api_rules::StepUpChallenge;
use crate::authz::Denial;
use crate::config::ChallengeConfig;
use crate::dpop::DpopDenial;
use crate::introspect::IntrospectError;
use crate::metrics::{Decision, Metrics};

/// How a denied request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub status: i32,
    /// Short, generic text: never a token, URL or upstream body.
    pub message: &'static str,
    /// Headers for the client response (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
    /// `false`: Tyk renders its JSON error template and fires AuthFailure.
    /// `true`: we send the body ourselves and Tyk fires nothing.
    pub raw_body: bool,
}

impl Deny {
    /// 401 for a request without bearer credentials: a bare challenge
    /// (RFC 6750 §3.1), `www_authenticate` being `Bearer realm=".."`.
    pub fn challenge(www_authenticate: &str) -> Deny {
        Deny::client(401, "Authorization required", www_authenticate.to_owned())
    }

    /// 401 for a malformed, inactive, expired or foreign token,
    /// `www_authenticate` carrying `error="invalid_token"`.
    pub fn invalid_token(www_authenticate: &str) -> Deny {
        Deny::client(401, "Invalid access token", www_authenticate.to_owned())
    }

    /// 403 for a token without the `scopes` (space-separated) the API
    /// requires.
    pub fn insufficient_scope(realm: &str, scopes: &str) -> Deny {
        Deny::client(
            403,
            "Insufficient scope",
            format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scopes}\""),
        )
    }

    /// 401 for a token whose user authentication is too weak or too old
    /// (RFC 9470 §3): `acr_values` and `max_age` name what the API requires,
    /// both quoted as the RFC's examples show.
    pub fn insufficient_user_authentication(realm: &str, challenge: &StepUpChallenge) -> Deny {
        let mut header = format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", error_description=\"{}\"",
            challenge.description()
        );
        if let Some(acr_values) = &challenge.acr_values {
            header.push_str(&format!(", acr_values=\"{acr_values}\""));
        }
        if let Some(max_age) = challenge.max_age {
            header.push_str(&format!(", max_age=\"{max_age}\""));
        }
        Deny::client(401, "Insufficient user authentication", header)
    }

    /// 401 for a DPoP request, `www_authenticate` being a `DPoP` challenge
    /// (RFC 9449 §7.1); `nonce` goes in `DPoP-Nonce`.
    pub fn dpop(message: &'static str, www_authenticate: String, nonce: Option<String>) -> Deny {
        let mut deny = Deny::client(401, message, www_authenticate);
        deny.headers.extend(nonce.map(|n| ("DPoP-Nonce", n)));
        deny
    }

    /// 500: the API's `config_data` is invalid, so no request to it can be
    /// decided.
    pub fn invalid_api_config() -> Deny {
        Deny::server(500, "Invalid API configuration", Vec::new())
    }

    /// 502: the AS answered, but not with something usable (an error status,
    /// refused credentials, a bad body, a failed TLS handshake).
    pub fn as_fault() -> Deny {
        Deny::server(502, "Authorization server error", Vec::new())
    }

    /// 503: the AS cannot be asked now; try again after `retry_after`
    /// seconds.
    pub fn as_unavailable(retry_after: String) -> Deny {
        Deny::unavailable("Authorization server unavailable", retry_after)
    }

    /// 504: the AS did not answer in time.
    pub fn as_timeout() -> Deny {
        Deny::server(504, "Authorization server timed out", Vec::new())
    }

    /// 503: the plugin is stopping and this call's grace period is over.
    pub fn shutting_down(retry_after: String) -> Deny {
        Deny::unavailable("Temporarily unavailable", retry_after)
    }

    /// 503: the plugin has no room for this request now (the DPoP replay
    /// store is full of live proofs); try again after `retry_after` seconds.
    pub fn overloaded(retry_after: String) -> Deny {
        Deny::unavailable("Temporarily unavailable", retry_after)
    }

    /// 503 with `Retry-After`.
    fn unavailable(message: &'static str, retry_after: String) -> Deny {
        Deny::server(503, message, vec![("Retry-After", retry_after)])
    }

    /// The client's authentication failed: Tyk's template, and its event.
    fn client(status: i32, message: &'static str, www_authenticate: String) -> Deny {
        Deny {
            status,
            message,
            headers: vec![("WWW-Authenticate", www_authenticate)],
            raw_body: false,
        }
    }

    /// Not the client's fault: raw JSON, no event.
    fn server(status: i32, message: &'static str, headers: Vec<(&'static str, String)>) -> Deny {
        Deny {
            status,
            message,
            headers,
            raw_body: true,
        }
    }
}

/// The same bytes Tyk's default error template produces for `message`, so
/// clients see one error format whichever path answered.
pub fn error_json(message: &str) -> String {
    let quoted = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".to_owned());
    format!("{{\n    \"error\": {quoted}\n}}")
}

/// Settings that shape denials, with header values built once.
pub struct Replies {
    realm: String,
    bare_challenge: String,
    invalid_token_challenge: String,
    retry_after: String,
    /// The `algs` parameter of DPoP challenges.
    dpop_algs: String,
}

impl Replies {
    pub fn new(config: &ChallengeConfig) -> Self {
        let ChallengeConfig {
            realm,
            retry_after_seconds,
        } = config;
        Replies {
            realm: realm.clone(),
            bare_challenge: format!("Bearer realm=\"{realm}\""),
            invalid_token_challenge: format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
            retry_after: retry_after_seconds.to_string(),
            dpop_algs: crate::dpop::algs_param(crate::config::DEFAULT_DPOP_ALGS),
        }
    }

    /// With the DPoP proof algorithms named in challenges.
    #[must_use]
    pub fn with_dpop_algs(mut self, algs: &[jsonwebtoken::Algorithm]) -> Self {
        self.dpop_algs = crate::dpop::algs_param(algs);
        self
    }

    /// A denial of a request made with the DPoP scheme, challenged in that
    /// scheme (RFC 9449 §7.1): a `Bearer` challenge (invalid or inactive
    /// token, insufficient scope, step-up) becomes the same parameters under
    /// `DPoP`, with `algs`. Other denials are unchanged.
    pub fn refuse_dpop_request(&self, denial: &Denial, token_id: &str, metrics: &Metrics) -> Deny {
        let mut deny = self.refuse(denial, token_id, metrics);
        for (name, value) in &mut deny.headers {
            if name.eq_ignore_ascii_case("WWW-Authenticate")
                && let Some(params) = value.strip_prefix("Bearer ")
            {
                *value = format!("DPoP {params}, algs=\"{}\"", self.dpop_algs);
            }
        }
        deny
    }

    /// The 401 for a DPoP denial (RFC 9449 §7.1 and §8).
    fn dpop(&self, denial: &DpopDenial) -> Deny {
        let Replies {
            realm, dpop_algs, ..
        } = self;
        let challenge = |error: &str| {
            format!("DPoP realm=\"{realm}\", error=\"{error}\", algs=\"{dpop_algs}\"")
        };
        const PROOF: &str = "Invalid DPoP proof";
        const TOKEN: &str = "Invalid access token";
        match denial {
            DpopDenial::Proof(_) => Deny::dpop(PROOF, challenge("invalid_dpop_proof"), None),
            DpopDenial::UseNonce(nonce) => {
                Deny::dpop(PROOF, challenge("use_dpop_nonce"), Some(nonce.clone()))
            }
            DpopDenial::Unbound | DpopDenial::KeyMismatch => {
                Deny::dpop(TOKEN, challenge("invalid_token"), None)
            }
            // Both schemes in one header value (Tyk's override headers hold
            // one value per name; RFC 9110 §11.6.1 allows a list).
            DpopDenial::BoundAsBearer => Deny::dpop(
                TOKEN,
                format!("{}, {}", challenge("invalid_token"), self.bare_challenge),
                None,
            ),
            DpopDenial::Required { token: true } => {
                Deny::dpop(TOKEN, challenge("invalid_token"), None)
            }
            DpopDenial::Required { token: false } => Deny::dpop(
                "Authorization required",
                format!("DPoP realm=\"{realm}\", algs=\"{dpop_algs}\""),
                None,
            ),
            // The proof was good: the plugin has no room to remember it,
            // which is not the client's fault (a 401 would make it drop a
            // valid token). It retries with a fresh proof.
            DpopDenial::ReplayStoreFull => Deny::overloaded(self.retry_after.clone()),
        }
    }

    /// Turns a denial into Tyk's answer (see the table above) and the
    /// decision it is counted as.
    pub fn rescue(&self, denial: &Denial) -> (Deny, Decision) {
        match denial {
            Denial::NoCredentials => (
                Deny::challenge(&self.bare_challenge),
                Decision::NoCredentials,
            ),
            Denial::InvalidToken(_) => (
                Deny::invalid_token(&self.invalid_token_challenge),
                Decision::InvalidToken,
            ),
            Denial::InsufficientScope(scopes) => (
                Deny::insufficient_scope(&self.realm, scopes),
                Decision::InsufficientScope,
            ),
            Denial::InsufficientUserAuthentication(challenge) => (
                Deny::insufficient_user_authentication(&self.realm, challenge),
                Decision::InsufficientUserAuthentication,
            ),
            Denial::InvalidApiConfig => (Deny::invalid_api_config(), Decision::InvalidConfig),
            Denial::Dpop(denial) => (
                self.dpop(denial),
                match denial {
                    DpopDenial::Required { token: false } => Decision::NoCredentials,
                    DpopDenial::ReplayStoreFull => Decision::Overloaded,
                    _ => Decision::InvalidToken,
                },
            ),
            Denial::ShuttingDown => (
                Deny::shutting_down(self.retry_after.clone()),
                Decision::ShuttingDown,
            ),
            Denial::Introspection(error) => match error.as_ref() {
                IntrospectError::Timeout => (Deny::as_timeout(), Decision::AsTimeout),
                IntrospectError::Unreachable(_)
                | IntrospectError::Unavailable(_)
                | IntrospectError::Overloaded => (
                    Deny::as_unavailable(self.retry_after.clone()),
                    Decision::AsUnavailable,
                ),
                IntrospectError::BreakerOpen { retry_after } => {
                    // Whole seconds, rounded up, at least one.
                    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    (
                        Deny::as_unavailable(seconds.max(1).to_string()),
                        Decision::AsUnavailable,
                    )
                }
                IntrospectError::Tls(_)
                | IntrospectError::CredentialsRejected(_)
                | IntrospectError::UnexpectedStatus(_)
                | IntrospectError::NotJwt(_)
                | IntrospectError::TooLarge(_)
                | IntrospectError::Answer(_)
                | IntrospectError::SignedUnverifiable
                | IntrospectError::NoJwt
                | IntrospectError::Mint(_)
                | IntrospectError::ClientAuth(_) => (Deny::as_fault(), Decision::AsError),
            },
        }
    }

    /// The reply to `denial`, counted and logged. `token_id` identifies the
    /// token (or malformed header) in the log line; empty when there was
    /// none.
    pub fn refuse(&self, denial: &Denial, token_id: &str, metrics: &Metrics) -> Deny {
        let (deny, decision) = self.rescue(denial);
        metrics.decision(decision);
        let status = deny.status;
        match denial {
            Denial::Introspection(error) => {
                warn!(status, token.id = %token_id, error = %error, "Introspection failed");
            }
            Denial::NoCredentials => info!(status, reason = "no_credentials", "Request denied"),
            Denial::ShuttingDown => warn!(status, "Call cut short by shutdown"),
            Denial::InvalidApiConfig => {
                debug!(status, reason = "invalid_config_data", "Request denied");
            }
            Denial::InsufficientScope(_) => {
                info!(status, reason = "insufficient_scope", token.id = %token_id, "Request denied");
            }
            Denial::InsufficientUserAuthentication(challenge) => {
                info!(status, reason = "insufficient_user_authentication", step_up = challenge.reason(), token.id = %token_id, "Request denied");
            }
            Denial::Dpop(why) => {
                metrics.dpop(why.outcome());
                info!(status, reason = why.as_str(), token.id = %token_id, "DPoP request denied");
            }
            Denial::InvalidToken(why) => {
                info!(status, reason = why.as_str(), token.id = %token_id, "Request denied");
            }
        }
        deny
    }
}

#[cfg(test)]
mod tests;
