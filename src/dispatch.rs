//! The `coprocess.Dispatcher` service Tyk calls: routes each hook to the
//! decision core ([`Authorizer`]) and applies what it answers to the object
//! Tyk sent, through [`Sessions`] and [`tyk::allow`] for an allow and
//! [`Replies`] and [`tyk::deny`] for a denial.
//!
//! Every call answers gRPC OK with the object Tyk sent, modified: a gRPC error
//! would make Tyk answer 403 `Key not authorised` whatever went wrong.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, error, info_span};

use crate::api_rules::{ApiRules, ApiRulesCache, META_JWT};
use crate::authz::{Authorizer, Denial, Grant, Upstream};
use crate::cache::unix_now;
use crate::config::Config;
use crate::dpop::{Dpop, DpopOutcome, PROOF_HEADER, RequestFacts, Screened};
use crate::fleet::Fleet;
use crate::metrics::Decision;
use crate::reply::Replies;
use crate::session::Sessions;
use crate::token::TokenDigest;
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
    dpop: Arc<Dpop>,
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
            replies: Arc::new(Replies::new(&config.challenge).with_dpop_algs(&config.dpop.algs)),
            dpop: Arc::new(Dpop::new(
                &config.dpop,
                config.cache.clock_skew,
                config.session.key_secret.expose().as_bytes(),
                config.max_token_bytes,
            )),
            stop: CancellationToken::new(),
        }
    }

    /// Runs one `Dispatch` call on `object`, in place. The gRPC method calls
    /// it, and so do the unit tests (`dispatch/tests.rs`), which skip the
    /// transport. `trace` is the call's W3C trace context, if any.
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
                self.write_deny(object, None, &Denial::ShuttingDown);
            }
        }
        .instrument(span)
        .await;
    }

    /// The API's rules from `spec["config_data"]`, parsed once per text.
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

    /// The custom-auth hook: the decision for this request to this API.
    ///
    /// A DPoP request's proof is checked before the token is looked up
    /// (see [`Dpop::screen`]), its binding after, and the proof remembered
    /// only then ([`Dpop::remember`]); a `Bearer` request with a DPoP-bound
    /// token is refused.
    async fn auth_check(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let rules = match self.api_rules(object) {
            Ok(rules) => rules,
            Err(denial) => return self.write_deny(object, None, &denial),
        };
        let facts = request_facts(object);
        let shared = self.authz.fleet().map(Fleet::shared);
        let screened = self.dpop.screen(&facts, &rules.dpop, unix_now().as_secs());
        let (authorization, jkt, claim) = match screened {
            Screened::Bearer => (facts.authorization.map(str::to_owned), None, None),
            Screened::Dpop {
                authorization,
                jkt,
                claim,
            } => (Some(authorization), Some(jkt), claim),
            Screened::Refused(denial) => {
                return self.write_deny(object, None, &Denial::Dpop(denial));
            }
        };
        let bind = |grant: &Grant| Dpop::bind(grant, jkt.as_deref()).map_err(Denial::Dpop);
        let verdict = self
            .authz
            .decide_bound(authorization.as_deref(), &rules, bind, trace)
            .await;
        match &verdict.result {
            Ok(grant) => {
                // The proof is remembered only now that its token checked out.
                if let Some(claim) = &claim
                    && let Err(denial) = self.dpop.remember(claim, shared, unix_now()).await
                {
                    return self.write_deny(object, verdict.digest, &Denial::Dpop(denial));
                }
                self.write_allow(object, grant, &rules, jkt.is_some());
            }
            Err(denial) if jkt.is_some() => {
                let token_id = self.token_id(verdict.digest);
                let deny =
                    self.replies
                        .refuse_dpop_request(denial, &token_id, self.authz.metrics());
                tyk::deny(object, &deny);
            }
            Err(denial) => self.write_deny(object, verdict.digest, denial),
        }
    }

    /// Curity's `post_key_auth` hook: makes sure the upstream gets the JWT
    /// without introspecting again (see [`Authorizer::upstream`]).
    async fn inject_jwt(&self, object: &mut Object, trace: Option<&TraceContext>) {
        let kept_jwt = object.metadata.get(META_JWT).map(String::as_str);
        match self
            .authz
            .upstream(authorization(object), kept_jwt, trace)
            .await
        {
            Upstream::Unchanged => {}
            Upstream::Forward(value) => set_authorization(object, value),
            Upstream::Deny { digest, denial } => self.write_deny(object, digest, &denial),
        }
    }

    /// `dpop`: the request carried a valid proof for the grant's key. Its
    /// session then gets no id_extractor deadline, so Tyk calls the plugin
    /// (and the proof is checked) on every request. The `DPoP` header is
    /// removed unless `DPOP_FORWARD_PROOF` keeps it.
    fn write_allow(&self, object: &mut Object, grant: &Grant, rules: &ApiRules, dpop: bool) {
        let api_id = object.spec.get("APIID").map_or("", String::as_str);
        let mut session = self
            .sessions
            .for_grant(grant, rules, api_id, unix_now().as_secs());
        self.authz.metrics().decision(Decision::Allow);
        if dpop {
            self.authz.metrics().dpop(DpopOutcome::Accepted);
            session.id_extractor_deadline = 0;
        }
        // Removed whenever present (a bearer request may carry one too).
        if !self.dpop.forwards_proof()
            && let Some(request) = object.request.as_mut()
            && request.headers.contains_key(PROOF_HEADER)
        {
            request.delete_headers.push(PROOF_HEADER.to_owned());
        }
        tyk::allow(object, grant.authorization(), session);
    }

    /// `digest` identifies the token (or malformed header) in the log line.
    fn write_deny(&self, object: &mut Object, digest: Option<TokenDigest>, denial: &Denial) {
        let token_id = self.token_id(digest);
        let deny = self.replies.refuse(denial, &token_id, self.authz.metrics());
        tyk::deny(object, &deny);
    }

    /// The token's id for log lines (never the token itself).
    fn token_id(&self, digest: Option<TokenDigest>) -> String {
        digest
            .map(|d| self.authz.session_keys().log_id(&d))
            .unwrap_or_default()
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

/// What the DPoP checks read from the request Tyk sent (§3 of Tyk's
/// contract: headers by Go-canonical name, first value only).
fn request_facts(object: &Object) -> RequestFacts<'_> {
    let Some(request) = object.request.as_ref() else {
        return RequestFacts::default();
    };
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    RequestFacts {
        authorization: header("Authorization"),
        proof: header(PROOF_HEADER),
        method: &request.method,
        url: &request.url,
        scheme: &request.scheme,
        host: header("Host"),
    }
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

#[cfg(test)]
mod tests;
