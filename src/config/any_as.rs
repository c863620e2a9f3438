//! Settings for authorization servers other than Curity's `application/jwt`
//! answer: RFC 7662 JSON, RFC 9701 signed answers, minted JWTs, discovery
//! and client authentication.
//!
//! What must hold: with none of these variables set the plugin behaves as it
//! does for Curity (`Accept: application/jwt`, `client_secret_basic`, no
//! minting). Combinations that cannot work are refused at start-up here, so
//! the request path never meets them: an `Accept` that lets the AS answer
//! without a JWT needs a way to get one (a signing key or a named member); a
//! signed answer needs the AS's issuer to check `iss` against.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::redacted::without_userinfo;
use super::vars::*;
use super::{Source, parse};
use crate::answer::{MEDIA_INTROSPECTION_JWT, MEDIA_JSON, MEDIA_JWT};

/// A minted token lives at most this long, even when the opaque token lives
/// longer (it is minted again from a fresh answer after that).
pub const DEFAULT_MINTED_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The signature algorithms accepted on RFC 9701 answers by default: the
/// asymmetric ones servers use (never `HS*` or `none`).
pub const DEFAULT_SIGNING_ALGS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// How the gateway authenticates at the introspection endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `Authorization: Basic` with `CLIENT_ID` and the secret (the default).
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
    /// An RFC 7523 assertion signed with the key in this PEM file.
    PrivateKeyJwt(PathBuf),
}

/// Minting settings; present when `SIGNING_KEY_FILE` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintConfig {
    pub key_file: PathBuf,
    pub issuer: String,
    /// Never empty: RFC 9068 requires an `aud`, and an AS may send none.
    pub audience: Vec<String>,
    pub copy_claims: Vec<String>,
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyAsConfig {
    /// The AS's issuer: discovery, and the `iss` of signed answers.
    pub issuer: Option<String>,
    /// `INTROSPECTION_URL` was not set: the endpoint comes from discovery
    /// (the configured URL is the issuer until then).
    pub discover_introspection_url: bool,
    /// The `Accept` header sent with introspection requests.
    pub accept: String,
    /// The member of a JSON answer holding a ready JWT.
    pub jwt_field: Option<String>,
    /// The AS's JWKS; from discovery when unset.
    pub jwks_url: Option<reqwest::Url>,
    pub signing_algs: Vec<Algorithm>,
    pub mint: Option<MintConfig>,
    pub client_auth: ClientAuthMethod,
    /// The member naming the resource owner when an answer has no `sub`
    /// (see [`crate::jwt::subject`]).
    pub owner_claim: String,
    /// `ALLOW_UNCHECKED_BINDINGS`: a token bound in a way the plugin cannot
    /// check (see [`crate::jwt::Binding::Unchecked`]) is accepted as a
    /// bearer token instead of refused.
    pub allow_unchecked_bindings: bool,
}

impl AnyAsConfig {
    /// Whether answers may be RFC 9701 signed statements to verify.
    pub fn wants_signed(&self) -> bool {
        self.accept == MEDIA_INTROSPECTION_JWT
    }
}

