//! Rules and readers one by one. The corpus of whole definitions and the
//! command line are tested in `tests/check_api.rs`.

use serde_json::{Value, json};

use super::*;
use crate::bundle;

/// A clean classic definition, with `change` applied.
fn classic(change: impl FnOnce(&mut Value)) -> Value {
    let mut def = json!({
        "name": "Orders",
        "api_id": "orders",
        "org_id": "acme",
        "use_keyless": false,
        "custom_plugin_auth_enabled": true,
        "custom_middleware_bundle": "phantom-bundle-v1.zip",
        "config_data": {"required_scopes": ["orders:read"]},
        "version_data": {"not_versioned": true, "versions": {"Default": {"name": "Default"}}},
        "proxy": {"listen_path": "/orders/", "target_url": "http://orders.internal/"}
    });
    change(&mut def);
    def
}

/// An id_extractor API that forwards the JWT from the session.
fn cached(change: impl FnOnce(&mut Value)) -> Value {
    classic(|def| {
        def["custom_middleware_bundle"] = json!("phantom-bundle-idx-v1.zip");
        def["config_data"] = json!({"jwt_in_metadata": true});
        def["version_data"]["versions"]["Default"]["global_headers"] =
            json!({"Authorization": "Bearer $tyk_meta.phantom_jwt"});
        change(def);
    })
}

/// A clean OAS definition's `x-tyk-api-gateway`, with `change` applied.
fn oas(change: impl FnOnce(&mut Value)) -> Value {
    let mut def = json!({
        "openapi": "3.0.3",
        "info": {"title": "Orders", "version": "1"},
        "paths": {},
        "x-tyk-api-gateway": {
            "info": {"id": "orders-oas", "name": "Orders", "orgId": "acme", "state": {"active": true}},
            "server": {
                "listenPath": {"value": "/orders/"},
                "authentication": {"enabled": true, "custom": {"enabled": true, "config": {
                    "enabled": true, "functionName": "PhantomAuthCheck", "rawBodyOnly": true}}}
            },
            "middleware": {"global": {"pluginConfig": {"driver": "grpc",
                "data": {"enabled": true, "value": {"required_scopes": ["orders:read"]}}}}}
        }
    });
    change(&mut def["x-tyk-api-gateway"]);
    def
}

fn report_with(defs: &[Value], bundles: &Bundles, globals: &IdentityRules) -> Report {
    let read: Vec<(String, ApiDefinition)> = defs
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let bytes = serde_json::to_vec(def).unwrap();
            (format!("api-{i}.json"), read_definition(&bytes).unwrap())
        })
        .collect();
    let mut report = Report::default();
    check(&read, bundles, globals, &mut report);
    report
}

/// `(severity, field, problem)` of each finding about `defs`.
fn findings(defs: &[Value]) -> Vec<(Severity, String, String)> {
    report_with(
        defs,
        &Bundles::shipped().unwrap(),
        &IdentityRules::default(),
    )
    .findings
    .into_iter()
    .map(|f| (f.severity, f.field, f.problem))
    .collect()
}

/// The one finding about `def`.
fn only(def: Value) -> (Severity, String, String) {
    let mut found = findings(&[def]);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.remove(0)
}

#[test]
fn clean_definitions_have_no_findings() {
    for def in [classic(|_| {}), cached(|_| {}), oas(|_| {})] {
        assert_eq!(findings(std::slice::from_ref(&def)), [], "{def}");
    }
}

#[test]
fn the_shipped_manifests_are_the_committed_bundles() {
    let bundles = Bundles::shipped().unwrap();
    for (name, manifest) in SHIPPED {
        let zip = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bundles")
            .join(name);
        let verified = bundle::verify(&zip, None).unwrap();
        let compiled = bundle::read_manifest(manifest.as_bytes(), name).unwrap();
        assert_eq!(verified.middleware, compiled, "{name}");
        assert_eq!(compiled.driver, "grpc", "{name}");
        assert_eq!(compiled.active_auth_check(), Some("PhantomAuthCheck"));
        assert!(matches!(bundles.resolve(name), Resolved::Found { .. }));
    }
}

