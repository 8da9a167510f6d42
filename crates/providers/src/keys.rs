//! RSA keys from PEM or from the bare base64 that providers' consoles show.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicEncryptingKey};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0} is not valid PEM or base64")]
    Encoding(&'static str),
    #[error("{0} is not an RSA key of 2048 bits or more")]
    NotRsa(&'static str),
    #[error("signing failed")]
    Sign,
}

/// Decodes PEM (any label) or bare base64 (line breaks allowed) into DER, with its label.
fn decode(text: &str, what: &'static str) -> Result<(Option<String>, Vec<u8>), KeyError> {
    let text = text.trim();
    let mut label = None;
    let mut body = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            label = Some(rest.trim_end_matches('-').to_owned());
        } else if line.starts_with("-----END ") {
            break;
        } else {
            body.push_str(line);
        }
    }
    let der = STANDARD.decode(body.as_bytes()).map_err(|_| KeyError::Encoding(what))?;
    if der.is_empty() {
        return Err(KeyError::Encoding(what));
    }
    Ok((label, der))
}

/// A private key that signs with SHA256withRSA (PKCS#1 v1.5). Never printed.
pub struct RsaPrivateKey {
    pair: KeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaPrivateKey([redacted])")
    }
}

impl RsaPrivateKey {
    /// Accepts PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`), as PEM or bare base64.
    pub fn parse(text: &str, what: &'static str) -> Result<RsaPrivateKey, KeyError> {
        let (label, der) = decode(text, what)?;
        let pair = match label.as_deref() {
            Some("RSA PRIVATE KEY") => KeyPair::from_der(&der),
            Some(_) => KeyPair::from_pkcs8(&der),
            None => KeyPair::from_pkcs8(&der).or_else(|_| KeyPair::from_der(&der)),
        }
        .map_err(|_| KeyError::NotRsa(what))?;
        Ok(RsaPrivateKey { pair, rng: SystemRandom::new() })
    }

    /// A fresh 2048-bit key, for the sandbox provider and tests.
    pub fn generate() -> Result<RsaPrivateKey, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Sign)?;
        Ok(RsaPrivateKey { pair, rng: SystemRandom::new() })
    }

    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut signature).map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }

    pub fn sign_sha256_base64(&self, message: &[u8]) -> Result<String, KeyError> {
        Ok(STANDARD.encode(self.sign_sha256(message)?))
    }

    pub fn public_key(&self) -> RsaPublicKey {
        let der = AsDer::<PublicKeyX509Der>::as_der(signature::KeyPair::public_key(&self.pair))
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_default();
        RsaPublicKey { spki_der: der }
    }

    /// PKCS#8 PEM, to hand a generated key to another process (the sandbox's keys).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let der = AsDer::<Pkcs8V1Der>::as_der(&self.pair).map_err(|_| KeyError::Sign)?;
        Ok(pem("PRIVATE KEY", der.as_ref()))
    }
}

/// A public key that verifies SHA256withRSA signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// SubjectPublicKeyInfo DER.
    spki_der: Vec<u8>,
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bytes)", self.spki_der.len())
    }
}

impl RsaPublicKey {
    /// Accepts SubjectPublicKeyInfo (`PUBLIC KEY`, what Alipay's console shows as bare
    /// base64) or PKCS#1 (`RSA PUBLIC KEY`).
    pub fn parse(text: &str, what: &'static str) -> Result<RsaPublicKey, KeyError> {
        let (label, der) = decode(text, what)?;
        let spki_der = match label.as_deref() {
            Some("RSA PUBLIC KEY") => wrap_pkcs1_in_spki(&der),
            Some(_) | None => der,
        };
        let key = PublicEncryptingKey::from_der(&spki_der).map_err(|_| KeyError::NotRsa(what))?;
        if key.key_size_bits() < 2048 {
            return Err(KeyError::NotRsa(what));
        }
        Ok(RsaPublicKey { spki_der })
    }

    /// Constant-time verification (aws-lc) of a base64 signature. Any malformed input
    /// is simply "not valid".
    pub fn verify_sha256_base64(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(signature) = STANDARD.decode(signature_b64.trim().as_bytes()) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.spki_der)
            .verify(message, &signature)
            .is_ok()
    }

    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der)
    }

    /// The bare base64 form, as providers' consoles show it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.spki_der)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DER-wraps a PKCS#1 RSAPublicKey as SubjectPublicKeyInfo with the rsaEncryption algorithm.
fn wrap_pkcs1_in_spki(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: [u8; 15] =
        [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = RSA_ALGORITHM.to_vec();
    inner.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &inner)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_base64() {
        let key = RsaPrivateKey::generate().unwrap();
        let signature = key.sign_sha256_base64(b"message").unwrap();
        let public = key.public_key();
        assert!(public.verify_sha256_base64(b"message", &signature));
        assert!(!public.verify_sha256_base64(b"messagf", &signature));
        assert!(!public.verify_sha256_base64(b"message", "not base64!"));
        let again = RsaPublicKey::parse(&public.to_pem(), "key").unwrap();
        assert_eq!(again, RsaPublicKey::parse(&public.to_base64(), "key").unwrap());
        let private_again = RsaPrivateKey::parse(&key.to_pkcs8_pem().unwrap(), "key").unwrap();
        assert!(public.verify_sha256_base64(b"m", &private_again.sign_sha256_base64(b"m").unwrap()));
        assert_eq!(format!("{key:?}"), "RsaPrivateKey([redacted])");
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert_eq!(RsaPublicKey::parse("", "k").unwrap_err(), KeyError::Encoding("k"));
        assert_eq!(RsaPublicKey::parse("aGVsbG8=", "k").unwrap_err(), KeyError::NotRsa("k"));
        assert!(RsaPrivateKey::parse("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "k").is_err());
    }
}
