//! The streaming reader of a trade bill's detail CSV.

use super::columns::{Columns, HeaderError, TRADE_NO};
use super::comments::{self, Stated, TotalKind};
use super::lines::{cells, Charset, LineError, Lines};
use super::LINE_BYTES_MAX;
use super::{column, BillError, BillErrorCode, BillExpect, BillHeader, BillLine, BillLineKind, BillTotals};
use crate::alipay::clock::parse_cst;
use aws_lc_rs::digest::{digest, SHA256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use zerodrop_domain::money::{parse_decimal_minor, AmountError, Currency, Money};

/// Where the reader is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Table,
    /// Past the table: only `#` lines (the totals, the export time) may follow.
    Trailer,
}

/// Sums of the lines read so far.
#[derive(Default)]
struct Sums {
    totals: BillTotals,
    /// 商家实收 sums, signed as written (refunds negative): what the stated totals say.
    trade_received_minor: i64,
    refund_received_minor: i64,
}

/// Reads a bill line by line: [`BillReader::new`] reads the comments and the header
/// row, [`BillReader::next_line`] each table line, [`BillReader::finish`] the totals.
pub struct BillReader<R> {
    file: String,
    lines: Lines<R>,
    charset: Charset,
    header: BillHeader,
    columns: Columns,
    part: Part,
    /// The first 16 bytes of SHA-256(kind, trade number, refund number) of every line
    /// so far, with its line number: a line given twice is caught whatever the distance.
    seen: HashMap<[u8; 16], u32>,
    sums: Sums,
    stated: [Option<(Stated, u64)>; 2],
}

impl<R: BufRead> BillReader<R> {
    /// Reads up to the table's header row, and checks the account. `file` names the
    /// bill in errors.
    pub fn new(file: &str, reader: R, expect: &BillExpect) -> Result<BillReader<R>, BillError> {
        let mut lines = Lines::new(reader);
        let mut charset = Charset::Undecided;
        let mut account: Option<(String, u64, usize)> = None;
        let mut range: Option<(i64, i64)> = None;
        let error = |line: u64, col: Option<u32>, code: BillErrorCode, message: String| {
            BillError::new(file, line, col, code, message)
        };
        let columns = loop {
            if !next(file, &mut lines)? {
                let line = lines.line_no + 1;
                return Err(error(
                    line,
                    None,
                    BillErrorCode::MissingHeader,
                    "the file ends before the table's header row".into(),
                ));
            }
            let line_no = lines.line_no;
            let text = decode(file, &mut charset, &lines.buf, line_no)?;
            if text.trim().is_empty() {
                continue;
            }
            if text.starts_with('#') {
                if let Some((value, at)) = comments::account(&text) {
                    account = Some((value, line_no, at));
                } else if let Some(read) = comments::range(&text) {
                    let (from, to) = read.map_err(|at| {
                        error(line_no, column(at), BillErrorCode::BadHeader, "the bill's range does not read".into())
                    })?;
                    if from >= to {
                        return Err(error(
                            line_no,
                            None,
                            BillErrorCode::BadHeader,
                            "the range ends before it starts".into(),
                        ));
                    }
                    range = Some((from, to));
                }
                continue;
            }
            let cells = cells(&text).map_err(|cell| {
                error(line_no, column(cell - 1), BillErrorCode::BadLine, "a quote is not closed".into())
            })?;
            match Columns::from_header(&cells) {
                Ok(columns) => break columns,
                Err(HeaderError::NotHeader) => {
                    return Err(error(
                        line_no,
                        None,
                        BillErrorCode::MissingHeader,
                        format!("the table starts here without its header row (no {TRADE_NO} column)"),
                    ))
                }
                Err(HeaderError::Missing(names)) => {
                    return Err(error(
                        line_no,
                        None,
                        BillErrorCode::BadHeader,
                        format!("the header row lacks the column(s) {}", names.join(", ")),
                    ))
                }
                Err(HeaderError::Twice(name, at)) => {
                    return Err(error(
                        line_no,
                        column(at),
                        BillErrorCode::BadHeader,
                        format!("column {name} appears twice"),
                    ))
                }
            }
        };
        let header_line = lines.line_no;
        let Some((account, account_line, at)) = account else {
            return Err(error(
                header_line,
                None,
                BillErrorCode::BadHeader,
                "no #账号：[…] line before the table".into(),
            ));
        };
        if account != expect.account {
            return Err(error(
                account_line,
                column(at),
                BillErrorCode::WrongAccount,
                format!("the bill is for account {account}, not {}", expect.account),
            ));
        }
        let Some((from_ms, to_ms)) = range else {
            return Err(error(
                header_line,
                None,
                BillErrorCode::BadHeader,
                "no #起始日期：[…] 终止日期：[…] line before the table".into(),
            ));
        };
        Ok(BillReader {
            file: file.to_owned(),
            lines,
            charset,
            header: BillHeader { account, from_ms, to_ms },
            columns,
            part: Part::Table,
            seen: HashMap::new(),
            sums: Sums::default(),
            stated: [None, None],
        })
    }

