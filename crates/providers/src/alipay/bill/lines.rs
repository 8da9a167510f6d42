//! Physical lines, bounded, and their text in the bill's charset.

use super::{BILL_LINES_MAX, LINE_BYTES_MAX};
use encoding_rs::GBK;
use std::borrow::Cow;
use std::io::{self, BufRead};

/// The next physical line could not be had.
pub(crate) enum LineError {
    Io(io::Error),
    /// Longer than [`LINE_BYTES_MAX`].
    TooLong,
    /// One line more than the file may have ([`BILL_LINES_MAX`]).
    TooMany(u64),
}

/// Reads physical lines one at a time into one reused buffer, never more than
/// [`LINE_BYTES_MAX`] bytes of one line.
pub(crate) struct Lines<R> {
    inner: R,
    /// The current line's bytes, without its line ending.
    pub(crate) buf: Vec<u8>,
    /// The current line's number (1-based); 0 before the first.
    pub(crate) line_no: u64,
    lines_max: u64,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(inner: R) -> Lines<R> {
        Lines::with_limit(inner, BILL_LINES_MAX)
    }

    pub(crate) fn with_limit(inner: R, lines_max: u64) -> Lines<R> {
        Lines { inner, buf: Vec::with_capacity(1024), line_no: 0, lines_max }
    }

    /// Reads the next line into `buf`; false at the end of the file.
    pub(crate) fn advance(&mut self) -> Result<bool, LineError> {
        self.buf.clear();
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let (take, consumed, done) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (at, at + 1, true),
                None => (available.len(), available.len(), false),
            };
            // One byte of slack for a CR before the LF.
            if self.buf.len() + take > LINE_BYTES_MAX + 1 {
                self.line_no += 1;
                return Err(LineError::TooLong);
            }
            self.buf.extend_from_slice(&available[..take]);
            self.inner.consume(consumed);
            if done {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.line_no += 1;
        if self.line_no > self.lines_max {
            return Err(LineError::TooMany(self.lines_max));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.len() > LINE_BYTES_MAX {
            return Err(LineError::TooLong);
        }
        Ok(true)
    }
}

/// The bill's charset, decided once from its first line that is not plain ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charset {
    Undecided,
    Utf8,
    Gbk,
}

/// Why a line is not text: the 1-based byte and what is wrong.
pub(crate) struct NotText {
    pub(crate) byte: usize,
    pub(crate) message: String,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl Charset {
    /// The text of `raw`, the bill's line `line_no`. The first line with non-ASCII
    /// bytes decides the charset: UTF-8 if it is valid UTF-8 (a converted file), else
    /// GBK (as Alipay ships it); every later line must then be in that charset.
    pub(crate) fn decode<'a>(&mut self, raw: &'a [u8], line_no: u64) -> Result<Cow<'a, str>, NotText> {
        let raw = if line_no == 1 { raw.strip_prefix(UTF8_BOM).unwrap_or(raw) } else { raw };
        if line_no == 1 && (raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF")) {
            return Err(NotText { byte: 1, message: "the file is UTF-16; bills are GBK (or UTF-8)".into() });
        }
        // GBK and UTF-8 text never holds NUL; UTF-16 text of ASCII is every other byte NUL.
        if let Some(at) = raw.iter().position(|b| *b == 0) {
            return Err(NotText {
                byte: at + 1,
                message: "a NUL byte: the file is UTF-16 or binary, not GBK or UTF-8".into(),
            });
        }
        if raw.is_ascii() {
            // ASCII is the same in both; `from_utf8` cannot fail here.
            return std::str::from_utf8(raw).map(Cow::Borrowed).map_err(|e| utf8_error(&e));
        }
        match *self {
            Charset::Utf8 => std::str::from_utf8(raw).map(Cow::Borrowed).map_err(|e| NotText {
                byte: e.valid_up_to() + 1,
                message: "not valid UTF-8, the charset of the file's first lines".into(),
            }),
            Charset::Gbk => gbk(raw).map(Cow::Owned).map_err(|byte| NotText {
                byte,
                message: "not valid GBK, the charset of the file's first lines".into(),
            }),
            Charset::Undecided => {
                if let Ok(text) = std::str::from_utf8(raw) {
                    *self = Charset::Utf8;
                    return Ok(Cow::Borrowed(text));
                }
                match gbk(raw) {
                    Ok(text) => {
                        *self = Charset::Gbk;
                        Ok(Cow::Owned(text))
                    }
                    Err(byte) => Err(NotText { byte, message: "neither GBK nor UTF-8".into() }),
                }
            }
        }
    }
}

fn utf8_error(e: &std::str::Utf8Error) -> NotText {
    NotText { byte: e.valid_up_to() + 1, message: "not valid UTF-8".into() }
}

