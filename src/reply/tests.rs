use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::api_rules::StepUpReason;
use crate::authz::InvalidToken;
use crate::jwt::JwtError;
use crate::tyk::pb::{MiniRequestObject, Object, ReturnOverrides};

/// What the client receives from Tyk for a reply, and whether Tyk fires
/// AuthFailure.
#[derive(Debug, PartialEq, Eq)]
struct Sent {
    status: i32,
    headers: BTreeMap<String, String>,
    body: String,
    auth_failure: bool,
}

/// The body of Tyk's default JSON error template (`templates/error.json`),
/// written out here rather than taken from [`error_json`].
fn template(message: &str) -> String {
    format!("{{\n    \"error\": \"{message}\"\n}}")
}

/// Writes `deny` into an object as the plugin does, then reads the
/// overrides back as Tyk does (spec/tyk-coprocess.md §4.5): with
/// `override_error` off an error status is rendered through the template
/// (`Content-Type: application/json`, `X-Generator: tyk.io`) and fires
/// AuthFailure; with it on, the status, headers and body are sent as they
/// are.
fn sent(deny: &Deny) -> Sent {
    let mut object = Object {
        request: Some(MiniRequestObject {
            return_overrides: Some(ReturnOverrides {
                response_code: -1,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    crate::tyk::deny(&mut object, deny);
    let overrides = object
        .request
        .and_then(|r| r.return_overrides)
        .expect("a deny sets the overrides");
    let body = if overrides.response_error.is_empty() {
        overrides.response_body
    } else {
        overrides.response_error
    };
    if overrides.override_error {
        return Sent {
            status: overrides.response_code,
            headers: overrides.headers.into_iter().collect(),
            body,
            auth_failure: false,
        };
    }
    let mut headers = BTreeMap::from([
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Generator".to_owned(), "tyk.io".to_owned()),
    ]);
    headers.extend(overrides.headers);
    Sent {
        status: overrides.response_code,
        headers,
        body: template(&body),
        auth_failure: true,
    }
}

/// A denial, the decision it is counted as, and what Tyk sends: status,
/// headers, and (body, whether AuthFailure fires).
type Row<'a> = (
    Denial,
    Decision,
    i32,
    Vec<(&'a str, &'a str)>,
    (String, bool),
);

fn step_up(reason: StepUpReason, acr_values: Option<&str>, max_age: Option<u64>) -> Denial {
    Denial::InsufficientUserAuthentication(StepUpChallenge {
        reason,
        acr_values: acr_values.map(str::to_owned),
        max_age,
    })
}

fn as_error(error: IntrospectError) -> Denial {
    Denial::Introspection(Arc::new(error))
}

#[test]
fn every_denial_becomes_its_status_headers_and_body() {
    let replies = Replies::new(&ChallengeConfig {
        realm: "orders".into(),
        retry_after_seconds: 7,
    });
    let bare = [("WWW-Authenticate", "Bearer realm=\"orders\"")];
    let invalid = [(
        "WWW-Authenticate",
        "Bearer realm=\"orders\", error=\"invalid_token\"",
    )];
    let scope = [(
        "WWW-Authenticate",
        "Bearer realm=\"orders\", error=\"insufficient_scope\", scope=\"orders:read orders:write\"",
    )];
    // RFC 9470 §3, with the realm first as in every other challenge.
    let acr_challenge = [(
        "WWW-Authenticate",
        "Bearer realm=\"orders\", error=\"insufficient_user_authentication\", \
         error_description=\"A different authentication level is required\", \
         acr_values=\"urn:acr:mfa urn:acr:hwk\"",
    )];
    let age_challenge = [(
        "WWW-Authenticate",
        "Bearer realm=\"orders\", error=\"insufficient_user_authentication\", \
         error_description=\"More recent authentication is required\", max_age=\"300\"",
    )];
    let both_challenge = [(
        "WWW-Authenticate",
        "Bearer realm=\"orders\", error=\"insufficient_user_authentication\", \
         error_description=\"More recent authentication is required\", \
         acr_values=\"mfa\", max_age=\"0\"",
    )];
    let template_headers = [
        ("Content-Type", "application/json"),
        ("X-Generator", "tyk.io"),
    ];
    let json = [("Content-Type", "application/json")];
    let retry = |seconds| {
        [
            ("Content-Type", "application/json"),
            ("Retry-After", seconds),
        ]
    };

    let client = |message| (template(message), true);
    let server = |message| (template(message), false);
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        (Denial::NoCredentials, Decision::NoCredentials, 401,
            [&bare[..], &template_headers].concat(), client("Authorization required")),
        (Denial::InvalidToken(InvalidToken::Malformed), Decision::InvalidToken, 401,
            [&invalid[..], &template_headers].concat(), client("Invalid access token")),
        (Denial::InvalidToken(InvalidToken::TooLong), Decision::InvalidToken, 401,
            [&invalid[..], &template_headers].concat(), client("Invalid access token")),
        (Denial::InvalidToken(InvalidToken::Inactive), Decision::InvalidToken, 401,
            [&invalid[..], &template_headers].concat(), client("Invalid access token")),
        (Denial::InvalidToken(InvalidToken::Expired), Decision::InvalidToken, 401,
            [&invalid[..], &template_headers].concat(), client("Invalid access token")),
        (Denial::InvalidToken(InvalidToken::WrongAudience), Decision::InvalidToken, 401,
            [&invalid[..], &template_headers].concat(), client("Invalid access token")),
        (Denial::InsufficientScope("orders:read orders:write".into()), Decision::InsufficientScope, 403,
            [&scope[..], &template_headers].concat(), client("Insufficient scope")),
        (step_up(StepUpReason::Acr, Some("urn:acr:mfa urn:acr:hwk"), None),
            Decision::InsufficientUserAuthentication, 401,
            [&acr_challenge[..], &template_headers].concat(), client("Insufficient user authentication")),
        (step_up(StepUpReason::AuthAge, None, Some(300)),
            Decision::InsufficientUserAuthentication, 401,
            [&age_challenge[..], &template_headers].concat(), client("Insufficient user authentication")),
        (step_up(StepUpReason::AuthAge, Some("mfa"), Some(0)),
            Decision::InsufficientUserAuthentication, 401,
            [&both_challenge[..], &template_headers].concat(), client("Insufficient user authentication")),
        (Denial::InvalidApiConfig, Decision::InvalidConfig, 500,
            json.to_vec(), server("Invalid API configuration")),
        (Denial::ShuttingDown, Decision::ShuttingDown, 503,
            retry("7").to_vec(), server("Temporarily unavailable")),
        // A valid proof with no room to remember it: not the client's fault.
        (Denial::Dpop(crate::dpop::DpopDenial::ReplayStoreFull), Decision::Overloaded, 503,
            retry("7").to_vec(), server("Temporarily unavailable")),
        (as_error(IntrospectError::Timeout), Decision::AsTimeout, 504,
            json.to_vec(), server("Authorization server timed out")),
        (as_error(IntrospectError::Unreachable("refused".into())), Decision::AsUnavailable, 503,
            retry("7").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::Unavailable(503)), Decision::AsUnavailable, 503,
            retry("7").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::Unavailable(429)), Decision::AsUnavailable, 503,
            retry("7").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::Overloaded), Decision::AsUnavailable, 503,
            retry("7").to_vec(), server("Authorization server unavailable")),
        // The breaker's own wait, in whole seconds rounded up, at least one.
        (as_error(IntrospectError::BreakerOpen { retry_after: Duration::from_millis(1200) }),
            Decision::AsUnavailable, 503,
            retry("2").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::BreakerOpen { retry_after: Duration::from_secs(30) }),
            Decision::AsUnavailable, 503,
            retry("30").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::BreakerOpen { retry_after: Duration::ZERO }),
            Decision::AsUnavailable, 503,
            retry("1").to_vec(), server("Authorization server unavailable")),
        (as_error(IntrospectError::Tls("unknown issuer".into())), Decision::AsError, 502,
            json.to_vec(), server("Authorization server error")),
        (as_error(IntrospectError::CredentialsRejected(401)), Decision::AsError, 502,
            json.to_vec(), server("Authorization server error")),
        (as_error(IntrospectError::UnexpectedStatus(404)), Decision::AsError, 502,
            json.to_vec(), server("Authorization server error")),
        (as_error(IntrospectError::NotJwt(JwtError::NotCompact)), Decision::AsError, 502,
            json.to_vec(), server("Authorization server error")),
        (as_error(IntrospectError::TooLarge(16384)), Decision::AsError, 502,
            json.to_vec(), server("Authorization server error")),
    ];
    for (denial, decision, status, headers, (body, auth_failure)) in table {
        let (deny, counted) = replies.rescue(&denial);
        assert_eq!(counted, decision, "{denial:?}");
        assert_eq!(counted.status(), status.to_string(), "{denial:?}");
        let expected = Sent {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body,
            auth_failure,
        };
        assert_eq!(sent(&deny), expected, "{denial:?}");
    }
}

