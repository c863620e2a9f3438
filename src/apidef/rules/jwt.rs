//! What reaches the upstream after authentication: injected headers, Tyk's
//! id_extractor cache, and `strip_auth_data`.

use super::*;
use crate::api_rules::{META_CLIENT_ID, META_JWT, META_SCOPE, META_SUB, META_TOKEN};
use crate::apidef::definition::HeaderSet;
use crate::config::ENV_SESSION_KEY_CLAIM;

/// The request header that forwards the JWT from the session when Tyk
/// answers from its id_extractor cache (README: The id_extractor fast path).
fn jwt_header() -> String {
    format!("Bearer $tyk_meta.{META_JWT}")
}

/// What the header rules learnt, for the rules that depend on it.
pub(super) struct Headers {
    /// Every header set Tyk applies injects the JWT from the session.
    jwt_everywhere: bool,
    /// The header sets that do not (disabled, or without the header).
    without_jwt: Vec<String>,
}

/// Request headers injected after authentication: they replace what the
/// plugin set, and `$tyk_meta` reads the session's metadata (spec §4.3,
/// §4.9; README: Per-identity sessions, The id_extractor fast path).
pub(super) fn headers(check: &mut ApiCheck<'_>, rules: &ApiRules) -> Headers {
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
                &set.remove_field,
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
pub(crate) fn tyk_meta_keys(value: &str) -> Vec<String> {
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
pub(super) fn id_extractor(
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
pub(super) fn strip_auth_data(check: &mut ApiCheck<'_>, headers: &Headers, rules: &ApiRules) {
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
