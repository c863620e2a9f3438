use std::time::Duration;

use super::*;
use crate::config::MapSource;
use crate::introspect::CacheDirectives;

const SECRET: &str = "probe-client-secret-1f2e";

/// The README's three variables: Curity's defaults.
fn three_variables() -> MapSource {
    MapSource::minimal(SECRET)
}

fn minting(source: MapSource) -> MapSource {
    source
        .with("INTROSPECTION_ACCEPT", "application/json")
        .with("SIGNING_KEY_FILE", "/keys/mint.pem")
        .with("MINTED_ISSUER", "https://gateway.example")
        .with("MINTED_AUDIENCE", "orders")
}

fn answer(status: u16, media: Option<&str>) -> ProbeAnswer {
    ProbeAnswer {
        status,
        media: media.map(str::to_owned),
        cache: CacheDirectives::default(),
    }
}

fn assess_with(answer: &ProbeAnswer, source: &MapSource) -> Finding {
    assess(answer, &source.parse().expect("valid configuration"))
}

#[test]
fn a_json_answer_with_curitys_defaults_names_every_missing_setting() {
    let finding = assess_with(&answer(200, Some("application/json")), &three_variables());
    let Finding::Broken(problem) = &finding else {
        panic!("{finding:?}");
    };
    for named in [
        "RFC 7662 JSON",
        "502",
        "INTROSPECTION_ACCEPT=application/json",
        "SIGNING_KEY_FILE",
        "keygen",
        "MINTED_ISSUER",
        "MINTED_AUDIENCE",
        "INTROSPECTION_JWT_FIELD",
    ] {
        assert!(problem.contains(named), "{named} missing from {problem}");
    }
    assert_eq!(finding.exit_code(), Some(78));
    assert!(!problem.contains(SECRET));
}

#[test]
fn a_json_answer_works_when_the_plugin_mints_or_reads_a_member() {
    let mints = assess_with(
        &answer(200, Some("application/json")),
        &minting(three_variables()).with("REVALIDATE_AFTER_SECONDS", "60"),
    );
    assert_eq!(
        mints,
        Finding::Works {
            format: AnswerFormat::Json,
            jwt: "the plugin mints the JWT".to_owned(),
            notes: Vec::new(),
        }
    );
    assert_eq!(mints.exit_code(), None);
    // Keycloak: Accept application/jwt, the JWT in the `jwt` member.
    let member = assess_with(
        &answer(200, Some("application/json")),
        &three_variables()
            .with("INTROSPECTION_JWT_FIELD", "jwt")
            .with("REVALIDATE_AFTER_SECONDS", "60"),
    );
    assert!(
        matches!(&member, Finding::Works { jwt, notes, .. }
            if jwt.contains("\"jwt\" member") && notes.is_empty()),
        "{member:?}"
    );
}

#[test]
fn without_max_age_or_revalidation_a_revoked_token_outliving_its_revocation_is_pointed_out() {
    let json = answer(200, Some("application/json"));
    let Finding::Works { notes, .. } = assess_with(&json, &minting(three_variables())) else {
        panic!("works");
    };
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("REVALIDATE_AFTER_SECONDS"), "{notes:?}");
    assert!(notes[0].contains("CACHE_MAX_TTL_SECONDS"), "{notes:?}");
    // Each bound silences it: the AS's max-age, revalidation, a TTL cap.
    let with_max_age = ProbeAnswer {
        cache: CacheDirectives {
            max_age: Some(Duration::from_secs(300)),
            no_store: false,
        },
        ..json.clone()
    };
    for (answer, source) in [
        (&with_max_age, minting(three_variables())),
        (
            &json,
            minting(three_variables()).with("REVALIDATE_AFTER_SECONDS", "30"),
        ),
        (
            &json,
            minting(three_variables()).with("CACHE_MAX_TTL_SECONDS", "30"),
        ),
    ] {
        let finding = assess_with(answer, &source);
        assert!(
            matches!(&finding, Finding::Works { notes, .. } if notes.is_empty()),
            "{finding:?}"
        );
    }
}

#[test]
fn curitys_answers_work_with_the_defaults() {
    for curity in [answer(204, None), answer(200, Some("application/jwt"))] {
        let finding = assess_with(&curity, &three_variables());
        assert_eq!(
            finding,
            Finding::Works {
                format: AnswerFormat::Curity,
                jwt: "the JWT is the answer".to_owned(),
                notes: Vec::new(),
            }
        );
    }
}

#[test]
fn signed_answers_need_the_issuer_and_keys_and_a_way_to_a_jwt() {
    let signed = answer(200, Some("application/token-introspection+jwt"));
    let Finding::Broken(problem) = assess_with(&signed, &minting(three_variables())) else {
        panic!("no issuer");
    };
    assert!(problem.contains("ISSUER"), "{problem}");
    let Finding::Broken(problem) = assess_with(&signed, &three_variables()) else {
        panic!("nothing to mint with");
    };
    assert!(
        problem.contains("INTROSPECTION_ACCEPT=application/token-introspection+jwt"),
        "{problem}"
    );
    let verifiable = minting(three_variables())
        .with("ISSUER", "https://as.example")
        .with("INTROSPECTION_JWKS_URL", "https://as.example/jwks")
        .with("REVALIDATE_AFTER_SECONDS", "60");
    assert!(matches!(
        assess_with(&signed, &verifiable),
        Finding::Works {
            format: AnswerFormat::Signed,
            ..
        }
    ));
}

#[test]
fn refusals_name_what_to_check_and_faults_teach_nothing() {
    let cases: &[(u16, Option<&str>, &str, Option<u8>)] = &[
        (401, None, "CLIENT_SECRET", Some(78)),
        (403, None, "client credentials", Some(78)),
        (400, None, "CLIENT_AUTH_METHOD", Some(78)),
        (404, None, "INTROSPECTION_URL", Some(78)),
        (302, None, "redirects", Some(78)),
        (406, None, "INTROSPECTION_ACCEPT", Some(78)),
        (200, Some("text/html"), "text/html", Some(78)),
        (200, None, "(none)", Some(78)),
        (503, None, "HTTP 503", Some(69)),
        (500, None, "HTTP 500", Some(69)),
        (429, None, "HTTP 429", Some(69)),
    ];
    for (status, media, named, code) in cases {
        let finding = assess_with(&answer(*status, *media), &three_variables());
        assert!(finding.to_string().contains(named), "{status}: {finding}");
        assert_eq!(finding.exit_code(), *code, "{status}: {finding}");
    }
}
