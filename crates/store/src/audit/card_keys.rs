//! Card keys: each card-key delivery holds one key, no key serves two orders, and each
//! stored code is one code: its fingerprint is the code's own (the verifier opens it), and
//! no two rows share one. A code copied into a second stock row would be sold twice.

use super::{sql_check, Check, Verifier};
use crate::{Conn, Result};

/// Keys opened per page, to bound memory.
const KEY_PAGE: i64 = 1_000;

pub(super) async fn checks(c: &mut Conn, verifier: Option<&dyn Verifier>) -> Result<Vec<Check>> {
    let delivered_once = sql_check(
        &mut *c,
        "card_key_delivered_once",
        "every card-key delivery holds exactly one key, and no key serves two orders",
        "SELECT d.order_id FROM deliveries d WHERE d.kind = 'card_key' \
           AND (SELECT COUNT(*) FROM card_keys k WHERE k.order_id = d.order_id) <> 1 \
         UNION ALL \
         SELECT order_id FROM card_keys WHERE order_id IS NOT NULL GROUP BY order_id HAVING COUNT(*) > 1",
        &[],
    )
    .await?;
    let mut codes = sql_check(
        &mut *c,
        "card_key_code_once",
        "no two card-key rows share a fingerprint, and every stored code opens to the code its fingerprint names",
        "SELECT 'card keys ' || CAST(MIN(id) AS TEXT) || ' and ' || CAST(MAX(id) AS TEXT) || ' share a fingerprint' \
         FROM card_keys GROUP BY fingerprint HAVING COUNT(*) > 1",
        &[],
    )
    .await?;
    if let Some(verifier) = verifier {
        opened(c, verifier, &mut codes).await?;
    }
    Ok(vec![delivered_once, codes])
}

/// A `card_keys` row as this check reads it.
#[derive(sqlx::FromRow)]
struct KeyRecord {
    id: i64,
    sku: String,
    fingerprint: String,
    ciphertext: Vec<u8>,
    state: String,
}

/// Opens every stored code and compares its fingerprint with the stored one: a code
/// copied from another row opens to a code whose fingerprint is that row's.
async fn opened(c: &mut Conn, verifier: &dyn Verifier, check: &mut Check) -> Result<()> {
    let mut after = 0;
    loop {
        let page = sqlx::query_as::<_, KeyRecord>(
            "SELECT id, sku, fingerprint, ciphertext, state FROM card_keys WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(KEY_PAGE)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = page.last().map(|k| k.id) else { return Ok(()) };
        for key in &page {
            match verifier.card_key_fingerprint(&key.sku, &key.ciphertext) {
                Ok(fingerprint) if fingerprint == key.fingerprint => {}
                Ok(_) => check.violation(format!(
                    "card key {} ({}, {}): its code is not the one its fingerprint names",
                    key.id, key.sku, key.state
                )),
                Err(why) => check.violation(format!("card key {} ({}): {why}", key.id, key.sku)),
            }
        }
        after = last;
    }
}
