//! The fleet's shared cache in Redis: off unless `REDIS_URL` is set.
//!
//! The keyed digests that name entries in Redis (and travel in purge
//! messages) are computed under `REDIS_KEY_SECRET`, or `SESSION_KEY_SECRET`
//! when that is not set; the same secret takes part in every entry's sealing
//! key, with the token. Every replica of a fleet must use the same secret, or
//! replicas will not find each other's entries. The client secret is never
//! used for this: it is not the plugin's own.

use std::path::PathBuf;
use std::time::Duration;

use super::reader::Reader;
use super::vars::*;
use crate::shared::options::{Redacted, SharedCacheOptions};

/// How long a replica that finds another replica introspecting waits for its
/// answer before introspecting itself: about one introspection.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(1000);

/// The shared cache's settings.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    pub options: SharedCacheOptions,
    /// Bound on waiting for another replica's introspection.
    pub lock_wait: Duration,
}

fn millis(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> {
    move |raw| match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Duration::from_millis(n)),
        _ => Err(format!(
            "expected a whole number of milliseconds from {min} to {max}"
        )),
    }
}

/// Reads the shared-cache variables: `None` when `REDIS_URL` is unset (or
/// when a problem was reported: never a URL, password or secret in it).
pub(super) fn read(r: &mut Reader<'_>) -> Option<SharedConfig> {
    let text = |r: &Reader<'_>, name: &str| r.raw(name).map(|v| v.trim().to_owned());
    let url = text(r, ENV_REDIS_URL)?;
    let problems_before = r.problem_count();
    let secret = text(r, ENV_REDIS_KEY_SECRET)
        .or_else(|| text(r, super::ENV_SESSION_KEY_SECRET))
        .unwrap_or_else(|| {
            r.problem(format!(
                "{ENV_REDIS_URL} is set but neither {ENV_REDIS_KEY_SECRET} nor {} is: \
                 the fleet's key names need a secret shared by every replica",
                super::ENV_SESSION_KEY_SECRET
            ));
            String::new()
        });
    let mut options = SharedCacheOptions::new(url, secret);
    if let Some(prefix) = text(r, ENV_REDIS_KEY_PREFIX) {
        options.key_prefix = prefix;
    }
    options.tls.ca_file = text(r, ENV_REDIS_TLS_CA_FILE).map(PathBuf::from);
    options.tls.cert_file = text(r, ENV_REDIS_TLS_CERT_FILE).map(PathBuf::from);
    options.tls.key_file = text(r, ENV_REDIS_TLS_KEY_FILE).map(PathBuf::from);
    options.sentinel_username = text(r, ENV_REDIS_SENTINEL_USERNAME);
    options.sentinel_password = text(r, ENV_REDIS_SENTINEL_PASSWORD).map(Redacted);
    options.op_timeout = r.or(ENV_REDIS_TIMEOUT_MS, millis(1, 10_000), options.op_timeout);
    let lock_wait = r.or(ENV_REDIS_LOCK_WAIT_MS, millis(0, 10_000), DEFAULT_LOCK_WAIT);
    // A waiter gives up before the lock it waits on would expire.
    options.lock_ttl = options.lock_ttl.max(lock_wait + Duration::from_secs(1));
    if r.problem_count() > problems_before {
        return None;
    }
    if let Err(e) = options.validate() {
        r.problem(format!("{ENV_REDIS_URL} and its settings: {e}"));
        return None;
    }
    Some(SharedConfig { options, lock_wait })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn read_from(pairs: &[(&str, &str)]) -> Result<Option<SharedConfig>, Vec<String>> {
        let source = MapSource::new(pairs);
        let mut r = Reader::new(&source);
        let config = read(&mut r);
        r.finish().map(|_| config).map_err(|e| e.problems)
    }

    #[test]
    fn off_without_a_url() {
        assert!(read_from(&[(ENV_REDIS_KEY_SECRET, "k")]).unwrap().is_none());
        assert!(read_from(&[(ENV_REDIS_URL, " ")]).unwrap().is_none());
    }

    #[test]
    fn the_secret_is_its_own_or_the_session_key_secret_never_absent() {
        let own = read_from(&[
            (ENV_REDIS_URL, "redis://cache"),
            (ENV_REDIS_KEY_SECRET, "fleet"),
            ("SESSION_KEY_SECRET", "session"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(own.options.secret.0, "fleet");
        let session = read_from(&[
            (ENV_REDIS_URL, "redis://cache"),
            ("SESSION_KEY_SECRET", "session"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(session.options.secret.0, "session");
        let problems = read_from(&[(ENV_REDIS_URL, "redis://cache")]).unwrap_err();
        assert!(problems[0].contains(ENV_REDIS_KEY_SECRET), "{problems:?}");
    }

    #[test]
    fn settings_are_read_and_bad_ones_reported_without_the_password() {
        let c = read_from(&[
            (ENV_REDIS_URL, "rediss://cache:6380"),
            (ENV_REDIS_KEY_SECRET, "k"),
            (ENV_REDIS_KEY_PREFIX, "gw1:"),
            (ENV_REDIS_TLS_CA_FILE, "/ca.pem"),
            (ENV_REDIS_TIMEOUT_MS, "40"),
            (ENV_REDIS_LOCK_WAIT_MS, "6000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.options.key_prefix, "gw1:");
        assert_eq!(c.options.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.options.op_timeout, Duration::from_millis(40));
        assert_eq!(c.lock_wait, Duration::from_millis(6000));
        assert!(c.options.lock_ttl > c.lock_wait);
        let problems = read_from(&[
            (ENV_REDIS_URL, "http://:hunter2@cache"),
            (ENV_REDIS_KEY_SECRET, "k"),
        ])
        .unwrap_err();
        assert!(problems[0].contains("scheme"), "{problems:?}");
        assert!(!problems[0].contains("hunter2"), "{problems:?}");
        let problems = read_from(&[
            (ENV_REDIS_URL, "redis://cache"),
            (ENV_REDIS_KEY_SECRET, "k"),
            (ENV_REDIS_TIMEOUT_MS, "0"),
            (ENV_REDIS_LOCK_WAIT_MS, "soon"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
