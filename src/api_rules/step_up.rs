//! Step-up authentication (RFC 9470): an API may require that the user
//! authenticated in a certain way (`acr`) or recently enough (`auth_time`).
//!
//! What must hold:
//! - The check runs on every request, cached answer or not, like the scope
//!   check: a token that falls short is refused with a challenge naming what
//!   is required, so the client can send the user back to the AS.
//! - A missing or malformed claim never satisfies a requirement: no `acr`
//!   fails `required_acr`, no numeric `auth_time` fails `max_auth_age`.
//! - The values end up inside quoted strings of `WWW-Authenticate`, so
//!   `required_acr` entries are restricted to characters that need no
//!   escaping there (no space, `"` or `\`).

use super::parse::is_rfc6750_token;
use crate::jwt::{Claims, numeric_date};

/// Why the token's authentication falls short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUpReason {
    /// `acr` missing or not one of the required values.
    Acr,
    /// `auth_time` missing, or longer ago than `max_auth_age`.
    AuthAge,
}

/// What the client must do: the parameters of the RFC 9470 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpChallenge {
    pub reason: StepUpReason,
    /// The acceptable `acr` values, space-separated (`acr_values`).
    pub acr_values: Option<String>,
    /// The longest time since authentication, seconds (`max_age`).
    pub max_age: Option<u64>,
}

impl StepUpChallenge {
    /// The `error_description`: RFC 9470's own wording for each case.
    pub fn description(&self) -> &'static str {
        match self.reason {
            StepUpReason::Acr => "A different authentication level is required",
            StepUpReason::AuthAge => "More recent authentication is required",
        }
    }

    /// The label of the log line.
    pub fn reason(&self) -> &'static str {
        match self.reason {
            StepUpReason::Acr => "acr",
            StepUpReason::AuthAge => "auth_time",
        }
    }
}

/// An API's step-up requirements; the default requires nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// The token's `acr` must be one of these; empty: no check.
    pub required_acr: Vec<String>,
    /// At most this many seconds since `auth_time`; `None`: no check.
    pub max_auth_age: Option<u64>,
}

impl StepUp {
    /// Whether anything is required.
    pub fn is_required(&self) -> bool {
        !self.required_acr.is_empty() || self.max_auth_age.is_some()
    }

    /// Checks `claims` at `now` (unix seconds).
    ///
    /// # Errors
    ///
    /// The challenge to send when the token falls short. It names every
    /// requirement of the API, whichever failed, since the new token must
    /// meet them all.
    pub fn check(&self, claims: &Claims, now: u64) -> Result<(), StepUpChallenge> {
        let acr_ok = self.required_acr.is_empty()
            || claims
                .string("acr")
                .is_some_and(|acr| self.required_acr.iter().any(|r| r == acr));
        let age_ok = self.max_auth_age.is_none_or(|max| {
            claims
                .get("auth_time")
                .and_then(numeric_date)
                .is_some_and(|at| now.saturating_sub(at) <= max)
        });
        let reason = match (acr_ok, age_ok) {
            (true, true) => return Ok(()),
            (false, _) => StepUpReason::Acr,
            (true, false) => StepUpReason::AuthAge,
        };
        Err(StepUpChallenge {
            reason,
            acr_values: (!self.required_acr.is_empty()).then(|| self.required_acr.join(" ")),
            max_age: self.max_auth_age,
        })
    }
}

/// `required_acr`: a non-empty JSON array of `acr` values.
pub(super) fn parse_required_acr(value: &serde_json::Value) -> Result<Vec<String>, String> {
    let serde_json::Value::Array(items) = value else {
        return Err("expected a JSON array of acr values".to_owned());
    };
    if items.is_empty() {
        return Err(
            "expected at least one acr value (leave required_acr out for no acr check)".to_owned(),
        );
    }
    items
        .iter()
        .map(|item| {
            let Some(acr) = item.as_str() else {
                return Err(format!("{item} is not a string"));
            };
            // RFC 6750 §3 quoted-string characters, without space (the
            // separator of acr_values).
            if acr.len() <= 256 && is_rfc6750_token(acr) {
                Ok(acr.to_owned())
            } else {
                Err(format!("{acr:?} is not a usable acr value"))
            }
        })
        .collect()
}

