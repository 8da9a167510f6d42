//! Status in words: what happened, what happens next, and by when, in zh-CN and en.
//! ("已收到支付宝付款；钻石将在 20:05 前到账，否则自动原路退款")

use zerodrop_domain::catalog::MissPolicy;
use zerodrop_domain::order::{EventKind, OrderStatus};
use zerodrop_store::orders::OrderRow;
use zerodrop_store::refunds::{RefundRow, RefundState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// `?lang=` wins, then `Accept-Language`; Chinese unless English is asked for first.
    pub fn pick(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        let first = query.or(accept_language).unwrap_or("zh-CN");
        if first.trim_start().to_ascii_lowercase().starts_with("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// What delivery of a paid order is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Stock,
    Endpoint,
    Nothing,
}

pub struct Facts<'a> {
    pub order: &'a OrderRow,
    pub refunds: &'a [RefundRow],
    pub waiting: Waiting,
    pub utc_offset_minutes: i32,
    pub now_ms: i64,
}

fn provider_label(provider: &str, lang: Lang) -> &'static str {
    match (provider, lang) {
        ("alipay", Lang::Zh) => "支付宝",
        ("alipay", Lang::En) => "Alipay",
        ("sandbox", Lang::Zh) => "支付宝（沙箱）",
        ("sandbox", Lang::En) => "Alipay (sandbox)",
        (_, Lang::Zh) => "支付渠道",
        (_, Lang::En) => "your payment provider",
    }
}

/// Product titles are written "中文 / English".
pub fn title(order: &OrderRow, lang: Lang) -> String {
    let title = &order.product.title;
    match (title.split_once(" / "), lang) {
        (Some((zh, _)), Lang::Zh) => zh.trim().to_owned(),
        (Some((_, en)), Lang::En) => en.trim().to_owned(),
        (None, _) => title.clone(),
    }
}

