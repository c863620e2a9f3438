//! The AS's JWT: compact JWS shape and claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use tyk_phantom_token::jwt::{self, JwtError};

use crate::{any_case, cases, json_value};

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn is_b64url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

#[derive(Debug, Clone)]
enum Exp {
    Absent,
    Int(u64),
    Fraction(f64),
    Null,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        Just(Exp::Absent),
        Just(Exp::Null),
        any::<u64>().prop_map(Exp::Int),
        (0u64..4_000_000_000).prop_map(Exp::Int),
        (0u32..4_000_000_000u32, 1u32..8)
            .prop_map(|(s, f)| Exp::Fraction(f64::from(s) + f64::from(f) / 8.0)),
    ]
}

impl Exp {
    fn expected(&self) -> Option<u64> {
        match self {
            Exp::Absent | Exp::Null => None,
            Exp::Int(n) => Some(*n),
            Exp::Fraction(f) => Some(f.floor() as u64),
        }
    }
}

/// A JWT the AS could send: a header naming a real algorithm, a payload
/// object of arbitrary claims, a non-empty signature.
#[derive(Debug, Clone)]
struct GenJwt {
    header: serde_json::Map<String, Value>,
    payload: serde_json::Map<String, Value>,
    exp: Exp,
    signature: Vec<u8>,
}

impl GenJwt {
    fn payload_json(&self) -> serde_json::Map<String, Value> {
        let mut payload = self.payload.clone();
        match &self.exp {
            Exp::Absent => {}
            Exp::Null => {
                payload.insert("exp".into(), Value::Null);
            }
            Exp::Int(n) => {
                payload.insert("exp".into(), Value::from(*n));
            }
            Exp::Fraction(f) => {
                payload.insert("exp".into(), Value::from(*f));
            }
        }
        payload
    }

    fn segments(&self) -> [String; 3] {
        [
            b64url(Value::Object(self.header.clone()).to_string()),
            b64url(Value::Object(self.payload_json()).to_string()),
            b64url(&self.signature),
        ]
    }

    fn compact(&self) -> String {
        self.segments().join(".")
    }
}

fn gen_jwt() -> impl Strategy<Value = GenJwt> {
    let alg = select(&["RS256", "RS512", "ES256", "PS384", "EdDSA", "HS256"][..]);
    let header = (alg, prop::option::of(".{0,12}"), any::<bool>()).prop_map(|(alg, kid, typ)| {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), json!(alg));
        if let Some(kid) = kid {
            header.insert("kid".into(), json!(kid));
        }
        if typ {
            header.insert("typ".into(), json!("JWT"));
        }
        header
    });
    let payload = prop::collection::btree_map(".{0,10}", json_value(), 0..8).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| k != "exp")
            .collect::<serde_json::Map<_, _>>()
    });
    (
        header,
        payload,
        exp(),
        prop::collection::vec(any::<u8>(), 1..96),
    )
        .prop_map(|(header, payload, exp, signature)| GenJwt {
            header,
            payload,
            exp,
            signature,
        })
}

/// What any accepted JWT must look like.
fn compact_shape(jwt: &str) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(is_b64url_char))
}

