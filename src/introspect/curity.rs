//! Curity's phantom-token answer: the JWT itself as the body of a 200.

use super::*;

/// Reads a 200 body: a JWT (active), `{"active":false}` (inactive), or a fault.
/// The JWT's claims are what the AS said; `sub` is filled in by the subject
/// rule (`owner_claim`) when the JWT has none.
pub(super) fn classify_ok_body(
    body: &[u8],
    cache: CacheDirectives,
    owner_claim: &str,
) -> Result<Introspection, IntrospectError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| IntrospectError::NotJwt(JwtError::NotCompact))?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if text.starts_with('{') {
        // RFC 7662: only the JSON boolean true means active. An active JSON
        // answer is still useless here (there is no JWT to forward).
        return match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.get("active") == Some(&serde_json::Value::Bool(false)) => {
                Ok(Introspection::Inactive)
            }
            _ => Err(IntrospectError::NotJwt(JwtError::NotCompact)),
        };
    }
    let mut claims = jwt::parse(text).map_err(IntrospectError::NotJwt)?;
    claims.fill_subject(owner_claim);
    Ok(Introspection::Active(ActiveToken {
        jwt: text.to_owned(),
        claims,
        minted: false,
        cache,
    }))
}

pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, IntrospectError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(IntrospectError::TooLarge(cap));
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(2048, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(IntrospectError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
