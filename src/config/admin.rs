//! The admin section's access rules: the bearer secret of the write routes
//! (`ADMIN_TOKEN` or `ADMIN_TOKEN_FILE`) and the public JWKS listener
//! (`JWKS_ADDR`).
//!
//! What must hold: a route that changes state (`POST /tokens/revoke`) is
//! never open to the network without a secret. Whether it is open at all is
//! decided in [`crate::admin`] from these values and `ADMIN_ADDR`; here the
//! secret is read, checked for a usable shape and never echoed. The JWKS
//! listener is for APIs, which must not reach the admin address: it is
//! refused when the plugin mints nothing, since it would serve only 404s.

use std::net::SocketAddr;

use super::reader::Reader;
use super::redacted::Secret;
use super::vars::*;

/// The shortest `ADMIN_TOKEN` accepted: long enough that guessing it over
/// the network is hopeless when it is random (`openssl rand -hex 32` gives 64).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The section's values, spread over [`super::Config`]'s top level.
pub(super) struct Admin {
    pub token: Option<Secret>,
    pub jwks_addr: Option<SocketAddr>,
}

/// Reads the section; `admin_addr` is `ADMIN_ADDR` as the transport section
/// read it.
pub(super) fn read(r: &mut Reader<'_>, admin_addr: Option<SocketAddr>) -> Admin {
    let token = token(r);
    if token.is_some() && r.raw(ENV_ADMIN_ADDR).is_none() {
        r.problem(format!(
            "{ENV_ADMIN_TOKEN} is set but {ENV_ADMIN_ADDR} is not: there is no admin endpoint to protect"
        ));
    }
    let jwks_addr = r.optional(ENV_JWKS_ADDR, |v| {
        v.parse::<SocketAddr>()
            .map_err(|_| "expected an address such as 0.0.0.0:8081".to_owned())
    });
    if let Some(jwks) = jwks_addr {
        if r.raw(ENV_SIGNING_KEY_FILE).is_none() {
            r.problem(format!(
                "{ENV_JWKS_ADDR} serves the public keys of minted JWTs, but nothing is minted: \
                 set {ENV_SIGNING_KEY_FILE}, or unset {ENV_JWKS_ADDR}"
            ));
        }
        if admin_addr == Some(jwks) && jwks.port() != 0 {
            r.problem(format!(
                "{ENV_JWKS_ADDR} and {ENV_ADMIN_ADDR} are the same address; give the JWKS its own"
            ));
        }
    }
    Admin { token, jwks_addr }
}

