//! Reading an introspection answer by its media type: RFC 7662 JSON, and
//! (in [`signed`]) the RFC 9701 signed JWT response, which carries the same
//! JSON inside.
//!
//! What must hold:
//! - Only the JSON boolean `true` in `active` means active. A missing
//!   `active`, `"true"`, `1` mean inactive (RFC 7662 §2.2). A body that is not
//!   a JSON object, or an active answer whose members have the wrong types,
//!   is a fault of the AS, never a verdict about the token.
//! - When the operator names a member that carries a ready JWT (Keycloak's
//!   `jwt`), that JWT is used only if it is a signed compact JWS whose `sub`
//!   agrees with the answer and whose `exp` is present and not later than the
//!   answer's. Otherwise the caller mints one (see [`crate::mint`]).

pub mod signed;
pub mod verify;

use crate::jwt::{self, JwtError};

/// `application/jwt`: Curity's phantom-token answer, the JWT itself.
pub const MEDIA_JWT: &str = "application/jwt";
/// `application/json`: RFC 7662.
pub const MEDIA_JSON: &str = "application/json";
/// `application/token-introspection+jwt`: RFC 9701.
pub const MEDIA_INTROSPECTION_JWT: &str = "application/token-introspection+jwt";

/// What kind of answer a `Content-Type` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// The JWT to forward (Curity).
    Jwt,
    /// RFC 7662 JSON.
    Json,
    /// RFC 9701 signed introspection response.
    IntrospectionJwt,
    /// Missing or anything else.
    Other,
}

/// Classifies a `Content-Type` value by type/subtype only, ignoring case and
/// parameters (`application/json; charset=utf-8` is JSON).
pub fn media_type(content_type: Option<&str>) -> MediaType {
    let Some(value) = content_type else {
        return MediaType::Other;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(MEDIA_JWT) {
        MediaType::Jwt
    } else if essence.eq_ignore_ascii_case(MEDIA_JSON) {
        MediaType::Json
    } else if essence.eq_ignore_ascii_case(MEDIA_INTROSPECTION_JWT) {
        MediaType::IntrospectionJwt
    } else {
        MediaType::Other
    }
}

/// What the AS said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Active(Box<ActiveAnswer>),
    Inactive,
}

/// An active token as described by an RFC 7662 answer.
#[derive(Clone, PartialEq)]
pub struct ActiveAnswer {
    /// Every member of the answer except `active` and the ready-JWT member;
    /// the registered ones are checked for type.
    pub members: serde_json::Map<String, serde_json::Value>,
    /// `exp`, unix seconds.
    pub exp: Option<u64>,
    /// The ready JWT from the operator-named member, checked as described in
    /// the module docs; `None` when the answer carries none.
    pub ready_jwt: Option<String>,
}

impl std::fmt::Debug for ActiveAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveAnswer")
            .field("members", &self.members.keys().collect::<Vec<_>>())
            .field("exp", &self.exp)
            .field("ready_jwt", &self.ready_jwt.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ActiveAnswer {
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.members.get(name)
    }

    /// A member that is a string.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.members.get(name).and_then(serde_json::Value::as_str)
    }

    pub fn sub(&self) -> Option<&str> {
        self.string("sub")
    }

    pub fn client_id(&self) -> Option<&str> {
        self.string("client_id")
    }

    pub fn scope(&self) -> Option<&str> {
        self.string("scope")
    }

    /// `aud` as a string or an array of strings.
    pub fn audiences(&self) -> Vec<&str> {
        jwt::audiences(self.members.get("aud"))
    }

    /// The token's subject by the [`jwt::subject`] rule: `sub`, else the
    /// resource owner (`owner_claim`), else the client of a token with no
    /// resource owner.
    ///
    /// # Errors
    ///
    /// [`jwt::SubjectError`] when none applies.
    pub fn subject(
        &self,
        owner_claim: &str,
    ) -> Result<std::borrow::Cow<'_, str>, jwt::SubjectError> {
        jwt::subject(|name| self.members.get(name), owner_claim)
    }

    /// What the AS said about the token, as claims: every member (and
    /// `exp`), with `sub` set by the subject rule when the answer has none.
    /// An API's rules read these, never the JWT the plugin mints from them.
    ///
    /// # Errors
    ///
    /// [`AnswerError::BadMember`] for an `exp` that is not a NumericDate
    /// (refused when the answer was read, so not in practice).
    pub fn claims(&self, owner_claim: &str) -> Result<jwt::Claims, AnswerError> {
        let mut claims = jwt::Claims::from_map(self.members.clone())
            .map_err(|_| AnswerError::BadMember("exp".to_owned()))?;
        claims.fill_subject(owner_claim);
        Ok(claims)
    }
}

