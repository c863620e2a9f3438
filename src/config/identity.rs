//! The identity section: the global rules that turn a token's claims into
//! the Tyk session's key, policies, metadata and analytics. An API's
//! `config_data` may override them.

use crate::api_rules::{self, IdentityRules};

use super::parse;
use super::reader::Reader;
use super::vars::*;

/// The global identity rules (see [`IdentityRules`]); every value has a
/// default.
pub(super) fn read(r: &mut Reader<'_>) -> IdentityRules {
    let claim = |v: &str| api_rules::optional_claim(v);
    let rules = IdentityRules {
        session_key_claim: r.optional(ENV_SESSION_KEY_CLAIM, claim).flatten(),
        policy_claim: r.optional(ENV_POLICY_CLAIM, claim).flatten(),
        policy_map: r.optional(ENV_POLICY_MAP, api_rules::env::policy_map),
        apply_policies: r.or(ENV_APPLY_POLICIES, api_rules::env::policy_ids, Vec::new()),
        metadata_claims: r.or(
            ENV_METADATA_CLAIMS,
            api_rules::env::metadata_claims,
            Vec::new(),
        ),
        jwt_in_metadata: r.or(ENV_JWT_IN_METADATA, parse::boolean, false),
        comma_separated_claims: r.or(
            ENV_COMMA_SEPARATED_CLAIMS,
            api_rules::env::claim_names,
            Vec::new(),
        ),
        analytics_alias_claim: r.optional(ENV_ANALYTICS_ALIAS_CLAIM, claim).flatten(),
        analytics_tag_claims: r.or(
            ENV_ANALYTICS_TAG_CLAIMS,
            api_rules::env::claim_names,
            Vec::new(),
        ),
    };
    if rules.policy_map.is_some() && rules.policy_claim.is_none() {
        r.problem(format!("{ENV_POLICY_MAP} needs {ENV_POLICY_CLAIM}"));
    }
    rules
}
