//! Bills: import and the three-way match, on both engines, with exact figures.

use serde_json::json;
use zerodrop_domain::bill::{BillHeader, BillLine, BillLineKind, BillTotals};
use zerodrop_domain::money::{Currency, Money};
use zerodrop_store::bills::{self, Class, ClassFigures, DifferenceState, Matching, NewBill};
use zerodrop_store::charges::{self, ChargeClass, NewCharge};
use zerodrop_store::refunds::{self, NewRefund, RefundState};
use zerodrop_store::{both_engines, Store, Tx};

const FROM_MS: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::Cny)
}

fn line(no: u64, kind: BillLineKind, trade_no: &str, refund_no: &str, minor: i64) -> BillLine {
    BillLine {
        line_no: no,
        line_sha256: format!("{no:064x}"),
        kind,
        trade_no: trade_no.into(),
        order_no: format!("O-{trade_no}"),
        refund_no: refund_no.into(),
        amount: cny(minor),
        created_at_ms: FROM_MS + 1_000,
        finished_at_ms: FROM_MS + 2_000,
    }
}

async fn charge(tx: &mut Tx, trade_no: &str, minor: i64, paid_at_ms: i64) -> i64 {
    let evidence = json!({ "source": "test" });
    let order_no = format!("O-{trade_no}");
    let new = NewCharge {
        provider: "sandbox",
        trade_no,
        order_no: &order_no,
        order_id: None,
        amount: cny(minor),
        paid_at_ms: Some(paid_at_ms),
        class: ChargeClass::UnknownOrder,
        evidence: &evidence,
    };
    charges::record(tx, &new, paid_at_ms).await.unwrap().0.id
}

async fn refund(tx: &mut Tx, charge_id: i64, request_no: &str, minor: i64, succeeded: bool) {
    let id = format!("refund-{request_no}");
    let new = NewRefund {
        id: &id,
        order_id: None,
        charge_id,
        request_no,
        amount: cny(minor),
        full: true,
        origin: "test",
        reason: "test",
    };
    refunds::insert(tx, &new, FROM_MS).await.unwrap();
    if succeeded {
        assert!(refunds::set_state(tx, &id, RefundState::Succeeded, None, FROM_MS + 3_000).await.unwrap());
    }
}

async fn import(store: &Store, sha: &str, lines: &[BillLine]) -> (i64, bills::Summary) {
    let mut totals = BillTotals::default();
    for l in lines {
        match l.kind {
            BillLineKind::Trade => {
                totals.trade_count += 1;
                totals.trade_total_minor += l.amount.minor;
            }
            BillLineKind::Refund => {
                totals.refund_count += 1;
                totals.refund_total_minor += l.amount.minor;
            }
        }
    }
    let header = BillHeader { account: "2088".into(), from_ms: FROM_MS, to_ms: FROM_MS + DAY_MS };
    let mut tx = store.begin().await.unwrap();
    let new = NewBill {
        provider: "sandbox",
        file_name: "bill.zip",
        file_sha256: sha,
        header: &header,
        currency: "CNY",
        totals: &totals,
    };
    let bill_id = bills::insert_bill(&mut tx, &new, FROM_MS + DAY_MS).await.unwrap();
    bills::insert_lines(&mut tx, bill_id, lines).await.unwrap();
    let id = bills::start(&mut tx, bill_id, FROM_MS + DAY_MS).await.unwrap();
    let m = Matching {
        reconciliation_id: id,
        bill_id,
        provider: "sandbox",
        from_ms: FROM_MS,
        to_ms: FROM_MS + DAY_MS,
        missing_grace_ms: bills::MISSING_GRACE_MS,
    };
    let summary = bills::match_bill(&mut tx, &m, FROM_MS + DAY_MS).await.unwrap();
    bills::finish(&mut tx, id, &summary, FROM_MS + DAY_MS).await.unwrap();
    tx.commit().await.unwrap();
    (id, summary)
}

fn figures(count: i64, amount_minor: i64, bill_amount_minor: i64) -> ClassFigures {
    ClassFigures { count, amount_minor, bill_amount_minor }
}

