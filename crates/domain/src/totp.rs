//! Step-up verification codes: RFC 6238 TOTP and one-time codes sent to the user.
//!
//! No randomness and no clock here: secrets and codes are built from random bytes the
//! caller supplies, and the time is a parameter. Codes and secrets travel as `Secret`, so
//! they cannot reach a log by accident.

use crate::secret::Secret;
use aws_lc_rs::{constant_time, hmac};
use serde::{Deserialize, Serialize};

/// RFC 6238's default time step.
pub const TOTP_STEP_SECS: i64 = 30;
/// Digits of a TOTP code: what every authenticator app shows.
pub const TOTP_DIGITS: u32 = 6;
/// Steps either side of now a code may come from: one step of clock drift or typing time
/// (RFC 6238 §5.2 recommends at most one).
pub const TOTP_SKEW_STEPS: i64 = 1;
/// Bytes of a TOTP secret: 160 bits, the HMAC-SHA1 output size RFC 4226 recommends.
pub const TOTP_SECRET_BYTES: usize = 20;
/// Digits of a one-time code sent through the user's channel.
pub const ONE_TIME_CODE_DIGITS: u32 = 6;
/// How long a sent one-time code may be used: as long as a quote is valid, so a code
/// never outlives the quote it confirms.
pub const ONE_TIME_CODE_VALID_MS: i64 = crate::termination::QUOTE_VALID_MS;
/// Most digits HOTP can give: dynamic truncation yields 31 bits (at most 10 digits).
pub const HOTP_DIGITS_MAX: u32 = 10;
/// The issuer named in enrolment URIs and shown by authenticator apps.
pub const TOTP_ISSUER: &str = "zerodrop";
/// RFC 4648 base32 alphabet.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The HMAC behind a TOTP code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotpAlgorithm {
    /// The default, and the only one many authenticator apps support.
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl TotpAlgorithm {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            TotpAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            TotpAlgorithm::Sha256 => hmac::HMAC_SHA256,
            TotpAlgorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The name in an `otpauth://` URI.
    pub fn uri_name(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
            TotpAlgorithm::Sha512 => "SHA512",
        }
    }
}

/// RFC 4226 HOTP: the `digits`-digit code of `counter` (1..=10), zero-padded.
pub fn hotp(algorithm: TotpAlgorithm, secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(algorithm.hmac(), secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3): the low nibble of the last byte picks 4 bytes.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    let digits = digits.clamp(1, HOTP_DIGITS_MAX);
    let modulus = 10_u64.pow(digits);
    format!("{:0width$}", u64::from(binary) % modulus, width = digits as usize)
}

/// The TOTP step (counter) a time falls in.
pub fn totp_step(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000).div_euclid(TOTP_STEP_SECS)
}

/// The TOTP code for a time, with `digits` digits.
pub fn totp_code(algorithm: TotpAlgorithm, secret: &[u8], now_ms: i64, digits: u32) -> String {
    hotp(algorithm, secret, u64::try_from(totp_step(now_ms)).unwrap_or(0), digits)
}

