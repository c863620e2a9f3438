//! What the shared cache writes into Redis, and how it reads it back.
//!
//! Nothing stored is readable, or writable, without both the token it
//! belongs to and the server secret (`REDIS_KEY_SECRET`):
//!
//! - **Key names** carry [`FleetDigest`], an HMAC-SHA256 of the token under
//!   the server secret (`HMAC(secret, "tyk-phantom-token/fleet-key/v1" 0x00
//!   token)`). Never the token, never a plain hash of it: a plain SHA-256 of
//!   a guessed token could be checked against the key names by anyone
//!   reading Redis.
//! - **Values** are sealed with XChaCha20-Poly1305 under a key derived from
//!   the token *and* the secret: `HKDF-SHA256(ikm = token, salt =
//!   HMAC(secret, SEAL_SALT_LABEL), info = SEAL_INFO)`. The token alone does
//!   not give the key, so someone who can write to Redis cannot seal an
//!   answer of their choosing for a token they picked (send it once, find
//!   its entry, re-seal it as active: what format 1, keyed by the token
//!   alone, allowed). The secret alone does not give it either, so a dump of
//!   Redis together with the plugin's configuration still opens nothing
//!   without the token.
//!
//! The sealed format, version 2:
//!
//! ```text
//! 0x02 | nonce (24 random bytes) | ciphertext and tag (16 bytes) of:
//!        introspected_at | expires_at (u64 each, big-endian, unix µs) | payload
//! ```
//!
//! The associated data is the version byte followed by the Redis key the
//! value is stored under, so an entry moved to another key does not open.
//! The expiry travels inside the seal: Redis's own expiry (`PX`) removes the
//! entry, and a reader also refuses one whose sealed expiry has passed, so
//! nobody with write access to Redis can extend an entry's life (`PERSIST`).
//! The introspection time travels inside too, so an entry keeps its age on
//! every replica and one older than the last purge of its token is refused
//! (see [`super::SharedCache::purge`]). Times are kept in microseconds: a
//! purge and the write that follows it on the same replica (a revalidation
//! that found the token revoked) are then always in that order, where
//! milliseconds could tie.
//!
//! Format 1 values are refused ([`OpenError::UnknownVersion`]): a miss.

use std::fmt;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first byte of every sealed value; a reader refuses any other.
pub const SEAL_VERSION: u8 = 2;
/// Label of the HMAC, under the server secret, that makes the HKDF salt of
/// the sealing keys: the secret takes part in every key.
pub const SEAL_SALT_LABEL: &[u8] = b"tyk-phantom-token/fleet-seal-salt/v2";
/// HKDF info for the per-token sealing key.
pub const SEAL_INFO: &[u8] = b"tyk-phantom-token/fleet-entry-key/v2";
/// Label mixed into the keyed digest, so the same secret used elsewhere (Tyk
/// session keys) yields unrelated values here.
const DIGEST_LABEL: &[u8] = b"tyk-phantom-token/fleet-key/v1\0";
/// The largest value read from Redis: 1 MiB. Anything longer is refused
/// unopened (counted as tampered), so a value planted in Redis costs no
/// decryption and no copy of more than this. Answers are far smaller (a
/// JWT of a few KiB; `MAX_JWT_BYTES` is 64 KiB by default), and one whose
/// sealed form would pass this is not stored.
pub const MAX_SEALED_BYTES: usize = 1 << 20;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const STAMP_LEN: usize = 8;
/// The shortest sealed value: version, nonce, the two times and the tag.
pub const MIN_SEALED: usize = 1 + NONCE_LEN + 2 * STAMP_LEN + TAG_LEN;
/// What sealing adds to a payload.
pub const SEAL_OVERHEAD: usize = MIN_SEALED;

/// The keyed digest of a token: what names its entry in Redis and what a
/// purge announces to the fleet. Not the token, and useless without the
/// server secret; `Debug` still shows none of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FleetDigest(pub [u8; 32]);

impl FleetDigest {
    /// Lowercase hex, as it appears in key names and purge messages.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form (purge messages); `None` unless exactly 64 hex
    /// digits.
    pub fn from_hex(text: &[u8]) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(FleetDigest(out))
    }
}

impl fmt::Debug for FleetDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetDigest(..)")
    }
}

/// What the server secret gives: the keyed digests naming entries, and the
/// salt every sealing key is derived with. Both values are one-way
/// functions of the secret under their own labels.
#[derive(Clone)]
pub struct FleetKeys {
    mac: Hmac<Sha256>,
    seal_salt: [u8; 32],
}

impl fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetKeys([redacted])")
    }
}

/// Why a sealed value did not open. All of these are misses to the caller;
/// they are told apart only for counting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than any sealed value.
    #[error("sealed value too short")]
    Truncated,
    /// Longer than [`MAX_SEALED_BYTES`]: refused before any decryption.
    #[error("sealed value too long")]
    TooLong,
    /// A version this build does not know (format 1 among them).
    #[error("unknown sealed format version")]
    UnknownVersion,
    /// The tag did not verify: altered, moved to another key, sealed for
    /// another token, or under another secret.
    #[error("sealed value does not authenticate")]
    Forged,
}