/// Three segments of base64url characters, or base64url of arbitrary JSON,
/// so that generated inputs get past the shape check into decoding.
fn jwt_like() -> impl Strategy<Value = String> {
    let raw_segment = "[A-Za-z0-9_-]{0,24}";
    let json_segment = json_value().prop_map(|v| b64url(v.to_string()));
    let segment = prop_oneof![raw_segment.boxed(), json_segment.boxed()];
    prop_oneof![
        (segment.clone(), segment.clone(), segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[A-Za-z0-9_.=+/ -]{0,80}",
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text never panics the parser, and whatever it accepts is
    /// three non-empty base64url segments.
    #[test]
    fn jwt_parse_accepts_only_compact_jws(input in jwt_like()) {
        if jwt::parse(&input).is_ok() {
            prop_assert!(compact_shape(&input), "accepted {:?}", input);
        }
    }

    /// A well-formed JWT gives back every claim it carries, and `exp` as the
    /// whole seconds of the NumericDate (absent or null: none).
    #[test]
    fn valid_jwts_give_back_their_claims(jwt in gen_jwt()) {
        let compact = jwt.compact();
        let claims = jwt::parse(&compact);
        prop_assert!(claims.is_ok(), "{:?} refused: {:?}", compact, claims);
        let claims = claims.unwrap();
        prop_assert_eq!(claims.exp, jwt.exp.expected());
        for (name, value) in &jwt.payload {
            prop_assert_eq!(claims.get(name), Some(value), "claim {:?}", name);
        }
        prop_assert!(claims.get("exp").is_some() == !matches!(jwt.exp, Exp::Absent));
    }

    /// A dot anywhere makes it not compact.
    #[test]
    fn jwt_with_an_extra_dot_is_refused(jwt in gen_jwt(), at in any::<Index>()) {
        let mut compact = jwt.compact();
        compact.insert(at.index(compact.len() + 1), '.');
        prop_assert_eq!(jwt::parse(&compact), Err(JwtError::NotCompact));
    }

    /// Two segments are not a JWT, whichever is missing.
    #[test]
    fn jwt_without_a_segment_is_refused(jwt in gen_jwt(), drop in 0usize..3) {
        let mut segments = jwt.segments().to_vec();
        segments.remove(drop);
        prop_assert_eq!(jwt::parse(&segments.join(".")), Err(JwtError::NotCompact));
    }

    /// Any character outside base64url (padding, `+`, `/`, blanks, controls,
    /// non-ASCII) anywhere makes it not compact.
    #[test]
    fn jwt_with_a_foreign_character_is_refused(
        jwt in gen_jwt(),
        c in any::<char>().prop_filter("not base64url or a dot", |c| !is_b64url_char(*c) && *c != '.'),
        at in any::<Index>(),
    ) {
        let mut compact = jwt.compact();
        compact.insert(at.index(compact.len() + 1), c);
        prop_assert_eq!(jwt::parse(&compact), Err(JwtError::NotCompact));
    }

    /// An empty signature, or `alg: none` in any case (or empty), is unsigned.
    #[test]
    fn unsigned_jwts_are_refused(jwt in gen_jwt(), none in any_case("none"), empty_alg in any::<bool>()) {
        let [header, payload, _] = jwt.segments();
        prop_assert_eq!(jwt::parse(&format!("{header}.{payload}.")), Err(JwtError::Unsigned));

        let mut unsigned = jwt.clone();
        let alg = if empty_alg { String::new() } else { none };
        unsigned.header.insert("alg".into(), json!(alg));
        prop_assert_eq!(jwt::parse(&unsigned.compact()), Err(JwtError::Unsigned));
    }

    /// A header without a string `alg`, or that is not an object, is refused.
    #[test]
    fn jwt_headers_need_a_string_alg(jwt in gen_jwt(), alg in json_value(), not_object in json_value()) {
        let mut bad = jwt.clone();
        match alg {
            Value::String(_) => { bad.header.remove("alg"); }
            other => { bad.header.insert("alg".into(), other); }
        }
        prop_assert_eq!(jwt::parse(&bad.compact()), Err(JwtError::BadHeader));

        if !not_object.is_object() {
            let [_, payload, signature] = jwt.segments();
            let header = b64url(not_object.to_string());
            let jwt = format!("{header}.{payload}.{signature}");
            prop_assert_eq!(jwt::parse(&jwt), Err(JwtError::BadHeader));
        }
    }

    /// A payload that is not a JSON object, or an `exp` that is not a
    /// non-negative number, is refused.
    #[test]
    fn jwt_payloads_are_objects_with_a_numeric_exp(
        jwt in gen_jwt(),
        not_object in json_value(),
        bad_exp in prop_oneof![
            (i64::MIN..0).prop_map(Value::from),
            (-1e12f64..-0.5).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            Just(json!([1_900_000_000])),
            Just(json!({"t": 1})),
            Just(json!(1e300)),
        ],
    ) {
        let [header, _, signature] = jwt.segments();
        if !not_object.is_object() {
            let payload = b64url(not_object.to_string());
            let jwt = format!("{header}.{payload}.{signature}");
            prop_assert_eq!(jwt::parse(&jwt), Err(JwtError::BadPayload));
        }
        let mut payload = jwt.payload.clone();
        payload.insert("exp".into(), bad_exp);
        let payload = b64url(Value::Object(payload).to_string());
        let jwt = format!("{header}.{payload}.{signature}");
        prop_assert_eq!(jwt::parse(&jwt), Err(JwtError::BadClaim("exp")));
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// Megabyte-class answers (an HTML page, a JSON document, random bytes)
    /// never panic and are refused.
    #[test]
    fn huge_non_jwt_bodies_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..200_000),
        filler in "[A-Za-z0-9_-]{1,8}",
    ) {
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        if jwt::parse(&lossy).is_ok() {
            prop_assert!(compact_shape(&lossy));
        }
        let long_segment = filler.repeat(20_000);
        let three = format!("{long_segment}.{long_segment}.{long_segment}");
        prop_assert!(jwt::parse(&three).is_err());
    }
}
