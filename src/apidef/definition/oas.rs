//! An OpenAPI document with Tyk's `x-tyk-api-gateway` extension, read as
//! Tyk converts it into the classic structure.

use super::*;
use crate::bundle;

const X: &str = "x-tyk-api-gateway";

pub(super) fn read(x: &Map<String, Value>, r: &mut Reader) -> ApiDefinition {
    let empty = Map::new();
    let info = r.object(x, X, "info").unwrap_or(&empty);
    let at_info = join(X, "info");
    let server = r.object(x, X, "server").unwrap_or(&empty);
    let at_server = join(X, "server");
    let listen_path = match r.object(server, &at_server, "listenPath") {
        Some(listen) => r.string(listen, &join(&at_server, "listenPath"), "value"),
        None => String::new(),
    };
    let at_auth = join(&at_server, "authentication");
    let auth = r
        .object(server, &at_server, "authentication")
        .unwrap_or(&empty);
    let at_custom = join(&at_auth, "custom");
    let custom = r.object(auth, &at_auth, "custom").unwrap_or(&empty);
    let at_config = join(&at_custom, "config");
    let config = r.object(custom, &at_custom, "config");

    let mut other_auth = Vec::new();
    for method in ["hmac", "oidc"] {
        if let Some(section) = r.object(auth, &at_auth, method)
            && r.boolean(section, &join(&at_auth, method), "enabled")
        {
            other_auth.push(join(&at_auth, method));
        }
    }
    if let Some(schemes) = r.object(auth, &at_auth, "securitySchemes") {
        for (name, scheme) in schemes {
            if scheme.get("enabled").and_then(Value::as_bool) == Some(true) {
                other_auth.push(format!("{at_auth}.securitySchemes.{name}"));
            }
        }
    }

    let at_middleware = join(X, "middleware");
    let middleware = r.object(x, X, "middleware").unwrap_or(&empty);
    let at_global = join(&at_middleware, "global");
    let global = r
        .object(middleware, &at_middleware, "global")
        .unwrap_or(&empty);
    let at_plugin = join(&at_global, "pluginConfig");
    let plugin = r
        .object(global, &at_global, "pluginConfig")
        .unwrap_or(&empty);
    let (bundle, bundle_enabled) = match r.object(plugin, &at_plugin, "bundle") {
        Some(b) => {
            let at = join(&at_plugin, "bundle");
            (r.string(b, &at, "path"), r.boolean(b, &at, "enabled"))
        }
        None => (String::new(), false),
    };
    let (config_data, config_data_enabled) = match r.object(plugin, &at_plugin, "data") {
        Some(data) => {
            let at = join(&at_plugin, "data");
            let enabled = r.boolean(data, &at, "enabled");
            (data.get("value").filter(|v| !v.is_null()).cloned(), enabled)
        }
        None => (None, false),
    };

    // The classic section Tyk converts these settings into.
    let mut section = Map::new();
    if let Some(driver) = plugin.get("driver") {
        section.insert("driver".into(), driver.clone());
    }
    section.insert(
        "auth_check".into(),
        Value::Object(oas_hook(config, &at_config, r)),
    );
    if let Some(config) = config
        && let Some(extractor) = r.object(config, &at_config, "idExtractor")
    {
        section.insert(
            "id_extractor".into(),
            Value::Object(oas_extractor(
                extractor,
                &join(&at_config, "idExtractor"),
                r,
            )),
        );
    }
    for (list, plural, singular) in [
        ("pre", "prePlugins", "prePlugin"),
        (
            "post_key_auth",
            "postAuthenticationPlugins",
            "postAuthenticationPlugin",
        ),
        ("post", "postPlugins", "postPlugin"),
        ("response", "responsePlugins", "responsePlugin"),
    ] {
        // The plural form wins over the deprecated one, as in Tyk.
        let entries = match r.array(global, &at_global, plural) {
            Some(entries) => Some((entries, join(&at_global, plural))),
            None => r.object(global, &at_global, singular).and_then(|old| {
                let at = join(&at_global, singular);
                r.array(old, &at, "plugins")
                    .map(|entries| (entries, join(&at, "plugins")))
            }),
        };
        if let Some((entries, at)) = entries {
            let hooks = entries
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    Value::Object(oas_hook(entry.as_object(), &format!("{at}[{i}]"), r))
                })
                .collect();
            section.insert(list.into(), Value::Array(hooks));
        }
    }
    let own = bundle::read_custom_middleware(&section, &format!("{X} (as custom_middleware)"));

    let mut headers = Vec::new();
    if let Some(transform) = r.object(global, &at_global, "transformRequestHeaders") {
        let at = join(&at_global, "transformRequestHeaders");
        let mut add = Vec::new();
        for entry in r.array(transform, &at, "add").into_iter().flatten() {
            match (
                entry.get("name").and_then(Value::as_str),
                entry.get("value").and_then(Value::as_str),
            ) {
                (Some(name), Some(value)) => add.push((name.to_owned(), value.to_owned())),
                _ => r.wrong_type(&at, "add", "a list of {name, value} strings"),
            }
        }
        headers.push(HeaderSet {
            enabled: r.boolean(transform, &at, "enabled"),
            remove: r.strings(transform, &at, "remove"),
            remove_field: join(&at, "remove"),
            field: at,
            add,
        });
    }
    let options_passthrough = match r.object(global, &at_global, "cors") {
        Some(cors) => r.boolean(cors, &join(&at_global, "cors"), "optionsPassthrough"),
        None => false,
    };
    let mut ignored = Vec::new();
    if let Some(operations) = r.object(middleware, &at_middleware, "operations") {
        for (id, operation) in operations {
            let skips = operation
                .get("ignoreAuthentication")
                .and_then(|i| i.get("enabled"))
                .and_then(Value::as_bool)
                == Some(true);
            if skips {
                ignored.push(format!("operation {id}"));
            }
        }
    }

    ApiDefinition {
        kind: Kind::Oas,
        api_id: r.string(info, &at_info, "id"),
        name: r.string(info, &at_info, "name"),
        org_id: r.string(info, &at_info, "orgId"),
        // Tyk: `use_keyless` is the negation of authentication.enabled.
        keyless: !r.boolean(auth, &at_auth, "enabled"),
        custom_auth: r.boolean(custom, &at_custom, "enabled"),
        other_auth,
        base_identity: r.string(auth, &at_auth, "baseIdentityProvider"),
        strip_auth_data: r.boolean(auth, &at_auth, "stripAuthorizationData"),
        bundle,
        bundle_enabled,
        middleware: own,
        config_data,
        config_data_enabled,
        // OAS definitions are never versioned in the classic sense: each
        // version is a definition of its own, with its own API ID.
        versioned: false,
        versions: Vec::new(),
        headers,
        options_passthrough,
        ignored,
        listen_path,
        problems: std::mem::take(&mut r.problems),
    }
}

