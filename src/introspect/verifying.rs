//! `VERIFY_JWT=true`: the verifier of the JWTs the AS gives the plugin to
//! forward, sharing the AS's key set with RFC 9701 answers (one JWKS, one
//! fetch). JWTs the plugin minted itself are not verified again.

use super::*;
use crate::answer::verify::JwtVerifier;

/// The AS's key set, when its JWKS URL is known (configured or discovered).
pub(super) fn as_keys(
    http: &reqwest::Client,
    config: &IntrospectionConfig,
) -> Option<Arc<AsKeySet>> {
    config.any_as.jwks_url.as_ref().map(|url| {
        Arc::new(AsKeySet::new(
            http.clone(),
            url.clone(),
            JwksOptions {
                timeout: config.timeout,
                ..JwksOptions::default()
            },
        ))
    })
}

/// The verifier `VERIFY_JWT=true` asks for, or `None` when it is off.
///
/// # Errors
///
/// When the AS's JWKS is still unknown after discovery.
pub(super) fn jwt_verifier(
    config: &IntrospectionConfig,
    keys: Option<&Arc<AsKeySet>>,
) -> Result<Option<JwtVerifier>, ClientBuildError> {
    let Some(verify) = &config.verify_jwt else {
        return Ok(None);
    };
    let keys = keys.ok_or(ClientBuildError::NoJwksToVerify)?;
    Ok(Some(JwtVerifier::new(Arc::clone(keys), verify.clone())))
}

impl IntrospectionClient {
    /// Verifies a JWT from the AS when `VERIFY_JWT` is on.
    ///
    /// # Errors
    ///
    /// [`IntrospectError::Answer`] with [`AnswerError::Unverified`]: a fault
    /// of the AS (502), never an invalid token.
    pub(super) async fn verify_as_jwt(&self, jwt: &str) -> Result<(), IntrospectError> {
        match &self.verifier {
            Some(verifier) => verifier
                .verify(jwt, unix_now())
                .await
                .map_err(|e| IntrospectError::Answer(AnswerError::Unverified(e))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, MapSource};

    fn client(source: MapSource) -> Result<IntrospectionClient, ClientBuildError> {
        let config = Config::from_source(&source).expect("valid configuration");
        IntrospectionClient::new(&config.introspection, Arc::new(Metrics::new()))
    }

    #[test]
    fn verification_without_the_as_keys_after_discovery_refuses_to_start() {
        // ISSUER passes the configuration check, but its metadata named no
        // jwks_uri (discovery left the JWKS URL unset).
        let source = MapSource::minimal("s3cr3t")
            .with("VERIFY_JWT", "true")
            .with("JWT_AUDIENCE", "orders")
            .with("ISSUER", "https://as.example");
        assert!(matches!(
            client(source),
            Err(ClientBuildError::NoJwksToVerify)
        ));
        let source = MapSource::minimal("s3cr3t")
            .with("VERIFY_JWT", "true")
            .with("INTROSPECTION_JWKS_URL", "https://as.example/jwks")
            .with("JWT_AUDIENCE", "orders")
            .with("JWT_ISSUER", "https://as.example");
        let built = client(source).expect("keys and issuer known");
        assert!(built.verifier.is_some());
        let off = client(MapSource::minimal("s3cr3t")).expect("plain");
        assert!(off.verifier.is_none());
    }
}
