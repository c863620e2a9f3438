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

/// The JWT's claims. `exp` is checked when parsed (it decides how long the JWT
/// is used, so it must be a number if present); other claims are read on
/// demand, and a claim of an unexpected type reads as absent rather than
/// failing the request.
///
/// Kept as a short list searched linearly: JWTs carry a dozen claims or so,
/// and a list costs far less memory per cached token than a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// Expiry, unix seconds.
    pub exp: Option<u64>,
    entries: Vec<(Box<str>, serde_json::Value)>,
}

/// The claims every request may read: the cache keeps only these (see
/// [`Claims::summary`]); rules that need others re-read the JWT. `acr` and
/// `auth_time` are here for the step-up check (RFC 9470), and `cnf` carries
/// the token's key binding (RFC 7800; `jkt` for DPoP): both run on every
/// request that asks for them.
pub const SUMMARY_CLAIMS: &[&str] = &[
    "sub",
    "client_id",
    "scope",
    "scp",
    "aud",
    "acr",
    "auth_time",
    "cnf",
];

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Claims {
    /// Claims from a JSON object.
    ///
    /// # Errors
    ///
    /// When `exp` is present but not a non-negative number.
    pub fn from_map(all: serde_json::Map<String, serde_json::Value>) -> Result<Self, JwtError> {
        let exp = match all.get("exp") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(numeric_date(value).ok_or(JwtError::BadClaim("exp"))?),
        };
        Ok(Claims {
            exp,
            entries: all
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
        })
    }

    /// Only the [`SUMMARY_CLAIMS`] (and `exp`).
    pub fn summary(&self) -> Claims {
        Claims {
            exp: self.exp,
            entries: self
                .entries
                .iter()
                .filter(|(k, _)| SUMMARY_CLAIMS.contains(&&**k))
                .cloned()
                .collect(),
        }
    }

    /// Whether a summary answers for `name`.
    pub fn summary_covers(name: &str) -> bool {
        name == "exp" || SUMMARY_CLAIMS.contains(&name)
    }

    /// Sets `name` to `value`, replacing it if present (the key binding of
    /// an introspection answer over the JWT's own).
    pub fn set(&mut self, name: &str, value: serde_json::Value) {
        match self.entries.iter_mut().find(|(k, _)| &**k == name) {
            Some((_, v)) => *v = value,
            None => self.entries.push((Box::from(name), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// A claim that is a JSON string.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(serde_json::Value::as_str)
    }

    /// The values of a list-like claim: the strings of an array, or a string
    /// split at spaces (RFC 6749 §3.3), and also at commas when
    /// `comma_separated` (the operator said this claim's values are written
    /// that way).
    pub fn values(&self, name: &str, comma_separated: bool) -> Vec<&str> {
        match self.get(name) {
            Some(serde_json::Value::String(s)) => {
                let separators: &[char] = if comma_separated { &[' ', ','] } else { &[' '] };
                s.split(separators).filter(|v| !v.is_empty()).collect()
            }
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Granted scopes: `scope` (RFC 9068: a string of scope tokens separated
    /// by spaces; a token may contain a comma), or `scp` (an array, as some
    /// servers send). `comma_separated` says whether the claim's strings are
    /// also split at commas.
    pub fn scopes(&self, comma_separated: impl Fn(&str) -> bool) -> Vec<&str> {
        let name = if self.get("scope").is_some() {
            "scope"
        } else {
            "scp"
        };
        self.values(name, comma_separated(name))
    }

    /// Sets `sub` by the [`subject`] rule when these claims carry none (an
    /// RFC 7662 answer naming the user in `username`): every identity rule
    /// then reads one subject, whatever the AS's family. Claims that name no
    /// subject are left as they are (minting refuses them; an AS's own JWT
    /// is forwarded regardless).
    pub fn fill_subject(&mut self, owner_claim: &str) {
        if self.string("sub").is_some_and(|s| !s.is_empty()) {
            return;
        }
        if let Ok(sub) = subject(|name| self.get(name), owner_claim) {
            let sub = sub.into_owned();
            self.set("sub", serde_json::Value::String(sub));
        }
    }

    /// A JSON object of these claims (`exp` included when set).
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> = self
            .entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(exp) = self.exp {
            map.insert("exp".to_owned(), exp.into());
        }
        map
    }

    /// How the token is bound to a key (RFC 7800 `cnf`), as far as the
    /// plugin can check it.
    pub fn binding(&self) -> Binding<'_> {
        match self.get("cnf") {
            None | Some(serde_json::Value::Null) => Binding::None,
            Some(serde_json::Value::Object(cnf)) => match (cnf.len(), cnf.get("jkt")) {
                (0, _) => Binding::None,
                (1, Some(serde_json::Value::String(jkt))) if !jkt.is_empty() => Binding::Jkt(jkt),
                _ => Binding::Unchecked,
            },
            Some(_) => Binding::Unchecked,
        }
    }

    /// The key the token is bound to: `cnf.jkt` (RFC 7800 confirmation,
    /// the SHA-256 JWK thumbprint of RFC 9449 §6), when the answer has one.
    pub fn jkt(&self) -> Option<&str> {
        self.get("cnf")?.get("jkt")?.as_str()
    }

    /// Audiences: `aud` as a string or an array of strings.
    pub fn audiences(&self) -> Vec<&str> {
        audiences(self.get("aud"))
    }

    /// Approximate bytes held on the heap.
    pub fn byte_len(&self) -> usize {
        fn value_len(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::String(s) => 32 + s.len(),
                serde_json::Value::Array(items) => 32 + items.iter().map(value_len).sum::<usize>(),
                serde_json::Value::Object(map) => {
                    64 + map
                        .iter()
                        .map(|(k, v)| 48 + k.len() + value_len(v))
                        .sum::<usize>()
                }
                _ => 32,
            }
        }
        self.entries
            .iter()
            .map(|(k, v)| 24 + k.len() + value_len(v))
            .sum::<usize>()
    }
}

/// A token's key binding (RFC 7800 `cnf`), as the plugin can enforce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// No `cnf`, or an empty one: a bearer token.
    None,
    /// DPoP (RFC 9449): the SHA-256 thumbprint of the proof key.
    Jkt(&'a str),
    /// A confirmation the plugin cannot check: a certificate thumbprint
    /// (`x5t#S256`, RFC 8705 mutual TLS), a key (`jwk`, `jku`, `kid`), a
    /// `jkt` that is not a string, or `jkt` beside any of these. Accepting
    /// such a token as a bearer token would let a thief use it without the
    /// key it is bound to.
    Unchecked,
}

/// Checks that `jwt` is a compact JWS (`header.payload.signature`, each part
/// base64url without padding), that its header names a real algorithm, and
/// returns the claims.
///
/// # Errors
///
/// [`JwtError`] names the first thing that is wrong.
pub fn parse(jwt: &str) -> Result<Claims, JwtError> {
    let Some((header, payload, signature)) = split_compact(jwt) else {
        return Err(JwtError::NotCompact);
    };
    if ![header, payload, signature].iter().all(|p| is_base64url(p)) {
        return Err(JwtError::NotCompact);
    }

    let header: Header = decode_json(header).ok_or(JwtError::BadHeader)?;
    if signature.is_empty() || header.alg.is_empty() || header.alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::Unsigned);
    }

    let all: serde_json::Map<String, serde_json::Value> =
        decode_json(payload).ok_or(JwtError::BadPayload)?;
    Claims::from_map(all)
}

