//! Property tests of every parser that reads outside input: the bearer token,
//! the AS's JWT and `Cache-Control`, an API's `config_data`, and the
//! configuration variables. Each property states what the parser must answer
//! (often by comparing with a small independent model), not only that it does
//! not panic.
//!
//! One file per parser, in the order of the pipeline: [`token`], [`jwt`],
//! [`cache_control`], [`config_data`], [`identity_env`] (identity rules in
//! the environment), [`config`] (the configuration variables) and [`dpop`]
//! (DPoP proofs). Shared
//! strategies live here.

use proptest::prelude::*;
use serde_json::Value;

mod cache_control;
mod config;
mod config_data;
mod dpop;
#[allow(dead_code)]
#[path = "../support/dpop_client.rs"]
mod dpop_client;
mod identity_env;
mod jwt;
mod token;

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
