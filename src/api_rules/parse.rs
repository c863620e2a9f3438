//! Reading an API's `config_data`, and the environment's identity rules, into
//! checked settings. Every parser names the offending key in its error.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::identity::is_policy_id;
use super::step_up;
use super::{ApiRules, IdentityRules, MAX_CONFIG_DATA_BYTES, META_JWT, META_TOKEN};

/// Metadata keys the plugin sets itself and claims may not take.
const RESERVED_META_KEYS: &[&str] = &[META_TOKEN, META_JWT];

/// `config_data` as an API definition writes it. Unknown keys are refused: a
/// misspelt `required_scopes` must not silently disable the scope check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigData {
    required_scopes: Option<OneOrMany>,
    required_audience: Option<String>,
    minted_audience: Option<String>,
    session_key_claim: Option<String>,
    policy_claim: Option<String>,
    policy_map: Option<BTreeMap<String, OneOrMany>>,
    apply_policies: Option<OneOrMany>,
    metadata_claims: Option<MetadataClaims>,
    jwt_in_metadata: Option<bool>,
    comma_separated_claims: Option<OneOrMany>,
    api_versions: Option<Vec<String>>,
    required_acr: Option<serde_json::Value>,
    max_auth_age: Option<serde_json::Value>,
    dpop_base_url: Option<String>,
    dpop_required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// A string is split at spaces and commas; a list is taken as is.
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => split_list(&s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MetadataClaims {
    /// Claim names; each is also its metadata key.
    Names(Vec<String>),
    /// Claim name → metadata key.
    Renamed(BTreeMap<String, String>),
}

fn split_list(s: &str) -> Vec<String> {
    s.split([' ', ','])
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn oversized_message() -> String {
    format!("config_data is larger than {MAX_CONFIG_DATA_BYTES} bytes")
}

/// Parses an API's `config_data` over the global identity rules.
///
/// # Errors
///
/// A message naming the offending key, for the log.
pub fn parse_config_data(text: &str, global: &IdentityRules) -> Result<ApiRules, String> {
    if text.len() > MAX_CONFIG_DATA_BYTES {
        return Err(oversized_message());
    }
    // An object, and only an object: serde would also read the struct from a
    // JSON array of its fields in order, bypassing the unknown-key rule.
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("config_data: {e}"))?;
    let data: ConfigData = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("config_data: {e}"))?;
    let mut identity = global.clone();
    if let Some(claim) = data.session_key_claim {
        identity.session_key_claim =
            optional_claim(&claim).map_err(|e| format!("session_key_claim: {e}"))?;
    }
    if let Some(claim) = data.policy_claim {
        identity.policy_claim = optional_claim(&claim).map_err(|e| format!("policy_claim: {e}"))?;
    }
    if let Some(map) = data.policy_map {
        let map = map.into_iter().map(|(k, v)| (k, v.into_vec())).collect();
        identity.policy_map = Some(check_policy_map(map).map_err(|e| format!("policy_map: {e}"))?);
    }
    if let Some(ids) = data.apply_policies {
        identity.apply_policies =
            check_policy_ids(ids.into_vec()).map_err(|e| format!("apply_policies: {e}"))?;
    }
    if let Some(claims) = data.metadata_claims {
        let pairs = match claims {
            MetadataClaims::Names(names) => names.into_iter().map(|n| (n.clone(), n)).collect(),
            MetadataClaims::Renamed(map) => map.into_iter().collect(),
        };
        identity.metadata_claims =
            check_metadata_claims(pairs).map_err(|e| format!("metadata_claims: {e}"))?;
    }
    if let Some(on) = data.jwt_in_metadata {
        identity.jwt_in_metadata = on;
    }
    if let Some(claims) = data.comma_separated_claims {
        identity.comma_separated_claims = check_claim_names(claims.into_vec())
            .map_err(|e| format!("comma_separated_claims: {e}"))?;
    }
    if identity.policy_map.is_some() && identity.policy_claim.is_none() {
        return Err("policy_map needs policy_claim".to_owned());
    }
    let required_scopes = match data.required_scopes {
        Some(scopes) => {
            let scopes = match scopes {
                // RFC 6749 §3.3: scope tokens are separated by spaces only.
                OneOrMany::One(s) => s
                    .split(' ')
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect(),
                OneOrMany::Many(v) => v,
            };
            check_scopes(scopes).map_err(|e| format!("required_scopes: {e}"))?
        }
        None => Vec::new(),
    };
    let api_versions = match data.api_versions {
        Some(versions) => Some(check_versions(versions).map_err(|e| format!("api_versions: {e}"))?),
        None => None,
    };
    let required_audience = match data.required_audience {
        Some(aud) if aud.is_empty() || aud.chars().any(char::is_control) => {
            return Err("required_audience: expected a non-empty string".to_owned());
        }
        other => other,
    };
    let minted_audience = match data.minted_audience {
        Some(aud) if aud.is_empty() || aud.chars().any(char::is_control) => {
            return Err("minted_audience: expected a non-empty string".to_owned());
        }
        other => other,
    };
    let step_up = super::StepUp {
        required_acr: match &data.required_acr {
            Some(v) => step_up::parse_required_acr(v).map_err(|e| format!("required_acr: {e}"))?,
            None => Vec::new(),
        },
        max_auth_age: match &data.max_auth_age {
            Some(v) => {
                Some(step_up::parse_max_auth_age(v).map_err(|e| format!("max_auth_age: {e}"))?)
            }
            None => None,
        },
    };
    let dpop = crate::dpop::DpopRules {
        base_url: match data.dpop_base_url {
            Some(url) => {
                Some(crate::dpop::parse_base_url(&url).map_err(|e| format!("dpop_base_url: {e}"))?)
            }
            None => None,
        },
        required: data.dpop_required.unwrap_or(false),
    };
    Ok(ApiRules {
        required_scopes,
        required_audience,
        minted_audience,
        api_versions,
        identity,
        step_up,
        dpop,
    })
}