fn is_base64url(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The three parts of a compact JWS, `header.payload.signature`, with a
/// header and a payload (the signature may be empty: callers decide).
pub(crate) fn split_compact(jws: &str) -> Option<(&str, &str, &str)> {
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!header.is_empty() && !payload.is_empty()).then_some((header, payload, signature))
}

/// A base64url part holding a JSON object.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    // Only JSON objects: serde would also accept a top-level array for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// The audiences in an `aud` claim (RFC 7519 §4.1.3): one string, or an
/// array of strings (other members are ignored). Anything else, or no
/// claim, names no audience.
pub fn audiences(aud: Option<&serde_json::Value>) -> Vec<&str> {
    match aud {
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(serde_json::Value::as_str).collect()
        }
        _ => Vec::new(),
    }
}

/// RFC 7662's name for the resource owner: the default of
/// `RESOURCE_OWNER_CLAIM`.
pub const DEFAULT_RESOURCE_OWNER_CLAIM: &str = "username";

/// Why no subject can be named for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The answer names a resource owner in a form that identifies nobody
    /// (an empty string, an object): taking the client instead would give
    /// every user of that client one identity.
    #[error("the resource owner claim is not a usable identifier")]
    UnusableOwner,
    /// Neither `sub`, a resource owner, nor `client_id`.
    #[error("the answer names no subject, resource owner or client")]
    Nobody,
}

