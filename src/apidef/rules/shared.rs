//! APIs that share Tyk's id_extractor cache.

use std::collections::BTreeMap;

use super::*;

/// An API that uses Tyk's id_extractor, for the rules about APIs sharing
/// its cache.
#[derive(Debug, Clone)]
pub struct ExtractorUse {
    pub file: String,
    pub api: String,
    /// The cache is per organisation and extracted value (§5.4).
    pub org_id: String,
    /// What is extracted, e.g. `header authorization with value`.
    pub source: String,
    pub field: String,
    pub rules: Arc<ApiRules>,
}

/// APIs that share Tyk's id_extractor cache: one organisation, one
/// extracted value (spec §5.4; README: The id_extractor fast path).
pub fn shared_extractor_cache(uses: &[ExtractorUse]) -> Vec<Finding> {
    let mut groups: BTreeMap<(&str, &str), Vec<&ExtractorUse>> = BTreeMap::new();
    for used in uses {
        groups
            .entry((used.org_id.as_str(), used.source.as_str()))
            .or_default()
            .push(used);
    }
    let mut findings = Vec::new();
    for ((org, source), members) in groups {
        // Definitions with one API ID are one API to the cache: a session
        // opens its own API.
        let distinct = |m: &ExtractorUse| members.iter().any(|o| o.api != m.api);
        if !members.iter().any(|m| distinct(m)) {
            continue;
        }
        let has_policies = |u: &ExtractorUse| {
            !u.rules.identity.apply_policies.is_empty() || u.rules.identity.policy_claim.is_some()
        };
        let requirements = |u: &ExtractorUse| {
            (
                u.rules.required_scopes.clone(),
                u.rules.required_audience.clone(),
                u.rules.step_up.clone(),
                u.rules.dpop.required,
            )
        };
        let differ = members
            .iter()
            .any(|m| requirements(m) != requirements(members[0]));
        for member in &members {
            let others: Vec<String> = members
                .iter()
                .filter(|o| o.api != member.api)
                .map(|o| format!("{:?} ({})", o.api, o.file))
                .collect();
            let shared = format!(
                "shares Tyk's id_extractor cache with {} (organisation {org:?}, {source})",
                others.join(", ")
            );
            if !has_policies(member) {
                findings.push(Finding {
                    severity: Severity::Warning,
                    file: member.file.clone(),
                    api: member.api.clone(),
                    field: member.field.clone(),
                    problem: format!(
                        "{shared}: the session Tyk caches for one of them opens that API only, \
                         so a client that calls another of them before the deadline gets 403 \
                         from Tyk"
                    ),
                    fix: "apply a policy that grants all of them (apply_policies), or keep the \
                          id_extractor on one of them only"
                        .to_owned(),
                });
            } else if differ {
                findings.push(Finding {
                    severity: Severity::Warning,
                    file: member.file.clone(),
                    api: member.api.clone(),
                    field: member.field.clone(),
                    problem: format!(
                        "{shared}, and their requirements (required_scopes, required_audience, \
                         step-up, dpop_required) differ: on Tyk's cache hits the plugin is not \
                         called, so a token admitted by one of them reaches the others without \
                         their checks wherever the policies open them"
                    ),
                    fix: "give these APIs one set of requirements, or the bundle without \
                          id_extractor (phantom-bundle-v1.zip) to those that need their own"
                        .to_owned(),
                });
            }
        }
    }
    findings
}
