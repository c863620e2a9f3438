//! The configuration variables.

use proptest::prelude::*;
use proptest::sample::select;
use tyk_phantom_token::config::{self, ALL_VARIABLES, Config, MapSource};

use crate::cases;

const SECRET: &str = "Kx7-client-secret-Qm2";

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        1 => ".{0,300}",
        1 => "[0-9]{1,30}",
        1 => "-[0-9]{1,20}",
        1 => "[ \t\r\n\u{a0}]{0,4}[0-9]{1,8}(\\.[0-9]{1,4})?[ \t\r\n\u{a0}]{0,4}",
        1 => "[0-9]{1,22} ?[KMGkmgTPb]?i?[Bb]?",
        2 => select(&[
            "0", "-1", "1", "65535", "65536", "1e309", "NaN", "inf", "-0", "+5", "0x10",
            "18446744073709551615", "18446744073709551616", "9223372036854775808",
            "\u{0}", "\u{7f}", "\u{202e}", "  42  ", "64KiB", "16MiB", "1.5", "2,5",
            "http://[::1]:0/x", "ftp://x", "https://", "http://h/#f", "https://u:p@h/",
            "true", "off", "json", "TEXT", "trace,h2=warn", "info,[{a=1}]=debug",
            "{}", "{\"a\":\"b\"}", "{\"a\":[\"b\",\"c d\"]}", "[]", "sub:x,email", "sub:token",
            "127.0.0.1:0", "[::]:50051", "localhost:1", "/run/secrets/none",
        ][..]).prop_map(str::to_owned),
    ]
}

