//! Property tests of every parser that reads outside input: the bearer token,
//! the AS's JWT and `Cache-Control`, an API's `config_data`, and the
//! configuration variables. Each property states what the parser must answer
//! (often by comparing with a small independent model), not only that it does
//! not panic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use tyk_phantom_token::api_rules::{
    self, ApiRules, ApiRulesCache, IdentityRules, MAX_CONFIG_DATA_BYTES, parse_config_data,
};
use tyk_phantom_token::config::{self, ALL_VARIABLES, Config, Source};
use tyk_phantom_token::introspect::{CacheDirectives, cache_control};
use tyk_phantom_token::jwt::{self, JwtError};
use tyk_phantom_token::token::{TokenError, extract_bearer};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // Shrinking a failure is useful; searching for one forever is not.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// `s` with each ASCII letter upper-cased where `upper` says so.
fn with_case(s: &str, upper: &[bool]) -> String {
    s.chars()
        .zip(upper.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// A random upper/lower-case spelling of `word`.
fn any_case(word: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| with_case(word, &upper))
}

// ---------------------------------------------------------------------------
// Bearer token extraction (RFC 6750 §2.1)
// ---------------------------------------------------------------------------

const B64TOKEN_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";

/// The rule written out from the RFC, byte by byte, without the product's
/// helpers: optional SP/HTAB around the value; the exact word `bearer` in any
/// case, ended by SP/HTAB or the end; SP/HTAB; then `1*b64char *"="`, at most
/// `max` bytes. No header or another scheme is `Missing`; the size check
/// comes before the charset check.
fn reference_bearer(header: Option<&str>, max: usize) -> Result<&str, TokenError> {
    let Some(header) = header else {
        return Err(TokenError::Missing);
    };
    let bytes = header.as_bytes();
    let blank = |b: u8| b == b' ' || b == b'\t';
    let mut start = 0;
    while start < bytes.len() && blank(bytes[start]) {
        start += 1;
    }
    let mut end = bytes.len();
    while end > start && blank(bytes[end - 1]) {
        end -= 1;
    }
    let value = &bytes[start..end];
    let is_bearer = value.len() >= 6
        && value[..6]
            .iter()
            .zip(b"bearer")
            .all(|(got, want)| got.to_ascii_lowercase() == *want)
        && (value.len() == 6 || blank(value[6]));
    if !is_bearer {
        return Err(TokenError::Missing);
    }
    let mut at = start + 6;
    while at < end && blank(bytes[at]) {
        at += 1;
    }
    let token = &header[at..end];
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    if token.len() > max {
        return Err(TokenError::TooLong);
    }
    let (body, padding) = token.split_at(token.find('=').unwrap_or(token.len()));
    let charset_ok = !body.is_empty()
        && body.bytes().all(|b| B64TOKEN_CHARS.contains(&b))
        && padding.bytes().all(|b| b == b'=');
    if !charset_ok {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

fn b64token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,200}={0,3}"
}

fn blank_or_odd_space() -> impl Strategy<Value = &'static str> {
    select(
        &[
            "", "", " ", "\t", "  ", " \t ", "\r", "\n", "\r\n", "\u{a0}", "\u{0}", "\u{3000}",
        ][..],
    )
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any_case("bearer"),
        2 => select(&[
            "Basic", "Bearer:", "Bearerx", "Bear", "", "Negotiate", "Bearer,", "bearer=",
            "B\u{435}arer", "Token", "DPoP", "Bearer\u{0}", "\u{0}Bearer", "BEARER\u{7f}",
        ][..])
        .prop_map(str::to_owned),
        1 => "[!-~]{0,8}",
    ]
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ \t]{0,4}",
        1 => select(&[",", ":", "=", "\u{a0}", "\r\n", "\u{3000}", "\u{0}"][..]).prop_map(str::to_owned),
    ]
}

fn token_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~+/-]{0,12}={0,3}",
        3 => "[A-Za-z0-9._~+/= ,\"\\\\;:\u{0}\u{1}\u{7f}\u{e9}\t\r\n-]{0,16}",
        1 => any::<String>(),
    ]
}

