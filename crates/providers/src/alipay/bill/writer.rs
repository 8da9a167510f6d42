//! Writing a bill exactly in Alipay's shape, line by line: the sandbox serves bills
//! written here, and the benchmark writes a million-line bill without holding it.

use super::columns::{HEADER, TAB_ENDED};
use super::comments::{format_chinese_time, format_totals, money};
use super::{BillHeader, BillLine, BillLineKind, BillTotals};
use crate::alipay::clock::format_cst;
use aws_lc_rs::digest::{digest, SHA256};
use encoding_rs::GBK;
use std::io::{self, Seek, Write};
use zerodrop_domain::money::{Currency, Money};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One line to write. Amounts are positive (the writer writes refunds negative).
#[derive(Clone, Debug)]
pub struct BillRow<'a> {
    pub kind: BillLineKind,
    pub trade_no: &'a str,
    pub order_no: &'a str,
    /// The refund's request number; ignored on trades.
    pub refund_no: &'a str,
    pub amount_minor: i64,
    pub created_at_ms: i64,
    pub finished_at_ms: i64,
    /// 商品名称 (commas and line breaks become spaces).
    pub subject: &'a str,
}

/// The detail CSV's lines, in order, as bytes in the chosen charset.
struct Detail {
    gbk: bool,
    line_no: u64,
    totals: BillTotals,
    header: BillHeader,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl Detail {
    fn emit(&mut self, out: &mut dyn Write, text: &str) -> io::Result<Vec<u8>> {
        let bytes = if self.gbk { GBK.encode(text).0.into_owned() } else { text.as_bytes().to_vec() };
        out.write_all(&bytes)?;
        out.write_all(b"\n")?;
        self.line_no += 1;
        Ok(bytes)
    }

    fn head(&mut self, out: &mut dyn Write, title: &str) -> io::Result<()> {
        let (from, to) = (format_chinese_time(self.header.from_ms), format_chinese_time(self.header.to_ms));
        self.emit(out, &format!("#支付宝{title}查询"))?;
        self.emit(out, &format!("#账号：[{}]", self.header.account))?;
        self.emit(out, &format!("#起始日期：[{from}]   终止日期：[{to}]"))?;
        self.emit(
            out,
            &format!("#-----------------------------------------{title}列表----------------------------------------"),
        )?;
        Ok(())
    }

    fn row(&mut self, out: &mut dyn Write, row: &BillRow<'_>) -> io::Result<BillLine> {
        if row.amount_minor <= 0 {
            return Err(invalid(format!("amount {} is not positive", row.amount_minor)));
        }
        let refund_no = match row.kind {
            BillLineKind::Trade => "",
            BillLineKind::Refund => row.refund_no,
        };
        for id in [row.trade_no, row.order_no, refund_no] {
            if id.contains([',', '"', '\t', '\r', '\n']) {
                return Err(invalid(format!("{id:?} cannot be a cell")));
            }
        }
        let subject: String =
            row.subject.chars().map(|c| if matches!(c, ',' | '"' | '\t' | '\r' | '\n') { ' ' } else { c }).collect();
        let (kind, signed) = match row.kind {
            BillLineKind::Trade => ("交易", row.amount_minor),
            BillLineKind::Refund => ("退款", -row.amount_minor),
        };
        let (created, finished, amount) =
            (format_cst(row.created_at_ms), format_cst(row.finished_at_ms), money(signed));
        let zero = "0.00";
        let cells: [&str; 25] = [
            row.trade_no,
            row.order_no,
            kind,
            &subject,
            &created,
            &finished,
            "",
            "",
            "",
            "",
            "",
            &amount,
            &amount,
            zero,
            zero,
            zero,
            zero,
            zero,
            "",
            zero,
            zero,
            refund_no,
            zero,
            zero,
            &subject,
        ];
        let text = join(&cells);
        let bytes = self.emit(out, &text)?;
        match row.kind {
            BillLineKind::Trade => {
                self.totals.trade_count += 1;
                self.totals.trade_total_minor += row.amount_minor;
            }
            BillLineKind::Refund => {
                self.totals.refund_count += 1;
                self.totals.refund_total_minor += row.amount_minor;
            }
        }
        Ok(BillLine {
            line_no: self.line_no,
            line_sha256: hex(digest(&SHA256, &bytes).as_ref()),
            kind: row.kind,
            trade_no: row.trade_no.to_owned(),
            order_no: row.order_no.to_owned(),
            refund_no: refund_no.to_owned(),
            amount: Money::new(row.amount_minor, Currency::Cny),
            created_at_ms: row.created_at_ms,
            finished_at_ms: row.finished_at_ms,
        })
    }

    fn tail(&mut self, out: &mut dyn Write, exported_at_ms: i64) -> io::Result<()> {
        let t = self.totals;
        self.emit(
            out,
            "#-----------------------------------------业务明细列表结束------------------------------------",
        )?;
        for line in format_totals(t.trade_count, t.trade_total_minor, t.refund_count, t.refund_total_minor) {
            self.emit(out, &line)?;
        }
        self.emit(out, &format!("#导出时间：[{}]", format_chinese_time(exported_at_ms)))?;
        Ok(())
    }

    /// The summary CSV (业务明细(汇总)): one 合计 row of the detail's totals.
    fn summary(&self, out: &mut dyn Write, exported_at_ms: i64) -> io::Result<()> {
        let mut summary = Detail { gbk: self.gbk, line_no: 0, totals: self.totals, header: self.header.clone() };
        let t = self.totals;
        let net = money(t.trade_total_minor - t.refund_total_minor);
        summary.head(out, "业务汇总")?;
        summary.emit(out, "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）")?;
        summary.emit(
            out,
            &format!("合计,,{},{},{net},{net},0.00,0.00,0.00,0.00,0.00,{net}", t.trade_count, t.refund_count),
        )?;
        summary.emit(
            out,
            "#-----------------------------------------业务汇总列表结束------------------------------------",
        )?;
        summary.emit(out, &format!("#导出时间：[{}]", format_chinese_time(exported_at_ms)))?;
        Ok(())
    }
}

/// A table line: cells joined by commas, id cells ending in a tab as Alipay writes them.
fn join(cells: &[&str; 25]) -> String {
    let mut text = String::with_capacity(256);
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(cell);
        if TAB_ENDED.contains(&i) {
            text.push('\t');
        }
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the detail CSV alone, in GBK (as Alipay) or UTF-8 (as a converted file).
pub struct CsvBillWriter<W: Write> {
    out: W,
    detail: Detail,
}

impl<W: Write> CsvBillWriter<W> {
    pub fn new(mut out: W, header: &BillHeader, gbk: bool) -> io::Result<CsvBillWriter<W>> {
        let mut detail = Detail { gbk, line_no: 0, totals: BillTotals::default(), header: header.clone() };
        detail.head(&mut out, "业务明细")?;
        detail.emit(&mut out, &HEADER.join(","))?;
        Ok(CsvBillWriter { out, detail })
    }

    /// Writes one line; returns it as the reader will read it.
    pub fn write(&mut self, row: &BillRow<'_>) -> io::Result<BillLine> {
        self.detail.row(&mut self.out, row)
    }

    /// Writes the totals and the export time.
    pub fn finish(mut self, exported_at_ms: i64) -> io::Result<(W, BillTotals)> {
        self.detail.tail(&mut self.out, exported_at_ms)?;
        self.out.flush()?;
        Ok((self.out, self.detail.totals))
    }
}

/// Writes a bill as Alipay ships it: a zip of the GBK detail CSV and its summary.
pub struct BillWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
    detail: Detail,
    summary_name: String,
}

fn zip_error(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write + Seek> BillWriter<W> {
    pub fn new(out: W, header: &BillHeader) -> io::Result<BillWriter<W>> {
        // Alipay names the entries after the account and the bill's first day.
        let day = format_cst(header.from_ms).get(..10).unwrap_or_default().replace('-', "");
        let base = format!("{}_{day}", header.account);
        let mut zip = ZipWriter::new(out);
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        zip.start_file(format!("{base}_业务明细.csv"), options).map_err(zip_error)?;
        let mut detail = Detail { gbk: true, line_no: 0, totals: BillTotals::default(), header: header.clone() };
        detail.head(&mut zip, "业务明细")?;
        detail.emit(&mut zip, &HEADER.join(","))?;
        Ok(BillWriter { zip, detail, summary_name: format!("{base}_业务明细(汇总).csv") })
    }

    /// Writes one line; returns it as the reader will read it.
    pub fn write(&mut self, row: &BillRow<'_>) -> io::Result<BillLine> {
        self.detail.row(&mut self.zip, row)
    }

    /// Writes the totals, the summary entry, and the zip's directory.
    pub fn finish(mut self, exported_at_ms: i64) -> io::Result<(W, BillTotals)> {
        self.detail.tail(&mut self.zip, exported_at_ms)?;
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        self.zip.start_file(self.summary_name.clone(), options).map_err(zip_error)?;
        self.detail.summary(&mut self.zip, exported_at_ms)?;
        let out = self.zip.finish().map_err(zip_error)?;
        Ok((out, self.detail.totals))
    }
}
