//! What configuration errors and dumps may show: the key, the line, the variable, never a
//! value. A value may be a private key, a password or an API key, and error text ends up
//! on terminals, in CI logs and in bug reports.

/// A URL with its password (the user-info after `:`, and any `password=` parameter)
/// replaced by `[redacted]`, for printing.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme) = shown.find("://") {
        let authority_end = shown[scheme + 3..].find('/').map_or(shown.len(), |i| scheme + 3 + i);
        if let Some(at) = shown[..authority_end].rfind('@') {
            if let Some(colon) = shown[scheme + 3..at].find(':') {
                shown.replace_range(scheme + 3 + colon + 1..at, "[redacted]");
            }
        }
    }
    if let Some(start) = shown.find("password=") {
        let value = start + "password=".len();
        let end = shown[value..].find('&').map_or(shown.len(), |i| value + i);
        shown.replace_range(value..end, "[redacted]");
    }
    shown
}

/// Serde messages that quote a key's name, not a value: what they quote may be shown.
const MESSAGES_QUOTING_KEYS: &[&str] = &["unknown field", "missing field", "duplicate field", "duplicate key"];

/// A TOML or type error's message with every value it quotes blanked.
///
/// Serde words its errors as "<what was found>, expected <what the type wants>": the
/// first part may quote the value (`invalid type: string "…"`, ``integer `…` ``,
/// ``unknown variant `…` ``), the second only quotes what zerodrop's own types accept.
/// Messages about keys (unknown or missing fields) keep the key's name.
pub fn blank_values(message: &str) -> String {
    let message = message.trim_end();
    if MESSAGES_QUOTING_KEYS.iter().any(|m| message.starts_with(m)) {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for (at, c) in message.char_indices() {
        match open {
            Some(quote) if c == quote => open = None,
            Some(_) => {}
            // Only outside a quoted value: a value may itself contain the word.
            None if message[at..].starts_with("expected") => {
                out.push_str(&message[at..]);
                break;
            }
            None if c == '"' || c == '`' || c == '\'' => {
                out.push_str(&format!("{c}…{c}"));
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// The key path a deserialization error names (toml writes it on its own line as
/// ``in `a.b` ``), or `None` for an error at the top level.
pub fn error_key_path(e: &toml::de::Error) -> Option<String> {
    let text = e.to_string();
    let line = text.lines().rev().find(|l| l.starts_with("in `"))?;
    line.strip_prefix("in `")?.strip_suffix('`').map(str::to_owned)
}

/// A TOML syntax error in words without the text it quotes, and where it is in the file.
pub fn describe_syntax(e: &toml::de::Error, text: &str) -> String {
    let message = blank_values(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_when_printed() {
        assert_eq!(redact_url("postgres://zd:hunter2@db:5432/zd"), "postgres://zd:[redacted]@db:5432/zd");
        assert_eq!(redact_url("postgres://zd@db/zd"), "postgres://zd@db/zd", "no password, nothing to hide");
        assert_eq!(
            redact_url("postgres://db/zd?user=zd&password=hunter2&x=1"),
            "postgres://db/zd?user=zd&password=[redacted]&x=1"
        );
        assert_eq!(redact_url("sqlite://./data/zerodrop.db"), "sqlite://./data/zerodrop.db");
        assert_eq!(
            redact_url("postgres://a:p@ss@db/zd"),
            "postgres://a:[redacted]@db/zd",
            "the last @ ends the user-info"
        );
    }

    #[test]
    fn values_are_blanked_and_what_is_expected_is_kept() {
        assert_eq!(
            blank_values("invalid type: string \"hunter2\", expected a sequence"),
            "invalid type: string \"…\", expected a sequence"
        );
        assert_eq!(
            blank_values("invalid type: integer `123456`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(
            blank_values("unknown variant `yaml`, expected `text` or `json`"),
            "unknown variant `…`, expected `text` or `json`"
        );
        assert_eq!(blank_values("unknown field `surprise`, expected one of `a`"), "unknown field `surprise`, expected one of `a`");
        assert_eq!(blank_values("invalid value: 'abc' here"), "invalid value: '…' here");
        assert_eq!(
            blank_values("invalid type: string \"a-expected-b\", expected a sequence"),
            "invalid type: string \"…\", expected a sequence",
            "a value holding the word is still blanked whole"
        );
    }
}