/// Header values that reach every branch: good and bad schemes, separators,
/// tokens, surrounding blanks.
fn authorization_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (blank_or_odd_space(), scheme(), separator(), token_text(), blank_or_odd_space())
            .prop_map(|(a, s, p, t, b)| format!("{a}{s}{p}{t}{b}")),
        1 => any::<String>(),
        1 => ".{0,64}",
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    /// The extractor answers exactly what the RFC rule answers, for any header
    /// value and any size limit.
    #[test]
    fn extract_bearer_agrees_with_the_rfc_rule(header in authorization_value(), max in 1usize..48) {
        let got = extract_bearer(Some(&header), max).map(|t| t.expose());
        prop_assert_eq!(got, reference_bearer(Some(&header), max), "header {:?}", header);
    }

    /// An accepted token is a verbatim slice of the header, within the limit,
    /// made only of b64token characters, with `=` only at its end, and the
    /// header starts (after blanks) with the bearer scheme.
    #[test]
    fn accepted_tokens_are_verbatim_b64tokens(header in authorization_value(), max in 1usize..4096) {
        if let Ok(token) = extract_bearer(Some(&header), max) {
            let token = token.expose();
            let range = header.as_ptr() as usize..header.as_ptr() as usize + header.len();
            prop_assert!(range.contains(&(token.as_ptr() as usize)), "not a slice of the header");
            prop_assert!(header.contains(token));
            prop_assert!(!token.is_empty() && token.len() <= max);
            prop_assert!(token.bytes().all(|b| B64TOKEN_CHARS.contains(&b) || b == b'='));
            let body = token.trim_end_matches('=');
            prop_assert!(!body.is_empty() && !body.contains('='));
            let value = header.trim_matches([' ', '\t']);
            prop_assert!(value.len() > 6 && value.as_bytes()[..6].eq_ignore_ascii_case(b"bearer"));
            prop_assert!(value.ends_with(token));
        }
    }

    /// Any scheme other than `bearer` (in any case) means "no credentials",
    /// whatever follows it.
    #[test]
    fn any_other_scheme_is_missing_credentials(
        scheme in prop_oneof![
            "[!-~]{1,12}".boxed(),
            (any_case("bearer"), "[!-~]{1,4}").prop_map(|(b, s)| format!("{b}{s}")).boxed(),
            ("[!-~]{1,4}", any_case("bearer")).prop_map(|(p, b)| format!("{p}{b}")).boxed(),
        ],
        sep in "[ \t]{1,3}",
        rest in ".{0,40}",
    ) {
        prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
        let header = format!("{scheme}{sep}{rest}");
        prop_assert_eq!(extract_bearer(Some(&header), 4096).map(|t| t.expose()), Err(TokenError::Missing));
    }

    /// Round trip: any valid b64token behind any spelling of `Bearer` and one
    /// to five blanks comes back as is; one byte over the limit is `TooLong`.
    #[test]
    fn any_valid_token_round_trips(
        token in b64token(),
        scheme in any_case("bearer"),
        sep in "[ \t]{1,5}",
        trailing in "[ \t]{0,3}",
    ) {
        let header = format!("{scheme}{sep}{token}{trailing}");
        prop_assert_eq!(extract_bearer(Some(&header), token.len()).map(|t| t.expose()), Ok(token.as_str()));
        prop_assert_eq!(extract_bearer(Some(&header), 4096).map(|t| t.expose()), Ok(token.as_str()));
        prop_assert_eq!(
            extract_bearer(Some(&header), token.len() - 1).map(|t| t.expose()),
            Err(TokenError::TooLong)
        );
    }

    /// Past the limit, a bearer token is `TooLong` whatever its characters
    /// (the AS is never asked about it, and its content is never inspected).
    #[test]
    fn tokens_over_the_limit_are_too_long(
        token in "[^ \t][^ \t]{0,99}",
        max in 0usize..50,
    ) {
        prop_assume!(token.len() > max);
        let header = format!("Bearer {token}");
        prop_assert_eq!(extract_bearer(Some(&header), max).map(|t| t.expose()), Err(TokenError::TooLong));
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// Hostile sizes: up to 16 KiB of anything, or a 10 kB-class token, never
    /// panics and obeys the rule; an over-long bearer token is `TooLong`.
    #[test]
    fn huge_headers_obey_the_rule(
        junk in prop::collection::vec(any::<char>(), 0..16_384),
        token in "[A-Za-z0-9]{4097,12000}",
    ) {
        let junk: String = junk.into_iter().collect();
        for header in [junk.clone(), format!("Bearer {junk}"), format!("Bearer {token}")] {
            prop_assert_eq!(
                extract_bearer(Some(&header), 4096).map(|t| t.expose()),
                reference_bearer(Some(&header), 4096)
            );
        }
        let long = format!("Bearer {token}");
        prop_assert_eq!(
            extract_bearer(Some(&long), 4096).map(|t| t.expose()),
            Err(TokenError::TooLong)
        );
    }
}

#[test]
fn no_header_is_missing_credentials() {
    assert_eq!(
        extract_bearer(None, 4096).map(|t| t.expose()),
        Err(TokenError::Missing)
    );
}

// ---------------------------------------------------------------------------
// The AS's JWT: compact JWS shape and claims
// ---------------------------------------------------------------------------

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn is_b64url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// JSON values that survive a JSON round trip exactly (no floats that need
/// more than a few digits).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        ".{0,16}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
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

