//! A fake Tyk Gateway that calls the plugin over gRPC exactly as Tyk does and
//! treats the reply as Tyk does (our spec's simulator checklist, §10.1).
//!
//! It builds the `Object` like `CoProcessor.BuildObject`, post-processes the
//! reply like `ObjectPostProcess` (including its failure modes), applies
//! `return_overrides`, the session/token rule, session storage with its
//! lifetime, `post_key_auth` hooks, the expiry / access / rate / quota checks,
//! `$tyk_meta` header injection, and the id_extractor cache. One gateway may
//! serve several APIs over the same Redis ([`Gateway::request_to`]), some
//! with Tyk's own auth-token check, and apply the policies a test defines. It
//! reports what the client received and what the upstream would have
//! received.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use tonic::transport::{Channel, Endpoint};
use tyk_phantom_token::pb::dispatcher_client::DispatcherClient;
use tyk_phantom_token::pb::{
    AccessDefinition, Event, HookType, MiniRequestObject, Object, ReturnOverrides, SessionState,
};

/// The API definition the gateway serves (the parts that matter to us).
#[derive(Debug, Clone)]
pub struct Api {
    pub api_id: String,
    pub org_id: String,
    /// `custom_middleware_bundle`; its MD5 is `spec["bundle_hash"]`.
    pub bundle: String,
    /// `auth_check.name` (may be empty: Tyk still calls the plugin).
    pub auth_check: String,
    pub post_key_auth: Vec<String>,
    pub raw_body_only: bool,
    pub config_data: Option<serde_json::Value>,
    /// `id_extractor` with `extract_from: header`, `extract_with: value`.
    pub id_extractor_header: Option<String>,
    /// Global request headers to inject (values may use `$tyk_meta.KEY`).
    pub inject_headers: Vec<(String, String)>,
    /// `cp_dynamic_handler` name for AuthFailure events.
    pub event_handler: Option<String>,
    /// How clients authenticate: the plugin, or Tyk's own auth-token check.
    pub auth: Auth,
    /// `None`: not versioned (`version_data.not_versioned`), so Tyk checks
    /// only the API ID in `access_rights`. `Some(name)`: the version every
    /// request to this API asks for, which `access_rights` must list.
    pub version: Option<String>,
}

/// An API's authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// Custom auth through the plugin's `auth_check` hook.
    #[default]
    Plugin,
    /// Tyk's standard auth-token check (`AuthKey`): the `Authorization`
    /// value, `Bearer ` stripped, is a key looked up in Redis.
    AuthToken,
}

/// A Tyk policy (the parts the policy engine uses for access rights).
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub org_id: String,
    /// API ID → versions this policy grants.
    pub access_rights: Vec<(String, Vec<String>)>,
    pub tags: Vec<String>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            api_id: "orders-api".into(),
            org_id: "default".into(),
            bundle: "phantom-bundle.zip".into(),
            auth_check: "PhantomAuthCheck".into(),
            post_key_auth: Vec::new(),
            raw_body_only: false,
            config_data: None,
            id_extractor_header: None,
            inject_headers: Vec::new(),
            event_handler: None,
            auth: Auth::Plugin,
            version: None,
        }
    }
}

/// A request as a client sends it to the gateway.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub method: String,
    /// Path and query, e.g. `/orders/1?x=1`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// W3C `traceparent` Tyk's OpenTelemetry puts on the gRPC call.
    pub traceparent: Option<String>,
}

impl ClientRequest {
    pub fn get(target: &str) -> Self {
        ClientRequest {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            traceparent: None,
        }
    }

