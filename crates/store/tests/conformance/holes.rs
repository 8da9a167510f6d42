//! Issue 9's holes, as the store sees them: refused evidence kept in part and pruned only
//! past its retention (the database refuses any other delete), and a delivery
//! confirmation accepted once.

use serde_json::json;
use zerodrop_store::confirmations::{self, NewConfirmation};
use zerodrop_store::notifications::{self, NewNotification, Verdict, REFUSED_BODY_BYTES_KEPT};
use zerodrop_store::{both_engines, now_ms, raw_execute, Store};

const DAY_MS: i64 = 86_400_000;

async fn store_notification(store: &Store, body: &[u8], refused_unverified: bool, received_at_ms: i64) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let verdict = if refused_unverified { Verdict::Rejected } else { Verdict::Accepted };
    let row = NewNotification {
        provider: "sandbox",
        remote_addr: Some("203.0.113.9:4000".into()),
        headers: json!({}),
        body,
        refused_unverified,
        verdict,
        reason: Some(if refused_unverified { "bad_signature: forged".into() } else { "ok".into() }),
        order_no: None,
        trade_no: None,
        notify_id: None,
    };
    let id = notifications::insert(&mut tx, &row, received_at_ms);
    tx.commit().await.unwrap();
    id
}

async fn exists(store: &Store, id: i64) -> bool {
    let mut conn = store.reader().await.unwrap();
    let sql = "SELECT COUNT(*) FROM notifications WHERE id = $1";
    sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&mut *conn).await.unwrap() == 1
}

async fn delete_directly(store: &Store, sql: &str) -> bool {
    let mut conn = store.reader().await.unwrap();
    raw_execute(&mut conn, sql).await.is_ok()
}

both_engines! {
    async fn refused_bodies_keep_8_kib_and_the_whole_hash_verified_ones_stay_whole(db) {
        let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let refused = store_notification(&db.store, &big, true, now_ms()).await;
        let verified = store_notification(&db.store, &big, false, now_ms()).await;
        let mut conn = db.store.reader().await.unwrap();
        let r = notifications::get(&mut conn, refused).await.unwrap();
        assert_eq!(r.body, big[..REFUSED_BODY_BYTES_KEPT]);
        assert_eq!(r.body_bytes, Some(64 * 1024));
        let whole = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &big).as_ref());
        assert_eq!(r.body_sha256.as_deref(), Some(whole.as_str()), "the hash is of the whole body");
        assert_eq!(r.refused_unverified, Some(1));
        let v = notifications::get(&mut conn, verified).await.unwrap();
        assert_eq!(v.body, big, "a verified notification is kept whole");
        assert_eq!((v.body_bytes, v.refused_unverified), (Some(64 * 1024), Some(0)));
    }
}

both_engines! {
    async fn only_refused_evidence_past_its_retention_is_pruned_and_nothing_else_can_be_deleted(db) {
        let now = now_ms();
        let old_refused = store_notification(&db.store, b"forged", true, now - 100 * DAY_MS).await;
        let young_refused = store_notification(&db.store, b"forged", true, now - 3 * DAY_MS).await;
        let old_verified = store_notification(&db.store, b"genuine", false, now - 400 * DAY_MS).await;
        // Stored before the mark existed (no mark): judged by its reason.
        let legacy = 7_000_001;
        let legacy_genuine = 7_000_002;
        let mut conn = db.store.reader().await.unwrap();
        let insert = |id: i64, reason: &str| format!(
            "INSERT INTO notifications (id, provider, received_at_ms, headers, body, verdict, reason) \
             VALUES ({id}, 'sandbox', {}, '{{}}', '', 'rejected', '{reason}')", now - 100 * DAY_MS);
        raw_execute(&mut conn, &insert(legacy, "bad_signature: forged")).await.unwrap();
        raw_execute(&mut conn, &insert(legacy_genuine, "wrong_app_id: a genuine message for another app")).await.unwrap();
        // The mark cannot be changed, nor the evidence, by anyone.
        assert!(raw_execute(&mut conn, &format!("UPDATE notifications SET refused_unverified = 1 WHERE id = {old_verified}")).await.is_err());
        assert!(raw_execute(&mut conn, &format!("UPDATE notifications SET body = body WHERE id = {old_verified}")).await.is_err());
        drop(conn);
        // What the database refuses, whoever asks: a verified row however old, a young refused one.
        assert!(!delete_directly(&db.store, &format!("DELETE FROM notifications WHERE id = {old_verified}")).await);
        assert!(!delete_directly(&db.store, &format!("DELETE FROM notifications WHERE id = {young_refused}")).await);

        let mut tx = db.store.begin().await.unwrap();
        let pruned = notifications::prune_refused(&mut tx, now - 90 * DAY_MS, 1_000).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(pruned, 2);
        assert!(!exists(&db.store, old_refused).await && !exists(&db.store, legacy).await);
        assert!(exists(&db.store, young_refused).await, "within its retention");
        assert!(exists(&db.store, old_verified).await, "verified notifications stay forever");
        assert!(exists(&db.store, legacy_genuine).await, "an old row whose signature verified stays");
        // Bounded: a limit of one deletes one.
        for _ in 0..3 {
            store_notification(&db.store, b"forged", true, now - 200 * DAY_MS).await;
        }
        let mut tx = db.store.begin().await.unwrap();
        assert_eq!(notifications::prune_refused(&mut tx, now - 90 * DAY_MS, 1).await.unwrap(), 1);
        tx.commit().await.unwrap();
    }
}

both_engines! {
    async fn a_confirmation_is_accepted_once_per_order_and_attempt_and_never_changed(db) {
        let order = crate::new_order(&db.store, "diamonds_60").await;
        let order_id = order.id.to_string();
        let confirmation = |attempt: &'static str, status: &'static str| NewConfirmation {
            order_id: "",
            attempt_id: attempt,
            status,
            reason: "",
            signed_at_secs: 1,
            signature: "v1=00",
            body_sha256: "00",
        };
        let mut tx = db.store.begin().await.unwrap();
        let first = NewConfirmation { order_id: &order_id, ..confirmation("a1", "delivered") };
        assert!(confirmations::insert(&mut tx, &first, now_ms()).await.unwrap());
        let again = NewConfirmation { order_id: &order_id, ..confirmation("a1", "failed") };
        assert!(!confirmations::insert(&mut tx, &again, now_ms()).await.unwrap(), "the same attempt again");
        let other = NewConfirmation { order_id: &order_id, ..confirmation("a2", "failed") };
        assert!(confirmations::insert(&mut tx, &other, now_ms()).await.unwrap(), "another attempt is its own");
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let stored = confirmations::for_order(&mut conn, &order_id).await.unwrap();
        assert_eq!(stored.iter().map(|c| (c.attempt_id.as_str(), c.status.as_str())).collect::<Vec<_>>(), [("a1", "delivered"), ("a2", "failed")]);
        assert!(raw_execute(&mut conn, "UPDATE delivery_confirmations SET status = 'failed'").await.is_err());
        assert!(raw_execute(&mut conn, "DELETE FROM delivery_confirmations").await.is_err());
    }
}
