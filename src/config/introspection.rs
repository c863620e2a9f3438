//! The introspection section: the authorization server, the client's
//! credentials, TLS and proxy, and the limits on calls to the AS.

use std::path::PathBuf;
use std::time::Duration;

use super::any_as::AnyAsConfig;
use super::parse;
use super::reader::{Reader, in_range};
use super::redacted::{ProxyUrl, Secret};
use super::vars::*;

/// Curity's default; Tyk sets no deadline on our call, so this bounds the wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
/// JWTs with many claims reach several KiB; 64 KiB is far above any seen.
pub const DEFAULT_MAX_JWT_BYTES: usize = 64 * 1024;
/// Introspections in flight at once. Each waits on the AS, so this bounds the
/// load a flood of new tokens can put on it.
pub const DEFAULT_MAX_INFLIGHT_INTROSPECTIONS: usize = 64;
/// How long a miss may wait for an introspection slot before a 503.
pub const DEFAULT_INFLIGHT_WAIT: Duration = Duration::from_millis(100);
/// Consecutive connection failures or timeouts that open the breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// How long the breaker stays open before letting one probe through.
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub url: reqwest::Url,
    pub client_id: String,
    /// `None` only with `CLIENT_AUTH_METHOD=private_key_jwt`, which needs
    /// no secret.
    pub client_secret: Option<Secret>,
    pub timeout: Duration,
    pub max_jwt_bytes: usize,
    pub ca_file: Option<PathBuf>,
    /// Certificate chain and key (PEM) for mutual TLS to the AS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The proxy for introspection requests. `None`: straight to the AS,
    /// whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say (tokens and
    /// client credentials must not leave through a proxy set for other
    /// traffic).
    pub proxy: Option<ProxyUrl>,
    pub max_inflight: usize,
    pub inflight_wait: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// Answer formats, minting, discovery and client authentication.
    pub any_as: AnyAsConfig,
    /// `VERIFY_JWT=true`: what the AS's JWTs must match.
    pub verify_jwt: Option<super::VerifyJwtConfig>,
    /// `STARTUP_PROBE`: check the AS's answer format once after start-up
    /// (see [`crate::probe`]); on unless turned off.
    pub startup_probe: bool,
}

/// What plain `http://` to the authorization server means, in the README's
/// words. Start-up says it when it refuses such a URL, and start-up and
/// `check` say it again when `INTROSPECTION_ALLOW_HTTP=true` accepts one.
const PLAIN_HTTP: &str = "tokens and client credentials cross the network in clear";

impl IntrospectionConfig {
    /// A warning when introspection goes over plain `http://` (accepted
    /// only with `INTROSPECTION_ALLOW_HTTP=true`); `None` over `https://`.
    pub fn plain_http_note(&self) -> Option<String> {
        (self.url.scheme() == "http").then(|| {
            format!(
                "introspection uses http:// ({ENV_INTROSPECTION_ALLOW_HTTP}=true), so {PLAIN_HTTP}; \
                 use https:// where the authorization server offers it"
            )
        })
    }
}

