//! Versions a session opens, and the URL DPoP proofs name.

use super::*;

/// A versioned classic API checks the requested version against the
/// session's access rights, which the plugin fills from `api_versions`
/// unless policies replace them (spec §4.7; README: Per-identity sessions).
pub(super) fn versions(check: &mut ApiCheck<'_>, rules: &ApiRules) {
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
                "the API is versioned (version_data.not_versioned is false or absent) and the \
                 session the plugin returns opens versions {} only: Tyk answers 403 Access to \
                 this API has been disallowed to requests for {}",
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
pub(super) fn dpop(check: &mut ApiCheck<'_>, rules: &ApiRules) {
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
