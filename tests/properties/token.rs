//! Bearer token extraction (RFC 6750 §2.1).

use proptest::prelude::*;
use proptest::sample::select;
use tyk_phantom_token::token::{TokenError, extract_bearer};

use crate::{any_case, cases};

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
