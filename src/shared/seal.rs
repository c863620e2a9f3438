//! What the shared cache writes into Redis, and how it reads it back.
//!
//! Nothing stored is readable without the token it belongs to:
//!
//! - **Key names** carry [`FleetDigest`], an HMAC-SHA256 of the token under a
//!   server secret (`HMAC(secret, "tyk-phantom-token/fleet-key/v1" 0x00 token)`).
//!   Never the token, never a plain hash of it: a plain SHA-256 of a guessed
//!   token could be checked against the key names by anyone reading Redis.
//! - **Values** are sealed with XChaCha20-Poly1305 under a key derived from
//!   the token itself: `HKDF-SHA256(ikm = token, salt = SEAL_SALT,
//!   info = SEAL_INFO)`. The server secret takes no part, so a dump of Redis
//!   together with the plugin's configuration still opens nothing; only a
//!   replica that holds the token (it is presenting it) can open the entry.
//!
//! The sealed format, version 1:
//!
//! ```text
//! 0x01 | nonce (24 random bytes) | ciphertext and tag (16 bytes) of:
//!                                  expires_at (u64, big-endian, unix ms) | payload
//! ```
//!
//! The associated data is the version byte followed by the Redis key the
//! value is stored under, so an entry moved to another key does not open.
//! The expiry travels inside the seal: Redis's own expiry (`PX`) removes the
//! entry, and a reader also refuses one whose sealed expiry has passed, so
//! nobody with write access to Redis can extend an entry's life (`PERSIST`).

use std::fmt;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first byte of every sealed value; a reader refuses any other.
pub const SEAL_VERSION: u8 = 1;
/// HKDF salt for the per-token sealing key (fixed: the key must be derivable
/// from the token alone on every replica).
pub const SEAL_SALT: &[u8] = b"tyk-phantom-token/fleet-cache/v1";
/// HKDF info for the per-token sealing key.
pub const SEAL_INFO: &[u8] = b"entry sealing key";
/// Label mixed into the keyed digest, so the same secret used elsewhere (Tyk
/// session keys) yields unrelated values here.
const DIGEST_LABEL: &[u8] = b"tyk-phantom-token/fleet-key/v1\0";

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const EXPIRY_LEN: usize = 8;
/// The shortest sealed value: version, nonce, expiry and tag.
const MIN_SEALED: usize = 1 + NONCE_LEN + EXPIRY_LEN + TAG_LEN;

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

/// Computes [`FleetDigest`]s under the server secret.
#[derive(Clone)]
pub struct FleetKeys {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetKeys([redacted])")
    }
}

impl FleetKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        FleetKeys { mac }
    }

    /// The keyed digest of `token`.
    pub fn digest(&self, token: &[u8]) -> FleetDigest {
        let mut mac = self.mac.clone();
        mac.update(DIGEST_LABEL);
        mac.update(token);
        FleetDigest(mac.finalize().into_bytes().into())
    }
}

/// Why a sealed value did not open. All of these are misses to the caller;
/// they are told apart only for counting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than any sealed value.
    #[error("sealed value too short")]
    Truncated,
    /// A version this build does not know.
    #[error("unknown sealed format version")]
    UnknownVersion,
    /// The tag did not verify: altered, moved to another key, or sealed for
    /// another token.
    #[error("sealed value does not authenticate")]
    Forged,
}

/// The operating system's random source failed; nothing was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness for a nonce")]
pub struct SealError;

/// An opened entry: the payload and when its writer said it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub payload: Vec<u8>,
    /// Unix time the entry expires, as sealed by its writer.
    pub expires_at: Duration,
}

fn cipher_for(token: &[u8]) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(SEAL_SALT), token).expand(SEAL_INFO, &mut key);
    XChaCha20Poly1305::new(&key.into())
}

fn associated_data(redis_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + redis_key.len());
    aad.push(SEAL_VERSION);
    aad.extend_from_slice(redis_key);
    aad
}

