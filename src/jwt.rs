//! Checking that the authorization server's answer is a compact JWS, and reading
//! the few claims the plugin uses.
//!
//! The plugin does not verify the signature (the AS is reached over TLS and is
//! the only party that produces this JWT; the upstream API verifies it). It does
//! refuse anything that is not shaped like a signed JWT, so that an error page
//! or a JSON document is never forwarded upstream as a bearer token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Why a body is not a usable JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not three dot-separated base64url segments")]
    NotCompact,
    #[error("the header is not a JSON object with a string \"alg\"")]
    BadHeader,
    #[error("unsigned JWT (alg \"none\" or empty signature)")]
    Unsigned,
    #[error("the payload is not a JSON object")]
    BadPayload,
    #[error("claim \"{0}\" has the wrong type")]
    BadClaim(&'static str),
}

/// The claims the plugin reads. Absent claims are `None`; string claims of
/// another JSON type are ignored rather than failing the request, except `exp`,
/// which decides how long the JWT is used and so must be a number if present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Expiry, unix seconds.
    pub exp: Option<u64>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    client_id: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

/// Checks that `jwt` is a compact JWS (`header.payload.signature`, each part
/// base64url without padding), that its header names a real algorithm, and
/// returns the claims.
///
/// # Errors
///
/// [`JwtError`] names the first thing that is wrong.
pub fn parse(jwt: &str) -> Result<Claims, JwtError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotCompact);
    };
    if header.is_empty()
        || payload.is_empty()
        || ![header, payload, signature].iter().all(|p| is_base64url(p))
    {
        return Err(JwtError::NotCompact);
    }

    let header: Header = decode_json(header).ok_or(JwtError::BadHeader)?;
    if signature.is_empty() || header.alg.is_empty() || header.alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::Unsigned);
    }

    let raw: RawClaims = decode_json(payload).ok_or(JwtError::BadPayload)?;
    Ok(Claims {
        exp: match raw.exp {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(numeric_date(&value).ok_or(JwtError::BadClaim("exp"))?),
        },
        sub: string_claim(raw.sub),
        client_id: string_claim(raw.client_id),
        scope: string_claim(raw.scope),
    })
}

fn is_base64url(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    // Only JSON objects: serde would also accept a top-level array for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// RFC 7519 NumericDate: seconds since the epoch, possibly with a fraction.
/// Negative values are refused; fractions are dropped.
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    let n = value.as_number()?;
    if let Some(v) = n.as_u64() {
        return Some(v);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

fn string_claim(value: Option<serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2lnbmF0dXJl", encode(header), encode(payload))
    }

    const RS256: &str = r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#;

    #[test]
    fn reads_exp_and_the_metadata_claims() {
        let claims = parse(&jwt(
            RS256,
            r#"{"exp":1900000000,"sub":"alice","client_id":"web","scope":"read write","aud":["a","b"]}"#,
        ))
        .unwrap();
        assert_eq!(
            claims,
            Claims {
                exp: Some(1_900_000_000),
                sub: Some("alice".into()),
                client_id: Some("web".into()),
                scope: Some("read write".into()),
            }
        );
    }

    #[test]
    fn exp_may_be_fractional_or_absent() {
        assert_eq!(
            parse(&jwt(RS256, r#"{"exp":1900000000.75}"#)).unwrap().exp,
            Some(1_900_000_000)
        );
        assert_eq!(parse(&jwt(RS256, r#"{"sub":"x"}"#)).unwrap().exp, None);
        assert_eq!(parse(&jwt(RS256, r#"{"exp":null}"#)).unwrap().exp, None);
    }

    #[test]
    fn exp_of_the_wrong_type_is_refused() {
        for payload in [
            r#"{"exp":"1900000000"}"#,
            r#"{"exp":-5}"#,
            r#"{"exp":true}"#,
            r#"{"exp":1e300}"#,
        ] {
            assert_eq!(
                parse(&jwt(RS256, payload)),
                Err(JwtError::BadClaim("exp")),
                "{payload}"
            );
        }
    }

    #[test]
    fn string_claims_of_other_types_are_left_out() {
        let claims = parse(&jwt(
            RS256,
            r#"{"sub":42,"scope":["a","b"],"client_id":null}"#,
        ))
        .unwrap();
        assert_eq!(claims, Claims::default());
    }

    #[test]
    fn anything_but_three_base64url_segments_is_refused() {
        let good = jwt(RS256, r#"{"sub":"x"}"#);
        for bad in [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            format!("{good}.extra"),
            good.replacen('.', "..", 1),
            format!("{}=", good),
            format!("{good}+"),
            format!(" {good}"),
            "{\"active\":true}".to_owned(),
            "<html><body>error</body></html>".to_owned(),
        ] {
            let result = parse(&bad);
            assert!(result.is_err(), "{bad:?} was accepted: {result:?}");
        }
    }

    #[test]
    fn unsigned_jwts_are_refused() {
        let none = format!(
            "{}.{}.",
            encode(r#"{"alg":"none"}"#),
            encode(r#"{"sub":"x"}"#)
        );
        assert_eq!(parse(&none), Err(JwtError::Unsigned));
        let empty_sig = format!("{}.{}.", encode(RS256), encode(r#"{"sub":"x"}"#));
        assert_eq!(parse(&empty_sig), Err(JwtError::Unsigned));
        assert_eq!(
            parse(&jwt(r#"{"alg":"NONE"}"#, "{}")),
            Err(JwtError::Unsigned)
        );
    }

    #[test]
    fn header_and_payload_must_be_json_objects() {
        assert_eq!(
            parse(&jwt(r#"{"typ":"JWT"}"#, "{}")),
            Err(JwtError::BadHeader)
        );
        assert_eq!(parse(&jwt(r#"["RS256"]"#, "{}")), Err(JwtError::BadHeader));
        assert_eq!(parse(&jwt(RS256, "[1,2]")), Err(JwtError::BadPayload));
        assert_eq!(parse(&jwt(RS256, "not json")), Err(JwtError::BadPayload));
        let bad_b64 = format!("{}.{}.sig", encode(RS256), "a");
        assert_eq!(parse(&bad_b64), Err(JwtError::BadPayload));
    }
}