/// The subject of a token, from what the AS said about it (`get` reads one
/// claim or answer member):
///
/// 1. `sub`, when it is a non-empty string;
/// 2. else the resource owner: the claim `owner_claim` names (RFC 7662's
///    `username` unless the operator names another), a non-empty string or
///    a number's digits;
/// 3. else, and only for a token with no resource owner at all (a client
///    credentials grant), the client: `client_id`.
///
/// So two users of one client never share a subject, and with it a Tyk
/// session key, rate limit or analytics identity.
///
/// # Errors
///
/// [`SubjectError`] when none applies.
pub fn subject<'a>(
    get: impl Fn(&str) -> Option<&'a serde_json::Value>,
    owner_claim: &str,
) -> Result<std::borrow::Cow<'a, str>, SubjectError> {
    use std::borrow::Cow;
    if let Some(sub) = get("sub").and_then(serde_json::Value::as_str)
        && !sub.is_empty()
    {
        return Ok(Cow::Borrowed(sub));
    }
    match get(owner_claim) {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(owner)) if !owner.is_empty() => {
            return Ok(Cow::Borrowed(owner));
        }
        Some(serde_json::Value::Number(n)) => return Ok(Cow::Owned(n.to_string())),
        Some(_) => return Err(SubjectError::UnusableOwner),
    }
    get("client_id")
        .and_then(serde_json::Value::as_str)
        .filter(|c| !c.is_empty())
        .map(Cow::Borrowed)
        .ok_or(SubjectError::Nobody)
}