/// Seals `payload` for `token`, to be stored under `redis_key`, ending at
/// `expires_at` (unix time).
///
/// # Errors
///
/// [`SealError`] when no random nonce could be drawn.
pub fn seal(
    token: &[u8],
    redis_key: &[u8],
    payload: &[u8],
    expires_at: Duration,
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError)?;
    let expires_ms = u64::try_from(expires_at.as_millis()).unwrap_or(u64::MAX);
    let mut plain = Vec::with_capacity(EXPIRY_LEN + payload.len());
    plain.extend_from_slice(&expires_ms.to_be_bytes());
    plain.extend_from_slice(payload);
    let aad = associated_data(redis_key);
    let sealed = cipher_for(token)
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

/// Opens a value sealed by [`seal`] for the same token and key.
///
/// # Errors
///
/// [`OpenError`] says why it does not open.
pub fn open(token: &[u8], redis_key: &[u8], sealed: &[u8]) -> Result<Opened, OpenError> {
    if sealed.len() < MIN_SEALED {
        return Err(OpenError::Truncated);
    }
    if sealed[0] != SEAL_VERSION {
        return Err(OpenError::UnknownVersion);
    }
    let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
    let aad = associated_data(redis_key);
    let plain = cipher_for(token)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Forged)?;
    let (expiry, payload) = plain.split_at(EXPIRY_LEN);
    let mut ms = [0u8; EXPIRY_LEN];
    ms.copy_from_slice(expiry);
    Ok(Opened {
        payload: payload.to_vec(),
        expires_at: Duration::from_millis(u64::from_be_bytes(ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"opaque-9f8e7d6c5b4a";
    const KEY: &[u8] = b"fleet:{abc}:v";
    const PAYLOAD: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    const EXP: Duration = Duration::from_millis(1_900_000_000_123);

    #[test]
    fn a_sealed_value_opens_with_the_same_token_and_key() {
        let sealed = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(sealed.len(), MIN_SEALED + PAYLOAD.len());
        let opened = open(TOKEN, KEY, &sealed).unwrap();
        assert_eq!(opened.payload, PAYLOAD);
        assert_eq!(opened.expires_at, EXP);
    }

    #[test]
    fn the_payload_does_not_appear_in_the_sealed_value() {
        let sealed = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        assert!(
            !sealed
                .windows(8)
                .any(|w| PAYLOAD.windows(8).any(|p| p == w))
        );
        assert!(!sealed.windows(TOKEN.len()).any(|w| w == TOKEN));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let a = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        let b = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn any_altered_byte_makes_it_forged() {
        let sealed = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        for at in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert_eq!(open(TOKEN, KEY, &bad), Err(OpenError::Forged), "byte {at}");
        }
    }

    #[test]
    fn another_token_or_key_does_not_open_it() {
        let sealed = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        assert_eq!(open(b"opaque-other", KEY, &sealed), Err(OpenError::Forged));
        assert_eq!(
            open(TOKEN, b"fleet:{abd}:v", &sealed),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn unknown_versions_and_short_values_are_refused() {
        let mut sealed = seal(TOKEN, KEY, PAYLOAD, EXP).unwrap();
        sealed[0] = 2;
        assert_eq!(open(TOKEN, KEY, &sealed), Err(OpenError::UnknownVersion));
        assert_eq!(
            open(TOKEN, KEY, &[SEAL_VERSION; MIN_SEALED - 1]),
            Err(OpenError::Truncated)
        );
        assert_eq!(open(TOKEN, KEY, b""), Err(OpenError::Truncated));
    }

    #[test]
    fn an_empty_payload_round_trips() {
        let sealed = seal(TOKEN, KEY, b"", EXP).unwrap();
        assert_eq!(open(TOKEN, KEY, &sealed).unwrap().payload, b"");
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
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = FleetKeys::new(b"s").digest(TOKEN);
        assert_eq!(FleetDigest::from_hex(d.to_hex().as_bytes()), Some(d));
        assert_eq!(FleetDigest::from_hex(b"zz"), None);
        assert_eq!(FleetDigest::from_hex(&[b'a'; 63]), None);
    }
}