/// An OAS plugin entry (`{enabled, functionName, path, rawBodyOnly}`) as a
/// classic hook entry. An absent entry is a disabled one, as in Tyk's
/// conversion.
fn oas_hook(entry: Option<&Map<String, Value>>, at: &str, r: &mut Reader) -> Map<String, Value> {
    let mut hook = Map::new();
    let enabled = entry.is_some_and(|e| r.boolean(e, at, "enabled"));
    hook.insert("disabled".into(), Value::Bool(!enabled));
    if let Some(entry) = entry {
        for (from, to) in [
            ("functionName", "name"),
            ("path", "path"),
            ("rawBodyOnly", "raw_body_only"),
            ("requireSession", "require_session"),
        ] {
            if let Some(value) = entry.get(from) {
                hook.insert(to.into(), value.clone());
            }
        }
    }
    hook
}

/// An OAS `idExtractor` as the classic `id_extractor`.
fn oas_extractor(extractor: &Map<String, Value>, at: &str, r: &mut Reader) -> Map<String, Value> {
    let mut classic = Map::new();
    let enabled = r.boolean(extractor, at, "enabled");
    classic.insert("disabled".into(), Value::Bool(!enabled));
    for (from, to) in [("source", "extract_from"), ("with", "extract_with")] {
        if let Some(value) = extractor.get(from) {
            classic.insert(to.into(), value.clone());
        }
    }
    if let Some(config) = r.object(extractor, at, "config") {
        let mut converted = Map::new();
        for (from, to) in [
            ("headerName", "header_name"),
            ("formParamName", "param_name"),
        ] {
            if let Some(value) = config.get(from) {
                converted.insert(to.into(), value.clone());
            }
        }
        classic.insert("extractor_config".into(), Value::Object(converted));
    }
    classic
}
