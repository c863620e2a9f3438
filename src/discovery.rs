//! Finding the AS's endpoints from its issuer URL: RFC 8414 authorization
//! server metadata first, then OpenID Connect Discovery.
//!
//! What must hold:
//! - RFC 8414 §3.1: `/.well-known/oauth-authorization-server` is inserted
//!   between the host and the issuer's path; OpenID Discovery appends
//!   `/.well-known/openid-configuration` to the issuer.
//! - The document's `issuer` must equal the configured issuer exactly
//!   (RFC 8414 §3.3); a mismatch is an error, not a reason to try elsewhere.
//! - Endpoints of an `https` issuer must be `https` too.
//! - Only "not found"-like answers (4xx) move on to the next document; a
//!   server error or an unreachable AS is reported as such.

use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// A metadata document is a few KiB.
pub const MAX_METADATA_BYTES: usize = 512 * 1024;

/// The parts of the AS's metadata the plugin uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsMetadata {
    pub issuer: String,
    pub introspection_endpoint: Url,
    pub jwks_uri: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    /// Often absent (node-oidc-provider omits it): then RFC 8414 leaves the
    /// methods to "other means", in practice the token endpoint's.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_signing_alg_values_supported: Vec<String>,
    /// The document these came from.
    pub source: Url,
}

/// Why discovery failed. Messages name the issuer or document, which are
/// configuration, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("issuer {0:?} is not an http(s) URL without query or fragment")]
    InvalidIssuer(String),
    #[error("fetching the metadata at {0} timed out")]
    Timeout(Url),
    #[error("metadata at {url} unreachable: {reason}")]
    Unreachable { url: Url, reason: String },
    #[error("metadata at {url} answered HTTP {status}")]
    Status { url: Url, status: u16 },
    #[error("metadata at {0} is larger than {MAX_METADATA_BYTES} bytes")]
    TooLarge(Url),
    #[error("metadata at {url} is not a JSON object: {reason}")]
    Malformed { url: Url, reason: String },
    #[error("metadata at {url} names issuer {found:?}, not the configured one")]
    IssuerMismatch { url: Url, found: String },
    #[error("no metadata document found for the issuer (tried {0})")]
    NotFound(String),
    #[error("the metadata has no usable {0}")]
    MissingEndpoint(&'static str),
    #[error("the metadata's {name} is not a usable URL: {reason}")]
    BadEndpoint { name: &'static str, reason: String },
}

/// The metadata URLs to try, in order: RFC 8414 (path insertion), then
/// OpenID Connect Discovery.
///
/// # Errors
///
/// [`DiscoveryError::InvalidIssuer`] for an issuer that is not an http(s)
/// URL, or has a query or fragment.
pub fn metadata_urls(issuer: &str) -> Result<[Url; 2], DiscoveryError> {
    let invalid = || DiscoveryError::InvalidIssuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid());
    }
    let path = url.path().trim_end_matches('/');
    let mut rfc8414 = url.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = url.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    Ok([rfc8414, oidc])
}

#[derive(Deserialize)]
struct Document {
    issuer: Option<String>,
    introspection_endpoint: Option<String>,
    jwks_uri: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    introspection_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    introspection_signing_alg_values_supported: Vec<String>,
}

/// Reads the AS's metadata for `issuer`.
///
/// # Errors
///
/// [`DiscoveryError`] naming what went wrong.
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    timeout: Duration,
) -> Result<AsMetadata, DiscoveryError> {
    let urls = metadata_urls(issuer)?;
    let secure = issuer.starts_with("https:");
    let mut missing = None;
    for url in &urls {
        let Some(document) = fetch(http, url, timeout).await? else {
            continue;
        };
        if document.issuer.as_deref() != Some(issuer) {
            return Err(DiscoveryError::IssuerMismatch {
                url: url.clone(),
                found: document.issuer.unwrap_or_default(),
            });
        }
        let Some(introspection) = document.introspection_endpoint.as_deref() else {
            missing = Some(DiscoveryError::MissingEndpoint("introspection_endpoint"));
            continue;
        };
        let endpoint = |name: &'static str, value: Option<&str>| {
            value.map(|v| endpoint_url(name, v, secure)).transpose()
        };
        return Ok(AsMetadata {
            issuer: issuer.to_owned(),
            introspection_endpoint: endpoint_url("introspection_endpoint", introspection, secure)?,
            jwks_uri: endpoint("jwks_uri", document.jwks_uri.as_deref())?,
            token_endpoint: endpoint("token_endpoint", document.token_endpoint.as_deref())?,
            revocation_endpoint: endpoint(
                "revocation_endpoint",
                document.revocation_endpoint.as_deref(),
            )?,
            introspection_endpoint_auth_methods_supported: document
                .introspection_endpoint_auth_methods_supported,
            token_endpoint_auth_methods_supported: document.token_endpoint_auth_methods_supported,
            introspection_signing_alg_values_supported: document
                .introspection_signing_alg_values_supported,
            source: url.clone(),
        });
    }
    Err(missing.unwrap_or_else(|| {
        DiscoveryError::NotFound(urls.iter().map(Url::as_str).collect::<Vec<_>>().join(", "))
    }))
}

