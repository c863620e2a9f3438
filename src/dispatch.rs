//! The `coprocess.Dispatcher` service Tyk calls: routes each hook, and turns
//! the decision into Tyk's reply. [`rescue`] is the one place where a denial
//! becomes a status, message and headers.
//!
//! Every call answers gRPC OK with the object Tyk sent, modified: a gRPC error
//! would make Tyk answer 403 `Key not authorised` whatever went wrong.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, error, info_span};

use crate::api_rules::{ApiRules, ApiRulesCache, META_JWT, RuleDenial};
use crate::authz::{Authorizer, Denial, Grant, InvalidToken};
use crate::cache::{Lookup, unix_now};
use crate::config::Config;
use crate::metrics::Decision;
use crate::reply::Replies;
use crate::session::Sessions;
use crate::token::{TokenDigest, extract_bearer};
use crate::trace::TraceContext;
use crate::tyk::pb::dispatcher_server::Dispatcher;
use crate::tyk::pb::{Event, EventReply, HookType, Object};
use crate::tyk::{self, INJECT_JWT_HOOK};

/// The gRPC service.
#[derive(Clone)]
pub struct DispatchService {
    authz: Arc<Authorizer>,
    api_rules: Arc<ApiRulesCache>,
    replies: Arc<Replies>,
    sessions: Arc<Sessions>,
    max_token_bytes: usize,
    /// Cancelled when the shutdown grace period is over: calls still running
    /// are answered with a 503 at once instead of being cut off.
    stop: CancellationToken,
}

impl DispatchService {
    pub fn new(authz: Arc<Authorizer>, config: &Config) -> Self {
        DispatchService {
            sessions: Arc::new(Sessions::new(config, authz.session_keys().clone())),
            authz,
            api_rules: Arc::new(ApiRulesCache::new(config.identity.clone())),
            replies: Arc::new(Replies::new(&config.challenge)),
            max_token_bytes: config.max_token_bytes,
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
    fn api_rules(&self, object: &Object) -> Result<Arc<ApiRules>, Denial> {
        let config_data = object.spec.get("config_data").map(String::as_str);
        self.api_rules
            .resolve(config_data, |why| {
                error!(
                    problem = why,
                    "Invalid config_data; requests to this API are denied"
                );
            })
            .map_err(|_| Denial::InvalidApiConfig)
    }

    async fn auth_check(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let policy = match self.api_rules(object) {
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
                RuleDenial::WrongAudience => Denial::InvalidToken(InvalidToken::WrongAudience),
                RuleDenial::InsufficientScope(scopes) => Denial::InsufficientScope(scopes),
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
        let Ok(token) = extract_bearer(header, self.max_token_bytes) else {
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

    fn write_allow(&self, object: &mut Object, grant: &Grant, rules: &ApiRules) {
        let api_id = object.spec.get("APIID").map_or("", String::as_str);
        let session = self
            .sessions
            .for_grant(grant, rules, api_id, unix_now().as_secs());
        self.authz.metrics().decision(Decision::Allow);
        tyk::allow(object, grant.authorization(), session);
    }

    /// `digest` identifies the token (or malformed header) in the log line.
    fn write_deny(&self, object: &mut Object, digest: Option<TokenDigest>, denial: &Denial) {
        let token_id = digest
            .map(|d| self.authz.session_keys().log_id(&d))
            .unwrap_or_default();
        let deny = self.replies.refuse(denial, &token_id, self.authz.metrics());
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
