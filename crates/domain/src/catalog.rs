//! The product catalog: what can be bought, what it grants, and how long delivery may take.

use crate::ids::Sku;
use crate::money::{parse_decimal_minor, Currency, Money};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default time from payment to delivery before a product's on-miss policy applies.
pub const DELIVERY_DEADLINE_SECS_DEFAULT: i64 = 300;
/// Bounds on a product's delivery deadline: under 10 s no retry can happen, and over a
/// week is no deadline at all.
pub const DELIVERY_DEADLINE_SECS_MIN: i64 = 10;
pub const DELIVERY_DEADLINE_SECS_MAX: i64 = 7 * 24 * 3600;
/// Most units of one product in one order, unless the product says fewer.
pub const QUANTITY_MAX_DEFAULT: i64 = 10;
/// Hard ceiling on quantity: keeps amount and unit products far from overflow.
pub const QUANTITY_MAX_CEILING: i64 = 1000;
/// Longest membership extension one product may grant, in days (ten years).
pub const MEMBERSHIP_DAYS_MAX: i64 = 3660;
/// Most virtual-currency units one product may grant.
pub const CURRENCY_UNITS_MAX: i64 = 100_000_000;

/// What happens to a payment that arrives after its order expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    Deliver,
    Refund,
}

impl LatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LatePolicy::Deliver => "deliver",
            LatePolicy::Refund => "refund",
        }
    }
}

/// What a product grants on delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProductKind {
    /// Credits `units` of `virtual_currency` (e.g. DIAMOND) to the user's wallet.
    CurrencyPack {
        virtual_currency: String,
        units: i64,
    },
    /// Adds `days` to the user's `plan`, stacking after its current end.
    Membership { plan: String, days: i64 },
}

impl ProductKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProductKind::CurrencyPack { .. } => "currency_pack",
            ProductKind::Membership { .. } => "membership",
        }
    }
}

/// A product as sold. Orders keep a JSON snapshot of it, so a later catalog edit never
/// changes what an existing order grants or how long its delivery may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: Sku,
    pub title: String,
    pub price: Money,
    #[serde(flatten)]
    pub kind: ProductKind,
    pub delivery_deadline_secs: i64,
    pub late_payment: LatePolicy,
    pub quantity_max: i64,
}

impl Product {
    /// The total for `quantity` units, refusing quantities outside the product's bounds.
    pub fn total(&self, quantity: i64) -> Result<Money, CatalogError> {
        if quantity < 1 || quantity > self.quantity_max {
            return Err(CatalogError::Quantity {
                sku: self.sku.to_string(),
                max: self.quantity_max,
                got: quantity,
            });
        }
        // Bounded by validation: price ≤ AMOUNT_MINOR_MAX and quantity ≤ 1000.
        let minor = self
            .price
            .minor
            .checked_mul(quantity)
            .ok_or(CatalogError::Overflow)?;
        Ok(Money::new(minor, self.price.currency))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML: {0}")]
    Syntax(String),
    #[error("product {sku}: {problem}")]
    Invalid { sku: String, problem: String },
    #[error("product {0} appears twice")]
    Duplicate(String),
    #[error("catalog has no products")]
    Empty,
    #[error("no product {0:?}")]
    UnknownSku(String),
    #[error("quantity for {sku} must be between 1 and {max}, got {got}")]
    Quantity { sku: String, max: i64, got: i64 },
    #[error("amount overflows")]
    Overflow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(rename = "product", default)]
    products: Vec<RawProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    sku: String,
    title: String,
    /// Decimal string in the currency's major unit ("6.00"), parsed exactly.
    price: String,
    currency: String,
    /// `currency_pack` or `membership`; the fields below belong to one or the other.
    kind: String,
    virtual_currency: Option<String>,
    units: Option<i64>,
    plan: Option<String>,
    days: Option<i64>,
    delivery_deadline_secs: Option<i64>,
    late_payment: Option<LatePolicy>,
    quantity_max: Option<i64>,
}

/// The products on sale, by SKU.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    products: BTreeMap<Sku, Product>,
}

/// The catalog that ships with zerodrop: diamond packs and SVIP plans.
pub const DEFAULT_CATALOG_TOML: &str = include_str!("../../../catalog/default.toml");

impl Catalog {
    pub fn default_catalog() -> Catalog {
        // The shipped file is checked by a test, so failing here is a build defect.
        Catalog::from_toml(DEFAULT_CATALOG_TOML).expect("the shipped catalog is valid")
    }

    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        if raw.products.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut products = BTreeMap::new();
        for raw_product in raw.products {
            let product = validate(raw_product)?;
            let sku = product.sku.clone();
            if products.insert(sku.clone(), product).is_some() {
                return Err(CatalogError::Duplicate(sku.to_string()));
            }
        }
        Ok(Catalog { products })
    }

    pub fn get(&self, sku: &str) -> Result<&Product, CatalogError> {
        Sku::parse(sku)
            .ok()
            .and_then(|sku| self.products.get(&sku))
            .ok_or_else(|| CatalogError::UnknownSku(sku.chars().take(80).collect()))
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }
}

