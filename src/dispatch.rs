//! The `coprocess.Dispatcher` service Tyk calls: routes each hook, and turns
//! the decision into Tyk's reply. [`rescue`] is the one place where a denial
//! becomes a status, message and headers.
//!
//! Every call answers gRPC OK with the object Tyk sent, modified: a gRPC error
//! would make Tyk answer 403 `Key not authorised` whatever went wrong.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::authz::{Authorizer, Denial, Grant, InvalidToken};
use crate::cache::{Lookup, unix_now};
use crate::config::{ChallengeConfig, Config, SessionConfig};
use crate::introspect::IntrospectError;
use crate::metrics::Decision;
use crate::policy::{
    ApiPolicies, ApiPolicy, META_JWT, PolicyDenial, identity_value, is_safe_meta_value,
};
use crate::token::{TokenDigest, extract_bearer};
use crate::trace::TraceContext;
use crate::tyk::pb::dispatcher_server::Dispatcher;
use crate::tyk::pb::{AccessDefinition, Event, EventReply, HookType, Object, SessionState};
use crate::tyk::{
    self, Allow, Deny, INJECT_JWT_HOOK, META_CLIENT_ID, META_SCOPE, META_SUB, META_TOKEN,
};

/// The gRPC service.
#[derive(Clone)]
pub struct DispatchService {
    authz: Arc<Authorizer>,
    policies: Arc<ApiPolicies>,
    replies: Arc<Replies>,
    /// Cancelled when the shutdown grace period is over: calls still running
    /// are answered with a 503 at once instead of being cut off.
    stop: CancellationToken,
}

/// Settings that shape replies, with header values built once.
struct Replies {
    realm: String,
    bare_challenge: String,
    invalid_token_challenge: String,
    retry_after: String,
    session: SessionConfig,
    default_ttl_seconds: u64,
    max_token_bytes: usize,
}