#[test]
fn named_replies_keep_tokens_and_details_out_of_the_message() {
    // Whatever the AS said, the client reads a generic message.
    let replies = Replies::new(&ChallengeConfig {
        realm: "api".into(),
        retry_after_seconds: 5,
    });
    let detail = "https://as.internal/introspect?token=secret-token-value";
    for error in [
        IntrospectError::Unreachable(detail.into()),
        IntrospectError::Tls(detail.into()),
    ] {
        let (deny, _) = replies.rescue(&as_error(error));
        let sent = sent(&deny);
        assert!(!sent.body.contains("secret"), "{}", sent.body);
        assert!(sent.headers.values().all(|v| !v.contains("secret")));
    }
}

#[test]
fn messages_with_quotes_are_escaped_in_the_json_body() {
    assert_eq!(
        error_json("a \"b\""),
        "{\n    \"error\": \"a \\\"b\\\"\"\n}"
    );
}

#[test]
fn dpop_denials_carry_a_dpop_challenge_with_the_algorithms() {
    use crate::dpop::{DpopDenial, ProofError};
    let replies = Replies::new(&ChallengeConfig {
        realm: "orders".into(),
        retry_after_seconds: 7,
    })
    .with_dpop_algs(&[
        jsonwebtoken::Algorithm::ES256,
        jsonwebtoken::Algorithm::EdDSA,
    ]);
    let dpop =
        |error: &str| format!("DPoP realm=\"orders\", error=\"{error}\", algs=\"ES256 EdDSA\"");
    let rows = [
        (
            DpopDenial::Proof(ProofError::Replayed),
            dpop("invalid_dpop_proof"),
            None,
            "Invalid DPoP proof",
        ),
        (
            DpopDenial::UseNonce("n0nce".into()),
            dpop("use_dpop_nonce"),
            Some("n0nce"),
            "Invalid DPoP proof",
        ),
        (
            DpopDenial::KeyMismatch,
            dpop("invalid_token"),
            None,
            "Invalid access token",
        ),
        (
            DpopDenial::Unbound,
            dpop("invalid_token"),
            None,
            "Invalid access token",
        ),
        (
            DpopDenial::BoundAsBearer,
            format!("{}, Bearer realm=\"orders\"", dpop("invalid_token")),
            None,
            "Invalid access token",
        ),
        (
            DpopDenial::Required { token: true },
            dpop("invalid_token"),
            None,
            "Invalid access token",
        ),
        (
            DpopDenial::Required { token: false },
            "DPoP realm=\"orders\", algs=\"ES256 EdDSA\"".to_owned(),
            None,
            "Authorization required",
        ),
    ];
    for (denial, challenge, nonce, message) in rows {
        let (deny, decision) = replies.rescue(&Denial::Dpop(denial.clone()));
        let counted = if denial == (DpopDenial::Required { token: false }) {
            Decision::NoCredentials
        } else {
            Decision::InvalidToken
        };
        assert_eq!(decision, counted, "{denial:?}");
        let sent = sent(&deny);
        assert_eq!(sent.status, 401, "{denial:?}");
        assert!(sent.auth_failure, "{denial:?}");
        assert_eq!(sent.body, template(message), "{denial:?}");
        assert_eq!(
            sent.headers.get("WWW-Authenticate"),
            Some(&challenge),
            "{denial:?}"
        );
        assert_eq!(
            sent.headers.get("DPoP-Nonce").map(String::as_str),
            nonce,
            "{denial:?}"
        );
    }
}
