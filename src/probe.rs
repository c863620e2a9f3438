//! The set-up probe: which format the authorization server answers in, and
//! whether this configuration can turn its answers into JWTs to forward.
//!
//! Why: the defaults suit Curity (`Accept: application/jwt`, no signing
//! key). Against an RFC 7662 server they start without complaint and then
//! answer every valid token with a 502, since a JSON answer carries no JWT
//! and nothing mints one. An inactive answer carries the format in its
//! `Content-Type` (or, for Curity, is a 204), and a token nobody issued can
//! only be inactive: one introspection of 32 random bytes tells the format
//! without a real token. `check` prints the finding and exits non-zero when
//! no valid token could be allowed; at start-up it is logged once, in the
//! background.
//!
//! What must hold: the request is made exactly as the plugin makes them
//! ([`IntrospectionClient::probe`]: the same `Accept`, client
//! authentication and proxy). [`assess`] is a plain function of the answer
//! and the configuration. A finding names variables and media types, never
//! the probe token, a secret or a URL's credentials. At start-up the probe
//! never delays readiness and never stops the service: an AS that is down
//! is a warning.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tracing::{error, info, warn};

use crate::answer::{MEDIA_INTROSPECTION_JWT, MEDIA_JSON, MEDIA_JWT};
use crate::config::{
    Config, ENV_CACHE_MAX_TTL_SECONDS, ENV_CLIENT_AUTH_METHOD, ENV_CLIENT_ID, ENV_CLIENT_SECRET,
    ENV_INTROSPECTION_ACCEPT, ENV_INTROSPECTION_JWKS_URL, ENV_INTROSPECTION_JWT_FIELD,
    ENV_INTROSPECTION_URL, ENV_ISSUER, ENV_MINTED_AUDIENCE, ENV_MINTED_ISSUER,
    ENV_REVALIDATE_AFTER_SECONDS, ENV_SIGNING_KEY_FILE,
};
use crate::introspect::{IntrospectionClient, ProbeAnswer};
use crate::metrics::Metrics;
use crate::token::BearerToken;

/// The format the authorization server answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFormat {
    /// Curity's phantom token: the JWT itself, 204 when inactive.
    Curity,
    /// RFC 7662 JSON.
    Json,
    /// RFC 9701 signed answers.
    Signed,
}

impl fmt::Display for AnswerFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnswerFormat::Curity => "Curity's phantom token (application/jwt, 204 when inactive)",
            AnswerFormat::Json => "RFC 7662 JSON (application/json)",
            AnswerFormat::Signed => "RFC 9701 signed (application/token-introspection+jwt)",
        })
    }
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Valid tokens can be allowed. `jwt` says where their JWT comes from;
    /// `notes` are advice that does not stop anything.
    Works {
        format: AnswerFormat,
        jwt: String,
        notes: Vec<String>,
    },
    /// No valid token can be allowed as configured: what is wrong and what
    /// to set.
    Broken(String),
    /// The AS gave no usable answer (down, overloaded, failing): nothing was
    /// learned about the set-up.
    Unanswered(String),
}

impl Finding {
    /// The exit status of `check` for this finding: `None` when the set-up
    /// works, `EX_CONFIG` (78) when it cannot, `EX_UNAVAILABLE` (69) when
    /// the AS did not answer.
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            Finding::Works { .. } => None,
            Finding::Broken(_) => Some(crate::cli::EXIT_CONFIG),
            Finding::Unanswered(_) => Some(crate::cli::EXIT_UNAVAILABLE),
        }
    }

    /// Logs the finding as one line: info when all is well, a warning with
    /// advice or when nothing was learned, an error when no valid token can
    /// be allowed.
    pub fn log(&self) {
        match self {
            Finding::Works { format, jwt, notes } if notes.is_empty() => {
                info!(format = %format, jwt = %jwt, "Checked the authorization server's answer format");
            }
            Finding::Works { format, jwt, notes } => {
                warn!(
                    format = %format,
                    jwt = %jwt,
                    advice = %notes.join("; "),
                    "Checked the authorization server's answer format"
                );
            }
            Finding::Broken(problem) => {
                error!(problem = %problem, "Valid tokens cannot be allowed with this configuration");
            }
            Finding::Unanswered(reason) => {
                warn!(reason = %reason, "Could not check the authorization server's answer format");
            }
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Works { format, jwt, notes } => {
                write!(f, "{format}; {jwt}")?;
                for note in notes {
                    write!(f, "\n  note: {note}")?;
                }
                Ok(())
            }
            Finding::Broken(problem) => write!(f, "problem: {problem}"),
            Finding::Unanswered(reason) => write!(f, "not checked: {reason}"),
        }
    }
}