impl DispatchService {
    pub fn new(authz: Arc<Authorizer>, config: &Config) -> Self {
        let ChallengeConfig {
            realm,
            retry_after_seconds,
        } = &config.challenge;
        DispatchService {
            authz,
            policies: Arc::new(ApiPolicies::new(config.identity.clone())),
            replies: Arc::new(Replies {
                realm: realm.clone(),
                bare_challenge: format!("Bearer realm=\"{realm}\""),
                invalid_token_challenge: format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\""
                ),
                retry_after: retry_after_seconds.to_string(),
                session: config.session.clone(),
                default_ttl_seconds: config.cache.default_ttl.as_secs(),
                max_token_bytes: config.max_token_bytes,
            }),
            stop: CancellationToken::new(),
        }
    }

    /// Runs one `Dispatch` call on `object` (also used by tests and tools that
    /// skip the transport). `trace` is the call's W3C trace context, if any.
    pub async fn handle(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let hook = HookType::try_from(object.hook_type).unwrap_or(HookType::Unknown);
        let span = info_span!(
            "dispatch",
            hook.r#type = hook.as_str_name(),
            hook.name = %object.hook_name,
            api.id = object.spec.get("APIID").map_or("", String::as_str),
            trace.id = trace.map_or("", TraceContext::trace_id),
        );
        async {
            let decided = match hook {
                // Whatever the hook's name: Tyk's default manifest calls it
                // PhantomAuthCheck, and an empty name is also sent (§2.6).
                HookType::CustomKeyCheck => {
                    self.stop
                        .run_until_cancelled(self.auth_check(object, trace))
                        .await
                }
                HookType::PostKeyAuth if object.hook_name == INJECT_JWT_HOOK => {
                    // Rare, and as large as the auth check: boxed.
                    self.stop
                        .run_until_cancelled(Box::pin(self.inject_jwt(object, trace)))
                        .await
                }
                _ => {
                    debug!("Hook not handled; object returned unchanged");
                    Some(())
                }
            };
            if decided.is_none() {
                let denial = Denial::ShuttingDown;
                self.write_deny(object, None, &denial);
            }
        }
        .instrument(span)
        .await;
    }

    /// The API's settings from `spec["config_data"]`, parsed once per text.
    fn api_policy(&self, object: &Object) -> Result<Arc<ApiPolicy>, Denial> {
        let config_data = object.spec.get("config_data").map(String::as_str);
        self.policies
            .resolve(config_data, |why| {
                error!(
                    problem = why,
                    "Invalid config_data; requests to this API are denied"
                );
            })
            .map_err(|_| Denial::InvalidApiConfig)
    }

    async fn auth_check(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let policy = match self.api_policy(object) {
            Ok(policy) => policy,
            Err(denial) => {
                return self.write_deny(object, None, &denial);
            }
        };
        let mut verdict = self.authz.authorize(authorization(object), trace).await;
        // The API's own checks run on every request, cached answer or not.
        if let Ok(grant) = &verdict.result
            && let Err(refused) = policy.check(&grant.claims)
        {
            verdict.result = Err(match refused {
                PolicyDenial::WrongAudience => Denial::InvalidToken(InvalidToken::WrongAudience),
                PolicyDenial::InsufficientScope(scopes) => Denial::InsufficientScope(scopes),
            });
        }
        match &verdict.result {
            Ok(grant) => {
                debug!(
                    token.id = grant.log_id(),
                    cache = if verdict.lookup == Some(Lookup::Hit) {
                        "hit"
                    } else {
                        "miss"
                    },
                    "Request allowed"
                );
                self.write_allow(object, grant, &policy);
            }
            Err(denial) => self.write_deny(object, verdict.digest, denial),
        }
    }

    /// Curity's `post_key_auth` hook: makes sure the upstream gets the JWT
    /// without introspecting again.
    ///
    /// After our auth hook, Tyk has already applied its `set_headers`, so the
    /// request carries the JWT and nothing changes. When Tyk's id_extractor
    /// answered from its own cache, the auth hook did not run and the request
    /// still carries the opaque token: the JWT comes from our cache, or from
    /// the session's `phantom_jwt` metadata when that is kept, either only
    /// while the JWT is before its `exp` minus the clock skew. Only if neither
    /// has it (e.g. after a restart) is the token decided in full.
    async fn inject_jwt(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let header = authorization(object);
        let Ok(token) = extract_bearer(header, self.replies.max_token_bytes) else {
            return;
        };
        if let Some(grant) = self.authz.cached_grant(&token.digest()).await {
            return set_authorization(object, grant.authorization().to_owned());
        }
        if crate::jwt::parse(token.expose()).is_ok() {
            debug!("Upstream already carries the JWT");
            return;
        }
        let kept = object
            .metadata
            .get(META_JWT)
            .filter(|jwt| {
                crate::jwt::parse(jwt).is_ok_and(|claims| self.authz.forwardable(claims.exp))
            })
            .map(|jwt| format!("Bearer {jwt}"));
        if let Some(authorization) = kept {
            return set_authorization(object, authorization);
        }
        let verdict = self.authz.authorize(header, trace).await;
        match &verdict.result {
            Ok(grant) => set_authorization(object, grant.authorization().to_owned()),
            Err(denial) => self.write_deny(object, verdict.digest, denial),
        }
    }

    fn write_allow(&self, object: &mut Object, grant: &Grant, policy: &ApiPolicy) {
        let now = unix_now().as_secs();
        let session = &self.replies.session;
        // The cached summary serves the default rules; rules naming other
        // claims read them from the JWT again.
        let full;
        let claims = if policy.needs_full_claims() {
            full = grant.full_claims();
            &full
        } else {
            &grant.claims
        };
        let rules = &policy.identity;
        let remaining = claims.exp.map_or(self.replies.default_ttl_seconds, |exp| {
            exp.saturating_sub(now)
        });

        let session_key = rules
            .session_key_claim
            .as_deref()
            .and_then(|claim| identity_value(claims, claim).map(|value| (claim, value)))
            .map_or_else(
                || grant.session_key.to_string(),
                |(claim, value)| self.authz.session_keys().identity_key(claim, &value),
            );
        let mut metadata = Vec::with_capacity(4 + rules.metadata_claims.len());
        metadata.push((META_TOKEN, session_key));
        for key in [META_SUB, META_CLIENT_ID, META_SCOPE] {
            if let Some(value) = claims.string(key).filter(|v| is_safe_meta_value(v)) {
                metadata.push((key, value.to_owned()));
            }
        }
        metadata.extend(rules.metadata(claims));
        if rules.jwt_in_metadata {
            metadata.push((META_JWT, grant.jwt().to_owned()));
        }

        // Tyk reads empty access rights as "every API". In id_extractor mode
        // the session is stored under a key the client can compute (org + MD5
        // of its Authorization value), and it would open every auth-token API
        // of the organisation: name this API only. Policies the session names
        // replace these rights with their own (Tyk's policy engine).
        let api_id = object.spec.get("APIID").cloned().unwrap_or_default();
        let access = AccessDefinition {
            // Tyk sends no API name in `spec`; the field is informational.
            api_name: String::new(),
            api_id: api_id.clone(),
            versions: policy.api_versions(),
            // No per-path restriction: every path and method of this API.
            allowed_urls: Vec::new(),
        };
        let state = SessionState {
            rate: session.rate,
            per: session.per,
            quota_max: session.quota_max,
            quota_remaining: session.quota_max,
            quota_renewal_rate: session.quota_renewal_seconds,
            expires: claims.exp.map_or(0, saturating_i64),
            // Tyk keeps the stored session this long after each request, so
            // it disappears soon after the token expires instead of never.
            session_lifetime: saturating_i64(
                remaining
                    .max(1)
                    .saturating_add(session.lifetime_grace_seconds),
            ),
            // With an id_extractor, Tyk answers from its own cache until then
            // without calling the plugin; never past our cache entry, which
            // itself ends before the token's expiry, nor past the time the
            // answer is due for revalidation.
            id_extractor_deadline: saturating_i64(grant.cached_until),
            apply_policies: rules.policies(claims),
            access_rights: std::collections::HashMap::from([(api_id, access)]),
            // Tyk's analytics records carry these: without them a record
            // names only a hashed key.
            alias: rules.alias(claims),
            tags: rules.tags(claims),
            last_updated: now.to_string(),
            ..Default::default()
        };
        self.authz.metrics().decision(Decision::Allow);
        tyk::allow(
            object,
            Allow {
                authorization: grant.authorization(),
                metadata,
                session: state,
            },
        );
    }

    /// `digest` identifies the token (or malformed header) in the log line.
    fn write_deny(&self, object: &mut Object, digest: Option<TokenDigest>, denial: &Denial) {
        let (deny, decision) = rescue(denial, &self.replies);
        self.authz.metrics().decision(decision);
        let token_id = digest
            .map(|d| self.authz.session_keys().log_id(&d))
            .unwrap_or_default();
        match denial {
            Denial::Introspection(error) => {
                warn!(status = deny.status, token.id = %token_id, error = %error, "Introspection failed");
            }
            Denial::NoCredentials => info!(
                status = deny.status,
                reason = "no_credentials",
                "Request denied"
            ),
            Denial::ShuttingDown => warn!(status = deny.status, "Call cut short by shutdown"),
            Denial::InvalidApiConfig => debug!(
                status = deny.status,
                reason = "invalid_config_data",
                "Request denied"
            ),
            Denial::InsufficientScope(_) => {
                info!(status = deny.status, reason = "insufficient_scope", token.id = %token_id, "Request denied");
            }
            Denial::InvalidToken(why) => {
                info!(status = deny.status, reason = why.as_str(), token.id = %token_id, "Request denied");
            }
        }
        tyk::deny(object, &deny);
    }
}