#[test]
fn bundles_are_merged_as_the_gateway_merges_them() {
    let bundles = Bundles::shipped().unwrap();
    // The auth hook of one, the extractor of the first that has one.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("hooks.json");
    std::fs::write(
        &manifest,
        json!({"custom_middleware": {"driver": "grpc",
            "post_key_auth": [{"name": "InjectJwtPostKeyAuth"}]}})
        .to_string(),
    )
    .unwrap();
    let zip = dir.path().join("hooks-v1.zip");
    bundle::build(&manifest, &zip, None).unwrap();
    let mut with_zip = bundles.clone();
    with_zip.add_zip(&zip, true).unwrap();
    let Resolved::Found {
        middleware,
        origins,
    } = with_zip.resolve("phantom-bundle-idx-v1.zip, hooks-v1.zip")
    else {
        panic!("not merged");
    };
    assert_eq!(origins.len(), 2);
    assert_eq!(middleware.active_auth_check(), Some("PhantomAuthCheck"));
    assert_eq!(
        middleware.active_hooks(),
        ["post_key_auth:InjectJwtPostKeyAuth"]
    );
    assert!(middleware.active_id_extractor().is_some());

    assert!(matches!(
        bundles.resolve("phantom-bundle-v1.zip,phantom-bundle.zip"),
        Resolved::Conflict(why) if why.contains("auth_check")
    ));
    assert_eq!(
        bundles.resolve("phantom-bundle-v1.zip, nowhere.zip"),
        Resolved::Unknown(vec!["nowhere.zip".to_owned()])
    );
}

#[test]
fn a_manifest_stands_for_every_name_except_the_zips_given() {
    let mut bundles = Bundles::shipped().unwrap();
    let manifest = json!({"custom_middleware": {"driver": "python", "auth_check": {"name": "X"}}});
    bundles
        .set_manifest(
            std::path::Path::new("m.json"),
            manifest.to_string().as_bytes(),
        )
        .unwrap();
    for name in ["phantom-bundle-v1.zip", "anything-v7.zip"] {
        let Resolved::Found { middleware, .. } = bundles.resolve(name) else {
            panic!("{name} not found");
        };
        assert_eq!(middleware.driver, "python");
    }
}

#[test]
fn oas_plugin_settings_are_read_as_tyk_converts_them() {
    let def = oas(|x| {
        x["server"]["authentication"]["custom"]["config"]["idExtractor"] = json!({
            "enabled": true, "source": "header", "with": "value",
            "config": {"headerName": "Authorization"}});
        x["middleware"]["global"]["postAuthenticationPlugins"] = json!([
            {"enabled": true, "functionName": "InjectJwtPostKeyAuth", "rawBodyOnly": true},
            {"enabled": false, "functionName": "Off"}]);
    });
    let read = read_definition(def.to_string().as_bytes()).unwrap();
    assert_eq!(read.kind, Kind::Oas);
    assert_eq!(read.label(), "orders-oas");
    assert!(!read.keyless && read.custom_auth);
    let own = read.middleware.unwrap();
    assert_eq!(own.driver, "grpc");
    let auth = own.auth_check.as_ref().unwrap();
    assert_eq!(
        (auth.name.as_str(), auth.raw_body_only, auth.disabled),
        ("PhantomAuthCheck", true, false)
    );
    assert_eq!(own.active_hooks(), ["post_key_auth:InjectJwtPostKeyAuth"]);
    let extractor = own.active_id_extractor().unwrap();
    assert_eq!(
        (
            extractor.extract_from.as_str(),
            extractor.header_name.as_str()
        ),
        ("header", "Authorization")
    );

    // No custom.config: Tyk's conversion disables the auth hook. No
    // authentication section: the API is keyless.
    let bare = oas(|x| {
        x["server"] = json!({"listenPath": {"value": "/orders/"}});
    });
    let read = read_definition(bare.to_string().as_bytes()).unwrap();
    assert!(read.keyless && !read.custom_auth);
    assert!(read.middleware.unwrap().auth_check.unwrap().disabled);
}

#[test]
fn fields_of_the_wrong_type_or_case_are_errors_named_by_path() {
    let (severity, field, problem) = only(classic(|def| {
        def["strip_auth_data"] = json!("false");
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Error, "strip_auth_data")
    );
    assert!(problem.contains("true or false"), "{problem}");

    let (severity, field, problem) = only(classic(|def| {
        def["Use_Keyless"] = json!(true);
    }));
    assert_eq!((severity, field.as_str()), (Severity::Error, "Use_Keyless"));
    assert!(problem.contains("\"use_keyless\""), "{problem}");

    // Reported with a bundle too: Tyk cannot load the definition either way.
    for bundle in ["", "phantom-bundle-v1.zip"] {
        let found = findings(&[classic(|def| {
            def["custom_middleware_bundle"] = json!(bundle);
            def["custom_middleware"] = json!({"driver": "grpc", "auth_check": {"name": 7}});
        })]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].1, "custom_middleware");
        assert!(
            found[0].2.contains("custom_middleware.auth_check.name"),
            "{found:#?}"
        );
    }
}