/// "20:05" today, "11-23 20:05" on another day, in the page's time zone.
pub fn clock(ms: i64, now_ms: i64, utc_offset_minutes: i32) -> String {
    let shift = i64::from(utc_offset_minutes) * 60_000;
    let local = |t: i64| {
        let nanos = i128::from(t + shift) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    let (at, now) = (local(ms), local(now_ms));
    if at.date() == now.date() {
        format!("{:02}:{:02}", at.hour(), at.minute())
    } else {
        format!("{:02}-{:02} {:02}:{:02}", u8::from(at.month()), at.day(), at.hour(), at.minute())
    }
}

/// The sentence a user reads about their order.
pub fn status_text(facts: &Facts<'_>, lang: Lang) -> String {
    let order = facts.order;
    let at = |ms: Option<i64>| ms.map(|ms| clock(ms, facts.now_ms, facts.utc_offset_minutes)).unwrap_or_default();
    let provider = provider_label(&order.provider, lang);
    let what = title(order, lang);
    let amount = order.amount.to_decimal();
    let refunding: i64 = facts.refunds.iter().filter(|r| r.state != RefundState::Failed).map(|r| r.amount.minor).sum();
    let refund_amount = zerodrop_domain::money::format_minor(refunding, order.amount.currency.exponent());
    let or_else = match (order.product.on_deadline_miss, lang) {
        (MissPolicy::Refund, Lang::Zh) => "否则自动原路退款",
        (MissPolicy::Refund, Lang::En) => "or you get your money back automatically",
        (MissPolicy::Escalate, Lang::Zh) => "否则由客服优先处理",
        (MissPolicy::Escalate, Lang::En) => "or a support agent takes it over with top priority",
    };
    let deliver_by = at(order.deliver_by_ms);
    let mut text = match (order.status, lang) {
        (OrderStatus::AwaitingPayment, Lang::Zh) => format!("等待付款：请在 {} 前完成付款，逾期订单自动关闭，不会扣款。", at(Some(order.expires_at_ms))),
        (OrderStatus::AwaitingPayment, Lang::En) => format!("Waiting for payment: pay before {}; after that the order closes and nothing is charged.", at(Some(order.expires_at_ms))),
        (OrderStatus::Paid, Lang::Zh) => match facts.waiting {
            Waiting::Stock => format!("已收到{provider}付款；{what}暂时缺货，补货后立即发放，最晚 {deliver_by} 前到账，{or_else}。"),
            Waiting::Endpoint | Waiting::Nothing => format!("已收到{provider}付款；{what}将在 {deliver_by} 前到账，{or_else}。"),
        },
        (OrderStatus::Paid, Lang::En) => match facts.waiting {
            Waiting::Stock => format!("Payment received via {provider}. {what} is out of stock and goes out as soon as it is restocked, by {deliver_by} at the latest, {or_else}."),
            Waiting::Endpoint | Waiting::Nothing => format!("Payment received via {provider}. {what} will arrive by {deliver_by}, {or_else}."),
        },
        (OrderStatus::Delivered, Lang::Zh) => format!("已到账：{what}已于 {} 发放。", at(order.settled_at_ms)),
        (OrderStatus::Delivered, Lang::En) => format!("Delivered: {what} arrived at {}.", at(order.settled_at_ms)),
        (OrderStatus::Expired, Lang::Zh) => format!("订单已关闭：{} 前未收到付款，没有扣款。", at(Some(order.expires_at_ms))),
        (OrderStatus::Expired, Lang::En) => format!("Closed: no payment arrived before {}; nothing was charged.", at(Some(order.expires_at_ms))),
        (OrderStatus::RefundDue, Lang::Zh) => format!("待退款：{amount} 元将原路退回{provider}。"),
        (OrderStatus::RefundDue, Lang::En) => format!("Refund due: {amount} goes back to your {provider} account."),
        (OrderStatus::Refunding, Lang::Zh) => format!("退款中：{refund_amount} 元已提交{provider}原路退回：退到余额通常几分钟内到账，退到银行卡通常需要 1–7 个工作日，以银行为准。"),
        (OrderStatus::Refunding, Lang::En) => format!("Refunding: {refund_amount} is on its way back through {provider} to where it came from: minutes to a balance, usually 1–7 working days to a bank card, as the bank decides."),
        (OrderStatus::Refunded, Lang::Zh) => format!("已退款：{refund_amount} 元已于 {} 由{provider}原路退回：余额即时到账，银行卡通常 1–7 个工作日入账，以银行为准。", at(order.settled_at_ms)),
        (OrderStatus::Refunded, Lang::En) => format!("Refunded: {refund_amount} went back through {provider} at {} to where it came from: at once to a balance, usually 1–7 working days to a bank card, as the bank decides.", at(order.settled_at_ms)),
    };
    let partial = order.status == OrderStatus::Delivered && refunding > 0;
    if partial {
        text.push_str(&match lang {
            Lang::Zh => format!("其中 {refund_amount} 元已退款。"),
            Lang::En => format!(" {refund_amount} of it was refunded."),
        });
    }
    if order.attention {
        text.push_str(match lang {
            Lang::Zh => "客服已介入处理。",
            Lang::En => " A support agent is looking at this order.",
        });
    }
    text
}

/// A timeline entry in words.
pub fn event_label(kind: EventKind, lang: Lang) -> &'static str {
    match (kind, lang) {
        (EventKind::Created, Lang::Zh) => "下单",
        (EventKind::Created, Lang::En) => "Order placed",
        (EventKind::PaymentCaptured, Lang::Zh) => "收到付款",
        (EventKind::PaymentCaptured, Lang::En) => "Payment received",
        (EventKind::Delivered, Lang::Zh) => "已到账",
        (EventKind::Delivered, Lang::En) => "Delivered",
        (EventKind::Expired, Lang::Zh) => "订单关闭（未付款）",
        (EventKind::Expired, Lang::En) => "Closed unpaid",
        (EventKind::RefundDue, Lang::Zh) => "确定退款",
        (EventKind::RefundDue, Lang::En) => "Refund decided",
        (EventKind::RefundRequested, Lang::Zh) => "提交退款",
        (EventKind::RefundRequested, Lang::En) => "Refund sent to the provider",
        (EventKind::RefundSucceeded, Lang::Zh) => "退款成功",
        (EventKind::RefundSucceeded, Lang::En) => "Refund completed",
        (EventKind::RefundFailed, Lang::Zh) => "退款失败，客服处理中",
        (EventKind::RefundFailed, Lang::En) => "Refund failed; support is on it",
        (EventKind::PartialRefundRequested, Lang::Zh) => "提交部分退款",
        (EventKind::PartialRefundRequested, Lang::En) => "Partial refund sent",
        (EventKind::PartialRefundSucceeded, Lang::Zh) => "部分退款成功",
        (EventKind::PartialRefundSucceeded, Lang::En) => "Partial refund completed",
        (EventKind::PartialRefundFailed, Lang::Zh) => "部分退款失败",
        (EventKind::PartialRefundFailed, Lang::En) => "Partial refund failed",
        (EventKind::GoodsReclaimed, Lang::Zh) => "收回已退款商品",
        (EventKind::GoodsReclaimed, Lang::En) => "Refunded goods taken back",
        (EventKind::AwaitingStock, Lang::Zh) => "缺货等待补货",
        (EventKind::AwaitingStock, Lang::En) => "Waiting for stock",
        (EventKind::DeliveryAttempted, Lang::Zh) => "尝试发放",
        (EventKind::DeliveryAttempted, Lang::En) => "Delivery attempt",
        (EventKind::DeliveryAccepted, Lang::Zh) => "发放已受理",
        (EventKind::DeliveryAccepted, Lang::En) => "Delivery accepted",
        (EventKind::DeliveryUnknown, Lang::Zh) => "发放结果未知，正在核实",
        (EventKind::DeliveryUnknown, Lang::En) => "Delivery outcome unknown; checking",
        (EventKind::DeliveryFailed, Lang::Zh) => "发放失败",
        (EventKind::DeliveryFailed, Lang::En) => "Delivery refused",
        (EventKind::DeadlineMissed, Lang::Zh) => "超过发放时限",
        (EventKind::DeadlineMissed, Lang::En) => "Delivery deadline missed",
        (EventKind::Compensated, Lang::Zh) => "延迟补偿已发放",
        (EventKind::Compensated, Lang::En) => "Compensation for the delay",
        (EventKind::AttentionRaised, Lang::Zh) => "转人工处理",
        (EventKind::AttentionRaised, Lang::En) => "Handed to a person",
        (EventKind::AttentionCleared, Lang::Zh) => "人工处理完毕",
        (EventKind::AttentionCleared, Lang::En) => "Handled by a person",
        (EventKind::ProviderQueried, Lang::Zh) => "主动查询支付结果",
        (EventKind::ProviderQueried, Lang::En) => "Asked the provider about the payment",
        (EventKind::ProviderCloseRequested, Lang::Zh) => "到期关单",
        (EventKind::ProviderCloseRequested, Lang::En) => "Closed at the provider",
        (EventKind::NotificationRejected, Lang::Zh) => "拒绝了一条可疑通知",
        (EventKind::NotificationRejected, Lang::En) => "A suspicious message was refused",
        (EventKind::ConfirmationReplayed, Lang::Zh) => "拒绝了一条重复的发货确认",
        (EventKind::ConfirmationReplayed, Lang::En) => "A repeated delivery confirmation was refused",
        (EventKind::RefundNotified, Lang::Zh) => "支付渠道确认退款",
        (EventKind::RefundNotified, Lang::En) => "Provider confirmed a refund",
        (EventKind::ChargeRecorded, Lang::Zh) => "记录一笔付款",
        (EventKind::ChargeRecorded, Lang::En) => "A payment was recorded",
        (EventKind::ChargeRefundRequested, Lang::Zh) => "多付款项原路退回中",
        (EventKind::ChargeRefundRequested, Lang::En) => "An extra payment is being returned",
        (EventKind::ChargeRefundSucceeded, Lang::Zh) => "多付款项已退回",
        (EventKind::ChargeRefundSucceeded, Lang::En) => "An extra payment was returned",
        (EventKind::ChargeRefundFailed, Lang::Zh) => "多付款项退回失败，客服处理中",
        (EventKind::ChargeRefundFailed, Lang::En) => "Returning an extra payment failed; support is on it",
        (EventKind::RefundUnknown, Lang::Zh) => "退款结果待确认",
        (EventKind::RefundUnknown, Lang::En) => "Refund outcome not yet known",
        (EventKind::GoodsRestored, Lang::Zh) => "退款未成功，商品已恢复",
        (EventKind::GoodsRestored, Lang::En) => "Refund refused; goods given back",
        (EventKind::ActionTaken, Lang::Zh) => "客服已处理",
        (EventKind::ActionTaken, Lang::En) => "Support acted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_picked_by_query_then_header() {
        assert_eq!(Lang::pick(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::pick(None, Some("zh-CN,zh;q=0.9,en;q=0.8")), Lang::Zh);
        assert_eq!(Lang::pick(Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::pick(None, None), Lang::Zh);
    }

    #[test]
    fn clocks_show_the_day_only_when_it_differs() {
        let now = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(clock(now + 5 * 60_000, now, 0), "22:18");
        assert_eq!(clock(now + 5 * 60_000, now, 480), "06:18", "the same day in China too");
        assert_eq!(clock(now + 10 * 3_600_000, now, 0), "11-15 08:13", "tomorrow shows the date");
    }
}
