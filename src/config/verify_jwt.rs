//! The JWT-verification section: with `VERIFY_JWT=true`, every JWT the
//! plugin would forward that came from the AS (Curity's `application/jwt`
//! answer, a ready JWT from `INTROSPECTION_JWT_FIELD`) is verified against
//! the AS's JWKS before it is cached (see [`crate::answer::verify`]).
//!
//! What must hold: verification is never half configured. It needs the
//! AS's keys (`INTROSPECTION_JWKS_URL`, or `ISSUER` whose metadata names
//! `jwks_uri`) and the issuer the JWTs carry (`JWT_ISSUER`, else `ISSUER`);
//! without them the start is refused here. The `JWT_*` settings without
//! `VERIFY_JWT=true` are refused too, so a typo cannot leave JWTs
//! unverified while the operator believes otherwise.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::any_as::{AnyAsConfig, DEFAULT_SIGNING_ALGS};
use super::cache::DEFAULT_CLOCK_SKEW_SECONDS;
use super::parse;
use super::reader::Reader;
use super::vars::*;

/// What the AS's JWTs must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyJwtConfig {
    /// The `iss` the JWTs carry: `JWT_ISSUER`, else the AS's issuer
    /// (`ISSUER`).
    pub issuer: String,
    /// `JWT_AUDIENCE`: `aud` must contain it. Required; `None` only when
    /// the operator waived the check explicitly (`JWT_AUDIENCE=*`).
    pub audience: Option<String>,
    /// `JWT_TYP`: the JOSE `typ` values accepted, compared without case and
    /// without an `application/` prefix (RFC 7515 §4.1.9). Default
    /// `at+jwt` (RFC 9068 §4); `None` when waived (`JWT_TYP=*`).
    pub types: Option<Vec<String>>,
    /// `JWT_SIGNING_ALGS` (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Tolerance on `exp` and `nbf`: `CLOCK_SKEW_SECONDS`, as the cache
    /// section read it.
    pub leeway: Duration,
}

/// The section: `None` when verification is off (or a problem was
/// reported in `r`). `any_as` is the any-AS section as it was read (`None`
/// when it reported a problem): its `ISSUER` and `INTROSPECTION_JWKS_URL`
/// are already validated.
pub(super) fn read(r: &mut Reader<'_>, any_as: Option<&AnyAsConfig>) -> Option<VerifyJwtConfig> {
    let on = r.or(ENV_VERIFY_JWT, parse::boolean, false);
    let algorithms = r.optional(ENV_JWT_SIGNING_ALGS, parse::asymmetric_algorithms);
    let issuer = r.optional(ENV_JWT_ISSUER, |v| Ok::<_, String>(v.to_owned()));
    let audience = r.optional(ENV_JWT_AUDIENCE, |v| Ok::<_, String>(v.to_owned()));
    let types = r.optional(ENV_JWT_TYP, parse_types);
    if !on {
        for name in [
            ENV_JWT_SIGNING_ALGS,
            ENV_JWT_ISSUER,
            ENV_JWT_AUDIENCE,
            ENV_JWT_TYP,
        ] {
            if r.raw(name).is_some() {
                r.problem(format!("{name} is set but {ENV_VERIFY_JWT} is not true"));
            }
        }
        return None;
    }
    // A problem of the any-AS section (a bad ISSUER among them) is already
    // reported and refuses the start.
    let any_as = any_as?;
    let as_issuer = any_as.issuer.as_ref();
    if any_as.jwks_url.is_none() && as_issuer.is_none() {
        r.problem(format!(
            "{ENV_VERIFY_JWT}=true needs the authorization server's keys: set \
             {ENV_INTROSPECTION_JWKS_URL}, or {ENV_ISSUER} whose metadata names jwks_uri"
        ));
    }
    if any_as.accept == crate::answer::MEDIA_JSON && any_as.jwt_field.is_none() {
        r.problem(format!(
            "{ENV_VERIFY_JWT}=true verifies the JWT the authorization server gives, and with \
             {ENV_INTROSPECTION_ACCEPT}=application/json it gives none: set \
             {ENV_INTROSPECTION_JWT_FIELD}, or ask for signed answers \
             ({ENV_INTROSPECTION_ACCEPT}=application/token-introspection+jwt)"
        ));
    }
    let audience = match audience.as_deref() {
        Some("*") => None,
        Some(audience) => Some(audience.to_owned()),
        None => {
            r.problem(format!(
                "{ENV_VERIFY_JWT}=true needs {ENV_JWT_AUDIENCE}, the audience the AS's JWTs are \
                 issued for (a JWT for another API would pass otherwise); {ENV_JWT_AUDIENCE}=* \
                 waives the check"
            ));
            None
        }
    };
    let Some(issuer) = issuer.or_else(|| as_issuer.cloned()) else {
        r.problem(format!(
            "{ENV_VERIFY_JWT}=true needs the issuer the JWTs carry: set {ENV_JWT_ISSUER} or {ENV_ISSUER}"
        ));
        return None;
    };
    Some(VerifyJwtConfig {
        issuer,
        audience,
        types: types.unwrap_or_else(|| Some(vec![DEFAULT_JWT_TYP.to_owned()])),
        algorithms: algorithms.unwrap_or_else(|| DEFAULT_SIGNING_ALGS.to_vec()),
        // Replaced by the cache section's value in `with_clock_skew`.
        leeway: Duration::from_secs(DEFAULT_CLOCK_SKEW_SECONDS),
    })
}

