//! The product catalog: what can be bought, what it grants, and how long delivery may take.

use crate::ids::Sku;
use crate::money::{parse_decimal_minor, Currency, Money};
use crate::terms::{Plans, RawPlan, TermsError};
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

/// What happens when a paid order is not delivered by its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissPolicy {
    /// Refund at once (the default: nobody keeps money for goods they did not deliver).
    #[default]
    Refund,
    /// Put the order in front of a person as a dropped order, top priority.
    Escalate,
}

impl MissPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MissPolicy::Refund => "refund",
            MissPolicy::Escalate => "escalate",
        }
    }
}

/// What a user gets when delivery lands after its deadline through the platform's fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Compensation {
    /// A bonus of this percentage of the pack's units (currency packs).
    Percent { percent: i64 },
    /// A fixed number of units of a virtual currency (any product).
    Units { currency: String, units: i64 },
    /// Extra membership days (memberships).
    Days { days: i64 },
}

/// What a product grants on delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProductKind {
    /// Credits `units` of `virtual_currency` (e.g. DIAMOND) to the user's wallet.
    CurrencyPack { virtual_currency: String, units: i64 },
    /// Adds `days` to the user's `plan`, stacking after its current end.
    Membership { plan: String, days: i64 },
    /// One code (卡密) from this SKU's imported stock.
    CardKey,
    /// Delivered by the platform's own endpoint (named in zerodrop's configuration),
    /// which receives `payload` with the order.
    External { endpoint: String, payload: serde_json::Value },
}