fn validate(raw: RawProduct) -> Result<Product, CatalogError> {
    let invalid = |problem: String| CatalogError::Invalid {
        sku: raw.sku.clone(),
        problem,
    };
    let sku = Sku::parse(&raw.sku).map_err(|e| invalid(e.to_string()))?;
    let currency = Currency::parse(&raw.currency)
        .ok_or_else(|| invalid(format!("unknown currency {:?}", raw.currency)))?;
    let price_minor =
        parse_decimal_minor(&raw.price, currency.exponent()).map_err(|e| invalid(e.to_string()))?;
    if price_minor == 0 {
        return Err(invalid("price must be above zero".into()));
    }
    let kind = product_kind(&raw).map_err(invalid)?;
    let deadline = raw
        .delivery_deadline_secs
        .unwrap_or(DELIVERY_DEADLINE_SECS_DEFAULT);
    if !(DELIVERY_DEADLINE_SECS_MIN..=DELIVERY_DEADLINE_SECS_MAX).contains(&deadline) {
        return Err(invalid(format!(
            "delivery_deadline_secs must be {DELIVERY_DEADLINE_SECS_MIN}..={DELIVERY_DEADLINE_SECS_MAX}"
        )));
    }
    let quantity_max = raw.quantity_max.unwrap_or(QUANTITY_MAX_DEFAULT);
    if !(1..=QUANTITY_MAX_CEILING).contains(&quantity_max) {
        return Err(invalid(format!(
            "quantity_max must be 1..={QUANTITY_MAX_CEILING}"
        )));
    }
    Ok(Product {
        sku,
        title: raw.title.clone(),
        price: Money::new(price_minor, currency),
        kind,
        delivery_deadline_secs: deadline,
        late_payment: raw.late_payment.unwrap_or(LatePolicy::Deliver),
        quantity_max,
    })
}

fn product_kind(raw: &RawProduct) -> Result<ProductKind, String> {
    match raw.kind.as_str() {
        "currency_pack" => {
            if raw.plan.is_some() || raw.days.is_some() {
                return Err("a currency_pack has no plan or days".into());
            }
            let currency = raw
                .virtual_currency
                .clone()
                .ok_or("virtual_currency is required")?;
            let units = raw.units.ok_or("units is required")?;
            let ok_name = !currency.is_empty()
                && currency.len() <= 16
                && currency.bytes().all(|b| b.is_ascii_uppercase());
            if !ok_name {
                return Err("virtual_currency must be 1-16 uppercase letters".into());
            }
            if !(1..=CURRENCY_UNITS_MAX).contains(&units) {
                return Err(format!("units must be 1..={CURRENCY_UNITS_MAX}"));
            }
            Ok(ProductKind::CurrencyPack {
                virtual_currency: currency,
                units,
            })
        }
        "membership" => {
            if raw.virtual_currency.is_some() || raw.units.is_some() {
                return Err("a membership has no virtual_currency or units".into());
            }
            let plan = raw.plan.clone().ok_or("plan is required")?;
            let days = raw.days.ok_or("days is required")?;
            if Sku::parse(&plan).is_err() {
                return Err("plan must be a short identifier".into());
            }
            if !(1..=MEMBERSHIP_DAYS_MAX).contains(&days) {
                return Err(format!("days must be 1..={MEMBERSHIP_DAYS_MAX}"));
            }
            Ok(ProductKind::Membership { plan, days })
        }
        other => Err(format!(
            "unknown kind {other:?} (expected currency_pack or membership)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_has_the_diamond_packs_and_svip_plans() {
        let catalog = Catalog::default_catalog();
        let packs = [
            (60, 600),
            (300, 3000),
            (980, 9800),
            (1980, 19800),
            (3280, 32800),
            (6480, 64800),
        ];
        for (units, price) in packs {
            let product = catalog.get(&format!("diamonds_{units}")).unwrap();
            assert_eq!(product.price, Money::new(price, Currency::Cny));
            assert_eq!(
                product.kind,
                ProductKind::CurrencyPack {
                    virtual_currency: "DIAMOND".into(),
                    units
                }
            );
            assert_eq!(product.delivery_deadline_secs, 300);
        }
        for days in [30, 90, 365] {
            let product = catalog.get(&format!("svip_{days}d")).unwrap();
            assert_eq!(
                product.kind,
                ProductKind::Membership {
                    plan: "svip".into(),
                    days
                }
            );
        }
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_product_named() {
        let base = "[[product]]\nsku = \"p\"\ntitle = \"t\"\ncurrency = \"CNY\"\nkind = \"membership\"\nplan = \"svip\"\n";
        let cases = [
            (format!("{base}price = \"0\"\ndays = 3\n"), "above zero"),
            (
                format!("{base}price = \"1.001\"\ndays = 3\n"),
                "decimal places",
            ),
            (format!("{base}price = \"1\"\ndays = 0\n"), "days"),
            (
                format!("{base}price = \"1\"\ndays = 3\ndelivery_deadline_secs = 1\n"),
                "deadline",
            ),
            (
                format!("{base}price = \"1\"\ndays = 3\nsurprise = 1\n"),
                "surprise",
            ),
        ];
        for (text, needle) in cases {
            let err = Catalog::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        assert_eq!(Catalog::from_toml("").unwrap_err(), CatalogError::Empty);
    }

    #[test]
    fn a_product_snapshot_round_trips_through_json() {
        for product in Catalog::default_catalog().products() {
            let json = serde_json::to_string(product).unwrap();
            assert_eq!(&serde_json::from_str::<Product>(&json).unwrap(), product);
        }
    }

    #[test]
    fn quantity_is_bounded() {
        let catalog = Catalog::default_catalog();
        let product = catalog.get("diamonds_60").unwrap();
        assert_eq!(product.total(3).unwrap().minor, 1800);
        assert!(product.total(0).is_err());
        assert!(product.total(11).is_err());
        assert!(catalog.get("nope").is_err());
    }
}