/// One document: `None` when the server says it has none (4xx).
async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Option<Document>, DiscoveryError> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            DiscoveryError::Timeout(url.clone())
        } else {
            DiscoveryError::Unreachable {
                url: url.clone(),
                reason: e.without_url().to_string(),
            }
        }
    };
    let mut response = http
        .get(url.clone())
        .timeout(timeout)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if status.is_client_error() {
        return Ok(None);
    }
    if status != StatusCode::OK {
        return Err(DiscoveryError::Status {
            url: url.clone(),
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(DiscoveryError::TooLarge(url.clone()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| DiscoveryError::Malformed {
            url: url.clone(),
            reason: e.to_string(),
        })
}

fn endpoint_url(name: &'static str, value: &str, secure: bool) -> Result<Url, DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::BadEndpoint {
        name,
        reason: reason.to_owned(),
    };
    let url = Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if !secure => Ok(url),
        "http" => Err(bad("http endpoint for an https issuer")),
        _ => Err(bad("not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[test]
    fn rfc8414_inserts_the_well_known_path_and_oidc_appends_it() {
        let [a, b] = metadata_urls("https://as.example/realms/main").unwrap();
        assert_eq!(
            a.as_str(),
            "https://as.example/.well-known/oauth-authorization-server/realms/main"
        );
        assert_eq!(
            b.as_str(),
            "https://as.example/realms/main/.well-known/openid-configuration"
        );
        let [a, b] = metadata_urls("https://as.example").unwrap();
        assert_eq!(
            a.as_str(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            b.as_str(),
            "https://as.example/.well-known/openid-configuration"
        );
        let [a, _] = metadata_urls("https://as.example/tenant/").unwrap();
        assert_eq!(
            a.as_str(),
            "https://as.example/.well-known/oauth-authorization-server/tenant"
        );
        for bad in [
            "as.example",
            "ftp://as.example",
            "https://as.example/?x=1",
            "https://as.example/#f",
            "",
        ] {
            assert_eq!(
                metadata_urls(bad),
                Err(DiscoveryError::InvalidIssuer(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_of_an_https_issuer_must_be_https() {
        assert!(endpoint_url("jwks_uri", "https://as.example/jwks", true).is_ok());
        assert!(endpoint_url("jwks_uri", "http://127.0.0.1/jwks", false).is_ok());
        assert!(matches!(
            endpoint_url("jwks_uri", "http://as.example/jwks", true),
            Err(DiscoveryError::BadEndpoint {
                name: "jwks_uri",
                ..
            })
        ));
        assert!(endpoint_url("jwks_uri", "/jwks", false).is_err());
        assert!(endpoint_url("jwks_uri", "file:///etc/passwd", false).is_err());
    }

    /// A loopback metadata server: binds first (the port is part of the
    /// issuer), then answers the routes `make(base)` returns with
    /// (status, body), 404 elsewhere. Returns the base URL and the paths asked.
    async fn serve(
        make: impl FnOnce(&str) -> HashMap<String, (u16, String)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = Arc::new(make(&base));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (routes, log) = (Arc::clone(&routes), Arc::clone(&log));
            async move {
                log.lock().unwrap().push(uri.path().to_owned());
                let (status, body) = routes
                    .get(uri.path())
                    .cloned()
                    .unwrap_or((404, String::new()));
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, seen)
    }

    fn document(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "introspection_endpoint": format!("{issuer}/introspect"),
            "jwks_uri": format!("{issuer}/jwks"),
            "introspection_signing_alg_values_supported": ["ES256", "RS256"],
        })
        .to_string()
    }

    const RFC8414: &str = "/.well-known/oauth-authorization-server/realms/main";
    const OIDC: &str = "/realms/main/.well-known/openid-configuration";

    async fn discover_at(issuer: &str) -> Result<AsMetadata, DiscoveryError> {
        discover(&reqwest::Client::new(), issuer, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn rfc8414_metadata_is_read_first() {
        let (base, seen) = serve(|base| {
            let issuer = format!("{base}/realms/main");
            HashMap::from([
                (RFC8414.to_owned(), (200, document(&issuer))),
                (OIDC.to_owned(), (200, document(&issuer))),
            ])
        })
        .await;
        let issuer = format!("{base}/realms/main");
        let metadata = discover_at(&issuer).await.unwrap();
        assert_eq!(metadata.issuer, issuer);
        assert_eq!(
            metadata.introspection_endpoint.as_str(),
            format!("{issuer}/introspect")
        );
        assert_eq!(
            metadata.jwks_uri.unwrap().as_str(),
            format!("{issuer}/jwks")
        );
        assert_eq!(
            metadata.introspection_signing_alg_values_supported,
            ["ES256", "RS256"]
        );
        assert_eq!(metadata.source.path(), RFC8414);
        assert_eq!(*seen.lock().unwrap(), [RFC8414]);
    }

    #[tokio::test]
    async fn openid_discovery_is_the_fallback() {
        let (base, seen) = serve(|base| {
            HashMap::from([(
                OIDC.to_owned(),
                (200, document(&format!("{base}/realms/main"))),
            )])
        })
        .await;
        let metadata = discover_at(&format!("{base}/realms/main")).await.unwrap();
        assert_eq!(metadata.source.path(), OIDC);
        assert_eq!(*seen.lock().unwrap(), [RFC8414, OIDC]);
    }

    #[tokio::test]
    async fn a_document_for_another_issuer_is_refused_without_falling_back() {
        let (base, seen) = serve(|base| {
            HashMap::from([
                (
                    RFC8414.to_owned(),
                    (200, document(&format!("{base}/realms/other"))),
                ),
                (
                    OIDC.to_owned(),
                    (200, document(&format!("{base}/realms/main"))),
                ),
            ])
        })
        .await;
        let error = discover_at(&format!("{base}/realms/main"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::IssuerMismatch { found, .. } if found.ends_with("/realms/other")),
            "{error}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn failures_are_typed() {
        // Nothing served.
        let (base, _) = serve(|_| HashMap::new()).await;
        assert!(matches!(
            discover_at(&format!("{base}/realms/main")).await,
            Err(DiscoveryError::NotFound(_))
        ));
        // A server error is not "not found".
        let (base, seen) =
            serve(|_| HashMap::from([(RFC8414.to_owned(), (500, String::new()))])).await;
        assert!(matches!(
            discover_at(&format!("{base}/realms/main")).await,
            Err(DiscoveryError::Status { status: 500, .. })
        ));
        assert_eq!(seen.lock().unwrap().len(), 1);
        // Not JSON.
        let (base, _) =
            serve(|_| HashMap::from([(RFC8414.to_owned(), (200, "<html>".to_owned()))])).await;
        assert!(matches!(
            discover_at(&format!("{base}/realms/main")).await,
            Err(DiscoveryError::Malformed { .. })
        ));
        // No introspection endpoint anywhere.
        let (base, _) = serve(|base| {
            let doc = serde_json::json!({"issuer": format!("{base}/realms/main")}).to_string();
            HashMap::from([
                (RFC8414.to_owned(), (200, doc.clone())),
                (OIDC.to_owned(), (200, doc)),
            ])
        })
        .await;
        assert_eq!(
            discover_at(&format!("{base}/realms/main")).await,
            Err(DiscoveryError::MissingEndpoint("introspection_endpoint"))
        );
        // Unreachable.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        assert!(matches!(
            discover_at(&issuer).await,
            Err(DiscoveryError::Unreachable { .. })
        ));
    }
}
