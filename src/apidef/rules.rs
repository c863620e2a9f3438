//! The checks of one API definition, and of the APIs that share Tyk's
//! id_extractor cache. Each rule rests on the gateway's behaviour as
//! spec/tyk-coprocess.md and the README describe it; the section is named
//! beside the rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api_rules::{
    ApiRules, ApiRulesCache, META_CLIENT_ID, META_JWT, META_SCOPE, META_SUB, META_TOKEN,
};
use crate::bundle::Middleware;
use crate::config::{ENV_JWT_IN_METADATA, ENV_SESSION_KEY_CLAIM};
use crate::tyk::INJECT_JWT_HOOK;

use super::bundles::{Bundles, Resolved};
use super::definition::{ApiDefinition, HeaderSet, Kind, Setting};
use super::report::{Finding, Severity};

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

/// The request header that forwards the JWT from the session when Tyk
/// answers from its id_extractor cache (README: The id_extractor fast path).
fn jwt_header() -> String {
    format!("Bearer $tyk_meta.{META_JWT}")
}

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
    let effective = effective_middleware(&mut check, bundles);
    if let Some(effective) = &effective {
        hooks(&mut check, effective);
    }
    let Some(rules) = api_rules(&mut check, rules) else {
        return (check.findings, None);
    };
    let headers = headers(&mut check, &rules);
    let extractor = effective.as_ref().and_then(|effective| {
        let extractor = effective.middleware.active_id_extractor()?;
        let inject = effective.middleware.hooks.iter().any(|(list, hook)| {
            *list == "post_key_auth" && hook.name == INJECT_JWT_HOOK && !hook.disabled
        });
        let field = hook_field(&check, effective, Setting::IdExtractor, "id_extractor");
        id_extractor(&mut check, extractor, &field, inject, &headers, &rules);
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
    if extractor.is_none() && rules.identity.jwt_in_metadata {
        let field = check.config_or_env("jwt_in_metadata", ENV_JWT_IN_METADATA);
        check.warning(
            &field,
            "jwt_in_metadata is on without an id_extractor: Tyk writes the session, JWT \
             included, to its Redis on every request, and the JWT is only needed there when Tyk \
             answers from its id_extractor cache",
            "leave jwt_in_metadata off for this API",
        );
    }
    strip_auth_data(&mut check, &headers, &rules);
    versions(&mut check, &rules);
    dpop(&mut check, &rules);
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

/// The hooks the gateway will use: a bundle's manifest replaces the API's
/// own (spec §2.4, §7.3).
fn effective_middleware(check: &mut ApiCheck<'_>, bundles: &Bundles) -> Option<Effective> {
    let def = check.def;
    let name = def.bundle.trim();
    if !name.is_empty() && def.bundle_enabled {
        let field = check.field(Setting::Bundle);
        if name.contains(',') {
            check.warning(
                field,
                "names several bundles separated by commas: only Tyk 5.15 and later merge \
                 several; an earlier gateway looks for one bundle of that whole name, cannot fetch \
                 it and does not load the API (404)",
                "name one bundle unless every gateway runs Tyk 5.15 or later",
            );
        }
        return match bundles.resolve(name) {
            Resolved::Found { middleware, .. } => {
                replaced_settings(check, &middleware, name);
                Some(Effective {
                    middleware,
                    bundle: Some(name.to_owned()),
                })
            }
            Resolved::Unknown(names) => {
                let shipped: Vec<&str> = Bundles::shipped_names().collect();
                check.error(
                    field,
                    format!(
                        "names bundle {}, which is neither one the plugin ships ({}) nor one given \
                         with --bundle or --manifest, so its hooks cannot be checked",
                        names.join(", "),
                        shipped.join(", ")
                    ),
                    "name a shipped bundle, or check this one too with --bundle <zip> (or its \
                     manifest with --manifest)",
                );
                None
            }
            Resolved::Refused { name, reason } => {
                check.error(
                    field,
                    format!(
                        "the gateway would refuse bundle {name}: {reason}; an API whose bundle \
                         fails is not loaded (its routes answer 404)"
                    ),
                    "rebuild the bundle with tyk-phantom-token bundle build and publish it under \
                     a new name",
                );
                None
            }
            Resolved::Conflict(why) => {
                check.error(
                    field,
                    format!("the gateway cannot merge these bundles: {why}"),
                    "name bundles of which exactly one sets auth_check, all with the grpc driver",
                );
                None
            }
        };
    }
    if !name.is_empty() {
        let field = check.field(Setting::BundleEnabled);
        check.warning(
            field,
            format!(
                "bundle {name} is switched off: Tyk does not load it, and the API's own plugin \
                 settings apply"
            ),
            "switch the bundle on, or remove its name",
        );
    }
    match &def.middleware {
        Ok(middleware) => Some(Effective {
            middleware: middleware.clone(),
            bundle: None,
        }),
        Err(e) => {
            let field = check.field(Setting::OwnMiddleware);
            check.error(
                field,
                format!("Tyk cannot read the plugin settings: {e}"),
                "correct the field as Tyk's schema writes it",
            );
            None
        }
    }
}

/// Settings of the API's own plugin section that a bundle replaces and
/// that say something else than the bundle (spec §2.4).
fn replaced_settings(check: &mut ApiCheck<'_>, bundle: &Middleware, name: &str) {
    let Ok(own) = &check.def.middleware else {
        return;
    };
    if own.active_id_extractor().is_some() && bundle.active_id_extractor().is_none() {
        let field = check.field(Setting::IdExtractor);
        check.warning(
            field,
            format!(
                "this id_extractor is ignored: the manifest of bundle {name} replaces the API's \
                 plugin settings, and it has no id_extractor"
            ),
            "name the bundle with the id_extractor (phantom-bundle-idx-v1.zip), or remove this one",
        );
    }
    if let (Some(mine), Some(theirs)) = (own.active_auth_check(), bundle.active_auth_check())
        && mine != theirs
    {
        let field = check.field(Setting::AuthCheck);
        check.warning(
            field,
            format!(
                "names the auth hook {mine:?}, but the manifest of bundle {name} replaces it: Tyk \
                 calls {theirs:?}"
            ),
            format!("write {theirs:?}, or leave the name to the bundle"),
        );
    }
}

/// The field of a hook setting: the API's own, or the bundle's manifest.
fn hook_field(check: &ApiCheck<'_>, effective: &Effective, setting: Setting, key: &str) -> String {
    match &effective.bundle {
        Some(bundle) => format!(
            "{} ({bundle}: manifest custom_middleware.{key})",
            check.field(Setting::Bundle)
        ),
        None => check.field(setting).to_owned(),
    }
}

/// The driver, the auth hook and the other hooks (spec §2.1, §2.6, §4.10,
/// §5.1; README: Bundles).
fn hooks(check: &mut ApiCheck<'_>, effective: &Effective) {
    let middleware = &effective.middleware;
    if middleware.driver != "grpc" {
        let field = hook_field(check, effective, Setting::Driver, "driver");
        let problem = if middleware.driver.is_empty() {
            "no plugin driver is set: Tyk cannot call a gRPC plugin without the grpc driver".into()
        } else {
            format!(
                "the driver is {:?}: Tyk hands the hooks to that runtime, not to this gRPC plugin",
                middleware.driver
            )
        };
        check.error(&field, problem, "set the driver to grpc");
    }
    let field = hook_field(check, effective, Setting::AuthCheck, "auth_check");
    let enable = match check.def.kind {
        Kind::Classic => {
            format!("set auth_check {{\"name\": \"{AUTH_HOOK}\", \"raw_body_only\": true}}")
        }
        Kind::Oas => format!(
            "set config {{\"enabled\": true, \"functionName\": \"{AUTH_HOOK}\", \"rawBodyOnly\": true}}"
        ),
    };
    let enable = if effective.bundle.is_some() {
        "name a bundle whose manifest has an auth_check (phantom-bundle-v1.zip)".to_owned()
    } else {
        enable
    };
    match &middleware.auth_check {
        None => check.error(
            &field,
            "there is no auth_check: Tyk has no custom-auth hook to call, so the plugin never \
             decides",
            enable,
        ),
        Some(hook) if hook.disabled => check.error(
            &field,
            "the auth_check is disabled: Tyk does not call the plugin's auth hook",
            enable,
        ),
        Some(hook) => {
            if hook.name.is_empty() {
                check.warning(
                    &field,
                    "the auth_check has no name: Tyk still calls the plugin, with an empty hook \
                     name (the plugin decides every auth call whatever its name)",
                    format!("name it {AUTH_HOOK}, as the shipped manifests do"),
                );
            }
            if !hook.raw_body_only {
                check.warning(
                    &field,
                    "raw_body_only is off: Tyk sends each request body to the plugin twice and \
                     the plugin echoes both, so large bodies pass the gRPC message limits and \
                     fail (403 Key not authorised)",
                    "set raw_body_only (OAS: rawBodyOnly) to true",
                );
            }
        }
    }
    for (list, hook) in middleware.hooks.iter().filter(|(_, h)| !h.disabled) {
        if *list == "post_key_auth" && hook.name == INJECT_JWT_HOOK {
            continue;
        }
        let setting = if *list == "post_key_auth" {
            Setting::PostKeyAuth
        } else {
            Setting::OtherHooks
        };
        let field = hook_field(check, effective, setting, list);
        check.warning(
            &field,
            format!(
                "Tyk calls the {list} hook {:?} on every request, but the plugin implements no \
                 such hook and returns the request unchanged",
                hook.name
            ),
            format!(
                "remove it; a post_key_auth hook that forwards the JWT is named \
                 {INJECT_JWT_HOOK} (names are case-sensitive)"
            ),
        );
    }
    if let Some(extractor) = &middleware.id_extractor
        && !extractor.disabled
        && !extractor.is_active()
    {
        let field = hook_field(check, effective, Setting::IdExtractor, "id_extractor");
        check.warning(
            &field,
            format!(
                "extract_with is {:?}: Tyk implements value, regex and xpath only, so this \
                 id_extractor is off",
                extractor.extract_with
            ),
            "set extract_with to value, or remove the id_extractor",
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

/// What the header rules learnt, for the rules that depend on it.
struct Headers {
    /// Every header set Tyk applies injects the JWT from the session.
    jwt_everywhere: bool,
    /// The header sets that do not (disabled, or without the header).
    without_jwt: Vec<String>,
}

/// Request headers injected after authentication: they replace what the
/// plugin set, and `$tyk_meta` reads the session's metadata (spec §4.3,
/// §4.9; README: Per-identity sessions, The id_extractor fast path).
fn headers(check: &mut ApiCheck<'_>, rules: &ApiRules) -> Headers {
    let jwt_header = jwt_header();
    let mut known: Vec<&str> = vec![META_TOKEN, META_SUB, META_CLIENT_ID, META_SCOPE];
    if rules.identity.jwt_in_metadata {
        known.push(META_JWT);
    }
    known.extend(
        rules
            .identity
            .metadata_claims
            .iter()
            .map(|(_, key)| key.as_str()),
    );
    let mut without_jwt = Vec::new();
    let sets: Vec<HeaderSet> = check.def.headers.clone();
    for set in &sets {
        let injects_jwt = set.enabled
            && set
                .add
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("authorization") && v.trim() == jwt_header);
        if !injects_jwt {
            without_jwt.push(set.field.clone());
        }
        if !set.enabled {
            continue;
        }
        for (name, value) in &set.add {
            if name.eq_ignore_ascii_case("authorization") {
                if value.trim() == jwt_header {
                    if !rules.identity.jwt_in_metadata {
                        check.error(
                            &set.field,
                            format!(
                                "injects Authorization: {jwt_header}, but the plugin puts the JWT \
                                 in the session only with jwt_in_metadata: the upstream gets an \
                                 empty Bearer on every request"
                            ),
                            "set \"jwt_in_metadata\": true in config_data (or \
                             JWT_IN_METADATA=true for every API)",
                        );
                    }
                } else {
                    // The value is not shown: it may be a credential.
                    check.error(
                        &set.field,
                        "sets Authorization to another value: Tyk injects it after \
                         authentication, replacing the JWT the plugin forwards",
                        format!("remove it, or set it to {jwt_header} (id_extractor mode)"),
                    );
                }
            }
            let checked_above =
                name.eq_ignore_ascii_case("authorization") && value.trim() == jwt_header;
            for key in tyk_meta_keys(value) {
                if !checked_above && !known.contains(&key.as_str()) {
                    check.warning(
                        &set.field,
                        format!(
                            "header {name} uses $tyk_meta.{key}, which the plugin does not set for \
                             this API (it sets {}): Tyk sends an empty value unless a policy \
                             sets that metadata",
                            known.join(", ")
                        ),
                        "add the claim to metadata_claims, or correct the key",
                    );
                }
            }
        }
        let re_added = set
            .add
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if !re_added
            && set
                .remove
                .iter()
                .any(|n| n.eq_ignore_ascii_case("authorization"))
        {
            check.error(
                &format!("{}_remove", set.field),
                "removes Authorization after authentication: the upstream gets no JWT",
                "take Authorization out of the list",
            );
        }
    }
    Headers {
        jwt_everywhere: !sets.is_empty() && without_jwt.is_empty(),
        without_jwt,
    }
}

/// The keys of the `$tyk_meta.KEY` references in a header value (Tyk's key
/// syntax: `[A-Za-z0-9_.-]+`, spec §4.9).
pub(super) fn tyk_meta_keys(value: &str) -> Vec<String> {
    const PREFIX: &str = "$tyk_meta.";
    let mut keys = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let key: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
            .collect();
        if !key.is_empty() {
            keys.push(key);
        }
    }
    keys
}

/// Tyk's id_extractor: what it keys sessions by, and how the JWT still
/// reaches the upstream when Tyk answers without calling the plugin (spec
/// §5; README: The id_extractor fast path).
fn id_extractor(
    check: &mut ApiCheck<'_>,
    extractor: &crate::bundle::IdExtractor,
    field: &str,
    inject_hook: bool,
    headers: &Headers,
    rules: &ApiRules,
) {
    let from = extractor.extract_from.as_str();
    let with = extractor.extract_with.as_str();
    let authorization =
        from == "header" && extractor.header_name.eq_ignore_ascii_case("authorization");
    let to_authorization = "extract from the header Authorization with value, the credential the \
                            plugin checks";
    if from == "header" && extractor.header_name.is_empty() {
        check.error(
            field,
            "the id_extractor names no header: extraction fails on every request, and Tyk answers \
             400 Authorization field missing without calling the plugin",
            to_authorization,
        );
    } else if from == "header" && !authorization {
        check.error(
            field,
            format!(
                "the id_extractor keys Tyk's session cache by the header {:?}, not by the \
                 Authorization credential the plugin checks: a request that carries another \
                 client's {:?} value is answered with that client's cached session, its JWT \
                 included, without calling the plugin",
                extractor.header_name, extractor.header_name
            ),
            to_authorization,
        );
    } else if with == "value" && (from == "body" || from == "querystring") {
        check.error(
            field,
            format!(
                "a value extractor reading the {from} yields an empty ID without error, so every \
                 request maps to one cached session: after one client's valid token, Tyk lets \
                 every request in with that client's session and JWT until the deadline"
            ),
            to_authorization,
        );
    } else if !authorization {
        let what = if from == "form" {
            format!(
                "the form parameter {:?} (the form includes the query string)",
                extractor.param_name
            )
        } else {
            format!("the {from}")
        };
        check.error(
            field,
            format!(
                "the id_extractor keys Tyk's session cache by {what}, not by the Authorization \
                 credential the plugin checks: a request that carries another client's value is \
                 answered with that client's cached session without calling the plugin"
            ),
            to_authorization,
        );
    } else if with != "value" {
        check.warning(
            field,
            format!(
                "the {with} extractor keys Tyk's session cache by the part of Authorization its \
                 expression matches: two tokens with the same match share one cached session"
            ),
            "use extract_with value, which keys the cache by the whole Authorization value",
        );
    }

    let jwt_in_metadata = rules.identity.jwt_in_metadata;
    let header = jwt_header();
    // Some header sets inject the JWT, others do not (a versioned API).
    let partly = check
        .def
        .headers
        .iter()
        .any(|s| !headers.without_jwt.contains(&s.field));
    if inject_hook || headers.jwt_everywhere {
        // The JWT reaches the upstream, or the header rule already reported
        // the missing jwt_in_metadata.
    } else if jwt_in_metadata && partly {
        for set in headers.without_jwt.clone() {
            check.error(
                &set,
                format!(
                    "with the id_extractor, Tyk answers repeated requests from its cache \
                     without calling the plugin; without Authorization: {header} here, the \
                     upstream gets the client's opaque token on those requests"
                ),
                format!("add the request header Authorization: {header} here too"),
            );
        }
    } else {
        let place = match check.def.kind {
            Kind::Classic => "global_headers of every version",
            Kind::Oas => "middleware.global.transformRequestHeaders",
        };
        check.error(
            field,
            "with the id_extractor, Tyk answers repeated requests from its cache without \
             calling the plugin, so nothing replaces the client's Authorization header: the \
             opaque token would reach the upstream",
            format!(
                "set \"jwt_in_metadata\": true in config_data and add the request header \
                 Authorization: {header} ({place}), or add the post_key_auth hook \
                 {INJECT_JWT_HOOK} to the manifest"
            ),
        );
    }
    if rules.identity.session_key_claim.is_some() {
        let at = check.config_or_env("session_key_claim", ENV_SESSION_KEY_CLAIM);
        check.warning(
            &at,
            "with the id_extractor, Tyk keys sessions by the extracted Authorization value, so \
             rate limits and quotas stay per token, not per identity",
            "use the bundle without id_extractor where limits must be per identity",
        );
    }
}

/// `strip_auth_data` runs after authentication and removes the header that
/// carries the JWT (README: A classic API definition).
fn strip_auth_data(check: &mut ApiCheck<'_>, headers: &Headers, rules: &ApiRules) {
    if !check.def.strip_auth_data {
        return;
    }
    let field = check.field(Setting::StripAuthData);
    if headers.jwt_everywhere && rules.identity.jwt_in_metadata {
        check.warning(
            field,
            "strip_auth_data removes the Authorization header after authentication; it is \
             harmless here only because the injected header puts the JWT back",
            format!("set {field} to false"),
        );
    } else {
        check.error(
            field,
            "strip_auth_data removes the Authorization header after authentication, the header \
             that carries the JWT: the upstream gets no JWT",
            format!("set {field} to false"),
        );
    }
}

/// A versioned classic API checks the requested version against the
/// session's access rights, which the plugin fills from `api_versions`
/// unless policies replace them (spec §4.7; README: Per-identity sessions).
fn versions(check: &mut ApiCheck<'_>, rules: &ApiRules) {
    let def = check.def;
    if def.kind != Kind::Classic || !def.versioned || def.versions.is_empty() {
        return;
    }
    let listed = rules.api_versions();
    let missing: Vec<&String> = def
        .versions
        .iter()
        .filter(|v| !listed.contains(v))
        .collect();
    let field = check.config_key("api_versions");
    let policies =
        !rules.identity.apply_policies.is_empty() || rules.identity.policy_claim.is_some();
    if policies {
        if !missing.is_empty() {
            check.warning(
                &field,
                format!(
                    "the sessions carry policies, whose access rights replace the plugin's: they \
                     must grant versions {} of this API, or Tyk answers 403 to requests for them",
                    quoted(&missing)
                ),
                "grant these versions in the policies",
            );
        }
    } else if !missing.is_empty() {
        let all: Vec<&String> = def.versions.iter().collect();
        check.error(
            &field,
            format!(
                "the API is versioned (version_data.not_versioned is false) and the session the \
                 plugin returns opens versions {} only: Tyk answers 403 Access to this API has \
                 been disallowed to requests for {}",
                quoted(&listed.iter().collect::<Vec<_>>()),
                quoted(&missing)
            ),
            format!(
                "set \"api_versions\": [{}] in config_data",
                all.iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if rules.api_versions.is_some() {
        let unknown: Vec<&String> = listed
            .iter()
            .filter(|v| !def.versions.contains(v))
            .collect();
        if !unknown.is_empty() {
            check.warning(
                &field,
                format!(
                    "names {}, which {} not a version of this API (Tyk matches version names \
                     exactly)",
                    quoted(&unknown),
                    if unknown.len() == 1 { "is" } else { "are" }
                ),
                "correct or remove the name",
            );
        }
    }
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// DPoP proofs name the URL the client called; the plugin rebuilds it from
/// `dpop_base_url` or the request (README: DPoP, The URL in `htu`).
fn dpop(check: &mut ApiCheck<'_>, rules: &ApiRules) {
    let field = check.config_key("dpop_base_url");
    match &rules.dpop.base_url {
        None if rules.dpop.required => check.warning(
            &field,
            "dpop_required without dpop_base_url: proofs must name the URL rebuilt from the \
             scheme Tyk saw and the Host header the client chose, so behind a load balancer that \
             terminates TLS or changes the host every proof fails (401 invalid_dpop_proof)",
            "set dpop_base_url to the external origin clients call, e.g. https://api.example.com",
        ),
        Some(url) => {
            let listen = check.def.listen_path.trim_end_matches('/');
            let base = url.path().trim_end_matches('/');
            if !listen.is_empty() && base.ends_with(listen) {
                check.warning(
                    &field,
                    format!(
                        "dpop_base_url ends with the listen path {listen:?}, but the path Tyk \
                         sees already starts with it: the URL the plugin expects in proofs \
                         repeats it, and proofs for the real URL fail"
                    ),
                    "leave the listen path out of dpop_base_url",
                );
            }
        }
        None => {}
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