// ---------------------------------------------------------------------------
// Cache-Control from the AS
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Directive {
    MaxAge {
        secs: u64,
        quoted: bool,
    },
    NoStore,
    NoCache {
        field: Option<&'static str>,
    },
    /// A directive that must not limit anything (including look-alikes).
    Other(&'static str),
    /// `max-age` with an argument that is not a whole number of seconds.
    BadMaxAge(&'static str),
}

impl Directive {
    /// The `max-age` it gives: the only directive that limits the token cache
    /// unless `no-store` is honoured.
    fn max_age(&self) -> Option<u64> {
        match self {
            Directive::MaxAge { secs, .. } => Some(*secs),
            _ => None,
        }
    }

    /// `no-store` or `no-cache`: heeded only with `HONOR_CACHE_CONTROL_NO_STORE`.
    fn forbids_storing(&self) -> bool {
        matches!(self, Directive::NoStore | Directive::NoCache { .. })
    }
}

fn directive() -> impl Strategy<Value = Directive> {
    prop_oneof![
        3 => (prop_oneof![any::<u64>(), 0u64..100_000], any::<bool>())
            .prop_map(|(secs, quoted)| Directive::MaxAge { secs, quoted }),
        1 => Just(Directive::NoStore),
        1 => prop::option::of(select(&["Set-Cookie", "Authorization"][..]))
            .prop_map(|field| Directive::NoCache { field }),
        3 => select(&[
            "public", "private", "must-revalidate", "no-transform", "immutable",
            "s-maxage=5", "max-stale=7", "stale-while-revalidate=9", "proxy-revalidate",
            "x-max-age=1", "max-ages=3", "maxage=4", "no-stores", "xno-cache", "",
            "private=\"Set-Cookie\"", "community=\"UCI\"",
        ][..]).prop_map(Directive::Other),
        1 => select(&[
            "", "soon", "-1", "1.5", "0x10", "99999999999999999999999", "1 2", "\"\"", "1e3",
        ][..]).prop_map(Directive::BadMaxAge),
    ]
}

/// Renders a directive with random case and blanks around `=`.
fn render_directive() -> impl Strategy<Value = (Directive, String)> {
    (
        directive(),
        prop::collection::vec(any::<bool>(), 8),
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(|(d, upper, before, after)| {
            let text = match &d {
                Directive::MaxAge { secs, quoted: true } => {
                    format!("{}{before}={after}\"{secs}\"", with_case("max-age", &upper))
                }
                Directive::MaxAge {
                    secs,
                    quoted: false,
                } => {
                    format!("{}{before}={after}{secs}", with_case("max-age", &upper))
                }
                Directive::NoStore => with_case("no-store", &upper),
                Directive::NoCache { field: None } => with_case("no-cache", &upper),
                Directive::NoCache { field: Some(f) } => {
                    format!("{}{before}={after}\"{f}\"", with_case("no-cache", &upper))
                }
                Directive::Other(text) => with_case(text, &upper),
                Directive::BadMaxAge(arg) => {
                    format!("{}{before}={after}{arg}", with_case("max-age", &upper))
                }
            };
            (d, text)
        })
}

fn cache_control_header() -> impl Strategy<Value = (Vec<Directive>, String)> {
    prop::collection::vec((render_directive(), "[ \t]{0,2}", "[ \t]{0,2}"), 0..8).prop_map(
        |items| {
            let mut directives = Vec::new();
            let mut text = String::new();
            for (i, ((d, rendered), lead, trail)) in items.into_iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&lead);
                text.push_str(&rendered);
                text.push_str(&trail);
                directives.push(d);
            }
            (directives, text)
        },
    )
}

proptest! {
    #![proptest_config(cases(512))]

    /// `max-age` is the smallest one given and `no_store` is set by
    /// `no-store`/`no-cache`; case and blanks do not matter, look-alikes
    /// (`s-maxage`, `max-ages`, `no-stores`) and `private` do not count. The
    /// token cache is limited by `max-age` alone (zero included), and by
    /// `no-store`/`no-cache` only when they are honoured.
    #[test]
    fn cache_control_reads_the_smallest_max_age_and_any_no_store((directives, text) in cache_control_header()) {
        let max_age = directives.iter().filter_map(Directive::max_age).min().map(Duration::from_secs);
        let no_store = directives.iter().any(Directive::forbids_storing);
        let parsed = cache_control(&text);
        prop_assert_eq!(parsed, CacheDirectives { max_age, no_store }, "header {:?}", text);
        prop_assert_eq!(parsed.limit(false), max_age, "header {:?}", text);
        let strict = if no_store { Some(Duration::ZERO) } else { max_age };
        prop_assert_eq!(parsed.limit(true), strict, "header {:?}", text);
    }

    /// Joining two header values with a comma reads like merging the two (so
    /// several `Cache-Control` lines combine the same way), for any text at
    /// all.
    #[test]
    fn cache_control_of_a_list_is_the_merge_of_its_parts(a in ".{0,40}", b in ".{0,40}") {
        prop_assert_eq!(
            cache_control(&format!("{a},{b}")),
            cache_control(&a).merge(cache_control(&b))
        );
    }

    /// Arbitrary text never panics, and whatever is found comes from a
    /// directive named in it: only a `max-age` limits the cache by default.
    #[test]
    fn cache_control_findings_come_from_named_directives(text in any::<String>()) {
        let lower = text.to_ascii_lowercase();
        let parsed = cache_control(&text);
        if parsed.max_age.is_some() || parsed.limit(false).is_some() {
            prop_assert!(lower.contains("max-age"));
        }
        if parsed.no_store {
            prop_assert!(lower.contains("no-store") || lower.contains("no-cache"));
        }
    }
}

// ---------------------------------------------------------------------------
// config_data
// ---------------------------------------------------------------------------

const CONFIG_DATA_KEYS: &[&str] = &[
    "required_scopes",
    "required_audience",
    "session_key_claim",
    "policy_claim",
    "policy_map",
    "apply_policies",
    "metadata_claims",
    "jwt_in_metadata",
    "comma_separated_claims",
    "api_versions",
];

/// A list a key accepts either as a JSON array or as a string split at
/// spaces and commas (at spaces only for `required_scopes`).
#[derive(Debug, Clone)]
struct OneOrMany {
    items: Vec<String>,
    /// Written as one string joined by this separator (only when no item
    /// contains a separator character).
    joined_by: Option<&'static str>,
}

impl OneOrMany {
    fn to_json(&self) -> Value {
        match self.joined_by {
            Some(sep) if !self.items.iter().any(|i| i.contains([' ', ','])) => {
                Value::String(self.items.join(sep))
            }
            _ => json!(self.items),
        }
    }

    /// What the plugin should read: the array as is, or the string's pieces.
    fn read(&self) -> Vec<String> {
        self.read_split_at(&[' ', ','])
    }

    /// The same for scopes: RFC 6749 §3.3 separates them by spaces only.
    fn read_scopes(&self) -> Vec<String> {
        self.read_split_at(&[' '])
    }

    fn read_split_at(&self, separators: &[char]) -> Vec<String> {
        match self.to_json() {
            Value::String(s) => s
                .split(separators)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => self.items.clone(),
        }
    }
}

fn one_or_many(item: impl Strategy<Value = String>) -> impl Strategy<Value = OneOrMany> {
    (
        prop::collection::vec(item, 0..5),
        prop::option::of(select(&[" ", ",", ", ", "  "][..])),
    )
        .prop_map(|(items, joined_by)| OneOrMany { items, joined_by })
}

#[derive(Debug, Clone)]
enum MetadataGen {
    Names(Vec<String>),
    Renamed(BTreeMap<String, String>),
}

/// A `config_data` object built from the known keys, with mostly valid
/// values and now and then an invalid one.
#[derive(Debug, Clone, Default)]
struct ConfigDataGen {
    required_scopes: Option<OneOrMany>,
    required_audience: Option<String>,
    session_key_claim: Option<String>,
    policy_claim: Option<String>,
    policy_map: Option<BTreeMap<String, OneOrMany>>,
    apply_policies: Option<OneOrMany>,
    metadata_claims: Option<MetadataGen>,
    jwt_in_metadata: Option<bool>,
    comma_separated_claims: Option<OneOrMany>,
    api_versions: Option<Vec<String>>,
}

/// A Tyk version name: free text, now and then empty or with a control
/// character.
fn version_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[^\\p{Cc}]{1,12}",
        1 => select(&["", "v\n1", "tab\t"][..]).prop_map(str::to_owned),
        1 => "[a-z]{257,260}",
    ]
}

fn scope() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[!#-\\[\\]-~]{1,12}",
        1 => select(&["", "a b", "say\"hi\"", "back\\slash", "caf\u{e9}", "tab\there", "nul\u{0}"][..])
            .prop_map(str::to_owned),
    ]
}

fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[A-Za-z0-9_:./-]{1,20}",
        1 => Just(String::new()),
        1 => select(&["two words", "ctl\u{1}", "tab\t", "\u{a0}"][..]).prop_map(str::to_owned),
        1 => "[a-z]{129,140}",
    ]
}

