//! Tyk's coprocess schema (generated from `proto/`) and the two ways our answer
//! is written into the object Tyk sent: allow (a [`Session`] becomes Tyk's
//! `SessionState`) and deny (a [`Deny`] becomes `return_overrides`).
//!
//! Both functions modify the received object in place and touch nothing else:
//! Tyk applies `url`, `method`, `raw_body` and the header/param edits of our
//! reply to the upstream request, so anything echoed unchanged stays as the
//! client sent it.

/// Generated protobuf types and gRPC service for package `coprocess`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("coprocess");
}

use std::collections::HashMap;

use pb::{AccessDefinition, Object, ReturnOverrides, SessionState};

use crate::reply::Deny;
use crate::session::Session;

/// Hook name of Curity's `post_key_auth` hook, kept for drop-in manifests.
pub const INJECT_JWT_HOOK: &str = "InjectJwtPostKeyAuth";

/// Writes an allow into `object`: the JWT header for the upstream
/// (`authorization`, `Bearer <JWT>`), the session, and its metadata.
pub fn allow(object: &mut Object, authorization: &str, session: Session) {
    let request = object.request.get_or_insert_with(Default::default);
    request
        .set_headers
        .insert("Authorization".to_owned(), authorization.to_owned());
    let (metadata, state) = session_state(session);
    object.metadata.extend(metadata);
    object.session = Some(state);
}