impl ProductKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProductKind::CurrencyPack { .. } => "currency_pack",
            ProductKind::Membership { .. } => "membership",
            ProductKind::CardKey => "card_key",
            ProductKind::External { .. } => "external",
        }
    }

    /// Internal goods are delivered in the payment's own transaction.
    pub fn is_internal(&self) -> bool {
        match self {
            ProductKind::CurrencyPack { .. } | ProductKind::Membership { .. } => true,
            ProductKind::CardKey | ProductKind::External { .. } => false,
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
    #[serde(default)]
    pub on_deadline_miss: MissPolicy,
    #[serde(default)]
    pub compensation: Option<Compensation>,
    pub quantity_max: i64,
}

impl Product {
    /// The total for `quantity` units, refusing quantities outside the product's bounds.
    pub fn total(&self, quantity: i64) -> Result<Money, CatalogError> {
        if quantity < 1 || quantity > self.quantity_max {
            return Err(CatalogError::Quantity { sku: self.sku.to_string(), max: self.quantity_max, got: quantity });
        }
        // Bounded by validation: price ≤ AMOUNT_MINOR_MAX and quantity ≤ 1000.
        let minor = self.price.minor.checked_mul(quantity).ok_or(CatalogError::Overflow)?;
        Ok(Money::new(minor, self.price.currency))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML: {0}")]
    Syntax(#[source] toml::de::Error),
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
    #[error(transparent)]
    Plan(#[from] TermsError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(rename = "product", default)]
    products: Vec<RawProduct>,
    /// Auto-renewing plans and their versioned terms (see `terms`).
    #[serde(rename = "plan", default)]
    plans: Vec<RawPlan>,
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
    endpoint: Option<String>,
    payload: Option<toml::Table>,
    delivery_deadline_secs: Option<i64>,
    late_payment: Option<LatePolicy>,
    on_deadline_miss: Option<MissPolicy>,
    compensation: Option<RawCompensation>,
    quantity_max: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompensation {
    percent: Option<i64>,
    currency: Option<String>,
    units: Option<i64>,
    days: Option<i64>,
}

/// Largest compensation percentage: a bonus, not a second purchase.
pub const COMPENSATION_PERCENT_MAX: i64 = 100;

/// The products on sale, by SKU.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    products: BTreeMap<Sku, Product>,
    plans: Plans,
}

/// The catalog that ships with zerodrop: diamond packs and SVIP plans.
pub const DEFAULT_CATALOG_TOML: &str = include_str!("../../../catalog/default.toml");

impl Catalog {
    pub fn default_catalog() -> Catalog {
        // The shipped file is checked by a test, so failing here is a build defect.
        Catalog::from_toml(DEFAULT_CATALOG_TOML).expect("the shipped catalog is valid")
    }

    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(CatalogError::Syntax)?;
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
        let plans = Plans::from_raw(raw.plans)?;
        Ok(Catalog { products, plans })
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

    /// The auto-renewing plans with their terms versions.
    pub fn plans(&self) -> &Plans {
        &self.plans
    }
}

fn validate(raw: RawProduct) -> Result<Product, CatalogError> {
    let invalid = |problem: String| CatalogError::Invalid { sku: raw.sku.clone(), problem };
    let sku = Sku::parse(&raw.sku).map_err(|e| invalid(e.to_string()))?;
    let currency =
        Currency::parse(&raw.currency).ok_or_else(|| invalid(format!("unknown currency {:?}", raw.currency)))?;
    let price_minor = parse_decimal_minor(&raw.price, currency.exponent()).map_err(|e| invalid(e.to_string()))?;
    if price_minor == 0 {
        return Err(invalid("price must be above zero".into()));
    }
    let kind = product_kind(&raw).map_err(invalid)?;
    let deadline = raw.delivery_deadline_secs.unwrap_or(DELIVERY_DEADLINE_SECS_DEFAULT);
    if !(DELIVERY_DEADLINE_SECS_MIN..=DELIVERY_DEADLINE_SECS_MAX).contains(&deadline) {
        return Err(invalid(format!(
            "delivery_deadline_secs must be {DELIVERY_DEADLINE_SECS_MIN}..={DELIVERY_DEADLINE_SECS_MAX}"
        )));
    }
    // One card key per order: a code is one thing, and a refund revokes exactly it.
    let quantity_default = if kind == ProductKind::CardKey { 1 } else { QUANTITY_MAX_DEFAULT };
    let quantity_max = raw.quantity_max.unwrap_or(quantity_default);
    if !(1..=QUANTITY_MAX_CEILING).contains(&quantity_max) {
        return Err(invalid(format!("quantity_max must be 1..={QUANTITY_MAX_CEILING}")));
    }
    if kind == ProductKind::CardKey && quantity_max != 1 {
        return Err(invalid("a card_key product sells one code per order (quantity_max = 1)".into()));
    }
    let compensation = raw.compensation.as_ref().map(|c| compensation(c, &kind)).transpose().map_err(invalid)?;
    Ok(Product {
        sku,
        title: raw.title.clone(),
        price: Money::new(price_minor, currency),
        kind,
        delivery_deadline_secs: deadline,
        late_payment: raw.late_payment.unwrap_or(LatePolicy::Deliver),
        on_deadline_miss: raw.on_deadline_miss.unwrap_or_default(),
        compensation,
        quantity_max,
    })
}

fn compensation(raw: &RawCompensation, kind: &ProductKind) -> Result<Compensation, String> {
    let positive = |what: &str, v: i64, max: i64| {
        if (1..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!("compensation {what} must be 1..={max}"))
        }
    };
    match (raw.percent, &raw.currency, raw.units, raw.days) {
        (Some(percent), None, None, None) => match kind {
            ProductKind::CurrencyPack { .. } => {
                Ok(Compensation::Percent { percent: positive("percent", percent, COMPENSATION_PERCENT_MAX)? })
            }
            ProductKind::Membership { .. } | ProductKind::CardKey | ProductKind::External { .. } => {
                Err("compensation percent applies to currency packs only".into())
            }
        },
        (None, Some(currency), Some(units), None) => {
            if currency.is_empty() || currency.len() > 16 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err("compensation currency must be 1-16 uppercase letters".into());
            }
            Ok(Compensation::Units { currency: currency.clone(), units: positive("units", units, CURRENCY_UNITS_MAX)? })
        }
        (None, None, None, Some(days)) => match kind {
            ProductKind::Membership { .. } => {
                Ok(Compensation::Days { days: positive("days", days, MEMBERSHIP_DAYS_MAX)? })
            }
            ProductKind::CurrencyPack { .. } | ProductKind::CardKey | ProductKind::External { .. } => {
                Err("compensation days apply to memberships only".into())
            }
        },
        _ => Err("compensation is one of { percent }, { currency, units } or { days }".into()),
    }
}

fn product_kind(raw: &RawProduct) -> Result<ProductKind, String> {
    let fields = [
        ("virtual_currency", raw.virtual_currency.is_some()),
        ("units", raw.units.is_some()),
        ("plan", raw.plan.is_some()),
        ("days", raw.days.is_some()),
        ("endpoint", raw.endpoint.is_some()),
        ("payload", raw.payload.is_some()),
    ];
    // Each kind names the fields it takes; any other field is a mistake worth naming.
    let only = |allowed: &[&str]| match fields.iter().find(|(name, present)| *present && !allowed.contains(name)) {
        Some((name, _)) => Err(format!("a {} has no {name}", raw.kind)),
        None => Ok(()),
    };
    match raw.kind.as_str() {
        "currency_pack" => {
            only(&["virtual_currency", "units"])?;
            let currency = raw.virtual_currency.clone().ok_or("virtual_currency is required")?;
            let units = raw.units.ok_or("units is required")?;
            let ok_name =
                !currency.is_empty() && currency.len() <= 16 && currency.bytes().all(|b| b.is_ascii_uppercase());
            if !ok_name {
                return Err("virtual_currency must be 1-16 uppercase letters".into());
            }
            if !(1..=CURRENCY_UNITS_MAX).contains(&units) {
                return Err(format!("units must be 1..={CURRENCY_UNITS_MAX}"));
            }
            Ok(ProductKind::CurrencyPack { virtual_currency: currency, units })
        }
        "membership" => {
            only(&["plan", "days"])?;
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
        "card_key" => {
            only(&[])?;
            Ok(ProductKind::CardKey)
        }
        "external" => {
            only(&["endpoint", "payload"])?;
            let endpoint = raw.endpoint.clone().ok_or("endpoint is required (a name from delivery_endpoints)")?;
            if Sku::parse(&endpoint).is_err() {
                return Err("endpoint must be a short identifier".into());
            }
            let payload = serde_json::to_value(raw.payload.clone().unwrap_or_default()).map_err(|e| e.to_string())?;
            Ok(ProductKind::External { endpoint, payload })
        }
        other => Err(format!("unknown kind {other:?} (expected currency_pack, membership, card_key or external)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_has_the_diamond_packs_and_svip_plans() {
        let catalog = Catalog::default_catalog();
        let packs = [(60, 600), (300, 3000), (980, 9800), (1980, 19800), (3280, 32800), (6480, 64800)];
        for (units, price) in packs {
            let product = catalog.get(&format!("diamonds_{units}")).unwrap();
            assert_eq!(product.price, Money::new(price, Currency::Cny));
            assert_eq!(product.kind, ProductKind::CurrencyPack { virtual_currency: "DIAMOND".into(), units });
            assert_eq!(product.delivery_deadline_secs, 300);
        }
        for days in [30, 90, 365] {
            let product = catalog.get(&format!("svip_{days}d")).unwrap();
            assert_eq!(product.kind, ProductKind::Membership { plan: "svip".into(), days });
        }
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_product_named() {
        let base =
            "[[product]]\nsku = \"p\"\ntitle = \"t\"\ncurrency = \"CNY\"\nkind = \"membership\"\nplan = \"svip\"\n";
        let cases = [
            (format!("{base}price = \"0\"\ndays = 3\n"), "above zero"),
            (format!("{base}price = \"1.001\"\ndays = 3\n"), "decimal places"),
            (format!("{base}price = \"1\"\ndays = 0\n"), "days"),
            (format!("{base}price = \"1\"\ndays = 3\ndelivery_deadline_secs = 1\n"), "deadline"),
            (format!("{base}price = \"1\"\ndays = 3\nsurprise = 1\n"), "surprise"),
        ];
        for (text, needle) in cases {
            let err = Catalog::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        assert_eq!(Catalog::from_toml("").unwrap_err(), CatalogError::Empty);
        let card = "[[product]]\nsku = \"c\"\ntitle = \"t\"\ncurrency = \"CNY\"\nprice = \"5\"\nkind = \"card_key\"\n";
        let cases = [
            (format!("{card}quantity_max = 2\n"), "one code per order"),
            (format!("{card}compensation = {{ percent = 10 }}\n"), "currency packs only"),
            (format!("{card}compensation = {{ days = 1, units = 3 }}\n"), "is one of"),
            (format!("{card}plan = \"svip\"\n"), "has no plan"),
            (format!("{base}price = \"1\"\ndays = 3\ncompensation = {{ days = 0 }}\n"), "days must be"),
        ];
        for (text, needle) in cases {
            let err = Catalog::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn the_shipped_catalog_has_card_keys_and_external_goods() {
        let catalog = Catalog::default_catalog();
        let card = catalog.get("game_card_50").unwrap();
        assert_eq!(card.kind, ProductKind::CardKey);
        assert_eq!(card.quantity_max, 1);
        let gold = catalog.get("game_gold_100").unwrap();
        assert!(matches!(&gold.kind, ProductKind::External { endpoint, .. } if endpoint == "game"));
        assert_eq!(gold.on_deadline_miss, MissPolicy::Refund);
        assert_eq!(gold.compensation, Some(Compensation::Units { currency: "DIAMOND".into(), units: 10 }));
    }

    #[test]
    fn the_shipped_catalog_has_auto_renewing_plans() {
        let catalog = Catalog::default_catalog();
        let monthly = catalog.plans().get("svip_monthly").unwrap().current().unwrap();
        assert_eq!((monthly.price, monthly.minimum_term_periods), (Money::new(2500, Currency::Cny), 0));
        let commit = catalog.plans().get("svip_yearly_commit").unwrap().current().unwrap();
        assert_eq!(commit.minimum_term_periods, 12);
        let bad = format!("{DEFAULT_CATALOG_TOML}\n[[plan]]\nid = \"svip_monthly\"\ntitle = \"t\"\nmembership = \"svip\"\ncurrency = \"CNY\"\n");
        assert!(matches!(Catalog::from_toml(&bad), Err(CatalogError::Plan(_))));
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
