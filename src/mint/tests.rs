use super::*;
use crate::answer::{Verdict, read_json};
use crate::keys::tests::{ed25519_pem, p256_pem, rsa_pem};
use jsonwebtoken::{DecodingKey, Validation};

const NOW: u64 = 1_900_000_000;

fn answer(json: serde_json::Value) -> ActiveAnswer {
    match read_json(json.to_string().as_bytes(), None).unwrap() {
        Verdict::Active(a) => *a,
        Verdict::Inactive => panic!("inactive"),
    }
}

fn rules() -> MintRules {
    MintRules {
        issuer: "https://gateway.example".into(),
        audience: vec!["orders-api".into()],
        max_lifetime: Duration::from_secs(300),
        copy_claims: vec!["acr".into(), "department".into(), "cnf".into()],
        owner_claim: "username".into(),
    }
}

fn minter(pem: &str, rules: MintRules) -> Minter {
    Minter::new(Arc::new(SigningKeys::from_pem(pem).unwrap()), rules).unwrap()
}

/// Verifies with the published JWKS only, the way an API would.
fn verify(jwks_json: &str, jwt: &str) -> (jsonwebtoken::Header, Map<String, Value>) {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks_json).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false; // NOW is in the future of the test run
    validation.set_audience(&["orders-api"]);
    validation.set_issuer(&["https://gateway.example"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode(jwt, &key, &validation).unwrap();
    (data.header, data.claims)
}

#[test]
fn a_minted_token_is_reminted_for_another_audience_and_a_foreign_one_is_not() {
    let minter = minter(&p256_pem(), rules());
    let original = minter
        .mint(
            &answer(serde_json::json!({
                "active": true, "sub": "alice", "client_id": "web", "scope": "orders:read",
                "exp": NOW + 120, "department": "ops",
            })),
            NOW,
        )
        .unwrap();
    let again = minter
        .remint(&original.jwt, "billing-api", NOW + 10)
        .unwrap()
        .expect("ours");
    assert_eq!(again.exp, original.exp, "never outlives the original");
    let jwks = minter.keys().jwks_json();
    let header = jsonwebtoken::decode_header(&again.jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some(TYP));
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.set_audience(&["billing-api"]);
    let claims: Map<String, Value> = jsonwebtoken::decode(&again.jwt, &key, &validation)
        .unwrap()
        .claims;
    let (_, first) = verify(&minter.keys().jwks_json(), &original.jwt);
    assert_eq!(claims["aud"], "billing-api");
    assert_eq!(claims["iat"], NOW + 10);
    assert_ne!(claims["jti"], first["jti"]);
    for same in ["sub", "client_id", "scope", "department", "iss", "exp"] {
        assert_eq!(claims[same], first[same], "{same}");
    }

    // Signed by another key (a ready JWT from the AS): never re-signed.
    let other = super::Minter::new(
        Arc::new(SigningKeys::from_pem(&p256_pem()).unwrap()),
        rules(),
    )
    .unwrap();
    assert!(
        other
            .remint(&original.jwt, "billing-api", NOW)
            .unwrap()
            .is_none()
    );
    // Expired: nothing.
    assert!(
        minter
            .remint(&original.jwt, "billing-api", NOW + 120)
            .unwrap()
            .is_none()
    );
    assert!(
        minter
            .remint("not.a.jwt", "billing-api", NOW)
            .unwrap()
            .is_none()
    );
}

#[test]
fn minted_tokens_follow_rfc9068_and_verify_with_the_published_jwks_for_every_key_type() {
    for (pem, alg) in [
        (p256_pem(), jsonwebtoken::Algorithm::ES256),
        (ed25519_pem(), jsonwebtoken::Algorithm::EdDSA),
        (rsa_pem(), jsonwebtoken::Algorithm::RS256),
    ] {
        let minter = minter(&pem, rules());
        let minted = minter
            .mint(
                &answer(serde_json::json!({
                    "active": true, "sub": "alice", "client_id": "web", "scope": "orders:read",
                    "exp": NOW + 120, "acr": "2", "department": "ops",
                    "auth_time": NOW - 30, "amr": ["pwd", "otp"],
                    "email": "alice@example.com", "iss": "https://as.example",
                })),
                NOW,
            )
            .unwrap();
        let (header, claims) = verify(&minter.keys().jwks_json(), &minted.jwt);
        assert_eq!(header.alg, alg);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(minter.keys().current().kid()));
        assert_eq!(claims["iss"], "https://gateway.example");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["client_id"], "web");
        assert_eq!(claims["scope"], "orders:read");
        assert_eq!(claims["aud"], "orders-api");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 120);
        assert_eq!(minted.exp, NOW + 120);
        assert_eq!(claims["acr"], "2");
        assert_eq!(claims["department"], "ops");
        assert_eq!(
            claims["auth_time"],
            NOW - 30,
            "authentication claims are always copied"
        );
        assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
        assert!(
            claims.get("email").is_none(),
            "only chosen claims are copied"
        );
        assert!(claims.get("cnf").is_none(), "absent claims stay absent");
        assert!(claims["jti"].as_str().unwrap().len() >= 22);
        assert!(!format!("{minted:?}").contains(&minted.jwt));
    }
}

