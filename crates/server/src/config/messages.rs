//! The `[messages]` section: where the user-message outbox is delivered. Every message a
//! user receives (reminders, failed charges, lapses, terminations, one-time codes) is
//! stored first and readable through `GET /v1/users/{user_id}/messages`; with a webhook
//! configured, each is also POSTed there, signed like external deliveries. Without one,
//! messages are only stored.

use super::safety;
use serde::{Deserialize, Serialize};
use zerodrop_domain::Secret;

/// Fewest attempts accepted: a webhook down for a few seconds must not lose a message.
const ATTEMPTS_MIN: i64 = 3;
/// Most attempts accepted: backoff caps at 10 minutes, so 1000 is about a week.
const ATTEMPTS_MAX: i64 = 1_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// The platform's message webhook (it forwards to SMS, app push, mail). Absent: messages
    /// are only stored and read through the API.
    pub webhook_url: Option<String>,
    /// Signs each POST: HMAC-SHA256 over `timestamp.body`, as external deliveries.
    pub webhook_secret: Option<Secret<String>>,
    pub timeout_ms: u64,
    /// Attempts per message before it ends in `attention` (still readable through the API).
    pub attempts_max: i64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        // 300 attempts with backoff capped at 10 minutes: a day or more, as deliveries.
        MessagesConfig { webhook_url: None, webhook_secret: None, timeout_ms: 10_000, attempts_max: 300 }
    }
}

/// A configured webhook: its URL and secret.
pub struct Webhook<'a> {
    pub url: &'a str,
    pub secret: &'a str,
}

impl MessagesConfig {
    pub fn webhook(&self) -> Option<Webhook<'_>> {
        match (&self.webhook_url, &self.webhook_secret) {
            (Some(url), Some(secret)) => Some(Webhook { url, secret: secret.expose() }),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match (&self.webhook_url, &self.webhook_secret) {
            (None, None) => {}
            (Some(url), Some(secret)) => {
                safety::https_or_loopback("messages.webhook_url", url)?;
                safety::key_long_enough("messages.webhook_secret", secret.expose())?;
            }
            _ => return Err("messages.webhook_url and messages.webhook_secret go together".into()),
        }
        if !(ATTEMPTS_MIN..=ATTEMPTS_MAX).contains(&self.attempts_max) {
            return Err(format!("messages.attempts_max must be between {ATTEMPTS_MIN} and {ATTEMPTS_MAX}"));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("messages.timeout_ms must be between 100 and 60000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_needs_its_secret_and_https_unless_loopback() {
        assert!(MessagesConfig::default().validate().is_ok(), "no webhook: messages are only stored");
        let secret = Some(Secret::new("k".repeat(32)));
        let with = |url: &str| MessagesConfig {
            webhook_url: Some(url.into()),
            webhook_secret: secret.clone(),
            ..Default::default()
        };
        assert!(with("https://hooks.example.com/m").validate().is_ok());
        assert!(with("http://127.0.0.1:9/m").validate().is_ok());
        let plain = with("http://hooks.example.com/m").validate().unwrap_err();
        assert!(plain.contains("https"), "{plain}");
        let alone = MessagesConfig { webhook_url: Some("https://h.example/m".into()), ..Default::default() };
        assert!(alone.validate().is_err());
        let short = MessagesConfig { webhook_secret: Some(Secret::new("short".into())), ..with("https://h.example/m") };
        let error = short.validate().unwrap_err();
        assert!(!error.contains("short"), "never the secret's value: {error}");
    }
}