#[test]
fn the_older_name_of_custom_auth_counts() {
    let def = classic(|def| {
        def.as_object_mut()
            .unwrap()
            .remove("custom_plugin_auth_enabled");
        def["enable_coprocess_auth"] = json!(true);
    });
    assert_eq!(findings(&[def]), []);
}

#[test]
fn an_api_without_any_plugin_setting_is_skipped_with_a_warning() {
    let (severity, _, problem) = only(json!({
        "api_id": "health", "use_keyless": true,
        "proxy": {"listen_path": "/health/"}}));
    assert_eq!(severity, Severity::Warning);
    assert!(problem.contains("does not use the plugin"), "{problem}");
}

#[test]
fn another_auth_method_or_identity_provider_is_a_warning() {
    let (severity, field, _) = only(classic(|def| def["enable_jwt"] = json!(true)));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "enable_jwt")
    );
    let (severity, field, problem) = only(classic(|def| {
        def["base_identity_provided_by"] = json!("auth_token")
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "base_identity_provided_by")
    );
    assert!(problem.contains("phantom_jwt"), "{problem}");
}

#[test]
fn a_disabled_bundle_leaves_the_apis_own_hooks() {
    let found = findings(&[classic(|def| {
        def["custom_middleware_bundle_disabled"] = json!(true);
    })]);
    let fields: Vec<&str> = found.iter().map(|(_, f, _)| f.as_str()).collect();
    // Switched off, and without hooks of its own the plugin is not called.
    assert_eq!(
        fields,
        [
            "custom_middleware_bundle_disabled",
            "custom_middleware.driver",
            "custom_middleware.auth_check"
        ]
    );
    assert_eq!(found[0].0, Severity::Warning);
    assert!(found[1..].iter().all(|(s, _, _)| *s == Severity::Error));
}

#[test]
fn inline_hooks_are_checked_for_name_and_extractor_method() {
    let inline = |middleware: Value| {
        classic(|def| {
            def["custom_middleware_bundle"] = json!("");
            def["custom_middleware"] = middleware;
        })
    };
    let (severity, _, problem) = only(inline(
        json!({"driver": "grpc", "auth_check": {"name": "", "raw_body_only": true}}),
    ));
    assert_eq!(severity, Severity::Warning);
    assert!(problem.contains("no name"), "{problem}");

    let (severity, _, problem) = only(inline(json!({"driver": "grpc"})));
    assert_eq!(severity, Severity::Error);
    assert!(problem.contains("no auth_check"), "{problem}");

    let (severity, field, problem) = only(inline(json!({"driver": "grpc",
        "auth_check": {"name": "PhantomAuthCheck", "raw_body_only": true},
        "id_extractor": {"extract_from": "header", "extract_with": "jsonpath"}})));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "custom_middleware.id_extractor")
    );
    assert!(problem.contains("this id_extractor is off"), "{problem}");

    let found = findings(&[inline(json!({"driver": "grpc",
        "auth_check": {"name": "PhantomAuthCheck", "raw_body_only": true},
        "id_extractor": {"extract_from": "header", "extract_with": "regex",
            "extractor_config": {"header_name": "Authorization"}}}))]);
    assert!(
        found.iter().any(|(s, _, p)| *s == Severity::Warning
            && p.contains("two tokens with the same match share one cached session")),
        "{found:#?}"
    );
}

#[test]
fn the_apis_own_auth_hook_name_is_replaced_by_the_bundles() {
    let (severity, field, problem) = only(oas(|x| {
        x["server"]["authentication"]["custom"]["config"]["functionName"] = json!("MyAuth");
        x["middleware"]["global"]["pluginConfig"]["bundle"] =
            json!({"enabled": true, "path": "phantom-bundle-v1.zip"});
    }));
    assert_eq!(severity, Severity::Warning);
    assert_eq!(
        field,
        "x-tyk-api-gateway.server.authentication.custom.config"
    );
    assert!(
        problem.contains("Tyk calls \"PhantomAuthCheck\""),
        "{problem}"
    );
}

