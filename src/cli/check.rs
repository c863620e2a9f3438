//! `check`: validates the configuration, finds out which format the
//! authorization server answers in and whether the configuration can allow
//! a token with it ([`crate::probe`]), and, with `--token`, introspects one
//! token and prints what the plugin would do with it.

use super::*;

/// `check`: the configuration, the answer format, then optionally one
/// token, as the plugin sees them.
pub fn check(args: &CheckArgs) -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    // One runtime for every exchange, so they share the client's connections.
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With ISSUER, the endpoints come from the AS's metadata, as at start-up.
    let config = match rt.block_on(crate::app::discovered(&config)) {
        Ok(Some(resolved)) => resolved,
        Ok(None) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let client = match IntrospectionClient::new(&config.introspection, metrics) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "configuration: ok");
    let _ = writeln!(out, "  listen: {}", config.listen);
    // A discovered endpoint comes from the AS's metadata: mask credentials
    // it might carry.
    let _ = writeln!(
        out,
        "  introspection: {} as client {:?} (timeout {:?})",
        config::without_userinfo(config.introspection.url.as_str()),
        config.introspection.client_id,
        config.introspection.timeout
    );
    match &config.introspection.proxy {
        Some(proxy) => {
            let _ = writeln!(out, "  proxy: {proxy}");
        }
        None => {
            let _ = writeln!(
                out,
                "  proxy: none (HTTP_PROXY, HTTPS_PROXY and ALL_PROXY are ignored; set INTROSPECTION_PROXY to use one)"
            );
        }
    }
    if let Some(note) = config.introspection.plain_http_note() {
        let _ = writeln!(out, "  note: {note}");
    }
    for name in &config.ignored {
        let _ = writeln!(
            out,
            "  note: {name} is accepted for compatibility and has no effect"
        );
    }

    if !args.no_probe {
        let finding = rt.block_on(crate::probe::run(&client, &config));
        let _ = writeln!(out, "answer format: {finding}");
        if let Some(code) = finding.exit_code() {
            if args.token.is_some() {
                let _ = writeln!(out, "token: not introspected (see the answer format above)");
            }
            return ExitCode::from(code);
        }
    }

    let Some(token) = &args.token else {
        return ExitCode::SUCCESS;
    };
    let token = if token == "-" {
        let mut text = String::new();
        if std::io::stdin().read_to_string(&mut text).is_err() {
            eprintln!("cannot read the token from standard input");
            return ExitCode::FAILURE;
        }
        text.trim().to_owned()
    } else {
        token.clone()
    };
    let header = format!("Bearer {token}");
    let bearer = match extract_bearer(Some(&header), config.max_token_bytes) {
        Ok(bearer) => bearer,
        Err(e) => {
            let _ = writeln!(
                out,
                "token: refused without introspection ({e}); Tyk would answer 401"
            );
            return ExitCode::FAILURE;
        }
    };
    let answer = rt.block_on(client.introspect(&bearer, None));
    match answer {
        Ok(Introspection::Active(active)) => {
            let now = unix_now();
            let ttl = TtlPolicy::from_config(&config.cache).for_answer(
                active.claims.exp,
                &active.cache,
                now,
            );
            let _ = writeln!(out, "token: active");
            match active.claims.exp {
                Some(exp) => {
                    let left = i128::from(exp) - i128::from(now.as_secs());
                    let _ = writeln!(out, "  exp: {exp} ({left} s from now)");
                }
                None => {
                    let _ = writeln!(out, "  exp: none");
                }
            }
            let _ = writeln!(out, "  cached for: {} s", ttl.as_secs());
            if let Some(max_age) = active.cache.max_age {
                let _ = writeln!(out, "  AS max-age: {} s", max_age.as_secs());
            }
            if active.cache.no_store {
                let heeded = if config.cache.honor_no_store {
                    "honoured"
                } else {
                    "ignored"
                };
                let _ = writeln!(out, "  AS no-store: {heeded}");
            }
            for claim in ["sub", "client_id", "iss"] {
                if let Some(value) = active.claims.string(claim) {
                    let _ = writeln!(out, "  {claim}: {value}");
                }
            }
            let _ = writeln!(
                out,
                "  scope: {}",
                active
                    .claims
                    .scopes(|name| config.identity.splits_commas(name))
                    .join(" ")
            );
            let _ = writeln!(out, "  aud: {}", active.claims.audiences().join(" "));
            if args.show_jwt {
                let _ = writeln!(out, "  jwt: {}", active.jwt);
            } else {
                let _ = writeln!(
                    out,
                    "  jwt: {} bytes (--show-jwt prints it)",
                    active.jwt.len()
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Introspection::Inactive) => {
            let _ = writeln!(out, "token: inactive; Tyk would answer 401 invalid_token");
            ExitCode::FAILURE
        }
        Err(e) => {
            let _ = writeln!(out, "token: no answer: {e}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}
