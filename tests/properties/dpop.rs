//! The DPoP proof parser (RFC 9449 §4.3): any input is a typed answer,
//! never a panic; a valid proof verifies and names its key; a valid proof
//! with any one byte changed is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tyk_phantom_token::config::DEFAULT_DPOP_ALGS;
use tyk_phantom_token::dpop::{MAX_PROOF_BYTES, ProofError, verify_signature};

use crate::dpop_client::DpopClient;
use crate::{cases, json_value};

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One client key for every case: key generation is not what is tested.
fn client() -> &'static DpopClient {
    static CLIENT: std::sync::OnceLock<DpopClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(DpopClient::new)
}

fn valid_claims() -> Value {
    client().claims("GET", "https://api.example.com/x", "token")
}

/// Headers near a valid one: each member kept, dropped or replaced.
fn header() -> impl Strategy<Value = Value> {
    let member = |good: Value| {
        prop_oneof![
            3 => Just(Some(good)),
            1 => Just(None),
            1 => json_value().prop_map(Some),
        ]
    };
    let good = client().header();
    (
        member(good["typ"].clone()),
        member(good["alg"].clone()),
        member(good["jwk"].clone()),
        prop::option::of(("[a-z]{1,4}", json_value())),
    )
        .prop_map(|(typ, alg, jwk, extra)| {
            let mut h = serde_json::Map::new();
            for (k, v) in [("typ", typ), ("alg", alg), ("jwk", jwk)] {
                if let Some(v) = v {
                    h.insert(k.to_owned(), v);
                }
            }
            if let Some((k, v)) = extra {
                h.insert(k, v);
            }
            Value::Object(h)
        })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_text_is_a_typed_answer(text in any::<String>()) {
        // Typed error or Ok, never a panic; nothing random verifies.
        prop_assert!(verify_signature(&text, DEFAULT_DPOP_ALGS).is_err());
    }

    #[test]
    fn any_three_json_segments_are_a_typed_answer(
        header in json_value(),
        payload in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let proof = format!(
            "{}.{}.{}",
            b64url(header.to_string()),
            b64url(payload.to_string()),
            b64url(signature)
        );
        let answer = verify_signature(&proof, DEFAULT_DPOP_ALGS);
        prop_assert!(answer.is_err(), "{answer:?}");
        if proof.len() <= MAX_PROOF_BYTES {
            prop_assert_ne!(answer, Err(ProofError::TooLong));
        }
    }

    #[test]
    fn signed_headers_near_a_valid_one_verify_only_when_valid(header in header()) {
        let proof = client().sign(&header, &valid_claims());
        let answer = verify_signature(&proof, DEFAULT_DPOP_ALGS);
        let valid = header.get("typ") == Some(&json!("dpop+jwt"))
            && header.get("alg") == Some(&json!("ES256"))
            && header.get("jwk") == Some(&client().jwk)
            && header.get("crit").is_none();
        if valid {
            prop_assert_eq!(answer.map(|p| p.jkt), Ok(client().jkt.clone()));
        } else {
            prop_assert!(answer.is_err(), "{header} accepted");
        }
    }

    #[test]
    fn a_valid_proof_with_one_byte_changed_is_refused(at in any::<Index>(), byte in any::<u8>()) {
        let proof = client().proof("GET", "https://api.example.com/x", "token");
        prop_assert!(verify_signature(&proof, DEFAULT_DPOP_ALGS).is_ok());
        let mut bytes = proof.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let changed = String::from_utf8_lossy(&bytes);
        let answer = verify_signature(&changed, DEFAULT_DPOP_ALGS);
        prop_assert!(answer.is_err(), "byte {i} set to {byte}: {answer:?}");
    }

    #[test]
    fn the_claims_of_a_signed_proof_are_read_exactly_when_well_typed(claims in claims()) {
        let proof = client().sign(&client().header(), &claims);
        let answer = verify_signature(&proof, DEFAULT_DPOP_ALGS);
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let optional_text = |name: &str| matches!(claims.get(name), None | Some(Value::Null | Value::String(_)));
        let iat = claims.get("iat").and_then(|v| {
            v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0 && *f < 1e15).map(|f| f as u64))
        });
        let well_typed = text("jti").is_some_and(|j| !j.is_empty() && j.len() <= 256)
            && text("htm").is_some_and(|m| !m.is_empty())
            && text("htu").is_some_and(|u| !u.is_empty())
            && iat.is_some()
            && optional_text("ath")
            && optional_text("nonce");
        match answer {
            Ok(read) => {
                prop_assert!(well_typed, "{claims} accepted");
                prop_assert_eq!(Some(read.jti.as_str()), text("jti"));
                prop_assert_eq!(Some(read.htm.as_str()), text("htm"));
                prop_assert_eq!(Some(read.htu.as_str()), text("htu"));
                prop_assert_eq!(Some(read.iat), iat);
                prop_assert_eq!(read.ath.as_deref(), text("ath"));
                prop_assert_eq!(read.nonce.as_deref(), text("nonce"));
            }
            Err(e) => {
                prop_assert!(!well_typed, "{claims} refused: {e:?}");
                prop_assert_eq!(e, ProofError::BadClaims);
            }
        }
    }
}

/// Claims near valid ones: each member kept, dropped or replaced by any
/// JSON value; now and then not an object at all.
fn claims() -> impl Strategy<Value = Value> {
    let member = |good: Value| {
        prop_oneof![
            3 => Just(Some(good)),
            1 => Just(None),
            2 => json_value().prop_map(Some),
        ]
    };
    let good = valid_claims();
    let object = (
        member(good["jti"].clone()),
        member(good["htm"].clone()),
        member(good["htu"].clone()),
        member(good["iat"].clone()),
        member(good["ath"].clone()),
        member(json!("server-nonce")),
    )
        .prop_map(|(jti, htm, htu, iat, ath, nonce)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("jti", jti),
                ("htm", htm),
                ("htu", htu),
                ("iat", iat),
                ("ath", ath),
                ("nonce", nonce),
            ] {
                if let Some(v) = v {
                    c.insert(k.to_owned(), v);
                }
            }
            Value::Object(c)
        });
    prop_oneof![9 => object, 1 => json_value()]
}