/// `raw` decoded as GBK, or the 1-based byte where it stops being GBK.
fn gbk(raw: &[u8]) -> Result<String, usize> {
    if let Some(text) = GBK.decode_without_bom_handling_and_without_replacement(raw) {
        return Ok(text.into_owned());
    }
    let mut decoder = GBK.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(decoder.max_utf8_buffer_length_without_replacement(raw.len()).unwrap_or(0));
    let (result, read) = decoder.decode_to_string_without_replacement(raw, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, after) => {
            Err(read.saturating_sub(usize::from(bad) + usize::from(after)) + 1)
        }
        encoding_rs::DecoderResult::InputEmpty | encoding_rs::DecoderResult::OutputFull => Err(read + 1),
    }
}

/// The cells of a table line, split at commas. Alipay quotes nothing, but a quoted cell
/// (`"a,b"`, `""` for a quote) is read as CSV would. Each cell loses the tab Alipay
/// appends to id cells, and surrounding spaces. Err: the 1-based cell of an unclosed
/// quote.
pub(crate) fn cells(line: &str) -> Result<Vec<Cow<'_, str>>, usize> {
    let mut out = Vec::with_capacity(32);
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if let Some(quoted) = trimmed.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c != '"' {
                    value.push(c);
                } else if quoted[i + 1..].starts_with('"') {
                    value.push('"');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            }
            let Some(end) = end else { return Err(out.len() + 1) };
            let after = &quoted[end..];
            out.push(Cow::Owned(value.trim_matches([' ', '\t']).to_owned()));
            match after.find(',') {
                Some(comma) => rest = &after[comma + 1..],
                None => return Ok(out),
            }
        } else {
            match rest.find(',') {
                Some(comma) => {
                    out.push(Cow::Borrowed(rest[..comma].trim_matches([' ', '\t'])));
                    rest = &rest[comma + 1..];
                }
                None => {
                    out.push(Cow::Borrowed(rest.trim_matches([' ', '\t'])));
                    return Ok(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_in_length_and_number() {
        let mut lines = Lines::with_limit(&b"a\r\nb\n\nc"[..], 3);
        for expected in ["a", "b", ""] {
            assert!(matches!(lines.advance(), Ok(true)));
            assert_eq!(lines.buf, expected.as_bytes(), "without CR or LF");
        }
        assert!(matches!(lines.advance(), Err(LineError::TooMany(3))), "the fourth line is one too many");
        let mut lines = Lines::with_limit(&b"d\ne"[..], 2);
        assert!(lines.advance().is_ok() && lines.advance().is_ok() && matches!(lines.advance(), Ok(false)));
        let long = vec![b'x'; LINE_BYTES_MAX + 1];
        let mut lines = Lines::new(&long[..]);
        assert!(matches!(lines.advance(), Err(LineError::TooLong)));
        let exact = vec![b'x'; LINE_BYTES_MAX];
        assert!(matches!(Lines::new(&exact[..]).advance(), Ok(true)));
    }

    #[test]
    fn cells_lose_their_tabs_and_quotes_are_read() {
        let line = "2019091622001458860515315453\t,service_1\t,交易\t,\"a, \"\"b\"\"\",,0.01";
        let cells = cells(line).unwrap();
        assert_eq!(cells, ["2019091622001458860515315453", "service_1", "交易", "a, \"b\"", "", "0.01"]);
        assert_eq!(super::cells("a,\"open"), Err(2));
    }

    #[test]
    fn the_first_non_ascii_line_decides_the_charset() {
        let gbk_bytes = GBK.encode("#账号：[2088]").0.into_owned();
        let mut charset = Charset::Undecided;
        assert_eq!(charset.decode(b"#plain", 1).ok().as_deref(), Some("#plain"));
        assert_eq!(charset, Charset::Undecided);
        assert_eq!(charset.decode(&gbk_bytes, 2).ok().as_deref(), Some("#账号：[2088]"));
        assert_eq!(charset, Charset::Gbk);
        assert_eq!(charset.decode(b"#\xFF", 3).err().map(|e| e.byte), Some(2), "not GBK in a GBK file");

        let mut charset = Charset::Undecided;
        assert!(charset.decode("#账号".as_bytes(), 1).is_ok());
        assert_eq!(charset, Charset::Utf8);
        assert_eq!(charset.decode(&gbk_bytes, 2).err().map(|e| e.byte), Some(2));
    }

    #[test]
    fn bytes_in_neither_charset_are_named() {
        let mut charset = Charset::Undecided;
        assert_eq!(charset.decode(b"#ab\xFF\xFFcd", 1).err().map(|e| e.byte), Some(4));
        assert_eq!(charset.decode(b"\xFF\xFE#\x00", 1).err().map(|e| e.byte), Some(1));
        assert_eq!(charset.decode(b"#\x00a\x00", 2).err().map(|e| e.byte), Some(2));
    }
}