#[test]
fn the_post_key_auth_hook_forwards_the_jwt_in_the_id_extractor_mode() {
    let def = classic(|def| {
        def["custom_middleware_bundle"] = json!("");
        def["custom_middleware"] = json!({"driver": "grpc",
            "auth_check": {"name": "PhantomAuthCheck", "raw_body_only": true},
            "post_key_auth": [{"name": "InjectJwtPostKeyAuth", "raw_body_only": true}],
            "id_extractor": {"extract_from": "header", "extract_with": "value",
                "extractor_config": {"header_name": "Authorization"}}});
    });
    assert_eq!(findings(&[def]), []);
}

#[test]
fn tyk_meta_references_the_plugin_never_sets_are_warned_about() {
    let (severity, field, problem) = only(classic(|def| {
        def["version_data"]["versions"]["Default"]["global_headers"] =
            json!({"X-User-Email": "$tyk_meta.email", "X-Subject": "$tyk_meta.sub"});
    }));
    assert_eq!(severity, Severity::Warning);
    assert_eq!(field, "version_data.versions.Default.global_headers");
    assert!(problem.contains("$tyk_meta.email"), "{problem}");
    // With the claim copied into the metadata, the key is set.
    let def = classic(|def| {
        def["config_data"]["metadata_claims"] = json!({"email": "email"});
        def["version_data"]["versions"]["Default"]["global_headers"] =
            json!({"X-User-Email": "$tyk_meta.email"});
    });
    assert_eq!(findings(&[def]), []);
    assert_eq!(
        rules::tyk_meta_keys("a $tyk_meta.user.email-1, $tyk_meta. $tyk_meta.x"),
        ["user.email-1", "x"]
    );
}

#[test]
fn removing_authorization_after_authentication_is_an_error() {
    let (severity, field, _) = only(classic(|def| {
        def["version_data"]["versions"]["Default"]["global_headers_remove"] =
            json!(["authorization"]);
    }));
    assert_eq!(
        (severity, field.as_str()),
        (
            Severity::Error,
            "version_data.versions.Default.global_headers_remove"
        )
    );
    let (severity, field, _) = only(oas(|x| {
        x["middleware"]["global"]["transformRequestHeaders"] =
            json!({"enabled": true, "remove": ["Authorization"]});
    }));
    assert_eq!(
        (severity, field.as_str()),
        (
            Severity::Error,
            "x-tyk-api-gateway.middleware.global.transformRequestHeaders.remove"
        )
    );
}

#[test]
fn strip_auth_data_is_only_a_warning_when_the_header_puts_the_jwt_back() {
    let (severity, field, _) = only(cached(|def| def["strip_auth_data"] = json!(true)));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "strip_auth_data")
    );
}