    pub fn traceparent(mut self, value: &str) -> Self {
        self.traceparent = Some(value.into());
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// What the client received.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&canonical(name)).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream API received.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: String,
    pub url: String,
    /// Canonical name → all values.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl UpstreamRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&canonical(name))
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The result of one request through the gateway.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `None` when the gateway aborted the connection without answering (a
    /// reply missing `request` or `return_overrides`).
    pub client: Option<ClientResponse>,
    pub upstream: Option<UpstreamRequest>,
    /// Whether this request called the auth hook.
    pub plugin_called: bool,
    /// The session stored for this request, if any.
    pub session_key: Option<String>,
    pub events: Vec<String>,
}

impl Outcome {
    pub fn status(&self) -> u16 {
        self.client.as_ref().map_or(0, |c| c.status)
    }

    pub fn response(&self) -> &ClientResponse {
        self.client
            .as_ref()
            .expect("the gateway aborted the connection")
    }
}

struct Stored {
    session: SessionState,
    expires_at: Option<Instant>,
    /// Requests counted in the current rate window: (window start, count).
    rate_window: (Instant, u64),
}

/// The fake gateway. Cheap to share between tasks (`&self` everywhere).
pub struct Gateway {
    pub api: Api,
    client: DispatcherClient<Channel>,
    /// Redis: `apikey-<session id>` → session, with TTL.
    store: Mutex<HashMap<String, Stored>>,
    auth_calls: AtomicUsize,
    events: Mutex<Vec<String>>,
    /// The policies Tyk knows; `None` until a test defines one, and then
    /// policies are applied as Tyk does (tests that define none leave
    /// `apply_policies` unchecked).
    policies: Mutex<Option<HashMap<String, Policy>>>,
}

/// `{"error": "<message>"}` exactly as Tyk's default template writes it.
pub fn template_body(message: &str) -> Vec<u8> {
    format!(
        "{{\n    \"error\": {}\n}}",
        serde_json::to_string(message).unwrap()
    )
    .into_bytes()
}

/// Go's `textproto.CanonicalMIMEHeaderKey`.
pub fn canonical(name: &str) -> String {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return name.to_owned();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The id_extractor's session ID for a credential with Tyk's legacy (empty)
/// `hash_key_function`: the org ID then the MD5 hex of the value (§5.2). A
/// client can compute it from its own `Authorization` value.
pub fn extractor_id(org_id: &str, value: &str) -> String {
    format!("{org_id}{}", md5_hex(value.as_bytes()))
}

/// `config_data` as Tyk sends it: compact JSON, keys sorted, `<>&` escaped.
fn encode_config_data(value: &serde_json::Value) -> String {
    // serde_json's Map is a BTreeMap without the preserve_order feature.
    serde_json::to_string(value)
        .unwrap()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The upstream request being built as the chain runs.
#[derive(Debug, Clone)]
struct Live {
    method: String,
    url: String,
    request_uri: String,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
    original_query: Vec<(String, String)>,
}

enum Flow {
    Continue,
    Respond(ClientResponse),
    Abort,
}

/// One call of a hook the API defines.
struct Hook<'a> {
    kind: HookType,
    name: &'a str,
    /// The session so far (hooks after authentication).
    session: Option<&'a SessionState>,
    /// W3C `traceparent` on the gRPC call.
    traceparent: Option<&'a str>,
}

impl Gateway {
    /// A gateway whose gRPC client dials the plugin like Tyk: one HTTP/2
    /// connection, no deadline, grpc-go's 4 MiB receive limit unless raised.
    pub async fn connect(plugin: SocketAddr, api: Api) -> Self {
        Self::connect_with_limit(plugin, api, 4 << 20).await
    }

    pub async fn connect_with_limit(plugin: SocketAddr, api: Api, recv_max: usize) -> Self {
        let channel = Endpoint::from_shared(format!("http://{plugin}"))
            .unwrap()
            .connect_lazy();
        Self::with_channel(channel, api, recv_max)
    }

    /// A gateway using an existing channel (e.g. to a Unix socket).
    pub fn with_channel(channel: Channel, api: Api, recv_max: usize) -> Self {
        let client = DispatcherClient::new(channel)
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(usize::MAX);
        Gateway {
            api,
            client,
            store: Mutex::new(HashMap::new()),
            auth_calls: AtomicUsize::new(0),
            events: Mutex::new(Vec::new()),
            policies: Mutex::new(None),
        }
    }

    /// Makes `policy` known to the gateway, and from then on applies the
    /// policies sessions name.
    pub fn define_policy(&self, policy: Policy) {
        self.policies
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(policy.id.clone(), policy);
    }

    /// How many times the auth hook was called.
    pub fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    /// Keys of the sessions in the store ("Redis").
    pub fn stored_keys(&self) -> Vec<String> {
        self.store.lock().unwrap().keys().cloned().collect()
    }

    /// The stored session under `key`, if present and unexpired.
    pub fn stored(&self, key: &str) -> Option<SessionState> {
        let store = self.store.lock().unwrap();
        store
            .get(key)
            .filter(|s| s.expires_at.is_none_or(|at| at > Instant::now()))
            .map(|s| s.session.clone())
    }

    /// The stored session's TTL as set when it was written.
    pub fn stored_ttl(&self, key: &str) -> Option<Duration> {
        let store = self.store.lock().unwrap();
        store
            .get(key)
            .and_then(|s| s.expires_at)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub async fn request(&self, request: ClientRequest) -> Outcome {
        self.request_to(&self.api, request).await
    }

    /// A request to another API served by the same gateway: same Redis, same
    /// policies, same plugin connection.
    pub async fn request_to(&self, api: &Api, request: ClientRequest) -> Outcome {
        let mut events = Vec::new();
        let mut outcome = self.run(api, request, &mut events).await;
        for event in &events {
            self.fire_event(api, event).await;
        }
        self.events.lock().unwrap().extend(events.iter().cloned());
        outcome.events = events;
        outcome
    }

    async fn run(&self, api: &Api, request: ClientRequest, events: &mut Vec<String>) -> Outcome {
        let (path, query) = split_target(&request.target);
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &request.headers {
            headers
                .entry(canonical(name))
                .or_default()
                .push(value.clone());
        }
        let mut live = Live {
            method: request.method.clone(),
            url: match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            },
            request_uri: request.target.clone(),
            headers,
            body: request.body.clone(),
            original_query: parse_query(query),
        };
        let mut outcome = Outcome {
            client: None,
            upstream: None,
            plugin_called: false,
            session_key: None,
            events: Vec::new(),
        };

        // §5.2: the id_extractor runs before the plugin.
        let mut session_id: Option<String> = None;
        let mut cached: Option<SessionState> = None;
        if api.auth == Auth::AuthToken {
            // Tyk's standard auth-token check: the header value, `Bearer `
            // stripped, is the key; policies are applied to what Redis holds.
            let value = live
                .headers
                .get("Authorization")
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_default();
            if value.is_empty() {
                outcome.client = Some(self.error(401, "Authorization field missing"));
                return outcome;
            }
            let key = strip_bearer(&value).to_owned();
            let found = self
                .stored(&key)
                .and_then(|mut session| self.apply_policies(&mut session).ok().map(|()| session));
            let Some(session) = found else {
                events.push("AuthFailure".into());
                outcome.client = Some(self.error(403, "Access to this API has been disallowed"));
                return outcome;
            };
            cached = Some(session);
            session_id = Some(key);
        } else if let Some(header) = &api.id_extractor_header {
            let value = live
                .headers
                .get(&canonical(header))
                .and_then(|v| v.first())
                .cloned();
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                outcome.client = Some(self.error(400, "Authorization field missing"));
                return outcome;
            };
            let id = extractor_id(&api.org_id, &value);
            let now = unix_now();
            // A session whose policies no longer apply counts as not found.
            if let Some(mut session) = self.stored(&id)
                && session.id_extractor_deadline > now
                && self.apply_policies(&mut session).is_ok()
            {
                cached = Some(session);
            }
            session_id = Some(id);
        }

        let (session, key) = match cached {
            Some(session) => {
                let key = session_id.clone().unwrap();
                (session, key)
            }
            None => {
                outcome.plugin_called = true;
                self.auth_calls.fetch_add(1, Ordering::SeqCst);
                let hook = Hook {
                    kind: HookType::CustomKeyCheck,
                    name: &api.auth_check,
                    session: None,
                    traceparent: request.traceparent.as_deref(),
                };
                let reply = match self.call_hook(api, hook, &mut live, events).await {
                    Ok(reply) => reply,
                    Err(client) => {
                        outcome.client = client;
                        return outcome;
                    }
                };
                // §4.6: a session and a non-empty token, or 403.
                let Some(mut session) = reply.session.clone() else {
                    events.push("AuthFailure".into());
                    outcome.client = Some(self.error(403, "Forbidden"));
                    return outcome;
                };
                for (k, v) in &reply.metadata {
                    session.metadata.insert(k.clone(), v.clone());
                }
                let token = session.metadata.get("token").cloned().unwrap_or_default();
                if token.is_empty() {
                    events.push("AuthFailure".into());
                    outcome.client = Some(self.error(403, "Forbidden"));
                    return outcome;
                }
                session.org_id = api.org_id.clone();
                if self.apply_policies(&mut session).is_err() {
                    events.push("AuthFailure".into());
                    outcome.client = Some(self.error(403, "Forbidden"));
                    return outcome;
                }
                let key = session_id.clone().unwrap_or(token);
                session.key_id = key.clone();
                (session, key)
            }
        };
        let session = self.store_session(&key, session);
        outcome.session_key = Some(key.clone());

        // §2.5 phase 5: post_key_auth hooks, with session and metadata.
        for name in &api.post_key_auth {
            let hook = Hook {
                kind: HookType::PostKeyAuth,
                name,
                session: Some(&session),
                traceparent: None,
            };
            if let Err(client) = self.call_hook(api, hook, &mut live, events).await {
                outcome.client = client;
                return outcome;
            }
        }

        // §4.7: the checks that follow authentication.
        if session.expires > 0 && session.expires < unix_now() {
            events.push("KeyExpired".into());
            outcome.client = Some(self.error(401, "Key has expired, please renew"));
            return outcome;
        }
        if !access_allowed(&session, api) {
            outcome.client = Some(self.error(403, "Access to this API has been disallowed"));
            return outcome;
        }
        if let Some(response) = self.rate_and_quota(&key) {
            outcome.client = Some(response);
            return outcome;
        }

        // Header injection with $tyk_meta.
        for (name, value) in &api.inject_headers {
            let value = replace_meta(value, &session.metadata);
            live.headers.insert(canonical(name), vec![value]);
        }

        outcome.upstream = Some(UpstreamRequest {
            method: live.method.clone(),
            url: live.url.clone(),
            headers: live.headers.clone(),
            body: live.body.clone(),
        });
        outcome.client = Some(ClientResponse {
            status: 200,
            headers: BTreeMap::from([("Content-Type".into(), "text/plain".into())]),
            body: b"upstream ok".to_vec(),
        });
        outcome
    }

    /// One phase of the chain: dispatch `hook`, then post-process the reply
    /// into `live`. `Ok(reply)`: the chain goes on. `Err(client)`: it stops
    /// with what the client receives (`None`: the connection is dropped). A
    /// gRPC error is a 403 `Key not authorised` from the auth hook and a 500
    /// `Middleware error` from any other (§4.10).
    async fn call_hook(
        &self,
        api: &Api,
        hook: Hook<'_>,
        live: &mut Live,
        events: &mut Vec<String>,
    ) -> Result<Object, Option<ClientResponse>> {
        let object = self.build_object(api, hook.kind, hook.name, live, hook.session);
        let mut call = tonic::Request::new(object);
        if let Some(traceparent) = hook.traceparent {
            call.metadata_mut()
                .insert("traceparent", traceparent.parse().unwrap());
        }
        let reply = match self.client.clone().dispatch(call).await {
            Ok(reply) => reply.into_inner(),
            Err(_) if hook.kind == HookType::CustomKeyCheck => {
                return Err(Some(self.error(403, "Key not authorised")));
            }
            Err(_) => return Err(Some(self.error(500, "Middleware error"))),
        };
        match self.post_process(&reply, live, events) {
            Flow::Continue => Ok(reply),
            Flow::Respond(response) => Err(Some(response)),
            Flow::Abort => Err(None),
        }
    }

    /// §3: the object Tyk sends.
    fn build_object(
        &self,
        api: &Api,
        hook: HookType,
        name: &str,
        live: &Live,
        session: Option<&SessionState>,
    ) -> Object {
        let mut headers: HashMap<String, String> = live
            .headers
            .iter()
            .filter_map(|(k, v)| v.first().map(|first| (k.clone(), first.clone())))
            .collect();
        headers.insert("Host".into(), "gateway.test".into());
        let mut params = HashMap::new();
        let (_, query) = split_target(&live.url);
        for (k, v) in parse_query(query) {
            params.entry(k).or_insert(v);
        }
        let body = if !api.raw_body_only {
            String::from_utf8(live.body.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let mut spec = HashMap::from([
            ("OrgID".to_owned(), api.org_id.clone()),
            ("APIID".to_owned(), api.api_id.clone()),
            ("bundle_hash".to_owned(), md5_hex(api.bundle.as_bytes())),
        ]);
        if let Some(config) = &api.config_data {
            spec.insert("config_data".into(), encode_config_data(config));
        }
        Object {
            hook_type: hook as i32,
            hook_name: name.to_owned(),
            request: Some(MiniRequestObject {
                headers,
                body,
                url: live.url.clone(),
                params,
                return_overrides: Some(ReturnOverrides {
                    response_code: -1,
                    ..Default::default()
                }),
                method: live.method.clone(),
                request_uri: live.request_uri.clone(),
                scheme: "http".into(),
                raw_body: Bytes::from(live.body.clone()),
                ..Default::default()
            }),
            session: session.cloned(),
            metadata: session.map(|s| s.metadata.clone()).unwrap_or_default(),
            spec,
            response: None,
        }
    }

    /// §4.3 and §4.4: apply the reply's request changes, then its overrides.
    fn post_process(&self, reply: &Object, live: &mut Live, events: &mut Vec<String>) -> Flow {
        // §4.2: Tyk dereferences both without checking; the request panics and
        // the connection is dropped without a response.
        let Some(request) = &reply.request else {
            return Flow::Abort;
        };
        let Some(overrides) = &request.return_overrides else {
            return Flow::Abort;
        };

        live.body = request.raw_body.to_vec();
        for name in &request.delete_headers {
            live.headers.remove(&canonical(name));
        }
        for (name, value) in &request.set_headers {
            live.headers.insert(canonical(name), vec![value.clone()]);
        }
        let mut query: Vec<(String, String)> = live
            .original_query
            .iter()
            .filter(|(k, _)| !request.delete_params.contains(k))
            .cloned()
            .collect();
        for (k, v) in &request.add_params {
            query.retain(|(qk, _)| qk != k);
            query.push((k.clone(), v.clone()));
        }
        if request.url.is_empty() || !(request.url.starts_with('/') || request.url.contains("://"))
        {
            return Flow::Respond(self.error(500, "Middleware error"));
        }
        let (path, reply_query) = split_target(&request.url);
        let mut wanted = query.clone();
        wanted.sort();
        let mut got = parse_query(reply_query);
        got.sort();
        live.url = if got == wanted {
            request.url.clone()
        } else if wanted.is_empty() {
            path.to_owned()
        } else {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(wanted.iter())
                .finish();
            format!("{path}?{encoded}")
        };
        live.method = if request.method.is_empty() {
            "GET".into()
        } else {
            request.method.clone()
        };

        let mut body = overrides.response_body.clone();
        if !overrides.response_error.is_empty() {
            body = overrides.response_error.clone();
        }
        let code = overrides.response_code;
        if code >= 400 && !overrides.override_error {
            events.push("AuthFailure".into());
            let message = if body.is_empty() {
                "Key not authorised".to_owned()
            } else {
                body
            };
            let mut response = self.error(code as u16, &message);
            for (k, v) in &overrides.headers {
                response.headers.insert(canonical(k), v.clone());
            }
            return Flow::Respond(response);
        }
        if code > 0 {
            let mut headers = BTreeMap::new();
            for (k, v) in &overrides.headers {
                headers.insert(canonical(k), v.clone());
            }
            return Flow::Respond(ClientResponse {
                status: code as u16,
                headers,
                body: body.into_bytes(),
            });
        }
        Flow::Continue
    }

    /// Tyk's policy engine (`internal/policy` `Apply`), for access rights
    /// and tags: unknown policies are skipped when several are named and an
    /// error when one is; a policy of another organisation is an error; the
    /// access rights of the policies replace the session's, and none at all
    /// is an error. Nothing happens until a test defines a policy.
    fn apply_policies(&self, session: &mut SessionState) -> Result<(), ()> {
        let guard = self.policies.lock().unwrap();
        let Some(known) = guard.as_ref() else {
            return Ok(());
        };
        let mut ids = session.apply_policies.clone();
        if !session.apply_policy_id.is_empty() && !ids.contains(&session.apply_policy_id) {
            ids.push(session.apply_policy_id.clone());
        }
        if ids.is_empty() {
            return Ok(());
        }
        let mut rights: HashMap<String, AccessDefinition> = HashMap::new();
        let mut tags = session.tags.clone();
        for id in &ids {
            let Some(policy) = known.get(id) else {
                if ids.len() > 1 {
                    continue;
                }
                return Err(());
            };
            if policy.org_id != session.org_id {
                return Err(());
            }
            for (api_id, versions) in &policy.access_rights {
                let entry = rights
                    .entry(api_id.clone())
                    .or_insert_with(|| AccessDefinition {
                        api_id: api_id.clone(),
                        ..Default::default()
                    });
                for version in versions {
                    if !entry.versions.contains(version) {
                        entry.versions.push(version.clone());
                    }
                }
            }
            for tag in &policy.tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
        if rights.is_empty() {
            return Err(());
        }
        session.access_rights = rights;
        session.tags = tags;
        Ok(())
    }

    /// §4.1 step 13 and §4.8: keep a stored session's quota counters; store
    /// with the lifetime as TTL (0: no TTL).
    fn store_session(&self, key: &str, mut session: SessionState) -> SessionState {
        let mut store = self.store.lock().unwrap();
        let now = Instant::now();
        let previous = store
            .get(key)
            .filter(|s| s.expires_at.is_none_or(|at| at > now));
        let rate_window = previous.map_or((now, 0), |p| p.rate_window);
        if let Some(previous) = previous {
            session.quota_remaining = previous.session.quota_remaining;
            session.quota_renews = previous.session.quota_renews;
        }
        let expires_at = (session.session_lifetime > 0)
            .then(|| now + Duration::from_secs(session.session_lifetime as u64));
        store.insert(
            key.to_owned(),
            Stored {
                session: session.clone(),
                expires_at,
                rate_window,
            },
        );
        session
    }

    fn rate_and_quota(&self, key: &str) -> Option<ClientResponse> {
        let mut store = self.store.lock().unwrap();
        let stored = store.get_mut(key)?;
        let session = &mut stored.session;
        if session.rate > 0.0 && session.per > 0.0 {
            let window = Duration::from_secs_f64(session.per);
            let (start, count) = &mut stored.rate_window;
            if start.elapsed() >= window {
                *start = Instant::now();
                *count = 0;
            }
            *count += 1;
            if *count as f64 > session.rate {
                return Some(self.error(429, "Rate Limit Exceeded"));
            }
        }
        if session.quota_max > 0 {
            let now = unix_now();
            if session.quota_renews <= now {
                session.quota_remaining = session.quota_max;
                session.quota_renews = now + session.quota_renewal_rate;
            }
            if session.quota_remaining <= 0 {
                return Some(self.error(403, "Quota exceeded"));
            }
            session.quota_remaining -= 1;
        }
        None
    }

    /// §4.5: Tyk's JSON error template.
    fn error(&self, status: u16, message: &str) -> ClientResponse {
        ClientResponse {
            status,
            headers: BTreeMap::from([
                ("Content-Type".into(), "application/json".into()),
                ("X-Generator".into(), "tyk.io".into()),
            ]),
            body: template_body(message),
        }
    }

    /// §8: events go to the plugin only when the API registers a handler.
    async fn fire_event(&self, api: &Api, event: &str) {
        let Some(handler) = &api.event_handler else {
            return;
        };
        let payload = serde_json::json!({
            "message": { "Type": event, "Meta": { "Message": "Auth Failure", "Key": "", "Path": "/" }, "TimeStamp": "" },
            "handler_name": handler,
            "spec": { "APIID": api.api_id, "OrgID": api.org_id },
        });
        let _ = self
            .client
            .clone()
            .dispatch_event(Event {
                payload: payload.to_string(),
            })
            .await;
    }
}

/// Tyk's access-rights check (`AccessRightsCheck`): no rights means every
/// API; otherwise this API's ID must be listed, and for a versioned API the
/// version asked for too.
fn access_allowed(session: &SessionState, api: &Api) -> bool {
    if session.access_rights.is_empty() {
        return true;
    }
    let Some(granted) = session.access_rights.get(&api.api_id) else {
        return false;
    };
    match &api.version {
        None => true,
        Some(version) => granted.versions.contains(version),
    }
}

/// Tyk's auth-token middleware drops a leading `Bearer ` (any case).
fn strip_bearer(value: &str) -> &str {
    match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => &value[7..],
        _ => value,
    }
}

fn replace_meta(template: &str, metadata: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find("$tyk_meta.") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "$tyk_meta.".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap_or(rest.len());
        out.push_str(metadata.get(&rest[..end]).map_or("", String::as_str));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
