//! What the sandbox knows: merchants, trades, withholding agreements and its own ledger
//! of charges.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use zerodrop_domain::money::Money;
use zerodrop_providers::keys::RsaPublicKey;

#[derive(Clone, Debug)]
pub struct Merchant {
    pub app_id: String,
    pub seller_id: String,
    pub app_public_key: RsaPublicKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TradeStatus {
    WaitBuyerPay,
    Success,
    Closed,
}

impl TradeStatus {
    pub fn alipay_name(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::Success => "TRADE_SUCCESS",
            TradeStatus::Closed => "TRADE_CLOSED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Trade {
    pub trade_no: String,
    pub out_trade_no: String,
    pub app_id: String,
    pub seller_id: String,
    pub amount: Money,
    pub subject: String,
    pub status: TradeStatus,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub notify_url: String,
    /// Everything refunded on this trade so far, in minor units.
    pub refunded_minor: i64,
}

/// Where a withholding agreement stands, in Alipay's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AgreementState {
    /// The user opened the sign page and has not confirmed.
    Temp,
    Normal,
    /// Ended, by the merchant or by the user in the app.
    Stop,
}

impl AgreementState {
    pub fn alipay_name(self) -> &'static str {
        match self {
            AgreementState::Temp => "TEMP",
            AgreementState::Normal => "NORMAL",
            AgreementState::Stop => "STOP",
        }
    }
}

/// A withholding agreement between a user and a merchant's app.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    /// The merchant's number for it, unique per merchant app.
    pub external_agreement_no: String,
    /// The sandbox's number, given when the user signs (empty while TEMP).
    pub agreement_no: String,
    pub app_id: String,
    pub status: AgreementState,
    /// The user who signed (Alipay's 2088… user id).
    pub user_id: String,
    /// Where its sign and unsign notifications go (the sign request's `notify_url`).
    pub notify_url: String,
    pub signed_at_ms: Option<i64>,
    /// Its `invalid_time`: no charge after it.
    pub valid_until_ms: i64,
    pub unsigned_at_ms: Option<i64>,
    /// The most one charge may take.
    pub single_amount_minor: i64,
    /// The most all charges together may take, if the sign request capped it.
    pub total_amount_minor: Option<i64>,
    /// Everything charged under it so far.
    pub charged_minor: i64,
    pub period_days: u32,
}

/// A refund the sandbox holds, by (out_trade_no, out_request_no).
#[derive(Clone, Debug)]
pub struct SandboxRefund {
    pub amount_minor: i64,
    /// When the money goes back (a processing delay is a fault knob).
    pub completes_at_ms: i64,
    pub notified: bool,
}

/// One refund the sandbox paid out: the other half of the provider's books.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub trade_no: String,
    pub out_trade_no: String,
    pub request_no: String,
    pub amount_minor: i64,
    pub requested_at_ms: i64,
}

/// One charge the sandbox made: what a real provider's bill would list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub trade_no: String,
    pub out_trade_no: String,
    pub amount_minor: i64,
    pub paid_at_ms: i64,
    /// Paid after the order's `time_expire` (only possible with `late_pay_grace_ms`).
    pub late: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub notifications_planned: u64,
    pub notifications_dropped: u64,
    pub notifications_duplicated: u64,
    pub notifications_stale: u64,
    pub sends: u64,
    pub sends_acknowledged: u64,
    pub sends_refused: u64,
    pub gateway_calls: u64,
    pub gateway_failed: u64,
}

impl Ledger {
    /// The trade a gateway call names: by trade number when given (it wins, as at
    /// Alipay), else the order's trade by merchant order number.
    pub fn trade_mut(&mut self, out_trade_no: &str, trade_no: &str) -> Option<&mut Trade> {
        if trade_no.is_empty() {
            if self.trades.contains_key(out_trade_no) {
                return self.trades.get_mut(out_trade_no);
            }
            // A merchant order number only an off-path payment named (one the merchant
            // never issued): Alipay finds its trade by that number too.
            return self.extra_trades.values_mut().find(|t| t.out_trade_no == out_trade_no);
        }
        if let Some(extra) = self.extra_trades.get_mut(trade_no) {
            return (out_trade_no.is_empty() || extra.out_trade_no == out_trade_no).then_some(extra);
        }
        self.trades
            .values_mut()
            .find(|t| t.trade_no == trade_no && (out_trade_no.is_empty() || t.out_trade_no == out_trade_no))
    }
}

#[derive(Default)]
pub struct Ledger {
    pub merchants: HashMap<String, Merchant>,
    /// Each order's trade, by merchant order number.
    pub trades: HashMap<String, Trade>,
    /// Trades that are not an order's first: a second payment of a paid order, a payment
    /// of another amount, a payment naming an order number the merchant never issued. By
    /// trade number.
    pub extra_trades: HashMap<String, Trade>,
    pub charges: Vec<Charge>,
    pub refunds: HashMap<(String, String), SandboxRefund>,
    pub refund_records: Vec<RefundRecord>,
    pub next_trade_seq: u64,
    pub stats: Stats,
    /// Merchant order numbers whose payments are hidden (`Faults::hide_rate_pct`) until
    /// revealed.
    pub hidden: std::collections::HashSet<String>,
    /// Bill download URLs handed out, by token.
    pub bill_grants: HashMap<String, crate::bills::BillGrant>,
    /// Withholding agreements, by the merchant's `external_agreement_no`.
    pub agreements: HashMap<String, Agreement>,
    pub next_agreement_seq: u64,
    /// Merchant order numbers of agreement charges still processing (answered 10003).
    pub withholding_in_flight: std::collections::HashSet<String>,
}
