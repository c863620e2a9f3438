//! Reading the bearer token from the `Authorization` header (RFC 6750 §2.1), and
//! the digests that stand in for the token everywhere it must not appear.
//!
//! The raw token is used for exactly one thing: the introspection request. The
//! cache is keyed by its SHA-256, logs show a short prefix of a keyed digest,
//! and Tyk's session key is derived from that digest.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Why the request carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header, or one with another scheme (e.g. `Basic`).
    /// RFC 6750 §3.1: answer with a bare challenge, no error code.
    #[error("no bearer credentials")]
    Missing,
    /// `Bearer` with nothing after it, more than one token, or characters
    /// outside RFC 6750's `b64token`.
    #[error("malformed bearer token")]
    Malformed,
    /// Longer than the configured maximum.
    #[error("bearer token too long")]
    TooLong,
}

/// A bearer token taken from a request. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken<'a>(&'a str);

impl<'a> BearerToken<'a> {
    /// A token that already passed [`extract_bearer`] (kept for background
    /// work after its request ended).
    pub(crate) fn from_trusted(token: &'a str) -> Self {
        BearerToken(token)
    }

    /// The token itself, for the introspection request only.
    pub fn expose(&self) -> &'a str {
        self.0
    }

    /// SHA-256 of the token: the cache key.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(self.0.as_bytes())
    }
}

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken([redacted; {} bytes])", self.0.len())
    }
}

