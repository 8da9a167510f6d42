//! The seal key: an Ed25519 key pair that signs checkpoints. Whoever can edit the database
//! but does not hold this key cannot produce a checkpoint the audit accepts.
//!
//! Stored as base64 PKCS#8 text (one line) in a file only zerodrop reads; the public key
//! is base64 of its 32 bytes and is what auditors are given.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why a key could not be made or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the seal key is not base64 PKCS#8 text for an Ed25519 key")]
    Malformed,
    #[error("the system could not generate a key")]
    Generate,
}

pub struct SealKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private half never reaches a log.
        write!(f, "SealKey(public {})", self.public_base64())
    }
}

impl SealKey {
    /// A new key and its file text (base64 PKCS#8).
    pub fn generate() -> Result<(SealKey, String), KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        let text = STANDARD.encode(document.as_ref());
        let key = SealKey::from_text(&text)?;
        Ok((key, text))
    }

    /// Reads the key from its file text (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<SealKey, KeyError> {
        let der = STANDARD.decode(text.trim()).map_err(|_| KeyError::Malformed)?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError::Malformed)?;
        Ok(SealKey { pair })
    }

    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// Base64 of the signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(message).as_ref())
    }
}

/// Whether `signature_b64` is `public_b64`'s signature of `message`. Malformed input is
/// simply not a valid signature.
pub fn verify(public_b64: &str, message: &[u8], signature_b64: &str) -> bool {
    let (Ok(public), Ok(signature)) = (STANDARD.decode(public_b64), STANDARD.decode(signature_b64)) else {
        return false;
    };
    let signature: Vec<u8> = signature;
    UnparsedPublicKey::new(&ED25519, public).verify(message, &signature).is_ok()
}

/// Whether `text` is a well-formed public key (32 bytes of base64).
pub fn is_public_key(text: &str) -> bool {
    STANDARD.decode(text.trim()).is_ok_and(|b| b.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_another_message_or_key() {
        let (key, text) = SealKey::generate().unwrap();
        let again = SealKey::from_text(&format!("  {text}\n")).unwrap();
        assert_eq!(key.public_base64(), again.public_base64());
        let signature = key.sign(b"checkpoint 1");
        assert!(verify(&key.public_base64(), b"checkpoint 1", &signature));
        assert!(!verify(&key.public_base64(), b"checkpoint 2", &signature));
        let (other, _) = SealKey::generate().unwrap();
        assert!(!verify(&other.public_base64(), b"checkpoint 1", &signature));
        assert!(!verify("not base64!", b"checkpoint 1", &signature));
        assert!(is_public_key(&key.public_base64()));
        assert!(!is_public_key("abc"));
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let err = SealKey::from_text("c2VjcmV0LXNlY3JldA==").unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        assert!(format!("{:?}", SealKey::generate().unwrap().0).starts_with("SealKey(public "));
    }
}