    pub fn header(&self) -> &BillHeader {
        &self.header
    }

    /// The next table line; None once the table has ended.
    pub fn next_line(&mut self) -> Result<Option<BillLine>, BillError> {
        while self.part == Part::Table {
            if !self.advance()? {
                self.part = Part::Trailer;
                return Ok(None);
            }
            let raw = std::mem::take(&mut self.lines.buf);
            let read = self.table_line(&raw);
            self.lines.buf = raw;
            match read? {
                Some(line) => return Ok(Some(line)),
                None => continue,
            }
        }
        Ok(None)
    }

    /// Reads what is left (the rest of the table, then the totals) and checks the
    /// totals the bill states against its lines: the counts, and the 商家实收 sums.
    /// Returns the counts and the sums of the lines' amounts (订单金额).
    pub fn finish(mut self) -> Result<BillTotals, BillError> {
        while self.next_line()?.is_some() {}
        while self.advance()? {
            let line_no = self.lines.line_no;
            let text = decode(&self.file, &mut self.charset, &self.lines.buf, line_no)?.into_owned();
            if text.trim().is_empty() {
                continue;
            }
            if !text.starts_with('#') {
                return Err(self.error(
                    line_no,
                    None,
                    BillErrorCode::BadLine,
                    "a table line after the table's end".into(),
                ));
            }
            self.trailer_line(&text, line_no)?;
        }
        let end = self.lines.line_no + 1;
        let sums = &self.sums;
        let checks = [
            (TotalKind::Trades, "trades", sums.totals.trade_count, sums.trade_received_minor),
            (TotalKind::Refunds, "refunds", sums.totals.refund_count, sums.refund_received_minor),
        ];
        for (kind, what, count, received) in checks {
            let Some((stated, line_no)) = self.stated[kind as usize] else {
                return Err(self.error(
                    end,
                    None,
                    BillErrorCode::MissingTotals,
                    format!("the bill ends without its {what} total (cut short?)"),
                ));
            };
            if stated.count != count || stated.received_minor != received {
                return Err(self.error(
                    line_no,
                    None,
                    BillErrorCode::TotalsMismatch,
                    format!(
                        "the bill states {} {what} totalling {}, its lines are {count} totalling {}",
                        stated.count,
                        comments::money(stated.received_minor),
                        comments::money(received)
                    ),
                ));
            }
        }
        Ok(self.sums.totals)
    }

    fn error(&self, line: u64, col: Option<u32>, code: BillErrorCode, message: String) -> BillError {
        BillError::new(&self.file, line, col, code, message)
    }

    fn advance(&mut self) -> Result<bool, BillError> {
        next(&self.file, &mut self.lines)
    }