/// Why an answer cannot be used. Every variant is a fault of the AS (or of
/// whatever stands between us and it): never report it as an invalid token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("introspection answer is not JSON")]
    NotJson,
    #[error("introspection answer is not a JSON object")]
    NotObject,
    #[error("introspection answer member \"{0}\" has the wrong type")]
    BadMember(String),
    #[error("the JWT in the introspection answer is unusable: {0}")]
    ReadyJwt(JwtError),
    #[error("the JWT in the introspection answer disagrees with it on \"{0}\"")]
    ReadyJwtDisagrees(&'static str),
    /// RFC 9701: the signature did not verify with the AS's keys.
    #[error("signed introspection answer not verified: {0}")]
    Signature(crate::jwks::VerifyError),
    /// RFC 9701: an encrypted (nested) response, which is not supported.
    #[error("encrypted introspection answers are not supported")]
    Encrypted,
    #[error("signed introspection answer has the wrong JOSE \"typ\"")]
    WrongType,
    #[error("signed introspection answer is from another issuer")]
    WrongIssuer,
    #[error("signed introspection answer is addressed to another client")]
    WrongAudience,
    #[error("signed introspection answer has no numeric \"iat\"")]
    MissingIat,
    #[error("signed introspection answer was issued in the future")]
    IssuedInFuture,
    #[error("signed introspection answer is too old")]
    Stale,
    /// `VERIFY_JWT=true`: the JWT to forward did not verify.
    #[error("the authorization server's JWT failed verification: {0}")]
    Unverified(verify::JwtRejected),
    /// An active answer that is not signed (or not verified) where the
    /// operator asked for signed answers (RFC 9701) or verified JWTs: it
    /// could come from anyone on the path, so it never allows a request.
    #[error("an unsigned {0} answer claims the token is active, but signed answers are required")]
    Unsigned(&'static str),
}

/// Reads an RFC 7662 JSON body.
///
/// # Errors
///
/// [`AnswerError`] when the body is not a JSON object, or an active answer is
/// malformed.
pub fn read_json(body: &[u8], jwt_member: Option<&str>) -> Result<Verdict, AnswerError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| AnswerError::NotJson)?;
    let serde_json::Value::Object(members) = value else {
        return Err(AnswerError::NotObject);
    };
    read_members(members, jwt_member)
}

/// Reads the members of an RFC 7662 answer (the JSON body, or RFC 9701's
/// `token_introspection` claim).
///
/// # Errors
///
/// As [`read_json`].
pub fn read_members(
    mut members: serde_json::Map<String, serde_json::Value>,
    jwt_member: Option<&str>,
) -> Result<Verdict, AnswerError> {
    if members.remove("active") != Some(serde_json::Value::Bool(true)) {
        return Ok(Verdict::Inactive);
    }
    for name in ["sub", "client_id", "scope", "iss", "jti", "token_type"] {
        if !matches!(
            members.get(name),
            None | Some(serde_json::Value::Null | serde_json::Value::String(_))
        ) {
            return Err(AnswerError::BadMember(name.to_owned()));
        }
    }
    match members.get("aud") {
        None | Some(serde_json::Value::Null | serde_json::Value::String(_)) => {}
        Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => {}
        Some(_) => return Err(AnswerError::BadMember("aud".to_owned())),
    }
    if !matches!(
        members.get("cnf"),
        None | Some(serde_json::Value::Null | serde_json::Value::Object(_))
    ) {
        return Err(AnswerError::BadMember("cnf".to_owned()));
    }
    for name in ["iat", "nbf"] {
        numeric_member(&members, name)?;
    }
    let exp = numeric_member(&members, "exp")?;

    let ready_jwt = match jwt_member.and_then(|name| members.remove(name)) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(jwt)) => {
            check_ready_jwt(&jwt, &members, exp)?;
            Some(jwt)
        }
        Some(_) => {
            return Err(AnswerError::BadMember(
                jwt_member.unwrap_or_default().to_owned(),
            ));
        }
    };
    Ok(Verdict::Active(Box::new(ActiveAnswer {
        members,
        exp,
        ready_jwt,
    })))
}

