//! The per-period proof: for every charge confirmed in a period, its one outcome with the
//! sealed records that show it; the totals, tied to the provider's bills imported for the
//! period; the figures; and the signed checkpoints that seal the records.
//!
//! [`write`] streams the report to a file (a period may hold millions of charges: they are
//! read a page at a time and written as they are read). [`verify`] holds a report to the
//! database and the seal log again: every record it names must still be there with the
//! same seal, its seal must still be the hash of its content and chain, and the checkpoints
//! must be signed, chained and unchanged. [`entry::for_order`] is one order's part of it,
//! the user's own proof behind the receipt page.
//!
//! The file is one JSON object: `{"header": {...}, "body": {...}}`; the header carries the
//! SHA-256 of the body's bytes exactly as written.

pub mod bills;
pub mod cover;
pub mod entry;
pub mod verify;
pub mod write;

use crate::outcome::Outcome;
use crate::seal::checkpoint::Checkpoint;
use crate::stats::{AttentionAges, Window};
use serde::{Deserialize, Serialize};

/// The report's layout version; `verify` refuses others.
pub const SCHEMA_VERSION: i64 = 1;
/// What the header's `kind` says, so a stray JSON file is not taken for a proof.
pub const KIND: &str = "zerodrop-proof";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub kind: String,
    pub schema_version: i64,
    /// The period, `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub generated_at_ms: i64,
    /// Hex SHA-256 of the body's bytes as they are in the file.
    pub body_sha256: String,
}

/// One charge of the period and what shows its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub charge: ChargeRef,
    /// The order it was paid for, when zerodrop knows one.
    pub order: Option<OrderRef>,
    pub outcome: Outcome,
    /// When it reached its outcome (delivered, or its money going back), if it has.
    pub reached_at_ms: Option<i64>,
    /// Its deadline (the order's delivery deadline, or when its own refund was due).
    pub deadline_ms: i64,
    /// Whether its outcome came after its deadline plus the grace.
    pub late: bool,
    /// The order's events that decided it (capture, delivery, refund decisions and ends).
    pub events: Vec<EventRef>,
    pub delivery: Option<DeliveryRef>,
    pub refunds: Vec<RefundRef>,
    /// The ledger transfers made for the order, with their entries' seals.
    pub transfers: Vec<TransferRef>,
    /// Open attention items that hold it (a person, and when their clock runs out).
    pub attention: Vec<AttentionRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRef {
    pub id: i64,
    pub provider: String,
    pub trade_no: String,
    pub order_no: String,
    pub class: String,
    pub amount_minor: i64,
    pub currency: String,
    pub paid_at_ms: Option<i64>,
    pub recorded_at_ms: i64,
    pub seal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    pub id: String,
    pub order_no: String,
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub seq: i64,
    pub kind: String,
    pub at_ms: i64,
    pub seal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRef {
    pub kind: String,
    pub delivered_at_ms: i64,
    pub seal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRef {
    pub id: String,
    pub request_no: String,
    pub state: String,
    pub amount_minor: i64,
    pub full: bool,
    pub created_at_ms: i64,
    pub seal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRef {
    pub id: String,
    pub currency: String,
    pub amount: i64,
    pub entries: Vec<LedgerEntryRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntryRef {
    pub account_id: String,
    /// The entry's place in its account's chain.
    pub seq: Option<i64>,
    pub at_ms: i64,
    pub seal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionRef {
    pub id: i64,
    pub reason: String,
    pub due_at_ms: Option<i64>,
}

/// Charges and amounts with one outcome, in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeTotal {
    pub outcome: Outcome,
    pub currency: String,
    pub count: i64,
    pub amount_minor: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub charges: i64,
    pub by_outcome: Vec<OutcomeTotal>,
    /// Charges with no outcome past their bound, per million charges of the period.
    pub drop_rate_ppm: i64,
    pub late: i64,
}

impl Totals {
    /// Adds one entry.
    pub fn add(&mut self, entry: &Entry) {
        self.charges += 1;
        self.late += i64::from(entry.late);
        let slot =
            self.by_outcome.iter_mut().find(|t| t.outcome == entry.outcome && t.currency == entry.charge.currency);
        match slot {
            Some(t) => {
                t.count += 1;
                t.amount_minor += entry.charge.amount_minor;
            }
            None => {
                self.by_outcome.push(OutcomeTotal {
                    outcome: entry.outcome,
                    currency: entry.charge.currency.clone(),
                    count: 1,
                    amount_minor: entry.charge.amount_minor,
                });
                self.by_outcome.sort_by(|a, b| (a.outcome, &a.currency).cmp(&(b.outcome, &b.currency)));
            }
        }
        let dropped = self.by_outcome.iter().filter(|t| t.outcome == Outcome::None).map(|t| t.count).sum();
        self.drop_rate_ppm = crate::stats::ppm(dropped, self.charges);
    }
}

/// The figures of the period, as `GET /v1/stats` gives them for its windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodFigures {
    pub window: Window,
    /// Open attention when the report was made.
    pub attention: AttentionAges,
}

/// Everything after the charges: read back whole by `verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub from_ms: i64,
    pub to_ms: i64,
    pub charges: Vec<Entry>,
    pub totals: Totals,
    pub figures: PeriodFigures,
    pub bills: bills::BillsTie,
    pub checkpoints: Vec<Checkpoint>,
    pub unsealed: cover::Unsealed,
}
