//! The HTTP side of introspection: the pooled client, the request body and
//! credentials, and what a transport failure means.

use super::*;

/// The pooled HTTP client every request to the AS uses (introspection,
/// discovery, JWKS): rustls with the system's roots plus the extra CA, no
/// redirects (they would carry the token elsewhere), the time budget applied
/// to the whole exchange, body included, mutual TLS when configured, and no
/// proxy but `INTROSPECTION_PROXY`: the environment's `HTTP_PROXY`,
/// `HTTPS_PROXY` and `ALL_PROXY` are set for other traffic, and must not
/// route tokens and client credentials through a proxy nobody chose for
/// them.
///
/// # Errors
///
/// When the CA file or client identity cannot be read or parsed, or TLS
/// cannot be set up.
pub fn http_client(config: &IntrospectionConfig) -> Result<reqwest::Client, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("tyk-phantom-token/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    builder = match &config.proxy {
        // Used for every introspection request: NO_PROXY does not apply.
        Some(proxy) => {
            builder.proxy(reqwest::Proxy::all(proxy.url().clone()).map_err(|e| e.without_url())?)
        }
        None => builder.no_proxy(),
    };
    if let Some(path) = &config.ca_file {
        let display = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| ClientBuildError::CaFile {
            path: display.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ClientBuildError::CaPem { path: display })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &config.client_identity {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|source| ClientBuildError::ClientIdentityFile {
                path: path.display().to_string(),
                source,
            })
        };
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|_| ClientBuildError::ClientIdentity)?;
        builder = builder.identity(identity);
    }
    Ok(builder.build()?)
}

/// Whether a request failed before any byte of it was written, so the AS
/// cannot have seen it: the connection could not be made (refused,
/// unreachable; through a proxy, the tunnel was refused; for an `https://`
/// AS, the connection was cut during the TLS handshake).
///
/// Everything else came after hyper had started writing the request: a reset
/// or "connection closed before message completed" while waiting for the
/// answer, even on a reused connection the AS may have dropped at that
/// moment, or a failure in the middle of the answer. The AS may have read the
/// request, so none of those is retried. An idle pooled connection the AS had
/// already closed never gets that far: hyper notices the close and the pool
/// sends the request on a new connection, or hands it back unsent and the
/// pool sends it again itself.
pub(super) fn request_unsent(error: &reqwest::Error) -> bool {
    error.is_connect()
}

pub(super) fn transport_error(error: reqwest::Error) -> IntrospectError {
    if error.is_timeout() {
        return IntrospectError::Timeout;
    }
    // The chain of causes, without the URL reqwest puts in its own message.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut tls = false;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        tls |= is_tls_error(cause);
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause's message; say each thing once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if tls {
        IntrospectError::Tls(text)
    } else {
        IntrospectError::Unreachable(text)
    }
}

/// Whether `error` is rustls's, directly or inside (possibly nested)
/// `io::Error`s, whose `source()` skips the error they wrap.
pub(super) fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = error;
    loop {
        if current.is::<rustls::Error>() {
            return true;
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

/// `token=<form-encoded token>`: `+`, `/` and `=` must not reach the AS raw.
pub(super) fn form_body(token: &str) -> String {
    let mut body = String::with_capacity(6 + token.len() * 3 / 2);
    body.push_str("token=");
    body.extend(form_urlencoded::byte_serialize(token.as_bytes()));
    body
}

/// RFC 6749 §2.3.1: id and secret are each form-encoded, then joined by `:`,
/// then base64-encoded. Plain Basic helpers skip the first step.
pub(super) fn basic_credentials(client_id: &str, secret: &str) -> HeaderValue {
    let mut pair = String::new();
    pair.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(pair)))
        .unwrap_or_else(|_| unreachable!("base64 is a valid header value"));
    value.set_sensitive(true);
    value
}

/// The client secret, which the configuration requires for every method
/// but `private_key_jwt`.
pub(super) fn secret(config: &IntrospectionConfig) -> Result<&str, ClientBuildError> {
    config
        .client_secret
        .as_ref()
        .map(|s| s.expose())
        .ok_or(ClientBuildError::NoClientSecret)
}
