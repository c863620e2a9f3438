//! The `coprocess.Dispatcher` service Tyk calls: routes each hook, and turns
//! the decision into Tyk's reply. [`rescue`] is the one place where a denial
//! becomes a status, message and headers.
//!
//! Every call answers gRPC OK with the object Tyk sent, modified: a gRPC error
//! would make Tyk answer 403 `Key not authorised` whatever went wrong.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::authz::{Authorizer, Denial, Grant, Verdict};
use crate::cache::{Lookup, unix_now};
use crate::config::{ChallengeConfig, Config, SessionConfig};
use crate::introspect::IntrospectError;
use crate::token::extract_bearer;
use crate::tyk::pb::dispatcher_server::Dispatcher;
use crate::tyk::pb::{Event, EventReply, HookType, Object, SessionState};
use crate::tyk::{self, Allow, Deny, INJECT_JWT_HOOK, META_CLIENT_ID, META_SCOPE, META_SUB};

/// The gRPC service.
#[derive(Clone)]
pub struct DispatchService {
    authz: Arc<Authorizer>,
    replies: Arc<Replies>,
    /// Cancelled when the shutdown grace period is over: calls still running
    /// are answered with a 503 at once instead of being cut off.
    stop: CancellationToken,
}

/// Settings that shape replies, with header values built once.
struct Replies {
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
            replies: Arc::new(Replies {
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

    /// Ends every call still in progress with a 503 (see [`Denial::ShuttingDown`]).
    pub fn stop_in_flight(&self) {
        self.stop.cancel();
    }

    /// Runs one `Dispatch` call on `object` (also used by tests and tools that
    /// skip the transport).
    pub async fn handle(&self, mut object: Object) -> Object {
        let hook = HookType::try_from(object.hook_type).unwrap_or(HookType::Unknown);
        let span = info_span!(
            "dispatch",
            hook.r#type = hook.as_str_name(),
            hook.name = %object.hook_name,
            api.id = object.spec.get("APIID").map_or("", String::as_str),
        );
        async {
            let decided = match hook {
                // Whatever the hook's name: Tyk's default manifest calls it
                // PhantomAuthCheck, and an empty name is also sent (§2.6).
                HookType::CustomKeyCheck => {
                    self.stop
                        .run_until_cancelled(self.auth_check(&mut object))
                        .await
                }
                HookType::PostKeyAuth if object.hook_name == INJECT_JWT_HOOK => {
                    self.stop
                        .run_until_cancelled(self.inject_jwt(&mut object))
                        .await
                }
                _ => {
                    debug!("Hook not handled; object returned unchanged");
                    Some(())
                }
            };
            if decided.is_none() {
                let denial = Denial::ShuttingDown;
                self.write_deny(
                    &mut object,
                    &Verdict::without_token(denial.clone()),
                    &denial,
                );
            }
        }
        .instrument(span)
        .await;
        object
    }

    async fn auth_check(&self, object: &mut Object) {
        let verdict = self.authz.authorize(authorization(object)).await;
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
                self.write_allow(object, grant);
            }
            Err(denial) => self.write_deny(object, &verdict, denial),
        }
    }

    /// Curity's `post_key_auth` hook: makes sure the upstream gets the JWT
    /// without introspecting again.
    ///
    /// After our auth hook, Tyk has already applied its `set_headers`, so the
    /// request carries the JWT and nothing changes. When Tyk's id_extractor
    /// answered from its own cache, the auth hook did not run and the request
    /// still carries the opaque token: the JWT comes from our cache. Only if
    /// our cache no longer has it (e.g. after a restart) is the token decided
    /// in full.
    async fn inject_jwt(&self, object: &mut Object) {
        let header = authorization(object);
        let Ok(token) = extract_bearer(header, self.replies.max_token_bytes) else {
            return;
        };
        if let Some(grant) = self.authz.cached_grant(&token.digest()).await {
            set_authorization(object, &grant);
            return;
        }
        if crate::jwt::parse(token.expose()).is_ok() {
            debug!("Upstream already carries the JWT");
            return;
        }
        let verdict = self.authz.authorize(header).await;
        match &verdict.result {
            Ok(grant) => set_authorization(object, grant),
            Err(denial) => self.write_deny(object, &verdict, denial),
        }
    }

