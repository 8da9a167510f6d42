//! Versioned terms of auto-renewing plans: what a user consents to when signing.
//!
//! A plan (`svip_monthly`) has numbered versions of its terms. An agreement records the
//! version it was signed under, and every quote, reminder and termination cites that
//! version, so a later edit never changes what an existing agreement promised. The
//! version's canonical JSON is what a signature cites (the caller hashes it).

use crate::ids::Sku;
use crate::money::{parse_decimal_minor, Currency, Money, AMOUNT_MINOR_MAX};
use crate::texts::Texts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest terms version number: versions are edits by people, not a counter.
pub const TERMS_VERSION_MAX: u32 = 10_000;
/// Longest renewal period in days: a year (leap years included). Longer periods are
/// prepaid products, not renewals.
pub const PERIOD_DAYS_MAX: i64 = 366;
/// Shortest renewal period: the charge is made a day before the end, after the reminder,
/// so a period needs room for both.
pub const PERIOD_DAYS_MIN: i64 = 7;
/// Longest minimum term, in periods: three years of monthly periods. Longer lock-ins are
/// what S18 complains about.
pub const MINIMUM_TERM_PERIODS_MAX: i64 = 36;
/// Grace after a failed renewal, in days, when the terms do not say: it covers the
/// default retries (+1 and +3 days after the first attempt, which is a day early).
pub const GRACE_DAYS_DEFAULT: i64 = 3;
/// Longest grace: a month of free membership while retrying is already generous.
pub const GRACE_DAYS_MAX: i64 = 30;
/// Retries after a failed renewal charge, in days after the first attempt.
pub const RETRY_OFFSETS_DAYS_DEFAULT: [i64; 2] = [1, 3];
/// Most retries: each one is a charge attempt the user sees on their statement.
pub const RETRIES_MAX: usize = 5;
/// Days before the paid period ends that the renewal reminder goes out.
pub const REMIND_DAYS_BEFORE_DEFAULT: i64 = 3;
/// Latest reminder: two weeks ahead is still about this renewal, not a newsletter.
pub const REMIND_DAYS_BEFORE_MAX: i64 = 14;
/// Days before the paid period ends that the renewal charge is made (after querying the
/// agreement at the provider), so a failure leaves time before the membership ends.
pub const CHARGE_LEAD_DAYS: i64 = 1;
/// Longest `how_to_terminate` text per language: one screen, not a contract.
pub const HOW_TO_TERMINATE_CHARS_MAX: usize = 2000;
/// Share percentages are whole percents of the remaining minimum-term price.
pub const FEE_PERCENT_MAX: i64 = 100;

/// The early-termination fee rule of a terms version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeeRule {
    /// No fee, ever.
    None,
    /// A fixed amount, capped at the price of the minimum-term periods not yet paid.
    Fixed { amount: Money },
    /// `percent` whole percent of the price of the minimum-term periods not yet paid,
    /// rounded down to the minor unit (`remaining × percent / 100` in integers): any
    /// rounding favours the user.
    RemainingShare { percent: i64 },
}

/// When a committed termination takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectiveAt {
    /// The agreement ends when the termination is confirmed.
    AtOnce,
    /// The agreement ends when the period already paid for ends (at once if none is).
    EndOfPaidPeriod,
}

/// What happens to the agreement when a renewal fails through the whole grace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LapsePolicy {
    /// The membership lapses; the agreement stays and renews at the next period.
    KeepAgreement,
    /// The membership lapses and the agreement is terminated (mode `expired`).
    Terminate,
}

/// One version of a plan's terms, exactly as shown to the user before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsVersion {
    pub plan: String,
    /// The membership plan each renewal extends (as a `membership` product's `plan`).
    pub membership: String,
    pub version: u32,
    pub price: Money,
    pub period_days: i64,
    /// Periods the user commits to from signing; 0 means no minimum term.
    pub minimum_term_periods: i64,
    pub early_termination_fee: FeeRule,
    pub termination_effective: EffectiveAt,
    pub grace_days: i64,
    pub retry_offsets_days: Vec<i64>,
    pub lapse_policy: LapsePolicy,
    pub remind_days_before: i64,
    pub how_to_terminate: Texts,
}

impl TermsVersion {
    /// The canonical JSON of this version: object keys sorted, no whitespace. Its hash
    /// identifies exactly the terms a user saw; a change of any field changes it.
    pub fn canonical_json(&self) -> Result<String, serde_json::Error> {
        // serde_json's map is a BTreeMap (the `preserve_order` feature is off), so going
        // through a Value sorts every object's keys whatever the struct's field order.
        Ok(serde_json::to_value(self)?.to_string())
    }

    /// The price of `periods` periods, saturating far above any real amount.
    pub fn price_of_periods(&self, periods: i64) -> Money {
        Money::new(self.price.minor.saturating_mul(periods.max(0)), self.price.currency)
    }
}

