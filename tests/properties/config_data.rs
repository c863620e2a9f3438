//! An API's `config_data`: its own rules, as Tyk sends them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use tyk_phantom_token::api_rules::{
    ApiRules, ApiRulesCache, IdentityRules, MAX_CONFIG_DATA_BYTES, StepUp, parse_config_data,
};
use tyk_phantom_token::jwt;

use crate::{cases, json_value, with_case};

const CONFIG_DATA_KEYS: &[&str] = &[
    "required_scopes",
    "required_audience",
    "minted_audience",
    "session_key_claim",
    "policy_claim",
    "policy_map",
    "apply_policies",
    "metadata_claims",
    "jwt_in_metadata",
    "comma_separated_claims",
    "api_versions",
    "required_acr",
    "max_auth_age",
];

/// A list a key accepts either as a JSON array or as a string split at
/// spaces and commas (at spaces only for `required_scopes`).
#[derive(Debug, Clone)]
pub(crate) struct OneOrMany {
    items: Vec<String>,
    /// Written as one string joined by this separator (only when no item
    /// contains a separator character).
    joined_by: Option<&'static str>,
}

impl OneOrMany {
    pub(crate) fn to_json(&self) -> Value {
        match self.joined_by {
            Some(sep) if !self.items.iter().any(|i| i.contains([' ', ','])) => {
                Value::String(self.items.join(sep))
            }
            _ => json!(self.items),
        }
    }

    /// What the plugin should read: the array as is, or the string's pieces.
    pub(crate) fn read(&self) -> Vec<String> {
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

pub(crate) fn one_or_many(item: impl Strategy<Value = String>) -> impl Strategy<Value = OneOrMany> {
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
    minted_audience: Option<String>,
    session_key_claim: Option<String>,
    policy_claim: Option<String>,
    policy_map: Option<BTreeMap<String, OneOrMany>>,
    apply_policies: Option<OneOrMany>,
    metadata_claims: Option<MetadataGen>,
    jwt_in_metadata: Option<bool>,
    comma_separated_claims: Option<OneOrMany>,
    api_versions: Option<Vec<String>>,
    required_acr: Option<Vec<String>>,
    max_auth_age: Option<Value>,
}

/// An `acr` value: mostly usable in a quoted challenge parameter, now and
/// then not.
fn acr_value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[!#-\\[\\]-~]{1,16}",
        1 => select(&["", "a b", "say\"hi\"", "back\\slash", "caf\u{e9}"][..]).prop_map(str::to_owned),
        1 => "[a-z]{257,260}",
    ]
}

/// `max_auth_age`: mostly whole seconds, now and then not.
fn auth_age() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (0u64..1_000_000).prop_map(Value::from),
        1 => select(vec![json!(-1), json!(1.5), json!("300"), json!(true), json!([300])]),
    ]
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

pub(crate) fn policy_id() -> impl Strategy<Value = String> {
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
        prop::option::weighted(0.3, audience()),
    )
        .prop_flat_map(|base| {
            (
                Just(base),
                prop::option::weighted(0.3, prop::collection::vec(acr_value(), 0..3)),
                prop::option::weighted(0.3, auth_age()),
            )
        })
        .prop_map(
            |(
                (
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
                    minted,
                ),
                acr,
                age,
            )| {
                ConfigDataGen {
                    required_scopes: scopes,
                    required_audience: aud,
                    minted_audience: minted,
                    session_key_claim: session_key,
                    policy_claim,
                    policy_map,
                    apply_policies: apply,
                    metadata_claims: metadata,
                    jwt_in_metadata: jwt,
                    comma_separated_claims: comma,
                    api_versions: versions,
                    required_acr: acr,
                    max_auth_age: age,
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
        if let Some(v) = &self.minted_audience {
            out.insert("minted_audience".into(), json!(v));
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
        if let Some(v) = &self.required_acr {
            out.insert("required_acr".into(), json!(v));
        }
        if let Some(v) = &self.max_auth_age {
            out.insert("max_auth_age".into(), v.clone());
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
        if let Some(aud) = &self.minted_audience
            && (aud.is_empty() || aud.chars().any(char::is_control))
        {
            return None;
        }
        let required_acr = match &self.required_acr {
            None => Vec::new(),
            Some(values) => {
                let valid = !values.is_empty()
                    && values.iter().all(|v| {
                        !v.is_empty()
                            && v.len() <= 256
                            && v.bytes().all(|b| {
                                b == 0x21
                                    || (0x23..=0x5b).contains(&b)
                                    || (0x5d..=0x7e).contains(&b)
                            })
                    });
                if !valid {
                    return None;
                }
                values.clone()
            }
        };
        let max_auth_age = match &self.max_auth_age {
            None => None,
            Some(v) => Some(v.as_u64()?),
        };
        let step_up = StepUp {
            required_acr,
            max_auth_age,
        };
        Some(ApiRules {
            required_scopes,
            required_audience: self.required_audience.clone(),
            minted_audience: self.minted_audience.clone(),
            api_versions,
            identity,
            step_up,
            dpop: Default::default(),
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
