//! A provider's bill, as zerodrop reads it: the lines of its table and the totals it
//! states. The parsers live with each provider's adapter; these are the types the
//! reconciliation stores and matches, whatever the provider.

use crate::money::Money;

/// What a bill line records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BillLineKind {
    /// A payment taken (Alipay: 业务类型 交易).
    Trade,
    /// Money given back on a trade (Alipay: 退款; negative in the file, positive here).
    Refund,
}

impl BillLineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BillLineKind::Trade => "trade",
            BillLineKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<BillLineKind> {
        match text {
            "trade" => Some(BillLineKind::Trade),
            "refund" => Some(BillLineKind::Refund),
            _ => None,
        }
    }
}

/// One line of a bill's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillLine {
    /// The line in the file (1-based, every line counted, comments included).
    pub line_no: u64,
    /// Lower-case hex SHA-256 of the line's bytes as they were in the file (before any
    /// decoding, without its line ending).
    pub line_sha256: String,
    pub kind: BillLineKind,
    /// The provider's trade number (Alipay: 支付宝交易号).
    pub trade_no: String,
    /// The merchant's order number (Alipay: 商户订单号): ours, or one we never issued.
    pub order_no: String,
    /// The refund's request number (Alipay: 退款批次号/请求号); empty for trades.
    pub refund_no: String,
    /// Always positive: a trade's amount taken, or a refund's amount given back.
    pub amount: Money,
    pub created_at_ms: i64,
    /// When the trade was paid, or the refund made (Alipay: 完成时间).
    pub finished_at_ms: i64,
}

/// What a bill says about itself: whose it is, the range it covers, and its totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillHeader {
    /// The merchant account the bill is for (Alipay: 账号).
    pub account: String,
    /// The range, `[from, to)`, in Unix milliseconds.
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The totals a bill states at its end, checked against the sum of its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BillTotals {
    pub trade_count: u64,
    /// Positive, in minor units.
    pub trade_total_minor: i64,
    pub refund_count: u64,
    /// Positive, in minor units (the file writes it negative).
    pub refund_total_minor: i64,
}
