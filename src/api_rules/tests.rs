use super::*;

fn claims(json: &str) -> Claims {
    Claims::from_map(serde_json::from_str(json).unwrap()).unwrap()
}

fn parse(text: &str) -> Result<ApiRules, String> {
    parse_config_data(text, &IdentityRules::default())
}

#[test]
fn empty_config_data_changes_nothing() {
    assert_eq!(parse("{}"), Ok(ApiRules::default()));
}

#[test]
fn required_scopes_are_all_required() {
    let rules = parse(r#"{"required_scopes":["orders:read","orders:write"]}"#).unwrap();
    assert_eq!(
        rules.check(&claims(r#"{"scope":"orders:write openid orders:read"}"#)),
        Ok(())
    );
    assert_eq!(
        rules.check(&claims(r#"{"scope":"orders:read"}"#)),
        Err(RuleDenial::InsufficientScope(
            "orders:read orders:write".into()
        ))
    );
    assert_eq!(
        rules.check(&claims(r#"{}"#)),
        Err(RuleDenial::InsufficientScope(
            "orders:read orders:write".into()
        ))
    );
    // A space-separated string works too.
    let same = parse(r#"{"required_scopes":"orders:read orders:write"}"#).unwrap();
    assert_eq!(same.required_scopes, rules.required_scopes);
}

#[test]
fn no_required_scopes_key_means_no_scope_check() {
    let rules = parse(r#"{"required_audience":"orders-api"}"#).unwrap();
    assert_eq!(rules.check(&claims(r#"{"aud":"orders-api"}"#)), Ok(()));
}

#[test]
fn minted_audience_is_read_and_does_not_check_the_token() {
    let rules = parse(r#"{"minted_audience":"billing-api"}"#).unwrap();
    assert_eq!(rules.minted_audience.as_deref(), Some("billing-api"));
    assert_eq!(rules.required_audience, None);
    assert_eq!(rules.check(&claims(r#"{"aud":"web"}"#)), Ok(()));
    assert_eq!(parse("{}").unwrap().minted_audience, None);
}

#[test]
fn required_audience_accepts_string_or_array_aud() {
    let rules = parse(r#"{"required_audience":"orders-api"}"#).unwrap();
    assert_eq!(rules.check(&claims(r#"{"aud":"orders-api"}"#)), Ok(()));
    assert_eq!(
        rules.check(&claims(r#"{"aud":["web","orders-api"]}"#)),
        Ok(())
    );
    assert_eq!(
        rules.check(&claims(r#"{"aud":"web"}"#)),
        Err(RuleDenial::WrongAudience)
    );
    assert_eq!(
        rules.check(&claims(r#"{}"#)),
        Err(RuleDenial::WrongAudience)
    );
}

#[test]
fn invalid_config_data_is_refused_with_the_key_named() {
    for (text, expected) in [
        ("not json", "config_data"),
        (
            r#"{"required_scope":["a"]}"#,
            "unknown field `required_scope`",
        ),
        (r#"{"required_scopes":["has\"quote"]}"#, "required_scopes"),
        (r#"{"required_scopes":[""]}"#, "required_scopes"),
        (r#"{"required_scopes":42}"#, "config_data"),
        (r#"{"required_audience":""}"#, "required_audience"),
        (r#"{"minted_audience":""}"#, "minted_audience"),
        (r#"{"minted_audience":"a\u0007b"}"#, "minted_audience"),
        (r#"{"minted_audience":["a","b"]}"#, "config_data"),
        (
            r#"{"metadata_claims":["email"],"jwt_in_metadata":"yes"}"#,
            "config_data",
        ),
        (
            r#"{"metadata_claims":{"email":"bad key"}}"#,
            "metadata_claims",
        ),
        (r#"{"metadata_claims":["token"]}"#, "set by the plugin"),
        (
            r#"{"policy_map":{"a":"p"}}"#,
            "policy_map needs policy_claim",
        ),
        (
            r#"{"policy_claim":"roles","policy_map":{"a":["has space"]}}"#,
            "policy_map",
        ),
        (r#"{"session_key_claim":"two words"}"#, "session_key_claim"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{text}: {err}");
    }
    let huge = format!(
        r#"{{"required_audience":"{}"}}"#,
        "a".repeat(MAX_CONFIG_DATA_BYTES)
    );
    assert!(parse(&huge).unwrap_err().contains("larger than"));
}

#[test]
fn config_data_overrides_global_identity_rules_key_by_key() {
    let global = IdentityRules {
        session_key_claim: Some("sub".into()),
        apply_policies: vec!["base".into()],
        jwt_in_metadata: false,
        ..IdentityRules::default()
    };
    let rules = parse_config_data(
        r#"{"jwt_in_metadata":true,"apply_policies":"p1,p2"}"#,
        &global,
    )
    .unwrap();
    assert_eq!(rules.identity.session_key_claim.as_deref(), Some("sub"));
    assert_eq!(rules.identity.apply_policies, vec!["p1", "p2"]);
    assert!(rules.identity.jwt_in_metadata);
    let off = parse_config_data(r#"{"session_key_claim":""}"#, &global).unwrap();
    assert_eq!(off.identity.session_key_claim, None);
}

#[test]
fn policies_come_from_static_ids_and_the_policy_claim() {
    let direct = parse(r#"{"apply_policies":["base"],"policy_claim":"policies"}"#).unwrap();
    assert_eq!(
        direct
            .identity
            .policies(&claims(r#"{"policies":["gold","base","silver"]}"#)),
        vec!["base", "gold", "silver"]
    );
    let mapped = parse(
        r#"{"policy_claim":"scope","policy_map":{"orders:read":"pol-read","orders:write":["pol-write","pol-audit"]}}"#,
    )
    .unwrap();
    assert_eq!(
        mapped
            .identity
            .policies(&claims(r#"{"scope":"openid orders:write orders:read"}"#)),
        vec!["pol-write", "pol-audit", "pol-read"]
    );
    assert!(
        mapped
            .identity
            .policies(&claims(r#"{"scope":"openid"}"#))
            .is_empty()
    );
    assert!(mapped.identity.policies(&claims(r#"{}"#)).is_empty());
}

#[test]
fn metadata_claims_copy_strings_numbers_and_string_lists_only() {
    let rules = parse(r#"{"metadata_claims":{"email":"user_email","tier":"tier","groups":"groups","obj":"obj","bad":"bad"}}"#)
        .unwrap();
    let c = claims(
        r#"{"email":"a@example.com","tier":3,"groups":["x","y"],"obj":{"k":1},"bad":"line\nbreak"}"#,
    );
    let mut got: Vec<(&str, String)> = rules.identity.metadata(&c).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("groups", "x y".to_owned()),
            ("tier", "3".to_owned()),
            ("user_email", "a@example.com".to_owned())
        ]
    );
}

#[test]
fn env_parsers_read_lists_and_maps() {
    assert_eq!(
        env::policy_ids("a, b c"),
        Ok(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(
        env::metadata_claims("email:user_email,tenant"),
        Ok(vec![
            ("email".into(), "user_email".into()),
            ("tenant".into(), "tenant".into())
        ])
    );
    assert!(env::metadata_claims("email:bad key!").is_err());
    assert_eq!(
        env::policy_map(r#"{"admin":["p1","p2"],"user":"p3"}"#).unwrap()["admin"],
        vec!["p1".to_owned(), "p2".to_owned()]
    );
    assert!(env::policy_map("[1,2]").is_err());
}

#[test]
fn each_distinct_config_is_parsed_once_and_invalid_ones_logged_once() {
    let policies = ApiRulesCache::new(IdentityRules::default());
    let mut logged = 0;
    for _ in 0..3 {
        let result = policies.resolve(Some(r#"{"required_scope":"x"}"#), |_| logged += 1);
        assert!(result.is_err());
    }
    assert_eq!(logged, 1);
    let a = policies
        .resolve(Some(r#"{"required_scopes":"x"}"#), |_| panic!("valid"))
        .unwrap();
    let b = policies
        .resolve(Some(r#"{"required_scopes":"x"}"#), |_| panic!("valid"))
        .unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "the second lookup reuses the parsed settings"
    );
    let default = policies.resolve(None, |_| panic!("no config")).unwrap();
    assert!(default.required_scopes.is_empty());
}

#[test]
fn a_comma_inside_a_granted_scope_does_not_split_it() {
    let rules = parse(r#"{"required_scopes":["orders:admin"]}"#).unwrap();
    assert_eq!(
        rules.check(&claims(r#"{"scope":"orders:x,orders:admin"}"#)),
        Err(RuleDenial::InsufficientScope("orders:admin".into()))
    );
    assert_eq!(
        rules.check(&claims(r#"{"scope":"openid orders:admin"}"#)),
        Ok(())
    );
}

#[test]
fn required_scopes_with_commas_or_blanks_are_refused() {
    for text in [
        r#"{"required_scopes":["orders:read,orders:write"]}"#,
        r#"{"required_scopes":"orders:read,orders:write"}"#,
        r#"{"required_scopes":"orders:read, orders:write"}"#,
        r#"{"required_scopes":["orders:read orders:write"]}"#,
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains("required_scopes"), "{text}: {err}");
    }
}

#[test]
fn an_empty_scope_requirement_is_refused() {
    for text in [
        r#"{"required_scopes":""}"#,
        r#"{"required_scopes":" "}"#,
        r#"{"required_scopes":[]}"#,
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains("required_scopes"), "{text}: {err}");
    }
}

#[test]
fn one_claim_value_with_a_comma_names_one_policy() {
    let rules = parse(r#"{"policy_claim":"roles"}"#).unwrap();
    assert_eq!(
        rules
            .identity
            .policies(&claims(r#"{"roles":"gold,silver bronze"}"#)),
        vec!["gold,silver", "bronze"]
    );
}

#[test]
fn oversized_config_data_is_refused_without_being_stored() {
    let policies = ApiRulesCache::new(IdentityRules::default());
    let huge = format!(
        r#"{{"required_audience":"{}"}}"#,
        "a".repeat(MAX_CONFIG_DATA_BYTES)
    );
    for _ in 0..3 {
        let refused = policies.resolve(Some(&huge), |_| {}).unwrap_err();
        assert!(refused.contains("larger than"), "{refused}");
    }
    assert_eq!(policies.remembered(), 0, "the oversized text is not kept");
}

#[test]
fn configs_in_use_are_not_parsed_again_however_many_others_come() {
    let policies = ApiRulesCache::new(IdentityRules::default());
    let hot = r#"{"required_scopes":"orders:read"}"#;
    let first = policies.resolve(Some(hot), |_| panic!("valid")).unwrap();
    for n in 0..3000 {
        let text = format!(r#"{{"required_audience":"api-{n}"}}"#);
        policies.resolve(Some(&text), |_| panic!("valid")).unwrap();
        if n % 16 == 0 {
            let again = policies.resolve(Some(hot), |_| panic!("valid")).unwrap();
            assert!(
                Arc::ptr_eq(&first, &again),
                "parsed again after {n} other configs"
            );
        }
    }
    assert!(policies.remembered() <= 1024, "{}", policies.remembered());
}

#[test]
fn claims_named_comma_separated_are_split_at_commas_too() {
    let rules = parse(
        r#"{"policy_claim":"roles","comma_separated_claims":["roles","scope"],"required_scopes":"orders:admin"}"#,
    )
    .unwrap();
    let c = claims(r#"{"roles":"gold,silver bronze","scope":"orders:x,orders:admin"}"#);
    assert_eq!(
        rules.identity.policies(&c),
        vec!["gold", "silver", "bronze"]
    );
    assert_eq!(
        rules.check(&c),
        Ok(()),
        "the operator said scope uses commas"
    );
    let from_string = parse(r#"{"comma_separated_claims":"roles, groups"}"#).unwrap();
    assert_eq!(
        from_string.identity.comma_separated_claims,
        vec!["roles", "groups"]
    );
    for bad in [
        r#"{"comma_separated_claims":["two words"]}"#,
        r#"{"comma_separated_claims":[""]}"#,
        r#"{"comma_separated_claims":42}"#,
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn api_versions_default_to_tyks_unversioned_name() {
    assert_eq!(parse("{}").unwrap().api_versions(), vec!["Default"]);
    let listed = parse(r#"{"api_versions":["v1","Version 2"]}"#).unwrap();
    assert_eq!(listed.api_versions(), vec!["v1", "Version 2"]);
    for bad in [
        r#"{"api_versions":[]}"#,
        r#"{"api_versions":[""]}"#,
        r#"{"api_versions":["v\n1"]}"#,
        r#"{"api_versions":"v1"}"#,
    ] {
        let err = parse(bad).unwrap_err();
        assert!(
            err.contains("api_versions") || err.contains("config_data"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_analytics_alias_is_the_identity() {
    let c = claims(r#"{"sub":"alice","email":"a@example.com","client_id":"web","n":42}"#);
    let mut rules = IdentityRules::default();
    assert_eq!(rules.alias(&c), "alice", "sub by default");
    rules.session_key_claim = Some("email".into());
    assert_eq!(rules.alias(&c), "a@example.com", "the session-key claim");
    rules.session_key_claim = Some("missing".into());
    assert_eq!(rules.alias(&c), "alice", "sub when the key claim is absent");
    rules.analytics_alias_claim = Some("n".into());
    assert_eq!(rules.alias(&c), "42", "the chosen claim wins");
    rules.analytics_alias_claim = Some("missing".into());
    assert_eq!(rules.alias(&c), "");
    let unsafe_sub = claims(r#"{"sub":"line\nbreak"}"#);
    assert_eq!(IdentityRules::default().alias(&unsafe_sub), "");
}

#[test]
fn analytics_tags_come_from_the_chosen_claims_safely() {
    let rules = IdentityRules {
        analytics_tag_claims: vec![
            "tenant".into(),
            "groups".into(),
            "tier".into(),
            "bad".into(),
        ],
        ..IdentityRules::default()
    };
    let c =
        claims(r#"{"tenant":"acme","groups":["ops","dev","ops",""],"tier":2,"bad":"a\u0000b"}"#);
    assert_eq!(
        rules.tags(&c),
        vec!["tenant:acme", "groups:ops", "groups:dev", "tier:2"]
    );
    let many: Vec<String> = (0..100).map(|n| format!("g{n}")).collect();
    let c = claims(&serde_json::json!({ "groups": many }).to_string());
    assert_eq!(rules.tags(&c).len(), MAX_ANALYTICS_TAGS);
    assert!(IdentityRules::default().tags(&c).is_empty());
}

#[test]
fn rules_naming_claims_outside_the_summary_read_the_whole_jwt() {
    let mut rules = ApiRules::default();
    assert!(!rules.needs_full_claims());
    rules.identity.analytics_tag_claims = vec!["tenant".into()];
    assert!(rules.needs_full_claims());
    rules.identity.analytics_tag_claims = vec!["sub".into()];
    rules.identity.analytics_alias_claim = Some("email".into());
    assert!(rules.needs_full_claims());
}