    fn write_allow(&self, object: &mut Object, grant: &Grant) {
        let now = unix_now().as_secs();
        let session = &self.replies.session;
        let remaining = grant
            .claims
            .exp
            .map_or(self.replies.default_ttl_seconds, |exp| {
                exp.saturating_sub(now)
            });
        let state = SessionState {
            rate: session.rate,
            per: session.per,
            quota_max: session.quota_max,
            quota_remaining: session.quota_max,
            quota_renewal_rate: session.quota_renewal_seconds,
            expires: grant.claims.exp.map_or(0, saturating_i64),
            // Tyk keeps the stored session this long after each request, so
            // it disappears soon after the token expires instead of never.
            session_lifetime: saturating_i64(
                remaining
                    .max(1)
                    .saturating_add(session.lifetime_grace_seconds),
            ),
            last_updated: now.to_string(),
            ..Default::default()
        };
        let claims = &grant.claims;
        tyk::allow(
            object,
            Allow {
                authorization: grant.authorization(),
                session_key: &grant.session_key,
                claims: [
                    (META_SUB, claims.sub.as_deref()),
                    (META_CLIENT_ID, claims.client_id.as_deref()),
                    (META_SCOPE, claims.scope.as_deref()),
                ],
                session: state,
            },
        );
    }

    fn write_deny(&self, object: &mut Object, verdict: &Verdict, denial: &Denial) {
        let deny = rescue(denial, &self.replies);
        let token_id = verdict
            .digest
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

fn set_authorization(object: &mut Object, grant: &Grant) {
    object
        .request
        .get_or_insert_with(Default::default)
        .set_headers
        .insert("Authorization".to_owned(), grant.authorization().to_owned());
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Turns a denial into Tyk's answer.
///
/// | denial | status | body | headers |
/// |---|---|---|---|
/// | no bearer credentials | 401 | Tyk template | `WWW-Authenticate: Bearer realm=".."` |
/// | malformed, inactive, expired | 401 | Tyk template | `.., error="invalid_token"` |
/// | AS error status, bad answer, credentials refused, TLS failure | 502 | JSON | — |
/// | AS unreachable or 503/429 | 503 | JSON | `Retry-After` |
/// | AS timed out | 504 | JSON | — |
/// | shutdown grace period over | 503 | JSON | `Retry-After` |
///
/// 401s go through Tyk's template with `override_error` off so Tyk fires its
/// AuthFailure event. AS faults are not the client's authentication failure:
/// they are sent as raw JSON in the template's layout and fire no event.
fn rescue(denial: &Denial, replies: &Replies) -> Deny {
    match denial {
        Denial::NoCredentials => Deny {
            status: 401,
            message: "Authorization required",
            headers: vec![("WWW-Authenticate", replies.bare_challenge.clone())],
            raw_body: false,
        },
        Denial::InvalidToken(_) => Deny {
            status: 401,
            message: "Invalid access token",
            headers: vec![("WWW-Authenticate", replies.invalid_token_challenge.clone())],
            raw_body: false,
        },
        Denial::ShuttingDown => Deny {
            status: 503,
            message: "Temporarily unavailable",
            headers: vec![("Retry-After", replies.retry_after.clone())],
            raw_body: true,
        },
        Denial::Introspection(error) => match error.as_ref() {
            IntrospectError::Timeout => Deny {
                status: 504,
                message: "Authorization server timed out",
                headers: Vec::new(),
                raw_body: true,
            },
            IntrospectError::Unreachable(_) | IntrospectError::Unavailable(_) => Deny {
                status: 503,
                message: "Authorization server unavailable",
                headers: vec![("Retry-After", replies.retry_after.clone())],
                raw_body: true,
            },
            IntrospectError::Tls(_)
            | IntrospectError::CredentialsRejected(_)
            | IntrospectError::UnexpectedStatus(_)
            | IntrospectError::NotJwt(_)
            | IntrospectError::TooLarge(_) => Deny {
                status: 502,
                message: "Authorization server error",
                headers: Vec::new(),
                raw_body: true,
            },
        },
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatchService {
    async fn dispatch(&self, request: Request<Object>) -> Result<Response<Object>, Status> {
        Ok(Response::new(self.handle(request.into_inner()).await))
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
