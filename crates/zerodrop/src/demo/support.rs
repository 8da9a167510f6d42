//! The end of the demo's run, as a support person would do it: list the open attention
//! items through `GET /v1/attention`, decide each, and end it through
//! `POST /v1/attention/{id}/resolve`. Nothing here reaches into the database: a person
//! has the API, the platform's own records of its orders and the game's records.

use crate::endpoint::Endpoint;
use crate::stack::Client;
use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Who the demo's support person is, in the action log.
pub const ACTOR: &str = "demo-support";
/// Items asked for per page (the API's most).
const PAGE_ITEMS: u32 = 200;
/// Times a resolution is sent again, with the same Idempotency-Key, when no answer came.
const RESOLVE_ATTEMPTS_MAX: u32 = 5;
const RESOLVE_RETRY_MS: u64 = 500;

/// What the person does with an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `dismiss`, `refund` or `deliver_by_hand`.
    pub action: &'static str,
    pub reason_code: &'static str,
    pub note: String,
    /// What the user got (`deliver_by_hand`).
    pub delivered: Option<String>,
}

/// The person's rule: an item with nothing at stake (a wrong amount already refunded, a
/// flag) is dismissed; a paid order whose goods the game's records show applied is
/// delivered by hand (the goods did reach the user); any other money at stake goes back
/// in full.
pub fn decide(reason: &str, at_stake_minor: i64, order_status: Option<&str>, game_applied: bool) -> Decision {
    let decision = |action, reason_code, note: String| Decision { action, reason_code, note, delivered: None };
    if at_stake_minor <= 0 {
        let (code, note) = match reason {
            "amount_mismatch" => ("wrong_amount_refunded", "the user paid another amount; it went back in full"),
            "provider_mismatch" => ("other_provider_refunded", "paid through another provider; it went back in full"),
            _ => ("nothing_at_stake", "looked at; no money of the user's is held"),
        };
        return decision("dismiss", code, note.into());
    }
    if order_status == Some("paid") && game_applied {
        return Decision {
            delivered: Some("the game's records show the goods applied".into()),
            ..decision("deliver_by_hand", "found_in_game_records", format!("{reason}: the game has the grant"))
        };
    }
    let what = match order_status {
        Some("paid") => "paid and not delivered",
        Some(_) => "money held",
        None => "a charge that fits no order",
    };
    decision("refund", "money_back", format!("{reason}: {what}; refunded in full"))
}

/// What the person did, for the report.
#[derive(Default, Debug)]
pub struct Done {
    pub dismissed: u64,
    pub refunded: u64,
    pub delivered_by_hand: u64,
    /// Items the API refused to end as decided: left open, with their clock.
    pub refused: u64,
}

impl Done {
    pub fn acted(&self) -> u64 {
        self.dismissed + self.refunded + self.delivered_by_hand
    }
}

/// Every open item, page by page.
pub async fn open_items(client: &Client) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = client.get(&format!("/v1/attention?state=open&limit={PAGE_ITEMS}&after={after}")).await?;
        anyhow::ensure!(status == 200, "GET /v1/attention: HTTP {status} {page}");
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return Ok(items),
        }
    }
}

/// Lists the open items and ends each as [`decide`] says, printing one line per item.
/// `order_nos` maps zerodrop's order ids to numbers (the platform's records); `game` is
/// the game's own record of what it applied.
pub async fn resolve_all(client: &Client, order_nos: &HashMap<String, String>, game: &Endpoint) -> Result<Done> {
    let applied = game.applied();
    let mut done = Done::default();
    for item in open_items(client).await? {
        let id = item["id"].as_i64().ok_or_else(|| anyhow!("an item without an id: {item}"))?;
        let reason = item["reason"].as_str().unwrap_or_default();
        let at_stake = item["at_stake"]["amount_minor"].as_i64().unwrap_or(0);
        let order_id = item["order_id"].as_str();
        let order_no = order_id.and_then(|id| order_nos.get(id));
        let status = match order_no {
            Some(no) => client.order(no).await?["order"]["status"].as_str().map(str::to_owned),
            None => None,
        };
        let game_applied = order_id.is_some_and(|id| applied.get(id).copied().unwrap_or(0) > 0);
        let decision = decide(reason, at_stake, status.as_deref(), game_applied);
        let mut body = json!({
            "action": decision.action, "reason_code": decision.reason_code, "note": decision.note, "actor": ACTOR,
        });
        if let Some(delivered) = &decision.delivered {
            body["delivered"] = json!(delivered);
        }
        let (code, answer) = resolve(client, id, &body).await?;
        let on = order_no.map_or_else(|| "no order".to_owned(), |no| format!("order {no}"));
        if code == 200 {
            match decision.action {
                "dismiss" => done.dismissed += 1,
                "refund" => done.refunded += 1,
                _ => done.delivered_by_hand += 1,
            }
            println!(
                "  item {id:>5} {reason:<20} at stake {at_stake:>6}  {on}: {} ({})",
                decision.action, decision.reason_code
            );
        } else {
            done.refused += 1;
            let why = answer["error"]["code"].as_str().unwrap_or("?");
            println!(
                "  item {id:>5} {reason:<20} at stake {at_stake:>6}  {on}: {} REFUSED ({code} {why}): left open",
                decision.action
            );
        }
    }
    Ok(done)
}

/// Sends one resolution, again with the same key while no answer comes (a timeout, a 5xx).
async fn resolve(client: &Client, id: i64, body: &Value) -> Result<(u16, Value)> {
    let path = format!("/v1/attention/{id}/resolve");
    let key = format!("demo-support-{id}");
    let mut last = None;
    for _ in 0..RESOLVE_ATTEMPTS_MAX {
        match client.post(&path, body, Some(&key)).await {
            Ok((status, answer)) if status < 500 => return Ok((status, answer)),
            Ok((status, answer)) => last = Some(anyhow!("HTTP {status} {answer}")),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(RESOLVE_RETRY_MS)).await;
    }
    Err(last.unwrap_or_else(|| anyhow!("no answer")).context(format!("resolving attention item {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_at_stake_is_dismissed_with_a_reason() {
        let d = decide("amount_mismatch", 0, Some("delivered"), false);
        assert_eq!((d.action, d.reason_code), ("dismiss", "wrong_amount_refunded"));
        assert_eq!(decide("whatever", 0, None, false).action, "dismiss");
    }

    #[test]
    fn money_at_stake_is_never_dismissed() {
        let paid = decide("dropped_order", 600, Some("paid"), false);
        assert_eq!((paid.action, paid.delivered), ("refund", None));
        assert_eq!(decide("refund_failed", 600, None, false).action, "refund");
        assert_eq!(decide("refund_failed", 600, Some("delivered"), true).action, "refund", "only a paid order");
    }

    #[test]
    fn a_paid_order_the_game_applied_is_delivered_by_hand() {
        let d = decide("delivery_unknown", 600, Some("paid"), true);
        assert_eq!((d.action, d.reason_code), ("deliver_by_hand", "found_in_game_records"));
        assert!(d.delivered.is_some());
    }
}
