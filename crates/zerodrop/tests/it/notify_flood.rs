//! Refused notifications cannot fill the disk. A refused body that never verified keeps
//! only its first 8 KiB (with the whole body's SHA-256 and length), refusals are stored
//! only within a limit per source address (the rest are answered the same and counted in
//! `/metrics`), and the flood probe, 1,500 forged 64 KiB bodies, adds at most
//! 15 MB to the database on either engine, even with the limit lifted.

use crate::support::{calm, notifications_only, Harness};
use rand::distr::{Alphanumeric, SampleString};
use std::sync::Arc;
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;
use zerodrop_store::notifications::REFUSED_BODY_BYTES_KEPT;

/// The probe from the issue: this many forged bodies of [`BODY_BYTES`] each.
const FLOOD_BODIES: usize = 1_500;
const BODY_BYTES: usize = 64 * 1024;
/// What the probe may add to the database: 15 MB.
const GROWTH_BYTES_MAX: i64 = 15_000_000;
/// Requests in flight at once, as a flooding client would keep them.
const SENDERS: usize = 8;

fn quiet() -> Faults {
    Faults { drop_rate_pct: 100, ..calm() }
}

/// Forged bodies of exactly [`BODY_BYTES`]: a payment notification signed with a key that
/// is not the provider's, padded with random text (so no engine can compress it away),
/// each with its own notify id.
struct Forgery {
    prefix: String,
    padding: String,
}

impl Forgery {
    fn new(order_no: &str) -> Forgery {
        let forger = RsaPrivateKey::generate().unwrap();
        let fields = zerodrop::stack::payment_notification(order_no, "T-flood", "6.00");
        let prefix = zerodrop::stack::sign_notification(&forger, &fields).unwrap();
        let padding = Alphanumeric.sample_string(&mut rand::rng(), BODY_BYTES);
        Forgery { prefix, padding }
    }

    fn body(&self, n: usize) -> Vec<u8> {
        let mut body = format!("{}&flood_n={n:06}&pad=", self.prefix);
        let room = BODY_BYTES - body.len();
        body.push_str(&self.padding[..room]);
        assert_eq!(body.len(), BODY_BYTES);
        body.into_bytes()
    }
}

/// Posts `count` forged bodies from this one address, [`SENDERS`] at a time; returns the
/// answers that were not `400 fail`.
async fn flood(h: &Harness, forgery: Arc<Forgery>, count: usize) -> Vec<(u16, String)> {
    flood_route(h, "notify", forgery, count).await
}

/// [`flood`] against `/v1/providers/sandbox/{route}`.
async fn flood_route(h: &Harness, route: &str, forgery: Arc<Forgery>, count: usize) -> Vec<(u16, String)> {
    let url = format!("{}/v1/providers/sandbox/{route}", h.server.base_url);
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (http, url, forgery) = (h.client.http.clone(), url.clone(), forgery.clone());
        senders.spawn(async move {
            let mut odd = Vec::new();
            for n in (sender..count).step_by(SENDERS) {
                let response = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(forgery.body(n))
                    .send()
                    .await
                    .expect("post");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if (status, text.as_str()) != (400, "fail") {
                    odd.push((status, text));
                }
            }
            odd
        });
    }
    let mut odd = Vec::new();
    while let Some(answers) = senders.join_next().await {
        odd.extend(answers.expect("sender"));
    }
    odd
}

