//! Alipay's RSA2 signing rules.
//!
//! Signed string: every parameter except `sign` (and, for asynchronous notifications,
//! `sign_type`) whose value is not empty, sorted by key in byte order, joined as
//! `k=v&k=v` with the raw (form-decoded) values. Gateway responses are signed over the
//! exact raw JSON text of the `<method>_response` value.

use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Builds the string Alipay signs. `keep_sign_type` is false for trade notifications
/// (Alipay's documented rule) and true for requests and some other message types.
pub fn signing_string<'a, I>(params: I, keep_sign_type: bool) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign" && (keep_sign_type || *k != "sign_type"))
        .collect();
    let mut out = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The gateway's response key for a method: `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The raw pieces of a gateway response body.
pub struct RawResponse<'a> {
    /// Exact text of the `<method>_response` value (what the signature covers).
    pub content: Option<&'a str>,
    /// Exact text of an `error_response` value (sent unsigned for some failures).
    pub error: Option<&'a str>,
    pub sign: Option<String>,
}

pub fn split_response<'a>(body: &'a str, method: &str) -> Result<RawResponse<'a>, String> {
    let map: BTreeMap<&str, &'a RawValue> =
        serde_json::from_str(body).map_err(|e| format!("response is not a JSON object: {e}"))?;
    let sign = match map.get("sign") {
        Some(raw) => Some(serde_json::from_str::<String>(raw.get()).map_err(|_| "sign is not a string".to_string())?),
        None => None,
    };
    Ok(RawResponse {
        content: map.get(response_key(method).as_str()).map(|r| r.get()),
        error: map.get("error_response").map(|r| r.get()),
        sign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_sign_empty_values_and_sorts() {
        let params = [("b", "2"), ("sign", "x"), ("a", "1"), ("sign_type", "RSA2"), ("empty", "")];
        assert_eq!(signing_string(params, false), "a=1&b=2");
        assert_eq!(signing_string(params, true), "a=1&b=2&sign_type=RSA2");
    }

    #[test]
    fn response_text_is_taken_verbatim() {
        let body = r#"{"alipay_trade_query_response":{"code":"10000", "msg":"Success"},"sign":"abc"}"#;
        let raw = split_response(body, "alipay.trade.query").unwrap();
        assert_eq!(raw.content, Some(r#"{"code":"10000", "msg":"Success"}"#));
        assert_eq!(raw.sign.as_deref(), Some("abc"));
        assert!(split_response("[1]", "alipay.trade.query").is_err());
    }
}
