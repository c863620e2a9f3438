//! Checking Tyk API definitions against what the plugin needs, before Tyk
//! loads them (`tyk-phantom-token check-api`).
//!
//! Tyk accepts definitions with which the plugin cannot do its job: an API in
//! the id_extractor mode without the header that forwards the JWT sends the
//! opaque token upstream whenever Tyk answers from its own cache (the plugin
//! is not called then, so nothing it does at run-time can stop it); a
//! versioned API whose `config_data` does not list its versions locks its
//! users out; a misspelt `config_data` key makes every request a 500. This
//! module finds such set-ups in the definitions themselves, classic and OAS,
//! with the bundles they name.
//!
//! It judges with the plugin's own code wherever the plugin has some: the
//! API's `config_data` goes through [`ApiRulesCache::resolve`], the very call
//! the gRPC service makes, over the global identity rules of the plugin's
//! environment; manifests and the API's own plugin section go through the
//! bundle module's parser.
//!
//! # Layout
//!
//! - `definition`: classic and OAS definitions read into one view of what
//!   the plugin depends on, with each setting's field path.
//! - `bundles`: the bundles an API may name (shipped, given, or a manifest),
//!   merged as the gateway merges several.
//! - `rules`: the checks of one API, and of APIs that share Tyk's
//!   id_extractor cache.
//! - `report`: findings, printed as text or JSON.

mod bundles;
mod definition;
mod report;
mod rules;

pub use bundles::{Bundles, Resolved, SHIPPED};
pub use definition::{ApiDefinition, DefinitionError, HeaderSet, Kind, Setting, read_definition};
pub use report::{Checked, EXIT_ERRORS, EXIT_UNREADABLE, Finding, Report, Severity, Unreadable};

use crate::api_rules::{ApiRulesCache, IdentityRules};

/// Checks `definitions` (each with the file it was read from) against the
/// `bundles` they may name, with `globals` as the plugin's global identity
/// rules. Adds the APIs and their findings to `report`.
pub fn check(
    definitions: &[(String, ApiDefinition)],
    bundles: &Bundles,
    globals: &IdentityRules,
    report: &mut Report,
) {
    let cache = ApiRulesCache::new(globals.clone());
    let mut extractors = Vec::new();
    for (file, def) in definitions {
        report.apis.push(Checked {
            file: file.clone(),
            api: def.label(),
            kind: match def.kind {
                Kind::Classic => "classic",
                Kind::Oas => "oas",
            },
        });
        let (findings, extractor) = rules::check_api(file, def, bundles, &cache);
        report.findings.extend(findings);
        extractors.extend(extractor);
    }
    report
        .findings
        .extend(rules::shared_extractor_cache(&extractors));
    for (name, path) in bundles.named() {
        let named = definitions
            .iter()
            .any(|(_, def)| def.bundle_enabled && def.bundle.split(',').any(|n| n.trim() == name));
        if !named {
            report.findings.push(Finding {
                severity: Severity::Warning,
                file: path.to_owned(),
                api: String::new(),
                field: "--bundle".to_owned(),
                problem: format!(
                    "no API definition checked names the bundle {name:?} (Tyk matches bundle \
                     names exactly)"
                ),
                fix: "correct the bundle name in the definitions, or leave this bundle out"
                    .to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
