//! Fault knobs. Rates are whole percentages (0–100); no floats near the dice either.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of payments whose notifications are never sent at all (a payment whose notification never reaches the platform: 支付未同步).
    pub drop_rate_pct: u32,
    /// The same for trades off the expected path (a second payment, another amount, an
    /// order number never issued). Separate because zerodrop finds an order's one trade
    /// by asking about the order, but an extra trade it learns of only from its
    /// notification or from the day's bill: a scenario that loses them entirely is one for
    /// reconciliation, not of the ordinary lost notification.
    pub extra_trade_drop_rate_pct: u32,
    /// Share of notifications sent twice.
    pub duplicate_rate_pct: u32,
    /// Share of payments followed by a stale `WAIT_BUYER_PAY` notification that arrives
    /// after the `TRADE_SUCCESS` one (out-of-order delivery).
    pub reorder_rate_pct: u32,
    /// Each notification waits a random time in this range before it is sent, so
    /// notifications of different orders (and copies of one) arrive in any order.
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// The gateway answers HTTP 503 until this time (Unix ms): an outage.
    pub gateway_down_until_ms: i64,
    /// The gateway waits this long before answering.
    pub gateway_slow_ms: u64,
    /// Share of gateway calls answered with code 20000 (outcome unknown).
    pub gateway_unknown_rate_pct: u32,
    /// How long after an order's `time_expire` the sandbox still accepts payment, as a
    /// provider with a laxer clock would: such payments land on expired orders (late).
    pub late_pay_grace_ms: i64,
    /// Refunds stay "processing" this long before the money goes back (0: at once).
    pub refund_delay_ms: i64,
    /// Refunds are refused for good (`ACQ.TRADE_NOT_ALLOW_REFUND`), as for a trade the
    /// provider has frozen: nothing is paid out.
    pub refund_refused: bool,
    /// Retry schedule scale for unacknowledged notifications, in percent of Alipay's
    /// real schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h). 100 is realistic; tests use ~1.
    pub retry_scale_pct: u32,
    /// Notifications are sent in GBK (`charset=GBK`, the form's bytes in GBK, signed over
    /// the GBK bytes), as Alipay sends them to an app set up with GBK. Not a fault: a
    /// setting some real integrations have.
    pub notify_in_gbk: bool,
    /// Share of payments the provider hides until [`crate::Sandbox::reveal_hidden`]: no
    /// notification is ever sent, and the gateway answers `ACQ.TRADE_NOT_EXIST` about
    /// them (query and close), past the order's whole schedule. Only the day's bill shows
    /// them: the lost database, or a provider that lost its own answers for a while.
    pub hide_rate_pct: u32,
    /// Trade numbers whose lines (the trade and its refunds) the sandbox's bills leave
    /// out: a payment the provider's bill does not list.
    pub bill_omit_trade_nos: Vec<String>,
    /// Trade number → minor units added to its amount in the sandbox's bills: a bill
    /// whose amount differs from the charge.
    pub bill_add_minor: BTreeMap<String, i64>,
    /// Agreements (by the provider's `agreement_no` or our `external_agreement_no`) whose
    /// charges are declined with `ACQ.BUYER_BALANCE_NOT_ENOUGH`: a user whose balance
    /// cannot pay the renewal.
    pub agreement_decline_nos: Vec<String>,
    /// Share of charges under an agreement answered 10003 (processing) instead of paid at
    /// once; each is paid [`Faults::agreement_charge_settle_ms`] later, notified then.
    pub agreement_charge_processing_pct: u32,
    /// How long a processing agreement charge takes to be paid.
    pub agreement_charge_settle_ms: i64,
    /// Agreements signed from now on are valid this long (their `invalid_time`); 0 means
    /// Alipay's default, a date a century away. Past it the sandbox refuses charges but
    /// sends no notification and its query still says NORMAL: the merchant expires it.
    pub agreement_valid_ms: i64,
}

/// Default for [`Faults::agreement_charge_settle_ms`]: long enough that a merchant sees
/// the "processing" state, short enough for a test to wait out.
pub const AGREEMENT_CHARGE_SETTLE_MS_DEFAULT: i64 = 1_000;

impl Faults {
    /// No faults, and Alipay's real retry schedule.
    pub fn none() -> Faults {
        Faults {
            drop_rate_pct: 0,
            extra_trade_drop_rate_pct: 0,
            duplicate_rate_pct: 0,
            reorder_rate_pct: 0,
            delay_ms_min: 0,
            delay_ms_max: 0,
            gateway_down_until_ms: 0,
            gateway_slow_ms: 0,
            gateway_unknown_rate_pct: 0,
            late_pay_grace_ms: 0,
            refund_delay_ms: 0,
            refund_refused: false,
            notify_in_gbk: false,
            retry_scale_pct: 100,
            hide_rate_pct: 0,
            bill_omit_trade_nos: Vec::new(),
            bill_add_minor: BTreeMap::new(),
            agreement_decline_nos: Vec::new(),
            agreement_charge_processing_pct: 0,
            agreement_charge_settle_ms: AGREEMENT_CHARGE_SETTLE_MS_DEFAULT,
            agreement_valid_ms: 0,
        }
    }
}

/// Fields left out of a faults document (`--faults`, `POST /sandbox/faults`) mean "no
/// fault" and Alipay's real retry schedule, never a retry loop with no pause.
impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

/// True with probability `pct` percent.
pub fn roll(pct: u32) -> bool {
    pct > 0 && rand::rng().random_range(0..100) < pct
}

pub fn delay_ms(faults: &Faults) -> u64 {
    if faults.delay_ms_max <= faults.delay_ms_min {
        return faults.delay_ms_min;
    }
    rand::rng().random_range(faults.delay_ms_min..=faults.delay_ms_max)
}

/// Alipay's retry intervals after an unacknowledged notification, in seconds: 8 sends in
/// about 25 hours, then silence.
pub const ALIPAY_RETRY_SECS: [u64; 7] = [240, 600, 600, 3_600, 7_200, 21_600, 54_000];

pub fn retry_delay_ms(faults: &Faults, retry: usize) -> Option<u64> {
    let secs = ALIPAY_RETRY_SECS.get(retry)?;
    Some(secs * 1000 * u64::from(faults.retry_scale_pct) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_faults_document_keeps_the_real_retry_schedule() {
        let faults: Faults = serde_json::from_str(r#"{"drop_rate_pct": 20}"#).unwrap();
        assert_eq!(faults.drop_rate_pct, 20);
        assert_eq!(faults.extra_trade_drop_rate_pct, 0, "extra trades are lost only when asked for");
        assert_eq!(faults.retry_scale_pct, 100);
        assert_eq!(retry_delay_ms(&faults, 0), Some(240_000));
        assert_eq!(retry_delay_ms(&faults, 7), None, "8 sends, then silence");
        assert!(serde_json::from_str::<Faults>(r#"{"drop": 1}"#).is_err(), "unknown knobs are refused");
        assert_eq!(faults.agreement_charge_settle_ms, AGREEMENT_CHARGE_SETTLE_MS_DEFAULT);
        assert!(faults.agreement_decline_nos.is_empty() && faults.agreement_charge_processing_pct == 0);
        let faults: Faults = serde_json::from_str(r#"{"agreement_decline_nos": ["A1"]}"#).unwrap();
        assert_eq!(faults.agreement_decline_nos, ["A1"]);
    }
}