    /// One line of the table part: a bill line, or None for a blank line or the first
    /// `#` line after the table (which ends it).
    fn table_line(&mut self, raw: &[u8]) -> Result<Option<BillLine>, BillError> {
        let line_no = self.lines.line_no;
        let text = decode(&self.file, &mut self.charset, raw, line_no)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        if text.starts_with('#') {
            self.part = Part::Trailer;
            let text = text.into_owned();
            self.trailer_line(&text, line_no)?;
            return Ok(None);
        }
        let cols = &self.columns;
        let cells = cells(&text).map_err(|cell| {
            self.error(line_no, column(cell - 1), BillErrorCode::BadLine, "a quote is not closed".into())
        })?;
        if cells.len() != cols.width {
            return Err(self.error(
                line_no,
                None,
                BillErrorCode::BadLine,
                format!("{} cells, the header has {}", cells.len(), cols.width),
            ));
        }
        let cell = |i: usize| -> &str { &cells[i] };
        let bad = |i: usize, code: BillErrorCode, what: String| {
            self.error(line_no, column(i), code, format!("{} {what}", cols.name(i)))
        };
        let kind = match cell(cols.kind) {
            "交易" => BillLineKind::Trade,
            "退款" => BillLineKind::Refund,
            other => return Err(bad(cols.kind, BillErrorCode::BadLine, format!("{other:?} is neither 交易 nor 退款"))),
        };
        let trade_no = cell(cols.trade_no);
        if trade_no.is_empty() {
            return Err(bad(cols.trade_no, BillErrorCode::BadLine, "is empty".into()));
        }
        let refund_no = match kind {
            BillLineKind::Trade => "",
            BillLineKind::Refund => cell(cols.refund_no),
        };
        if kind == BillLineKind::Refund && refund_no.is_empty() {
            return Err(bad(cols.refund_no, BillErrorCode::BadLine, "is empty on a refund".into()));
        }
        let time = |i: usize| {
            parse_cst(cell(i))
                .ok_or_else(|| bad(i, BillErrorCode::BadDate, format!("{:?} is not YYYY-MM-DD HH:MM:SS", cell(i))))
        };
        let created_at_ms = time(cols.created)?;
        let finished_at_ms = time(cols.finished)?;
        if finished_at_ms < self.header.from_ms || finished_at_ms >= self.header.to_ms {
            return Err(bad(
                cols.finished,
                BillErrorCode::DateOutOfRange,
                format!("{} is outside the bill's range", cell(cols.finished)),
            ));
        }
        let amount = signed_minor(cell(cols.amount)).map_err(|e| bad(cols.amount, BillErrorCode::BadAmount, e))?;
        let received =
            signed_minor(cell(cols.received)).map_err(|e| bad(cols.received, BillErrorCode::BadAmount, e))?;
        let amount = match kind {
            BillLineKind::Trade if amount > 0 => amount,
            BillLineKind::Refund if amount < 0 => -amount,
            BillLineKind::Trade => {
                return Err(bad(cols.amount, BillErrorCode::BadAmount, "is not positive on a trade".into()))
            }
            BillLineKind::Refund => {
                return Err(bad(cols.amount, BillErrorCode::BadAmount, "is not negative on a refund".into()))
            }
        };
        let key = digest(&SHA256, format!("{}\0{trade_no}\0{refund_no}", kind.as_str()).as_bytes());
        let mut short = [0_u8; 16];
        short.copy_from_slice(&key.as_ref()[..16]);
        // Lines are at most BILL_LINES_MAX, which fits in u32.
        let line_u32 = u32::try_from(line_no).unwrap_or(u32::MAX);
        if let Some(first) = self.seen.insert(short, line_u32) {
            return Err(self.error(
                line_no,
                None,
                BillErrorCode::DuplicateLine,
                format!("repeats line {first} ({} {trade_no} {refund_no})", kind.as_str()),
            ));
        }
        let line = BillLine {
            line_no,
            line_sha256: hex(digest(&SHA256, raw).as_ref()),
            kind,
            trade_no: trade_no.to_owned(),
            order_no: cell(cols.order_no).to_owned(),
            refund_no: refund_no.to_owned(),
            amount: Money::new(amount, Currency::Cny),
            created_at_ms,
            finished_at_ms,
        };
        let sums = &mut self.sums;
        match kind {
            BillLineKind::Trade => {
                sums.totals.trade_count += 1;
                sums.totals.trade_total_minor += amount;
                sums.trade_received_minor += received;
            }
            BillLineKind::Refund => {
                sums.totals.refund_count += 1;
                sums.totals.refund_total_minor += amount;
                sums.refund_received_minor += received;
            }
        }
        Ok(Some(line))
    }