fn policy_id() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[A-Za-z0-9:_.@#-]{1,24}",
        1 => select(&["", "a b", "ctl\u{7f}", "line\nbreak"][..]).prop_map(str::to_owned),
        1 => "[a-z]{257,260}",
    ]
}

fn meta_key() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[A-Za-z0-9_.-]{1,16}",
        1 => select(&["", "token", "phantom_jwt", "a:b", "$x", "sp ace", "caf\u{e9}", "a/b"][..])
            .prop_map(str::to_owned),
    ]
}

fn audience() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[^\\p{Cc}]{1,24}",
        1 => select(&["", "ctl\u{1}", "nl\n"][..]).prop_map(str::to_owned),
    ]
}

fn config_data_gen() -> impl Strategy<Value = ConfigDataGen> {
    let metadata = prop_oneof![
        prop::collection::vec(meta_key(), 0..4).prop_map(MetadataGen::Names),
        prop::collection::btree_map(claim_name(), meta_key(), 0..4).prop_map(MetadataGen::Renamed),
    ];
    (
        prop::option::of(one_or_many(scope())),
        prop::option::of(audience()),
        prop::option::of(claim_name()),
        prop::option::of(claim_name()),
        prop::option::weighted(
            0.3,
            prop::collection::btree_map(".{0,12}", one_or_many(policy_id()), 0..4),
        ),
        prop::option::of(one_or_many(policy_id())),
        prop::option::of(metadata),
        prop::option::of(any::<bool>()),
        prop::option::weighted(0.3, one_or_many(claim_name())),
        prop::option::weighted(0.3, prop::collection::vec(version_name(), 0..3)),
    )
        .prop_map(
            |(
                scopes,
                aud,
                session_key,
                policy_claim,
                policy_map,
                apply,
                metadata,
                jwt,
                comma,
                versions,
            )| {
                ConfigDataGen {
                    required_scopes: scopes,
                    required_audience: aud,
                    session_key_claim: session_key,
                    policy_claim,
                    policy_map,
                    apply_policies: apply,
                    metadata_claims: metadata,
                    jwt_in_metadata: jwt,
                    comma_separated_claims: comma,
                    api_versions: versions,
                }
            },
        )
}

impl ConfigDataGen {
    fn to_json(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        if let Some(v) = &self.required_scopes {
            out.insert("required_scopes".into(), v.to_json());
        }
        if let Some(v) = &self.required_audience {
            out.insert("required_audience".into(), json!(v));
        }
        if let Some(v) = &self.session_key_claim {
            out.insert("session_key_claim".into(), json!(v));
        }
        if let Some(v) = &self.policy_claim {
            out.insert("policy_claim".into(), json!(v));
        }
        if let Some(map) = &self.policy_map {
            let map: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            out.insert("policy_map".into(), Value::Object(map));
        }
        if let Some(v) = &self.apply_policies {
            out.insert("apply_policies".into(), v.to_json());
        }
        match &self.metadata_claims {
            Some(MetadataGen::Names(names)) => {
                out.insert("metadata_claims".into(), json!(names));
            }
            Some(MetadataGen::Renamed(map)) => {
                out.insert("metadata_claims".into(), json!(map));
            }
            None => {}
        }
        if let Some(v) = self.jwt_in_metadata {
            out.insert("jwt_in_metadata".into(), json!(v));
        }
        if let Some(v) = &self.comma_separated_claims {
            out.insert("comma_separated_claims".into(), v.to_json());
        }
        if let Some(v) = &self.api_versions {
            out.insert("api_versions".into(), json!(v));
        }
        out
    }

    fn text(&self) -> String {
        Value::Object(self.to_json()).to_string()
    }

    /// The README's rules, applied key by key over the global rules.
    fn expected(&self, global: &IdentityRules) -> Option<ApiRules> {
        fn claim(name: &str) -> Option<Option<String>> {
            if name.is_empty() {
                return Some(None);
            }
            let ok =
                name.len() <= 128 && !name.chars().any(|c| c.is_control() || c.is_whitespace());
            ok.then(|| Some(name.to_owned()))
        }
        fn ids(list: Vec<String>) -> Option<Vec<String>> {
            list.iter()
                .all(|id| {
                    !id.is_empty()
                        && id.len() <= 256
                        && !id.chars().any(|c| c.is_control() || c.is_whitespace())
                })
                .then_some(list)
        }
        fn meta(pairs: Vec<(String, String)>) -> Option<Vec<(String, String)>> {
            pairs
                .iter()
                .all(|(c, k)| {
                    claim(c).flatten().is_some()
                        && !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                        && k != "token"
                        && k != "phantom_jwt"
                })
                .then_some(pairs)
        }
        let mut identity = global.clone();
        if let Some(c) = &self.session_key_claim {
            identity.session_key_claim = claim(c)?;
        }
        if let Some(c) = &self.policy_claim {
            identity.policy_claim = claim(c)?;
        }
        if let Some(map) = &self.policy_map {
            let mut checked = BTreeMap::new();
            for (k, v) in map {
                checked.insert(k.clone(), ids(v.read())?);
            }
            identity.policy_map = Some(checked);
        }
        if let Some(list) = &self.apply_policies {
            identity.apply_policies = ids(list.read())?;
        }
        if let Some(m) = &self.metadata_claims {
            let pairs = match m {
                MetadataGen::Names(names) => names.iter().map(|n| (n.clone(), n.clone())).collect(),
                MetadataGen::Renamed(map) => map.clone().into_iter().collect(),
            };
            identity.metadata_claims = meta(pairs)?;
        }
        if let Some(on) = self.jwt_in_metadata {
            identity.jwt_in_metadata = on;
        }
        if let Some(list) = &self.comma_separated_claims {
            let names = list.read();
            if !names.iter().all(|n| claim(n).flatten().is_some()) {
                return None;
            }
            identity.comma_separated_claims = names;
        }
        if identity.policy_map.is_some() && identity.policy_claim.is_none() {
            return None;
        }
        // At least one scope, each an RFC 6750 scope token without a comma.
        let required_scopes = match &self.required_scopes {
            None => Vec::new(),
            Some(list) => {
                let scopes = list.read_scopes();
                let valid = !scopes.is_empty()
                    && scopes.iter().all(|s| {
                        !s.is_empty()
                            && !s.contains(',')
                            && s.bytes().all(|b| {
                                b == 0x21
                                    || (0x23..=0x5b).contains(&b)
                                    || (0x5d..=0x7e).contains(&b)
                            })
                    });
                if !valid {
                    return None;
                }
                scopes
            }
        };
        let api_versions = match &self.api_versions {
            None => None,
            Some(versions) => {
                let valid = !versions.is_empty()
                    && versions.iter().all(|v| {
                        !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control)
                    });
                if !valid {
                    return None;
                }
                Some(versions.clone())
            }
        };
        if let Some(aud) = &self.required_audience
            && (aud.is_empty() || aud.chars().any(char::is_control))
        {
            return None;
        }
        Some(ApiRules {
            required_scopes,
            required_audience: self.required_audience.clone(),
            api_versions,
            identity,
        })
    }
}

