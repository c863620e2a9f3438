//! The checks of one API definition, and of the APIs that share Tyk's
//! id_extractor cache. Each rule rests on the gateway's behaviour as
//! spec/tyk-coprocess.md and the README describe it; the section is named
//! beside the rule.

mod access;
mod hooks;
mod jwt;
mod shared;

use std::sync::Arc;

use crate::api_rules::{ApiRules, ApiRulesCache};
use crate::bundle::Middleware;
use crate::config::ENV_JWT_IN_METADATA;
use crate::tyk::INJECT_JWT_HOOK;

use super::bundles::Bundles;
use super::definition::{ApiDefinition, Kind, Setting};
use super::report::{Finding, Severity};

#[cfg(test)]
pub(super) use jwt::tyk_meta_keys;
pub use shared::{ExtractorUse, shared_extractor_cache};

/// The hook name of the shipped manifests.
const AUTH_HOOK: &str = "PhantomAuthCheck";

/// `config_data` keys that make the plugin refuse tokens: ignoring them
/// lets through tokens the operator meant to refuse.
const REQUIREMENT_KEYS: [&str; 5] = [
    "required_scopes",
    "required_audience",
    "required_acr",
    "max_auth_age",
    "dpop_required",
];

/// The findings of one API, built up rule by rule.
struct ApiCheck<'a> {
    file: &'a str,
    def: &'a ApiDefinition,
    findings: Vec<Finding>,
}

impl ApiCheck<'_> {
    fn push(&mut self, severity: Severity, field: &str, problem: String, fix: String) {
        self.findings.push(Finding {
            severity,
            file: self.file.to_owned(),
            api: self.def.label(),
            field: field.to_owned(),
            problem,
            fix,
        });
    }

    fn error(&mut self, field: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Error, field, problem.into(), fix.into());
    }

    fn warning(&mut self, field: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Warning, field, problem.into(), fix.into());
    }

    fn field(&self, setting: Setting) -> &'static str {
        setting.field(self.def.kind)
    }

    /// A `config_data` key's path in this definition's schema.
    fn config_key(&self, key: &str) -> String {
        format!("{}.{key}", self.field(Setting::ConfigData))
    }

    /// Where an effective rule of `config_data` comes from: the key when the
    /// API sets it, else the environment's default.
    fn config_or_env(&self, key: &str, env: &str) -> String {
        let set_here = self.def.config_data_enabled
            && self
                .def
                .config_data
                .as_ref()
                .and_then(serde_json::Value::as_object)
                .is_some_and(|data| data.contains_key(key));
        if set_here {
            self.config_key(key)
        } else {
            format!("{env} (the plugin's environment; no {key} in config_data)")
        }
    }
}

/// Where the hooks the gateway uses for an API come from.
struct Effective {
    middleware: Middleware,
    /// `Some(bundle)` when they come from a bundle's manifest.
    bundle: Option<String>,
}

/// Checks one API definition read from `file`.
///
/// `rules` resolves `config_data` exactly as the plugin does at run-time,
/// over the global identity rules of the plugin's environment.
pub fn check_api(
    file: &str,
    def: &ApiDefinition,
    bundles: &Bundles,
    rules: &ApiRulesCache,
) -> (Vec<Finding>, Option<ExtractorUse>) {
    let mut check = ApiCheck {
        file,
        def,
        findings: Vec::new(),
    };
    for (field, problem) in &def.problems {
        check.error(
            field,
            problem.clone(),
            "correct the field as Tyk's schema writes it",
        );
    }
    let bundle_named = !def.bundle.trim().is_empty();
    let own_driver = def.middleware.as_ref().map_or("", |m| m.driver.as_str());
    let uses_plugin =
        def.custom_auth || bundle_named || own_driver == "grpc" || def.config_data.is_some();
    if !uses_plugin {
        let field = check.field(Setting::CustomAuth);
        check.warning(
            field,
            "the API does not use the plugin (no custom authentication, no bundle, no grpc \
             driver, no config_data), so it was not checked further",
            format!(
                "nothing, if the API is not meant for the plugin; otherwise set {field} and name \
                 a bundle"
            ),
        );
        return (check.findings, None);
    }
    authentication(&mut check);
    let effective = hooks::effective_middleware(&mut check, bundles);
    if let Some(effective) = &effective {
        hooks::check(&mut check, effective);
    }
    let Some(rules) = api_rules(&mut check, rules) else {
        return (check.findings, None);
    };
    let headers = jwt::headers(&mut check, &rules);
    let extractor = effective.as_ref().and_then(|effective| {
        let extractor = effective.middleware.active_id_extractor()?;
        let inject = effective.middleware.hooks.iter().any(|(list, hook)| {
            *list == "post_key_auth" && hook.name == INJECT_JWT_HOOK && !hook.disabled
        });
        let field = hooks::hook_field(&check, effective, Setting::IdExtractor, "id_extractor");
        jwt::id_extractor(&mut check, extractor, &field, inject, &headers, &rules);
        Some(ExtractorUse {
            file: file.to_owned(),
            api: def.label(),
            org_id: def.org_id.clone(),
            source: format!(
                "{} {} with {}",
                extractor.extract_from,
                if extractor.extract_from == "header" {
                    extractor.header_name.to_ascii_lowercase()
                } else {
                    extractor.param_name.clone()
                },
                extractor.extract_with
            ),
            field,
            rules: rules.clone(),
        })
    });
    // Without the hooks (an unknown bundle) the mode is not known.
    if effective.is_some() && extractor.is_none() && rules.identity.jwt_in_metadata {
        let field = check.config_or_env("jwt_in_metadata", ENV_JWT_IN_METADATA);
        check.warning(
            &field,
            "jwt_in_metadata is on without an id_extractor: Tyk writes the session, JWT \
             included, to its Redis on every request, and the JWT is only needed there when Tyk \
             answers from its id_extractor cache",
            "leave jwt_in_metadata off for this API",
        );
    }
    jwt::strip_auth_data(&mut check, &headers, &rules);
    access::versions(&mut check, &rules);
    access::dpop(&mut check, &rules);
    unauthenticated_paths(&mut check);
    (check.findings, extractor)
}

