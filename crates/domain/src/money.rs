//! Money in integer minor units, and exact parsing of providers' decimal strings.
//!
//! Floats never touch an amount: "9.90" is parsed digit by digit into 990 fen.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest amount zerodrop accepts in one order, in minor units (10 million CNY).
/// Anything larger is a typo or an attack, and keeping far below i64::MAX means
/// sums over many orders cannot overflow.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000;

/// A fiat currency the providers charge in. The exponent is the number of decimal
/// places of its minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "CNY")]
    Cny,
    #[serde(rename = "USD")]
    Usd,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Usd => "USD",
        }
    }

    pub fn exponent(self) -> u32 {
        match self {
            Currency::Cny => 2,
            Currency::Usd => 2,
        }
    }

    pub fn parse(code: &str) -> Option<Currency> {
        match code {
            "CNY" => Some(Currency::Cny),
            "USD" => Some(Currency::Usd),
            _ => None,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of a fiat currency in minor units (fen, cents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// Parses a provider's decimal string ("9.90", "10", "0.5") exactly.
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, AmountError> {
        let minor = parse_decimal_minor(text, currency.exponent())?;
        Ok(Money { minor, currency })
    }

    /// The provider's decimal form, always with every decimal place ("9.90").
    pub fn to_decimal(&self) -> String {
        format_minor(self.minor, self.currency.exponent())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a plain non-negative decimal")]
    Malformed(String),
    #[error("amount {0:?} has more decimal places than the currency allows")]
    TooPrecise(String),
    #[error("amount {0:?} is larger than the maximum accepted")]
    TooLarge(String),
}

/// Parses a non-negative decimal with at most `exponent` fractional digits into minor units.
/// Accepts "10", "10.", "10.5", "10.50"; rejects signs, exponents, spaces and extra digits.
pub fn parse_decimal_minor(text: &str, exponent: u32) -> Result<i64, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let malformed = || AmountError::Malformed(text.to_owned());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if fraction.len() > exponent as usize {
        // Trailing zeros beyond the exponent are still exact ("9.900" is 990 fen).
        let (kept, extra) = fraction.split_at(exponent as usize);
        if !extra.bytes().all(|b| b == b'0') {
            return Err(AmountError::TooPrecise(text.to_owned()));
        }
        return parse_decimal_minor(&format!("{whole}.{kept}"), exponent);
    }
    // 18 digits fit in i64 with room; longer numbers are rejected before arithmetic.
    if whole.trim_start_matches('0').len() > 15 {
        return Err(AmountError::TooLarge(text.to_owned()));
    }
    let scale = 10_i64.pow(exponent);
    let whole_value: i64 = whole.parse().map_err(|_| malformed())?;
    let mut fraction_value: i64 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        let place = 10_i64.pow(exponent - 1 - i as u32);
        fraction_value += i64::from(digit - b'0') * place;
    }
    let minor = whole_value
        .checked_mul(scale)
        .and_then(|v| v.checked_add(fraction_value))
        .ok_or_else(|| AmountError::TooLarge(text.to_owned()))?;
    if minor > AMOUNT_MINOR_MAX {
        return Err(AmountError::TooLarge(text.to_owned()));
    }
    Ok(minor)
}

/// Formats minor units with exactly `exponent` decimal places.
pub fn format_minor(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10_u64.pow(exponent);
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = exponent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_provider_amounts_exactly() {
        assert_eq!(parse_decimal_minor("9.90", 2), Ok(990));
        assert_eq!(parse_decimal_minor("0.10", 2), Ok(10));
        assert_eq!(parse_decimal_minor("648", 2), Ok(64800));
        assert_eq!(parse_decimal_minor("0.5", 2), Ok(50));
        assert_eq!(parse_decimal_minor("6.", 2), Ok(600));
        assert_eq!(parse_decimal_minor("9.900", 2), Ok(990));
        assert_eq!(parse_decimal_minor("007.01", 2), Ok(701));
    }

    #[test]
    fn rejects_what_is_not_an_exact_amount() {
        for bad in ["", "-1", "+1", "1e3", " 1", "1 ", "1,00", ".5", "1.2.3", "0x10", "9.999", "NaN"] {
            assert!(parse_decimal_minor(bad, 2).is_err(), "{bad:?} must be rejected");
        }
        assert!(matches!(parse_decimal_minor("99999999999999999999", 2), Err(AmountError::TooLarge(_))));
        assert!(matches!(parse_decimal_minor("10000000.01", 2), Err(AmountError::TooLarge(_))));
    }

    #[test]
    fn formats_with_every_decimal_place() {
        assert_eq!(format_minor(990, 2), "9.90");
        assert_eq!(format_minor(5, 2), "0.05");
        assert_eq!(format_minor(-150, 2), "-1.50");
        assert_eq!(format_minor(60, 0), "60");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(minor in 0..=AMOUNT_MINOR_MAX) {
            prop_assert_eq!(parse_decimal_minor(&format_minor(minor, 2), 2), Ok(minor));
        }
    }
}
