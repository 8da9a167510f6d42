//! The sentences of renewal notifications and refunds, in zh-CN and en.
//!
//! Each one says what happened or will happen, why, whose side it is on, and what happens
//! next with a time; refund sentences say where the money goes and how long the provider's
//! channel takes, never a promise zerodrop cannot keep.

use crate::money::Money;
use crate::terms::{LapsePolicy, TermsVersion};
use crate::texts::{format_utc, Texts};
use serde::{Deserialize, Serialize};

/// The reminder before a renewal charge: amount, date, terms version, how to end it.
pub fn renewal_reminder(terms: &TermsVersion, plan_title: &str, charge_at_ms: i64, paid_until_ms: i64) -> Texts {
    let at = format_utc(charge_at_ms);
    let end = format_utc(paid_until_ms);
    let (price, v) = (terms.price, terms.version);
    let how = &terms.how_to_terminate;
    Texts::new(
        format!(
            "「{plan_title}」将于 {at} 自动续费，扣款 {price}（条款第 {v} 版），当前会员有效期至 {end}。\
             如不想续费，可在扣款前随时一步解约：{}",
            how.zh_cn
        ),
        format!(
            "{plan_title} renews automatically at {at} for {price} (terms v{v}); your membership currently \
             lasts until {end}. To stop it, end the agreement in one step at any time before then: {}",
            how.en
        ),
    )
}

/// The reminder before a membership ends without renewing (a terminated agreement, or
/// a membership bought once), so an expiry never looks like a lost order.
pub fn expiry_reminder(membership_title: &str, paid_until_ms: i64) -> Texts {
    let end = format_utc(paid_until_ms);
    Texts::new(
        format!("你的「{membership_title}」会员将于 {end} 到期，到期后不会自动扣款。如需继续，请在到期前后自行购买。"),
        format!(
            "Your {membership_title} membership ends at {end}. Nothing will be charged automatically; buy again \
             before or after then if you want to continue."
        ),
    )
}

/// A renewal charge failed: the membership stays through the grace, and when the next
/// attempt (if any) and the lapse happen.
pub fn charge_failed(
    terms: &TermsVersion,
    plan_title: &str,
    next_attempt_at_ms: Option<i64>,
    lapse_at_ms: i64,
) -> Texts {
    let price = terms.price;
    let lapse = format_utc(lapse_at_ms);
    let (next_zh, next_en) = match next_attempt_at_ms {
        Some(at) => {
            let at = format_utc(at);
            (format!("我们将于 {at} 再试一次"), format!("we will try again at {at}"))
        }
        None => ("不会再尝试扣款".to_owned(), "no further attempt will be made".to_owned()),
    };
    Texts::new(
        format!(
            "「{plan_title}」续费扣款 {price} 未成功（支付平台未完成扣款，可能是余额不足或支付方式受限）。\
             会员在宽限期内保持有效；{next_zh}。如 {lapse} 前仍未成功，会员将到期。你也可以随时解约。"
        ),
        format!(
            "The {plan_title} renewal charge of {price} did not go through (the payment provider did not complete \
             it, for example for lack of funds or a restricted payment method). Your membership stays active \
             during the grace period; {next_en}. If no charge succeeds by {lapse}, the membership ends. You can \
             end the agreement at any time."
        ),
    )
}

/// The grace ran out: the membership lapsed, and what became of the agreement.
pub fn lapsed(terms: &TermsVersion, plan_title: &str, lapse_at_ms: i64, next_charge_at_ms: Option<i64>) -> Texts {
    let at = format_utc(lapse_at_ms);
    match (terms.lapse_policy, next_charge_at_ms) {
        (LapsePolicy::Terminate, _) => Texts::new(
            format!("「{plan_title}」续费在宽限期内未能扣款成功，会员已于 {at} 到期；按条款，自动续费协议已终止，不会再扣款。"),
            format!(
                "The {plan_title} renewal could not be charged within the grace period, so the membership ended \
                 at {at}. As the terms say, the auto-renewal agreement is terminated and nothing more will be \
                 charged."
            ),
        ),
        (LapsePolicy::KeepAgreement, next) => {
            let next = next.map(format_utc).unwrap_or_else(|| "-".to_owned());
            Texts::new(
                format!(
                    "「{plan_title}」续费在宽限期内未能扣款成功，会员已于 {at} 到期。按条款，自动续费协议保留，\
                     下次将于 {next} 尝试续费；不想继续可随时一步解约。"
                ),
                format!(
                    "The {plan_title} renewal could not be charged within the grace period, so the membership \
                     ended at {at}. As the terms say, the agreement stays and the next renewal is tried at \
                     {next}; end it in one step at any time if you do not want that."
                ),
            )
        }
    }
}

