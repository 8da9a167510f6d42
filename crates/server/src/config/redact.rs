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

/// The parts of a URL that may be secret: the password in its user-info, and every query
/// parameter's value (`password=`, `sslpassword=`, and any value a driver might echo in
/// an error about it).
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme) = url.find("://") {
        let rest = &url[scheme + 3..];
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                found.push(password.to_owned());
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        found.extend(query.split('&').filter_map(|p| p.split_once('=')).map(|(_, v)| v.to_owned()));
    }
    found
}

/// Shortest text [`scrub`] replaces: shorter values (`1`, `on`) are common words in any
/// message, and replacing them would hide the message, not a secret.
const SCRUBBED_CHARS_MIN: usize = 4;

/// `text` with every occurrence of each of `secrets` replaced by `[redacted]`: the last
/// guard before an error reaches a terminal, whatever a library put in it.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut shown = text.to_owned();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| s.chars().count() >= SCRUBBED_CHARS_MIN).collect();
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        shown = shown.replace(secret.as_str(), "[redacted]");
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
    fn secrets_in_urls_are_found_and_scrubbed_from_any_text() {
        let url = "postgres://zd:hunter2@db:5432/zd?sslmode=s3cr3t-mode&password=pa55word";
        assert_eq!(url_secrets(url), ["hunter2", "s3cr3t-mode", "pa55word"]);
        let text = "unknown value \"s3cr3t-mode\" for `ssl_mode` at postgres://zd:hunter2@db";
        assert_eq!(
            scrub(text, &url_secrets(url)),
            "unknown value \"[redacted]\" for `ssl_mode` at postgres://zd:[redacted]@db"
        );
        assert_eq!(scrub("on and on", &["on".into()]), "on and on", "too short to be a secret worth hiding");
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
        assert_eq!(
            blank_values("unknown field `surprise`, expected one of `a`"),
            "unknown field `surprise`, expected one of `a`"
        );
        assert_eq!(blank_values("invalid value: 'abc' here"), "invalid value: '…' here");
        assert_eq!(
            blank_values("invalid type: string \"a-expected-b\", expected a sequence"),
            "invalid type: string \"…\", expected a sequence",
            "a value holding the word is still blanked whole"
        );
    }
}
