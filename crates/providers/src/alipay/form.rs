//! Alipay's form bodies in their declared charset.
//!
//! A notification is `application/x-www-form-urlencoded`, and its percent-escapes are
//! bytes in the charset the merchant's app is set up with: the `charset` field says which
//! (`utf-8`, or `GBK` for many older integrations), and without it the `Content-Type`
//! header's `charset`. Alipay signs the signing string *in that charset's bytes*, so the
//! signature is checked over the bytes as they came, and values are decoded to text only
//! to be read. (Decoding GBK as UTF-8 first, as a plain form parser does, turns every
//! Chinese character into a replacement character and breaks a genuine signature.)

use encoding_rs::{Encoding, GBK, UTF_8};
use std::collections::BTreeMap;

/// A form body: its fields as bytes (for the signature) and as text (for reading).
pub struct Form {
    raw: Vec<(Vec<u8>, Vec<u8>)>,
    /// The fields decoded from the body's charset, in order.
    pub fields: Vec<(String, String)>,
    /// The charset's name, as Alipay writes it.
    pub charset: &'static str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// A charset zerodrop does not read (its name, cut short).
    UnsupportedCharset(String),
    /// A field's bytes are not text in the declared charset.
    NotInCharset(&'static str),
    BadEscape,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::UnsupportedCharset(name) => write!(f, "charset {name:?} is not supported (utf-8, GBK)"),
            FormError::NotInCharset(charset) => write!(f, "a field is not valid {charset}"),
            FormError::BadEscape => f.write_str("a percent-escape is not two hex digits"),
        }
    }
}

/// Longest charset name shown in an error, in characters.
const CHARSET_NAME_CHARS_MAX: usize = 32;

impl Form {
    /// Reads `body`; `header_charset` is the `Content-Type` header's charset, if any.
    pub fn parse(body: &[u8], header_charset: Option<&str>) -> Result<Form, FormError> {
        let mut raw = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            raw.push((unescape(key)?, unescape(value)?));
        }
        let declared = raw
            .iter()
            .find(|(k, _)| k == b"charset")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .or_else(|| header_charset.map(str::to_owned));
        let (encoding, charset): (&'static Encoding, &'static str) = match declared.as_deref().map(str::trim) {
            None => (UTF_8, "utf-8"),
            Some(name) if name.eq_ignore_ascii_case("utf-8") || name.eq_ignore_ascii_case("utf8") => (UTF_8, "utf-8"),
            // GB2312 is a subset of GBK; both are read as GBK.
            Some(name) if name.eq_ignore_ascii_case("gbk") || name.eq_ignore_ascii_case("gb2312") => (GBK, "GBK"),
            Some(name) => {
                return Err(FormError::UnsupportedCharset(name.chars().take(CHARSET_NAME_CHARS_MAX).collect()));
            }
        };
        let decode = |bytes: &[u8]| {
            encoding
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|text| text.into_owned())
                .ok_or(FormError::NotInCharset(charset))
        };
        let fields = raw.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect::<Result<_, FormError>>()?;
        Ok(Form { raw, fields, charset })
    }

    /// The bytes Alipay signs: every field but `sign` (and `sign_type` unless
    /// `keep_sign_type`) whose value is not empty, sorted by key, as `k=v` joined by `&`,
    /// in the body's own charset.
    pub fn signing_bytes(&self, keep_sign_type: bool) -> Vec<u8> {
        let sorted: BTreeMap<&[u8], &[u8]> = self
            .raw
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .filter(|(k, v)| !v.is_empty() && *k != b"sign" && (keep_sign_type || *k != b"sign_type"))
            .collect();
        let mut out = Vec::new();
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            out.extend_from_slice(k);
            out.push(b'=');
            out.extend_from_slice(v);
        }
        out
    }
}

/// Form decoding of one key or value: `+` is a space, `%XX` a byte.
fn unescape(text: &[u8]) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or(FormError::BadEscape)?;
                let hex = std::str::from_utf8(hex).map_err(|_| FormError::BadEscape)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| FormError::BadEscape)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// Form encoding of bytes (a value already in the body's charset): what Alipay and the
/// sandbox send. Unreserved characters stay, a space is `+`, every other byte is `%XX`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body of `fields` (text), encoded in `charset` (`utf-8` or `GBK`).
pub fn encode(fields: &[(&str, String)], gbk: bool) -> String {
    let bytes = |text: &str| -> Vec<u8> {
        if gbk {
            GBK.encode(text).0.into_owned()
        } else {
            text.as_bytes().to_vec()
        }
    };
    let pairs: Vec<String> =
        fields.iter().map(|(k, v)| format!("{}={}", escape(&bytes(k)), escape(&bytes(v)))).collect();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_fields_decode_and_sign_over_their_own_bytes() {
        // "钻石" in GBK is D7 EA CA AF.
        let form = Form::parse(b"charset=GBK&subject=60+%D7%EA%CA%AF&sign=x", None).unwrap();
        assert_eq!(form.charset, "GBK");
        assert_eq!(form.fields[1], ("subject".into(), "60 钻石".into()));
        assert_eq!(form.signing_bytes(false), b"charset=GBK&subject=60 \xD7\xEA\xCA\xAF".to_vec());
    }

    #[test]
    fn the_charset_comes_from_the_body_then_the_header_and_defaults_to_utf8() {
        let utf8 = "subject=60+%E9%92%BB%E7%9F%B3".as_bytes();
        assert_eq!(Form::parse(utf8, None).unwrap().fields[0].1, "60 钻石");
        let gbk = b"subject=60+%D7%EA%CA%AF";
        assert_eq!(Form::parse(gbk, Some("GBK")).unwrap().fields[0].1, "60 钻石");
        assert_eq!(Form::parse(gbk, None).err(), Some(FormError::NotInCharset("utf-8")), "GBK bytes are not UTF-8");
        assert!(matches!(Form::parse(b"charset=latin1&a=b", None), Err(FormError::UnsupportedCharset(_))));
        assert_eq!(Form::parse(b"a=%G1", None).err(), Some(FormError::BadEscape));
        assert_eq!(Form::parse(b"a=%4", None).err(), Some(FormError::BadEscape));
    }

    #[test]
    fn encoding_round_trips_in_both_charsets() {
        for gbk in [false, true] {
            let charset = if gbk { "GBK" } else { "utf-8" };
            let fields = [("subject", "60 钻石 / 60 diamonds".to_owned()), ("charset", charset.to_owned())];
            let body = encode(&fields, gbk);
            let form = Form::parse(body.as_bytes(), None).unwrap();
            assert_eq!(form.fields[0].1, fields[0].1, "{body}");
        }
    }
}
