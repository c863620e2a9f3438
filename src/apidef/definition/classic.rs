//! A classic (Tyk native) API definition.

use super::*;
use crate::bundle;

/// Authentication methods of a classic definition that run beside custom
/// authentication when switched on.
const CLASSIC_OTHER_AUTH: [&str; 7] = [
    "use_standard_auth",
    "use_basic_auth",
    "enable_jwt",
    "use_oauth2",
    "use_openid",
    "enable_signature_checking",
    "use_mutual_tls_auth",
];

pub(super) fn read(root: &Map<String, Value>, r: &mut Reader) -> ApiDefinition {
    let custom_middleware = match r.get(root, "", "custom_middleware") {
        None => Ok(Middleware::default()),
        Some(Value::Object(section)) => {
            bundle::read_custom_middleware(section, "custom_middleware")
        }
        Some(_) => Err(BundleError::FieldType {
            field: "custom_middleware".to_owned(),
            expected: "an object",
        }),
    };
    let mut versioned = true;
    let mut versions = Vec::new();
    let mut headers = Vec::new();
    let mut ignored = Vec::new();
    if let Some(data) = r.object(root, "", "version_data") {
        versioned = !r.boolean(data, "version_data", "not_versioned");
        if let Some(map) = r.object(data, "version_data", "versions") {
            for (name, version) in map {
                versions.push(name.clone());
                let at = format!("version_data.versions.{name}");
                let Value::Object(version) = version else {
                    r.problems.push((
                        at,
                        "must be an object; Tyk cannot load the definition".into(),
                    ));
                    continue;
                };
                headers.push(classic_headers(version, &at, r));
                ignored.extend(classic_ignored(version, &at, r));
            }
        }
    }
    // With options_passthrough, OPTIONS requests skip every middleware,
    // authentication included (spec/tyk-coprocess.md §2.5).
    let passthrough = match r.object(root, "", "CORS") {
        Some(cors) => r.boolean(cors, "CORS", "options_passthrough"),
        None => false,
    };
    let listen_path = match r.object(root, "", "proxy") {
        Some(proxy) => r.string(proxy, "proxy", "listen_path"),
        None => String::new(),
    };
    let other_auth = CLASSIC_OTHER_AUTH
        .iter()
        .filter(|key| r.boolean(root, "", key))
        .map(|key| (*key).to_owned())
        .collect();
    // `enable_coprocess_auth` is the older name; Tyk turns it into
    // `custom_plugin_auth_enabled` when it loads the definition.
    let custom_auth = r.boolean(root, "", "custom_plugin_auth_enabled")
        | r.boolean(root, "", "enable_coprocess_auth");
    ApiDefinition {
        kind: Kind::Classic,
        api_id: r.string(root, "", "api_id"),
        name: r.string(root, "", "name"),
        org_id: r.string(root, "", "org_id"),
        keyless: r.boolean(root, "", "use_keyless"),
        custom_auth,
        other_auth,
        base_identity: r.string(root, "", "base_identity_provided_by"),
        strip_auth_data: r.boolean(root, "", "strip_auth_data"),
        bundle: r.string(root, "", "custom_middleware_bundle"),
        bundle_enabled: !r.boolean(root, "", "custom_middleware_bundle_disabled"),
        middleware: custom_middleware,
        config_data: root.get("config_data").filter(|v| !v.is_null()).cloned(),
        config_data_enabled: !r.boolean(root, "", "config_data_disabled"),
        versioned,
        versions,
        headers,
        options_passthrough: passthrough,
        ignored,
        listen_path,
        problems: std::mem::take(&mut r.problems),
    }
}

/// A classic version's global request headers.
fn classic_headers(version: &Map<String, Value>, at: &str, r: &mut Reader) -> HeaderSet {
    let mut add = Vec::new();
    if let Some(map) = r.object(version, at, "global_headers") {
        for (name, value) in map {
            match value {
                Value::String(value) => add.push((name.clone(), value.clone())),
                _ => r.wrong_type(&join(at, "global_headers"), name, "a string"),
            }
        }
    }
    HeaderSet {
        field: join(at, "global_headers"),
        remove_field: join(at, "global_headers_remove"),
        enabled: !r.boolean(version, at, "global_headers_disabled"),
        add,
        remove: r.strings(version, at, "global_headers_remove"),
    }
}

/// A classic version's paths that skip authentication.
fn classic_ignored(version: &Map<String, Value>, at: &str, r: &mut Reader) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(extended) = r.object(version, at, "extended_paths") {
        let at = join(at, "extended_paths");
        for entry in r.array(extended, &at, "ignored").into_iter().flatten() {
            if let Some(path) = entry.get("path").and_then(Value::as_str) {
                paths.push(path.to_owned());
            }
        }
    }
    if let Some(old) = r.object(version, at, "paths") {
        paths.extend(r.strings(old, &join(at, "paths"), "ignored"));
    }
    paths
}