/// Tyk's `SessionState` for a session, and the metadata to merge into the
/// object's. Destructured whole, so a field added to [`Session`] cannot be
/// left out here unnoticed.
fn session_state(session: Session) -> (Vec<(String, String)>, SessionState) {
    let Session {
        metadata,
        expires,
        lifetime,
        id_extractor_deadline,
        apply_policies,
        api_id,
        api_versions,
        alias,
        tags,
        rate,
        per,
        quota_max,
        quota_renewal_seconds,
        last_updated,
    } = session;
    let access = AccessDefinition {
        // Tyk sends no API name in `spec`; the field is informational.
        api_name: String::new(),
        api_id: api_id.clone(),
        versions: api_versions,
        // No per-path restriction: every path and method of this API.
        allowed_urls: Vec::new(),
    };
    let state = SessionState {
        rate,
        per,
        quota_max,
        quota_remaining: quota_max,
        quota_renewal_rate: quota_renewal_seconds,
        expires: saturating_i64(expires),
        session_lifetime: saturating_i64(lifetime),
        id_extractor_deadline: saturating_i64(id_extractor_deadline),
        apply_policies,
        access_rights: HashMap::from([(api_id, access)]),
        alias,
        tags,
        last_updated: last_updated.to_string(),
        ..Default::default()
    };
    (metadata, state)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes a deny into `object`'s `return_overrides`.
pub fn deny(object: &mut Object, deny: &Deny) {
    let request = object.request.get_or_insert_with(Default::default);
    let overrides = request
        .return_overrides
        .get_or_insert_with(ReturnOverrides::default);
    overrides.response_code = deny.status;
    for (name, value) in &deny.headers {
        overrides.headers.insert((*name).to_owned(), value.clone());
    }
    if deny.raw_body {
        // Tyk copies a non-empty response_error over response_body, so the
        // body is set alone, with its type.
        overrides.override_error = true;
        overrides.response_error.clear();
        overrides.response_body = crate::reply::error_json(deny.message);
        overrides
            .headers
            .insert("Content-Type".to_owned(), "application/json".to_owned());
    } else {
        overrides.override_error = false;
        overrides.response_error = deny.message.to_owned();
    }
    object.session = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_rules::{META_SUB, META_TOKEN};

    fn object() -> Object {
        Object {
            hook_type: pb::HookType::CustomKeyCheck as i32,
            hook_name: "PhantomAuthCheck".into(),
            request: Some(pb::MiniRequestObject {
                url: "/api/orders?x=1".into(),
                method: "POST".into(),
                raw_body: bytes::Bytes::from_static(b"\xff\x00body"),
                return_overrides: Some(ReturnOverrides {
                    response_code: -1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn allow_sets_the_header_session_and_metadata_only() {
        let mut obj = object();
        let before = obj.clone();
        allow(
            &mut obj,
            "Bearer a.b.c",
            Session {
                metadata: vec![
                    (META_TOKEN.to_owned(), "phantom-token:abc".to_owned()),
                    (META_SUB.to_owned(), "alice".to_owned()),
                ],
                expires: 42,
                ..Default::default()
            },
        );
        let request = obj.request.as_ref().unwrap();
        assert_eq!(
            request.set_headers.get("Authorization").map(String::as_str),
            Some("Bearer a.b.c")
        );
        assert_eq!(
            request.return_overrides,
            before.request.as_ref().unwrap().return_overrides
        );
        assert_eq!(request.url, "/api/orders?x=1");
        assert_eq!(request.method, "POST");
        assert_eq!(&request.raw_body[..], b"\xff\x00body");
        assert_eq!(obj.metadata.len(), 2);
        assert_eq!(obj.metadata["token"], "phantom-token:abc");
        assert_eq!(obj.metadata["sub"], "alice");
        assert_eq!(obj.session.as_ref().map(|s| s.expires), Some(42));
    }

    #[test]
    fn a_session_becomes_tyks_session_state_naming_one_api() {
        let (metadata, state) = session_state(Session {
            metadata: vec![(META_TOKEN.to_owned(), "phantom-token:abc".to_owned())],
            expires: 1_900_000_300,
            lifetime: 330,
            id_extractor_deadline: u64::MAX,
            apply_policies: vec!["pol-1".into()],
            api_id: "orders-api".into(),
            api_versions: vec!["v1".into(), "v2".into()],
            alias: "alice".into(),
            tags: vec!["tenant:acme".into()],
            rate: 100.0,
            per: 60.0,
            quota_max: 1000,
            quota_renewal_seconds: 3600,
            last_updated: 1_900_000_000,
        });
        assert_eq!(
            metadata,
            [(META_TOKEN.to_owned(), "phantom-token:abc".to_owned())]
        );
        assert_eq!(state.expires, 1_900_000_300);
        assert_eq!(state.session_lifetime, 330);
        // Seconds beyond i64 saturate rather than wrap.
        assert_eq!(state.id_extractor_deadline, i64::MAX);
        assert_eq!(state.apply_policies, ["pol-1"]);
        assert_eq!(state.access_rights.len(), 1);
        let access = &state.access_rights["orders-api"];
        assert_eq!(access.api_id, "orders-api");
        assert_eq!(access.versions, ["v1", "v2"]);
        assert!(access.allowed_urls.is_empty());
        assert_eq!(
            (state.alias.as_str(), &state.tags[..]),
            ("alice", &["tenant:acme".to_owned()][..])
        );
        assert_eq!((state.rate, state.per), (100.0, 60.0));
        assert_eq!((state.quota_max, state.quota_remaining), (1000, 1000));
        assert_eq!(state.quota_renewal_rate, 3600);
        assert_eq!(state.last_updated, "1900000000");
    }

    #[test]
    fn template_deny_leaves_override_error_off() {
        let mut obj = object();
        deny(
            &mut obj,
            &Deny {
                status: 401,
                message: "Invalid access token",
                headers: vec![("WWW-Authenticate", "Bearer realm=\"api\"".into())],
                raw_body: false,
            },
        );
        let o = obj
            .request
            .as_ref()
            .unwrap()
            .return_overrides
            .as_ref()
            .unwrap();
        assert_eq!(o.response_code, 401);
        assert_eq!(o.response_error, "Invalid access token");
        assert!(!o.override_error);
        assert_eq!(o.headers["WWW-Authenticate"], "Bearer realm=\"api\"");
        assert!(obj.session.is_none());
        assert_eq!(obj.request.as_ref().unwrap().url, "/api/orders?x=1");
    }

    #[test]
    fn raw_deny_sends_json_in_tyks_layout() {
        let mut obj = object();
        deny(
            &mut obj,
            &Deny {
                status: 503,
                message: "Authorization server unavailable",
                headers: vec![("Retry-After", "5".into())],
                raw_body: true,
            },
        );
        let o = obj
            .request
            .as_ref()
            .unwrap()
            .return_overrides
            .as_ref()
            .unwrap();
        assert!(o.override_error);
        assert!(o.response_error.is_empty());
        assert_eq!(
            o.response_body,
            "{\n    \"error\": \"Authorization server unavailable\"\n}"
        );
        assert_eq!(o.headers["Content-Type"], "application/json");
        assert_eq!(o.headers["Retry-After"], "5");
    }
}
