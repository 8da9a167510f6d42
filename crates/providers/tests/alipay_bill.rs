//! Alipay trade bills: the published sample, the same bill zipped as Alipay ships it,
//! the writer's bills read back, and every kind of bad input refused with its code,
//! file, line and column.

use aws_lc_rs::digest::{digest, SHA256};
use encoding_rs::GBK;
use std::io::Cursor;
use std::path::PathBuf;
use zerodrop_providers::alipay::bill::{
    open_bill, BillError, BillErrorCode, BillExpect, BillHeader, BillLine, BillLineKind, BillReader, BillRow,
    BillTotals, BillWriter, CsvBillWriter,
};
use zerodrop_providers::alipay::clock::parse_cst;

const ACCOUNT: &str = "20880211096256330156";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!("{}/../../tests/fixtures/provider-vectors/alipay/{name}", env!("CARGO_MANIFEST_DIR")))
}

fn sample() -> String {
    std::fs::read_to_string(fixture("bill_trade_detail_sample.csv")).unwrap()
}

fn sample_lines() -> Vec<String> {
    sample().lines().map(str::to_owned).collect()
}

fn joined(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

fn expect() -> BillExpect {
    BillExpect { account: ACCOUNT.into() }
}

type Read = (BillHeader, Vec<BillLine>, BillTotals);

fn drain<R: std::io::BufRead>(mut reader: BillReader<R>) -> Result<Read, BillError> {
    let header = reader.header().clone();
    let mut lines = Vec::new();
    while let Some(line) = reader.next_line()? {
        lines.push(line);
    }
    Ok((header, lines, reader.finish()?))
}

fn read(bytes: &[u8]) -> Result<Read, BillError> {
    drain(BillReader::new("sample.csv", bytes, &expect())?)
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zerodrop-bill-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn sha(bytes: &[u8]) -> String {
    digest(&SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The sample as the reader must see it, whatever the charset or container.
fn assert_is_sample((header, lines, totals): &Read) {
    let from = parse_cst("2019-09-16 00:00:00").unwrap();
    assert_eq!(header, &BillHeader { account: ACCOUNT.into(), from_ms: from, to_ms: from + 86_400_000 });
    assert_eq!(lines.len(), 10);
    assert_eq!(*totals, BillTotals { trade_count: 6, trade_total_minor: 6, refund_count: 4, refund_total_minor: 4 });
    let first = &lines[0];
    assert_eq!((first.line_no, first.kind), (6, BillLineKind::Trade));
    assert_eq!(first.trade_no, "2019091622001458860515315453", "the id cell's tab is stripped");
    assert_eq!((first.order_no.as_str(), first.refund_no.as_str()), ("service_1568601259302", ""));
    assert_eq!(first.amount.minor, 1);
    assert_eq!(first.created_at_ms, parse_cst("2019-09-16 10:55:16").unwrap());
    assert_eq!(first.finished_at_ms, parse_cst("2019-09-16 10:55:23").unwrap());
    let refund = &lines[1];
    assert_eq!((refund.line_no, refund.kind, refund.amount.minor), (7, BillLineKind::Refund, 1), "stored positive");
    assert_eq!(refund.refund_no, "re_test_1568602607356");
    assert_eq!(lines.iter().filter(|l| l.kind == BillLineKind::Refund).count(), 4);
    assert_eq!(lines.last().map(|l| l.line_no), Some(15));
}

#[test]
fn the_published_sample_reads() {
    let bytes = sample().into_bytes();
    let read = read(&bytes).unwrap();
    assert_is_sample(&read);
    let raw_line_6 = sample_lines()[5].clone();
    assert_eq!(read.1[0].line_sha256, sha(raw_line_6.as_bytes()), "the hash is of the line's bytes");
}

#[test]
fn the_sample_zipped_in_gbk_as_alipay_ships_it_reads_the_same() {
    let read = drain(open_bill(&fixture("bill_trade_detail_sample.zip"), &expect()).unwrap()).unwrap();
    assert_is_sample(&read);
    let gbk_line_6 = GBK.encode(&sample_lines()[5]).0.into_owned();
    assert_eq!(read.1[0].line_sha256, sha(&gbk_line_6), "the hash is of the GBK bytes as they were in the file");
    // The plain CSV opens too.
    assert_is_sample(&drain(open_bill(&fixture("bill_trade_detail_sample.csv"), &expect()).unwrap()).unwrap());
}

fn rows_of(lines: &[BillLine]) -> Vec<BillRow<'_>> {
    lines
        .iter()
        .map(|l| BillRow {
            kind: l.kind,
            trade_no: &l.trade_no,
            order_no: &l.order_no,
            refund_no: &l.refund_no,
            amount_minor: l.amount.minor,
            created_at_ms: l.created_at_ms,
            finished_at_ms: l.finished_at_ms,
            subject: "下单测试, with a comma",
        })
        .collect()
}

#[test]
fn a_bill_the_writer_zips_reads_back_line_for_line() {
    let (header, sample, totals) = read(sample().as_bytes()).unwrap();
    let mut writer = BillWriter::new(Cursor::new(Vec::new()), &header).unwrap();
    let written: Vec<BillLine> = rows_of(&sample).iter().map(|row| writer.write(row).unwrap()).collect();
    let (zip, written_totals) = writer.finish(header.to_ms + 5 * 3_600_000).unwrap();
    assert_eq!(written_totals, totals);
    let path = temp_path("written.zip");
    std::fs::write(&path, zip.into_inner()).unwrap();
    let read = drain(open_bill(&path, &expect()).unwrap()).unwrap();
    assert_is_sample(&read);
    assert_eq!(read.1, written, "the same lines, line numbers and hashes as the writer reported");
    let without_hashes = |lines: &[BillLine]| -> Vec<BillLine> {
        lines.iter().map(|l| BillLine { line_sha256: String::new(), ..l.clone() }).collect()
    };
    assert_eq!(without_hashes(&read.1), without_hashes(&sample));
}

#[test]
fn the_plain_csv_writer_round_trips_in_both_charsets() {
    let (header, sample, totals) = read(sample().as_bytes()).unwrap();
    for gbk in [true, false] {
        let mut writer = CsvBillWriter::new(Vec::new(), &header, gbk).unwrap();
        let written: Vec<BillLine> = rows_of(&sample).iter().map(|row| writer.write(row).unwrap()).collect();
        let (bytes, _) = writer.finish(header.to_ms).unwrap();
        assert_eq!(std::str::from_utf8(&bytes).is_ok(), !gbk);
        let (_, lines, read_totals) = read(&bytes).unwrap();
        assert_eq!((lines, read_totals), (written, totals));
    }
}

#[test]
fn a_larger_bill_streams_through_the_zip() {
    let from = parse_cst("2026-11-28 00:00:00").unwrap();
    let header = BillHeader { account: ACCOUNT.into(), from_ms: from, to_ms: from + 86_400_000 };
    let mut writer = BillWriter::new(Cursor::new(Vec::new()), &header).unwrap();
    let count = 20_000;
    for i in 0..count {
        let (trade_no, order_no) = (format!("2026112822{i:018}"), format!("ZD{i:010}"));
        let kind = if i % 10 == 9 { BillLineKind::Refund } else { BillLineKind::Trade };
        let refund_no = format!("RF{i:010}");
        let at = from + i64::from(i) * 4_000;
        let row = BillRow {
            kind,
            trade_no: &trade_no,
            order_no: &order_no,
            refund_no: &refund_no,
            amount_minor: 600,
            created_at_ms: at,
            finished_at_ms: at,
            subject: "60 钻石",
        };
        writer.write(&row).unwrap();
    }
    let (zip, totals) = writer.finish(header.to_ms).unwrap();
    let path = temp_path("larger.zip");
    std::fs::write(&path, zip.into_inner()).unwrap();
    let (_, lines, read_totals) = drain(open_bill(&path, &expect()).unwrap()).unwrap();
    assert_eq!(lines.len(), count as usize);
    assert_eq!(read_totals, totals);
    assert_eq!(totals.refund_count, 2_000);
}

/// Reads `bytes` and returns the error it must give.
fn refused(bytes: &[u8]) -> BillError {
    match read(bytes) {
        Ok(_) => panic!("the bill was accepted"),
        Err(e) => e,
    }
}

fn with_line(line_no: usize, edit: impl FnOnce(&str) -> String) -> Vec<u8> {
    let mut lines = sample_lines();
    lines[line_no - 1] = edit(&lines[line_no - 1]);
    joined(&lines)
}

fn assert_error(error: &BillError, code: BillErrorCode, line: u64, column: Option<u32>) {
    assert_eq!((error.code, error.line, error.column), (code, line, column), "{error}");
    assert_eq!(error.file, "sample.csv");
}

#[test]
fn a_bill_for_another_account_is_refused_at_its_account() {
    let error = refused(&with_line(2, |l| l.replace(ACCOUNT, "20889999999999999999")));
    assert_error(&error, BillErrorCode::WrongAccount, 2, Some(6));
    assert!(error.to_string().starts_with("sample.csv:2:6: wrong_account: "), "{error}");
}

#[test]
fn a_truncated_zip_is_refused_naming_the_file() {
    let whole = std::fs::read(fixture("bill_trade_detail_sample.zip")).unwrap();
    for cut in [10, whole.len() / 2, whole.len() - 30, whole.len() - 1] {
        let path = temp_path(&format!("cut-{cut}.zip"));
        std::fs::write(&path, &whole[..cut]).unwrap();
        let error = match open_bill(&path, &expect()) {
            Err(e) => e,
            Ok(reader) => drain(reader).expect_err("a cut zip is refused"),
        };
        assert_eq!(error.code, BillErrorCode::TruncatedZip, "cut at {cut}: {error}");
        assert_eq!(error.file, path.display().to_string());
        assert!(error.to_string().contains("truncated_zip"), "{error}");
    }
}

#[test]
fn a_damaged_zip_entry_fails_its_checksum() {
    // A stored (uncompressed) entry with one digit of a trade number changed: the CSV
    // still reads, and the CRC-32 at the entry's end catches it.
    let detail = GBK.encode(&sample()).0.into_owned();
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("x_业务明细.csv", options).unwrap();
    std::io::Write::write_all(&mut zip, &detail).unwrap();
    let mut bytes = zip.finish().unwrap().into_inner();
    let at = bytes.windows(28).position(|w| w == b"2019091622001458860515315453").unwrap();
    bytes[at + 27] = b'4';
    let path = temp_path("damaged.zip");
    std::fs::write(&path, &bytes).unwrap();
    let error = drain(open_bill(&path, &expect()).unwrap()).unwrap_err();
    assert_eq!(error.code, BillErrorCode::BadZip, "{error}");

    // A zip without a detail CSV.
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("x_业务明细(汇总).csv", options).unwrap();
    let path = temp_path("summary-only.zip");
    std::fs::write(&path, zip.finish().unwrap().into_inner()).unwrap();
    assert_eq!(open_bill(&path, &expect()).err().map(|e| e.code), Some(BillErrorCode::BadZip));
}

#[test]
fn a_bill_in_the_wrong_encoding_is_refused_at_the_byte() {
    // Bytes that are neither GBK nor UTF-8, on the line that would decide.
    let mut bytes = sample().into_bytes();
    bytes.splice(1..1, *b"\xFF");
    assert_error(&refused(&bytes), BillErrorCode::WrongEncoding, 1, Some(2));

    // UTF-16, as a spreadsheet's "Unicode text" export writes it.
    let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(sample().encode_utf16().flat_map(u16::to_le_bytes)).collect();
    assert_error(&refused(&utf16), BillErrorCode::WrongEncoding, 1, Some(1));
    let utf16_no_bom: Vec<u8> = sample().encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(refused(&utf16_no_bom).code, BillErrorCode::WrongEncoding);

    // A GBK bill with a line that is not GBK: the first lines decided the charset.
    let mut lines: Vec<Vec<u8>> = sample_lines().iter().map(|l| GBK.encode(l).0.into_owned()).collect();
    lines[7].splice(3..3, *b"\xFF");
    let mut gbk = lines.join(&b'\n');
    gbk.push(b'\n');
    let error = refused(&gbk);
    assert_error(&error, BillErrorCode::WrongEncoding, 8, Some(4));
    assert!(error.message.contains("GBK"), "{error}");
}

#[test]
fn a_bill_without_its_header_row_is_refused() {
    let mut lines = sample_lines();
    lines.remove(4);
    assert_error(&refused(&joined(&lines)), BillErrorCode::MissingHeader, 5, None);
    assert_error(&refused(&joined(&sample_lines()[..4])), BillErrorCode::MissingHeader, 5, None);
    let error = refused(&with_line(5, |l| l.replace("订单金额（元）", "金额")));
    assert_error(&error, BillErrorCode::BadHeader, 5, None);
    assert!(error.message.contains("订单金额"), "{error}");
    let mut lines = sample_lines();
    lines.remove(1);
    assert_eq!(refused(&joined(&lines)).code, BillErrorCode::BadHeader, "no account line");
}

#[test]
fn a_line_given_twice_is_refused_naming_the_first() {
    let mut lines = sample_lines();
    let copy = lines[6].clone();
    lines.insert(12, copy);
    let error = refused(&joined(&lines));
    assert_error(&error, BillErrorCode::DuplicateLine, 13, None);
    assert!(error.message.contains("repeats line 7"), "{error}");
    // A refund of the same trade with another request number is not a duplicate.
    let mut lines = sample_lines();
    lines.insert(7, lines[6].replace("re_test_1568602607356", "re_second"));
    let totals = lines.iter().position(|l| l.starts_with("#退款合计")).unwrap();
    lines[totals] = lines[totals].replace("4笔", "5笔").replace("-0.04", "-0.05");
    assert!(read(&joined(&lines)).is_ok());
}

#[test]
fn amounts_are_exact_and_signed_by_kind() {
    let amount_is = |line_no: usize, amount: &str| {
        with_line(line_no, |l| {
            let cells: Vec<&str> = l.split(',').collect();
            let mut cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
            cells[11] = amount.to_owned();
            cells.join(",")
        })
    };
    for (line_no, amount) in [(6, "0.011"), (6, "abc"), (6, "0.00"), (6, "-0.01"), (7, "0.01"), (6, "")] {
        let error = refused(&amount_is(line_no, amount));
        assert_error(&error, BillErrorCode::BadAmount, line_no as u64, Some(12));
        assert!(error.message.starts_with("订单金额（元）"), "{error}");
    }
    let error = refused(&amount_is(6, "0.011"));
    assert!(
        error.to_string().contains("sample.csv:6:12: bad_amount:") && error.message.contains("two decimals"),
        "{error}"
    );
}

#[test]
fn dates_must_read_and_fall_in_the_range() {
    let error = refused(&with_line(6, |l| l.replace("2019-09-16 10:55:23", "2019-09-17 00:00:00")));
    assert_error(&error, BillErrorCode::DateOutOfRange, 6, Some(6));
    let error = refused(&with_line(6, |l| l.replace("2019-09-16 10:55:23", "2019-09-15 23:59:59")));
    assert_error(&error, BillErrorCode::DateOutOfRange, 6, Some(6));
    let error = refused(&with_line(6, |l| l.replace("2019-09-16 10:55:16", "2019/09/16 10:55:16")));
    assert_error(&error, BillErrorCode::BadDate, 6, Some(5));
    let error = refused(&with_line(3, |l| l.replace("2019年09月17日", "2019年09月15日")));
    assert_error(&error, BillErrorCode::BadHeader, 3, None);
}

#[test]
fn totals_that_do_not_add_up_are_refused_at_the_totals_line() {
    let error = refused(&with_line(17, |l| l.replace("6笔", "7笔")));
    assert_error(&error, BillErrorCode::TotalsMismatch, 17, None);
    let error = refused(&with_line(18, |l| l.replace("-0.04", "-0.03")));
    assert_error(&error, BillErrorCode::TotalsMismatch, 18, None);
    // A trade left out of the table, totals untouched.
    let mut lines = sample_lines();
    lines.remove(13);
    assert_error(&refused(&joined(&lines)), BillErrorCode::TotalsMismatch, 16, None);
    // Cut short before the totals.
    assert_error(&refused(&joined(&sample_lines()[..16])), BillErrorCode::MissingTotals, 17, None);
    assert_error(&refused(&joined(&sample_lines()[..11])), BillErrorCode::MissingTotals, 12, None);
}

#[test]
fn oversized_lines_and_wrong_cell_counts_are_refused() {
    let error = refused(&with_line(6, |l| l.replace("下单测试", &"测".repeat(30_000))));
    assert_error(&error, BillErrorCode::TooLarge, 6, Some(65_537));
    let error = refused(&with_line(8, |l| l.replacen(",0.00", "", 1)));
    assert_error(&error, BillErrorCode::BadLine, 8, None);
    assert!(error.message.contains("24 cells, the header has 25"), "{error}");
    let error = refused(&with_line(6, |l| l.replace("交易", "冻结")));
    assert_error(&error, BillErrorCode::BadLine, 6, Some(3));
    let mut lines = sample_lines();
    lines.push(lines[5].clone());
    assert_error(&refused(&joined(&lines)), BillErrorCode::BadLine, 20, None);
}

#[test]
fn crlf_line_endings_and_a_utf8_bom_read_the_same() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(sample().replace('\n', "\r\n").into_bytes());
    assert_is_sample(&read(&bytes).unwrap());
}