/// Where a refund goes, as the provider's refund channel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundChannel {
    /// The payer's balance at the provider (Alipay balance, WeChat change).
    Balance,
    /// A bank card (debit or credit) behind the payment.
    BankCard,
    /// The provider did not say (yet).
    Unknown,
}

/// Where a refund goes and how long the provider takes, without promising more.
pub fn refund_arrival(amount: Money, provider: &str, channel: RefundChannel) -> Texts {
    match channel {
        RefundChannel::Balance => Texts::new(
            format!("退款 {amount} 已由{provider}原路退回你的余额，通常几分钟内到账。"),
            format!("The refund of {amount} goes back through {provider} to your balance, usually within minutes."),
        ),
        RefundChannel::BankCard => Texts::new(
            format!("退款 {amount} 已由{provider}原路退回你的银行卡，银行通常需要 1–7 个工作日入账，具体以银行为准。"),
            format!(
                "The refund of {amount} goes back through {provider} to your bank card; banks usually take 1–7 \
                 working days to post it, as your bank decides."
            ),
        ),
        RefundChannel::Unknown => Texts::new(
            format!(
                "退款 {amount} 已提交{provider}原路退回：退到余额通常几分钟内到账，退到银行卡通常需要 1–7 个工作日。"
            ),
            format!(
                "The refund of {amount} is on its way back through {provider} to where it came from: minutes to a \
                 balance, usually 1–7 working days to a bank card."
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::DAY_MS;
    use crate::money::Currency;
    use crate::renewal::tests::terms;

    #[test]
    fn the_renewal_reminder_cites_amount_date_version_and_the_way_out() {
        let t = terms();
        let text = renewal_reminder(&t, "SVIP", 9 * DAY_MS, 10 * DAY_MS);
        for needle in ["25.00 CNY", "1970-01-10 00:00 UTC", "1970-01-11 00:00 UTC"] {
            assert!(text.zh_cn.contains(needle) && text.en.contains(needle), "{needle}: {text:?}");
        }
        assert!(text.zh_cn.contains("第 1 版") && text.en.contains("terms v1"));
        assert!(text.zh_cn.contains(&t.how_to_terminate.zh_cn) && text.en.contains(&t.how_to_terminate.en));
    }

    #[test]
    fn failures_and_lapses_state_the_next_time() {
        let mut t = terms();
        let failed = charge_failed(&t, "SVIP", Some(DAY_MS), 3 * DAY_MS);
        assert!(failed.en.contains("1970-01-02 00:00 UTC") && failed.zh_cn.contains("1970-01-04 00:00 UTC"));
        let last = charge_failed(&t, "SVIP", None, 3 * DAY_MS);
        assert!(last.en.contains("no further attempt") && last.zh_cn.contains("不会再尝试"));
        let ended = lapsed(&t, "SVIP", 3 * DAY_MS, None);
        assert!(ended.en.contains("terminated") && ended.zh_cn.contains("协议已终止"));
        t.lapse_policy = LapsePolicy::KeepAgreement;
        let kept = lapsed(&t, "SVIP", 3 * DAY_MS, Some(32 * DAY_MS));
        assert!(kept.en.contains("1970-02-02 00:00 UTC") && kept.zh_cn.contains("1970-02-02 00:00 UTC"));
        let expiry = expiry_reminder("SVIP", 3 * DAY_MS);
        assert!(expiry.en.contains("1970-01-04 00:00 UTC") && expiry.zh_cn.contains("不会自动扣款"));
    }

    #[test]
    fn refunds_say_where_the_money_goes_and_how_long_it_takes() {
        let amount = Money::new(2500, Currency::Cny);
        let card = refund_arrival(amount, "支付宝/Alipay", RefundChannel::BankCard);
        assert!(card.en.contains("1–7 working days") && card.zh_cn.contains("1–7 个工作日"));
        assert!(!card.en.contains("minutes"), "a bank card refund is never promised in minutes");
        let balance = refund_arrival(amount, "Alipay", RefundChannel::Balance);
        assert!(balance.en.contains("minutes") && balance.zh_cn.contains("25.00 CNY"));
        let unknown = refund_arrival(amount, "Alipay", RefundChannel::Unknown);
        assert!(unknown.en.contains("minutes to a balance") && unknown.en.contains("1–7 working days"));
    }
}