/// Reads this module's variables; `allow_http` is `INTROSPECTION_ALLOW_HTTP`
/// and `has_introspection_url` whether `INTROSPECTION_URL` is set.
///
/// # Errors
///
/// Every problem found, each naming its variable.
pub fn read(
    source: &dyn Source,
    allow_http: bool,
    has_introspection_url: bool,
) -> Result<AnyAsConfig, Vec<String>> {
    let mut problems = Vec::new();
    let raw = |name: &str| {
        source
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let url = |name: &str, problems: &mut Vec<String>| {
        let value = raw(name)?;
        // Messages reach logs: a `user:password@` in the value is masked.
        let shown = without_userinfo(&value);
        match parse::introspection_url(&value) {
            Ok(url) if url.scheme() == "http" && !allow_http => {
                problems.push(format!(
                    "{name}={shown:?}: http:// needs INTROSPECTION_ALLOW_HTTP=true; use https://"
                ));
                None
            }
            Ok(url) => Some(url),
            Err(why) => {
                problems.push(format!("{name}={shown:?}: {why}"));
                None
            }
        }
    };

    let issuer_url = url(ENV_ISSUER, &mut problems);
    let issuer = issuer_url.as_ref().and(raw(ENV_ISSUER));
    let jwks_url = url(ENV_INTROSPECTION_JWKS_URL, &mut problems);

    let accept = match raw(ENV_INTROSPECTION_ACCEPT) {
        None => MEDIA_JWT.to_owned(),
        Some(v) => {
            let lower = v.to_ascii_lowercase();
            if [MEDIA_JWT, MEDIA_JSON, MEDIA_INTROSPECTION_JWT].contains(&lower.as_str()) {
                lower
            } else {
                problems.push(format!(
                    "{ENV_INTROSPECTION_ACCEPT}={v:?}: expected {MEDIA_JWT}, {MEDIA_JSON} or {MEDIA_INTROSPECTION_JWT}"
                ));
                MEDIA_JWT.to_owned()
            }
        }
    };
    let jwt_field = raw(ENV_INTROSPECTION_JWT_FIELD);

    let signing_algs = match raw(ENV_INTROSPECTION_SIGNING_ALGS) {
        None => DEFAULT_SIGNING_ALGS.to_vec(),
        Some(v) => parse::asymmetric_algorithms(&v).unwrap_or_else(|why| {
            problems.push(format!("{ENV_INTROSPECTION_SIGNING_ALGS}: {why}"));
            Vec::new()
        }),
    };

    let mint = match raw(ENV_SIGNING_KEY_FILE) {
        None => {
            for name in [
                ENV_MINTED_ISSUER,
                ENV_MINTED_AUDIENCE,
                ENV_MINTED_CLAIMS,
                ENV_MINTED_MAX_LIFETIME_SECONDS,
            ] {
                if raw(name).is_some() {
                    problems.push(format!("{name} is set but {ENV_SIGNING_KEY_FILE} is not"));
                }
            }
            None
        }
        Some(key_file) => {
            let issuer = raw(ENV_MINTED_ISSUER).unwrap_or_else(|| {
                problems.push(format!(
                    "{ENV_MINTED_ISSUER} is required with {ENV_SIGNING_KEY_FILE} (the iss of minted JWTs)"
                ));
                String::new()
            });
            let copy_claims: Vec<String> = raw(ENV_MINTED_CLAIMS)
                .map(|v| list(&v).map(str::to_owned).collect())
                .unwrap_or_default();
            for name in &copy_claims {
                if crate::mint::RESERVED_CLAIMS.contains(&name.as_str()) {
                    problems.push(format!(
                        "{ENV_MINTED_CLAIMS}: {name:?} is set by the plugin and cannot be copied"
                    ));
                }
            }
            let max_lifetime = match raw(ENV_MINTED_MAX_LIFETIME_SECONDS) {
                None => DEFAULT_MINTED_MAX_LIFETIME,
                Some(v) => match parse::integer::<u64>(&v, 1, 86_400) {
                    Ok(n) => Duration::from_secs(n),
                    Err(why) => {
                        problems.push(format!("{ENV_MINTED_MAX_LIFETIME_SECONDS}={v:?}: {why}"));
                        DEFAULT_MINTED_MAX_LIFETIME
                    }
                },
            };
            let audience: Vec<String> = raw(ENV_MINTED_AUDIENCE)
                .map(|v| list(&v).map(str::to_owned).collect())
                .unwrap_or_default();
            if audience.is_empty() {
                problems.push(format!(
                    "{ENV_MINTED_AUDIENCE} is required with {ENV_SIGNING_KEY_FILE}: RFC 9068 \
                     JWTs need an aud, and many authorization servers send none (an API's \
                     config_data may still name its own minted_audience)"
                ));
            }
            Some(MintConfig {
                key_file: PathBuf::from(key_file),
                issuer,
                audience,
                copy_claims,
                max_lifetime,
            })
        }
    };

    let assertion_key = raw(ENV_CLIENT_ASSERTION_KEY_FILE);
    let client_auth = match raw(ENV_CLIENT_AUTH_METHOD).as_deref() {
        None | Some("client_secret_basic") => ClientAuthMethod::SecretBasic,
        Some("client_secret_post") => ClientAuthMethod::SecretPost,
        Some("private_key_jwt") => match &assertion_key {
            Some(path) => ClientAuthMethod::PrivateKeyJwt(PathBuf::from(path)),
            None => {
                problems.push(format!(
                    "{ENV_CLIENT_AUTH_METHOD}=private_key_jwt needs {ENV_CLIENT_ASSERTION_KEY_FILE}"
                ));
                ClientAuthMethod::SecretBasic
            }
        },
        Some(other) => {
            problems.push(format!(
                "{ENV_CLIENT_AUTH_METHOD}={other:?}: expected client_secret_basic, client_secret_post or private_key_jwt"
            ));
            ClientAuthMethod::SecretBasic
        }
    };
    if assertion_key.is_some() && !matches!(client_auth, ClientAuthMethod::PrivateKeyJwt(_)) {
        problems.push(format!(
            "{ENV_CLIENT_ASSERTION_KEY_FILE} is set but {ENV_CLIENT_AUTH_METHOD} is not private_key_jwt"
        ));
    }

    if accept != MEDIA_JWT && mint.is_none() && jwt_field.is_none() {
        problems.push(format!(
            "{ENV_INTROSPECTION_ACCEPT}={accept} lets the authorization server answer without a JWT: \
             set {ENV_SIGNING_KEY_FILE} (with {ENV_MINTED_ISSUER} and {ENV_MINTED_AUDIENCE}) so the \
             plugin can mint one, or {ENV_INTROSPECTION_JWT_FIELD} if the answer carries one"
        ));
    }
    if accept == MEDIA_INTROSPECTION_JWT && issuer.is_none() {
        problems.push(format!(
            "{ENV_INTROSPECTION_ACCEPT}={MEDIA_INTROSPECTION_JWT} needs {ENV_ISSUER}: \
             signed answers are checked against the AS's issuer"
        ));
    }
    // A missing INTROSPECTION_URL without ISSUER is reported with the other
    // required variables.

    let owner_claim = raw(ENV_RESOURCE_OWNER_CLAIM)
        .unwrap_or_else(|| crate::jwt::DEFAULT_RESOURCE_OWNER_CLAIM.to_owned());
    if owner_claim == "sub"
        || owner_claim
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        problems.push(format!(
            "{ENV_RESOURCE_OWNER_CLAIM}={owner_claim:?}: expected one claim name other than sub"
        ));
    }

    let allow_unchecked_bindings = match raw(ENV_ALLOW_UNCHECKED_BINDINGS) {
        None => false,
        Some(v) => parse::boolean(&v).unwrap_or_else(|why| {
            problems.push(format!("{ENV_ALLOW_UNCHECKED_BINDINGS}={v:?}: {why}"));
            false
        }),
    };

    if problems.is_empty() {
        Ok(AnyAsConfig {
            issuer,
            discover_introspection_url: !has_introspection_url,
            accept,
            jwt_field,
            jwks_url,
            signing_algs,
            mint,
            client_auth,
            owner_claim,
            allow_unchecked_bindings,
        })
    } else {
        Err(problems)
    }
}