/// The `typ` an RFC 9068 access token carries.
pub const DEFAULT_JWT_TYP: &str = "at+jwt";

/// `JWT_TYP`: `*` (any), or `typ` values separated by commas or spaces.
fn parse_types(raw: &str) -> Result<Option<Vec<String>>, String> {
    if raw.trim() == "*" {
        return Ok(None);
    }
    let types: Vec<String> = raw
        .split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if types.is_empty() || types.iter().any(|t| t == "*") {
        return Err("expected * or one or more typ values".to_owned());
    }
    Ok(Some(types))
}

/// Takes the tolerance from the cache section, the one parser of
/// `CLOCK_SKEW_SECONDS` (which reports a bad value). This section is read
/// before the cache section, so the value is set when the configuration is
/// assembled.
pub(super) fn with_clock_skew(config: &mut Option<VerifyJwtConfig>, clock_skew: Duration) {
    if let Some(config) = config {
        config.leeway = clock_skew;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn read_map(pairs: &[(&str, &str)]) -> (Option<VerifyJwtConfig>, Vec<String>) {
        let source = MapSource::new(pairs);
        let mut r = Reader::new(&source);
        let any_as = match crate::config::any_as::read(&source, false, true) {
            Ok(any_as) => Some(any_as),
            Err(problems) => {
                for problem in problems {
                    r.problem(problem);
                }
                None
            }
        };
        let mut config = read(&mut r, any_as.as_ref());
        let cache = crate::config::cache::read(&mut r);
        with_clock_skew(&mut config, cache.clock_skew);
        (
            config,
            r.finish().err().map(|e| e.problems).unwrap_or_default(),
        )
    }

    #[test]
    fn off_by_default_and_its_settings_need_it_on() {
        assert_eq!(read_map(&[]), (None, Vec::new()));
        let (config, problems) = read_map(&[
            (ENV_JWT_ISSUER, "https://as"),
            (ENV_JWT_AUDIENCE, "api"),
            (ENV_JWT_TYP, "JWT"),
        ]);
        assert_eq!(config, None);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with(ENV_JWT_ISSUER), "{problems:?}");
        assert!(problems[0].contains(ENV_VERIFY_JWT), "{problems:?}");
    }

    #[test]
    fn verification_without_keys_issuer_or_audience_is_refused() {
        let (_, problems) = read_map(&[(ENV_VERIFY_JWT, "true")]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains(ENV_INTROSPECTION_JWKS_URL),
            "{problems:?}"
        );
        assert!(problems[1].contains(ENV_JWT_AUDIENCE), "{problems:?}");
        assert!(problems[2].contains(ENV_JWT_ISSUER), "{problems:?}");
        for problem in &problems {
            assert!(problem.starts_with(ENV_VERIFY_JWT), "{problem}");
        }
        // The issuer alone is enough for the keys: discovery names the JWKS.
        let (config, problems) = read_map(&[
            (ENV_VERIFY_JWT, "true"),
            (ENV_ISSUER, "https://as"),
            (ENV_JWT_AUDIENCE, "orders"),
        ]);
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(config.issuer, "https://as", "the AS's issuer is used");
        assert_eq!(config.types, Some(vec![DEFAULT_JWT_TYP.to_owned()]));
        assert_eq!(config.algorithms, DEFAULT_SIGNING_ALGS);
        assert_eq!(
            config.leeway,
            Duration::from_secs(DEFAULT_CLOCK_SKEW_SECONDS)
        );
    }

    #[test]
    fn explicit_keys_issuer_audience_algorithms_and_skew() {
        let (config, problems) = read_map(&[
            (ENV_VERIFY_JWT, "true"),
            (ENV_INTROSPECTION_JWKS_URL, "https://as/jwks"),
            (ENV_JWT_ISSUER, "https://as/oauth/v2/oauth-anonymous"),
            (ENV_JWT_AUDIENCE, "orders"),
            (ENV_JWT_SIGNING_ALGS, "ES256, PS256"),
            (ENV_JWT_TYP, "at+jwt, JWT"),
            (ENV_CLOCK_SKEW_SECONDS, "5"),
        ]);
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(config.issuer, "https://as/oauth/v2/oauth-anonymous");
        assert_eq!(config.audience.as_deref(), Some("orders"));
        assert_eq!(
            config.types,
            Some(vec!["at+jwt".to_owned(), "JWT".to_owned()])
        );
        assert_eq!(config.algorithms, [Algorithm::ES256, Algorithm::PS256]);
        assert_eq!(config.leeway, Duration::from_secs(5));
    }

    #[test]
    fn the_audience_and_typ_checks_are_waived_only_explicitly() {
        let base = [
            (ENV_VERIFY_JWT, "true"),
            (ENV_ISSUER, "https://as"),
            (ENV_JWT_AUDIENCE, "*"),
            (ENV_JWT_TYP, "*"),
        ];
        let (config, problems) = read_map(&base);
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!((config.audience, config.types), (None, None));
        for bad in [",", "at+jwt *"] {
            let (_, problems) = read_map(&[
                (ENV_VERIFY_JWT, "true"),
                (ENV_ISSUER, "https://as"),
                (ENV_JWT_AUDIENCE, "*"),
                (ENV_JWT_TYP, bad),
            ]);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].starts_with(ENV_JWT_TYP), "{problems:?}");
        }
    }

    #[test]
    fn verification_of_a_json_answer_that_carries_no_jwt_is_refused() {
        let json = [
            (ENV_VERIFY_JWT, "true"),
            (ENV_ISSUER, "https://as"),
            (ENV_JWT_AUDIENCE, "orders"),
            (ENV_INTROSPECTION_ACCEPT, "application/json"),
            (ENV_SIGNING_KEY_FILE, "/k.pem"),
            (ENV_MINTED_ISSUER, "https://gw"),
            (ENV_MINTED_AUDIENCE, "orders"),
        ];
        let (_, problems) = read_map(&json);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(ENV_INTROSPECTION_JWT_FIELD),
            "{problems:?}"
        );
        let mut with_field = json.to_vec();
        with_field.push((ENV_INTROSPECTION_JWT_FIELD, "jwt"));
        assert_eq!(read_map(&with_field).1, Vec::<String>::new());
    }

    #[test]
    fn symmetric_and_unsigned_algorithms_are_refused() {
        for bad in ["HS256", "none", "ES256,HS512", ","] {
            let (_, problems) = read_map(&[
                (ENV_VERIFY_JWT, "true"),
                (ENV_ISSUER, "https://as"),
                (ENV_JWT_AUDIENCE, "orders"),
                (ENV_JWT_SIGNING_ALGS, bad),
            ]);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].starts_with(ENV_JWT_SIGNING_ALGS),
                "{problems:?}"
            );
        }
    }
}
