//! Configuration read as a whole: defaults, every problem reported together,
//! and the variable list in step with the code and the docs. Sections have
//! their own files.

use super::*;

mod introspection;
mod sections;

/// The client secret of [`minimal`].
const SECRET: &str = "s3cr3t-value";

/// The three required variables.
fn minimal() -> MapSource {
    MapSource::minimal(SECRET)
}

/// The problems of a configuration that must be refused.
trait Refused {
    fn problems(&self) -> Vec<String>;
}

impl Refused for MapSource {
    fn problems(&self) -> Vec<String> {
        match self.parse() {
            Ok(_) => panic!("configuration was accepted"),
            Err(e) => e.problems,
        }
    }
}

#[test]
fn curity_env_file_is_accepted_with_defaults() {
    let config = minimal().parse().expect("valid");
    assert_eq!(
        config.listen,
        ListenAddr::Tcp("[::]:50051".parse().unwrap())
    );
    assert_eq!(config.introspection.client_id, "introspection-client");
    assert_eq!(
        config
            .introspection
            .client_secret
            .as_ref()
            .unwrap()
            .expose(),
        "s3cr3t-value"
    );
    assert_eq!(config.introspection.timeout, Duration::from_millis(2500));
    assert_eq!(config.max_token_bytes, 4096);
    assert_eq!(config.cache.clock_skew, Duration::from_secs(30));
    assert_eq!(config.cache.max_entries, None);
    assert_eq!(config.cache.max_bytes, 64 << 20);
    assert_eq!(config.cache.max_ttl, None);
    assert_eq!(config.challenge.realm, "api");
    assert_eq!(config.session.rate, 0.0);
    assert_eq!(config.session.quota_max, -1);
    assert_eq!(config.session.key_secret.expose(), "s3cr3t-value");
    assert!(config.grpc_max_message_bytes >= 2 * (16 << 20));
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.ignored.is_empty());
}

#[test]
fn curity_tuning_variables_keep_their_meaning() {
    let config = minimal()
        .with(ENV_PORT, "6000")
        .with(ENV_TIMEOUT_SECONDS, "1.5")
        .with(ENV_CACHE_MAX_ENTRIES, "10000")
        .with(ENV_CACHE_JANITOR_SECONDS, "60")
        .with(ENV_CLOCK_SKEW_SECONDS, "10")
        .parse()
        .expect("valid");
    assert_eq!(config.listen, ListenAddr::Tcp("[::]:6000".parse().unwrap()));
    assert_eq!(config.introspection.timeout, Duration::from_millis(1500));
    assert_eq!(config.cache.max_entries, Some(10000));
    assert_eq!(config.cache.clock_skew, Duration::from_secs(10));
    assert_eq!(config.ignored, vec![ENV_CACHE_JANITOR_SECONDS]);
}

#[test]
fn missing_required_values_are_reported_together() {
    let problems = MapSource::new(&[]).problems();
    assert_eq!(
        problems,
        vec![
            "INTROSPECTION_URL is required".to_owned(),
            "CLIENT_ID is required".to_owned(),
            "CLIENT_SECRET (or CLIENT_SECRET_FILE) is required (unless CLIENT_AUTH_METHOD=private_key_jwt)"
                .to_owned(),
        ]
    );
}

#[test]
fn empty_values_count_as_missing() {
    let problems = minimal().with(ENV_CLIENT_ID, "  ").problems();
    assert_eq!(problems, vec!["CLIENT_ID is required".to_owned()]);
}

#[test]
fn every_invalid_value_is_reported_not_defaulted() {
    let problems = minimal()
        .with(ENV_INTROSPECTION_URL, "ftp://idsvr/introspect")
        .with(ENV_PORT, "70000")
        .with(ENV_TIMEOUT_SECONDS, "fast")
        .with(ENV_CACHE_MAX_ENTRIES, "-5")
        .with(ENV_CLOCK_SKEW_SECONDS, "2.5")
        .with(ENV_CACHE_MAX_BYTES, "lots")
        .with(ENV_LOG_FORMAT, "xml")
        .with(ENV_REALM, "a\"b")
        .problems();
    let names: Vec<&str> = problems
        .iter()
        .map(|p| p.split('=').next().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        vec![
            "INTROSPECTION_URL",
            "TIMEOUT_SECONDS",
            "PORT",
            "CACHE_MAX_BYTES",
            "CACHE_MAX_ENTRIES",
            "CLOCK_SKEW_SECONDS",
            "REALM",
            "LOG_FORMAT",
        ]
    );
    assert!(
        problems[0].contains("http:// or https://"),
        "{}",
        problems[0]
    );
    assert!(problems[2].contains("70000"), "{}", problems[2]);
}

