//! Per-API settings (Tyk's `spec["config_data"]`) and the identity rules that
//! shape the Tyk session of an allowed request.
//!
//! Identity rules have a global default from the environment; an API's
//! `config_data` overrides them key by key and adds the API's own checks
//! (required scopes and audience). Each distinct `config_data` text is parsed
//! once and remembered by its digest, so a request pays a hash and a lookup,
//! not a JSON parse. An invalid `config_data` denies every request of that API
//! and is logged once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::policy::EvictionPolicy;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::jwt::Claims;

/// Metadata key under which the JWT is put when `jwt_in_metadata` is on (the
/// name Curity's plugin used, so its `$tyk_meta.phantom_jwt` settings work).
pub const META_JWT: &str = "phantom_jwt";

/// Metadata keys the plugin sets itself and claims may not take.
const RESERVED_META_KEYS: &[&str] = &["token", META_JWT];

/// Largest `config_data` accepted (Tyk sends it with every request).
pub const MAX_CONFIG_DATA_BYTES: usize = 64 * 1024;

/// Distinct `config_data` texts remembered; past this the least recently
/// used is forgotten (and parsed again if it comes back).
const MAX_REMEMBERED_CONFIGS: u64 = 1024;

/// The version of an API that is not versioned, as Tyk names it; used when
/// `config_data` lists no `api_versions`.
pub const DEFAULT_API_VERSION: &str = "Default";

/// Analytics tags a session carries at most (a claim may be a long list).
pub const MAX_ANALYTICS_TAGS: usize = 32;

/// How the Tyk session of an allowed request is built from the JWT's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRules {
    /// Key sessions by this claim (e.g. `sub`) instead of by token, so Tyk's
    /// rate limits, quotas and analytics apply per identity.
    pub session_key_claim: Option<String>,
    /// Claim whose values name policies (directly, or through `policy_map`).
    pub policy_claim: Option<String>,
    /// Claim value → policy IDs. Without a map, claim values are policy IDs.
    pub policy_map: Option<BTreeMap<String, Vec<String>>>,
    /// Policies applied to every session.
    pub apply_policies: Vec<String>,
    /// (claim, metadata key) pairs copied into session metadata.
    pub metadata_claims: Vec<(String, String)>,
    /// Put the JWT in session metadata (`phantom_jwt`), for Tyk's id_extractor
    /// mode where `$tyk_meta` header injection forwards it.
    pub jwt_in_metadata: bool,
    /// Claims whose string values are comma-separated lists. Every other
    /// string claim read as a list is split at spaces only: RFC 6749 §3.3
    /// scope tokens may contain commas, so splitting `scope` at them would
    /// turn one granted scope into others.
    pub comma_separated_claims: Vec<String>,
    /// Claim naming the identity in Tyk's analytics (the session's `alias`).
    /// `None`: the session-key claim when one is set and present, else `sub`.
    pub analytics_alias_claim: Option<String>,
    /// Claims whose values become the session's analytics tags
    /// (`claim:value`).
    pub analytics_tag_claims: Vec<String>,
}

