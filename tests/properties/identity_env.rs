//! Identity rules in the environment (`api_rules::env`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use tyk_phantom_token::api_rules;

use crate::cases;
use crate::config_data::{one_or_many, policy_id};

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