/// What an answer to a token nobody issued says about this configuration.
pub fn assess(answer: &ProbeAnswer, config: &Config) -> Finding {
    let format = match answer.status {
        204 => AnswerFormat::Curity,
        200 => match answer.media.as_deref() {
            Some(MEDIA_JWT) => AnswerFormat::Curity,
            Some(MEDIA_JSON) => AnswerFormat::Json,
            Some(MEDIA_INTROSPECTION_JWT) => AnswerFormat::Signed,
            other => {
                return Finding::Broken(format!(
                    "the introspection endpoint answered 200 with Content-Type {}, which is no \
                     introspection answer ({MEDIA_JWT}, {MEDIA_JSON} or {MEDIA_INTROSPECTION_JWT}); \
                     check that {ENV_INTROSPECTION_URL} (or {ENV_ISSUER}'s introspection_endpoint) \
                     is the introspection endpoint",
                    other.unwrap_or("(none)")
                ));
            }
        },
        status => return refused(status),
    };
    let any_as = &config.introspection.any_as;
    let jwt = if format == AnswerFormat::Curity {
        "the JWT is the answer".to_owned()
    } else if any_as.mint.is_some() {
        "the plugin mints the JWT".to_owned()
    } else if let Some(field) = &any_as.jwt_field {
        format!("the JWT is taken from the answer's {field:?} member")
    } else {
        return Finding::Broken(format!(
            "the authorization server answers {format}, which holds no JWT to forward, and the \
             plugin is not set to mint one: every valid token would get a 502. Set \
             {ENV_INTROSPECTION_ACCEPT}={accept}, {ENV_SIGNING_KEY_FILE} (`tyk-phantom-token \
             keygen FILE` writes a key), {ENV_MINTED_ISSUER} and {ENV_MINTED_AUDIENCE}; or \
             {ENV_INTROSPECTION_JWT_FIELD} if its answers carry a JWT in a member",
            accept = if format == AnswerFormat::Signed {
                MEDIA_INTROSPECTION_JWT
            } else {
                MEDIA_JSON
            },
        ));
    };
    if format == AnswerFormat::Signed && (any_as.issuer.is_none() || any_as.jwks_url.is_none()) {
        return Finding::Broken(format!(
            "the authorization server answers {format}, which are verified with its keys and \
             checked against its issuer: every valid token would get a 502. Set {ENV_ISSUER} \
             (its metadata names the keys), or {ENV_ISSUER} and {ENV_INTROSPECTION_JWKS_URL}"
        ));
    }
    let mut notes = Vec::new();
    if format != AnswerFormat::Curity
        && answer.cache.max_age.is_none()
        && config.cache.revalidate_after.is_none()
        && config.cache.max_ttl.is_none()
    {
        notes.push(format!(
            "the authorization server sends no Cache-Control max-age, so a token revoked there \
             stays usable here until its JWT expires; set {ENV_REVALIDATE_AFTER_SECONDS} (e.g. \
             60) or {ENV_CACHE_MAX_TTL_SECONDS} to bound that"
        ));
    }
    Finding::Works { format, jwt, notes }
}

/// A status other than 200 and 204: what it means for the set-up.
fn refused(status: u16) -> Finding {
    match status {
        401 | 403 => Finding::Broken(format!(
            "the authorization server refused the plugin's client credentials (HTTP {status}): \
             check {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} (or the assertion key) and \
             {ENV_CLIENT_AUTH_METHOD}; no token can be allowed until it accepts them"
        )),
        400 => Finding::Broken(format!(
            "the authorization server refused the introspection request (HTTP 400): check \
             {ENV_CLIENT_AUTH_METHOD} and the client's registration; no token can be allowed"
        )),
        404 | 405 => Finding::Broken(format!(
            "nothing answers introspection requests at the configured endpoint (HTTP {status}): \
             check {ENV_INTROSPECTION_URL}"
        )),
        300..=399 => Finding::Broken(format!(
            "the introspection endpoint redirects (HTTP {status}), and redirects are not \
             followed: set {ENV_INTROSPECTION_URL} to the endpoint itself"
        )),
        429 | 500..=599 => {
            Finding::Unanswered(format!("the authorization server answered HTTP {status}"))
        }
        _ => Finding::Broken(format!(
            "the authorization server answered HTTP {status} to an introspection request; no \
             token can be allowed (check {ENV_INTROSPECTION_URL} and {ENV_INTROSPECTION_ACCEPT})"
        )),
    }
}

/// Introspects a token nobody issued with `client` and assesses the answer.
pub async fn run(client: &IntrospectionClient, config: &Config) -> Finding {
    let mut random = [0u8; 32];
    if getrandom::fill(&mut random).is_err() {
        return Finding::Unanswered("no random source for the probe token".to_owned());
    }
    let token = URL_SAFE_NO_PAD.encode(random);
    match client.probe(&BearerToken::from_trusted(&token)).await {
        Ok(answer) => assess(&answer, config),
        Err(e) => Finding::Unanswered(format!("no answer from the authorization server: {e}")),
    }
}

/// The start-up probe: one request, one log line. Meant to be spawned once
/// the service is up; `config` is the configuration as resolved by
/// discovery.
pub async fn at_start_up(config: Arc<Config>) {
    // A client of its own, so the probe is not counted in the metrics.
    match IntrospectionClient::new(&config.introspection, Arc::new(Metrics::new())) {
        Ok(client) => run(&client, &config).await.log(),
        Err(e) => warn!(error = %e, "Could not check the authorization server's answer format"),
    }
}

#[cfg(test)]
mod tests;