/// Custom authentication on, nothing beside it (spec §2.3, §4.9).
fn authentication(check: &mut ApiCheck<'_>) {
    let def = check.def;
    if def.keyless {
        let field = check.field(Setting::Keyless);
        let fix = match def.kind {
            Kind::Classic => format!("set {field} to false"),
            Kind::Oas => format!("set {field} to true"),
        };
        check.error(
            field,
            "the API is keyless: Tyk lets every request through to the upstream without calling \
             the plugin, with whatever Authorization header the client sent (an opaque token too)",
            fix,
        );
    }
    if !def.custom_auth {
        let field = check.field(Setting::CustomAuth);
        check.error(
            field,
            "custom plugin authentication is off: Tyk authenticates requests some other way (its \
             own key check) and never calls the plugin",
            format!("set {field} to true"),
        );
    }
    if !def.other_auth.is_empty() {
        let fields = def.other_auth.join(", ");
        check.warning(
            &fields,
            "another authentication method is on beside the plugin: Tyk requires every one of \
             them, so clients need that method's credentials as well as a token",
            "switch the other method off unless both are meant",
        );
    }
    if !matches!(def.base_identity.as_str(), "" | "custom_auth") {
        let field = check.field(Setting::BaseIdentity);
        check.warning(
            field,
            format!(
                "the session comes from {:?}, not from the plugin: its rate limits, quotas and \
                 $tyk_meta values (phantom_jwt among them) are not the plugin's",
                def.base_identity
            ),
            "set it to custom_auth, or leave it out",
        );
    }
}

/// `config_data` read by the plugin's own parser, as Tyk sends it (spec §6;
/// README: Per-API settings). `None` when the plugin would refuse it.
fn api_rules(check: &mut ApiCheck<'_>, cache: &ApiRulesCache) -> Option<Arc<ApiRules>> {
    let def = check.def;
    let object = def
        .config_data
        .as_ref()
        .and_then(serde_json::Value::as_object);
    if !def.config_data_enabled
        && let Some(data) = object.filter(|d| !d.is_empty())
    {
        let field = check.field(Setting::ConfigDataEnabled);
        let fix = match def.kind {
            Kind::Classic => format!("set {field} to false"),
            Kind::Oas => format!("set {field} to true"),
        };
        let ignored: Vec<&str> = REQUIREMENT_KEYS
            .iter()
            .copied()
            .filter(|key| data.contains_key(*key))
            .collect();
        if ignored.is_empty() {
            check.warning(
                field,
                "config_data is switched off: Tyk does not send it, and the plugin applies \
                     its global defaults instead",
                fix,
            );
        } else {
            check.error(
                field,
                format!(
                    "config_data is switched off: Tyk does not send it, so the plugin does not \
                         enforce {} and lets through tokens they would refuse",
                    ignored.join(", ")
                ),
                fix,
            );
        }
    }
    // Tyk sends config_data only when enabled and not empty (spec §6).
    let text = match (&def.config_data, def.config_data_enabled) {
        (Some(value), true) if object.is_none_or(|o| !o.is_empty()) => {
            Some(serde_json::to_string(value).unwrap_or_default())
        }
        _ => None,
    };
    match cache.resolve(text.as_deref(), |_| {}) {
        Ok(rules) => Some(rules),
        Err(why) => {
            let field = check.field(Setting::ConfigData);
            check.error(
                field,
                format!(
                    "the plugin refuses it ({why}), so every request to this API would be \
                     answered 500 Invalid API configuration"
                ),
                "correct config_data (the README's table of per-API settings lists every key)",
            );
            None
        }
    }
}

/// Requests the plugin never sees (spec §2.5, §4.1).
fn unauthenticated_paths(check: &mut ApiCheck<'_>) {
    if check.def.options_passthrough {
        let field = check.field(Setting::OptionsPassthrough);
        check.warning(
            field,
            "OPTIONS requests skip every middleware, authentication included: they reach the \
             upstream without the plugin, with whatever Authorization header the client sent \
             (an opaque token too)",
            "turn it off unless the upstream answers preflight requests itself",
        );
    }
    if !check.def.ignored.is_empty() {
        let field = check.field(Setting::IgnoredPaths);
        check.warning(
            field,
            format!(
                "requests to {} skip authentication: the plugin is not called, and the upstream \
                 receives the client's Authorization header as sent, opaque token included",
                check.def.ignored.join(", ")
            ),
            "remove the path from the ignored list, or remove Authorization for it with a \
             per-path header transform",
        );
    }
}