impl IdentityRules {
    /// Policy IDs for these claims: the static ones, then those named by the
    /// policy claim, without duplicates, in order.
    pub fn policies(&self, claims: &Claims) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |id: &str| {
            if !out.iter().any(|p| p == id) {
                out.push(id.to_owned());
            }
        };
        for id in &self.apply_policies {
            add(id);
        }
        if let Some(claim) = &self.policy_claim {
            for value in claims.values(claim, self.splits_commas(claim)) {
                match &self.policy_map {
                    Some(map) => map.get(value).into_iter().flatten().for_each(|id| add(id)),
                    None if is_policy_id(value) => add(value),
                    None => {}
                }
            }
        }
        out
    }

    /// Whether `claim`'s string values are split at commas as well as spaces.
    pub fn splits_commas(&self, claim: &str) -> bool {
        self.comma_separated_claims.iter().any(|c| c == claim)
    }

    /// The scopes these claims grant (see [`Claims::scopes`]).
    pub fn granted_scopes<'c>(&self, claims: &'c Claims) -> Vec<&'c str> {
        claims.scopes(|name| self.splits_commas(name))
    }

    /// The claim naming the identity in analytics.
    fn alias_claim<'a>(&'a self, claims: &Claims) -> &'a str {
        match (&self.analytics_alias_claim, &self.session_key_claim) {
            (Some(claim), _) => claim,
            (None, Some(claim)) if identity_value(claims, claim).is_some() => claim,
            _ => "sub",
        }
    }

    /// The session's analytics `alias`: the identity, so that Tyk's analytics
    /// records can be read per caller instead of per hashed key. Empty when
    /// the claim is missing or unsafe.
    pub fn alias(&self, claims: &Claims) -> String {
        identity_value(claims, self.alias_claim(claims))
            .filter(|v| is_safe_meta_value(v))
            .unwrap_or_default()
    }

    /// The session's analytics tags: `claim:value` for each configured
    /// claim (one per string of a list; numbers and booleans as text), in
    /// order, without duplicates or unsafe values, at most
    /// [`MAX_ANALYTICS_TAGS`].
    pub fn tags(&self, claims: &Claims) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for claim in &self.analytics_tag_claims {
            let values: Vec<String> = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    vec![v.to_string()]
                }
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            for value in values {
                if tags.len() >= MAX_ANALYTICS_TAGS {
                    return tags;
                }
                let tag = format!("{claim}:{value}");
                if !value.is_empty() && is_safe_meta_value(&tag) && !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        tags
    }

    /// The `(metadata key, value)` pairs for the configured claims. Strings are
    /// copied, numbers and booleans written as JSON, lists of strings joined by
    /// spaces; other types and unsafe values are left out.
    pub fn metadata<'c>(
        &'c self,
        claims: &'c Claims,
    ) -> impl Iterator<Item = (&'c str, String)> + 'c {
        self.metadata_claims.iter().filter_map(|(claim, key)| {
            let value = match claims.get(claim)? {
                serde_json::Value::String(s) => s.clone(),
                v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
                serde_json::Value::Array(items) => {
                    let strings: Option<Vec<&str>> =
                        items.iter().map(serde_json::Value::as_str).collect();
                    strings?.join(" ")
                }
                _ => return None,
            };
            is_safe_meta_value(&value).then_some((key.as_str(), value))
        })
    }
}

/// The value identifying the caller by `claim`: a non-empty string, or a
/// number's digits.
pub fn identity_value(claims: &Claims, claim: &str) -> Option<String> {
    match claims.get(claim)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Claim values reach Redis and, through `$tyk_meta`, upstream headers: keep
/// them bounded and free of control characters.
pub fn is_safe_meta_value(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && !value.chars().any(char::is_control)
}

/// Everything the plugin applies for one API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiPolicy {
    /// All of these must be granted (RFC 6750 `insufficient_scope` if not).
    pub required_scopes: Vec<String>,
    /// The token's `aud` must contain this.
    pub required_audience: Option<String>,
    /// Versions of this API the session may use (Tyk checks them for a
    /// versioned API). `None`: [`DEFAULT_API_VERSION`].
    pub api_versions: Option<Vec<String>>,
    pub identity: IdentityRules,
}

/// Why an API's checks refuse a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDenial {
    /// `aud` does not name this API.
    WrongAudience,
    /// Scopes missing; carries the space-separated required scopes for the
    /// challenge's `scope` parameter.
    InsufficientScope(String),
}

impl ApiPolicy {
    /// Whether these rules read claims beyond [`Claims::summary`], so the
    /// JWT must be read again for them.
    pub fn needs_full_claims(&self) -> bool {
        let rules = &self.identity;
        let beyond = |name: &String| !Claims::summary_covers(name);
        rules.session_key_claim.as_ref().is_some_and(beyond)
            || rules.policy_claim.as_ref().is_some_and(beyond)
            || rules.metadata_claims.iter().any(|(claim, _)| beyond(claim))
            || rules.analytics_alias_claim.as_ref().is_some_and(beyond)
            || rules.analytics_tag_claims.iter().any(beyond)
    }

    /// The API versions the session's access rights name.
    pub fn api_versions(&self) -> Vec<String> {
        self.api_versions
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_API_VERSION.to_owned()])
    }

    /// The API's checks, run on every request, cached answer or not.
    ///
    /// # Errors
    ///
    /// [`PolicyDenial`] when the token's claims do not satisfy the API.
    pub fn check(&self, claims: &Claims) -> Result<(), PolicyDenial> {
        if let Some(audience) = &self.required_audience
            && !claims.audiences().contains(&audience.as_str())
        {
            return Err(PolicyDenial::WrongAudience);
        }
        if !self.required_scopes.is_empty() {
            let granted = self.identity.granted_scopes(claims);
            if !self
                .required_scopes
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(PolicyDenial::InsufficientScope(
                    self.required_scopes.join(" "),
                ));
            }
        }
        Ok(())
    }
}

