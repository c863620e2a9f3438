//! Tyk's coprocess schema (generated from `proto/`) and the two ways our answer
//! is written into the object Tyk sent: allow and deny.
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

use pb::{Object, ReturnOverrides, SessionState};

use crate::reply::Deny;

/// Hook name of Curity's `post_key_auth` hook, kept for drop-in manifests.
pub const INJECT_JWT_HOOK: &str = "InjectJwtPostKeyAuth";

/// Metadata keys set on every allowed request (usable as `$tyk_meta.<key>`).
pub const META_TOKEN: &str = "token";
pub const META_SUB: &str = "sub";
pub const META_CLIENT_ID: &str = "client_id";
pub const META_SCOPE: &str = "scope";

/// What an allowed request gets.
pub struct Allow<'a> {
    /// `Bearer <JWT>` for the upstream.
    pub authorization: &'a str,
    /// Metadata for the session; must include [`META_TOKEN`]. Tyk merges it
    /// into the session's metadata and stores it.
    pub metadata: Vec<(&'a str, String)>,
    pub session: SessionState,
}

/// Writes an allow into `object`: the JWT header for the upstream, a session,
/// and its metadata.
pub fn allow(object: &mut Object, allow: Allow<'_>) {
    let request = object.request.get_or_insert_with(Default::default);
    request
        .set_headers
        .insert("Authorization".to_owned(), allow.authorization.to_owned());
    for (key, value) in allow.metadata {
        object.metadata.insert(key.to_owned(), value);
    }
    object.session = Some(allow.session);
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
            Allow {
                authorization: "Bearer a.b.c",
                metadata: vec![
                    (META_TOKEN, "phantom-token:abc".to_owned()),
                    (META_SUB, "alice".to_owned()),
                ],
                session: SessionState {
                    expires: 42,
                    ..Default::default()
                },
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