async fn refused_rows(db: &zerodrop_store::testing::TestDb) -> Vec<(i64, Option<i64>, Option<String>, Option<i64>)> {
    let mut conn = db.store.reader().await.unwrap();
    sqlx::query_as::<_, (i64, Option<i64>, Option<String>, Option<i64>)>(
        "SELECT length(body), body_bytes, body_sha256, refused_unverified FROM notifications WHERE verdict = 'rejected'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

async fn metric(h: &Harness, name: &str) -> i64 {
    let text = h.client.http.get(format!("{}/metrics", h.server.base_url)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

both_engines! {
    /// The probe with the per-source limit lifted: every refusal is stored, each cut to
    /// 8 KiB, and the database grows by at most 15 MB.
    async fn the_flood_probe_adds_at_most_15_mb_even_with_no_limit(db) {
        let h = Harness::start_with(db, quiet(), notifications_only(), |config| {
            config.notifications.refused_per_source_per_minute = 100_000;
            config.notifications.refused_per_minute = 100_000;
        })
        .await;
        let created = h.order("u1", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let before = db.database_bytes().await;
        let started = std::time::Instant::now();
        let odd = flood(&h, Arc::new(Forgery::new(&no)), FLOOD_BODIES).await;
        let took = started.elapsed();
        assert!(odd.is_empty(), "every forged body is refused in the provider's protocol: {odd:?}");
        let grown = db.database_bytes().await - before;
        eprintln!("flood probe, no limit: {FLOOD_BODIES} x {BODY_BYTES} bytes in {took:?}; database grew {grown} bytes");
        assert!(grown <= GROWTH_BYTES_MAX, "the database grew {grown} bytes");
        let rows = refused_rows(db).await;
        assert_eq!(rows.len(), FLOOD_BODIES, "with no limit every refusal is kept as evidence");
        for (stored, whole, sha, mark) in &rows {
            assert_eq!(*stored, REFUSED_BODY_BYTES_KEPT as i64);
            assert_eq!(*whole, Some(BODY_BYTES as i64));
            assert_eq!(sha.as_ref().map(String::len), Some(64));
            assert_eq!(*mark, Some(1));
        }
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "awaiting_payment");
        h.stop().await;
    }
}

both_engines! {
    /// The agreement notification route refuses what nothing verified exactly as the
    /// payment route does: each forged body kept cut to 8 KiB with its hash, as prunable
    /// refused evidence, never whole as agreement evidence.
    async fn forged_agreement_notifications_are_kept_in_part_like_any_refusal(db) {
        let h = Harness::start_with(db, quiet(), notifications_only(), |config| {
            config.notifications.refused_per_source_per_minute = 100_000;
            config.notifications.refused_per_minute = 100_000;
        })
        .await;
        const FORGED: usize = 200;
        let odd = flood_route(&h, "agreements/notify", Arc::new(Forgery::new("agreement-flood")), FORGED).await;
        assert!(odd.is_empty(), "every forged body is refused in the provider's protocol: {odd:?}");
        let rows = refused_rows(db).await;
        assert_eq!(rows.len(), FORGED);
        assert!(rows.iter().all(|(stored, whole, _, mark)| *stored == REFUSED_BODY_BYTES_KEPT as i64
            && *whole == Some(BODY_BYTES as i64) && *mark == Some(1)), "{rows:?}");
        let mut conn = db.store.reader().await.unwrap();
        let whole: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agreement_notifications").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(whole, 0, "nothing unverified is kept whole");
        drop(conn);
        h.stop().await;
    }
}

both_engines! {
    /// The probe against the default limits: a source's refusals past 60 a minute are
    /// answered the same but not stored, only counted; a genuine notification from the
    /// same address afterwards is still accepted.
    async fn refusals_past_the_per_source_limit_are_counted_not_stored(db) {
        let h = Harness::start(db, quiet(), notifications_only()).await;
        let per_source = i64::from(h.server.app.config.notifications.refused_per_source_per_minute);
        let created = h.order("u1", "diamonds_60").await;
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let before = db.database_bytes().await;
        let sent = 300;
        let odd = flood(&h, Arc::new(Forgery::new(&no)), sent).await;
        assert!(odd.is_empty(), "{odd:?}");
        let stored = refused_rows(db).await.len() as i64;
        // A minute's window may turn during the flood: at most two windows' worth.
        assert!((per_source..=2 * per_source).contains(&stored), "{stored} stored");
        assert_eq!(metric(&h, "zerodrop_notifications_refused_unstored_total").await, sent as i64 - stored);
        let grown = db.database_bytes().await - before;
        eprintln!("flood of {sent} with the default limit: {stored} stored; database grew {grown} bytes");
        // The limit does not touch verified notifications.
        let genuine = h.notification(&no, "T-1", "6.00", |_| {});
        assert_eq!(h.post_notification("sandbox", genuine).await, (200, "success".into()));
        assert_eq!(h.client.order(&no).await.unwrap()["order"]["status"], "delivered");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The prune job, as it runs in `serve`: refused evidence past its retention goes,
    /// younger evidence and every verified notification stay.
    async fn the_prune_job_deletes_refused_evidence_past_its_retention_only(db) {
        use zerodrop_store::notifications::{self, NewNotification, Verdict};
        let h = Harness::start(db, quiet(), notifications_only()).await;
        let day = 86_400_000;
        let now = zerodrop_store::now_ms();
        let mut tx = db.store.begin().await.unwrap();
        let mut stored = Vec::new();
        for (refused, age_days) in [(true, 91), (true, 200), (true, 30), (false, 400)] {
            let row = NewNotification {
                provider: "sandbox",
                remote_addr: None,
                headers: serde_json::json!({}),
                body: b"x",
                refused_unverified: refused,
                verdict: if refused { Verdict::Rejected } else { Verdict::Accepted },
                reason: Some("bad_signature: test".into()),
                order_no: None,
                trade_no: None,
                notify_id: None,
            };
            stored.push(notifications::insert(&mut tx, &row, now - age_days * day));
        }
        tx.commit().await.unwrap();
        h.make_due("prune_refused_notifications").await;
        let left = |id: i64| async move {
            let mut conn = db.store.reader().await.unwrap();
            notifications::get(&mut conn, id).await.is_ok()
        };
        zerodrop::stack::eventually(std::time::Duration::from_secs(10), "the prune job to run", || async {
            Ok((!left(stored[0]).await && !left(stored[1]).await).then_some(()))
        })
        .await
        .unwrap();
        assert!(left(stored[2]).await, "within its retention (90 days)");
        assert!(left(stored[3]).await, "a verified notification stays forever");
        h.stop().await;
    }
}
