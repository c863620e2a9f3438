//! How the Tyk session of an allowed request is built from the JWT's claims:
//! the identity rules (global, overridden per API) and the metadata keys the
//! plugin sets.

use std::collections::BTreeMap;

use crate::jwt::Claims;

/// Metadata keys set on every allowed request (usable as `$tyk_meta.<key>`):
/// the session key, and the standard claims when present.
pub const META_TOKEN: &str = "token";
pub const META_SUB: &str = "sub";
pub const META_CLIENT_ID: &str = "client_id";
pub const META_SCOPE: &str = "scope";

/// Metadata key under which the JWT is put when `jwt_in_metadata` is on (the
/// name Curity's plugin used, so its `$tyk_meta.phantom_jwt` settings work).
pub const META_JWT: &str = "phantom_jwt";

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

/// A Tyk policy ID: not empty, bounded, without blanks or control characters.
pub(super) fn is_policy_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Claim values reach Redis and, through `$tyk_meta`, upstream headers: keep
/// them bounded and free of control characters.
pub fn is_safe_meta_value(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && !value.chars().any(char::is_control)
}