/// A claim name; empty means "none" (to switch a global rule off for an API).
pub fn optional_claim(name: &str) -> Result<Option<String>, String> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.len() > 128 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{name:?} is not a claim name"));
    }
    Ok(Some(name.to_owned()))
}

fn check_policy_ids(ids: Vec<String>) -> Result<Vec<String>, String> {
    match ids.iter().find(|id| !is_policy_id(id)) {
        Some(bad) => Err(format!("{bad:?} is not a policy ID")),
        None => Ok(ids),
    }
}

fn check_policy_map(
    map: BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    for ids in map.values() {
        check_policy_ids(ids.clone())?;
    }
    Ok(map)
}

/// Metadata keys must work in `$tyk_meta.KEY` (`[A-Za-z0-9_.-]+`).
fn check_metadata_claims(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    for (claim, key) in &pairs {
        optional_claim(claim)?.ok_or("a claim name is empty")?;
        let usable = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !usable {
            return Err(format!(
                "{key:?} is not usable as $tyk_meta.<key> (letters, digits, _ . -)"
            ));
        }
        if RESERVED_META_KEYS.contains(&key.as_str()) {
            return Err(format!("{key:?} is set by the plugin itself"));
        }
    }
    Ok(pairs)
}

/// Claim names, none empty.
fn check_claim_names(names: Vec<String>) -> Result<Vec<String>, String> {
    for name in &names {
        optional_claim(name)?.ok_or("a claim name is empty")?;
    }
    Ok(names)
}

/// Tyk version names: free text, but not empty, bounded, without control
/// characters; at least one.
fn check_versions(versions: Vec<String>) -> Result<Vec<String>, String> {
    if versions.is_empty() {
        return Err("expected at least one version name".to_owned());
    }
    match versions
        .iter()
        .find(|v| v.is_empty() || v.len() > 256 || v.chars().any(char::is_control))
    {
        Some(bad) => Err(format!("{bad:?} is not a version name")),
        None => Ok(versions),
    }
}

/// RFC 6750 §3: a non-empty run of `%x21 / %x23-5B / %x5D-7E`, the
/// characters of a scope token. They need no escaping inside a quoted string
/// of `WWW-Authenticate` (no space, `"` or `\`), so values that end up in a
/// challenge are held to this set.
pub(super) fn is_rfc6750_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// RFC 6750 §3: scope tokens are `%x21 / %x23-5B / %x5D-7E`. A comma is
/// allowed there, but one in a requirement is almost certainly a list
/// written the wrong way, so it is refused. An empty requirement would
/// switch the check off: leave the key out for that.
fn check_scopes(scopes: Vec<String>) -> Result<Vec<String>, String> {
    if scopes.is_empty() {
        return Err(
            "expected at least one scope (leave required_scopes out for no scope check)".to_owned(),
        );
    }
    for scope in &scopes {
        if !is_rfc6750_token(scope) {
            return Err(format!("{scope:?} is not a valid scope"));
        }
        if scope.contains(',') {
            return Err(format!(
                "{scope:?} contains a comma; list scopes as a JSON array or separated by spaces"
            ));
        }
    }
    Ok(scopes)
}

/// Parsers for the global identity rules in the environment.
pub mod env {
    use super::*;

    /// `POLICY_MAP`: a JSON object, claim value → policy ID or list of IDs.
    pub fn policy_map(raw: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
        let map: BTreeMap<String, OneOrMany> = serde_json::from_str(raw).map_err(|_| {
            "expected a JSON object such as {\"orders:read\": \"pol-1\"}".to_owned()
        })?;
        check_policy_map(map.into_iter().map(|(k, v)| (k, v.into_vec())).collect())
    }

    /// `APPLY_POLICIES`: IDs separated by commas or spaces.
    pub fn policy_ids(raw: &str) -> Result<Vec<String>, String> {
        check_policy_ids(split_list(raw))
    }

    /// A list of claim names separated by commas or spaces
    /// (`COMMA_SEPARATED_CLAIMS`, `ANALYTICS_TAG_CLAIMS`).
    pub fn claim_names(raw: &str) -> Result<Vec<String>, String> {
        check_claim_names(split_list(raw))
    }

    /// `METADATA_CLAIMS`: `claim` or `claim:key`, separated by commas or spaces.
    pub fn metadata_claims(raw: &str) -> Result<Vec<(String, String)>, String> {
        let pairs = split_list(raw)
            .into_iter()
            .map(|item| match item.split_once(':') {
                Some((claim, key)) => (claim.to_owned(), key.to_owned()),
                None => (item.clone(), item),
            })
            .collect();
        check_metadata_claims(pairs)
    }
}
