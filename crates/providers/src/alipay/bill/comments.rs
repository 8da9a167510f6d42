//! The `#` comment lines around the table: the account, the range and the totals, read
//! and written.

use crate::alipay::clock::{format_cst, parse_cst};

/// `#账号：[2088…]`: the account, and the 0-based character where it starts.
pub(crate) fn account(comment: &str) -> Option<(String, usize)> {
    let body = comment.strip_prefix('#')?;
    let rest = body.strip_prefix("账号")?;
    let open = rest.find('[')?;
    let close = rest[open..].find(']')? + open;
    let value = &rest[open + 1..close];
    let start_chars = comment.len() - rest.len() + open + 1;
    Some((value.trim().to_owned(), comment[..start_chars].chars().count()))
}

/// `#起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]`. None if this
/// is not the range line; Err (with the 0-based character) if it is but does not read.
pub(crate) fn range(comment: &str) -> Option<Result<(i64, i64), usize>> {
    let from_at = comment.find("起始日期")?;
    let bracketed = |label: &str| -> Result<i64, usize> {
        let at = comment.find(label).ok_or(chars_before(comment, from_at))?;
        let open = comment[at..].find('[').map(|i| i + at).ok_or(chars_before(comment, at))?;
        let close = comment[open..].find(']').map(|i| i + open).ok_or(chars_before(comment, open))?;
        parse_chinese_time(&comment[open + 1..close]).ok_or(chars_before(comment, open + 1))
    };
    Some(bracketed("起始日期").and_then(|from| Ok((from, bracketed("终止日期")?))))
}

fn chars_before(text: &str, byte: usize) -> usize {
    text[..byte].chars().count()
}

/// `2019年09月16日 00:00:00` (China Standard Time).
fn parse_chinese_time(text: &str) -> Option<i64> {
    let plain = text.trim().replacen('年', "-", 1).replacen('月', "-", 1).replacen('日', "", 1);
    parse_cst(&plain)
}

/// `2019年09月16日 00:00:00`.
pub(crate) fn format_chinese_time(ms: i64) -> String {
    let plain = format_cst(ms);
    match (plain.get(0..4), plain.get(5..7), plain.get(8..10), plain.get(11..)) {
        (Some(y), Some(m), Some(d), Some(t)) => format!("{y}年{m}月{d}日 {t}"),
        _ => plain,
    }
}

/// Which total a totals line states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TotalKind {
    Trades,
    Refunds,
}

/// A stated total: its count and its 商家实收 sum in minor units, signed as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stated {
    pub(crate) count: u64,
    pub(crate) received_minor: i64,
}

const TRADE_TOTAL: &str = "交易合计";
const REFUND_TOTAL: &str = "退款合计";
const TRADE_RECEIVED: &str = "商家实收共";
const REFUND_RECEIVED: &str = "商家实收退款共";

/// `#交易合计：6笔，商家实收共0.06元，…` or `#退款合计：4笔，商家实收退款共-0.04元，…`. None if
/// this is not a totals line; Err if it is but does not read.
pub(crate) fn totals(comment: &str) -> Option<(TotalKind, Result<Stated, String>)> {
    let body = comment.strip_prefix('#')?;
    let (kind, rest, label) = if let Some(rest) = body.strip_prefix(TRADE_TOTAL) {
        (TotalKind::Trades, rest, TRADE_RECEIVED)
    } else if let Some(rest) = body.strip_prefix(REFUND_TOTAL) {
        (TotalKind::Refunds, rest, REFUND_RECEIVED)
    } else {
        return None;
    };
    Some((kind, read_totals(rest, label)))
}

fn read_totals(rest: &str, label: &str) -> Result<Stated, String> {
    let rest = rest.trim_start_matches(['：', ':']);
    let count_end = rest.find('笔').ok_or("no count (…笔)")?;
    let count = rest[..count_end].trim().parse::<u64>().map_err(|_| format!("count {:?}", &rest[..count_end]))?;
    let at = rest.find(label).ok_or_else(|| format!("no {label}…元"))? + label.len();
    let end = rest[at..].find('元').ok_or_else(|| format!("no 元 after {label}"))? + at;
    let received_minor = super::reader::signed_total_minor(rest[at..end].trim())?;
    Ok(Stated { count, received_minor })
}

/// The totals lines as the writer writes them (counts, 商家实收 sums, no discounts).
pub(crate) fn format_totals(trade_count: u64, trade_minor: i64, refund_count: u64, refund_minor: i64) -> [String; 2] {
    let refund = if refund_minor == 0 { "0.00".to_owned() } else { money(-refund_minor) };
    [
        format!("#{TRADE_TOTAL}：{trade_count}笔，{TRADE_RECEIVED}{}元，商家优惠共0.00元", money(trade_minor)),
        format!("#{REFUND_TOTAL}：{refund_count}笔，{REFUND_RECEIVED}{refund}元，商家优惠退款共0.00元"),
    ]
}

pub(crate) fn money(minor: i64) -> String {
    zerodrop_domain::money::format_minor(minor, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_read_as_alipay_writes_them() {
        assert_eq!(account("#账号：[20880211096256330156]"), Some(("20880211096256330156".into(), 5)));
        assert_eq!(account("#起始日期：[x]"), None);
        let line = "#起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]";
        let (from, to) = range(line).unwrap().unwrap();
        assert_eq!(to - from, 86_400_000);
        assert_eq!(format_chinese_time(from), "2019年09月16日 00:00:00");
        assert_eq!(range("#起始日期：[2019年13月16日 00:00:00]   终止日期：[x]"), Some(Err(7)));
        let (kind, stated) = totals("#退款合计：4笔，商家实收退款共-0.04元，商家优惠退款共0.00元").unwrap();
        assert_eq!((kind, stated), (TotalKind::Refunds, Ok(Stated { count: 4, received_minor: -4 })));
        assert!(totals("#交易合计：x笔，商家实收共0.06元").unwrap().1.is_err());
        assert_eq!(totals("#导出时间：[2019年09月17日 05:46:49]"), None);
    }
}