/// The request's `Authorization` header as Tyk passes it: canonical key, first
/// value only.
fn authorization(object: &Object) -> Option<&str> {
    object
        .request
        .as_ref()
        .and_then(|r| r.headers.get("Authorization"))
        .map(String::as_str)
}

fn set_authorization(object: &mut Object, value: String) {
    object
        .request
        .get_or_insert_with(Default::default)
        .set_headers
        .insert("Authorization".to_owned(), value);
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Turns a denial into Tyk's answer.
///
/// | denial | status | body | headers |
/// |---|---|---|---|
/// | no bearer credentials | 401 | Tyk template | `WWW-Authenticate: Bearer realm=".."` |
/// | malformed, inactive, expired, wrong audience | 401 | Tyk template | `.., error="invalid_token"` |
/// | scopes missing | 403 | Tyk template | `.., error="insufficient_scope", scope=".."` |
/// | invalid `config_data` | 500 | JSON | — |
/// | AS error status, bad answer, credentials refused, TLS failure | 502 | JSON | — |
/// | AS unreachable or 503/429, breaker open, too many in flight | 503 | JSON | `Retry-After` |
/// | AS timed out | 504 | JSON | — |
/// | shutdown grace period over | 503 | JSON | `Retry-After` |
///
/// 401 and 403 go through Tyk's template with `override_error` off so Tyk
/// fires its AuthFailure event. The 5xx are not the client's authentication
/// failure: they are sent as raw JSON in the template's layout and fire no
/// event.
fn rescue(denial: &Denial, replies: &Replies) -> (Deny, Decision) {
    let server_fault = |status, message| Deny {
        status,
        message,
        headers: Vec::new(),
        raw_body: true,
    };
    let unavailable = |message, retry_after: String| Deny {
        status: 503,
        message,
        headers: vec![("Retry-After", retry_after)],
        raw_body: true,
    };
    match denial {
        Denial::NoCredentials => (
            Deny {
                status: 401,
                message: "Authorization required",
                headers: vec![("WWW-Authenticate", replies.bare_challenge.clone())],
                raw_body: false,
            },
            Decision::NoCredentials,
        ),
        Denial::InvalidToken(_) => (
            Deny {
                status: 401,
                message: "Invalid access token",
                headers: vec![("WWW-Authenticate", replies.invalid_token_challenge.clone())],
                raw_body: false,
            },
            Decision::InvalidToken,
        ),
        Denial::InsufficientScope(scopes) => (
            Deny {
                status: 403,
                message: "Insufficient scope",
                headers: vec![(
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{scopes}\"",
                        replies.realm
                    ),
                )],
                raw_body: false,
            },
            Decision::InsufficientScope,
        ),
        Denial::InvalidApiConfig => (
            server_fault(500, "Invalid API configuration"),
            Decision::InvalidConfig,
        ),
        Denial::ShuttingDown => (
            unavailable("Temporarily unavailable", replies.retry_after.clone()),
            Decision::ShuttingDown,
        ),
        Denial::Introspection(error) => match error.as_ref() {
            IntrospectError::Timeout => (
                server_fault(504, "Authorization server timed out"),
                Decision::AsTimeout,
            ),
            IntrospectError::Unreachable(_)
            | IntrospectError::Unavailable(_)
            | IntrospectError::Overloaded => (
                unavailable(
                    "Authorization server unavailable",
                    replies.retry_after.clone(),
                ),
                Decision::AsUnavailable,
            ),
            IntrospectError::BreakerOpen { retry_after } => {
                // Whole seconds, rounded up, at least one.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                (
                    unavailable(
                        "Authorization server unavailable",
                        seconds.max(1).to_string(),
                    ),
                    Decision::AsUnavailable,
                )
            }
            IntrospectError::Tls(_)
            | IntrospectError::CredentialsRejected(_)
            | IntrospectError::UnexpectedStatus(_)
            | IntrospectError::NotJwt(_)
            | IntrospectError::TooLarge(_)
            | IntrospectError::Answer(_)
            | IntrospectError::SignedUnverifiable
            | IntrospectError::NoJwt
            | IntrospectError::Mint(_)
            | IntrospectError::ClientAuth(_) => (
                server_fault(502, "Authorization server error"),
                Decision::AsError,
            ),
        },
    }
}

impl crate::server::Drain for DispatchService {
    fn stop_in_flight(&self) {
        self.stop.cancel();
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatchService {
    async fn dispatch(&self, request: Request<Object>) -> Result<Response<Object>, Status> {
        let (metadata, _, mut object) = request.into_parts();
        let trace = metadata
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|parent| {
                let state = metadata.get("tracestate").and_then(|v| v.to_str().ok());
                TraceContext::parse(parent, state)
            });
        drop(metadata);
        // The object stays in this frame; the hook works on it in place.
        self.handle(&mut object, trace.as_ref()).await;
        Ok(Response::new(object))
    }

    async fn dispatch_event(
        &self,
        request: Request<Event>,
    ) -> Result<Response<EventReply>, Status> {
        // The payload can hold the original request, credentials included:
        // only the event type is read, and only for a debug line.
        let payload = request.into_inner().payload;
        let kind = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| {
                v.pointer("/message/Type")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            });
        debug!(
            event.r#type = kind.as_deref().unwrap_or("unknown"),
            "Event received"
        );
        Ok(Response::new(EventReply {}))
    }
}