#[test]
fn exp_is_capped_by_the_lifetime_and_never_later_than_the_token() {
    let minter = minter(&p256_pem(), rules());
    let base = serde_json::json!({"active": true, "sub": "a", "client_id": "c"});
    let with_exp = |exp: Option<u64>| {
        let mut json = base.clone();
        if let Some(exp) = exp {
            json["exp"] = exp.into();
        }
        answer(json)
    };
    assert_eq!(
        minter.mint(&with_exp(Some(NOW + 10)), NOW).unwrap().exp,
        NOW + 10
    );
    assert_eq!(
        minter.mint(&with_exp(Some(NOW + 86_400)), NOW).unwrap().exp,
        NOW + 300
    );
    assert_eq!(minter.mint(&with_exp(None), NOW).unwrap().exp, NOW + 300);
    for past in [NOW, NOW - 1] {
        assert!(matches!(
            minter.mint(&with_exp(Some(past)), NOW),
            Err(MintError::Expired)
        ));
    }
}

#[test]
fn subject_audience_and_jti_rules() {
    let minter = minter(&p256_pem(), rules());
    // Client credentials: no sub, the client is the subject.
    let cc = answer(serde_json::json!({"active": true, "client_id": "batch", "exp": NOW + 60}));
    let (_, claims) = verify(
        &minter.keys().jwks_json(),
        &minter.mint(&cc, NOW).unwrap().jwt,
    );
    assert_eq!(claims["sub"], "batch");
    assert!(claims.get("scope").is_none());
    // A new jti each time.
    let (_, again) = verify(
        &minter.keys().jwks_json(),
        &minter.mint(&cc, NOW).unwrap().jwt,
    );
    assert_ne!(claims["jti"], again["jti"]);

    let no_client = answer(serde_json::json!({"active": true, "sub": "a"}));
    assert!(matches!(
        minter.mint(&no_client, NOW),
        Err(MintError::MissingClaim("client_id"))
    ));
}

#[test]
fn the_subject_is_sub_else_the_resource_owner_and_the_client_only_without_one() {
    let minter = minter(&p256_pem(), rules());
    let sub_of = |json: serde_json::Value| -> Result<Value, MintError> {
        minter
            .mint(&answer(json), NOW)
            .map(|minted| verify(&minter.keys().jwks_json(), &minted.jwt).1["sub"].clone())
    };
    // RFC 7662 servers name the user in `username` and may send no `sub`:
    // two users of one client are two subjects, never the client.
    for user in ["alice", "bob"] {
        assert_eq!(
            sub_of(serde_json::json!({"active": true, "client_id": "web", "username": user}))
                .unwrap(),
            user
        );
    }
    // `sub` wins when both are there.
    assert_eq!(
        sub_of(serde_json::json!({"active": true, "client_id": "web", "sub": "u-1", "username": "alice"}))
            .unwrap(),
        "u-1"
    );
    // A number names an owner too (its digits).
    assert_eq!(
        sub_of(serde_json::json!({"active": true, "client_id": "web", "username": 42})).unwrap(),
        "42"
    );
    // An owner that names nobody is a fault, never the client.
    for unusable in [
        serde_json::json!(""),
        serde_json::json!({"id": 1}),
        serde_json::json!(["a"]),
    ] {
        assert!(matches!(
            sub_of(serde_json::json!({"active": true, "client_id": "web", "username": unusable})),
            Err(MintError::NoSubject(
                crate::jwt::SubjectError::UnusableOwner
            ))
        ));
    }
    // The operator names another claim for the owner.
    let mut named = rules();
    named.owner_claim = "user_id".into();
    let named = super::Minter::new(Arc::clone(&minter.keys), named).unwrap();
    let jwt = named
        .mint(
            &answer(serde_json::json!({"active": true, "client_id": "web", "user_id": "u-7", "username": "alice"})),
            NOW,
        )
        .unwrap()
        .jwt;
    assert_eq!(verify(&named.keys().jwks_json(), &jwt).1["sub"], "u-7");
}

