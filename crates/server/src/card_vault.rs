//! Card codes at rest: AES-256-GCM with a key from configuration, and a keyed fingerprint
//! (HMAC-SHA256) that detects duplicates without keeping any code in clear.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zerodrop_domain::Secret;

/// Longest card code accepted, in bytes.
pub const CODE_BYTES_MAX: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("card_keys.encryption_key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("a card code could not be sealed")]
    Seal,
    #[error("a stored card code could not be opened (wrong key, or tampered)")]
    Open,
    #[error("the system's random source failed")]
    Random,
}

pub struct Vault {
    aead: LessSafeKey,
    fingerprint: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault([redacted])")
    }
}

impl Vault {
    pub fn from_config(key: &Secret<String>) -> Result<Vault, VaultError> {
        let bytes = STANDARD.decode(key.expose().trim()).map_err(|_| VaultError::BadKey)?;
        if bytes.len() != 32 {
            return Err(VaultError::BadKey);
        }
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| VaultError::BadKey)?);
        // A separate key for fingerprints, derived so one secret configures both.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        let fingerprint_key = hmac::sign(&derive, b"zerodrop card key fingerprint");
        let fingerprint = hmac::Key::new(hmac::HMAC_SHA256, fingerprint_key.as_ref());
        Ok(Vault { aead, fingerprint, rng: SystemRandom::new() })
    }

    /// A fresh key, base64, for configuration (`zerodrop admin new-key`, and tests). Fails
    /// rather than ever returning a key the system's random source did not fill.
    pub fn generate_key() -> Result<String, VaultError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| VaultError::Random)?;
        Ok(STANDARD.encode(bytes))
    }

    /// nonce ‖ ciphertext ‖ tag. The SKU is authenticated too: a code cannot be moved to
    /// another product's stock.
    pub fn seal(&self, sku: &str, code: &str) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| VaultError::Seal)?;
        let mut data = code.as_bytes().to_vec();
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(sku.as_bytes()), &mut data)
            .map_err(|_| VaultError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(out)
    }

    pub fn open(&self, sku: &str, sealed: &[u8]) -> Result<Secret<String>, VaultError> {
        if sealed.len() < NONCE_LEN {
            return Err(VaultError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Open)?;
        let mut data = body.to_vec();
        let plain =
            self.aead.open_in_place(nonce, Aad::from(sku.as_bytes()), &mut data).map_err(|_| VaultError::Open)?;
        String::from_utf8(plain.to_vec()).map(Secret::new).map_err(|_| VaultError::Open)
    }

    pub fn fingerprint(&self, sku: &str, code: &str) -> String {
        let mut message = sku.as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(code.as_bytes());
        hex::encode(hmac::sign(&self.fingerprint, &message).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_bound_to_their_sku() {
        let vault = Vault::from_config(&Secret::new(Vault::generate_key().unwrap())).unwrap();
        let sealed = vault.seal("game_card_50", "ABCD-1234").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"ABCD-1234"), "never stored in clear");
        assert_eq!(vault.open("game_card_50", &sealed).unwrap().expose(), "ABCD-1234");
        assert_eq!(vault.open("other_sku", &sealed).unwrap_err(), VaultError::Open);
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert_eq!(vault.open("game_card_50", &tampered).unwrap_err(), VaultError::Open);
        assert_eq!(vault.fingerprint("s", "c"), vault.fingerprint("s", "c"));
        assert_ne!(vault.fingerprint("s", "c"), vault.fingerprint("s2", "c"));
        assert_eq!(Vault::from_config(&Secret::new("c2hvcnQ=".into())).unwrap_err(), VaultError::BadKey);
    }
}
