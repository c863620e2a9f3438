use super::*;

fn parse(json: &str) -> Result<Manifest, BundleError> {
    Manifest::parse(json.as_bytes(), "test manifest")
}

fn buildable(json: &str) -> Result<(), BundleError> {
    parse(json)?.check_buildable()
}

const GRPC_AUTH: &str = r#"{"file_list": [], "custom_middleware":
        {"driver": "grpc", "auth_check": {"name": "PhantomToken"}}}"#;

#[test]
fn minimal_grpc_auth_manifest_is_buildable() {
    let manifest = parse(GRPC_AUTH).unwrap();
    manifest.check_buildable().unwrap();
    assert_eq!(manifest.middleware.driver, "grpc");
    assert_eq!(
        manifest.middleware.active_auth_check(),
        Some("PhantomToken")
    );
    assert!(manifest.file_list.is_empty());
    assert_eq!(manifest.checksum, "");
    assert_eq!(manifest.signature, "");
}

#[test]
fn a_missing_or_empty_driver_is_refused() {
    for json in [
        r#"{"custom_middleware": {"auth_check": {"name": "A"}}}"#,
        r#"{"custom_middleware": {"driver": "", "auth_check": {"name": "A"}}}"#,
        r#"{"custom_middleware": {"driver": null, "auth_check": {"name": "A"}}}"#,
        r#"{"file_list": []}"#,
    ] {
        assert!(
            matches!(buildable(json), Err(BundleError::NoDriver)),
            "{json}"
        );
    }
}

#[test]
fn a_manifest_without_hooks_is_refused() {
    for json in [
        r#"{"custom_middleware": {"driver": "grpc"}}"#,
        r#"{"custom_middleware": {"driver": "grpc", "auth_check": {"name": ""}}}"#,
        r#"{"custom_middleware": {"driver": "grpc", "pre": [], "post": [],
                "post_key_auth": [], "response": []}}"#,
    ] {
        let error = buildable(json).unwrap_err();
        assert!(matches!(error, BundleError::NoHooks), "{json}");
        assert!(error.to_string().contains("auth_check.name"), "{error}");
    }
}

#[test]
fn any_list_hook_satisfies_the_hook_rule() {
    for list in HOOK_LISTS {
        let json = format!(
            r#"{{"custom_middleware": {{"driver": "grpc", "{list}": [{{"name": "H"}}]}}}}"#
        );
        buildable(&json).unwrap();
    }
}

#[test]
fn hooks_are_reported_in_chain_order_without_disabled_ones() {
    let manifest = parse(
        r#"{"custom_middleware": {"driver": "grpc",
                "response": [{"name": "R"}],
                "post": [{"name": "P1"}, {"name": "P2", "disabled": true}],
                "post_key_auth": [{"name": "InjectJwtPostKeyAuth"}],
                "pre": [{"name": "Pre"}],
                "auth_check": {"name": "Auth", "disabled": true}}}"#,
    )
    .unwrap();
    assert_eq!(
        manifest.middleware.active_hooks(),
        [
            "pre:Pre",
            "post_key_auth:InjectJwtPostKeyAuth",
            "post:P1",
            "response:R"
        ]
    );
    assert_eq!(manifest.middleware.active_auth_check(), None);
}