/// Checks a 6-digit code against the steps within ±`TOTP_SKEW_STEPS` of now, and returns
/// the step it matched. Steps at or before `last_used_step` are skipped: the caller stores
/// the matched step, so a code replayed within its window is refused.
pub fn verify_totp(
    algorithm: TotpAlgorithm,
    secret: &[u8],
    code: &str,
    now_ms: i64,
    last_used_step: Option<i64>,
) -> Option<i64> {
    if code.len() != TOTP_DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = totp_step(now_ms);
    let mut matched = None;
    // Every candidate is computed and compared, so timing does not say which step matched.
    for step in (now_step - TOTP_SKEW_STEPS)..=(now_step + TOTP_SKEW_STEPS) {
        let Ok(counter) = u64::try_from(step) else { continue };
        let expected = hotp(algorithm, secret, counter, TOTP_DIGITS);
        let fresh = last_used_step.is_none_or(|last| step > last);
        if codes_match(&expected, code) && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// A new TOTP secret from the caller's random bytes.
pub fn totp_secret(random: [u8; TOTP_SECRET_BYTES]) -> Secret<Vec<u8>> {
    Secret::new(random.to_vec())
}

/// The enrolment URI an authenticator app scans:
/// `otpauth://totp/zerodrop:{user}?secret=...&issuer=zerodrop`, plus the algorithm when it
/// is not the default SHA-1. It contains the secret: show it once, never log it.
pub fn enrolment_uri(user: &str, secret: &[u8], algorithm: TotpAlgorithm) -> Secret<String> {
    let mut uri = format!(
        "otpauth://totp/{TOTP_ISSUER}:{}?secret={}&issuer={TOTP_ISSUER}",
        percent_encode(user),
        base32_encode(secret)
    );
    if algorithm != TotpAlgorithm::Sha1 {
        uri.push_str("&algorithm=");
        uri.push_str(algorithm.uri_name());
    }
    Secret::new(uri)
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32_ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32, accepting lower case, spaces and trailing `=` as people paste them.
/// Refuses other characters and trailing bits that are not zero (a non-canonical form).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    let trimmed = text.trim_end_matches('=');
    for c in trimmed.bytes().filter(|b| *b != b' ') {
        let upper = c.to_ascii_uppercase();
        let value = BASE32_ALPHABET.iter().position(|&a| a == upper)?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    // Leftover bits are padding: fewer than 5 of them, all zero.
    if bits >= 5 || buffer & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

/// A one-time code from the caller's random bytes. Eight bytes taken modulo a million
/// leave a bias below 10⁻¹³, far under any guessing advantage.
pub fn one_time_code(random: [u8; 8]) -> Secret<String> {
    let modulus = 10_u64.pow(ONE_TIME_CODE_DIGITS);
    let value = u64::from_be_bytes(random) % modulus;
    Secret::new(format!("{value:0width$}", width = ONE_TIME_CODE_DIGITS as usize))
}

/// Compares two codes in constant time (for equal lengths), so response timing does not
/// reveal how many leading digits were right.
pub fn codes_match(expected: &str, given: &str) -> bool {
    constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for the URI label.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA1_SEED: &[u8] = b"12345678901234567890";
    const SHA256_SEED: &[u8] = b"12345678901234567890123456789012";
    const SHA512_SEED: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let vectors: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        for (secs, sha1, sha256, sha512) in vectors {
            let ms = secs * 1000;
            assert_eq!(totp_code(TotpAlgorithm::Sha1, SHA1_SEED, ms, 8), sha1, "SHA1 at {secs}");
            assert_eq!(totp_code(TotpAlgorithm::Sha256, SHA256_SEED, ms, 8), sha256, "SHA256 at {secs}");
            assert_eq!(totp_code(TotpAlgorithm::Sha512, SHA512_SEED, ms, 8), sha512, "SHA512 at {secs}");
        }
    }

    #[test]
    fn verification_accepts_one_step_of_drift_and_refuses_replays() {
        let now = 1_234_567_890_000;
        let step = totp_step(now);
        let code = totp_code(TotpAlgorithm::Sha1, SHA1_SEED, now, 6);
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &code, now, None), Some(step));
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &code, now + 30_000, None), Some(step));
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &code, now - 30_000, None), Some(step));
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &code, now + 60_000, None), None);
        // The same code again, after its step was used: refused.
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &code, now, Some(step)), None);
        // The next step's code is still good after this one was used.
        let next = totp_code(TotpAlgorithm::Sha1, SHA1_SEED, now + 30_000, 6);
        assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, &next, now, Some(step)), Some(step + 1));
        for bad in ["", "12345", "1234567", "12a456", " 12345"] {
            assert_eq!(verify_totp(TotpAlgorithm::Sha1, SHA1_SEED, bad, now, None), None);
        }
        let sha256 = totp_code(TotpAlgorithm::Sha256, SHA256_SEED, now, 6);
        assert_eq!(verify_totp(TotpAlgorithm::Sha256, SHA256_SEED, &sha256, now, None), Some(step));
    }

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base32_decode("mzxw 6ytb oi======").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZ1"), None);
        assert_eq!(base32_decode("my"), Some(b"f".to_vec()));
        assert_eq!(base32_decode("MZ"), None, "non-zero trailing bits");
        assert_eq!(base32_decode("M"), None, "a lone character is not a byte");
    }

    #[test]
    fn enrolment_uri_names_the_issuer_and_encodes_the_user() {
        let secret = totp_secret(*b"12345678901234567890");
        let uri = enrolment_uri("ann smith@x", secret.expose(), TotpAlgorithm::Sha1);
        assert_eq!(
            uri.expose(),
            "otpauth://totp/zerodrop:ann%20smith%40x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=zerodrop"
        );
        assert_eq!(format!("{uri:?}"), "[redacted]");
        let sha256 = enrolment_uri("u1", SHA256_SEED, TotpAlgorithm::Sha256);
        assert!(sha256.expose().ends_with("&issuer=zerodrop&algorithm=SHA256"));
    }

    #[test]
    fn one_time_codes_are_six_digits_and_compare_exactly() {
        assert_eq!(one_time_code([0; 8]).expose(), "000000");
        assert_eq!(one_time_code([0, 0, 0, 0, 0, 0x0f, 0x42, 0x3f]).expose(), "999999");
        assert_eq!(one_time_code([0xff; 8]).expose(), "551615");
        assert!(codes_match("042137", "042137"));
        assert!(!codes_match("042137", "042138"));
        assert!(!codes_match("042137", "42137"));
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)), Some(bytes));
        }

        #[test]
        fn a_fresh_code_verifies_at_its_own_time(secret in proptest::array::uniform20(any::<u8>()),
                                                 secs in 0_i64..4_000_000_000) {
            let now = secs * 1000;
            let code = totp_code(TotpAlgorithm::Sha1, &secret, now, 6);
            let matched = verify_totp(TotpAlgorithm::Sha1, &secret, &code, now, None);
            // A neighbouring step may share the code by chance; it is always within ±1.
            prop_assert!(matched.is_some_and(|step| (step - totp_step(now)).abs() <= TOTP_SKEW_STEPS));
        }
    }
}