/// `ADMIN_TOKEN`, or the contents of `ADMIN_TOKEN_FILE`, but not both.
/// Problems name the variable, never the value.
fn token(r: &mut Reader<'_>) -> Option<Secret> {
    let (value, from) = match (r.raw(ENV_ADMIN_TOKEN), r.raw(ENV_ADMIN_TOKEN_FILE)) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            r.problem(format!(
                "{ENV_ADMIN_TOKEN} and {ENV_ADMIN_TOKEN_FILE} are both set; set only one"
            ));
            return None;
        }
        (Some(value), None) => (value, ENV_ADMIN_TOKEN),
        (None, Some(path)) => match r.read_file(path.trim()) {
            Ok(contents) => (
                contents.trim_end_matches(['\n', '\r']).to_owned(),
                ENV_ADMIN_TOKEN_FILE,
            ),
            Err(e) => {
                r.problem(format!(
                    "{ENV_ADMIN_TOKEN_FILE}={path:?}: cannot read the file ({e})"
                ));
                return None;
            }
        },
    };
    // It travels in an `Authorization` header: visible ASCII only.
    let usable =
        value.len() >= MIN_ADMIN_TOKEN_CHARS && value.bytes().all(|b| b.is_ascii_graphic());
    if usable {
        Some(Secret::new(value))
    } else {
        r.problem(format!(
            "{from}: expected at least {MIN_ADMIN_TOKEN_CHARS} printable ASCII characters \
             without spaces (for example from `openssl rand -hex 32`)"
        ));
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, MapSource, vars::*};

    const TOKEN: &str = "adm-7c0ffee4a5b6c7d8e9f0";

    fn minimal() -> MapSource {
        MapSource::minimal("client-secret").with(ENV_ADMIN_ADDR, "10.0.0.5:9090")
    }

    fn refused(source: &MapSource) -> Vec<String> {
        match source.parse() {
            Ok(_) => panic!("configuration was accepted"),
            Err(ConfigError { problems }) => problems,
        }
    }

    #[test]
    fn the_admin_token_is_read_from_the_variable_or_a_file() {
        assert!(minimal().parse().unwrap().admin_token.is_none());
        let config = minimal().with(ENV_ADMIN_TOKEN, TOKEN).parse().unwrap();
        assert_eq!(config.admin_token.as_ref().unwrap().expose(), TOKEN);
        assert!(!format!("{config:?}").contains(TOKEN));
        let config = minimal()
            .with(ENV_ADMIN_TOKEN_FILE, "/run/secrets/admin")
            .with_file("/run/secrets/admin", &format!("{TOKEN}\n"))
            .parse()
            .unwrap();
        assert_eq!(config.admin_token.unwrap().expose(), TOKEN);
    }

    #[test]
    fn unusable_admin_tokens_are_refused_without_echoing_them() {
        for bad in [
            "short-secret-1",
            "has a space in the middle of it",
            "tab\tinside-the-token-value",
        ] {
            let problems = refused(&minimal().with(ENV_ADMIN_TOKEN, bad));
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("ADMIN_TOKEN:"), "{problems:?}");
            assert!(!problems[0].contains(bad), "{problems:?}");
        }
        let both = minimal()
            .with(ENV_ADMIN_TOKEN, TOKEN)
            .with(ENV_ADMIN_TOKEN_FILE, "/run/secrets/admin");
        assert!(refused(&both)[0].contains("both set"));
        let unreadable = minimal().with(ENV_ADMIN_TOKEN_FILE, "/run/secrets/missing");
        assert!(refused(&unreadable)[0].starts_with("ADMIN_TOKEN_FILE="));
        let empty = minimal()
            .with(ENV_ADMIN_TOKEN_FILE, "/run/secrets/admin")
            .with_file("/run/secrets/admin", "\n");
        assert!(refused(&empty)[0].starts_with("ADMIN_TOKEN_FILE:"));
    }

    #[test]
    fn an_admin_token_without_an_admin_endpoint_is_refused() {
        let source = MapSource::minimal("client-secret").with(ENV_ADMIN_TOKEN, TOKEN);
        let problems = refused(&source);
        assert!(problems[0].contains("ADMIN_ADDR is not"), "{problems:?}");
        assert!(!problems[0].contains(TOKEN));
    }

    #[test]
    fn the_jwks_listener_needs_minting_and_an_address_of_its_own() {
        let minting = || {
            minimal()
                .with(ENV_INTROSPECTION_ACCEPT, "application/json")
                .with(ENV_SIGNING_KEY_FILE, "/keys/mint.pem")
                .with(ENV_MINTED_ISSUER, "https://gateway.example")
                .with(ENV_MINTED_AUDIENCE, "orders")
        };
        assert_eq!(minting().parse().unwrap().jwks_addr, None);
        let config = minting()
            .with(ENV_JWKS_ADDR, "0.0.0.0:8081")
            .parse()
            .unwrap();
        assert_eq!(config.jwks_addr, Some("0.0.0.0:8081".parse().unwrap()));

        let problems = refused(&minimal().with(ENV_JWKS_ADDR, "0.0.0.0:8081"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("SIGNING_KEY_FILE"), "{problems:?}");
        let same = minting().with(ENV_JWKS_ADDR, "10.0.0.5:9090");
        assert!(refused(&same)[0].contains("same address"));
        let bad = minting().with(ENV_JWKS_ADDR, "localhost");
        assert!(refused(&bad)[0].starts_with("JWKS_ADDR=\"localhost\""));
    }
}
