//! Client authentication at the AS's endpoints besides `client_secret_basic`
//! (which the introspection client builds itself): `client_secret_post`
//! (RFC 6749 §2.3.1, form fields) and `private_key_jwt` (RFC 7523 client
//! assertion, OpenID Connect Core §9).
//!
//! Each yields form fields to append to the request body (after `token=…`).
//! A client assertion is single-use (servers keep its `jti` to refuse
//! replays), so a new one is signed for every request; it lives only
//! briefly. Secrets and assertions never appear in `Debug` output.

use std::time::Duration;

use serde::Serialize;

use crate::keys::{KeyError, SigningKey, SigningKeys};
use crate::mint::{MintError, new_jti};

/// RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Long enough for clock skew and the request, short enough to be useless
/// if captured.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// Why client authentication could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("cannot load the client assertion key: {0}")]
    Key(#[from] KeyError),
    #[error("cannot sign the client assertion: {0}")]
    Sign(String),
}

/// How the gateway authenticates as a client, in the request body.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    SecretPost(ClientSecretPost),
    PrivateKeyJwt(Box<PrivateKeyJwt>),
}

impl ClientAuth {
    /// The form fields to append to a request made at `now` (unix seconds).
    ///
    /// # Errors
    ///
    /// [`ClientAuthError::Sign`] when an assertion cannot be signed.
    pub fn form_fields(&self, now: u64) -> Result<Vec<(&'static str, String)>, ClientAuthError> {
        match self {
            ClientAuth::SecretPost(post) => Ok(post
                .form_fields()
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect()),
            ClientAuth::PrivateKeyJwt(jwt) => jwt.form_fields(now),
        }
    }
}

/// `client_secret_post`: `client_id` and `client_secret` as form fields.
#[derive(Clone)]
pub struct ClientSecretPost {
    client_id: String,
    secret: String,
}

impl std::fmt::Debug for ClientSecretPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecretPost")
            .field("client_id", &self.client_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl ClientSecretPost {
    pub fn new(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        ClientSecretPost {
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// `client_id` and `client_secret`, to be form-encoded into the body.
    pub fn form_fields(&self) -> [(&'static str, &str); 2] {
        [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
        ]
    }
}

/// `private_key_jwt`: a JWT signed with the client's private key, whose
/// public key is registered at the AS.
#[derive(Debug, Clone)]
pub struct PrivateKeyJwt {
    client_id: String,
    audience: String,
    key: SigningKey,
    lifetime: Duration,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl PrivateKeyJwt {
    /// `audience` is the endpoint called or the AS's issuer identifier (the
    /// issuer is the value RFC 7523's successors recommend, and every server
    /// we know accepts it).
    pub fn new(
        client_id: impl Into<String>,
        audience: impl Into<String>,
        key: SigningKey,
        lifetime: Duration,
    ) -> Self {
        PrivateKeyJwt {
            client_id: client_id.into(),
            audience: audience.into(),
            key,
            lifetime,
        }
    }

    /// With the first key of a PEM file and the default lifetime.
    ///
    /// # Errors
    ///
    /// [`ClientAuthError::Key`] when the file has no usable key.
    pub fn from_pem_file(
        client_id: impl Into<String>,
        audience: impl Into<String>,
        path: &std::path::Path,
    ) -> Result<Self, ClientAuthError> {
        let keys = SigningKeys::from_pem_file(path)?;
        Ok(Self::new(
            client_id,
            audience,
            keys.current().clone(),
            DEFAULT_ASSERTION_LIFETIME,
        ))
    }

    /// The public key to register at the AS, as a JWK.
    pub fn public_jwk(&self) -> &crate::keys::PublicJwk {
        self.key.public_jwk()
    }

    /// A fresh assertion: `iss` = `sub` = client id, `aud`, random `jti`,
    /// `iat` = `now`, short `exp`.
    ///
    /// # Errors
    ///
    /// [`ClientAuthError::Sign`] when signing fails.
    pub fn assertion(&self, now: u64) -> Result<String, ClientAuthError> {
        let claims = AssertionClaims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.audience,
            jti: new_jti().map_err(|e: MintError| ClientAuthError::Sign(e.to_string()))?,
            iat: now,
            exp: now.saturating_add(self.lifetime.as_secs().max(1)),
        };
        self.key
            .sign("JWT", &claims)
            .map_err(|e| ClientAuthError::Sign(e.to_string()))
    }

    /// `client_id`, `client_assertion_type` and a fresh `client_assertion`.
    ///
    /// # Errors
    ///
    /// As [`PrivateKeyJwt::assertion`].
    pub fn form_fields(&self, now: u64) -> Result<Vec<(&'static str, String)>, ClientAuthError> {
        Ok(vec![
            ("client_id", self.client_id.clone()),
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", self.assertion(now)?),
        ])
    }
}

/// `application/x-www-form-urlencoded` body from fields, in order.
pub fn encode_form<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k.as_ref(), v.as_ref());
    }
    form.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{ed25519_pem, p256_pem};
    use jsonwebtoken::{DecodingKey, Validation};

    const NOW: u64 = 1_900_000_000;

    #[test]
    fn client_secret_post_fields_are_form_encoded_and_never_debugged() {
        let post = ClientSecretPost::new("gate:way", "a+b:c d%");
        assert_eq!(
            encode_form(&post.form_fields()),
            "client_id=gate%3Away&client_secret=a%2Bb%3Ac+d%25"
        );
        let auth = ClientAuth::SecretPost(post);
        assert!(!format!("{auth:?}").contains("a+b"));
        assert_eq!(auth.form_fields(NOW).unwrap().len(), 2);
    }

    #[test]
    fn the_assertion_follows_rfc7523_and_verifies_with_the_registered_key() {
        for pem in [p256_pem(), ed25519_pem()] {
            let keys = SigningKeys::from_pem(&pem).unwrap();
            let auth = PrivateKeyJwt::new(
                "gateway",
                "https://as.example",
                keys.current().clone(),
                DEFAULT_ASSERTION_LIFETIME,
            );
            let fields = auth.form_fields(NOW).unwrap();
            assert_eq!(fields[0], ("client_id", "gateway".to_owned()));
            assert_eq!(
                fields[1],
                ("client_assertion_type", ASSERTION_TYPE.to_owned())
            );
            let assertion = &fields[2].1;

            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(serde_json::to_value(auth.public_jwk()).unwrap()).unwrap();
            let mut validation = Validation::new(keys.current().alg());
            validation.validate_exp = false;
            validation.set_audience(&["https://as.example"]);
            validation.set_issuer(&["gateway"]);
            validation.sub = Some("gateway".to_owned());
            let claims = jsonwebtoken::decode::<serde_json::Value>(
                assertion,
                &DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap()
            .claims;
            assert_eq!(claims["iat"], NOW);
            assert_eq!(claims["exp"], NOW + 60);
            let again = auth.assertion(NOW).unwrap();
            let other: serde_json::Value =
                jsonwebtoken::dangerous::insecure_decode_claims(&again).unwrap();
            assert_ne!(
                claims["jti"], other["jti"],
                "every assertion has its own jti"
            );
            assert!(!format!("{auth:?}").contains(assertion.as_str()));
        }
    }

    #[test]
    fn a_missing_key_file_is_a_key_error() {
        let error = PrivateKeyJwt::from_pem_file(
            "gateway",
            "https://as.example",
            "/nonexistent.pem".as_ref(),
        )
        .unwrap_err();
        assert!(matches!(error, ClientAuthError::Key(KeyError::Read { .. })));
    }
}
