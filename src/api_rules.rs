//! An API's own rules, from Tyk's `spec["config_data"]`: the checks a token
//! must pass for it (required scopes and audience), the versions its sessions
//! open, and the identity rules that shape the Tyk session of an allowed
//! request. ("Policy" is kept for Tyk's policy IDs, which these rules name.)
//!
//! Identity rules have a global default from the environment; an API's
//! `config_data` overrides them key by key and adds the API's own checks
//! (required scopes and audience). Each distinct `config_data` text is parsed
//! once and remembered by its digest, so a request pays a hash and a lookup,
//! not a JSON parse. An invalid `config_data` denies every request of that API
//! and is logged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::policy::EvictionPolicy;
use sha2::{Digest, Sha256};

use crate::jwt::Claims;

mod identity;
mod parse;
mod step_up;

pub use identity::{
    IdentityRules, MAX_ANALYTICS_TAGS, META_CLIENT_ID, META_JWT, META_SCOPE, META_SUB, META_TOKEN,
    identity_value, is_safe_meta_value,
};
use parse::oversized_message;
pub use parse::{env, optional_claim, parse_config_data};
pub use step_up::{StepUp, StepUpChallenge, StepUpReason};

/// Largest `config_data` accepted (Tyk sends it with every request).
pub const MAX_CONFIG_DATA_BYTES: usize = 64 * 1024;

/// Distinct `config_data` texts remembered; past this the least recently
/// used is forgotten (and parsed again if it comes back).
const MAX_REMEMBERED_CONFIGS: u64 = 1024;

/// The version of an API that is not versioned, as Tyk names it; used when
/// `config_data` lists no `api_versions`.
pub const DEFAULT_API_VERSION: &str = "Default";

/// Everything the plugin applies for one API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRules {
    /// All of these must be granted (RFC 6750 `insufficient_scope` if not).
    pub required_scopes: Vec<String>,
    /// The token's `aud` must contain this.
    pub required_audience: Option<String>,
    /// `aud` of the JWTs the plugin mints for this API, instead of
    /// `MINTED_AUDIENCE`. A ready JWT from the AS is forwarded unchanged.
    pub minted_audience: Option<String>,
    /// Versions of this API the session may use (Tyk checks them for a
    /// versioned API). `None`: [`DEFAULT_API_VERSION`].
    pub api_versions: Option<Vec<String>>,
    pub identity: IdentityRules,
    /// RFC 9470 step-up: `required_acr`, `max_auth_age`.
    pub step_up: StepUp,
    /// `dpop_base_url` and `dpop_required` (RFC 9449 proofs).
    pub dpop: crate::dpop::DpopRules,
}

/// Why an API's checks refuse a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleDenial {
    /// `aud` does not name this API.
    WrongAudience,
    /// Scopes missing; carries the space-separated required scopes for the
    /// challenge's `scope` parameter.
    InsufficientScope(String),
    /// RFC 9470: the user's authentication is too weak or too old.
    InsufficientUserAuthentication(StepUpChallenge),
}

impl ApiRules {
    /// Whether these rules read claims beyond [`Claims::summary`], so the
    /// JWT must be read again for them.
    pub fn needs_full_claims(&self) -> bool {
        let rules = &self.identity;
        let beyond = |name: &String| !Claims::summary_covers(name);
        rules.session_key_claim.as_ref().is_some_and(beyond)
            || rules.policy_claim.as_ref().is_some_and(beyond)
            || rules.metadata_claims.iter().any(|(claim, _)| beyond(claim))
            || rules.analytics_alias_claim.as_ref().is_some_and(beyond)
            || rules.analytics_tag_claims.iter().any(beyond)
    }