fn global_rules() -> impl Strategy<Value = IdentityRules> {
    (
        prop::option::of(select(&["sub", "email"][..])),
        prop::option::of(select(&["roles", "groups"][..])),
        any::<bool>(),
        prop::collection::vec(select(&["base", "gold"][..]), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(session_key, policy_claim, with_map, apply, jwt)| IdentityRules {
                session_key_claim: session_key.map(str::to_owned),
                policy_claim: policy_claim.map(str::to_owned),
                policy_map: (with_map && policy_claim.is_some())
                    .then(|| BTreeMap::from([("admin".to_owned(), vec!["pol-admin".to_owned()])])),
                apply_policies: apply.into_iter().map(str::to_owned).collect(),
                metadata_claims: vec![("sub".into(), "sub".into())],
                jwt_in_metadata: jwt,
                comma_separated_claims: policy_claim.into_iter().map(str::to_owned).collect(),
                analytics_alias_claim: None,
                analytics_tag_claims: Vec::new(),
            },
        )
}

/// A key `config_data` does not know: arbitrary text, or a near miss of a
/// known key (case, plural, dash).
fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,16}",
        (
            select(CONFIG_DATA_KEYS),
            prop::collection::vec(any::<bool>(), 20)
        )
            .prop_map(|(k, upper)| with_case(k, &upper)),
        select(CONFIG_DATA_KEYS).prop_map(|k| format!("{k}s")),
        select(CONFIG_DATA_KEYS).prop_map(|k| k.replace('_', "-")),
        select(CONFIG_DATA_KEYS).prop_map(|k| format!(" {k}")),
    ]
    .prop_filter("unknown", |k| !CONFIG_DATA_KEYS.contains(&k.as_str()))
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text never panics the parser.
    #[test]
    fn config_data_never_panics_on_text(
        text in prop_oneof![any::<String>(), "[{}\\[\\]\",:a-z0-9 ]{0,64}"],
    ) {
        let _ = parse_config_data(&text, &IdentityRules::default());
    }

    /// Arbitrary JSON never panics, and only an object of known keys can be
    /// accepted.
    #[test]
    fn config_data_accepts_only_objects_of_known_keys(value in json_value()) {
        let accepted = parse_config_data(&value.to_string(), &IdentityRules::default()).is_ok();
        if accepted {
            let keys_known = value
                .as_object()
                .is_some_and(|o| o.keys().all(|k| CONFIG_DATA_KEYS.contains(&k.as_str())));
            prop_assert!(keys_known, "accepted {}", value);
        }
    }

    /// A generated `config_data` is accepted exactly when the README's rules
    /// say so, and then carries its values (lists in order) over the global
    /// rules, which it overrides key by key.
    #[test]
    fn config_data_agrees_with_its_rules(data in config_data_gen(), global in global_rules()) {
        let got = parse_config_data(&data.text(), &global);
        match data.expected(&global) {
            Some(expected) => prop_assert_eq!(got, Ok(expected), "{}", data.text()),
            None => prop_assert!(got.is_err(), "{} accepted: {:?}", data.text(), got),
        }
    }

    /// `required_scopes` holds at least one scope, each an RFC 6750 scope
    /// token (`%x21 / %x23-5B / %x5D-7E`: no blanks, quotes, backslashes,
    /// controls or non-ASCII) without a comma, kept in order.
    #[test]
    fn required_scopes_follow_rfc6750(
        scopes in prop::collection::vec("[ -~\u{0}-\u{1f}\u{7f}-\u{ff}]{0,6}", 0..5),
    ) {
        let text = json!({ "required_scopes": scopes }).to_string();
        let valid = !scopes.is_empty() && scopes.iter().all(|s| {
            !s.is_empty()
                && s.chars().all(|c| ('!'..='~').contains(&c) && c != '"' && c != '\\' && c != ',')
        });
        match parse_config_data(&text, &IdentityRules::default()) {
            Ok(rules) => {
                prop_assert!(valid, "{} accepted", text);
                prop_assert_eq!(rules.required_scopes, scopes);
            }
            Err(_) => prop_assert!(!valid, "{} refused", text),
        }
    }

    /// One unknown top-level key refuses the whole object (a misspelt
    /// `required_scopes` must not switch the scope check off), and the
    /// message names it.
    #[test]
    fn config_data_with_an_unknown_key_is_refused(
        data in config_data_gen(),
        key in unknown_key(),
        value in json_value(),
    ) {
        let mut object = data.to_json();
        object.insert(key.clone(), value);
        let text = Value::Object(object).to_string();
        let got = parse_config_data(&text, &IdentityRules::default());
        prop_assert!(got.is_err(), "{} accepted", text);
        let message = got.unwrap_err();
        prop_assert!(message.contains(&key), "{:?} does not name {:?}", message, key);
    }

    /// JSON whitespace around the object changes nothing, up to the size
    /// limit; past it the text is refused unread, valid or not.
    #[test]
    fn config_data_size_limit_and_whitespace(
        data in config_data_gen(),
        pad in select(&[" ", "\n", "\t", "\r\n"][..]),
        extra in 0usize..16,
    ) {
        let text = data.text();
        let base = parse_config_data(&text, &IdentityRules::default());
        let room = MAX_CONFIG_DATA_BYTES - text.len();
        let fits = format!("{}{text}", pad.repeat(room / pad.len()));
        prop_assert!(fits.len() <= MAX_CONFIG_DATA_BYTES);
        let padded = parse_config_data(&fits, &IdentityRules::default());
        // Error messages may differ (serde counts lines); the verdict may not.
        prop_assert_eq!(padded.is_ok(), base.is_ok());
        prop_assert_eq!(padded.ok(), base.ok());
        let over = format!("{text}{}", " ".repeat(room + 1 + extra));
        let refused = parse_config_data(&over, &IdentityRules::default());
        prop_assert!(refused.as_ref().is_err_and(|e| e.contains("larger than")), "{:?}", refused);
    }

    /// `ApiRulesCache::resolve` answers what the parser answers, parses each
    /// distinct text once (the same `Arc` comes back), reports each invalid
    /// text once, and treats absent or empty `config_data` as the defaults.
    #[test]
    fn resolve_agrees_with_the_parser_and_remembers(
        pool in prop::collection::vec(config_data_gen().prop_map(|d| d.text()), 1..6),
        picks in prop::collection::vec(any::<Index>(), 1..24),
        global in global_rules(),
    ) {
        let rules_cache = ApiRulesCache::new(global.clone());
        let mut reported: Vec<String> = Vec::new();
        let mut invalid_seen: HashSet<String> = HashSet::new();
        let mut first_ok: HashMap<String, Arc<ApiRules>> = HashMap::new();
        for pick in picks {
            let text = pool[pick.index(pool.len())].clone();
            if parse_config_data(&text, &global).is_err() {
                invalid_seen.insert(text.clone());
            }
            let got = rules_cache.resolve(Some(&text), |why| reported.push(why.to_owned()));
            match (&got, parse_config_data(&text, &global)) {
                (Ok(rules), Ok(expected)) => {
                    prop_assert_eq!(&**rules, &expected);
                    let first = first_ok.entry(text.clone()).or_insert_with(|| rules.clone());
                    prop_assert!(Arc::ptr_eq(first, rules), "parsed twice");
                }
                (Err(why), Err(expected)) => prop_assert_eq!(&**why, expected.as_str()),
                (got, expected) => prop_assert!(false, "resolve {:?}, parse {:?}", got, expected),
            }
        }
        prop_assert_eq!(reported.len(), invalid_seen.len(), "each invalid text is reported once");

        let default = ApiRules { identity: global, ..ApiRules::default() };
        for absent in [None, Some("")] {
            let got = rules_cache.resolve(absent, |_| panic!("defaults are not invalid"));
            prop_assert_eq!(got.map(|p| (*p).clone()), Ok::<_, Arc<str>>(default.clone()));
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// `config_data` must be a JSON object. serde also reads a struct from a
    /// JSON array of its fields in declaration order, so such an array would
    /// slip past the unknown-key rule (not reachable through Tyk, which
    /// always sends an object).
    #[test]
    fn config_data_that_is_an_array_is_refused(
        fields in (
            prop_oneof![Just(Value::Null), Just(json!(["orders:read"]))],
            prop_oneof![Just(Value::Null), Just(json!("orders-api"))],
            prop_oneof![Just(Value::Null), Just(json!("sub"))],
            prop_oneof![Just(Value::Null), Just(json!("roles"))],
            Just(Value::Null),
            prop_oneof![Just(Value::Null), Just(json!(["base"]))],
            prop_oneof![Just(Value::Null), Just(json!(["email"]))],
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool)],
            prop_oneof![Just(Value::Null), Just(json!(["roles"]))],
            prop_oneof![Just(Value::Null), Just(json!(["v1"]))],
        ),
    ) {
        let (a, b, c, d, e, f, g, h, i, j) = fields;
        let text = json!([a, b, c, d, e, f, g, h, i, j]).to_string();
        let got = parse_config_data(&text, &IdentityRules::default());
        prop_assert!(got.is_err(), "{} accepted: {:?}", text, got);
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Granted scopes are the tokens of `scope` separated by spaces (RFC 6749
    /// §3.3): a comma belongs to its token, unless the operator names `scope`
    /// as a comma-separated claim.
    #[test]
    fn granted_scopes_are_split_at_spaces_only(
        tokens in prop::collection::vec("[!#-\\[\\]-~]{1,10}", 0..6),
        gaps in prop::collection::vec(1usize..4, 6),
        commas in any::<bool>(),
    ) {
        let mut text = String::new();
        for (i, token) in tokens.iter().enumerate() {
            if i > 0 {
                text.push_str(&" ".repeat(gaps[i]));
            }
            text.push_str(token);
        }
        let map = json!({ "scope": text }).as_object().cloned().unwrap();
        let claims = jwt::Claims::from_map(map).unwrap();
        let got = claims.scopes(|name| commas && name == "scope");
        let expected: Vec<&str> = if commas {
            tokens.iter().flat_map(|t| t.split(',')).filter(|p| !p.is_empty()).collect()
        } else {
            tokens.iter().map(String::as_str).collect()
        };
        prop_assert_eq!(got, expected);
    }
}

// ---------------------------------------------------------------------------
// Identity rules in the environment (api_rules::env)
// ---------------------------------------------------------------------------

fn list_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[A-Za-z0-9_.:@#-]{1,12}",
        1 => select(&[
            "", "a\tb", "ctl\u{1}", "\u{a0}", "\u{3000}x", "caf\u{e9}", "$k", "token", "phantom_jwt",
        ][..])
        .prop_map(str::to_owned),
        1 => "[a-z]{125,260}",
    ]
}