/// `config_data` as an API definition writes it. Unknown keys are refused: a
/// misspelt `required_scopes` must not silently disable the scope check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigData {
    required_scopes: Option<OneOrMany>,
    required_audience: Option<String>,
    session_key_claim: Option<String>,
    policy_claim: Option<String>,
    policy_map: Option<BTreeMap<String, OneOrMany>>,
    apply_policies: Option<OneOrMany>,
    metadata_claims: Option<MetadataClaims>,
    jwt_in_metadata: Option<bool>,
    comma_separated_claims: Option<OneOrMany>,
    api_versions: Option<Vec<String>>,
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

fn oversized_message() -> String {
    format!("config_data is larger than {MAX_CONFIG_DATA_BYTES} bytes")
}

/// Parses an API's `config_data` over the global identity rules.
///
/// # Errors
///
/// A message naming the offending key, for the log.
pub fn parse_config_data(text: &str, global: &IdentityRules) -> Result<ApiPolicy, String> {
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
    Ok(ApiPolicy {
        required_scopes,
        required_audience,
        api_versions,
        identity,
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

fn is_policy_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_control() || c.is_whitespace())
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
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
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

/// An API's parsed settings, or why its `config_data` is invalid.
type Parsed = Result<Arc<ApiPolicy>, Arc<str>>;

/// Seconds between two log lines about oversized `config_data` (such a text
/// is not remembered, so without this it would be logged on every request).
const OVERSIZED_LOG_INTERVAL_SECONDS: u64 = 60;

/// The parsed settings of the APIs seen, by SHA-256 of their `config_data`.
///
/// The size limit is checked before anything else, so an oversized text (Tyk
/// may send up to the gRPC message limit) is never hashed nor stored. The
/// memory is an LRU of [`MAX_REMEMBERED_CONFIGS`] digests: the configs in use
/// stay parsed however many others pass through.
pub struct ApiPolicies {
    default: Arc<ApiPolicy>,
    parsed: moka::sync::Cache<[u8; 32], Parsed>,
    oversized: Arc<str>,
    /// When an oversized `config_data` was last reported, unix seconds.
    oversized_reported: AtomicU64,
}

impl ApiPolicies {
    pub fn new(global: IdentityRules) -> Self {
        ApiPolicies {
            default: Arc::new(ApiPolicy {
                identity: global,
                ..ApiPolicy::default()
            }),
            parsed: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED_CONFIGS)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            oversized: Arc::from(oversized_message()),
            oversized_reported: AtomicU64::new(0),
        }
    }

    /// How many parsed `config_data` texts are remembered.
    pub fn remembered(&self) -> u64 {
        self.parsed.run_pending_tasks();
        self.parsed.entry_count()
    }

    /// The settings for an API with this `config_data` (absent: the global
    /// defaults). `on_invalid` runs once per distinct invalid text while it is
    /// remembered (an oversized text: at most once a minute), for the log.
    ///
    /// # Errors
    ///
    /// The parse error of an invalid `config_data`.
    pub fn resolve(&self, config_data: Option<&str>, on_invalid: impl FnOnce(&str)) -> Parsed {
        let Some(text) = config_data.filter(|t| !t.is_empty()) else {
            return Ok(self.default.clone());
        };
        if text.len() > MAX_CONFIG_DATA_BYTES {
            self.report_oversized(on_invalid);
            return Err(self.oversized.clone());
        }
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        self.parsed.get_with(digest, || {
            let result = parse_config_data(text, &self.default.identity)
                .map(Arc::new)
                .map_err(Arc::<str>::from);
            if let Err(e) = &result {
                on_invalid(e);
            }
            result
        })
    }

    fn report_oversized(&self, on_invalid: impl FnOnce(&str)) {
        let now = crate::cache::unix_now().as_secs();
        let last = self.oversized_reported.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(OVERSIZED_LOG_INTERVAL_SECONDS);
        if due
            && self
                .oversized_reported
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            on_invalid(&self.oversized);
        }
    }
}

#[cfg(test)]
mod tests;
