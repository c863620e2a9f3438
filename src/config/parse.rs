//! Parsers for single configuration values, each returning a short message that
//! names what was expected. The caller adds the variable name and the value.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::config::ListenAddr;

/// A non-negative whole number of seconds.
pub fn seconds(raw: &str) -> Result<u64, String> {
    raw.parse::<u64>()
        .map_err(|_| "expected a whole number of seconds (0 or more)".to_owned())
}

/// A positive number of seconds with an optional fraction, such as `2.5`.
pub fn fractional_seconds(raw: &str) -> Result<Duration, String> {
    let value: f64 = raw
        .parse()
        .map_err(|_| "expected a number of seconds such as 2.5".to_owned())?;
    if !value.is_finite() || value <= 0.0 {
        return Err("expected a number of seconds greater than 0".to_owned());
    }
    if value > 3600.0 {
        return Err("expected at most 3600 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(value))
}

/// A whole number within `min..=max`.
pub fn integer<T>(raw: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// A number (with an optional fraction) that is 0 or more.
pub fn non_negative_number(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number, 0 or more".to_owned()),
    }
}

/// A size in bytes: a whole number, optionally followed by `KiB`, `MiB` or `GiB`
/// (`K`, `M`, `G` and `KB`, `MB`, `GB` are read as the same binary units).
pub fn byte_size(raw: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size in bytes such as 65536, 64KiB or 64MiB";
    let digits_end = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| HINT.to_owned())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(HINT.to_owned()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| HINT.to_owned())
}

/// `true`/`false` and the usual spellings of each.
pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A TCP port, 1 to 65535.
pub fn port(raw: &str) -> Result<u16, String> {
    integer::<u16>(raw, 1, u16::MAX)
}

/// A listen address: `0.0.0.0:50051`, `[::1]:50051`, or a Unix socket as
/// `unix:///absolute/path` (Tyk's spelling) or `unix:/absolute/path`.
pub fn listen_addr(raw: &str) -> Result<ListenAddr, String> {
    if let Some(rest) = raw.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if !path.starts_with('/') || path.len() < 2 {
            return Err("expected unix:///absolute/path/to/plugin.sock".to_owned());
        }
        return Ok(ListenAddr::Unix(path.into()));
    }
    raw.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
        "expected an address such as 0.0.0.0:50051 or [::1]:50051, or unix:///path/plugin.sock"
            .to_owned()
    })
}

/// An absolute `http` or `https` URL without credentials or a fragment.
pub fn introspection_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not carry credentials; use CLIENT_ID and CLIENT_SECRET".to_owned(),
        );
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a #fragment".to_owned());
    }
    Ok(url)
}

