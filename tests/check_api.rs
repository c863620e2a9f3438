//! `check-api` as an operator runs it: the corpus of API definitions in
//! `tests/check_api/` (each with the one mistake it must catch, and clean
//! ones, classic and OAS), the shipped examples, exit codes, JSON output,
//! the plugin's global defaults, and bundles given on the command line.
//!
//! The last tests send requests through the fake gateway configured from
//! corpus definitions, to show that what `check-api` reports is what Tyk
//! and the plugin then do.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tyk_phantom_token::bundle;

use support::fake_tyk::Api;
use support::{Behaviour, Claims, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-phantom-token");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(name: &str) -> PathBuf {
    root().join("tests/check_api").join(name)
}

/// What one run printed, and its exit status.
struct Run {
    code: Option<i32>,
    stdout: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// `(severity, field, problem)` of every finding.
    fn findings(&self) -> Vec<(String, String, String)> {
        self.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let text = |k: &str| f[k].as_str().unwrap().to_owned();
                (text("severity"), text("field"), text("problem"))
            })
            .collect()
    }
}

/// Runs `tyk-phantom-token check-api ARGS` in `dir` (where a `.env` may
/// be), with an empty environment.
fn run_in(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .arg("check-api")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), args)
}

fn run_json(paths: &[&Path]) -> Run {
    let mut args = vec!["--format", "json"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    run(&args)
}

const ERROR: &str = "error";
const WARNING: &str = "warning";

/// The field of findings about the id_extractor of the shipped bundle.
const IDX_BUNDLE: &str =
    "custom_middleware_bundle (phantom-bundle-idx-v1.zip: manifest custom_middleware.id_extractor)";
const OAS_IDX_BUNDLE: &str = "x-tyk-api-gateway.middleware.global.pluginConfig.bundle.path \
     (phantom-bundle-idx-v1.zip: manifest custom_middleware.id_extractor)";

/// A finding a corpus entry must give: `(severity, field, words of the
/// problem)`.
type Expected = (&'static str, &'static str, &'static str);

/// Every corpus entry (a file, or a folder checked as one run) with the
/// findings it must give.
const CORPUS: &[(&str, &[Expected])] = &[
    // Clean definitions, classic and OAS.
    ("classic-clean.json", &[]),
    ("classic-clean-id-extractor.json", &[]),
    ("classic-clean-versioned.json", &[]),
    ("classic-clean-inline-hooks.json", &[]),
    ("oas-clean.json", &[]),
    ("oas-clean-id-extractor.json", &[]),
    // The id_extractor mode: the JWT must reach the upstream on Tyk's hits.
    (
        "classic-id-extractor-without-jwt-header.json",
        &[(
            ERROR,
            IDX_BUNDLE,
            "the opaque token would reach the upstream",
        )],
    ),
    (
        "classic-id-extractor-bare.json",
        &[(
            ERROR,
            IDX_BUNDLE,
            "the opaque token would reach the upstream",
        )],
    ),
    (
        "classic-id-extractor-without-jwt-in-metadata.json",
        &[(
            ERROR,
            "version_data.versions.Default.global_headers",
            "the upstream gets an empty Bearer",
        )],
    ),
    (
        "classic-id-extractor-one-version-without-header.json",
        &[(
            ERROR,
            "version_data.versions.v2.global_headers",
            "the upstream gets the client's opaque token",
        )],
    ),
    (
        "oas-id-extractor-without-jwt-header.json",
        &[(
            ERROR,
            OAS_IDX_BUNDLE,
            "the opaque token would reach the upstream",
        )],
    ),
    (
        "classic-id-extractor-on-another-header.json",
        &[(
            ERROR,
            "custom_middleware.id_extractor",
            "not by the Authorization credential the plugin checks",
        )],
    ),
    (
        "classic-id-extractor-value-from-body.json",
        &[(
            ERROR,
            "custom_middleware.id_extractor",
            "every request maps to one cached session",
        )],
    ),
    (
        "shared-cache-locks-out",
        &[
            (WARNING, IDX_BUNDLE, "gets 403 from Tyk"),
            (WARNING, IDX_BUNDLE, "gets 403 from Tyk"),
        ],
    ),
    (
        "shared-cache-different-requirements",
        &[
            (WARNING, IDX_BUNDLE, "without their checks"),
            (WARNING, IDX_BUNDLE, "without their checks"),
        ],
    ),
    (
        "oas-id-extractor-in-api-with-plain-bundle.json",
        &[(
            WARNING,
            "x-tyk-api-gateway.server.authentication.custom.config.idExtractor",
            "this id_extractor is ignored",
        )],
    ),
    // Versions and access rights.
    (
        "classic-versioned-without-api-versions.json",
        &[(
            ERROR,
            "config_data.api_versions",
            "Tyk answers 403 Access to this API has been disallowed to requests for \"v1\", \"v2\"",
        )],
    ),
    // Authentication switched on, by the plugin, with its hooks.
    (
        "classic-keyless.json",
        &[(ERROR, "use_keyless", "the API is keyless")],
    ),
    (
        "oas-keyless.json",
        &[(
            ERROR,
            "x-tyk-api-gateway.server.authentication.enabled",
            "the API is keyless",
        )],
    ),
    (
        "classic-custom-auth-off.json",
        &[(
            ERROR,
            "custom_plugin_auth_enabled",
            "never calls the plugin",
        )],
    ),
    (
        "classic-unknown-bundle.json",
        &[(
            ERROR,
            "custom_middleware_bundle",
            "names bundle phantom-bundle-v2.zip, which is neither one the plugin ships",
        )],
    ),
    (
        "classic-two-bundles-with-auth-checks.json",
        &[
            (
                WARNING,
                "custom_middleware_bundle",
                "only Tyk 5.15 and later",
            ),
            (
                ERROR,
                "custom_middleware_bundle",
                "more than one of the bundles sets auth_check",
            ),
        ],
    ),
    (
        "classic-python-driver.json",
        &[(
            ERROR,
            "custom_middleware.driver",
            "the driver is \"python\"",
        )],
    ),
    (
        "classic-auth-check-disabled.json",
        &[(
            ERROR,
            "custom_middleware.auth_check",
            "Tyk does not call the plugin's auth hook",
        )],
    ),
    (
        "oas-auth-plugin-disabled.json",
        &[(
            ERROR,
            "x-tyk-api-gateway.server.authentication.custom.config",
            "Tyk does not call the plugin's auth hook",
        )],
    ),
    (
        "classic-raw-body-only-off.json",
        &[(
            WARNING,
            "custom_middleware.auth_check",
            "raw_body_only is off",
        )],
    ),
    (
        "classic-post-key-auth-misspelt.json",
        &[(
            WARNING,
            "custom_middleware.post_key_auth",
            "the post_key_auth hook \"InjectJWTPostKeyAuth\"",
        )],
    ),
    // config_data, read by the plugin's own parser.
    (
        "classic-config-data-misspelt-key.json",
        &[(ERROR, "config_data", "unknown field `required_scope`")],
    ),
    (
        "oas-config-data-misspelt-key.json",
        &[(
            ERROR,
            "x-tyk-api-gateway.middleware.global.pluginConfig.data.value",
            "unknown field `requried_audience`",
        )],
    ),
    (
        "classic-config-data-scopes-with-comma.json",
        &[(ERROR, "config_data", "contains a comma")],
    ),
    (
        "classic-config-data-empty-required-acr.json",
        &[(ERROR, "config_data", "required_acr: expected at least one")],
    ),
    (
        "classic-config-data-relative-dpop-base-url.json",
        &[(ERROR, "config_data", "dpop_base_url: not an absolute URL")],
    ),
    (
        "classic-config-data-empty-api-versions.json",
        &[(ERROR, "config_data", "api_versions: expected at least one")],
    ),
    (
        "classic-config-data-disabled.json",
        &[(
            ERROR,
            "config_data_disabled",
            "the plugin does not enforce required_scopes",
        )],
    ),
    (
        "oas-config-data-disabled.json",
        &[(
            ERROR,
            "x-tyk-api-gateway.middleware.global.pluginConfig.data.enabled",
            "the plugin does not enforce required_scopes",
        )],
    ),
    (
        "classic-dpop-required-without-base-url.json",
        &[(
            WARNING,
            "config_data.dpop_base_url",
            "dpop_required without dpop_base_url",
        )],
    ),
    // What happens to the JWT after authentication.
    (
        "classic-strip-auth-data.json",
        &[(ERROR, "strip_auth_data", "the upstream gets no JWT")],
    ),
    (
        "classic-header-replaces-jwt.json",
        &[(
            ERROR,
            "version_data.versions.Default.global_headers",
            "replacing the JWT the plugin forwards",
        )],
    ),
    // Requests the plugin never sees.
    (
        "classic-ignored-path.json",
        &[(
            WARNING,
            "version_data.versions.*.extended_paths.ignored",
            "requests to /health skip authentication",
        )],
    ),
    (
        "classic-cors-options-passthrough.json",
        &[(
            WARNING,
            "CORS.options_passthrough",
            "OPTIONS requests skip every middleware",
        )],
    ),
];

#[test]
fn every_corpus_definition_gets_exactly_the_findings_of_its_mistake() {
    for (entry, expected) in CORPUS {
        let output = run_json(&[&corpus(entry)]);
        let found = output.findings();
        let mut unmatched: Vec<&(String, String, String)> = found.iter().collect();
        for (severity, field, words) in *expected {
            let at = unmatched
                .iter()
                .position(|(s, f, p)| s == severity && f == field && p.contains(words));
            match at {
                Some(at) => {
                    unmatched.remove(at);
                }
                None => panic!("{entry}: no {severity} on {field} saying {words:?} in {found:#?}"),
            }
        }
        assert!(unmatched.is_empty(), "{entry}: unexpected {unmatched:#?}");
        let errors = expected.iter().filter(|(s, _, _)| *s == ERROR).count();
        assert_eq!(output.json()["errors"], errors, "{entry}");
        assert_eq!(
            output.code,
            Some(if errors > 0 { 1 } else { 0 }),
            "{entry}: {}",
            output.stdout
        );
    }
}

#[test]
fn every_corpus_file_is_in_the_table() {
    let listed: Vec<&str> = CORPUS.iter().map(|(entry, _)| *entry).collect();
    for entry in std::fs::read_dir(root().join("tests/check_api")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(listed.contains(&name.as_str()), "{name} is not in CORPUS");
    }
}

/// Each finding says where and how to fix it, in one line of the text
/// report that names the file and the API.
#[test]
fn text_findings_name_the_file_the_api_the_field_and_the_fix() {
    let file = corpus("classic-versioned-without-api-versions.json");
    let output = run(&[file.to_str().unwrap()]);
    assert_eq!(output.code, Some(1));
    let line = output
        .stdout
        .lines()
        .find(|l| l.contains(": error: "))
        .unwrap();
    assert!(line.starts_with(file.to_str().unwrap()), "{line}");
    assert!(line.contains("API \"orders-versioned\""), "{line}");
    assert!(line.contains("config_data.api_versions"), "{line}");
    assert!(
        line.contains("fix: set \"api_versions\": [\"v1\", \"v2\"] in config_data"),
        "{line}"
    );
    assert!(
        output
            .stdout
            .ends_with("1 API definition(s) checked: 1 error(s), 0 warning(s)\n"),
        "{}",
        output.stdout
    );
}

#[test]
fn the_shipped_examples_pass_with_the_bundles_they_are_served() {
    let apps = root().join("examples/demo/apps");
    let bundles = root().join("bundles");
    for args in [
        vec!["--format", "json", apps.to_str().unwrap()],
        vec![
            "--format",
            "json",
            "--bundle",
            bundles.to_str().unwrap(),
            apps.to_str().unwrap(),
        ],
    ] {
        let output = run(&args);
        assert_eq!(output.code, Some(0), "{}", output.stdout);
        let report = output.json();
        assert_eq!(report["findings"], json!([]), "{}", output.stdout);
        assert_eq!(report["apis"].as_array().unwrap().len(), 2);
    }
}

/// The value of an Authorization header in a definition may be a
/// credential: findings name the header, never its value.
#[test]
fn header_values_never_appear_in_the_report() {
    let file = corpus("classic-header-replaces-jwt.json");
    let text = run(&[file.to_str().unwrap()]).stdout;
    let json = run_json(&[&file]).stdout;
    for output in [text, json] {
        assert!(output.contains("Authorization"), "{output}");
        assert!(!output.contains("b3JkZXJzOnNlY3JldA"), "{output}");
    }
}

#[test]
fn unreadable_inputs_exit_2_and_the_readable_ones_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{\"api_id\": ").unwrap();
    let not_api = dir.path().join("policy.json");
    std::fs::write(&not_api, r#"{"rate": 100, "per": 60}"#).unwrap();
    let export = dir.path().join("export.json");
    std::fs::write(&export, r#"{"api_definition": {"api_id": "x"}}"#).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing.json");
    let clean = corpus("classic-clean.json");
    let output = run_json(&[&not_json, &not_api, &export, &empty, &missing, &clean]);
    assert_eq!(output.code, Some(2), "{}", output.stdout);
    let report = output.json();
    let unreadable: Vec<(String, String)> = report["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["file"].as_str().unwrap().to_owned(),
                u["problem"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let problem = |path: &Path| {
        unreadable
            .iter()
            .find(|(file, _)| file == path.to_str().unwrap())
            .map(|(_, problem)| problem.clone())
            .unwrap_or_else(|| panic!("{path:?} not reported in {unreadable:?}"))
    };
    assert!(problem(&not_json).starts_with("not valid JSON"));
    assert!(problem(&not_api).starts_with("not a Tyk API definition"));
    assert!(problem(&export).contains("api_definition"));
    assert!(problem(&empty).contains("no *.json file"));
    assert!(problem(&missing).starts_with("cannot read"));
    assert_eq!(unreadable.len(), 5);
    // The readable definition was checked all the same.
    assert_eq!(report["apis"][0]["api"], "orders");
}

#[test]
fn no_input_at_all_is_a_usage_error() {
    let output = run(&[]);
    assert_eq!(output.code, Some(2));
}

/// The plugin's global defaults (`.env` and the environment) take part,
/// as at run-time: JWT_IN_METADATA=true for every API makes the header
/// enough, and an invalid identity variable makes the input unreadable.
#[test]
fn the_plugins_global_defaults_from_dot_env_apply() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("cached.json");
    let mut def: Value =
        serde_json::from_slice(&std::fs::read(corpus("classic-clean-id-extractor.json")).unwrap())
            .unwrap();
    def["config_data"] = json!({"required_scopes": ["orders:read"]});
    std::fs::write(&definition, def.to_string()).unwrap();
    let args = ["--format", "json", definition.to_str().unwrap()];

    let without = run_in(dir.path(), &args);
    assert_eq!(without.code, Some(1), "{}", without.stdout);
    assert!(
        without.stdout.contains("empty Bearer"),
        "{}",
        without.stdout
    );

    std::fs::write(dir.path().join(".env"), "JWT_IN_METADATA=true\n").unwrap();
    let with = run_in(dir.path(), &args);
    assert_eq!(with.code, Some(0), "{}", with.stdout);
    assert_eq!(with.json()["findings"], json!([]));

    std::fs::write(dir.path().join(".env"), "POLICY_MAP='{\"a\": \"p\"}'\n").unwrap();
    let bad = run_in(dir.path(), &args);
    assert_eq!(bad.code, Some(2), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("POLICY_MAP needs POLICY_CLAIM"),
        "{}",
        bad.stdout
    );
}

/// A definition naming `name`, otherwise `classic-clean.json`.
fn naming_bundle(dir: &Path, name: &str) -> PathBuf {
    let mut def: Value =
        serde_json::from_slice(&std::fs::read(corpus("classic-clean.json")).unwrap()).unwrap();
    def["custom_middleware_bundle"] = json!(name);
    let path = dir.join(format!("naming-{name}.json"));
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

/// Builds `dir/name` from `manifest` with the plugin's own bundle builder.
fn build_bundle(dir: &Path, name: &str, manifest: Value) -> PathBuf {
    let manifest_path = dir.join(format!("{name}.manifest.json"));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let zip = dir.join(name);
    bundle::build(&manifest_path, &zip, None).unwrap();
    zip
}

#[test]
fn a_given_bundle_is_known_by_its_file_name_and_its_hooks_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let zip = build_bundle(
        dir.path(),
        "orders-bundle-v3.zip",
        json!({"file_list": [], "custom_middleware": {"driver": "grpc",
            "auth_check": {"name": "PhantomAuthCheck", "raw_body_only": true},
            "post_key_auth": [{"name": "InjectJwt", "raw_body_only": true}]}}),
    );
    let definition = naming_bundle(dir.path(), "orders-bundle-v3.zip");

    // Unknown without the zip.
    let unknown = run_json(&[&definition]);
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stdout.contains("names bundle orders-bundle-v3.zip"));

    let args = [
        "--format",
        "json",
        "--bundle",
        zip.to_str().unwrap(),
        definition.to_str().unwrap(),
    ];
    let output = run(&args);
    assert_eq!(output.code, Some(0), "{}", output.stdout);
    let findings = output.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let (severity, field, problem) = &findings[0];
    assert_eq!(severity, WARNING);
    assert_eq!(
        field,
        "custom_middleware_bundle (orders-bundle-v3.zip: manifest custom_middleware.post_key_auth)"
    );
    assert!(problem.contains("\"InjectJwt\""), "{problem}");
}

#[test]
fn a_given_bundle_the_gateway_would_refuse_is_an_error_on_the_apis_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A checksum that is not the MD5 of the (empty) file list.
    let zip = dir.path().join("orders-bundle-v4.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    writer
        .start_file("manifest.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(
        &mut writer,
        json!({"file_list": [], "checksum": "00000000000000000000000000000000",
            "custom_middleware": {"driver": "grpc", "auth_check": {"name": "PhantomAuthCheck"}}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    writer.finish().unwrap();
    let definition = naming_bundle(dir.path(), "orders-bundle-v4.zip");
    let output = run(&[
        "--format",
        "json",
        "--bundle",
        zip.to_str().unwrap(),
        definition.to_str().unwrap(),
    ]);
    assert_eq!(output.code, Some(1), "{}", output.stdout);
    let findings = output.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].1, "custom_middleware_bundle");
    assert!(findings[0].2.contains("invalid checksum"), "{findings:#?}");
    assert!(findings[0].2.contains("not loaded"), "{findings:#?}");

    // A file that is no zip at all cannot be checked: exit 2.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip").unwrap();
    let output = run(&[
        "--bundle",
        junk.to_str().unwrap(),
        definition.to_str().unwrap(),
    ]);
    assert_eq!(output.code, Some(2), "{}", output.stdout);
}

#[test]
fn a_bundle_named_on_the_command_line_that_no_api_names_is_reported() {
    let bundle = root().join("bundles/phantom-bundle.zip");
    let output = run(&[
        "--format",
        "json",
        "--bundle",
        bundle.to_str().unwrap(),
        corpus("classic-clean.json").to_str().unwrap(),
    ]);
    assert_eq!(output.code, Some(0));
    let findings = output.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, WARNING);
    assert!(findings[0].2.contains("\"phantom-bundle.zip\""));
}

/// With `--manifest`, a bundle not built yet is checked from its manifest.
#[test]
fn a_manifest_stands_for_the_bundle_the_apis_name() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({"file_list": [], "custom_middleware": {"driver": "grpc",
            "auth_check": {"name": "PhantomAuthCheck", "raw_body_only": true},
            "id_extractor": {"extract_from": "header", "extract_with": "value",
                "extractor_config": {"header_name": "Authorization"}}}})
        .to_string(),
    )
    .unwrap();
    let definition = naming_bundle(dir.path(), "orders-bundle-v5.zip");
    let output = run(&[
        "--format",
        "json",
        "--manifest",
        manifest.to_str().unwrap(),
        definition.to_str().unwrap(),
    ]);
    assert_eq!(output.code, Some(1), "{}", output.stdout);
    let findings = output.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0]
            .2
            .contains("the opaque token would reach the upstream")
    );
}