#[test]
fn the_audience_never_widens_what_the_as_granted() {
    let two = MintRules {
        audience: vec!["orders-api".into(), "billing-api".into()],
        ..rules()
    };
    let minter = minter(&p256_pem(), two);
    let aud_of = |granted: Option<serde_json::Value>| -> Value {
        let mut json = serde_json::json!({"active": true, "client_id": "web", "sub": "a"});
        if let Some(aud) = granted {
            json["aud"] = aud;
        }
        let jwt = minter.mint(&answer(json), NOW).unwrap().jwt;
        jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(&jwt)
            .unwrap()
            .claims["aud"]
            .clone()
    };
    // Not restricted by the AS: the configured audiences.
    assert_eq!(
        aud_of(None),
        serde_json::json!(["orders-api", "billing-api"])
    );
    // Restricted to some of them: those only.
    assert_eq!(
        aud_of(Some(serde_json::json!([
            "billing-api",
            "https://other.example"
        ]))),
        "billing-api"
    );
    // Restricted to others only (RFC 8707): the AS's own, never ours.
    assert_eq!(
        aud_of(Some(serde_json::json!("https://billing.example"))),
        "https://billing.example"
    );
    assert_eq!(minted_audiences(&["x".to_owned()], &["a", "b"]), ["a", "b"]);
}

#[test]
fn rules_that_cannot_work_are_refused() {
    let keys = Arc::new(SigningKeys::from_pem(&p256_pem()).unwrap());
    let mut reserved = rules();
    reserved.copy_claims.push("exp".into());
    assert!(matches!(
        Minter::new(Arc::clone(&keys), reserved),
        Err(MintError::ReservedClaim(c)) if c == "exp"
    ));
    let mut empty = rules();
    empty.issuer = " ".into();
    assert!(matches!(
        Minter::new(Arc::clone(&keys), empty),
        Err(MintError::EmptyIssuer)
    ));
    let mut no_audience = rules();
    no_audience.audience = vec![" ".into()];
    assert!(matches!(
        Minter::new(Arc::clone(&keys), no_audience),
        Err(MintError::EmptyAudience)
    ));
    let mut zero = rules();
    zero.max_lifetime = Duration::from_millis(500);
    assert!(matches!(
        Minter::new(keys, zero),
        Err(MintError::ZeroLifetime)
    ));
}

#[test]
fn the_key_binding_is_always_carried_into_the_minted_token() {
    let rules = MintRules {
        copy_claims: Vec::new(),
        ..rules()
    };
    let minter = minter(&p256_pem(), rules);
    let minted = minter
        .mint(
            &answer(serde_json::json!({
                "active": true, "sub": "kim", "client_id": "web", "exp": NOW + 60,
                "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
            })),
            NOW,
        )
        .unwrap();
    let (_, claims) = verify(&minter.keys().jwks_json(), &minted.jwt);
    assert_eq!(
        claims["cnf"],
        serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    );
    let unbound = minter
        .mint(
            &answer(serde_json::json!({
                "active": true, "sub": "kim", "client_id": "web", "exp": NOW + 60,
            })),
            NOW,
        )
        .unwrap();
    assert!(
        !verify(&minter.keys().jwks_json(), &unbound.jwt)
            .1
            .contains_key("cnf")
    );
}