/// Comma- or space-separated names.
fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn read_map(pairs: &[(&str, &str)], has_url: bool) -> Result<AnyAsConfig, Vec<String>> {
        read(&MapSource::new(pairs), true, has_url)
    }

    #[test]
    fn nothing_set_is_curity_as_before() {
        let config = read_map(&[], true).unwrap();
        assert_eq!(config.accept, MEDIA_JWT);
        assert_eq!(config.client_auth, ClientAuthMethod::SecretBasic);
        assert_eq!(config.mint, None);
        assert!(!config.discover_introspection_url);
    }

    #[test]
    fn json_without_a_way_to_get_a_jwt_is_refused() {
        let problems = read_map(&[(ENV_INTROSPECTION_ACCEPT, "application/json")], true)
            .unwrap_err()
            .join("; ");
        assert!(problems.contains(ENV_SIGNING_KEY_FILE), "{problems}");
        assert!(
            read_map(
                &[
                    (ENV_INTROSPECTION_ACCEPT, "application/json"),
                    (ENV_INTROSPECTION_JWT_FIELD, "jwt")
                ],
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn minting_settings_are_read_and_checked() {
        let config = read_map(
            &[
                (ENV_INTROSPECTION_ACCEPT, "application/json"),
                (ENV_SIGNING_KEY_FILE, "/keys/mint.pem"),
                (ENV_MINTED_ISSUER, "https://gateway.example"),
                (ENV_MINTED_AUDIENCE, "orders, billing"),
                (ENV_MINTED_CLAIMS, "department acr"),
            ],
            true,
        )
        .unwrap();
        let mint = config.mint.unwrap();
        assert_eq!(mint.audience, ["orders", "billing"]);
        assert_eq!(mint.copy_claims, ["department", "acr"]);
        assert_eq!(mint.max_lifetime, DEFAULT_MINTED_MAX_LIFETIME);

        let problems = read_map(
            &[
                (ENV_SIGNING_KEY_FILE, "/keys/mint.pem"),
                (ENV_MINTED_CLAIMS, "sub"),
                (ENV_MINTED_MAX_LIFETIME_SECONDS, "0"),
            ],
            true,
        )
        .unwrap_err()
        .join("; ");
        for expected in [
            ENV_MINTED_ISSUER,
            ENV_MINTED_CLAIMS,
            ENV_MINTED_MAX_LIFETIME_SECONDS,
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
        let problems = read_map(&[(ENV_MINTED_ISSUER, "x")], true).unwrap_err();
        assert!(problems[0].contains(ENV_SIGNING_KEY_FILE), "{problems:?}");
    }

    #[test]
    fn minting_needs_an_audience_because_an_as_may_send_none() {
        let problems = read_map(
            &[
                (ENV_INTROSPECTION_ACCEPT, "application/json"),
                (ENV_SIGNING_KEY_FILE, "/keys/mint.pem"),
                (ENV_MINTED_ISSUER, "https://gateway.example"),
            ],
            true,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(ENV_MINTED_AUDIENCE), "{problems:?}");
        let blank = read_map(
            &[
                (ENV_SIGNING_KEY_FILE, "/keys/mint.pem"),
                (ENV_MINTED_ISSUER, "https://gateway.example"),
                (ENV_MINTED_AUDIENCE, " , "),
            ],
            true,
        );
        assert!(blank.is_err(), "{blank:?}");
    }

    #[test]
    fn the_resource_owner_claim_and_unchecked_bindings() {
        let config = read_map(&[], true).unwrap();
        assert_eq!(config.owner_claim, "username");
        assert!(!config.allow_unchecked_bindings);
        let config = read_map(
            &[
                (ENV_RESOURCE_OWNER_CLAIM, "user_id"),
                (ENV_ALLOW_UNCHECKED_BINDINGS, "true"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(config.owner_claim, "user_id");
        assert!(config.allow_unchecked_bindings);
        for bad in [
            vec![(ENV_RESOURCE_OWNER_CLAIM, "sub")],
            vec![(ENV_RESOURCE_OWNER_CLAIM, "a b")],
            vec![(ENV_ALLOW_UNCHECKED_BINDINGS, "maybe")],
        ] {
            assert!(read_map(&bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_answers_need_the_issuer_and_asymmetric_algorithms() {
        let problems = read_map(
            &[
                (ENV_INTROSPECTION_ACCEPT, MEDIA_INTROSPECTION_JWT),
                (ENV_INTROSPECTION_JWT_FIELD, "jwt"),
                (ENV_INTROSPECTION_SIGNING_ALGS, "ES256,HS256,none"),
            ],
            true,
        )
        .unwrap_err()
        .join("; ");
        assert!(problems.contains("\"HS256\""), "{problems}");
        assert!(problems.contains("\"none\""), "{problems}");
        assert!(problems.contains(ENV_ISSUER), "{problems}");
        let config = read_map(
            &[
                (ENV_INTROSPECTION_ACCEPT, MEDIA_INTROSPECTION_JWT),
                (ENV_INTROSPECTION_JWT_FIELD, "jwt"),
                (ENV_ISSUER, "https://as.example"),
                (ENV_INTROSPECTION_SIGNING_ALGS, "ES256"),
            ],
            true,
        )
        .unwrap();
        assert!(config.wants_signed());
        assert_eq!(config.signing_algs, [Algorithm::ES256]);
    }

    #[test]
    fn client_authentication_methods() {
        assert_eq!(
            read_map(&[(ENV_CLIENT_AUTH_METHOD, "client_secret_post")], true)
                .unwrap()
                .client_auth,
            ClientAuthMethod::SecretPost
        );
        assert_eq!(
            read_map(
                &[
                    (ENV_CLIENT_AUTH_METHOD, "private_key_jwt"),
                    (ENV_CLIENT_ASSERTION_KEY_FILE, "/k.pem")
                ],
                true
            )
            .unwrap()
            .client_auth,
            ClientAuthMethod::PrivateKeyJwt(PathBuf::from("/k.pem"))
        );
        for bad in [
            vec![(ENV_CLIENT_AUTH_METHOD, "private_key_jwt")],
            vec![(ENV_CLIENT_AUTH_METHOD, "tls_client_auth")],
            vec![(ENV_CLIENT_ASSERTION_KEY_FILE, "/k.pem")],
        ] {
            assert!(read_map(&bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_issuer_stands_in_for_a_missing_introspection_url() {
        let config = read_map(&[(ENV_ISSUER, "https://as.example/realms/x")], false).unwrap();
        assert!(config.discover_introspection_url);
        assert_eq!(
            config.issuer.as_deref(),
            Some("https://as.example/realms/x")
        );
        let map = MapSource::new(&[(ENV_ISSUER, "http://as.example")]);
        let problems = read(&map, false, false).unwrap_err();
        assert!(
            problems[0].contains("INTROSPECTION_ALLOW_HTTP"),
            "{problems:?}"
        );
    }
}