/// RFC 7519 NumericDate: seconds since the epoch, possibly with a fraction.
/// Negative values are refused; fractions are dropped.
pub(crate) fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    let n = value.as_number()?;
    if let Some(v) = n.as_u64() {
        return Some(v);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// A JWT shaped as the AS sends it (an RS256 header, an opaque signature)
/// carrying `claims`, for the tests of modules that handle one.
#[cfg(test)]
pub(crate) fn for_test(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
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
        assert_eq!(claims.exp, Some(1_900_000_000));
        assert_eq!(claims.string("sub"), Some("alice"));
        assert_eq!(claims.string("client_id"), Some("web"));
        assert_eq!(claims.scopes(|_| false), vec!["read", "write"]);
        assert_eq!(claims.audiences(), vec!["a", "b"]);
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
    fn string_claims_of_other_types_read_as_absent() {
        let claims = parse(&jwt(RS256, r#"{"sub":42,"client_id":null,"aud":7}"#)).unwrap();
        assert_eq!(claims.string("sub"), None);
        assert_eq!(claims.string("client_id"), None);
        assert!(claims.audiences().is_empty());
        assert!(claims.scopes(|_| false).is_empty());
    }

    #[test]
    fn the_summary_keeps_only_what_every_request_reads() {
        let claims = parse(&jwt(
            RS256,
            r#"{"exp":1900000000,"sub":"a","client_id":"c","scope":"s","aud":"x","email":"e@x","roles":["r"]}"#,
        ))
        .unwrap();
        let summary = claims.summary();
        assert_eq!(summary.exp, Some(1_900_000_000));
        assert_eq!(summary.string("sub"), Some("a"));
        assert_eq!(summary.scopes(|_| false), vec!["s"]);
        assert_eq!(summary.audiences(), vec!["x"]);
        assert_eq!(summary.get("email"), None);
        assert!(summary.byte_len() < claims.byte_len());
        assert!(Claims::summary_covers("sub") && !Claims::summary_covers("email"));
    }

    #[test]
    fn list_claims_read_strings_and_arrays() {
        let claims = parse(&jwt(
            RS256,
            r#"{"scp":["a","b",3],"aud":"api","roles":"admin, ops  dev","groups":["x","y"]}"#,
        ))
        .unwrap();
        assert_eq!(claims.scopes(|_| false), vec!["a", "b"]);
        assert_eq!(claims.audiences(), vec!["api"]);
        assert_eq!(claims.values("roles", true), vec!["admin", "ops", "dev"]);
        assert_eq!(claims.values("groups", false), vec!["x", "y"]);
        assert!(claims.values("missing", false).is_empty());
        let both = parse(&jwt(RS256, r#"{"scope":"s1","scp":["other"]}"#)).unwrap();
        assert_eq!(both.scopes(|_| false), vec!["s1"], "scope wins over scp");
    }

    #[test]
    fn strings_are_split_at_spaces_only_unless_commas_are_asked_for() {
        let claims = parse(&jwt(
            RS256,
            r#"{"scope":"orders:x,orders:admin  openid","roles":"admin, ops  dev"}"#,
        ))
        .unwrap();
        assert_eq!(
            claims.scopes(|_| false),
            vec!["orders:x,orders:admin", "openid"]
        );
        assert_eq!(claims.values("roles", false), vec!["admin,", "ops", "dev"]);
        assert_eq!(
            claims.scopes(|name| name == "scope"),
            vec!["orders:x", "orders:admin", "openid"]
        );
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
    fn the_subject_is_sub_else_the_owner_else_the_client_of_a_token_without_one() {
        let claims = |json: &str| parse(&jwt(RS256, json)).unwrap();
        let sub = |json: &str, owner: &str| {
            let c = claims(json);
            subject(|n| c.get(n), owner).map(|s| s.into_owned())
        };
        assert_eq!(
            sub(
                r#"{"sub":"u1","username":"al","client_id":"c"}"#,
                "username"
            )
            .as_deref(),
            Ok("u1")
        );
        assert_eq!(
            sub(r#"{"sub":"","username":"al","client_id":"c"}"#, "username").as_deref(),
            Ok("al")
        );
        assert_eq!(
            sub(r#"{"username":"al","client_id":"c"}"#, "username").as_deref(),
            Ok("al")
        );
        assert_eq!(
            sub(r#"{"uid":7,"username":"al"}"#, "uid").as_deref(),
            Ok("7")
        );
        assert_eq!(sub(r#"{"client_id":"c"}"#, "username").as_deref(), Ok("c"));
        assert_eq!(
            sub(r#"{"username":null,"client_id":"c"}"#, "username").as_deref(),
            Ok("c")
        );
        assert_eq!(
            sub(r#"{"username":"","client_id":"c"}"#, "username"),
            Err(SubjectError::UnusableOwner)
        );
        assert_eq!(
            sub(r#"{"username":["a"],"client_id":"c"}"#, "username"),
            Err(SubjectError::UnusableOwner)
        );
        assert_eq!(
            sub(r#"{"scope":"x"}"#, "username"),
            Err(SubjectError::Nobody)
        );

        let mut filled = claims(r#"{"username":"al","client_id":"c"}"#);
        filled.fill_subject("username");
        assert_eq!(filled.string("sub"), Some("al"));
        let mut kept = claims(r#"{"sub":"u1","username":"al"}"#);
        kept.fill_subject("username");
        assert_eq!(kept.string("sub"), Some("u1"));
        let mut nobody = claims(r#"{"scope":"x"}"#);
        nobody.fill_subject("username");
        assert_eq!(nobody.get("sub"), None);
    }

    #[test]
    fn bindings_the_plugin_cannot_check_are_told_apart() {
        let binding = |json: &str| {
            let c = parse(&jwt(RS256, json)).unwrap();
            match c.binding() {
                Binding::None => "none".to_owned(),
                Binding::Jkt(j) => format!("jkt:{j}"),
                Binding::Unchecked => "unchecked".to_owned(),
            }
        };
        assert_eq!(binding(r#"{}"#), "none");
        assert_eq!(binding(r#"{"cnf":null}"#), "none");
        assert_eq!(binding(r#"{"cnf":{}}"#), "none");
        assert_eq!(binding(r#"{"cnf":{"jkt":"abc"}}"#), "jkt:abc");
        for unchecked in [
            r#"{"cnf":{"x5t#S256":"abc"}}"#,
            r#"{"cnf":{"jkt":"abc","x5t#S256":"def"}}"#,
            r#"{"cnf":{"jkt":42}}"#,
            r#"{"cnf":{"jkt":""}}"#,
            r#"{"cnf":{"jwk":{"kty":"EC"}}}"#,
            r#"{"cnf":"abc"}"#,
        ] {
            assert_eq!(binding(unchecked), "unchecked", "{unchecked}");
        }
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