/// The section, or `None` when a required value is missing or bad (the
/// problem is in `r`).
pub(super) fn read(r: &mut Reader<'_>) -> Option<IntrospectionConfig> {
    // With only ISSUER set, the introspection endpoint is discovered at
    // start-up ([`crate::app::App::bind`]); the issuer stands in until then
    // (see [`AnyAsConfig::discover_introspection_url`]).
    let has_introspection_url = r.raw(ENV_INTROSPECTION_URL).is_some();
    let url = if !has_introspection_url && r.raw(ENV_ISSUER).is_some() {
        r.optional(ENV_ISSUER, parse::introspection_url)
    } else {
        r.required(ENV_INTROSPECTION_URL, parse::introspection_url)
    };
    let client_id = r.required(ENV_CLIENT_ID, |v| Ok::<_, String>(v.to_owned()));
    // private_key_jwt authenticates with a signed assertion: no secret.
    let secret_optional = r
        .raw(ENV_CLIENT_AUTH_METHOD)
        .is_some_and(|m| m.trim() == "private_key_jwt");
    let client_secret = client_secret(r, secret_optional);
    let ca_file = r.optional(ENV_INTROSPECTION_CA_FILE, |v| {
        Ok::<_, String>(PathBuf::from(v))
    });
    let client_identity = client_identity(r);
    let allow_http = r.or(ENV_INTROSPECTION_ALLOW_HTTP, parse::boolean, false);
    let proxy = r
        .optional(ENV_INTROSPECTION_PROXY, parse::proxy_url)
        .map(ProxyUrl);
    if has_introspection_url
        && let Some(url) = &url
        && url.scheme() == "http"
        && !allow_http
    {
        r.problem(format!(
            "{ENV_INTROSPECTION_URL} uses http://, so {PLAIN_HTTP}; use https://, \
             or set {ENV_INTROSPECTION_ALLOW_HTTP}=true to accept that"
        ));
    }
    let max_inflight = r.or(
        ENV_MAX_INFLIGHT_INTROSPECTIONS,
        |v| parse::integer::<usize>(v, 1, 100_000),
        DEFAULT_MAX_INFLIGHT_INTROSPECTIONS,
    );
    let inflight_wait = r.or(
        ENV_INFLIGHT_WAIT_SECONDS,
        parse::fractional_seconds,
        DEFAULT_INFLIGHT_WAIT,
    );
    let breaker_failures = r.or(
        ENV_BREAKER_FAILURES,
        |v| parse::integer::<u32>(v, 1, 10_000),
        DEFAULT_BREAKER_FAILURES,
    );
    let breaker_open = r.or(
        ENV_BREAKER_OPEN_SECONDS,
        parse::fractional_seconds,
        DEFAULT_BREAKER_OPEN,
    );
    let timeout = r.or(
        ENV_TIMEOUT_SECONDS,
        parse::fractional_seconds,
        DEFAULT_TIMEOUT,
    );
    let max_jwt_bytes = r
        .optional(ENV_MAX_JWT_BYTES, |v| {
            parse::byte_size(v).and_then(|n| in_range(n, 256, 16 << 20))
        })
        .map_or(DEFAULT_MAX_JWT_BYTES, |n| n as usize);

    let any_as = match super::any_as::read(r.source(), allow_http, has_introspection_url) {
        Ok(any_as) => Some(any_as),
        Err(problems) => {
            for problem in problems {
                r.problem(problem);
            }
            None
        }
    };

    let verify_jwt = super::verify_jwt::read(r, any_as.as_ref());
    let startup_probe = r.or(ENV_STARTUP_PROBE, parse::boolean, true);

    Some(IntrospectionConfig {
        url: url?,
        client_id: client_id?,
        client_secret: client_secret?,
        timeout,
        max_jwt_bytes,
        ca_file,
        client_identity,
        proxy,
        max_inflight,
        inflight_wait,
        breaker_failures,
        breaker_open,
        any_as: any_as?,
        verify_jwt,
        startup_probe,
    })
}

/// `CLIENT_SECRET`, or the contents of `CLIENT_SECRET_FILE` (a container
/// secret), but not both. Secret values never appear in messages.
/// The outer `None`: a problem was reported; the inner: no secret, which is
/// allowed when `optional`.
fn client_secret(r: &mut Reader<'_>, optional: bool) -> Option<Option<Secret>> {
    match (r.raw(ENV_CLIENT_SECRET), r.raw(ENV_CLIENT_SECRET_FILE)) {
        (Some(_), Some(_)) => {
            r.problem(format!(
                "{ENV_CLIENT_SECRET} and {ENV_CLIENT_SECRET_FILE} are both set; set only one"
            ));
            None
        }
        (Some(secret), None) => Some(Some(Secret::new(secret))),
        (None, Some(path)) => match r.read_file(path.trim()) {
            Ok(contents) => {
                let secret = contents.trim_end_matches(['\n', '\r']);
                if secret.is_empty() {
                    r.problem(format!(
                        "{ENV_CLIENT_SECRET_FILE}={path:?}: the file is empty"
                    ));
                    None
                } else {
                    Some(Some(Secret::new(secret)))
                }
            }
            Err(e) => {
                r.problem(format!(
                    "{ENV_CLIENT_SECRET_FILE}={path:?}: cannot read the file ({e})"
                ));
                None
            }
        },
        (None, None) if optional => Some(None),
        (None, None) => {
            r.problem(format!(
                "{ENV_CLIENT_SECRET} (or {ENV_CLIENT_SECRET_FILE}) is required \
                 (unless {ENV_CLIENT_AUTH_METHOD}=private_key_jwt)"
            ));
            None
        }
    }
}

/// `INTROSPECTION_CLIENT_CERT_FILE` and `INTROSPECTION_CLIENT_KEY_FILE`,
/// both or neither.
fn client_identity(r: &mut Reader<'_>) -> Option<(PathBuf, PathBuf)> {
    match (
        r.raw(ENV_INTROSPECTION_CLIENT_CERT_FILE),
        r.raw(ENV_INTROSPECTION_CLIENT_KEY_FILE),
    ) {
        (Some(cert), Some(key)) => Some((cert.trim().into(), key.trim().into())),
        (None, None) => None,
        _ => {
            r.problem(format!(
                "{ENV_INTROSPECTION_CLIENT_CERT_FILE} and {ENV_INTROSPECTION_CLIENT_KEY_FILE} go together; set both or neither"
            ));
            None
        }
    }
}