/// A proxy URL: `http://` or `https://`, a host, an optional port and
/// credentials, and nothing else.
pub fn proxy_url(raw: &str) -> Result<reqwest::Url, String> {
    const HINT: &str = "expected a proxy URL such as http://proxy.internal:3128";
    let url = reqwest::Url::parse(raw).map_err(|e| format!("{HINT} ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{HINT} (http:// or https://)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{HINT} (the URL has no host)"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{HINT} (no path, query or fragment)"));
    }
    Ok(url)
}

/// The `realm` of the `WWW-Authenticate` challenge: it is written inside a quoted
/// string, so quotes, backslashes and control characters are refused.
pub fn realm(raw: &str) -> Result<String, String> {
    if raw
        .chars()
        .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
    {
        Ok(raw.to_owned())
    } else {
        Err("expected printable ASCII without quotes or backslashes".to_owned())
    }
}

/// An allow-list of JWS algorithms, names separated by commas or spaces.
/// Asymmetric only: `none` and the HMAC algorithms are never accepted, since
/// every signature the plugin checks is checked with a public key (a client's
/// proof key, the AS's JWKS). Every refused name is listed at once.
pub fn asymmetric_algorithms(raw: &str) -> Result<Vec<Algorithm>, String> {
    let mut algs = Vec::new();
    let mut refused = Vec::new();
    for name in raw.split([',', ' ']).filter(|n| !n.is_empty()) {
        match name.parse::<Algorithm>() {
            Ok(alg) if crate::jwks::ASYMMETRIC.contains(&alg) => algs.push(alg),
            _ => refused.push(format!("{name:?}")),
        }
    }
    if !refused.is_empty() {
        return Err(format!(
            "{} not accepted (one or more of RS256, RS384, RS512, PS256, PS384, PS512, \
             ES256, ES384, EdDSA)",
            refused.join(", ")
        ));
    }
    if algs.is_empty() {
        return Err("expected at least one algorithm".to_owned());
    }
    Ok(algs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_seconds_accepts_curity_style_values() {
        assert_eq!(fractional_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(fractional_seconds("1"), Ok(Duration::from_secs(1)));
        assert_eq!(fractional_seconds("0.05"), Ok(Duration::from_millis(50)));
    }

    #[test]
    fn fractional_seconds_refuses_zero_negative_and_junk() {
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e9", "2,5"] {
            assert!(fractional_seconds(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn byte_size_reads_plain_numbers_and_binary_units() {
        assert_eq!(byte_size("65536"), Ok(65536));
        assert_eq!(byte_size("64KiB"), Ok(64 * 1024));
        assert_eq!(byte_size("64 MiB"), Ok(64 << 20));
        assert_eq!(byte_size("2g"), Ok(2 << 30));
        assert_eq!(byte_size("1MB"), Ok(1 << 20));
    }

    #[test]
    fn byte_size_refuses_junk_and_overflow() {
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "10 parsecs",
            "99999999999999999999",
            "18446744073709551615GiB",
        ] {
            assert!(byte_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn integer_enforces_its_range() {
        assert_eq!(integer::<u64>("10", 1, 10), Ok(10));
        assert!(integer::<u64>("11", 1, 10).is_err());
        assert!(integer::<u64>("0", 1, 10).is_err());
        assert!(integer::<i64>("-2", -1, 10).is_err());
        assert!(integer::<u64>(" 5", 1, 10).is_err());
    }

    #[test]
    fn seconds_refuses_fractions_and_negatives() {
        assert_eq!(seconds("30"), Ok(30));
        assert!(seconds("2.5").is_err());
        assert!(seconds("-1").is_err());
    }

    #[test]
    fn boolean_reads_common_spellings() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("on"), Ok(true));
        assert_eq!(boolean("off"), Ok(false));
        assert_eq!(boolean("0"), Ok(false));
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn port_is_one_to_65535() {
        assert_eq!(port("50051"), Ok(50051));
        assert!(port("0").is_err());
        assert!(port("65536").is_err());
        assert!(port("http").is_err());
    }

    #[test]
    fn listen_addr_reads_tcp_and_unix_forms() {
        assert_eq!(
            listen_addr("127.0.0.1:7000"),
            Ok(ListenAddr::Tcp("127.0.0.1:7000".parse().unwrap()))
        );
        assert_eq!(
            listen_addr("[::]:7000"),
            Ok(ListenAddr::Tcp("[::]:7000".parse().unwrap()))
        );
        assert_eq!(
            listen_addr("unix:///run/tyk/plugin.sock"),
            Ok(ListenAddr::Unix("/run/tyk/plugin.sock".into()))
        );
        assert_eq!(
            listen_addr("unix:/run/plugin.sock"),
            Ok(ListenAddr::Unix("/run/plugin.sock".into()))
        );
        for bad in [
            "localhost:7000",
            "unix://relative.sock",
            "unix:",
            "unix:///",
            "7000",
        ] {
            assert!(listen_addr(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn introspection_url_accepts_http_and_https_only() {
        assert!(introspection_url("https://idsvr.example.com/oauth/v2/oauth-introspect").is_ok());
        assert!(introspection_url("http://127.0.0.1:8443/introspect").is_ok());
        for bad in [
            "idsvr.example.com/introspect",
            "ftp://idsvr.example.com/introspect",
            "https://user:pw@idsvr.example.com/introspect",
            "https://idsvr.example.com/introspect#x",
            "not a url",
        ] {
            assert!(introspection_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn realm_refuses_characters_that_break_the_quoted_string() {
        assert_eq!(realm("api gateway"), Ok("api gateway".to_owned()));
        for bad in ["a\"b", "a\\b", "a\nb", "caf\u{e9}"] {
            assert!(realm(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
