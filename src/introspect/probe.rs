//! One introspection request whose answer is looked at rather than used:
//! what the set-up probe ([`crate::probe`]) learns the AS's format from.

use super::*;

/// The status and headers of an answer, as the probe reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub status: u16,
    /// The `Content-Type`'s type/subtype, lowercased; `None` when absent.
    /// Only printable ASCII is kept, and at most 100 characters: it is
    /// shown to the operator.
    pub media: Option<String>,
    pub cache: CacheDirectives,
}

impl IntrospectionClient {
    /// Sends `token` as [`IntrospectionClient::introspect`] does (the same
    /// `Accept`, client authentication and body), once: outside the breaker
    /// and the in-flight bound, and not counted in the metrics. The body is
    /// read, at most `MAX_JWT_BYTES` of it, and dropped.
    ///
    /// # Errors
    ///
    /// [`IntrospectError`] when no answer arrived (timeout, connection, TLS)
    /// or the request could not be built (client assertion).
    pub async fn probe(&self, token: &BearerToken<'_>) -> Result<ProbeAnswer, IntrospectError> {
        let response = self
            .request(token, None, self.timeout)?
            .send()
            .await
            .map_err(transport_error)?;
        let headers = response.headers();
        let media = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .chars()
                    .filter(char::is_ascii_graphic)
                    .take(100)
                    .collect::<String>()
                    .to_ascii_lowercase()
            });
        let answer = ProbeAnswer {
            status: response.status().as_u16(),
            media,
            cache: cache_directives(headers),
        };
        // Read to the end so the connection can be reused; what it says
        // does not matter here.
        let _ = read_capped(response, self.max_jwt_bytes).await;
        Ok(answer)
    }
}
