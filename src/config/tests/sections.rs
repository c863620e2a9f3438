//! The rules of the other sections: defaults, bounds, and values that need
//! each other.

use super::*;

#[test]
fn zero_max_entries_means_no_entry_limit_as_in_curitys_plugin() {
    let config = minimal().with(ENV_CACHE_MAX_ENTRIES, "0").parse().unwrap();
    assert_eq!(config.cache.max_entries, None);
}

#[test]
fn listen_addr_or_port_but_not_both() {
    let config = minimal()
        .with(ENV_LISTEN_ADDR, "127.0.0.1:7000")
        .parse()
        .unwrap();
    assert_eq!(
        config.listen,
        ListenAddr::Tcp("127.0.0.1:7000".parse().unwrap())
    );
    let config = minimal()
        .with(ENV_LISTEN_ADDR, "unix:///run/tyk/phantom.sock")
        .parse()
        .unwrap();
    assert_eq!(
        config.listen,
        ListenAddr::Unix("/run/tyk/phantom.sock".into())
    );

    let problems = minimal()
        .with(ENV_LISTEN_ADDR, "127.0.0.1:7000")
        .with(ENV_PORT, "7000")
        .problems();
    assert_eq!(
        problems,
        vec!["PORT and LISTEN_ADDR are both set; set only one".to_owned()]
    );

    let problems = minimal().with(ENV_LISTEN_ADDR, "localhost").problems();
    assert!(
        problems[0].starts_with("LISTEN_ADDR=\"localhost\""),
        "{problems:?}"
    );
}

#[test]
fn session_limits_need_their_periods() {
    let problems = minimal()
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

    let config = minimal()
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
fn log_level_must_be_a_valid_filter() {
    let config = minimal()
        .with(ENV_LOG_LEVEL, "debug,h2=info")
        .parse()
        .unwrap();
    assert_eq!(config.log_level, "debug,h2=info");
    let problems = minimal().with(ENV_LOG_LEVEL, "loud=[").problems();
    assert!(problems[0].starts_with("LOG_LEVEL="), "{problems:?}");
}

#[test]
fn global_identity_rules_are_read_and_checked() {
    let config = minimal()
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

    let config = minimal()
        .with(ENV_COMMA_SEPARATED_CLAIMS, "roles, groups")
        .with(ENV_ANALYTICS_ALIAS_CLAIM, "email")
        .with(ENV_ANALYTICS_TAG_CLAIMS, "tenant tier")
        .parse()
        .unwrap();
    let rules = &config.identity;
    assert_eq!(rules.comma_separated_claims, vec!["roles", "groups"]);
    assert_eq!(rules.analytics_alias_claim.as_deref(), Some("email"));
    assert_eq!(rules.analytics_tag_claims, vec!["tenant", "tier"]);
    let problems = minimal()
        .with(ENV_ANALYTICS_ALIAS_CLAIM, "two words")
        .with(ENV_ANALYTICS_TAG_CLAIMS, "ok\u{1}")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");

    let problems = minimal()
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
fn resilience_settings_have_defaults_and_bounds() {
    let config = minimal().parse().unwrap();
    assert_eq!(config.introspection.max_inflight, 64);
    assert_eq!(
        config.introspection.inflight_wait,
        Duration::from_millis(100)
    );
    assert_eq!(config.introspection.breaker_failures, 5);
    assert_eq!(config.cache.revalidate_after, None);
    assert_eq!(config.admin, None);
    let config = minimal()
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
    let problems = minimal()
        .with(ENV_MAX_INFLIGHT_INTROSPECTIONS, "0")
        .with(ENV_ADMIN_ADDR, "localhost")
        .with(ENV_INTROSPECTION_CLIENT_CERT_FILE, "/tls/client.pem")
        .problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn session_keys_from_the_client_secret_are_flagged() {
    let shared = minimal().parse().unwrap();
    assert!(shared.session.key_secret_is_client_secret);
    assert_eq!(shared.session.key_secret.expose(), "s3cr3t-value");
    let own = minimal()
        .with(ENV_SESSION_KEY_SECRET, "separate-key")
        .parse()
        .unwrap();
    assert!(!own.session.key_secret_is_client_secret);
    assert_eq!(own.session.key_secret.expose(), "separate-key");
}

#[test]
fn no_store_from_the_as_is_ignored_unless_asked_for() {
    let config = minimal().parse().unwrap();
    assert!(!config.cache.honor_no_store);
    let config = minimal()
        .with(ENV_HONOR_CACHE_CONTROL_NO_STORE, "true")
        .parse()
        .unwrap();
    assert!(config.cache.honor_no_store);
    let problems = minimal()
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
fn dpop_nonces_need_their_own_session_key_secret() {
    let problems = minimal().with(ENV_DPOP_NONCE, "true").problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("DPOP_NONCE") && problems[0].contains("SESSION_KEY_SECRET"),
        "{problems:?}"
    );
    assert!(!problems[0].contains(SECRET), "{problems:?}");
    let config = minimal()
        .with(ENV_DPOP_NONCE, "true")
        .with(ENV_SESSION_KEY_SECRET, "nonce-and-session-key")
        .parse()
        .unwrap();
    assert!(config.dpop.nonce);
    assert!(!config.session.key_secret_is_client_secret);
    // Without nonces the client-secret fallback is still only warned about.
    assert!(minimal().parse().is_ok());
}

#[test]
fn a_global_dpop_base_url_is_read_and_checked_like_the_per_api_one() {
    let config = minimal()
        .with("DPOP_BASE_URL", "https://api.example.com/v1/")
        .parse()
        .unwrap();
    assert_eq!(
        config.dpop.base_url.as_ref().map(|u| u.as_str()),
        Some("https://api.example.com/v1/")
    );
    assert_eq!(minimal().parse().unwrap().dpop.base_url, None);
    for bad in [
        "ftp://api.example.com",
        "https://u:p@api.example.com",
        "https://api.example.com/?q",
        "/relative",
    ] {
        let problems = minimal().with("DPOP_BASE_URL", bad).problems();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(problems[0].starts_with("DPOP_BASE_URL="), "{problems:?}");
        assert!(!problems[0].contains(":p@"), "{problems:?}");
    }
}
