//! The table's columns, found by their header names.

use std::borrow::Cow;

/// The header names, in Alipay's order (the writer writes exactly these).
pub(crate) const HEADER: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// The cells Alipay ends with a tab (so spreadsheets keep long numbers as text), by
/// index in [`HEADER`].
pub(crate) const TAB_ENDED: [usize; 10] = [0, 1, 2, 6, 7, 8, 9, 10, 19, 21];

pub(crate) const TRADE_NO: &str = "支付宝交易号";
const ORDER_NO: &str = "商户订单号";
const KIND: &str = "业务类型";
const CREATED: &str = "创建时间";
const FINISHED: &str = "完成时间";
const AMOUNT: &str = "订单金额（元）";
const RECEIVED: &str = "商家实收（元）";
const REFUND_NO: &str = "退款批次号/请求号";

/// Where each column the reader uses is (0-based cell), and how many cells a line has.
#[derive(Clone, Debug)]
pub(crate) struct Columns {
    pub(crate) trade_no: usize,
    pub(crate) order_no: usize,
    pub(crate) kind: usize,
    pub(crate) created: usize,
    pub(crate) finished: usize,
    pub(crate) amount: usize,
    pub(crate) received: usize,
    pub(crate) refund_no: usize,
    pub(crate) width: usize,
    names: Vec<String>,
}

/// Why a header row was refused.
pub(crate) enum HeaderError {
    /// Not a header row at all: no 支付宝交易号 column.
    NotHeader,
    /// Columns the reader needs are missing.
    Missing(Vec<&'static str>),
    /// A needed column's name appears twice (its second cell, 0-based).
    Twice(&'static str, usize),
}

/// Full-width and half-width brackets both occur in exported files.
fn normalized(name: &str) -> String {
    name.replace('（', "(").replace('）', ")")
}

impl Columns {
    pub(crate) fn from_header(cells: &[Cow<'_, str>]) -> Result<Columns, HeaderError> {
        let names: Vec<String> = cells.iter().map(|c| normalized(c)).collect();
        let find = |wanted: &'static str| -> Result<Option<usize>, HeaderError> {
            let wanted_norm = normalized(wanted);
            let mut at = names.iter().enumerate().filter(|(_, n)| **n == wanted_norm).map(|(i, _)| i);
            let first = at.next();
            match at.next() {
                Some(second) => Err(HeaderError::Twice(wanted, second)),
                None => Ok(first),
            }
        };
        if find(TRADE_NO)?.is_none() {
            return Err(HeaderError::NotHeader);
        }
        let wanted = [TRADE_NO, ORDER_NO, KIND, CREATED, FINISHED, AMOUNT, RECEIVED, REFUND_NO];
        let mut found = [0_usize; 8];
        let mut missing = Vec::new();
        for (slot, name) in found.iter_mut().zip(wanted) {
            match find(name)? {
                Some(i) => *slot = i,
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(HeaderError::Missing(missing));
        }
        let [trade_no, order_no, kind, created, finished, amount, received, refund_no] = found;
        Ok(Columns {
            trade_no,
            order_no,
            kind,
            created,
            finished,
            amount,
            received,
            refund_no,
            width: cells.len(),
            names: cells.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// The header name of cell `i`, for messages.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }
}
