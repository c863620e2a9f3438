//! Server nonces (RFC 9449 §8), stateless: a nonce is
//! `base64url(HMAC-SHA256(key, slot))` for a time slot, accepted in its own
//! slot and the next one, so any replica sharing the key accepts it without
//! remembering anything.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct Nonces {
    mac: Hmac<Sha256>,
    slot_seconds: u64,
}

impl Nonces {
    /// `secret` is shared by the fleet (the session-key secret, under its
    /// own label); a nonce lives between one and two `slot_seconds`.
    pub fn new(secret: &[u8], slot_seconds: u64) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"dpop-nonce\0");
        Nonces {
            mac,
            slot_seconds: slot_seconds.max(1),
        }
    }

    /// The MAC of `slot`, ready to finalise or verify.
    fn mac_for(&self, slot: u64) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&slot.to_be_bytes());
        mac
    }

    /// The nonce to hand out at `now` (unix seconds).
    pub fn current(&self, now: u64) -> String {
        let tag = self
            .mac_for(now / self.slot_seconds)
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// Whether `nonce` was handed out in this slot or the one before.
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let slot = now / self.slot_seconds;
        [Some(slot), slot.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|s| self.mac_for(s).verify_slice(&tag).is_ok())
    }
}