fn env_list() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::collection::vec((list_piece(), select(&[" ", ",", ", ", "  ", ",,"][..])), 0..6))
            .prop_map(|items| items.into_iter().map(|(p, s)| format!("{p}{s}")).collect()),
        1 => any::<String>(),
    ]
}

fn pieces(raw: &str) -> Vec<&str> {
    raw.split([' ', ',']).filter(|p| !p.is_empty()).collect()
}

fn usable_meta_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

proptest! {
    #![proptest_config(cases(256))]

    /// `APPLY_POLICIES`: the pieces between spaces and commas, accepted
    /// exactly when each is a usable ID (no blanks or controls, ≤ 256 bytes).
    #[test]
    fn env_policy_ids_are_the_pieces_of_the_list(raw in env_list()) {
        let expected: Vec<String> = pieces(&raw).into_iter().map(str::to_owned).collect();
        let valid = expected
            .iter()
            .all(|id| id.len() <= 256 && !id.chars().any(|c| c.is_control() || c.is_whitespace()));
        match api_rules::env::policy_ids(&raw) {
            Ok(ids) => {
                prop_assert!(valid, "{:?} accepted", raw);
                prop_assert_eq!(ids, expected);
            }
            Err(_) => prop_assert!(!valid, "{:?} refused", raw),
        }
    }

    /// `METADATA_CLAIMS`: `claim` or `claim:key` pieces; accepted exactly when
    /// every claim is a claim name and every key works as `$tyk_meta.KEY`
    /// (`[A-Za-z0-9_.-]+`, not one the plugin sets itself).
    #[test]
    fn env_metadata_claims_follow_the_key_rule(
        raw in env_list(),
        renames in prop::collection::vec((list_piece(), list_piece()), 0..4),
    ) {
        let raw = if renames.is_empty() {
            raw
        } else {
            let renamed: Vec<String> = renames.iter().map(|(c, k)| format!("{c}:{k}")).collect();
            format!("{raw},{}", renamed.join(","))
        };
        let expected: Vec<(String, String)> = pieces(&raw)
            .into_iter()
            .map(|p| match p.split_once(':') {
                Some((c, k)) => (c.to_owned(), k.to_owned()),
                None => (p.to_owned(), p.to_owned()),
            })
            .collect();
        let valid = expected.iter().all(|(c, k)| {
            !c.is_empty()
                && c.len() <= 128
                && !c.chars().any(|ch| ch.is_control() || ch.is_whitespace())
                && usable_meta_key(k)
                && k != "token"
                && k != "phantom_jwt"
        });
        match api_rules::env::metadata_claims(&raw) {
            Ok(pairs) => {
                prop_assert!(valid, "{:?} accepted", raw);
                prop_assert!(pairs.iter().all(|(_, k)| usable_meta_key(k)));
                prop_assert_eq!(pairs, expected);
            }
            Err(_) => prop_assert!(!valid, "{:?} refused", raw),
        }
    }

    /// `POLICY_MAP`: never panics on any text; a JSON object of IDs or ID
    /// lists round-trips (strings split like lists); every accepted ID is
    /// usable.
    #[test]
    fn env_policy_map_round_trips(
        map in prop::collection::btree_map(".{0,12}", one_or_many(policy_id()), 0..5),
        junk in any::<String>(),
    ) {
        if let Ok(parsed) = api_rules::env::policy_map(&junk) {
            let usable = |id: &String| !id.is_empty() && !id.contains(char::is_whitespace);
            prop_assert!(parsed.values().flatten().all(usable));
        }
        let object: serde_json::Map<String, Value> =
            map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let expected: BTreeMap<String, Vec<String>> =
            map.iter().map(|(k, v)| (k.clone(), v.read())).collect();
        let valid = expected.values().flatten().all(|id| {
            !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_control() || c.is_whitespace())
        });
        match api_rules::env::policy_map(&Value::Object(object).to_string()) {
            Ok(parsed) => {
                prop_assert!(valid);
                prop_assert_eq!(parsed, expected);
            }
            Err(_) => prop_assert!(!valid),
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration variables
// ---------------------------------------------------------------------------

/// Variables from a map; files from another map (the real file system is
/// never read).
#[derive(Debug, Clone)]
struct Env {
    vars: HashMap<String, String>,
    files: HashMap<String, String>,
}

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

const SECRET: &str = "Kx7-client-secret-Qm2";

impl Env {
    fn minimal(secret: &str) -> Self {
        Env {
            vars: HashMap::from([
                (
                    config::ENV_INTROSPECTION_URL.to_owned(),
                    "https://idsvr.example.com/oauth/v2/oauth-introspect".to_owned(),
                ),
                (config::ENV_CLIENT_ID.to_owned(), "gateway".to_owned()),
                (config::ENV_CLIENT_SECRET.to_owned(), secret.to_owned()),
            ]),
            files: HashMap::new(),
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }
}

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        1 => ".{0,300}",
        1 => "[0-9]{1,30}",
        1 => "-[0-9]{1,20}",
        1 => "[ \t\r\n\u{a0}]{0,4}[0-9]{1,8}(\\.[0-9]{1,4})?[ \t\r\n\u{a0}]{0,4}",
        1 => "[0-9]{1,22} ?[KMGkmgTPb]?i?[Bb]?",
        2 => select(&[
            "0", "-1", "1", "65535", "65536", "1e309", "NaN", "inf", "-0", "+5", "0x10",
            "18446744073709551615", "18446744073709551616", "9223372036854775808",
            "\u{0}", "\u{7f}", "\u{202e}", "  42  ", "64KiB", "16MiB", "1.5", "2,5",
            "http://[::1]:0/x", "ftp://x", "https://", "http://h/#f", "https://u:p@h/",
            "true", "off", "json", "TEXT", "trace,h2=warn", "info,[{a=1}]=debug",
            "{}", "{\"a\":\"b\"}", "{\"a\":[\"b\",\"c d\"]}", "[]", "sub:x,email", "sub:token",
            "127.0.0.1:0", "[::]:50051", "localhost:1", "/run/secrets/none",
        ][..]).prop_map(str::to_owned),
    ]
}

fn known_problem(problem: &str) -> bool {
    ALL_VARIABLES.iter().any(|name| problem.starts_with(name))
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any values of any variables: no panic; an error lists only problems
    /// that each begin with the name of a variable.
    #[test]
    fn config_problems_always_name_a_variable(
        changes in prop::collection::vec((select(ALL_VARIABLES), hostile_value()), 0..5),
    ) {
        let mut env = Env::minimal(SECRET);
        for (name, value) in &changes {
            env = env.with(name, value);
        }
        if let Err(e) = Config::from_source(&env) {
            prop_assert!(!e.problems.is_empty());
            for problem in &e.problems {
                prop_assert!(known_problem(problem), "{:?}", problem);
            }
        }
    }

    /// With a single variable changed, every problem names that variable.
    #[test]
    fn one_bad_variable_is_the_one_reported(name in select(ALL_VARIABLES), value in hostile_value()) {
        let env = Env::minimal(SECRET).with(name, &value);
        if let Err(e) = Config::from_source(&env) {
            for problem in &e.problems {
                prop_assert!(
                    known_problem(problem) && problem.contains(name),
                    "{} → {:?}", name, problem
                );
            }
        }
    }

    /// A blank value is the same as no value (compose writes `NAME=`): the
    /// configuration read is identical.
    #[test]
    fn blank_values_read_as_unset(
        name in select(ALL_VARIABLES).prop_filter("optional", |n| ![
            config::ENV_INTROSPECTION_URL, config::ENV_CLIENT_ID, config::ENV_CLIENT_SECRET,
        ].contains(n)),
        blank in "[ \t\r\n]{0,4}",
    ) {
        let unset = Config::from_source(&Env::minimal(SECRET)).map(|c| format!("{c:?}"));
        let blank = Config::from_source(&Env::minimal(SECRET).with(name, &blank)).map(|c| format!("{c:?}"));
        prop_assert_eq!(blank, unset);
    }

    /// The client secret and the session-key secret never appear in an error
    /// message or in the configuration's `Debug`, whatever else is wrong.
    #[test]
    fn secrets_never_appear_in_messages(
        secret in "[A-Za-z0-9]{20,40}",
        key_secret in "[A-Za-z0-9]{20,40}",
        from_file in any::<bool>(),
        both in any::<bool>(),
        changes in prop::collection::vec(
            (select(ALL_VARIABLES).prop_filter("not a secret", |n| ![
                config::ENV_CLIENT_SECRET, config::ENV_CLIENT_SECRET_FILE, config::ENV_SESSION_KEY_SECRET,
            ].contains(n)), hostile_value()),
            1..4,
        ),
    ) {
        prop_assume!(changes.iter().all(|(_, v)| !v.contains(&secret) && !v.contains(&key_secret)));
        let mut env = Env::minimal(&secret).with(config::ENV_SESSION_KEY_SECRET, &key_secret);
        if from_file {
            env.files.insert("/run/secrets/client".into(), format!("{secret}\n"));
            env = env.with(config::ENV_CLIENT_SECRET_FILE, "/run/secrets/client");
            if !both {
                env.vars.remove(config::ENV_CLIENT_SECRET);
            }
        }
        for (name, value) in &changes {
            env = env.with(name, value);
        }
        let shown = match Config::from_source(&env) {
            Ok(config) => format!("{config:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&secret), "client secret shown: {}", shown);
        prop_assert!(!shown.contains(&key_secret), "session key secret shown: {}", shown);
    }

    /// A whole-number variable is accepted exactly within its range, with
    /// blanks around it, and read as that number.
    #[test]
    fn max_token_bytes_is_read_exactly_within_its_range(
        n in prop_oneof![
            -5i128..5,
            1_048_570i128..1_048_580,
            any::<i64>().prop_map(i128::from),
            any::<u128>().prop_map(|n| n as i128),
        ],
        pad in "[ \t]{0,2}",
    ) {
        let env = Env::minimal(SECRET).with(config::ENV_MAX_TOKEN_BYTES, &format!("{pad}{n}{pad}"));
        match Config::from_source(&env) {
            Ok(c) => {
                prop_assert!((1..=1 << 20).contains(&n));
                prop_assert_eq!(c.max_token_bytes as i128, n);
            }
            Err(e) => {
                prop_assert!(!(1..=1 << 20).contains(&n));
                prop_assert!(e.problems.len() == 1 && e.problems[0].starts_with("MAX_TOKEN_BYTES="));
            }
        }
    }

    /// Sizes with binary units are read as such, within the variable's range.
    #[test]
    fn byte_sizes_are_read_with_their_units(
        n in prop_oneof![0u64..5000, any::<u64>()],
        unit in select(&[("", 1u64), ("b", 1), ("K", 1 << 10), ("KiB", 1 << 10), ("kb", 1 << 10),
            ("MiB", 1 << 20), (" MiB", 1 << 20), ("m", 1 << 20), ("GiB", 1 << 30), ("GB", 1 << 30)][..]),
    ) {
        let (suffix, multiplier) = unit;
        let env = Env::minimal(SECRET).with(config::ENV_CACHE_MAX_BYTES, &format!("{n}{suffix}"));
        let expected = n.checked_mul(multiplier).filter(|b| (64 * 1024..=1 << 40).contains(b));
        match (Config::from_source(&env), expected) {
            (Ok(c), Some(bytes)) => prop_assert_eq!(c.cache.max_bytes, bytes),
            (Err(e), None) => prop_assert!(e.problems.iter().all(|p| p.starts_with("CACHE_MAX_BYTES="))),
            (got, expected) => prop_assert!(
                false,
                "{}{}: {:?} vs {:?}", n, suffix, got.map(|c| c.cache.max_bytes), expected
            ),
        }
    }

    /// A port is 1 to 65535 and nothing else.
    #[test]
    fn port_is_read_exactly(n in prop_oneof![0i64..70_000, any::<i64>()]) {
        let env = Env::minimal(SECRET).with(config::ENV_PORT, &n.to_string());
        match Config::from_source(&env) {
            Ok(c) => {
                prop_assert!((1..=65535).contains(&n));
                let tyk_phantom_token::server::ListenAddr::Tcp(addr) = c.listen else {
                    panic!("PORT gives a TCP address");
                };
                prop_assert_eq!(i64::from(addr.port()), n);
            }
            Err(_) => prop_assert!(!(1..=65535).contains(&n)),
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// A URL carrying credentials is refused; the message must not repeat
    /// them (it is printed at start-up and lands in the logs).
    #[test]
    fn credentials_in_the_introspection_url_are_not_repeated(
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{12,24}",
    ) {
        let url = format!("https://{user}:{password}@idsvr.example.com/introspect");
        let env = Env::minimal(SECRET).with(config::ENV_INTROSPECTION_URL, &url);
        let e = Config::from_source(&env).unwrap_err();
        prop_assert!(e.problems.len() == 1 && e.problems[0].starts_with("INTROSPECTION_URL"));
        prop_assert!(!e.to_string().contains(&password), "{}", e);
    }
}
