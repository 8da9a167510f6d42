//! Refund rules: how much may be refunded, and how much of the goods a refund takes back.

/// The most that may still be refunded: what was paid, less what was refunded or is being
/// refunded. Refunds can never exceed payments.
pub fn refundable(paid_minor: i64, refunded_or_pending_minor: i64) -> i64 {
    (paid_minor - refunded_or_pending_minor).max(0)
}

/// The share of `granted` that a refund of `refund_minor` out of `paid_minor` takes back,
/// rounded down (the user keeps any fraction). A full refund takes back everything.
pub fn reclaim_share(granted: i64, refund_minor: i64, paid_minor: i64) -> i64 {
    if paid_minor <= 0 || refund_minor <= 0 {
        return 0;
    }
    if refund_minor >= paid_minor {
        return granted;
    }
    // i128: units (≤ 10^8 × 1000) times minor units (≤ 10^9) would overflow i64.
    let share = i128::from(granted) * i128::from(refund_minor) / i128::from(paid_minor);
    i64::try_from(share).unwrap_or(granted)
}

/// Splits a reclaim between what is still in the wallet (taken back) and what was already
/// spent (the platform's loss).
pub fn split_reclaim(reclaim: i64, wallet_balance: i64) -> (i64, i64) {
    let taken = reclaim.min(wallet_balance.max(0));
    (taken, reclaim - taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shares_round_down_and_full_refunds_take_everything() {
        assert_eq!(reclaim_share(60, 300, 600), 30);
        assert_eq!(reclaim_share(60, 1, 600), 0);
        assert_eq!(reclaim_share(60, 600, 600), 60);
        assert_eq!(reclaim_share(30, 100, 3000), 1);
        assert_eq!(split_reclaim(60, 25), (25, 35));
        assert_eq!(split_reclaim(60, 100), (60, 0));
        assert_eq!(refundable(600, 250), 350);
        assert_eq!(refundable(600, 700), 0);
    }

    proptest! {
        /// However a payment is split into partial refunds, the goods taken back never
        /// exceed what was granted.
        #[test]
        fn partial_refunds_never_take_back_more_than_was_granted(
            granted in 1i64..1_000_000,
            paid in 1i64..1_000_000_000,
            parts in proptest::collection::vec(1i64..1_000_000_000, 1..8),
        ) {
            let mut refunded = 0;
            let mut taken = 0;
            for part in parts {
                let amount = part.min(refundable(paid, refunded));
                if amount == 0 { break; }
                taken += reclaim_share(granted, amount, paid);
                refunded += amount;
            }
            prop_assert!(refunded <= paid);
            prop_assert!(taken <= granted);
        }
    }
}