#[test]
fn id_extractor_trade_offs_are_warnings() {
    let (severity, field, problem) = only(cached(|def| {
        def["config_data"]["session_key_claim"] = json!("sub");
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "config_data.session_key_claim")
    );
    assert!(problem.contains("per token, not per identity"), "{problem}");

    // jwt_in_metadata without the id_extractor writes the JWT to Redis.
    let (severity, field, _) = only(classic(|def| {
        def["config_data"]["jwt_in_metadata"] = json!(true);
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "config_data.jwt_in_metadata")
    );
    // With a bundle of unknown hooks, whether there is an extractor is
    // unknown too: only the bundle is reported.
    let (severity, field, _) = only(cached(|def| {
        def["custom_middleware_bundle"] = json!("elsewhere-v1.zip");
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Error, "custom_middleware_bundle")
    );
}

#[test]
fn apis_sharing_the_cache_are_judged_together_by_organisation_and_api_id() {
    let other = |api_id: &str, org: &str| {
        cached(|def| {
            def["api_id"] = json!(api_id);
            def["org_id"] = json!(org);
        })
    };
    // Another organisation, or the same API ID: no shared cache.
    assert_eq!(
        findings(&[cached(|_| {}), other("invoices", "other-org")]),
        []
    );
    assert_eq!(findings(&[cached(|_| {}), other("orders", "acme")]), []);
    let found = findings(&[cached(|_| {}), other("invoices", "acme")]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|(_, _, p)| p.contains("403")));
    // With a policy granting both and one set of requirements: nothing.
    let with_policy = |api_id: &str| {
        cached(|def| {
            def["api_id"] = json!(api_id);
            def["config_data"]["apply_policies"] = json!(["pol-both"]);
        })
    };
    assert_eq!(
        findings(&[with_policy("orders"), with_policy("invoices")]),
        []
    );
}

#[test]
fn versions_granted_by_policies_are_a_warning_and_unknown_names_too() {
    let versioned = |config: Value| {
        classic(|def| {
            def["config_data"] = config;
            def["version_data"] = json!({"not_versioned": false,
                "versions": {"v1": {"name": "v1"}}});
        })
    };
    let (severity, _, problem) = only(versioned(json!({"apply_policies": "pol-1"})));
    assert_eq!(severity, Severity::Warning);
    assert!(problem.contains("policies"), "{problem}");
    let (severity, _, problem) = only(versioned(json!({"api_versions": ["v1", "V2"]})));
    assert_eq!(severity, Severity::Warning);
    assert!(problem.contains("\"V2\""), "{problem}");
    // Tyk reads a missing not_versioned as false: the API is versioned.
    let def = classic(|def| {
        def["version_data"] = json!({"versions": {"v1": {"name": "v1"}}});
    });
    assert_eq!(only(def).0, Severity::Error);
}

#[test]
fn a_dpop_base_url_that_repeats_the_listen_path_is_a_warning() {
    let (severity, field, problem) = only(classic(|def| {
        def["config_data"]["dpop_base_url"] = json!("https://api.example.com/orders");
    }));
    assert_eq!(
        (severity, field.as_str()),
        (Severity::Warning, "config_data.dpop_base_url")
    );
    assert!(problem.contains("\"/orders\""), "{problem}");
    let def = classic(|def| {
        def["config_data"]["dpop_base_url"] = json!("https://api.example.com");
    });
    assert_eq!(findings(&[def]), []);
}

#[test]
fn the_global_defaults_take_part_as_at_run_time() {
    let globals = IdentityRules {
        jwt_in_metadata: true,
        ..IdentityRules::default()
    };
    let def = cached(|def| def["config_data"] = json!({"required_scopes": "orders:read"}));
    let bundles = Bundles::shipped().unwrap();
    assert_eq!(
        report_with(std::slice::from_ref(&def), &bundles, &globals).findings,
        []
    );
    let report = report_with(&[def], &bundles, &IdentityRules::default());
    assert_eq!(report.errors(), 1, "{:#?}", report.findings);
}

#[test]
fn an_empty_or_absent_config_data_is_not_sent_and_the_defaults_apply() {
    for config in [json!({}), Value::Null] {
        let def = classic(|def| def["config_data"] = config.clone());
        assert_eq!(findings(&[def]), [], "{config}");
    }
    // Switched off but empty: nothing is lost.
    let def = classic(|def| {
        def["config_data"] = json!({});
        def["config_data_disabled"] = json!(true);
    });
    assert_eq!(findings(&[def]), []);
    // Switched off with settings other than checks: a warning.
    let (severity, _, _) = only(classic(|def| {
        def["config_data"] = json!({"metadata_claims": ["email"]});
        def["config_data_disabled"] = json!(true);
    }));
    assert_eq!(severity, Severity::Warning);
}

#[test]
fn the_report_fails_on_errors_and_on_unreadable_input_only() {
    let mut report = Report::default();
    assert_eq!(report.exit_code(), 0);
    report.findings.push(Finding {
        severity: Severity::Warning,
        file: "f".into(),
        api: "a".into(),
        field: "x".into(),
        problem: "p".into(),
        fix: "f".into(),
    });
    assert_eq!(report.exit_code(), 0);
    report.findings[0].severity = Severity::Error;
    assert_eq!(report.exit_code(), EXIT_ERRORS);
    report.unreadable.push(Unreadable {
        file: "u".into(),
        problem: "p".into(),
    });
    assert_eq!(report.exit_code(), EXIT_UNREADABLE);
    let json: Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(
        (json["errors"].clone(), json["warnings"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(json["findings"][0]["severity"], "error");
}

#[test]
fn names_from_a_definition_cannot_add_lines_to_the_text_report() {
    // A version name ends up in the field path of its header finding.
    let def = classic(|def| {
        def["version_data"]["versions"] = json!({
            "Default\nfake.json: API \"x\" (classic): ok": {
                "global_headers": {"Authorization": "Basic eDp4"}}});
    });
    let report = report_with(
        &[def],
        &Bundles::shipped().unwrap(),
        &IdentityRules::default(),
    );
    assert_eq!(report.errors(), 1, "{:#?}", report.findings);
    assert!(report.findings[0].field.contains('\n'));
    let text = report.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("Default\\nfake.json"), "{text}");
}