/// A plan and all its terms versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub title: String,
    pub membership: String,
    pub versions: BTreeMap<u32, TermsVersion>,
}

impl Plan {
    /// The version new signings consent to: the highest. Validation guarantees one.
    pub fn current(&self) -> Option<&TermsVersion> {
        self.versions.values().next_back()
    }

    pub fn version(&self, version: u32) -> Option<&TermsVersion> {
        self.versions.get(&version)
    }
}

/// The plans of a catalog, by id. Serializes as a map (for `GET /v1/plans/{id}/terms`);
/// it is only built through validation, so it does not deserialize.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Plans {
    plans: BTreeMap<String, Plan>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("catalog is not valid TOML: {0}")]
    Syntax(String),
    #[error("plan {plan} terms v{version}: {field}: {problem}")]
    Invalid { plan: String, version: u32, field: &'static str, problem: String },
    #[error("plan {plan}: {field}: {problem}")]
    InvalidPlan { plan: String, field: &'static str, problem: String },
    #[error("plan {0} appears twice")]
    DuplicatePlan(String),
    #[error("plan {plan} has terms v{version} twice")]
    DuplicateVersion { plan: String, version: u32 },
    #[error("plan {0} has no terms versions")]
    NoVersions(String),
}

#[derive(Deserialize)]
struct RawPlansOnly {
    #[serde(rename = "plan", default)]
    plans: Vec<RawPlan>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    id: String,
    title: String,
    membership: String,
    currency: String,
    #[serde(default)]
    terms: Vec<RawTerms>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerms {
    version: i64,
    /// Decimal string in the currency's major unit ("25.00"), parsed exactly.
    price: String,
    period_days: i64,
    #[serde(default)]
    minimum_term_periods: i64,
    early_termination_fee: Option<RawFee>,
    termination_effective: Option<EffectiveAt>,
    grace_days: Option<i64>,
    retry_offsets_days: Option<Vec<i64>>,
    lapse_policy: Option<LapsePolicy>,
    remind_days_before: Option<i64>,
    how_to_terminate: Texts,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFee {
    kind: String,
    amount: Option<String>,
    percent: Option<i64>,
}

impl Plans {
    /// Reads the `[[plan]]` tables of a catalog file (other tables are the catalog's).
    pub fn from_toml(text: &str) -> Result<Plans, TermsError> {
        let raw: RawPlansOnly = toml::from_str(text).map_err(|e| TermsError::Syntax(e.to_string()))?;
        Plans::from_raw(raw.plans)
    }

    pub(crate) fn from_raw(raw: Vec<RawPlan>) -> Result<Plans, TermsError> {
        let mut plans = BTreeMap::new();
        for raw_plan in raw {
            let plan = validate_plan(raw_plan)?;
            let id = plan.id.clone();
            if plans.insert(id.clone(), plan).is_some() {
                return Err(TermsError::DuplicatePlan(id));
            }
        }
        Ok(Plans { plans })
    }

    pub fn get(&self, id: &str) -> Option<&Plan> {
        self.plans.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

fn validate_plan(raw: RawPlan) -> Result<Plan, TermsError> {
    let bad = |field: &'static str, problem: &str| TermsError::InvalidPlan {
        plan: raw.id.chars().take(80).collect(),
        field,
        problem: problem.to_owned(),
    };
    Sku::parse(&raw.id).map_err(|e| bad("id", &e.to_string()))?;
    if raw.title.trim().is_empty() {
        return Err(bad("title", "must not be empty"));
    }
    Sku::parse(&raw.membership).map_err(|_| bad("membership", "must be a short identifier"))?;
    let currency = Currency::parse(&raw.currency).ok_or_else(|| bad("currency", "unknown currency"))?;
    if raw.terms.is_empty() {
        return Err(TermsError::NoVersions(raw.id));
    }
    let mut versions = BTreeMap::new();
    for raw_terms in &raw.terms {
        let terms = validate_terms(&raw, currency, raw_terms)?;
        let version = terms.version;
        if versions.insert(version, terms).is_some() {
            return Err(TermsError::DuplicateVersion { plan: raw.id.clone(), version });
        }
    }
    Ok(Plan { id: raw.id, title: raw.title, membership: raw.membership, versions })
}

fn validate_terms(plan: &RawPlan, currency: Currency, raw: &RawTerms) -> Result<TermsVersion, TermsError> {
    let version = u32::try_from(raw.version).ok().filter(|v| (1..=TERMS_VERSION_MAX).contains(v));
    let bad = |field: &'static str, problem: String| TermsError::Invalid {
        plan: plan.id.clone(),
        version: version.unwrap_or(0),
        field,
        problem,
    };
    let version = version.ok_or_else(|| bad("version", format!("must be 1..={TERMS_VERSION_MAX}")))?;
    let price = money(&raw.price, currency).map_err(|problem| bad("price", problem))?;
    let in_range = |field: &'static str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(bad(field, format!("must be {min}..={max}, got {value}")))
        }
    };
    let period_days = in_range("period_days", raw.period_days, PERIOD_DAYS_MIN, PERIOD_DAYS_MAX)?;
    let minimum_term_periods = in_range("minimum_term_periods", raw.minimum_term_periods, 0, MINIMUM_TERM_PERIODS_MAX)?;
    let early_termination_fee = match &raw.early_termination_fee {
        None => FeeRule::None,
        Some(fee) => fee_rule(fee, currency, minimum_term_periods).map_err(|p| bad("early_termination_fee", p))?,
    };
    let grace_days = in_range("grace_days", raw.grace_days.unwrap_or(GRACE_DAYS_DEFAULT), 0, GRACE_DAYS_MAX)?;
    let retry_offsets_days = raw.retry_offsets_days.clone().unwrap_or_else(|| RETRY_OFFSETS_DAYS_DEFAULT.to_vec());
    check_retries(&retry_offsets_days, grace_days).map_err(|p| bad("retry_offsets_days", p))?;
    // The reminder comes before the charge, and both fall inside the period.
    let remind_days_before = in_range(
        "remind_days_before",
        raw.remind_days_before.unwrap_or(REMIND_DAYS_BEFORE_DEFAULT),
        CHARGE_LEAD_DAYS + 1,
        REMIND_DAYS_BEFORE_MAX.min(period_days - 1),
    )?;
    for (lang, text) in [("zh_cn", &raw.how_to_terminate.zh_cn), ("en", &raw.how_to_terminate.en)] {
        if text.trim().is_empty() || text.chars().count() > HOW_TO_TERMINATE_CHARS_MAX {
            return Err(bad("how_to_terminate", format!("{lang} must be 1..={HOW_TO_TERMINATE_CHARS_MAX} characters")));
        }
    }
    Ok(TermsVersion {
        plan: plan.id.clone(),
        membership: plan.membership.clone(),
        version,
        price,
        period_days,
        minimum_term_periods,
        early_termination_fee,
        // A user keeps what they paid for unless the terms say otherwise.
        termination_effective: raw.termination_effective.unwrap_or(EffectiveAt::EndOfPaidPeriod),
        grace_days,
        retry_offsets_days,
        // An agreement that could not be charged through the whole grace ends, rather
        // than waking up with a surprise charge a period later.
        lapse_policy: raw.lapse_policy.unwrap_or(LapsePolicy::Terminate),
        remind_days_before,
        how_to_terminate: raw.how_to_terminate.clone(),
    })
}

fn money(text: &str, currency: Currency) -> Result<Money, String> {
    let minor = parse_decimal_minor(text, currency.exponent()).map_err(|e| e.to_string())?;
    if minor <= 0 || minor > AMOUNT_MINOR_MAX {
        return Err("must be above zero and at most the largest order amount".into());
    }
    Ok(Money::new(minor, currency))
}

fn fee_rule(raw: &RawFee, currency: Currency, minimum_term_periods: i64) -> Result<FeeRule, String> {
    let rule = match (raw.kind.as_str(), &raw.amount, raw.percent) {
        ("none", None, None) => return Ok(FeeRule::None),
        ("fixed", Some(amount), None) => FeeRule::Fixed { amount: money(amount, currency)? },
        ("remaining_share", None, Some(percent)) => {
            if !(1..=FEE_PERCENT_MAX).contains(&percent) {
                return Err(format!("percent must be 1..={FEE_PERCENT_MAX}"));
            }
            FeeRule::RemainingShare { percent }
        }
        _ => {
            return Err("is { kind = \"none\" }, { kind = \"fixed\", amount } or \
                        { kind = \"remaining_share\", percent }"
                .into())
        }
    };
    // A fee with no minimum term is a fee from nowhere (S18): refuse it.
    if minimum_term_periods == 0 {
        return Err("a fee needs a minimum term (minimum_term_periods > 0)".into());
    }
    Ok(rule)
}

/// Retries are strictly increasing, at least a day apart from the first attempt, and each
/// lands before the grace ends: the first attempt is `CHARGE_LEAD_DAYS` before the paid
/// period ends and the grace runs `grace_days` after it.
fn check_retries(offsets: &[i64], grace_days: i64) -> Result<(), String> {
    if offsets.len() > RETRIES_MAX {
        return Err(format!("at most {RETRIES_MAX} retries"));
    }
    let latest = grace_days + CHARGE_LEAD_DAYS - 1;
    let mut previous = 0;
    for &offset in offsets {
        if offset <= previous {
            return Err("offsets must be increasing whole days from 1".into());
        }
        if offset > latest {
            return Err(format!("offset {offset} falls after the grace of {grace_days} days (latest {latest})"));
        }
        previous = offset;
    }
    Ok(())
}

#[cfg(test)]
#[path = "terms_tests.rs"]
mod tests;