/// `max_auth_age`: a whole number of seconds, zero or more.
pub(super) fn parse_max_auth_age(value: &serde_json::Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{value} is not a whole number of seconds (0 or more)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_900_000_000;

    fn claims(json: serde_json::Value) -> Claims {
        let serde_json::Value::Object(map) = json else {
            panic!("object");
        };
        Claims::from_map(map).unwrap()
    }

    fn mfa() -> StepUp {
        StepUp {
            required_acr: vec!["urn:acr:mfa".into(), "urn:acr:hwk".into()],
            max_auth_age: None,
        }
    }

    #[test]
    fn nothing_required_passes_every_token() {
        let none = StepUp::default();
        assert!(!none.is_required());
        assert_eq!(none.check(&claims(serde_json::json!({})), NOW), Ok(()));
    }

    #[test]
    fn acr_must_be_one_of_the_required_values() {
        let rules = mfa();
        for acr in ["urn:acr:mfa", "urn:acr:hwk"] {
            let token = claims(serde_json::json!({ "acr": acr }));
            assert_eq!(rules.check(&token, NOW), Ok(()), "{acr}");
        }
        let expected = Err(StepUpChallenge {
            reason: StepUpReason::Acr,
            acr_values: Some("urn:acr:mfa urn:acr:hwk".into()),
            max_age: None,
        });
        for token in [
            serde_json::json!({ "acr": "urn:acr:pwd" }),
            serde_json::json!({ "acr": "URN:ACR:MFA" }),
            serde_json::json!({ "acr": ["urn:acr:mfa"] }),
            serde_json::json!({}),
        ] {
            assert_eq!(
                rules.check(&claims(token.clone()), NOW),
                expected,
                "{token}"
            );
        }
    }

    #[test]
    fn auth_time_must_be_recent_enough_and_present() {
        let rules = StepUp {
            required_acr: Vec::new(),
            max_auth_age: Some(300),
        };
        for at in [
            serde_json::json!(NOW - 300),
            serde_json::json!(NOW),
            serde_json::json!(NOW + 5),
        ] {
            let token = claims(serde_json::json!({ "auth_time": at }));
            assert_eq!(rules.check(&token, NOW), Ok(()), "{at}");
        }
        let expected = Err(StepUpChallenge {
            reason: StepUpReason::AuthAge,
            acr_values: None,
            max_age: Some(300),
        });
        for token in [
            serde_json::json!({ "auth_time": NOW - 301 }),
            serde_json::json!({ "auth_time": (NOW - 300).to_string() }),
            serde_json::json!({}),
        ] {
            assert_eq!(
                rules.check(&claims(token.clone()), NOW),
                expected,
                "{token}"
            );
        }
    }

    #[test]
    fn the_challenge_names_every_requirement_and_the_first_failure() {
        let both = StepUp {
            max_auth_age: Some(60),
            ..mfa()
        };
        let stale_mfa = claims(serde_json::json!({"acr": "urn:acr:mfa", "auth_time": NOW - 61}));
        let challenge = both.check(&stale_mfa, NOW).unwrap_err();
        assert_eq!(challenge.reason, StepUpReason::AuthAge);
        assert_eq!(
            challenge.acr_values.as_deref(),
            Some("urn:acr:mfa urn:acr:hwk")
        );
        assert_eq!(challenge.max_age, Some(60));
        assert_eq!(
            challenge.description(),
            "More recent authentication is required"
        );
        let fresh_pwd = claims(serde_json::json!({"acr": "pwd", "auth_time": NOW}));
        let challenge = both.check(&fresh_pwd, NOW).unwrap_err();
        assert_eq!(challenge.reason, StepUpReason::Acr);
        assert_eq!(
            challenge.description(),
            "A different authentication level is required"
        );
    }

    #[test]
    fn config_data_sets_step_up_and_the_api_check_applies_it() {
        use crate::api_rules::{IdentityRules, RuleDenial, parse_config_data};
        let rules = parse_config_data(
            r#"{"required_acr":["urn:acr:mfa"],"max_auth_age":300,"required_scopes":"read"}"#,
            &IdentityRules::default(),
        )
        .unwrap();
        assert_eq!(rules.step_up.required_acr, ["urn:acr:mfa"]);
        assert_eq!(rules.step_up.max_auth_age, Some(300));
        let good =
            serde_json::json!({"scope": "read", "acr": "urn:acr:mfa", "auth_time": NOW - 10});
        assert_eq!(rules.check_at(&claims(good.clone()), NOW), Ok(()));
        // Cached grants keep only the summary: it must carry both claims.
        assert_eq!(rules.check_at(&claims(good).summary(), NOW), Ok(()));
        assert!(!rules.needs_full_claims());
        let weak = claims(serde_json::json!({"scope": "read", "acr": "pwd", "auth_time": NOW}));
        assert!(matches!(
            rules.check_at(&weak, NOW),
            Err(RuleDenial::InsufficientUserAuthentication(c)) if c.reason == StepUpReason::Acr
        ));
        // Scopes are checked first: a token lacking them is a 403, not a step-up.
        let no_scope = claims(serde_json::json!({"acr": "pwd"}));
        assert!(matches!(
            rules.check_at(&no_scope, NOW),
            Err(RuleDenial::InsufficientScope(_))
        ));
        for (text, key) in [
            (r#"{"required_acr":[]}"#, "required_acr"),
            (r#"{"required_acr":[7]}"#, "required_acr"),
            (r#"{"required_acr":"mfa"}"#, "required_acr"),
            (r#"{"max_auth_age":-5}"#, "max_auth_age"),
            (r#"{"max_auth_age":2.5}"#, "max_auth_age"),
            (r#"{"max_auth_age":"300"}"#, "max_auth_age"),
        ] {
            let err = parse_config_data(text, &IdentityRules::default()).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn invalid_requirements_are_refused() {
        for bad in [
            serde_json::json!([]),
            serde_json::json!("urn:acr:mfa"),
            serde_json::json!([1]),
            serde_json::json!([""]),
            serde_json::json!(["two words"]),
            serde_json::json!(["quo\"te"]),
            serde_json::json!(["back\\slash"]),
        ] {
            assert!(parse_required_acr(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_required_acr(&serde_json::json!(["a", "urn:b"])),
            Ok(vec!["a".to_owned(), "urn:b".to_owned()])
        );
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("300"),
            serde_json::json!(null),
        ] {
            assert!(parse_max_auth_age(&bad).is_err(), "{bad}");
        }
        assert_eq!(parse_max_auth_age(&serde_json::json!(0)), Ok(0));
        assert_eq!(parse_max_auth_age(&serde_json::json!(300)), Ok(300));
    }
}