#[test]
fn the_error_message_is_one_line_naming_each_problem() {
    let err = Config::from_source(&minimal().with(ENV_PORT, "x").with(ENV_TIMEOUT_SECONDS, "0"))
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains('\n'));
    assert!(text.starts_with("invalid configuration: "));
    assert!(
        text.contains("TIMEOUT_SECONDS=\"0\"") && text.contains("PORT=\"x\""),
        "{text}"
    );
}

#[test]
fn sizes_accept_units_and_enforce_bounds() {
    let config = minimal()
        .with(ENV_CACHE_MAX_BYTES, "256MiB")
        .with(ENV_MAX_JWT_BYTES, "16KiB")
        .with(ENV_GRPC_MAX_MESSAGE_BYTES, "128MiB")
        .parse()
        .unwrap();
    assert_eq!(config.cache.max_bytes, 256 << 20);
    assert_eq!(config.introspection.max_jwt_bytes, 16 << 10);
    assert_eq!(config.grpc_max_message_bytes, 128 << 20);

    let problems = minimal()
        .with(ENV_CACHE_MAX_BYTES, "10")
        .with(ENV_GRPC_MAX_MESSAGE_BYTES, "1KiB")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn every_variable_is_documented_in_env_example_and_readme() {
    let example = include_str!("../../../.env.example");
    let readme = include_str!("../../../README.md");
    for name in ALL_VARIABLES {
        assert!(
            example.contains(&format!("{name}=")),
            "{name} missing from .env.example"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} missing from the README table"
        );
    }
}

/// Records the name of every variable asked for.
struct Recording {
    inner: MapSource,
    asked: std::cell::RefCell<Vec<String>>,
}

impl Source for Recording {
    fn get(&self, name: &str) -> Option<String> {
        self.asked.borrow_mut().push(name.to_owned());
        self.inner.get(name)
    }
}

#[test]
fn every_variable_the_code_reads_is_listed() {
    // With the shared cache on, so that its section reads all its variables.
    let source = Recording {
        inner: minimal()
            .with(ENV_REDIS_URL, "redis://127.0.0.1:6379")
            .with(ENV_REDIS_KEY_SECRET, "fleet-key"),
        asked: Default::default(),
    };
    Config::from_source(&source).expect("valid");
    let mut asked = source.asked.take();
    asked.sort();
    asked.dedup();
    let mut listed: Vec<&str> = ALL_VARIABLES.to_vec();
    listed.sort_unstable();
    assert_eq!(asked, listed, "ALL_VARIABLES differs from what is read");
}

#[test]
fn each_constant_is_named_after_its_variable() {
    assert_eq!(vars::DECLARED.len(), ALL_VARIABLES.len());
    for (constant, name) in vars::DECLARED {
        assert_eq!(constant.strip_prefix("ENV_"), Some(*name));
    }
}

#[test]
fn identity_rules_read_alone_match_the_full_configuration() {
    let source = minimal()
        .with(ENV_JWT_IN_METADATA, "true")
        .with(ENV_POLICY_CLAIM, "scope")
        .with(ENV_APPLY_POLICIES, "pol-a pol-b");
    let alone = identity_from_source(&source).unwrap();
    assert_eq!(alone, source.parse().unwrap().identity);
    assert!(alone.jwt_in_metadata);
    // Only the identity section is read: the AS's variables are not needed.
    let bare = MapSource::new(&[(ENV_JWT_IN_METADATA, "true")]);
    assert!(identity_from_source(&bare).unwrap().jwt_in_metadata);
    // Its problems are reported as the full configuration reports them.
    let bad = MapSource::new(&[(ENV_POLICY_MAP, "{\"a\": \"p\"}")]);
    let error = identity_from_source(&bad).unwrap_err();
    assert_eq!(error.problems, ["POLICY_MAP needs POLICY_CLAIM"]);
}