#[test]
fn id_extractor_is_active_only_when_enabled_with_a_known_method() {
    let cases = [
        (
            r#"{"extract_from": "header", "extract_with": "value"}"#,
            true,
        ),
        (r#"{"extract_with": "regex", "disabled": false}"#, true),
        (r#"{"extract_with": "xpath"}"#, true),
        (r#"{"extract_with": "value", "disabled": true}"#, false),
        (r#"{"extract_with": "jsonpath"}"#, false),
        (r#"{}"#, false),
        ("null", false),
    ];
    for (extractor, active) in cases {
        let json = format!(
            r#"{{"custom_middleware": {{"driver": "grpc", "id_extractor": {extractor}}}}}"#
        );
        assert_eq!(
            parse(&json)
                .unwrap()
                .middleware
                .active_id_extractor()
                .is_some(),
            active,
            "{extractor}"
        );
    }
}

#[test]
fn fields_of_the_wrong_type_are_named() {
    let cases = [
        (r#"{"file_list": "a.py"}"#, "file_list"),
        (r#"{"file_list": ["a.py", 3]}"#, "file_list"),
        (r#"{"checksum": 5}"#, "checksum"),
        (r#"{"custom_middleware": []}"#, "custom_middleware"),
        (
            r#"{"custom_middleware": {"driver": 1}}"#,
            "custom_middleware.driver",
        ),
        (
            r#"{"custom_middleware": {"pre": {"name": "A"}}}"#,
            "custom_middleware.pre",
        ),
        (
            r#"{"custom_middleware": {"post": ["A"]}}"#,
            "custom_middleware.post",
        ),
        (
            r#"{"custom_middleware": {"auth_check": {"name": "A", "disabled": "yes"}}}"#,
            "custom_middleware.auth_check.disabled",
        ),
        (
            r#"{"custom_middleware": {"response": [{"name": "A"}, {"raw_body_only": 1}]}}"#,
            "custom_middleware.response[1].raw_body_only",
        ),
        (
            r#"{"custom_middleware": {"id_extractor": {"extractor_config": "x"}}}"#,
            "custom_middleware.id_extractor.extractor_config",
        ),
    ];
    for (json, expected) in cases {
        match parse(json) {
            Err(BundleError::FieldType { field, .. }) => assert_eq!(field, expected, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn non_json_and_non_object_manifests_are_refused() {
    assert!(matches!(parse("{"), Err(BundleError::ManifestJson { .. })));
    assert!(matches!(
        parse("[]"),
        Err(BundleError::ManifestNotObject { .. })
    ));
}

#[test]
fn keys_differing_only_in_case_are_refused() {
    let cases = [
        (r#"{"File_List": []}"#, "File_List", "file_list"),
        (r#"{"CHECKSUM": ""}"#, "CHECKSUM", "checksum"),
        (
            r#"{"custom_middleware": {"Driver": "grpc"}}"#,
            "custom_middleware.Driver",
            "custom_middleware.driver",
        ),
        (
            r#"{"custom_middleware": {"auth_check": {"Name": "A"}}}"#,
            "custom_middleware.auth_check.Name",
            "custom_middleware.auth_check.name",
        ),
        // The Kelvin sign folds onto "k" in the gateway's matching.
        (
            "{\"custom_middleware\": {\"post_\u{212a}ey_auth\": []}}",
            "custom_middleware.post_\u{212a}ey_auth",
            "custom_middleware.post_key_auth",
        ),
    ];
    for (json, found_key, expected_key) in cases {
        match parse(json) {
            Err(BundleError::KeyCase { found, expected }) => {
                assert_eq!(
                    (found.as_str(), expected.as_str()),
                    (found_key, expected_key)
                );
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn file_names_follow_the_path_rules() {
    for good in ["a.py", "lib/x/helper.py", "my file.txt", "a..b", ".hidden"] {
        assert_eq!(check_file_name(good), Ok(()), "{good}");
    }
    let bad = [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("\\share\\a", "absolute"),
        ("C:/a.py", "absolute"),
        ("../evil", ".."),
        ("lib/../../evil", ".."),
        ("lib\\..\\evil", ".."),
        ("lib\\a.py", "backslash"),
        ("a\0b", "NUL"),
        ("lib//a.py", "empty path segment"),
        ("lib/", "empty path segment"),
        ("./a.py", "\".\" segment"),
        ("manifest.json", "manifest"),
    ];
    for (name, reason) in bad {
        let refused = check_file_name(name).unwrap_err();
        assert!(refused.contains(reason), "{name:?}: {refused}");
    }
}

#[test]
fn entry_names_are_refused_only_when_absolute_or_climbing() {
    for good in ["a.py", "lib/", "lib/a.py", "./a.py", "a..b/c"] {
        assert_eq!(check_entry_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "/abs",
        "\\abs",
        "c:\\x",
        "..",
        "../evil",
        "a/../../b",
        "a\\..\\b",
    ] {
        assert!(check_entry_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn build_rejects_bad_and_repeated_file_list_names() {
    let json = |list: &str| {
        format!(
            r#"{{"file_list": {list}, "custom_middleware":
                    {{"driver": "grpc", "auth_check": {{"name": "A"}}}}}}"#
        )
    };
    match buildable(&json(r#"["ok.py", "../evil.py"]"#)) {
        Err(BundleError::BadFileName { name, .. }) => assert_eq!(name, "../evil.py"),
        other => panic!("{other:?}"),
    }
    match buildable(&json(r#"["a.py", "b.py", "a.py"]"#)) {
        Err(BundleError::DuplicateFile { name }) => assert_eq!(name, "a.py"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sealing_fills_checksum_and_signature_and_keeps_unknown_keys() {
    let manifest = parse(
        r#"{"custom_middleware": {"driver": "grpc", "auth_check": {"name": "A"},
                "traffic_logs": {"name": "T"}}, "vendor_note": {"x": [1, 2]},
                "checksum": "stale", "signature": "stale"}"#,
    )
    .unwrap();
    let sealed: Value = serde_json::from_slice(&manifest.sealed("abc", "c2ln").unwrap()).unwrap();
    assert_eq!(sealed["checksum"], "abc");
    assert_eq!(sealed["signature"], "c2ln");
    assert_eq!(sealed["file_list"], serde_json::json!([]));
    assert_eq!(sealed["vendor_note"], serde_json::json!({"x": [1, 2]}));
    assert_eq!(sealed["custom_middleware"]["traffic_logs"]["name"], "T");
    assert_eq!(sealed["custom_middleware"]["auth_check"]["name"], "A");
}

#[test]
fn hook_details_and_the_extractor_source_are_read() {
    let manifest = parse(
        r#"{"custom_middleware": {"driver": "grpc",
                "auth_check": {"name": "A", "raw_body_only": true},
                "post_key_auth": [{"name": "P"}],
                "id_extractor": {"extract_from": "form", "extract_with": "value",
                    "extractor_config": {"param_name": "token", "header_name": "X"}}}}"#,
    )
    .unwrap();
    let middleware = manifest.middleware;
    let auth = middleware.auth_check.as_ref().unwrap();
    assert!(auth.raw_body_only && !auth.disabled);
    assert!(!middleware.hooks[0].1.raw_body_only);
    let extractor = middleware.active_id_extractor().unwrap();
    assert_eq!(
        (
            extractor.extract_from.as_str(),
            extractor.param_name.as_str(),
            extractor.header_name.as_str()
        ),
        ("form", "token", "X")
    );
    // An absent auth_check is told apart from one without a name.
    let absent = parse(r#"{"custom_middleware": {"driver": "grpc"}}"#).unwrap();
    assert_eq!(absent.middleware.auth_check, None);
    let unnamed = parse(r#"{"custom_middleware": {"auth_check": {}}}"#).unwrap();
    assert_eq!(unnamed.middleware.auth_check, Some(Hook::default()));
    // The extractor's configuration is typed like every other field.
    let error = parse(
        r#"{"custom_middleware": {"id_extractor": {"extractor_config": {"header_name": 1}}}}"#,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("custom_middleware.id_extractor.extractor_config.header_name"),
        "{error}"
    );
}