/// Extracts the token from an `Authorization` header value as Tyk passes it
/// (the first value of the header, surrounding whitespace already trimmed by
/// Go's HTTP server; trimmed again here for other callers).
///
/// The scheme is matched case-insensitively; one or more spaces (or tabs)
/// separate it from exactly one `b64token` of at most `max_bytes` bytes.
///
/// # Errors
///
/// [`TokenError`] says why the header does not carry a usable token.
pub fn extract_bearer(
    header: Option<&str>,
    max_bytes: usize,
) -> Result<BearerToken<'_>, TokenError> {
    let value = header.unwrap_or_default().trim_matches([' ', '\t']);
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    if token.len() > max_bytes {
        return Err(TokenError::TooLong);
    }
    if !is_b64token(token.as_bytes()) {
        return Err(TokenError::Malformed);
    }
    Ok(BearerToken(token))
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(bytes: &[u8]) -> bool {
    let body_len = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && bytes[..body_len].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// SHA-256 of a token. Not secret by itself, but never logged in full.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    /// SHA-256 of arbitrary bytes (a malformed header, for log correlation).
    pub fn of(bytes: &[u8]) -> Self {
        TokenDigest(Sha256::digest(bytes).into())
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Turns token digests into Tyk session keys and log identifiers.
///
/// The session key is an HMAC of the digest, not the digest itself: a client
/// holding a token can compute its SHA-256, and if that were the key it could
/// present it to an API using Tyk's standard auth-token check, where the stored
/// session would let it in. The HMAC key never leaves the plugin.
#[derive(Clone)]
pub struct SessionKeys {
    mac: Hmac<Sha256>,
}

/// Prefix of every session key we give Tyk, so ours can never equal a key Tyk
/// generated and are easy to recognise in Redis and analytics.
pub const SESSION_KEY_PREFIX: &str = "phantom-token:";

/// Prefix of session keys derived from an identity claim.
pub const IDENTITY_KEY_PREFIX: &str = "phantom-token:id:";

/// Hex characters of the keyed digest in a session key (128 bits).
const SESSION_KEY_HEX: usize = 32;
/// Hex characters shown in logs: enough to correlate, too few to be a key.
const LOG_ID_HEX: usize = 12;

impl SessionKeys {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        SessionKeys { mac }
    }

    fn keyed(&self, digest: &TokenDigest) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&digest.0);
        mac.finalize().into_bytes().into()
    }

    /// The value of `metadata["token"]`: stable for a token, namespaced,
    /// derived from the digest and not computable without the HMAC key.
    pub fn session_key(&self, digest: &TokenDigest) -> String {
        let keyed = self.keyed(digest);
        let mut key = String::with_capacity(SESSION_KEY_PREFIX.len() + SESSION_KEY_HEX);
        key.push_str(SESSION_KEY_PREFIX);
        key.push_str(&hex::encode(&keyed[..SESSION_KEY_HEX / 2]));
        key
    }

    /// The session key for an identity (a claim's value), so every token of
    /// that identity shares Tyk's rate limits, quotas and analytics. The claim
    /// name is part of the input, so `sub=x` and `email=x` differ.
    pub fn identity_key(&self, claim: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"identity\0");
        mac.update(claim.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        let keyed: [u8; 32] = mac.finalize().into_bytes().into();
        let mut key = String::with_capacity(IDENTITY_KEY_PREFIX.len() + SESSION_KEY_HEX);
        key.push_str(IDENTITY_KEY_PREFIX);
        key.push_str(&hex::encode(&keyed[..SESSION_KEY_HEX / 2]));
        key
    }

    /// A short identifier for log lines: the first characters of the session
    /// key's digest, so a log line can be matched to the Tyk session.
    pub fn log_id(&self, digest: &TokenDigest) -> String {
        hex::encode(&self.keyed(digest)[..LOG_ID_HEX / 2])
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(header: &str) -> Result<&str, TokenError> {
        extract_bearer(Some(header), 64).map(|t| t.expose())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR abc"] {
            assert_eq!(extract(header), Ok("abc"), "{header}");
        }
    }

    #[test]
    fn one_or_more_spaces_separate_scheme_and_token() {
        assert_eq!(extract("Bearer    abc"), Ok("abc"));
        assert_eq!(extract("Bearer\tabc"), Ok("abc"));
        assert_eq!(extract("  Bearer abc  "), Ok("abc"));
    }

    #[test]
    fn every_b64token_character_is_accepted() {
        let token = "AZaz09-._~+/==";
        assert_eq!(extract(&format!("Bearer {token}")), Ok(token));
        assert_eq!(
            extract("Bearer _0XBPWQQ_2fe4ef4d-9da5-4a1c-85d1-a3e2bd5f5b7e"),
            Ok("_0XBPWQQ_2fe4ef4d-9da5-4a1c-85d1-a3e2bd5f5b7e")
        );
    }

    #[test]
    fn no_header_or_another_scheme_is_missing_credentials() {
        assert_eq!(
            extract_bearer(None, 64).map(|t| t.expose()),
            Err(TokenError::Missing)
        );
        for header in [
            "",
            "   ",
            "Basic dXNlcjpwYXNz",
            "Bearerabc",
            "Token abc",
            "abc",
            "Bearer-x abc",
        ] {
            assert_eq!(extract(header), Err(TokenError::Missing), "{header:?}");
        }
    }

    #[test]
    fn bearer_without_exactly_one_valid_token_is_malformed() {
        for header in [
            "Bearer",
            "Bearer   ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer \"abc\"",
            "Bearer a=b",
            "Bearer ===",
            "Bearer ab\u{e9}",
            "Bearer a\u{0}b",
            "Bearer a\r\nb",
            "Bearer a;b",
        ] {
            assert_eq!(extract(header), Err(TokenError::Malformed), "{header:?}");
        }
    }

    #[test]
    fn tokens_longer_than_the_limit_are_refused() {
        let at_limit = "a".repeat(64);
        assert_eq!(
            extract(&format!("Bearer {at_limit}")),
            Ok(at_limit.as_str())
        );
        assert_eq!(
            extract(&format!("Bearer {at_limit}b")),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = extract_bearer(Some("Bearer very-secret-token"), 64).unwrap();
        let shown = format!("{token:?} {:?}", token.digest());
        assert!(!shown.contains("very-secret-token"), "{shown}");
    }

    #[test]
    fn digest_is_sha256_of_the_token() {
        let token = extract_bearer(Some("Bearer abc"), 64).unwrap();
        assert_eq!(
            hex::encode(token.digest().0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn session_keys_are_stable_namespaced_and_keyed() {
        let digest = extract_bearer(Some("Bearer abc"), 64).unwrap().digest();
        let keys = SessionKeys::new(b"key one");
        let key = keys.session_key(&digest);
        assert_eq!(key, SessionKeys::new(b"key one").session_key(&digest));
        assert!(key.starts_with(SESSION_KEY_PREFIX));
        assert_eq!(key.len(), SESSION_KEY_PREFIX.len() + 32);
        assert_ne!(key, SessionKeys::new(b"key two").session_key(&digest));
        // Not the plain digest a client could compute from its own token.
        assert!(!hex::encode(digest.0).contains(&key[SESSION_KEY_PREFIX.len()..]));
        // Identity keys are namespaced apart from token keys.
        let id = keys.identity_key("sub", "alice");
        assert!(id.starts_with(IDENTITY_KEY_PREFIX) && id.len() == IDENTITY_KEY_PREFIX.len() + 32);
        assert_eq!(id, keys.identity_key("sub", "alice"));
        assert_ne!(id, keys.identity_key("email", "alice"));
        assert_ne!(id, keys.identity_key("sub", "bob"));
        // The log id is the start of the session key's digest.
        assert_eq!(key[SESSION_KEY_PREFIX.len()..][..12], keys.log_id(&digest));
    }
}
