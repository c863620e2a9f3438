//! Where the hooks come from (the API's own section, or its bundle's
//! manifest), and whether they reach the plugin.

use super::*;
use crate::apidef::bundles::Resolved;

/// The hooks the gateway will use: a bundle's manifest replaces the API's
/// own (spec §2.4, §7.3).
pub(super) fn effective_middleware(
    check: &mut ApiCheck<'_>,
    bundles: &Bundles,
) -> Option<Effective> {
    let def = check.def;
    // A field of the wrong type fails the whole definition in Tyk, bundle
    // or not.
    if let Err(e) = &def.middleware {
        let field = check.field(Setting::OwnMiddleware);
        check.error(
            field,
            format!("Tyk cannot read the plugin settings: {e}"),
            "correct the field as Tyk's schema writes it",
        );
    }
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
    def.middleware.as_ref().ok().map(|middleware| Effective {
        middleware: middleware.clone(),
        bundle: None,
    })
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
pub(super) fn hook_field(
    check: &ApiCheck<'_>,
    effective: &Effective,
    setting: Setting,
    key: &str,
) -> String {
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
pub(super) fn check(check: &mut ApiCheck<'_>, effective: &Effective) {
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
