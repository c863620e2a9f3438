//! Who may use the admin endpoint's write routes (`POST /tokens/revoke` and
//! any route that changes state).
//!
//! What must hold: with `ADMIN_TOKEN` set, every write request carries
//! `Authorization: Bearer <ADMIN_TOKEN>`, wherever the endpoint listens.
//! Without it, write routes are open only on a loopback `ADMIN_ADDR` (only
//! processes on the same host, or in the same pod, reach it) and refused on
//! any other address. The secret never appears in a log line or an answer,
//! and checking a presented value takes the same time whatever its bytes.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::warn;

use crate::config::Secret;
use crate::token::extract_bearer;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key every tag is computed with. It is no secret: the HMAC is
/// there for `verify_slice`, a comparison whose time does not depend on
/// where two tags differ.
const TAG_KEY: &[u8] = b"tyk-phantom-token admin token";

/// The longest `Authorization` value looked at (an `ADMIN_TOKEN` is far
/// shorter; anything longer is wrong).
const MAX_PRESENTED_BYTES: usize = 1024;

/// The `ADMIN_TOKEN`, kept only as its HMAC tag. A presented value is
/// checked by computing its tag and comparing the two with `hmac`'s
/// constant-time `verify_slice`: the time taken reveals neither the
/// secret's bytes nor its length.
#[derive(Clone)]
pub struct AdminToken {
    mac: HmacSha256,
    tag: Vec<u8>,
}

impl AdminToken {
    pub fn new(secret: &Secret) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(TAG_KEY)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let mut tagged = mac.clone();
        tagged.update(secret.expose().as_bytes());
        AdminToken {
            mac,
            tag: tagged.finalize().into_bytes().to_vec(),
        }
    }

    /// Whether `presented` is the secret.
    pub fn matches(&self, presented: &str) -> bool {
        let mut mac = self.mac.clone();
        mac.update(presented.as_bytes());
        mac.verify_slice(&self.tag).is_ok()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// The rule for write routes, fixed at start-up.
#[derive(Debug, Clone)]
pub enum WriteAccess {
    /// `Authorization: Bearer <ADMIN_TOKEN>` required.
    Token(Box<AdminToken>),
    /// No `ADMIN_TOKEN`, and `ADMIN_ADDR` is a loopback address.
    Loopback,
    /// No `ADMIN_TOKEN`, and `ADMIN_ADDR` can be reached from the network:
    /// every write request is refused.
    Refused,
}

impl WriteAccess {
    /// The rule for an admin endpoint on `addr` (as configured, before
    /// binding) with this `ADMIN_TOKEN`.
    pub fn new(addr: SocketAddr, token: Option<&Secret>) -> Self {
        match token {
            Some(secret) => WriteAccess::Token(Box::new(AdminToken::new(secret))),
            None if addr.ip().is_loopback() => WriteAccess::Loopback,
            None => WriteAccess::Refused,
        }
    }

    /// The answer to a write request carrying `headers`: `None` lets it
    /// through.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let token = match self {
            WriteAccess::Loopback => return None,
            WriteAccess::Refused => {
                return Some(
                    (
                        StatusCode::FORBIDDEN,
                        "write routes need ADMIN_TOKEN when ADMIN_ADDR is not a loopback address\n",
                    )
                        .into_response(),
                );
            }
            WriteAccess::Token(token) => token,
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| extract_bearer(Some(v), MAX_PRESENTED_BYTES).ok());
        match presented {
            Some(presented) if token.matches(presented.expose()) => None,
            Some(_) => {
                warn!("Admin write request refused: wrong ADMIN_TOKEN");
                Some(unauthorized(
                    r#"Bearer realm="admin", error="invalid_token""#,
                    "wrong admin token\n",
                ))
            }
            None => Some(unauthorized(
                r#"Bearer realm="admin""#,
                "this route needs Authorization: Bearer <ADMIN_TOKEN>\n",
            )),
        }
    }
}

fn unauthorized(challenge: &'static str, body: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )],
        body,
    )
        .into_response()
}

/// Middleware in front of every write route.
pub(super) async fn guard(
    State(access): State<WriteAccess>,
    request: Request,
    next: Next,
) -> Response {
    match access.refusal(request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_itself_matches() {
        let token = AdminToken::new(&Secret::new("adm-0123456789abcdef"));
        assert!(token.matches("adm-0123456789abcdef"));
        for wrong in [
            "",
            "adm-0123456789abcde",
            "adm-0123456789abcdef0",
            "ADM-0123456789ABCDEF",
        ] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(!format!("{token:?}").contains("0123456789"));
    }

    #[test]
    fn without_a_token_only_a_loopback_address_is_open() {
        let open = |addr: &str| {
            matches!(
                WriteAccess::new(addr.parse().unwrap(), None),
                WriteAccess::Loopback
            )
        };
        assert!(open("127.0.0.1:9090"));
        assert!(open("[::1]:9090"));
        for exposed in [
            "0.0.0.0:9090",
            "[::]:9090",
            "10.1.2.3:9090",
            "[::ffff:127.0.0.1]:9090",
        ] {
            assert!(!open(exposed), "{exposed}");
        }
        let secret = Secret::new("adm-0123456789abcdef");
        assert!(matches!(
            WriteAccess::new("127.0.0.1:9090".parse().unwrap(), Some(&secret)),
            WriteAccess::Token(_)
        ));
    }
}
