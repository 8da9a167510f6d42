//! Opening a bill file: a zip as Alipay ships it, or a plain CSV.
//!
//! The zip's central directory says where the trade-detail entry's bytes are; the reader
//! then reads those bytes from the file itself and inflates them as it goes, checking
//! the entry's size and CRC-32 at its end. (The zip crate's entry reader borrows its
//! archive, which a reader handed back to the caller cannot.)

use super::reader::BillReader;
use super::{BillError, BillErrorCode, BillExpect};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use zip::CompressionMethod;

/// What [`open_bill`] reads from: the plain file, or the inflated zip entry.
pub type BillSource = Box<dyn BufRead + Send>;

/// Buffer between the file (or the inflater) and the line reader.
const READ_BUFFER_BYTES: usize = 64 * 1024;
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const ZIP_END_MAGIC: &[u8] = b"PK\x05\x06";
/// The end record (22 bytes) plus the longest comment a zip may carry.
const ZIP_END_SEARCH_BYTES: u64 = 22 + 65_535;
/// "汇总" (summary) in UTF-8 and in GBK: Alipay's zip also holds a summary CSV.
const SUMMARY_UTF8: &[u8] = "汇总".as_bytes();
const SUMMARY_GBK: &[u8] = b"\xBB\xE3\xD7\xDC";

/// Opens a bill: a zip holding Alipay's trade-detail CSV (told by its magic bytes), or
/// the CSV itself, in GBK or UTF-8. Errors name `path`.
pub fn open_bill(path: &Path, expect: &BillExpect) -> Result<BillReader<BillSource>, BillError> {
    let file_name = path.display().to_string();
    let fail = |code: BillErrorCode, message: String| BillError::new(&file_name, 0, None, code, message);
    let mut file = File::open(path).map_err(|e| fail(BillErrorCode::Io, format!("cannot open: {}", e.kind())))?;
    let mut magic = [0_u8; 4];
    let read =
        read_up_to(&mut file, &mut magic).map_err(|e| fail(BillErrorCode::Io, format!("cannot read: {}", e.kind())))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| fail(BillErrorCode::Io, format!("cannot read: {}", e.kind())))?;
    if magic[..read] != *ZIP_MAGIC {
        let source: BillSource = Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, file));
        return BillReader::new(&file_name, source, expect);
    }
    let entry = find_detail(&mut file).map_err(|(code, message)| fail(code, message))?;
    file.seek(SeekFrom::Start(entry.data_start))
        .map_err(|e| fail(BillErrorCode::Io, format!("cannot read: {}", e.kind())))?;
    let raw = BufReader::with_capacity(READ_BUFFER_BYTES, file.take(entry.compressed_size));
    let inflated: Box<dyn Read + Send> = match entry.method {
        Method::Stored => Box::new(raw),
        Method::Deflated => Box::new(flate2::bufread::DeflateDecoder::new(raw)),
    };
    let checked = Checked { inner: inflated, crc: crc32fast::Hasher::new(), read: 0, entry };
    let source: BillSource = Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, checked));
    BillReader::new(&file_name, source, expect)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Stored,
    Deflated,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    data_start: u64,
    compressed_size: u64,
    size: u64,
    crc32: u32,
    method: Method,
}

