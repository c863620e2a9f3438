use super::*;

fn tcp(host: &str, port: u16) -> ConnectionAddr {
    ConnectionAddr::Tcp(host.to_owned(), port)
}

#[test]
fn a_single_server_url_is_handed_to_the_redis_crate() {
    let RedisTarget::Single(info) = RedisTarget::parse("redis://:p%40ss@10.0.0.5:6380/2").unwrap()
    else {
        panic!("single");
    };
    assert_eq!(info.addr(), &tcp("10.0.0.5", 6380));
    assert_eq!(info.redis_settings().password(), Some("p@ss"));
    assert_eq!(info.redis_settings().db(), 2);
    let RedisTarget::Single(info) = RedisTarget::parse("redis://cache").unwrap() else {
        panic!("single");
    };
    assert_eq!(info.addr(), &tcp("cache", 6379));
}

#[test]
fn rediss_means_tls() {
    let target = RedisTarget::parse("rediss://cache:6380").unwrap();
    assert!(target.tls());
    assert!(matches!(
        target,
        RedisTarget::Single(ref info)
            if matches!(info.addr(), ConnectionAddr::TcpTls { insecure: false, .. })
    ));
    assert!(!RedisTarget::parse("redis://cache").unwrap().tls());
}

#[test]
fn a_sentinel_url_lists_sentinels_then_the_master() {
    let RedisTarget::Sentinel {
        sentinels,
        master,
        redis,
        tls,
    } = RedisTarget::parse("redis+sentinel://app:s3cret@s1,s2:5000,[::1]/mymaster/3").unwrap()
    else {
        panic!("sentinel");
    };
    assert_eq!(
        sentinels,
        vec![tcp("s1", 26379), tcp("s2", 5000), tcp("::1", 26379)]
    );
    assert_eq!(master, "mymaster");
    assert_eq!(redis.username(), Some("app"));
    assert_eq!(redis.password(), Some("s3cret"));
    assert_eq!(redis.db(), 3);
    assert!(!tls);
    assert!(RedisTarget::parse("rediss+sentinel://s1/m").unwrap().tls());
}

#[test]
fn a_sentinel_url_needs_a_master_name() {
    assert_eq!(
        RedisTarget::parse("redis+sentinel://s1:26379").unwrap_err(),
        OptionsError::MissingMaster
    );
    assert_eq!(
        RedisTarget::parse("redis+sentinel://s1:26379/").unwrap_err(),
        OptionsError::MissingMaster
    );
}

#[test]
fn a_cluster_url_lists_seed_nodes_with_shared_credentials() {
    let RedisTarget::Cluster { nodes, tls } =
        RedisTarget::parse("redis+cluster://:pw@n1:7000,n2:7001,n3").unwrap()
    else {
        panic!("cluster");
    };
    assert!(!tls);
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr().clone()).collect();
    assert_eq!(
        addrs,
        vec![tcp("n1", 7000), tcp("n2", 7001), tcp("n3", 6379)]
    );
    assert!(
        nodes
            .iter()
            .all(|n| n.redis_settings().password() == Some("pw"))
    );
    assert!(
        RedisTarget::parse("rediss+cluster://n1:7000")
            .unwrap()
            .tls()
    );
    assert_eq!(
        RedisTarget::parse("redis+cluster://n1:7000/1").unwrap_err(),
        OptionsError::ClusterPath
    );
}

#[test]
fn bad_urls_get_specific_errors_without_echoing_the_url() {
    for (url, want) in [
        ("http://cache", OptionsError::UnknownScheme("http".into())),
        (
            "redis+ring://a",
            OptionsError::UnknownScheme("redis+ring".into()),
        ),
        ("cache:6379", OptionsError::Malformed("no scheme")),
        ("rediss://cache#insecure", OptionsError::Fragment),
        (
            "redis+cluster://a,,b",
            OptionsError::Malformed("empty host in the host list"),
        ),
        (
            "redis+cluster://a?protocol=resp3",
            OptionsError::Malformed("query parameters are not supported"),
        ),
    ] {
        assert_eq!(RedisTarget::parse(url).unwrap_err(), want, "{url}");
    }
    let err = RedisTarget::parse("redis://:hunter2@cache:notaport").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn options_check_prefix_secret_and_tls_files() {
    let ok = SharedCacheOptions::new("redis://cache", "k");
    assert!(ok.validate().is_ok());
    let mut o = ok.clone();
    o.key_prefix = "app:{x}:".into();
    assert_eq!(o.validate().unwrap_err(), OptionsError::PrefixWithBraces);
    let o = SharedCacheOptions::new("redis://cache", "");
    assert_eq!(o.validate().unwrap_err(), OptionsError::EmptySecret);
    let mut o = ok.clone();
    o.tls.ca_file = Some("/ca.pem".into());
    assert_eq!(o.validate().unwrap_err(), OptionsError::TlsFilesWithoutTls);
    o.url = Redacted("rediss://cache".into());
    assert!(o.validate().is_ok());
    o.tls.cert_file = Some("/client.pem".into());
    assert_eq!(o.validate().unwrap_err(), OptionsError::HalfClientCert);
    let mut o = ok;
    o.op_timeout = Duration::ZERO;
    assert_eq!(o.validate().unwrap_err(), OptionsError::ZeroTimeout);
}

#[test]
fn debug_shows_no_password_or_secret() {
    let mut o = SharedCacheOptions::new("redis://:hunter2@cache", "server-secret");
    o.sentinel_password = Some(Redacted("sentinel-pw".into()));
    let shown = format!("{o:?}");
    for secret in ["hunter2", "server-secret", "sentinel-pw"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let target = format!(
        "{:?}",
        RedisTarget::parse("redis+cluster://:hunter2@n1:7000").unwrap()
    );
    assert!(!target.contains("hunter2"), "{target}");
}
