//! The honest figures and the proof's tie to the bills, on known data, on both engines.
//!
//! Rows are written directly with chosen times (the flows stamp the clock, so exact
//! durations and percentiles need times set by hand); the outcomes are the audit's.

use zerodrop_store::outcome::{Bounds, DEADLINE_GRACE_MS_DEFAULT};
use zerodrop_store::stats::{self, AttentionAges, Durations, Repairs};
use zerodrop_store::{both_engines, now_ms, raw_execute, Store};

const HOUR: i64 = 3_600_000;
const PARK_MS: i64 = 2_700_000;

fn bounds() -> Bounds {
    Bounds { deadline_grace_ms: DEADLINE_GRACE_MS_DEFAULT, park_window_ms: PARK_MS }
}

async fn exec(store: &Store, statements: &[String]) {
    let mut tx = store.begin().await.unwrap();
    for s in statements {
        raw_execute(&mut tx, s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    tx.commit().await.unwrap();
}

fn order(id: &str, status: &str, paid: i64, deliver_by: i64) -> String {
    format!(
        "INSERT INTO orders (id, order_no, user_id, sku, product, quantity, amount_minor, currency, provider, status, \
             attention, created_at_ms, expires_at_ms, paid_at_ms, deliver_by_ms, event_seq) \
         VALUES ('{id}', 'NO-{id}', 'u', 'sku', '{{}}', 1, 100, 'CNY', 'sandbox', '{status}', 0, {c}, {e}, {paid}, \
             {deliver_by}, 2)",
        c = paid - 60_000,
        e = paid + 60_000,
    )
}

fn charge(trade: &str, order_id: Option<&str>, class: &str, at: i64) -> String {
    let order = order_id.map_or("NULL".to_owned(), |o| format!("'{o}'"));
    format!(
        "INSERT INTO charges (provider, trade_no, order_no, order_id, amount_minor, currency, paid_at_ms, class, \
             evidence, recorded_at_ms, classified_at_ms) \
         VALUES ('sandbox', '{trade}', 'NO-{trade}', {order}, 100, 'CNY', {at}, '{class}', '{{}}', {at}, {at})"
    )
}

fn event(order_id: &str, seq: i64, kind: &str, at: i64) -> String {
    format!(
        "INSERT INTO order_events (order_id, seq, at_ms, kind, actor, cause, data) \
         VALUES ('{order_id}', {seq}, {at}, '{kind}', 'system', 'test', '{{}}')"
    )
}

fn item(charge_trade: Option<&str>, created: i64, due: i64, resolved: Option<i64>) -> String {
    let charge = charge_trade.map_or("NULL".to_owned(), |t| format!("(SELECT id FROM charges WHERE trade_no = '{t}')"));
    let resolved = resolved.map_or("NULL".to_owned(), |r| r.to_string());
    format!(
        "INSERT INTO attention_items (charge_id, reason, detail, created_at_ms, resolved_at_ms, due_at_ms) \
         VALUES ({charge}, 'test', '{{}}', {created}, {resolved}, {due})"
    )
}

/// A: delivered in 1 s; B: in 5 s; C: in 5 min, past its bound (late); D: paid, past its
/// bound, nobody on it (dropped); E: paid, inside its bound (pending); all in the last
/// hour. F: an unknown order's charge two hours ago, refunded just after its park window;
/// G: a second trade three hours ago with a person on it.
async fn populate(store: &Store, n: i64) {
    let mut s = Vec::new();
    for (id, paid, status, took) in [
        ("A", n - 10 * 60_000, "delivered", Some(1_000)),
        ("B", n - 20 * 60_000, "delivered", Some(5_000)),
        ("C", n - 30 * 60_000, "delivered", Some(300_000)),
        ("D", n - 40 * 60_000, "paid", None),
        ("E", n - 50_000, "paid", None),
    ] {
        s.push(order(id, status, paid, paid + 60_000));
        s.push(event(id, 1, "created", paid - 60_000));
        s.push(event(id, 2, "payment_captured", paid));
        if let Some(took) = took {
            s.push(event(id, 3, "delivered", paid + took));
        }
        s.push(charge(id, Some(id), "matched", paid));
    }
    let f = n - 2 * HOUR;
    s.push(charge("F", None, "unknown_order", f));
    s.push(format!(
        "INSERT INTO refunds (id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, \
             state, created_at_ms, updated_at_ms, finished_at_ms) \
         VALUES ('rF', NULL, (SELECT id FROM charges WHERE trade_no = 'F'), 'ZDCF', 100, 'CNY', 1, 'unknown_order', \
             'test', 'succeeded', {c}, {c}, {c})",
        c = f + PARK_MS + 1_000
    ));
    s.push(charge("G", None, "duplicate_trade", n - 3 * HOUR));
    s.push(item(Some("G"), n - 30 * 60_000, n + HOUR, None));
    s.push(item(None, n - 2 * HOUR, n - HOUR, None));
    s.push(item(None, n - 5 * HOUR, n + HOUR, None));
    s.push(item(None, n - 30 * HOUR, n - 29 * HOUR, Some(n - 29 * HOUR)));
    s.push(format!(
        "INSERT INTO bills (provider, account, file_name, file_sha256, from_ms, to_ms, currency, trade_count, \
             trade_total_minor, refund_count, refund_total_minor, imported_at_ms) \
         VALUES ('sandbox', 'acct', 'a.csv', 'sha-a', {}, {}, 'CNY', 5, 500, 0, 0, {n})",
        n - HOUR,
        n
    ));
    s.push(format!(
        "INSERT INTO bills (provider, account, file_name, file_sha256, from_ms, to_ms, currency, trade_count, \
             trade_total_minor, refund_count, refund_total_minor, imported_at_ms) \
         VALUES ('sandbox', 'acct', 'b.csv', 'sha-b', {}, {}, 'CNY', 1, 100, 0, 0, {n})",
        n - 4 * HOUR,
        n - HOUR
    ));
    s.push(format!(
        "INSERT INTO reconciliations (bill_id, started_at_ms, finished_at_ms, summary) \
         VALUES ((SELECT id FROM bills WHERE file_sha256 = 'sha-a'), {n}, {n}, '{{\"matched\":5}}')"
    ));
    for (key, class, state, at) in [
        ("trade:A", "unknown_to_us", "repaired", n - 10 * 60_000),
        ("charge:G", "missing_from_bill", "attention", n - 2 * HOUR),
    ] {
        s.push(format!(
            "INSERT INTO bill_differences (reconciliation_id, provider, fact_key, class, amount_minor, bill_amount_minor, \
                 state, created_at_ms, updated_at_ms) \
             VALUES ((SELECT MAX(id) FROM reconciliations), 'sandbox', '{key}', '{class}', 100, 100, '{state}', {at}, {at})"
        ));
    }
    exec(store, &s).await;
}

both_engines! {
    /// Exact rates (per million), nearest-rank percentiles, repairs by class and state, and
    /// open attention by age, for the last hour and day.
    async fn the_figures_are_exact_on_known_data(db) {
        let n = now_ms();
        populate(&db.store, n).await;
        let mut conn = db.store.reader().await.unwrap();
        let figures = stats::figures(&mut conn, &bounds(), n).await.unwrap();
        let hour = &figures.windows["1h"];
        assert_eq!((hour.charges, hour.dropped, hour.drop_rate_ppm, hour.late, hour.late_rate_ppm), (5, 1, 200_000, 1, 200_000));
        assert_eq!(hour.to_outcome, Durations { count: 3, p50_ms: Some(5_000), p99_ms: Some(300_000), max_ms: Some(300_000) });
        assert_eq!(hour.repairs, vec![Repairs { class: "unknown_to_us".into(), state: "repaired".into(), count: 1 }]);
        let day = &figures.windows["24h"];
        assert_eq!((day.charges, day.dropped, day.drop_rate_ppm, day.late, day.late_rate_ppm), (7, 1, 142_857, 1, 142_857));
        let refunded_took = PARK_MS + 1_000;
        assert_eq!(day.to_outcome, Durations { count: 4, p50_ms: Some(5_000), p99_ms: Some(refunded_took), max_ms: Some(refunded_took) });
        assert_eq!(day.repairs.len(), 2);
        assert_eq!(figures.windows["30d"].charges, 7);
        assert_eq!(figures.attention, AttentionAges { open: 3, lt_1h: 1, h1_4: 1, h4_24: 1, gt_24h: 0, overdue: 1 });
        let text = stats::prometheus(&figures);
        for line in [
            "zerodrop_drop_rate_ppm{window=\"1h\"} 200000",
            "zerodrop_late_rate_ppm{window=\"24h\"} 142857",
            "zerodrop_payment_to_outcome_ms{window=\"1h\",quantile=\"0.5\"} 5000",
            "zerodrop_repairs{window=\"24h\",class=\"missing_from_bill\",state=\"attention\"} 1",
            "zerodrop_attention_open_by_age{age=\"1h_4h\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }

        // The bills of the last four hours: the first adds up to the charges of its hour,
        // the second does not (it states one trade; zerodrop holds two in its range).
        let tie = zerodrop_store::proof::bills::tie(&mut conn, n - 4 * HOUR, n).await.unwrap();
        assert_eq!(tie.bills.len(), 2, "{tie:#?}");
        let a = tie.bills.iter().find(|b| b.file_name == "a.csv").unwrap();
        assert!(a.adds_up && a.differences.is_empty(), "{a:#?}");
        assert_eq!(a.reconciliation, Some(serde_json::json!({ "matched": 5 })));
        let b = tie.bills.iter().find(|b| b.file_name == "b.csv").unwrap();
        assert!(!b.adds_up, "{b:#?}");
        assert_eq!(b.differences.len(), 4, "trades and refunds, counts and totals: {b:#?}");
        assert!(b.differences[0].contains("trade count: the bill says 1, zerodrop has 2"), "{b:#?}");
        assert!(tie.statement.contains("1 add up") && tie.statement.contains("1 do not"), "{}", tie.statement);
        let none = zerodrop_store::proof::bills::tie(&mut conn, n + HOUR, n + 2 * HOUR).await.unwrap();
        assert_eq!(none.statement, "no bills were imported for this period");
    }
}