    /// The API versions the session's access rights name.
    pub fn api_versions(&self) -> Vec<String> {
        self.api_versions
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_API_VERSION.to_owned()])
    }

    /// The API's checks, run on every request, cached answer or not.
    ///
    /// # Errors
    ///
    /// [`RuleDenial`] when the token's claims do not satisfy the API.
    pub fn check(&self, claims: &Claims) -> Result<(), RuleDenial> {
        self.check_at(claims, crate::cache::unix_now().as_secs())
    }

    /// [`ApiRules::check`] at `now` (unix seconds).
    ///
    /// # Errors
    ///
    /// As [`ApiRules::check`].
    pub fn check_at(&self, claims: &Claims, now: u64) -> Result<(), RuleDenial> {
        if let Some(audience) = &self.required_audience
            && !claims.audiences().contains(&audience.as_str())
        {
            return Err(RuleDenial::WrongAudience);
        }
        if !self.required_scopes.is_empty() {
            let granted = self.identity.granted_scopes(claims);
            if !self
                .required_scopes
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(RuleDenial::InsufficientScope(
                    self.required_scopes.join(" "),
                ));
            }
        }
        self.step_up
            .check(claims, now)
            .map_err(RuleDenial::InsufficientUserAuthentication)
    }
}

/// An API's parsed settings, or why its `config_data` is invalid.
type Parsed = Result<Arc<ApiRules>, Arc<str>>;

/// Seconds between two log lines about oversized `config_data` (such a text
/// is not remembered, so without this it would be logged on every request).
const OVERSIZED_LOG_INTERVAL_SECONDS: u64 = 60;

/// The parsed settings of the APIs seen, by SHA-256 of their `config_data`.
///
/// The size limit is checked before anything else, so an oversized text (Tyk
/// may send up to the gRPC message limit) is never hashed nor stored. The
/// memory is an LRU of [`MAX_REMEMBERED_CONFIGS`] digests: the configs in use
/// stay parsed however many others pass through.
pub struct ApiRulesCache {
    default: Arc<ApiRules>,
    parsed: moka::sync::Cache<[u8; 32], Parsed>,
    oversized: Arc<str>,
    /// When an oversized `config_data` was last reported, unix seconds.
    oversized_reported: AtomicU64,
}

impl ApiRulesCache {
    pub fn new(global: IdentityRules) -> Self {
        ApiRulesCache {
            default: Arc::new(ApiRules {
                identity: global,
                ..ApiRules::default()
            }),
            parsed: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED_CONFIGS)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            oversized: Arc::from(oversized_message()),
            oversized_reported: AtomicU64::new(0),
        }
    }

    /// How many parsed `config_data` texts are remembered.
    pub fn remembered(&self) -> u64 {
        self.parsed.run_pending_tasks();
        self.parsed.entry_count()
    }

    /// The settings for an API with this `config_data` (absent: the global
    /// defaults). `on_invalid` runs once per distinct invalid text while it is
    /// remembered (an oversized text: at most once a minute), for the log.
    ///
    /// # Errors
    ///
    /// The parse error of an invalid `config_data`.
    pub fn resolve(&self, config_data: Option<&str>, on_invalid: impl FnOnce(&str)) -> Parsed {
        let Some(text) = config_data.filter(|t| !t.is_empty()) else {
            return Ok(self.default.clone());
        };
        if text.len() > MAX_CONFIG_DATA_BYTES {
            self.report_oversized(on_invalid);
            return Err(self.oversized.clone());
        }
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        self.parsed.get_with(digest, || {
            let result = parse_config_data(text, &self.default.identity)
                .map(Arc::new)
                .map_err(Arc::<str>::from);
            if let Err(e) = &result {
                on_invalid(e);
            }
            result
        })
    }

    fn report_oversized(&self, on_invalid: impl FnOnce(&str)) {
        let now = crate::cache::unix_now().as_secs();
        let last = self.oversized_reported.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(OVERSIZED_LOG_INTERVAL_SECONDS);
        if due
            && self
                .oversized_reported
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            on_invalid(&self.oversized);
        }
    }
}

#[cfg(test)]
mod tests;
