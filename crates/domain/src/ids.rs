//! Typed identifiers. Each one validates its text at the edge so that nothing
//! downstream has to wonder whether a user id may contain a newline.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest external identifier (user id, SKU) accepted, in bytes. Provider fields such
/// as Alipay's `out_trade_no` allow 64, so our own ids stay inside that.
pub const EXTERNAL_ID_BYTES_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {max} characters of A-Z a-z 0-9 _ - . : (got {got:?})")]
pub struct IdError {
    pub what: &'static str,
    pub max: usize,
    pub got: String,
}

fn check_external(what: &'static str, text: &str) -> Result<(), IdError> {
    let ok = !text.is_empty()
        && text.len() <= EXTERNAL_ID_BYTES_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        return Ok(());
    }
    let got: String = text.chars().take(EXTERNAL_ID_BYTES_MAX + 1).collect();
    Err(IdError { what, max: EXTERNAL_ID_BYTES_MAX, got })
}

macro_rules! external_id {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, IdError> {
                check_external($what, text)?;
                Ok($name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<$name, IdError> {
                check_external($what, &text)?;
                Ok($name(text))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

external_id!(UserId, "user_id");
external_id!(Sku, "sku");

/// Internal order id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderId(pub uuid::Uuid);

impl OrderId {
    pub fn new() -> OrderId {
        OrderId(uuid::Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Option<OrderId> {
        uuid::Uuid::parse_str(text).ok().map(OrderId)
    }
}

impl Default for OrderId {
    fn default() -> Self {
        OrderId::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Crockford's base32 alphabet: no I, L, O or U, so people can read numbers aloud.
const ORDER_NO_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random characters in an order number: 12 × 5 = 60 bits, so collisions are
/// vanishingly rare (and the database's unique constraint catches the rest).
pub const ORDER_NO_RANDOM_CHARS: usize = 12;
const ORDER_NO_PREFIX: &str = "ZD";

/// The short number people see and that providers carry as `out_trade_no`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderNo(String);

impl OrderNo {
    /// Builds an order number from 60 random bits supplied by the caller.
    pub fn from_random(bits: u64) -> OrderNo {
        let mut text = String::with_capacity(ORDER_NO_PREFIX.len() + ORDER_NO_RANDOM_CHARS);
        text.push_str(ORDER_NO_PREFIX);
        for i in (0..ORDER_NO_RANDOM_CHARS).rev() {
            let index = ((bits >> (i * 5)) & 0x1f) as usize;
            text.push(ORDER_NO_ALPHABET[index] as char);
        }
        OrderNo(text)
    }

    pub fn parse(text: &str) -> Option<OrderNo> {
        let rest = text.strip_prefix(ORDER_NO_PREFIX)?;
        let ok = rest.len() == ORDER_NO_RANDOM_CHARS && rest.bytes().all(|b| ORDER_NO_ALPHABET.contains(&b));
        ok.then(|| OrderNo(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderNo {
    type Error = String;
    fn try_from(text: String) -> Result<OrderNo, String> {
        OrderNo::parse(&text).ok_or_else(|| format!("not an order number: {text:?}"))
    }
}

impl From<OrderNo> for String {
    fn from(no: OrderNo) -> String {
        no.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_round_trip_and_reject_lookalikes() {
        let no = OrderNo::from_random(0x0fff_ffff_ffff_ffff);
        assert_eq!(no.as_str().len(), 14);
        assert_eq!(OrderNo::parse(no.as_str()), Some(no));
        assert!(OrderNo::parse("ZD0000000000O0").is_none(), "O is not in the alphabet");
        assert!(OrderNo::parse("ZD000").is_none());
        assert!(OrderNo::parse("XX000000000000").is_none());
    }

    #[test]
    fn external_ids_are_validated() {
        assert!(UserId::parse("u_123:abc").is_ok());
        for bad in ["", "a b", "a\nb", "名字", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