both_engines! {
    async fn a_bill_is_matched_three_ways_and_each_fact_is_recorded_once(db) {
        let mut tx = db.store.begin().await.unwrap();
        let matched = charge(&mut tx, "T1", 600, FROM_MS + 2_000).await;
        charge(&mut tx, "T2", 990, FROM_MS + 2_000).await; // billed as 9.80
        let refunded = charge(&mut tx, "T4", 300, FROM_MS + 2_000).await;
        charge(&mut tx, "T5", 100, FROM_MS + 5_000).await; // not in the bill
        charge(&mut tx, "T6", 100, FROM_MS - 5_000).await; // the day before: another bill's
        refund(&mut tx, refunded, "R4", 300, true).await;
        refund(&mut tx, matched, "R1", 600, false).await; // billed, not settled here
        refund(&mut tx, refunded, "R9", 50, true).await; // made here, not billed
        tx.commit().await.unwrap();

        let lines = vec![
            line(6, BillLineKind::Trade, "T1", "", 600),
            line(7, BillLineKind::Trade, "T2", "", 980),
            line(8, BillLineKind::Trade, "T3", "", 700), // unknown to zerodrop
            line(9, BillLineKind::Trade, "T4", "", 300),
            line(10, BillLineKind::Refund, "T4", "R4", 300),
            line(11, BillLineKind::Refund, "T1", "R1", 600),
            line(12, BillLineKind::Refund, "T4", "R7", 20), // never asked for
        ];
        let (id, s) = import(&db.store, "aa", &lines).await;
        assert_eq!(s.trade_lines, figures(4, 0, 2_580));
        assert_eq!(s.refund_lines, figures(3, 0, 920));
        assert_eq!(s.matched, figures(2, 900, 900));
        assert_eq!(s.refunds_matched, figures(1, 300, 300));
        assert_eq!(s.unknown_to_us, figures(1, 0, 700));
        assert_eq!(s.amount_differs, figures(1, 990, 980));
        assert_eq!(s.missing_from_bill, figures(1, 100, 0), "T5 only: T6 is the day before");
        assert_eq!(s.refund_unknown_to_us, figures(2, 0, 620));
        assert_eq!(s.refund_missing_from_bill, figures(1, 50, 0));
        assert_eq!(s.no_outcome, figures(0, 0, 0));
        assert_eq!(s.new_differences, 6);

        let mut conn = db.store.reader().await.unwrap();
        let rows = bills::by_reconciliation(&mut conn, id, 0, 100).await.unwrap();
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|d| d.state == DifferenceState::Pending));
        let unknown = rows.iter().find(|d| d.class == Class::UnknownToUs).unwrap();
        assert_eq!((unknown.trade_no.as_deref(), unknown.line_no), (Some("T3"), Some(8)));
        assert!(unknown.cause().starts_with("bill_line:") && unknown.cause().contains(":8:"), "{}", unknown.cause());
        // A difference with no line of its own cites the bill (its id and file hash) and itself.
        let missing = rows.iter().find(|d| d.class == Class::MissingFromBill).unwrap();
        assert_eq!(missing.cause(), format!("bill:{}:aa:difference:{}", missing.bill_id, missing.id));
        let stored = bills::get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!(stored.summary, s);
        assert_eq!(bills::by_file(&mut conn, "sandbox", "aa").await.unwrap().unwrap().id, id);
        drop(conn);

        // Another file naming the same facts (a bill downloaded again, its export time
        // changed): found again, recorded never twice.
        let (second, again) = import(&db.store, "bb", &lines).await;
        assert_eq!(again.unknown_to_us, s.unknown_to_us);
        assert_eq!(again.new_differences, 0);
        let mut conn = db.store.reader().await.unwrap();
        assert!(bills::by_reconciliation(&mut conn, second, 0, 100).await.unwrap().is_empty());
        // A difference is settled once.
        drop(conn);
        let mut tx = db.store.begin().await.unwrap();
        assert!(bills::settle(&mut tx, unknown.id, DifferenceState::Repaired, "test", FROM_MS).await.unwrap());
        assert!(!bills::settle(&mut tx, unknown.id, DifferenceState::Attention, "test", FROM_MS).await.unwrap());
        tx.commit().await.unwrap();
        // The stored bill is never edited.
        let mut conn = db.store.reader().await.unwrap();
        let edit = zerodrop_store::raw_execute(&mut conn, "UPDATE bill_lines SET amount_minor = 1").await;
        assert!(edit.is_err(), "bill lines refuse edits");
        // The chart judges each charge as the audit does (`outcome`): with no park window,
        // T4 refunded and T1's refund on its way count as refunded, T2 and T5 (no refund,
        // no person) as dropped.
        let bounds = zerodrop_store::outcome::Bounds { deadline_grace_ms: 0, park_window_ms: 0 };
        let hours =
            bills::hours(&mut conn, stored.bill.id, "sandbox", FROM_MS, FROM_MS + DAY_MS, &bounds, FROM_MS + DAY_MS).await.unwrap();
        assert_eq!(hours.len(), 24);
        assert_eq!((hours[0].billed, hours[0].charges), (4, 4));
        assert_eq!((hours[0].delivered, hours[0].refunded, hours[0].dropped, hours[0].open), (0, 2, 2, 0), "{:?}", hours[0]);
    }
}

both_engines! {
    async fn a_failed_import_leaves_nothing(db) {
        let header = BillHeader { account: "2088".into(), from_ms: FROM_MS, to_ms: FROM_MS + DAY_MS };
        let totals = BillTotals::default();
        let mut tx = db.store.begin().await.unwrap();
        let new = NewBill { provider: "sandbox", file_name: "b", file_sha256: "cc", header: &header, currency: "CNY", totals: &totals };
        let bill_id = bills::insert_bill(&mut tx, &new, FROM_MS).await.unwrap();
        bills::insert_lines(&mut tx, bill_id, &[line(6, BillLineKind::Trade, "T1", "", 600)]).await.unwrap();
        // The same line twice in one bill is refused by the database too.
        let twice = bills::insert_lines(&mut tx, bill_id, &[line(7, BillLineKind::Trade, "T1", "", 600)]).await;
        assert!(twice.is_err());
        drop(tx);
        let mut conn = db.store.reader().await.unwrap();
        assert!(bills::by_file(&mut conn, "sandbox", "cc").await.unwrap().is_none());
        assert!(bills::list(&mut conn, 0, 10).await.unwrap().is_empty());
    }
}