/// The operating system's random source failed; nothing was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness for a nonce")]
pub struct SealError;

/// An opened entry: the payload, when it was introspected and when its
/// writer said it ends.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    pub payload: Vec<u8>,
    /// Unix time the answer's introspection started, as sealed by its
    /// writer (microseconds).
    pub introspected_at: Duration,
    /// Unix time the entry expires, as sealed by its writer (microseconds).
    pub expires_at: Duration,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is a JWT: never in a log line or a panic message.
        f.debug_struct("Opened")
            .field("payload_len", &self.payload.len())
            .field("introspected_at", &self.introspected_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn associated_data(redis_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + redis_key.len());
    aad.push(SEAL_VERSION);
    aad.extend_from_slice(redis_key);
    aad
}

fn stamp(bytes: &[u8]) -> u64 {
    let mut out = [0u8; STAMP_LEN];
    out.copy_from_slice(bytes);
    u64::from_be_bytes(out)
}

impl FleetKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let mut salt = mac.clone();
        salt.update(SEAL_SALT_LABEL);
        FleetKeys {
            mac,
            seal_salt: salt.finalize().into_bytes().into(),
        }
    }

    /// The keyed digest of `token`.
    pub fn digest(&self, token: &[u8]) -> FleetDigest {
        let mut mac = self.mac.clone();
        mac.update(DIGEST_LABEL);
        mac.update(token);
        FleetDigest(mac.finalize().into_bytes().into())
    }

    /// The AEAD for `token`'s entry: keyed by the token and the secret.
    fn cipher_for(&self, token: &[u8]) -> XChaCha20Poly1305 {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(&self.seal_salt), token).expand(SEAL_INFO, &mut key);
        XChaCha20Poly1305::new(&key.into())
    }

    /// Seals `payload` for `token`, to be stored under `redis_key`:
    /// introspected at `introspected_at`, ending at `expires_at` (both unix
    /// time).
    ///
    /// # Errors
    ///
    /// [`SealError`] when no random nonce could be drawn.
    pub fn seal(
        &self,
        token: &[u8],
        redis_key: &[u8],
        payload: &[u8],
        introspected_at: Duration,
        expires_at: Duration,
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError)?;
        let mut plain = Vec::with_capacity(2 * STAMP_LEN + payload.len());
        plain.extend_from_slice(&micros(introspected_at).to_be_bytes());
        plain.extend_from_slice(&micros(expires_at).to_be_bytes());
        plain.extend_from_slice(payload);
        let aad = associated_data(redis_key);
        let sealed = self
            .cipher_for(token)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            // Only fails for inputs beyond 2^38 bytes.
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed by [`FleetKeys::seal`] for the same token, key
    /// and secret. The length is checked before anything else.
    ///
    /// # Errors
    ///
    /// [`OpenError`] says why it does not open.
    pub fn open(&self, token: &[u8], redis_key: &[u8], sealed: &[u8]) -> Result<Opened, OpenError> {
        if sealed.len() > MAX_SEALED_BYTES {
            return Err(OpenError::TooLong);
        }
        if sealed.len() < MIN_SEALED {
            return Err(OpenError::Truncated);
        }
        if sealed[0] != SEAL_VERSION {
            return Err(OpenError::UnknownVersion);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let aad = associated_data(redis_key);
        let plain = self
            .cipher_for(token)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Forged)?;
        let (introspected, rest) = plain.split_at(STAMP_LEN);
        let (expiry, payload) = rest.split_at(STAMP_LEN);
        Ok(Opened {
            payload: payload.to_vec(),
            introspected_at: Duration::from_micros(stamp(introspected)),
            expires_at: Duration::from_micros(stamp(expiry)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"fleet-secret";
    const TOKEN: &[u8] = b"opaque-9f8e7d6c5b4a";
    const KEY: &[u8] = b"fleet:{abc}:v";
    const PAYLOAD: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    const AT: Duration = Duration::from_micros(1_899_999_400_123_456);
    const EXP: Duration = Duration::from_micros(1_900_000_000_123_456);

    fn keys() -> FleetKeys {
        FleetKeys::new(SECRET)
    }

    fn sealed() -> Vec<u8> {
        keys().seal(TOKEN, KEY, PAYLOAD, AT, EXP).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_token_key_and_secret() {
        let sealed = sealed();
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(sealed.len(), SEAL_OVERHEAD + PAYLOAD.len());
        let opened = keys().open(TOKEN, KEY, &sealed).unwrap();
        assert_eq!(opened.payload, PAYLOAD);
        assert_eq!(opened.introspected_at, AT);
        assert_eq!(opened.expires_at, EXP);
        let shown = format!("{opened:?}");
        assert!(
            !shown.contains("eyJ") && shown.contains("payload_len"),
            "{shown}"
        );
    }

    #[test]
    fn the_payload_does_not_appear_in_the_sealed_value() {
        let sealed = sealed();
        assert!(
            !sealed
                .windows(8)
                .any(|w| PAYLOAD.windows(8).any(|p| p == w))
        );
        assert!(!sealed.windows(TOKEN.len()).any(|w| w == TOKEN));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let (a, b) = (sealed(), sealed());
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn any_altered_byte_makes_it_forged() {
        let sealed = sealed();
        for at in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                keys().open(TOKEN, KEY, &bad),
                Err(OpenError::Forged),
                "byte {at}"
            );
        }
    }

    #[test]
    fn neither_the_token_nor_the_secret_alone_opens_it() {
        let sealed = sealed();
        let open = |secret: &[u8], token: &[u8], key: &[u8]| {
            FleetKeys::new(secret).open(token, key, &sealed)
        };
        assert!(open(SECRET, TOKEN, KEY).is_ok());
        // The secret without the token.
        assert_eq!(open(SECRET, b"opaque-other", KEY), Err(OpenError::Forged));
        assert_eq!(open(SECRET, b"", KEY), Err(OpenError::Forged));
        // The token without the secret.
        assert_eq!(open(b"", TOKEN, KEY), Err(OpenError::Forged));
        assert_eq!(open(b"another-secret", TOKEN, KEY), Err(OpenError::Forged));
        // Moved to another key.
        assert_eq!(
            open(SECRET, TOKEN, b"fleet:{abd}:v"),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn the_token_alone_cannot_seal_what_opens() {
        // What format 1 did, under this format's version byte: the key
        // from the token and a fixed salt.
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"tyk-phantom-token/fleet-cache/v1"), TOKEN)
            .expand(SEAL_INFO, &mut key)
            .unwrap();
        let mut plain = micros(AT).to_be_bytes().to_vec();
        plain.extend_from_slice(&micros(EXP).to_be_bytes());
        plain.extend_from_slice(PAYLOAD);
        let nonce = [9u8; NONCE_LEN];
        let body = XChaCha20Poly1305::new(&key.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &associated_data(KEY),
                },
            )
            .unwrap();
        let forged = [&[SEAL_VERSION][..], &nonce, &body].concat();
        assert_eq!(keys().open(TOKEN, KEY, &forged), Err(OpenError::Forged));
    }

    #[test]
    fn unknown_versions_and_short_or_long_values_are_refused() {
        let mut sealed = sealed();
        sealed[0] = 1;
        assert_eq!(
            keys().open(TOKEN, KEY, &sealed),
            Err(OpenError::UnknownVersion)
        );
        assert_eq!(
            keys().open(TOKEN, KEY, &[SEAL_VERSION; MIN_SEALED - 1]),
            Err(OpenError::Truncated)
        );
        assert_eq!(keys().open(TOKEN, KEY, b""), Err(OpenError::Truncated));
        // A value that would open is refused unopened past the cap.
        let big = vec![b'x'; MAX_SEALED_BYTES - SEAL_OVERHEAD + 1];
        let too_long = keys().seal(TOKEN, KEY, &big, AT, EXP).unwrap();
        assert_eq!(too_long.len(), MAX_SEALED_BYTES + 1);
        assert_eq!(keys().open(TOKEN, KEY, &too_long), Err(OpenError::TooLong));
        let fits = keys().seal(TOKEN, KEY, &big[1..], AT, EXP).unwrap();
        assert!(keys().open(TOKEN, KEY, &fits).is_ok());
    }

    #[test]
    fn an_empty_payload_round_trips() {
        let sealed = keys().seal(TOKEN, KEY, b"", AT, EXP).unwrap();
        assert_eq!(keys().open(TOKEN, KEY, &sealed).unwrap().payload, b"");
    }

    #[test]
    fn the_fleet_digest_is_keyed_and_not_a_plain_hash() {
        use sha2::Digest;
        let a = FleetKeys::new(b"secret-a").digest(TOKEN);
        let b = FleetKeys::new(b"secret-b").digest(TOKEN);
        assert_ne!(a, b);
        assert_eq!(a, FleetKeys::new(b"secret-a").digest(TOKEN));
        let plain: [u8; 32] = Sha256::digest(TOKEN).into();
        assert_ne!(a.0, plain);
        assert_eq!(format!("{a:?}"), "FleetDigest(..)");
        // The seal salt is another function of the secret than the digest.
        assert_ne!(FleetKeys::new(b"secret-a").seal_salt, a.0);
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = FleetKeys::new(b"s").digest(TOKEN);
        assert_eq!(FleetDigest::from_hex(d.to_hex().as_bytes()), Some(d));
        assert_eq!(FleetDigest::from_hex(b"zz"), None);
        assert_eq!(FleetDigest::from_hex(&[b'a'; 63]), None);
    }
}