fn known_problem(problem: &str) -> bool {
    ALL_VARIABLES.iter().any(|name| problem.starts_with(name))
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any values of any variables: no panic; an error lists only problems
    /// that each begin with the name of a variable.
    #[test]
    fn config_problems_always_name_a_variable(
        changes in prop::collection::vec((select(ALL_VARIABLES), hostile_value()), 0..5),
    ) {
        let mut env = MapSource::minimal(SECRET);
        for (name, value) in &changes {
            env = env.with(name, value);
        }
        if let Err(e) = Config::from_source(&env) {
            prop_assert!(!e.problems.is_empty());
            for problem in &e.problems {
                prop_assert!(known_problem(problem), "{:?}", problem);
            }
        }
    }

    /// With a single variable changed, every problem names that variable.
    #[test]
    fn one_bad_variable_is_the_one_reported(name in select(ALL_VARIABLES), value in hostile_value()) {
        let env = MapSource::minimal(SECRET).with(name, &value);
        if let Err(e) = Config::from_source(&env) {
            for problem in &e.problems {
                prop_assert!(
                    known_problem(problem) && problem.contains(name),
                    "{} → {:?}", name, problem
                );
            }
        }
    }

    /// A blank value is the same as no value (compose writes `NAME=`): the
    /// configuration read is identical.
    #[test]
    fn blank_values_read_as_unset(
        name in select(ALL_VARIABLES).prop_filter("optional", |n| ![
            config::ENV_INTROSPECTION_URL, config::ENV_CLIENT_ID, config::ENV_CLIENT_SECRET,
        ].contains(n)),
        blank in "[ \t\r\n]{0,4}",
    ) {
        let unset = Config::from_source(&MapSource::minimal(SECRET)).map(|c| format!("{c:?}"));
        let blank = Config::from_source(&MapSource::minimal(SECRET).with(name, &blank)).map(|c| format!("{c:?}"));
        prop_assert_eq!(blank, unset);
    }

    /// The client secret and the session-key secret never appear in an error
    /// message or in the configuration's `Debug`, whatever else is wrong.
    #[test]
    fn secrets_never_appear_in_messages(
        secret in "[A-Za-z0-9]{20,40}",
        key_secret in "[A-Za-z0-9]{20,40}",
        from_file in any::<bool>(),
        both in any::<bool>(),
        changes in prop::collection::vec(
            (select(ALL_VARIABLES).prop_filter("not a secret", |n| ![
                config::ENV_CLIENT_SECRET, config::ENV_CLIENT_SECRET_FILE, config::ENV_SESSION_KEY_SECRET,
            ].contains(n)), hostile_value()),
            1..4,
        ),
    ) {
        prop_assume!(changes.iter().all(|(_, v)| !v.contains(&secret) && !v.contains(&key_secret)));
        let mut env = MapSource::minimal(&secret).with(config::ENV_SESSION_KEY_SECRET, &key_secret);
        if from_file {
            env = env
                .with_file("/run/secrets/client", &format!("{secret}\n"))
                .with(config::ENV_CLIENT_SECRET_FILE, "/run/secrets/client");
            if !both {
                env = env.without(config::ENV_CLIENT_SECRET);
            }
        }
        for (name, value) in &changes {
            env = env.with(name, value);
        }
        let shown = match Config::from_source(&env) {
            Ok(config) => format!("{config:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&secret), "client secret shown: {}", shown);
        prop_assert!(!shown.contains(&key_secret), "session key secret shown: {}", shown);
    }

    /// A whole-number variable is accepted exactly within its range, with
    /// blanks around it, and read as that number.
    #[test]
    fn max_token_bytes_is_read_exactly_within_its_range(
        n in prop_oneof![
            -5i128..5,
            1_048_570i128..1_048_580,
            any::<i64>().prop_map(i128::from),
            any::<u128>().prop_map(|n| n as i128),
        ],
        pad in "[ \t]{0,2}",
    ) {
        let env = MapSource::minimal(SECRET).with(config::ENV_MAX_TOKEN_BYTES, &format!("{pad}{n}{pad}"));
        match Config::from_source(&env) {
            Ok(c) => {
                prop_assert!((1..=1 << 20).contains(&n));
                prop_assert_eq!(c.max_token_bytes as i128, n);
            }
            Err(e) => {
                prop_assert!(!(1..=1 << 20).contains(&n));
                prop_assert!(e.problems.len() == 1 && e.problems[0].starts_with("MAX_TOKEN_BYTES="));
            }
        }
    }

    /// Sizes with binary units are read as such, within the variable's range.
    #[test]
    fn byte_sizes_are_read_with_their_units(
        n in prop_oneof![0u64..5000, any::<u64>()],
        unit in select(&[("", 1u64), ("b", 1), ("K", 1 << 10), ("KiB", 1 << 10), ("kb", 1 << 10),
            ("MiB", 1 << 20), (" MiB", 1 << 20), ("m", 1 << 20), ("GiB", 1 << 30), ("GB", 1 << 30)][..]),
    ) {
        let (suffix, multiplier) = unit;
        let env = MapSource::minimal(SECRET).with(config::ENV_CACHE_MAX_BYTES, &format!("{n}{suffix}"));
        let expected = n.checked_mul(multiplier).filter(|b| (64 * 1024..=1 << 40).contains(b));
        match (Config::from_source(&env), expected) {
            (Ok(c), Some(bytes)) => prop_assert_eq!(c.cache.max_bytes, bytes),
            (Err(e), None) => prop_assert!(e.problems.iter().all(|p| p.starts_with("CACHE_MAX_BYTES="))),
            (got, expected) => prop_assert!(
                false,
                "{}{}: {:?} vs {:?}", n, suffix, got.map(|c| c.cache.max_bytes), expected
            ),
        }
    }

    /// A port is 1 to 65535 and nothing else.
    #[test]
    fn port_is_read_exactly(n in prop_oneof![0i64..70_000, any::<i64>()]) {
        let env = MapSource::minimal(SECRET).with(config::ENV_PORT, &n.to_string());
        match Config::from_source(&env) {
            Ok(c) => {
                prop_assert!((1..=65535).contains(&n));
                let tyk_phantom_token::server::ListenAddr::Tcp(addr) = c.listen else {
                    panic!("PORT gives a TCP address");
                };
                prop_assert_eq!(i64::from(addr.port()), n);
            }
            Err(_) => prop_assert!(!(1..=65535).contains(&n)),
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// A URL carrying credentials is refused; the message must not repeat
    /// them (it is printed at start-up and lands in the logs).
    #[test]
    fn credentials_in_the_introspection_url_are_not_repeated(
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{12,24}",
    ) {
        let url = format!("https://{user}:{password}@idsvr.example.com/introspect");
        let env = MapSource::minimal(SECRET).with(config::ENV_INTROSPECTION_URL, &url);
        let e = Config::from_source(&env).unwrap_err();
        prop_assert!(e.problems.len() == 1 && e.problems[0].starts_with("INTROSPECTION_URL"));
        prop_assert!(!e.to_string().contains(&password), "{}", e);
    }
}