fn check_ready_jwt(
    jwt: &str,
    members: &serde_json::Map<String, serde_json::Value>,
    exp: Option<u64>,
) -> Result<(), AnswerError> {
    let claims = jwt::parse(jwt).map_err(AnswerError::ReadyJwt)?;
    if let Some(sub) = members.get("sub").and_then(serde_json::Value::as_str)
        && claims.string("sub") != Some(sub)
    {
        return Err(AnswerError::ReadyJwtDisagrees("sub"));
    }
    match (claims.exp, exp) {
        (None, _) => Err(AnswerError::ReadyJwtDisagrees("exp")),
        (Some(jwt_exp), Some(exp)) if jwt_exp > exp => Err(AnswerError::ReadyJwtDisagrees("exp")),
        _ => Ok(()),
    }
}

/// An RFC 7519 NumericDate member: absent, null, or a non-negative number
/// (fractions dropped).
fn numeric_member(
    members: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<u64>, AnswerError> {
    match members.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => numeric_date(value)
            .map(Some)
            .ok_or_else(|| AnswerError::BadMember(name.to_owned())),
    }
}

pub(crate) use crate::jwt::numeric_date;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jws(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn active(verdict: Verdict) -> ActiveAnswer {
        match verdict {
            Verdict::Active(a) => *a,
            Verdict::Inactive => panic!("expected active"),
        }
    }

    #[test]
    fn media_types_are_compared_by_type_and_subtype_only() {
        assert_eq!(media_type(Some("application/json")), MediaType::Json);
        assert_eq!(
            media_type(Some("Application/JSON; charset=utf-8")),
            MediaType::Json
        );
        assert_eq!(media_type(Some("application/jwt")), MediaType::Jwt);
        assert_eq!(
            media_type(Some("application/token-introspection+jwt; charset=utf-8")),
            MediaType::IntrospectionJwt
        );
        for other in [
            Some("text/html"),
            Some("application/jsonp"),
            Some("application/jwt-x"),
            Some(""),
            None,
        ] {
            assert_eq!(media_type(other), MediaType::Other, "{other:?}");
        }
    }

    #[test]
    fn only_the_json_boolean_true_is_active() {
        for body in [
            r#"{"active":false}"#,
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{"active":null}"#,
            r#"{}"#,
            r#"{"sub":"alice","exp":1900000000}"#,
        ] {
            assert_eq!(
                read_json(body.as_bytes(), None),
                Ok(Verdict::Inactive),
                "{body}"
            );
        }
        let answer = active(
            read_json(
                br#"{"active":true,"sub":"alice","client_id":"web","scope":"a b","aud":["x","y"],"exp":1900000000.5,"iat":1,"department":"ops"}"#,
                None,
            )
            .unwrap(),
        );
        assert_eq!(answer.sub(), Some("alice"));
        assert_eq!(answer.client_id(), Some("web"));
        assert_eq!(answer.scope(), Some("a b"));
        assert_eq!(answer.audiences(), ["x", "y"]);
        assert_eq!(answer.exp, Some(1_900_000_000));
        assert_eq!(answer.string("department"), Some("ops"));
        assert_eq!(answer.get("active"), None);
        assert_eq!(answer.ready_jwt, None);
    }

    #[test]
    fn malformed_answers_are_faults() {
        assert_eq!(read_json(b"", None), Err(AnswerError::NotJson));
        assert_eq!(read_json(b"<html>", None), Err(AnswerError::NotJson));
        assert_eq!(read_json(b"[true]", None), Err(AnswerError::NotObject));
        assert_eq!(read_json(b"true", None), Err(AnswerError::NotObject));
        for (body, member) in [
            (r#"{"active":true,"exp":"1900000000"}"#, "exp"),
            (r#"{"active":true,"exp":-1}"#, "exp"),
            (r#"{"active":true,"iat":true}"#, "iat"),
            (r#"{"active":true,"sub":42}"#, "sub"),
            (r#"{"active":true,"scope":["a"]}"#, "scope"),
            (r#"{"active":true,"aud":[1]}"#, "aud"),
            (r#"{"active":true,"cnf":"x"}"#, "cnf"),
            (r#"{"active":true,"jwt":42}"#, "jwt"),
        ] {
            assert_eq!(
                read_json(body.as_bytes(), Some("jwt")),
                Err(AnswerError::BadMember(member.to_owned())),
                "{body}"
            );
        }
        // Inactive answers are not inspected further.
        assert_eq!(
            read_json(br#"{"active":false,"exp":"soon"}"#, None),
            Ok(Verdict::Inactive)
        );
    }

    #[test]
    fn a_ready_jwt_is_taken_from_the_named_member_when_it_agrees() {
        let jwt = jws(r#"{"sub":"alice","exp":1900000000}"#);
        let body =
            serde_json::json!({"active": true, "sub": "alice", "exp": 1_900_000_000, "jwt": jwt});
        let answer = active(read_json(body.to_string().as_bytes(), Some("jwt")).unwrap());
        assert_eq!(answer.ready_jwt.as_deref(), Some(jwt.as_str()));
        assert_eq!(
            answer.get("jwt"),
            None,
            "the JWT is not kept among the claims"
        );
        assert!(!format!("{answer:?}").contains(&jwt));

        // Not named: ignored (and kept as an ordinary member).
        let answer = active(read_json(body.to_string().as_bytes(), None).unwrap());
        assert_eq!(answer.ready_jwt, None);
        // Named but absent or null: none, the caller mints.
        let plain = br#"{"active":true,"sub":"alice","jwt":null}"#;
        assert_eq!(
            active(read_json(plain, Some("jwt")).unwrap()).ready_jwt,
            None
        );
    }

    #[test]
    fn a_ready_jwt_that_is_not_a_jws_or_disagrees_is_a_fault() {
        let cases = [
            (
                "not a jwt".to_owned(),
                AnswerError::ReadyJwt(JwtError::NotCompact),
            ),
            (
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode(r#"{"sub":"alice","exp":1900000000}"#)
                ),
                AnswerError::ReadyJwt(JwtError::Unsigned),
            ),
            (
                jws(r#"{"sub":"mallory","exp":1900000000}"#),
                AnswerError::ReadyJwtDisagrees("sub"),
            ),
            (
                jws(r#"{"exp":1900000000}"#),
                AnswerError::ReadyJwtDisagrees("sub"),
            ),
            (
                jws(r#"{"sub":"alice","exp":1900000001}"#),
                AnswerError::ReadyJwtDisagrees("exp"),
            ),
            (
                jws(r#"{"sub":"alice"}"#),
                AnswerError::ReadyJwtDisagrees("exp"),
            ),
        ];
        for (jwt, expected) in cases {
            let body = serde_json::json!({"active": true, "sub": "alice", "exp": 1_900_000_000, "phantom_token": jwt});
            assert_eq!(
                read_json(body.to_string().as_bytes(), Some("phantom_token")),
                Err(expected),
                "{jwt}"
            );
        }
        // A shorter-lived JWT is fine.
        let shorter = jws(r#"{"sub":"alice","exp":1800000000}"#);
        let body = serde_json::json!({"active": true, "sub": "alice", "exp": 1_900_000_000, "jwt": shorter});
        assert!(read_json(body.to_string().as_bytes(), Some("jwt")).is_ok());
    }
}
