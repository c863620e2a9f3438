//! The one list of the variables the service reads. Each entry makes an
//! `ENV_*` constant and a place in [`ALL_VARIABLES`], so the two cannot
//! disagree; `.env.example` and the README's table are checked against
//! [`ALL_VARIABLES`] by a test.

/// Declares each `ENV_*` constant with its doc line, [`ALL_VARIABLES`] in the
/// order given, and the constants' own names beside their values (a test
/// checks that `ENV_X` is `"X"`).
macro_rules! variables {
    ($( $(#[doc = $doc:literal])+ $constant:ident = $name:literal; )+) => {
        $( $(#[doc = $doc])+ pub const $constant: &str = $name; )+

        /// Every variable the service reads (documented in `.env.example`
        /// and the README; a test keeps them in step).
        pub const ALL_VARIABLES: &[&str] = &[$($constant),+];

        /// `(constant name, variable)` for every entry.
        #[cfg(test)]
        pub(super) const DECLARED: &[(&str, &str)] = &[$((stringify!($constant), $constant)),+];
    };
}

variables! {
    // The authorization server and how to reach it.
    /// The introspection endpoint (required).
    ENV_INTROSPECTION_URL = "INTROSPECTION_URL";
    /// The client with the introspection capability (required).
    ENV_CLIENT_ID = "CLIENT_ID";
    /// Its secret (or [`ENV_CLIENT_SECRET_FILE`], not both).
    ENV_CLIENT_SECRET = "CLIENT_SECRET";
    /// A file holding the client secret (container secrets).
    ENV_CLIENT_SECRET_FILE = "CLIENT_SECRET_FILE";
    /// PEM with extra CA certificates for the AS.
    ENV_INTROSPECTION_CA_FILE = "INTROSPECTION_CA_FILE";
    /// Client certificate chain (PEM) for mutual TLS to the AS.
    ENV_INTROSPECTION_CLIENT_CERT_FILE = "INTROSPECTION_CLIENT_CERT_FILE";
    /// Its private key (PEM); set both or neither.
    ENV_INTROSPECTION_CLIENT_KEY_FILE = "INTROSPECTION_CLIENT_KEY_FILE";
    /// Accept a plain `http://` introspection URL.
    ENV_INTROSPECTION_ALLOW_HTTP = "INTROSPECTION_ALLOW_HTTP";
    /// The proxy for introspection requests (none otherwise).
    ENV_INTROSPECTION_PROXY = "INTROSPECTION_PROXY";
    // Other authorization servers: answers, minting, discovery, client authentication.
    /// The AS's issuer: its endpoints and keys come from discovery (RFC 8414, then OpenID).
    ENV_ISSUER = "ISSUER";
    /// The `Accept` of introspection requests: `application/jwt` (default), `application/json` or `application/token-introspection+jwt`.
    ENV_INTROSPECTION_ACCEPT = "INTROSPECTION_ACCEPT";
    /// The member of a JSON answer that holds a ready JWT to forward.
    ENV_INTROSPECTION_JWT_FIELD = "INTROSPECTION_JWT_FIELD";
    /// The AS's JWKS, for signed (RFC 9701) answers.
    ENV_INTROSPECTION_JWKS_URL = "INTROSPECTION_JWKS_URL";
    /// Algorithms accepted on signed answers (asymmetric only).
    ENV_INTROSPECTION_SIGNING_ALGS = "INTROSPECTION_SIGNING_ALGS";
    /// Verify the AS's JWTs (signature, `iss`, `aud`, `exp`/`nbf`) before forwarding them.
    ENV_VERIFY_JWT = "VERIFY_JWT";
    /// Algorithms accepted on the AS's JWTs (asymmetric only).
    ENV_JWT_SIGNING_ALGS = "JWT_SIGNING_ALGS";
    /// The `iss` the AS's JWTs must carry (default: [`ENV_ISSUER`]).
    ENV_JWT_ISSUER = "JWT_ISSUER";
    /// An `aud` the AS's JWTs must contain (required with [`ENV_VERIFY_JWT`]; `*` waives the check).
    ENV_JWT_AUDIENCE = "JWT_AUDIENCE";
    /// The JOSE `typ` values accepted on the AS's JWTs (default `at+jwt`; `*` accepts any).
    ENV_JWT_TYP = "JWT_TYP";
    /// PEM with the keys minted JWTs are signed with (the first signs, all are published).
    ENV_SIGNING_KEY_FILE = "SIGNING_KEY_FILE";
    /// The `iss` of minted JWTs.
    ENV_MINTED_ISSUER = "MINTED_ISSUER";
    /// The `aud` of minted JWTs (required with [`ENV_SIGNING_KEY_FILE`]).
    ENV_MINTED_AUDIENCE = "MINTED_AUDIENCE";
    /// Claims copied from the answer into minted JWTs.
    ENV_MINTED_CLAIMS = "MINTED_CLAIMS";
    /// The longest life of a minted JWT (never past the token's).
    ENV_MINTED_MAX_LIFETIME_SECONDS = "MINTED_MAX_LIFETIME_SECONDS";
    /// The answer member naming the resource owner when there is no `sub` (default `username`).
    ENV_RESOURCE_OWNER_CLAIM = "RESOURCE_OWNER_CLAIM";
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    ENV_CLIENT_AUTH_METHOD = "CLIENT_AUTH_METHOD";
    /// PEM key that signs `private_key_jwt` assertions.
    ENV_CLIENT_ASSERTION_KEY_FILE = "CLIENT_ASSERTION_KEY_FILE";
    /// Introspections in flight at once.
    ENV_MAX_INFLIGHT_INTROSPECTIONS = "MAX_INFLIGHT_INTROSPECTIONS";
    /// How long a miss waits for an introspection slot.
    ENV_INFLIGHT_WAIT_SECONDS = "INFLIGHT_WAIT_SECONDS";
    /// Consecutive failures that open the breaker.
    ENV_BREAKER_FAILURES = "BREAKER_FAILURES";
    /// How long the breaker stays open.
    ENV_BREAKER_OPEN_SECONDS = "BREAKER_OPEN_SECONDS";
    /// Age after which a cached token is re-introspected in the background.
    ENV_REVALIDATE_AFTER_SECONDS = "REVALIDATE_AFTER_SECONDS";
    /// Check the AS's answer format once after start-up (one introspection of a random token).
    ENV_STARTUP_PROBE = "STARTUP_PROBE";
    // Listening and limits.
    /// The admin endpoint's address (off when unset).
    ENV_ADMIN_ADDR = "ADMIN_ADDR";
    /// The bearer secret the admin endpoint's write routes require.
    ENV_ADMIN_TOKEN = "ADMIN_TOKEN";
    /// A file holding it (container secrets), instead of [`ENV_ADMIN_TOKEN`].
    ENV_ADMIN_TOKEN_FILE = "ADMIN_TOKEN_FILE";
    /// An address that serves only the minted JWTs' JWKS (and `/livez`), for APIs.
    ENV_JWKS_ADDR = "JWKS_ADDR";
    /// The port on all interfaces (Curity's variable).
    ENV_PORT = "PORT";
    /// The listen address, instead of [`ENV_PORT`]; may be a Unix socket.
    ENV_LISTEN_ADDR = "LISTEN_ADDR";
    /// The time budget of one introspection.
    ENV_TIMEOUT_SECONDS = "TIMEOUT_SECONDS";
    /// The longest bearer token accepted.
    ENV_MAX_TOKEN_BYTES = "MAX_TOKEN_BYTES";
    /// The largest JWT accepted from the AS.
    ENV_MAX_JWT_BYTES = "MAX_JWT_BYTES";
    // The token cache.
    /// The memory bound of the token cache.
    ENV_CACHE_MAX_BYTES = "CACHE_MAX_BYTES";
    /// The entry bound of the token cache (`0`: none).
    ENV_CACHE_MAX_ENTRIES = "CACHE_MAX_ENTRIES";
    /// Accepted for compatibility with Curity's plugin; no effect.
    ENV_CACHE_JANITOR_SECONDS = "CACHE_JANITOR_SECONDS";
    /// A cap on any cache entry's life.
    ENV_CACHE_MAX_TTL_SECONDS = "CACHE_MAX_TTL_SECONDS";
    /// The cache life of a JWT without `exp`.
    ENV_CACHE_DEFAULT_TTL_SECONDS = "CACHE_DEFAULT_TTL_SECONDS";
    /// How long an inactive answer is remembered.
    ENV_NEGATIVE_CACHE_SECONDS = "NEGATIVE_CACHE_SECONDS";
    /// Let the AS's `Cache-Control: no-store` keep answers out of the cache.
    ENV_HONOR_CACHE_CONTROL_NO_STORE = "HONOR_CACHE_CONTROL_NO_STORE";
    /// Clock tolerance: a token is refused this long before its `exp` (from the cache, without asking the AS).
    ENV_CLOCK_SKEW_SECONDS = "CLOCK_SKEW_SECONDS";
    // Denials.
    /// The `realm` of the `WWW-Authenticate` challenge.
    ENV_REALM = "REALM";
    /// `Retry-After` on 503 answers.
    ENV_RETRY_AFTER_SECONDS = "RETRY_AFTER_SECONDS";
    // DPoP proofs (RFC 9449).
    /// Algorithms accepted on DPoP proofs (asymmetric only).
    ENV_DPOP_SIGNING_ALGS = "DPOP_SIGNING_ALGS";
    /// How old a proof's `iat` may be; its `jti` is remembered until then.
    ENV_DPOP_IAT_WINDOW_SECONDS = "DPOP_IAT_WINDOW_SECONDS";
    /// Proofs each replica remembers for the replay check; when full, 503.
    ENV_DPOP_REPLAY_CAPACITY = "DPOP_REPLAY_CAPACITY";
    /// Require a server nonce in every proof.
    ENV_DPOP_NONCE = "DPOP_NONCE";
    /// Forward the `DPoP` header upstream instead of removing it.
    ENV_DPOP_FORWARD_PROOF = "DPOP_FORWARD_PROOF";
    /// Accept tokens bound in a way the plugin cannot check (mTLS `x5t#S256`, ...) as unbound.
    ENV_ALLOW_UNCHECKED_BINDINGS = "ALLOW_UNCHECKED_BINDINGS";
    /// The external URL proofs' `htu` names, for APIs without `dpop_base_url`.
    ENV_DPOP_BASE_URL = "DPOP_BASE_URL";
    // The Tyk session.
    /// Session rate limit: requests per period.
    ENV_SESSION_RATE = "SESSION_RATE";
    /// Session rate limit: the period.
    ENV_SESSION_RATE_PER_SECONDS = "SESSION_RATE_PER_SECONDS";
    /// Session quota: requests per renewal.
    ENV_SESSION_QUOTA_MAX = "SESSION_QUOTA_MAX";
    /// Session quota: the renewal period.
    ENV_SESSION_QUOTA_RENEWAL_SECONDS = "SESSION_QUOTA_RENEWAL_SECONDS";
    /// How long Tyk keeps a session past the token's expiry.
    ENV_SESSION_LIFETIME_GRACE_SECONDS = "SESSION_LIFETIME_GRACE_SECONDS";
    /// The HMAC key deriving Tyk's session keys.
    ENV_SESSION_KEY_SECRET = "SESSION_KEY_SECRET";
    // Identity rules.
    /// Key Tyk sessions by this claim instead of by token.
    ENV_SESSION_KEY_CLAIM = "SESSION_KEY_CLAIM";
    /// The claim whose values name Tyk policies.
    ENV_POLICY_CLAIM = "POLICY_CLAIM";
    /// Claim value → Tyk policy IDs (JSON).
    ENV_POLICY_MAP = "POLICY_MAP";
    /// Tyk policy IDs applied to every session.
    ENV_APPLY_POLICIES = "APPLY_POLICIES";
    /// Claims copied into session metadata.
    ENV_METADATA_CLAIMS = "METADATA_CLAIMS";
    /// Put the JWT in session metadata.
    ENV_JWT_IN_METADATA = "JWT_IN_METADATA";
    /// Claims whose string values are comma-separated lists.
    ENV_COMMA_SEPARATED_CLAIMS = "COMMA_SEPARATED_CLAIMS";
    /// The claim that becomes the session's analytics alias.
    ENV_ANALYTICS_ALIAS_CLAIM = "ANALYTICS_ALIAS_CLAIM";
    /// Claims that become the session's analytics tags.
    ENV_ANALYTICS_TAG_CLAIMS = "ANALYTICS_TAG_CLAIMS";
    // The gRPC server and logs.
    /// The largest gRPC message either way.
    ENV_GRPC_MAX_MESSAGE_BYTES = "GRPC_MAX_MESSAGE_BYTES";
    /// How long in-flight calls may finish after a shutdown signal.
    ENV_SHUTDOWN_GRACE_SECONDS = "SHUTDOWN_GRACE_SECONDS";
    // The fleet's shared cache.
    /// The fleet's shared cache in Redis (`redis://`, `rediss://`, `+sentinel`, `+cluster` forms); off when unset.
    ENV_REDIS_URL = "REDIS_URL";
    /// Prefix of every key the plugin writes in Redis.
    ENV_REDIS_KEY_PREFIX = "REDIS_KEY_PREFIX";
    /// Key of the keyed digests that name entries in Redis (default: `SESSION_KEY_SECRET`).
    ENV_REDIS_KEY_SECRET = "REDIS_KEY_SECRET";
    /// PEM with CA certificates for `rediss://`.
    ENV_REDIS_TLS_CA_FILE = "REDIS_TLS_CA_FILE";
    /// Client certificate (PEM) for `rediss://`.
    ENV_REDIS_TLS_CERT_FILE = "REDIS_TLS_CERT_FILE";
    /// Its private key (PEM).
    ENV_REDIS_TLS_KEY_FILE = "REDIS_TLS_KEY_FILE";
    /// User name for the Sentinels.
    ENV_REDIS_SENTINEL_USERNAME = "REDIS_SENTINEL_USERNAME";
    /// Password for the Sentinels.
    ENV_REDIS_SENTINEL_PASSWORD = "REDIS_SENTINEL_PASSWORD";
    /// Bound on every Redis call, in milliseconds.
    ENV_REDIS_TIMEOUT_MS = "REDIS_TIMEOUT_MS";
    /// How long a replica waits for another replica's introspection, in milliseconds.
    ENV_REDIS_LOCK_WAIT_MS = "REDIS_LOCK_WAIT_MS";
    /// `text` or `json`.
    ENV_LOG_FORMAT = "LOG_FORMAT";
    /// A level or filter directives.
    ENV_LOG_LEVEL = "LOG_LEVEL";
}