// --- What the reported mistakes do in the gateway ---------------------------

/// The fake gateway's API for a classic corpus definition: its bundle's
/// hooks (from the shipped manifest), `config_data`, the global headers
/// of its first version, and the version requests ask for.
fn gateway_api(file: &str) -> Api {
    let def: Value = serde_json::from_slice(&std::fs::read(corpus(file)).unwrap()).unwrap();
    let bundle_name = def["custom_middleware_bundle"].as_str().unwrap();
    let (_, manifest) = tyk_phantom_token::apidef::SHIPPED
        .iter()
        .find(|(name, _)| *name == bundle_name)
        .unwrap();
    let middleware = bundle::read_manifest(manifest.as_bytes(), bundle_name).unwrap();
    let versions = def["version_data"]["versions"].as_object().unwrap();
    let (first, version) = versions.iter().next().unwrap();
    let versioned = def["version_data"]["not_versioned"] == json!(false);
    Api {
        api_id: def["api_id"].as_str().unwrap().into(),
        org_id: def["org_id"].as_str().unwrap().into(),
        bundle: bundle_name.into(),
        auth_check: middleware.active_auth_check().unwrap_or_default().into(),
        post_key_auth: middleware
            .active_hooks()
            .iter()
            .filter_map(|h| h.strip_prefix("post_key_auth:").map(str::to_owned))
            .collect(),
        raw_body_only: true,
        config_data: def.get("config_data").cloned(),
        id_extractor_header: middleware
            .active_id_extractor()
            .map(|e| e.header_name.clone()),
        inject_headers: version["global_headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        version: versioned.then(|| first.clone()),
        ..Api::default()
    }
}

/// A token granting the scope the corpus definitions require.
fn orders_reader(sub: &str) -> Claims {
    let mut claims = Claims::valid_for(sub, 600);
    claims.extra["scope"] = json!("orders:read");
    claims
}

/// `classic-id-extractor-without-jwt-header.json` is reported because, on
/// Tyk's cache hit, the upstream gets the opaque token; the clean
/// definition forwards the JWT every time.
#[tokio::test]
async fn the_reported_id_extractor_api_sends_the_opaque_token_upstream_on_tyks_cache_hits() {
    for (file, leaks) in [
        ("classic-id-extractor-without-jwt-header.json", true),
        ("classic-clean-id-extractor.json", false),
    ] {
        let app = spawn_app_with(|s| s.api = gateway_api(file)).await;
        app.fake_as
            .script("opaque-token-1", Behaviour::Jwt(orders_reader("ana")));
        let first = app.get_with_token("opaque-token-1").await;
        let second = app.get_with_token("opaque-token-1").await;
        assert_eq!((first.status(), second.status()), (200, 200), "{file}");
        assert!(first.plugin_called && !second.plugin_called, "{file}");
        let jwt = format!("Bearer {}", app.fake_as.jwt_for("opaque-token-1").unwrap());
        let upstream = second.upstream.unwrap();
        let sent = upstream.header("Authorization").unwrap();
        if leaks {
            assert_eq!(sent, "Bearer opaque-token-1", "{file}");
        } else {
            assert_eq!(sent, jwt, "{file}");
        }
        let errors = run_json(&[&corpus(file)]).json()["errors"].clone();
        assert_eq!(errors, json!(usize::from(leaks)), "{file}");
    }
}

/// `classic-versioned-without-api-versions.json` is reported because Tyk
/// refuses the plugin's session for the version asked for.
#[tokio::test]
async fn the_reported_versioned_api_locks_its_users_out() {
    for (file, status) in [
        ("classic-versioned-without-api-versions.json", 403),
        ("classic-clean-versioned.json", 200),
    ] {
        let app = spawn_app_with(|s| s.api = gateway_api(file)).await;
        app.fake_as
            .script("opaque-token-2", Behaviour::Jwt(orders_reader("ben")));
        let outcome = app.get_with_token("opaque-token-2").await;
        assert_eq!(
            outcome.status(),
            status,
            "{file}: {}",
            outcome.response().text()
        );
        let errors = run_json(&[&corpus(file)]).json()["errors"].clone();
        assert_eq!(errors, json!(usize::from(status == 403)), "{file}");
    }
}
