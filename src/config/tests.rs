use super::*;

/// A source backed by maps, with an in-memory "file system" for secret files.
struct TestEnv {
    vars: HashMap<String, String>,
    files: HashMap<String, String>,
}

impl TestEnv {
    fn new(pairs: &[(&str, &str)]) -> Self {
        TestEnv {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            files: HashMap::new(),
        }
    }

    fn minimal() -> Self {
        TestEnv::new(&[
            (
                ENV_INTROSPECTION_URL,
                "https://idsvr.example.com/oauth/v2/oauth-introspect",
            ),
            (ENV_CLIENT_ID, "introspection-client"),
            (ENV_CLIENT_SECRET, "s3cr3t-value"),
        ])
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    fn with_file(mut self, path: &str, contents: &str) -> Self {
        self.files.insert(path.to_owned(), contents.to_owned());
        self
    }

    fn parse(&self) -> Result<Config, ConfigError> {
        Config::from_source(self)
    }

    fn problems(&self) -> Vec<String> {
        match self.parse() {
            Ok(_) => panic!("configuration was accepted"),
            Err(e) => e.problems,
        }
    }
}

impl Source for TestEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

#[test]
fn curity_env_file_is_accepted_with_defaults() {
    let config = TestEnv::minimal().parse().expect("valid");
    assert_eq!(
        config.listen,
        ListenAddr::Tcp("[::]:50051".parse().unwrap())
    );
    assert_eq!(config.introspection.client_id, "introspection-client");
    assert_eq!(config.introspection.client_secret.expose(), "s3cr3t-value");
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
    let config = TestEnv::minimal()
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
fn zero_max_entries_means_no_entry_limit_as_in_curitys_plugin() {
    let config = TestEnv::minimal()
        .with(ENV_CACHE_MAX_ENTRIES, "0")
        .parse()
        .unwrap();
    assert_eq!(config.cache.max_entries, None);
}

#[test]
fn missing_required_values_are_reported_together() {
    let problems = TestEnv::new(&[]).problems();
    assert_eq!(
        problems,
        vec![
            "INTROSPECTION_URL is required".to_owned(),
            "CLIENT_ID is required".to_owned(),
            "CLIENT_SECRET (or CLIENT_SECRET_FILE) is required".to_owned(),
        ]
    );
}

#[test]
fn empty_values_count_as_missing() {
    let problems = TestEnv::minimal().with(ENV_CLIENT_ID, "  ").problems();
    assert_eq!(problems, vec!["CLIENT_ID is required".to_owned()]);
}

#[test]
fn every_invalid_value_is_reported_not_defaulted() {
    let problems = TestEnv::minimal()
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
    let err = Config::from_source(
        &TestEnv::minimal()
            .with(ENV_PORT, "x")
            .with(ENV_TIMEOUT_SECONDS, "0"),
    )
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
fn secrets_never_appear_in_errors_or_debug_output() {
    let config = TestEnv::minimal().parse().unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t-value"));

    let err = TestEnv::minimal()
        .with(ENV_CLIENT_SECRET_FILE, "/run/secrets/client")
        .parse()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t-value"));
    assert!(err.to_string().contains("both set"));
}

#[test]
fn client_secret_file_is_read_and_its_trailing_newline_dropped() {
    let config = TestEnv::minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/run/secrets/client")
        .with_file("/run/secrets/client", "from-file\n")
        .parse()
        .unwrap();
    assert_eq!(config.introspection.client_secret.expose(), "from-file");
}

#[test]
fn unreadable_or_empty_secret_file_is_reported() {
    let missing = TestEnv::minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/nope")
        .problems();
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with("CLIENT_SECRET_FILE=\"/nope\": cannot read the file"),
        "{missing:?}"
    );

    let empty = TestEnv::minimal()
        .without(ENV_CLIENT_SECRET)
        .with(ENV_CLIENT_SECRET_FILE, "/empty")
        .with_file("/empty", "\n")
        .problems();
    assert_eq!(
        empty,
        vec!["CLIENT_SECRET_FILE=\"/empty\": the file is empty".to_owned()]
    );
}

#[test]
fn listen_addr_or_port_but_not_both() {
    let config = TestEnv::minimal()
        .with(ENV_LISTEN_ADDR, "127.0.0.1:7000")
        .parse()
        .unwrap();
    assert_eq!(
        config.listen,
        ListenAddr::Tcp("127.0.0.1:7000".parse().unwrap())
    );
    let config = TestEnv::minimal()
        .with(ENV_LISTEN_ADDR, "unix:///run/tyk/phantom.sock")
        .parse()
        .unwrap();
    assert_eq!(
        config.listen,
        ListenAddr::Unix("/run/tyk/phantom.sock".into())
    );

    let problems = TestEnv::minimal()
        .with(ENV_LISTEN_ADDR, "127.0.0.1:7000")
        .with(ENV_PORT, "7000")
        .problems();
    assert_eq!(
        problems,
        vec!["PORT and LISTEN_ADDR are both set; set only one".to_owned()]
    );

    let problems = TestEnv::minimal()
        .with(ENV_LISTEN_ADDR, "localhost")
        .problems();
    assert!(
        problems[0].starts_with("LISTEN_ADDR=\"localhost\""),
        "{problems:?}"
    );
}

#[test]
fn session_limits_need_their_periods() {
    let problems = TestEnv::minimal()
        .with(ENV_SESSION_RATE, "100")
        .with(ENV_SESSION_QUOTA_MAX, "1000")
        .problems();
    assert_eq!(
        problems,
        vec![
            "SESSION_RATE needs SESSION_RATE_PER_SECONDS greater than 0".to_owned(),
            "SESSION_QUOTA_MAX needs SESSION_QUOTA_RENEWAL_SECONDS".to_owned(),
        ]
    );

    let config = TestEnv::minimal()
        .with(ENV_SESSION_RATE, "100")
        .with(ENV_SESSION_RATE_PER_SECONDS, "60")
        .with(ENV_SESSION_QUOTA_MAX, "1000")
        .with(ENV_SESSION_QUOTA_RENEWAL_SECONDS, "3600")
        .with(ENV_SESSION_KEY_SECRET, "other-key")
        .parse()
        .unwrap();
    assert_eq!((config.session.rate, config.session.per), (100.0, 60.0));
    assert_eq!(
        (
            config.session.quota_max,
            config.session.quota_renewal_seconds
        ),
        (1000, 3600)
    );
    assert_eq!(config.session.key_secret.expose(), "other-key");
}

#[test]
fn sizes_accept_units_and_enforce_bounds() {
    let config = TestEnv::minimal()
        .with(ENV_CACHE_MAX_BYTES, "256MiB")
        .with(ENV_MAX_JWT_BYTES, "16KiB")
        .with(ENV_GRPC_MAX_MESSAGE_BYTES, "128MiB")
        .parse()
        .unwrap();
    assert_eq!(config.cache.max_bytes, 256 << 20);
    assert_eq!(config.introspection.max_jwt_bytes, 16 << 10);
    assert_eq!(config.grpc_max_message_bytes, 128 << 20);

    let problems = TestEnv::minimal()
        .with(ENV_CACHE_MAX_BYTES, "10")
        .with(ENV_GRPC_MAX_MESSAGE_BYTES, "1KiB")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn log_level_must_be_a_valid_filter() {
    let config = TestEnv::minimal()
        .with(ENV_LOG_LEVEL, "debug,h2=info")
        .parse()
        .unwrap();
    assert_eq!(config.log_level, "debug,h2=info");
    let problems = TestEnv::minimal().with(ENV_LOG_LEVEL, "loud=[").problems();
    assert!(problems[0].starts_with("LOG_LEVEL="), "{problems:?}");
}

#[test]
fn every_variable_is_documented_in_env_example_and_readme() {
    let example = include_str!("../../.env.example");
    let readme = include_str!("../../README.md");
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

#[test]
fn every_variable_the_code_reads_is_listed() {
    let source = [include_str!("../config.rs"), include_str!("any_as.rs")].concat();
    let read = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const ENV_"))
        .count();
    assert_eq!(
        read,
        ALL_VARIABLES.len(),
        "ALL_VARIABLES is missing a variable"
    );
}

#[test]
fn global_identity_rules_are_read_and_checked() {
    let config = TestEnv::minimal()
        .with(ENV_SESSION_KEY_CLAIM, "sub")
        .with(ENV_POLICY_CLAIM, "scope")
        .with(ENV_POLICY_MAP, r#"{"orders:read":"pol-read"}"#)
        .with(ENV_APPLY_POLICIES, "base, audit")
        .with(ENV_METADATA_CLAIMS, "email:user_email,tenant")
        .with(ENV_JWT_IN_METADATA, "true")
        .parse()
        .unwrap();
    let rules = &config.identity;
    assert_eq!(rules.session_key_claim.as_deref(), Some("sub"));
    assert_eq!(rules.policy_claim.as_deref(), Some("scope"));
    assert_eq!(
        rules.policy_map.as_ref().unwrap()["orders:read"],
        vec!["pol-read".to_owned()]
    );
    assert_eq!(
        rules.apply_policies,
        vec!["base".to_owned(), "audit".to_owned()]
    );
    assert_eq!(rules.metadata_claims.len(), 2);
    assert!(rules.jwt_in_metadata);

    let config = TestEnv::minimal()
        .with(ENV_COMMA_SEPARATED_CLAIMS, "roles, groups")
        .with(ENV_ANALYTICS_ALIAS_CLAIM, "email")
        .with(ENV_ANALYTICS_TAG_CLAIMS, "tenant tier")
        .parse()
        .unwrap();
    let rules = &config.identity;
    assert_eq!(rules.comma_separated_claims, vec!["roles", "groups"]);
    assert_eq!(rules.analytics_alias_claim.as_deref(), Some("email"));
    assert_eq!(rules.analytics_tag_claims, vec!["tenant", "tier"]);
    let problems = TestEnv::minimal()
        .with(ENV_ANALYTICS_ALIAS_CLAIM, "two words")
        .with(ENV_ANALYTICS_TAG_CLAIMS, "ok\u{1}")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");

    let problems = TestEnv::minimal()
        .with(ENV_POLICY_MAP, r#"{"a":"p"}"#)
        .with(ENV_JWT_IN_METADATA, "perhaps")
        .with(ENV_METADATA_CLAIMS, "email:no spaces allowed!")
        .problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p == "POLICY_MAP needs POLICY_CLAIM")
    );
}

#[test]
fn plain_http_introspection_needs_an_explicit_opt_in() {
    let problems = TestEnv::minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("INTROSPECTION_ALLOW_HTTP=true"),
        "{problems:?}"
    );
    let config = TestEnv::minimal()
        .with(ENV_INTROSPECTION_URL, "http://idsvr.internal/introspect")
        .with(ENV_INTROSPECTION_ALLOW_HTTP, "true")
        .parse()
        .unwrap();
    assert_eq!(config.introspection.url.scheme(), "http");
}

#[test]
fn resilience_settings_have_defaults_and_bounds() {
    let config = TestEnv::minimal().parse().unwrap();
    assert_eq!(config.introspection.max_inflight, 64);
    assert_eq!(
        config.introspection.inflight_wait,
        Duration::from_millis(100)
    );
    assert_eq!(config.introspection.breaker_failures, 5);
    assert_eq!(config.cache.revalidate_after, None);
    assert_eq!(config.admin, None);
    let config = TestEnv::minimal()
        .with(ENV_MAX_INFLIGHT_INTROSPECTIONS, "8")
        .with(ENV_INFLIGHT_WAIT_SECONDS, "0.25")
        .with(ENV_BREAKER_FAILURES, "3")
        .with(ENV_BREAKER_OPEN_SECONDS, "1.5")
        .with(ENV_REVALIDATE_AFTER_SECONDS, "60")
        .with(ENV_ADMIN_ADDR, "127.0.0.1:9090")
        .parse()
        .unwrap();
    assert_eq!(config.introspection.max_inflight, 8);
    assert_eq!(
        config.introspection.inflight_wait,
        Duration::from_millis(250)
    );
    assert_eq!(
        config.introspection.breaker_open,
        Duration::from_millis(1500)
    );
    assert_eq!(config.cache.revalidate_after, Some(Duration::from_secs(60)));
    assert_eq!(config.admin, Some("127.0.0.1:9090".parse().unwrap()));
    let problems = TestEnv::minimal()
        .with(ENV_MAX_INFLIGHT_INTROSPECTIONS, "0")
        .with(ENV_ADMIN_ADDR, "localhost")
        .with(ENV_INTROSPECTION_CLIENT_CERT_FILE, "/tls/client.pem")
        .problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn credentials_in_a_rejected_url_are_masked_in_the_message() {
    let problems = TestEnv::minimal()
        .with(
            ENV_INTROSPECTION_URL,
            "https://gateway:Pw-9f8e7d@idsvr.example.com/introspect",
        )
        .problems();
    assert_eq!(problems.len(), 1);
    assert!(!problems[0].contains("Pw-9f8e7d"), "{problems:?}");
    assert!(
        problems[0].contains("https://***@idsvr.example.com/introspect"),
        "{problems:?}"
    );
}

#[test]
fn session_keys_from_the_client_secret_are_flagged() {
    let shared = TestEnv::minimal().parse().unwrap();
    assert!(shared.session.key_secret_is_client_secret);
    assert_eq!(shared.session.key_secret.expose(), "s3cr3t-value");
    let own = TestEnv::minimal()
        .with(ENV_SESSION_KEY_SECRET, "separate-key")
        .parse()
        .unwrap();
    assert!(!own.session.key_secret_is_client_secret);
    assert_eq!(own.session.key_secret.expose(), "separate-key");
}

#[test]
fn introspection_proxy_is_off_unless_set_and_must_be_a_plain_proxy_url() {
    assert_eq!(
        TestEnv::minimal().parse().unwrap().introspection.proxy,
        None
    );
    for good in [
        "http://proxy.internal:3128",
        "https://proxy.internal",
        "http://user:pa%3Ass@10.0.0.1:8080/",
    ] {
        let config = TestEnv::minimal()
            .with(ENV_INTROSPECTION_PROXY, good)
            .parse()
            .unwrap();
        let proxy = config.introspection.proxy.expect(good);
        assert_eq!(
            proxy.url().as_str().trim_end_matches('/'),
            good.trim_end_matches('/')
        );
    }
    for bad in [
        "proxy.internal:3128",
        "socks5://proxy.internal:1080",
        "http://",
        "http://proxy.internal:3128/path",
        "http://proxy.internal:3128/?q=1",
        "not a url",
    ] {
        let problems = TestEnv::minimal()
            .with(ENV_INTROSPECTION_PROXY, bad)
            .problems();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(
            problems[0].starts_with("INTROSPECTION_PROXY="),
            "{problems:?}"
        );
    }
}

#[test]
fn proxy_credentials_are_never_shown() {
    let config = TestEnv::minimal()
        .with(
            ENV_INTROSPECTION_PROXY,
            "http://user:Pw-4e5f@proxy.internal:3128",
        )
        .parse()
        .unwrap();
    let proxy = config.introspection.proxy.clone().unwrap();
    for shown in [
        proxy.to_string(),
        format!("{proxy:?}"),
        format!("{config:?}"),
    ] {
        assert!(!shown.contains("Pw-4e5f"), "{shown}");
    }
    assert!(
        proxy.to_string().contains("***@proxy.internal:3128"),
        "{proxy}"
    );
    let problems = TestEnv::minimal()
        .with(ENV_INTROSPECTION_PROXY, "ftp://user:Pw-4e5f@proxy.internal")
        .problems();
    assert!(!problems[0].contains("Pw-4e5f"), "{problems:?}");
}

#[test]
fn no_store_from_the_as_is_ignored_unless_asked_for() {
    let config = TestEnv::minimal().parse().unwrap();
    assert!(!config.cache.honor_no_store);
    let config = TestEnv::minimal()
        .with(ENV_HONOR_CACHE_CONTROL_NO_STORE, "true")
        .parse()
        .unwrap();
    assert!(config.cache.honor_no_store);
    let problems = TestEnv::minimal()
        .with(ENV_HONOR_CACHE_CONTROL_NO_STORE, "sometimes")
        .parse()
        .unwrap_err()
        .problems;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("HONOR_CACHE_CONTROL_NO_STORE=")),
        "{problems:?}"
    );
}

#[test]
fn the_issuer_stands_in_for_the_introspection_url_until_discovery() {
    let config = TestEnv::minimal()
        .without(ENV_INTROSPECTION_URL)
        .with("ISSUER", "https://as.example.com/realms/main")
        .parse()
        .unwrap();
    assert!(config.introspection.any_as.discover_introspection_url);
    assert_eq!(
        config.introspection.url.as_str(),
        "https://as.example.com/realms/main"
    );
    // Set, the URL wins and is not discovered.
    let config = TestEnv::minimal()
        .with("ISSUER", "https://as.example.com/realms/main")
        .parse()
        .unwrap();
    assert!(!config.introspection.any_as.discover_introspection_url);
    assert_eq!(
        config.introspection.url.as_str(),
        "https://idsvr.example.com/oauth/v2/oauth-introspect"
    );
    // Problems of the any-AS settings are reported with the others.
    let problems = TestEnv::minimal()
        .with("INTROSPECTION_ACCEPT", "application/json")
        .with(ENV_TIMEOUT_SECONDS, "0")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
}