/// The trade-detail entry: the one `.csv` whose name does not say 汇总.
fn find_detail(file: &mut File) -> Result<Entry, (BillErrorCode, String)> {
    let length = file.metadata().map_err(|e| (BillErrorCode::Io, format!("cannot read: {}", e.kind())))?.len();
    if !has_end_record(file, length).map_err(|e| (BillErrorCode::Io, format!("cannot read: {}", e.kind())))? {
        return Err((BillErrorCode::TruncatedZip, format!("the zip has no end record: cut short at {length} bytes")));
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| (BillErrorCode::Io, format!("cannot read: {}", e.kind())))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(&mut *file)).map_err(|e| match e {
        zip::result::ZipError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            (BillErrorCode::TruncatedZip, "the zip's directory points past its end: cut short".into())
        }
        e => (BillErrorCode::BadZip, format!("the zip does not read: {e}")),
    })?;
    let mut found: Vec<Entry> = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| (BillErrorCode::BadZip, format!("zip entry {i}: {e}")))?;
        let raw_name = entry.name_raw();
        let is_csv = raw_name.len() >= 4 && raw_name[raw_name.len() - 4..].eq_ignore_ascii_case(b".csv");
        let is_summary = contains(raw_name, SUMMARY_UTF8) || contains(raw_name, SUMMARY_GBK);
        if entry.is_dir() || !is_csv || is_summary {
            continue;
        }
        let name = String::from_utf8_lossy(raw_name).into_owned();
        if entry.encrypted() {
            return Err((BillErrorCode::BadZip, format!("{name} is encrypted")));
        }
        let method = match entry.compression() {
            CompressionMethod::Stored => Method::Stored,
            CompressionMethod::Deflated => Method::Deflated,
            other => return Err((BillErrorCode::BadZip, format!("{name} is compressed with {other:?}, not deflate"))),
        };
        let end = entry.data_start().checked_add(entry.compressed_size());
        if end.is_none_or(|end| end > length) {
            return Err((BillErrorCode::TruncatedZip, format!("{name} runs past the end of the file")));
        }
        found.push(Entry {
            name,
            data_start: entry.data_start(),
            compressed_size: entry.compressed_size(),
            size: entry.size(),
            crc32: entry.crc32(),
            method,
        });
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err((BillErrorCode::BadZip, "the zip holds no trade-detail CSV (…_业务明细.csv)".into())),
        n => Err((BillErrorCode::BadZip, format!("the zip holds {n} detail CSVs, expected one"))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the end-of-central-directory record is where a whole zip has it: whole, and
/// ending the file but for its comment. A download cut short has none.
fn has_end_record(file: &mut File, length: u64) -> io::Result<bool> {
    let start = length.saturating_sub(ZIP_END_SEARCH_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(ZIP_END_SEARCH_BYTES).read_to_end(&mut tail)?;
    // The record is 22 bytes, its last two the length of the comment that ends the file.
    let whole = |at: usize| {
        tail.get(at + 20..at + 22)
            .is_some_and(|n| usize::from(u16::from_le_bytes([n[0], n[1]])) + at + 22 == tail.len())
    };
    Ok(tail.windows(ZIP_END_MAGIC.len()).enumerate().any(|(at, w)| w == ZIP_END_MAGIC && whole(at)))
}

/// An error of the zip stream, carried inside an `io::Error` to the line reader.
#[derive(Debug)]
struct ZipStreamError {
    code: BillErrorCode,
    message: String,
}

impl std::fmt::Display for ZipStreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ZipStreamError {}

/// The inflated entry, checked at its end against the size and CRC-32 the zip states.
struct Checked {
    inner: Box<dyn Read + Send>,
    crc: crc32fast::Hasher,
    read: u64,
    entry: Entry,
}

impl Checked {
    fn fail(&self, code: BillErrorCode, message: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            ZipStreamError { code, message: format!("{}: {message}", self.entry.name) },
        )
    }
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.fail(BillErrorCode::TruncatedZip, "the compressed data ends early".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => return Err(self.fail(BillErrorCode::BadZip, format!("does not inflate: {e}"))),
        };
        self.read += n as u64;
        if self.read > self.entry.size {
            return Err(self
                .fail(BillErrorCode::BadZip, format!("is longer than the {} bytes the zip states", self.entry.size)));
        }
        self.crc.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            if self.read < self.entry.size {
                return Err(self.fail(
                    BillErrorCode::TruncatedZip,
                    format!("ends after {} of its {} bytes", self.read, self.entry.size),
                ));
            }
            if self.crc.clone().finalize() != self.entry.crc32 {
                return Err(self.fail(BillErrorCode::BadZip, "its CRC-32 does not match: the data is damaged".into()));
            }
        }
        Ok(n)
    }
}

/// A read error as a bill error: a zip stream's own code, else `io`.
pub(crate) fn io_error(file: &str, line: u64, error: &io::Error) -> BillError {
    if let Some(zip) = error.get_ref().and_then(|e| e.downcast_ref::<ZipStreamError>()) {
        return BillError::new(file, line, None, zip.code, zip.message.clone());
    }
    BillError::new(file, line, None, BillErrorCode::Io, format!("cannot read: {}", error.kind()))
}
