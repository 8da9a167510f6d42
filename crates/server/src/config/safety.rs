//! Checks that keep a configuration from weakening what zerodrop promises: merchant keys
//! long enough that guessing one is hopeless, and signed traffic never sent over plain
//! HTTP except to this machine. Each refusal names the key, never its value.

use std::net::IpAddr;

/// Shortest merchant key (an API key, an HMAC secret), in bytes: 256 bits, the size of
/// HMAC-SHA256's own output, so a key is never the weakest part of what it signs. A
/// random 32-byte key printed as base64 (`zerodrop admin new-key`) is 44 characters.
pub const MERCHANT_KEY_BYTES_MIN: usize = 32;

/// Refuses a merchant key shorter than [`MERCHANT_KEY_BYTES_MIN`] bytes.
pub fn key_long_enough(key: &str, secret: &str) -> Result<(), String> {
    if secret.len() < MERCHANT_KEY_BYTES_MIN {
        return Err(format!(
            "{key} must be at least {MERCHANT_KEY_BYTES_MIN} bytes (a random key: `zerodrop admin new-key`)"
        ));
    }
    Ok(())
}

/// Refuses a URL that is not `https://`, unless it is `http://` to a loopback address
/// (127.0.0.0/8, ::1, `localhost`): a test stack or a sidecar on the same machine.
/// Elsewhere plain HTTP would let anyone on the path read and change signed requests
/// and the answers zerodrop acts on.
pub fn https_or_loopback(key: &str, url: &str) -> Result<(), String> {
    let refused = || {
        Err(format!(
            "{key} must be an https:// URL (http:// only to a loopback address: 127.0.0.0/8, ::1 or localhost)"
        ))
    };
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err(format!("{key} is not a valid URL"));
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => refused(),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    // An IPv6 host is written in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        let ok = |url: &str| https_or_loopback("k", url).is_ok();
        assert!(ok("https://openapi.alipay.com/gateway.do"));
        assert!(ok("http://127.0.0.1:9090/gateway.do"));
        assert!(ok("http://127.8.9.10/x"), "all of 127.0.0.0/8");
        assert!(ok("http://[::1]:8080/deliver"));
        assert!(ok("http://localhost:8080/deliver"));
        assert!(ok("http://LOCALHOST/deliver"));
        assert!(!ok("http://openapi.alipay.com/gateway.do"));
        assert!(!ok("http://10.0.0.5/deliver"), "a private address is still the network");
        assert!(!ok("http://128.0.0.1/x"));
        assert!(!ok("http://localhost.example.com/x"), "a name that starts like localhost is not it");
        assert!(!ok("http://127.0.0.1.nip.io/x"));
        assert!(!ok("ftp://127.0.0.1/x"));
        assert!(!ok("not a url"));
        let error = https_or_loopback("providers[0].gateway_url", "http://user:hunter2@pay.example/x").unwrap_err();
        assert!(error.contains("providers[0].gateway_url") && error.contains("https://"), "{error}");
        assert!(!error.contains("hunter2") && !error.contains("pay.example"), "the value is never shown: {error}");
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused_by_name() {
        assert!(key_long_enough("k", &"x".repeat(32)).is_ok());
        let error = key_long_enough("api.merchant_api_keys[0]", &"s3cret".repeat(5)).unwrap_err();
        assert!(error.contains("api.merchant_api_keys[0]") && error.contains("32 bytes"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        // Bytes, not characters: ten CJK characters are 30 bytes.
        assert!(key_long_enough("k", &"密".repeat(10)).is_err());
        assert!(key_long_enough("k", &"密".repeat(11)).is_ok());
    }
}
