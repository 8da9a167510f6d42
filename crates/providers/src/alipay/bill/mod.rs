//! Alipay's trade bill (业务明细): reading it as Alipay ships it, and writing it.
//!
//! Alipay's daily trade bill is a zip of two GBK CSVs: the detail (`…_业务明细.csv`)
//! and a summary (`…_业务明细(汇总).csv`). The detail has `#` comment lines around a
//! table: the account (`#账号：[2088…]`) and the range (`#起始日期：[…]   终止日期：[…]`)
//! before it, the totals (`#交易合计：…`, `#退款合计：…`) and the export time after it.
//! The table's first line names its 25 columns; id cells end in a tab (so spreadsheets
//! keep long numbers as text), and refund lines (业务类型 退款) carry negative amounts.
//!
//! The amount of a line is its 订单金额（元）: what the user paid (or got back), the figure
//! zerodrop's charge records. 商家实收（元） is what the merchant received after discounts;
//! the stated totals are in it, so they are checked against that column.
//!
//! Reading streams: one line is held at a time, and the only thing that grows with the
//! bill is a set of 16-byte digests that catches a line given twice (about 40 MB per
//! million lines). A zip is decompressed as it is read.

mod columns;
mod comments;
mod lines;
mod reader;
mod writer;
mod zipped;

pub use reader::BillReader;
pub use writer::{BillRow, BillWriter, CsvBillWriter};
pub use zerodrop_domain::bill::{BillHeader, BillLine, BillLineKind, BillTotals};
pub use zipped::open_bill;

/// Longest line read, in bytes. Real lines are a few hundred bytes; a longer one is not
/// a bill, and holding it would let one line cost any amount of memory.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Most lines in one bill. A busy merchant's day is a few million lines; past this the
/// file is not a day's bill (or is a decompression bomb of empty lines).
pub const BILL_LINES_MAX: u64 = 10_000_000;

/// What the reader checks a bill against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillExpect {
    /// The merchant's Alipay account (seller id / PID, 2088…): a bill for another
    /// account is refused.
    pub account: String,
}

/// Why a bill was refused. Stable codes, stored and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BillErrorCode {
    /// The bill is for another merchant account.
    WrongAccount,
    /// The zip ends early (no end record, or an entry shorter than it says).
    TruncatedZip,
    /// The zip is damaged or does not hold one trade-detail CSV.
    BadZip,
    /// Bytes that are neither GBK nor UTF-8 (or UTF-16, or binary).
    WrongEncoding,
    /// No table header row where it should be.
    MissingHeader,
    /// The header comments or the header row lack something the reader needs.
    BadHeader,
    /// The same line (kind, trade number, refund number) twice in one bill.
    DuplicateLine,
    /// An amount that is not an exact, non-zero amount of the line's sign.
    BadAmount,
    /// A line completed outside the bill's range.
    DateOutOfRange,
    /// The totals the bill states are not the sums of its lines.
    TotalsMismatch,
    /// The bill ends without stating its totals (cut short).
    MissingTotals,
    /// A time that is not `YYYY-MM-DD HH:MM:SS`.
    BadDate,
    /// A line that is not a table line (wrong number of cells, unknown kind, no id).
    BadLine,
    /// A line or a bill over its limit ([`LINE_BYTES_MAX`], [`BILL_LINES_MAX`]).
    TooLarge,
    /// The file could not be read.
    Io,
}

impl BillErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillErrorCode::WrongAccount => "wrong_account",
            BillErrorCode::TruncatedZip => "truncated_zip",
            BillErrorCode::BadZip => "bad_zip",
            BillErrorCode::WrongEncoding => "wrong_encoding",
            BillErrorCode::MissingHeader => "missing_header",
            BillErrorCode::BadHeader => "bad_header",
            BillErrorCode::DuplicateLine => "duplicate_line",
            BillErrorCode::BadAmount => "bad_amount",
            BillErrorCode::DateOutOfRange => "date_out_of_range",
            BillErrorCode::TotalsMismatch => "totals_mismatch",
            BillErrorCode::MissingTotals => "missing_totals",
            BillErrorCode::BadDate => "bad_date",
            BillErrorCode::BadLine => "bad_line",
            BillErrorCode::TooLarge => "too_large",
            BillErrorCode::Io => "io",
        }
    }
}

impl std::fmt::Display for BillErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused bill: where, and why.
///
/// `line` is the 1-based physical line of the CSV (0 for the file as a whole, as for a
/// damaged zip). `column` is, on a table line, the 1-based cell (the message names the
/// column's header); on a comment line, the 1-based character; for an encoding error,
/// the 1-based byte (the bytes are not characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillError {
    pub file: String,
    pub line: u64,
    pub column: Option<u32>,
    pub code: BillErrorCode,
    pub message: String,
}

impl std::fmt::Display for BillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}: {}", self.code, self.message)
    }
}

impl std::error::Error for BillError {}

impl BillError {
    pub(crate) fn new(file: &str, line: u64, column: Option<u32>, code: BillErrorCode, message: String) -> BillError {
        BillError { file: file.to_owned(), line, column, code, message }
    }
}

/// `i` as a 1-based column number.
pub(crate) fn column(i: usize) -> Option<u32> {
    u32::try_from(i + 1).ok()
}