    /// A `#` line after the table: a totals line is kept, others (the export time) pass.
    fn trailer_line(&mut self, text: &str, line_no: u64) -> Result<(), BillError> {
        let Some((kind, stated)) = comments::totals(text) else { return Ok(()) };
        let stated = stated.map_err(|e| {
            self.error(line_no, None, BillErrorCode::BadLine, format!("the totals line does not read: {e}"))
        })?;
        if let Some((_, first)) = self.stated[kind as usize] {
            return Err(self.error(
                line_no,
                None,
                BillErrorCode::BadLine,
                format!("the totals are stated twice (first on line {first})"),
            ));
        }
        self.stated[kind as usize] = Some((stated, line_no));
        Ok(())
    }
}

/// The next physical line, as a bill error.
fn next<R: BufRead>(file: &str, lines: &mut Lines<R>) -> Result<bool, BillError> {
    lines.advance().map_err(|e| match e {
        LineError::TooLong => BillError::new(
            file,
            lines.line_no,
            u32::try_from(LINE_BYTES_MAX + 1).ok(),
            BillErrorCode::TooLarge,
            format!("the line is longer than {LINE_BYTES_MAX} bytes"),
        ),
        LineError::TooMany(max) => {
            BillError::new(file, lines.line_no, None, BillErrorCode::TooLarge, format!("more than {max} lines"))
        }
        LineError::Io(e) => super::zipped::io_error(file, lines.line_no + 1, &e),
    })
}

fn decode<'a>(file: &str, charset: &mut Charset, raw: &'a [u8], line_no: u64) -> Result<Cow<'a, str>, BillError> {
    charset.decode(raw, line_no).map_err(|e| {
        BillError::new(
            file,
            line_no,
            u32::try_from(e.byte).ok(),
            BillErrorCode::WrongEncoding,
            format!("byte {}: {}", e.byte, e.message),
        )
    })
}

/// An amount as written (`0.01`, `-0.01`) in signed minor units, exactly.
pub(crate) fn signed_minor(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let minor = parse_decimal_minor(digits, Currency::Cny.exponent()).map_err(|e| match e {
        AmountError::TooPrecise(_) => format!("{text:?} has more than two decimals"),
        AmountError::Empty => "is empty".to_owned(),
        AmountError::Malformed(_) => format!("{text:?} is not a number"),
        AmountError::TooLarge(_) => format!("{text:?} is too large"),
    })?;
    Ok(if negative { -minor } else { minor })
}

/// A total as written (`50490100.00`, `-0.04`) in signed minor units, exactly. A day's
/// total may exceed what one payment may be, so only i64 bounds it.
pub(crate) fn signed_total_minor(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !whole.is_empty()
        && whole.len() <= TOTAL_WHOLE_DIGITS_MAX
        && fraction.len() <= 2
        && whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    if !ok {
        return Err(format!("{text:?} is not a total in yuan with at most two decimals"));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("{text:?} is not a number"))?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| format!("{text:?} is not a number"))?;
    let minor =
        whole.checked_mul(100).and_then(|w| w.checked_add(fraction)).ok_or_else(|| format!("{text:?} is too large"))?;
    Ok(if negative { -minor } else { minor })
}

/// Digits before the point of a stated total: 10^15 yuan is far beyond any day, and the
/// sum in fen still fits an i64.
const TOTAL_WHOLE_DIGITS_MAX: usize = 15;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod total_tests {
    use super::signed_total_minor;

    #[test]
    fn totals_may_exceed_one_payment_but_stay_exact() {
        assert_eq!(signed_total_minor("50490100.00"), Ok(5_049_010_000));
        assert_eq!(signed_total_minor("-0.04"), Ok(-4));
        assert_eq!(signed_total_minor("7"), Ok(700));
        for bad in ["", "1.234", "1e3", "--1", "9999999999999999.00"] {
            assert!(signed_total_minor(bad).is_err(), "{bad:?}");
        }
    }
}
