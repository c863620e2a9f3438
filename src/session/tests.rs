use serde_json::json;

use super::*;
use crate::api_rules::{IdentityRules, parse_config_data};
use crate::config::MapSource;
use crate::token::TokenDigest;

const NOW: u64 = 1_900_000_000;

fn config(extra: &[(&'static str, &'static str)]) -> Config {
    let mut env = MapSource::minimal("s3cr3t-value");
    for (name, value) in extra {
        env.set(name, value);
    }
    env.parse().unwrap()
}

fn keys() -> SessionKeys {
    SessionKeys::new(b"session-key-secret")
}

fn sessions(extra: &[(&'static str, &'static str)]) -> Sessions {
    Sessions::new(&config(extra), keys())
}

/// A grant as the authorizer caches it, cached until `NOW + 60`.
fn grant(claims: serde_json::Value) -> Grant {
    let jwt = crate::jwt::for_test(&claims);
    let parsed = crate::jwt::parse(&jwt).unwrap();
    let key = keys().session_key(&TokenDigest::of(b"opaque-token"));
    Grant::new(
        &jwt,
        &parsed,
        false,
        key,
        NOW + 60,
        std::time::Duration::from_secs(NOW),
    )
}

fn rules(config_data: &str) -> ApiRules {
    parse_config_data(config_data, &IdentityRules::default()).unwrap()
}

fn metadata(session: &Session) -> Vec<(&str, &str)> {
    session
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn a_session_lives_until_the_token_expires_plus_the_grace() {
    let grant =
        grant(json!({"exp": NOW + 300, "sub": "alice", "client_id": "web", "scope": "read"}));
    let session = sessions(&[("SESSION_LIFETIME_GRACE_SECONDS", "30")]).for_grant(
        &grant,
        &ApiRules::default(),
        "orders-api",
        NOW,
    );
    assert_eq!(session.expires, NOW + 300);
    assert_eq!(session.lifetime, 330);
    assert_eq!(session.id_extractor_deadline, NOW + 60);
    assert_eq!(session.last_updated, NOW);
    assert_eq!(session.api_id, "orders-api");
    assert_eq!(session.api_versions, ["Default"]);
    assert_eq!(
        metadata(&session),
        [
            (META_TOKEN, &*grant.session_key),
            (META_SUB, "alice"),
            (META_CLIENT_ID, "web"),
            (META_SCOPE, "read"),
        ]
    );
    assert_eq!(session.alias, "alice");
}

#[test]
fn without_exp_a_session_lives_as_long_as_a_cache_entry_and_never_less_than_a_second() {
    let sessions = sessions(&[
        ("SESSION_LIFETIME_GRACE_SECONDS", "0"),
        ("CACHE_DEFAULT_TTL_SECONDS", "45"),
    ]);
    let no_exp = sessions.for_grant(
        &grant(json!({"sub": "a"})),
        &ApiRules::default(),
        "api",
        NOW,
    );
    assert_eq!((no_exp.expires, no_exp.lifetime), (0, 45));
    let expired = sessions.for_grant(
        &grant(json!({"exp": NOW - 5})),
        &ApiRules::default(),
        "api",
        NOW,
    );
    assert_eq!(expired.lifetime, 1);
}

#[test]
fn a_session_keyed_by_a_claim_shares_its_key_across_tokens() {
    let rules = rules(r#"{"session_key_claim":"sub"}"#);
    let session = sessions(&[]).for_grant(&grant(json!({"sub": "alice"})), &rules, "api", NOW);
    assert_eq!(session.metadata[0].0, META_TOKEN);
    assert_eq!(session.metadata[0].1, keys().identity_key("sub", "alice"));
    // Without the claim, the token's own key.
    let anonymous = sessions(&[]).for_grant(&grant(json!({})), &rules, "api", NOW);
    assert!(anonymous.metadata[0].1.starts_with("phantom-token:"));
    assert!(!anonymous.metadata[0].1.starts_with("phantom-token:id:"));
}

#[test]
fn rules_naming_other_claims_read_the_whole_jwt() {
    let rules = rules(
        r#"{"metadata_claims":{"email":"user_email"},"jwt_in_metadata":true,"apply_policies":"pol-1","policy_claim":"groups"}"#,
    );
    let grant = grant(json!({"sub": "bob", "email": "bob@example.com", "groups": ["pol-2"]}));
    let session = sessions(&[]).for_grant(&grant, &rules, "api", NOW);
    assert_eq!(
        metadata(&session)[1..],
        [
            (META_SUB, "bob"),
            ("user_email", "bob@example.com"),
            (META_JWT, grant.jwt()),
        ]
    );
    assert_eq!(session.apply_policies, ["pol-1", "pol-2"]);
}

#[test]
fn rate_and_quota_come_from_the_configuration() {
    let session = sessions(&[
        ("SESSION_RATE", "100"),
        ("SESSION_RATE_PER_SECONDS", "60"),
        ("SESSION_QUOTA_MAX", "1000"),
        ("SESSION_QUOTA_RENEWAL_SECONDS", "3600"),
    ])
    .for_grant(&grant(json!({})), &ApiRules::default(), "api", NOW);
    assert_eq!(
        (
            session.rate,
            session.per,
            session.quota_max,
            session.quota_renewal_seconds
        ),
        (100.0, 60.0, 1000, 3600)
    );
}
