//! The storage conformance suite: every test runs on SQLite and on PostgreSQL.

#[path = "conformance/unreachable.rs"]
mod unreachable;

use serde_json::json;
use zerodrop_domain::ledger::{AccountId, AccountKind, Transfer};
use zerodrop_domain::order::{Actor, EventKind, OrderStatus};
use zerodrop_domain::{Catalog, OrderId, OrderNo, UserId};
use zerodrop_store::events::{self, NewEvent};
use zerodrop_store::jobs::{self, NewJob};
use zerodrop_store::ledger::{self, TransferOutcome, TransferRefused};
use zerodrop_store::orders::{self, NewOrder, OrderRow};
use zerodrop_store::payments::{self, NewPayment, PaymentSource};
use zerodrop_store::{audit, both_engines, memberships, now_ms, raw_execute, Conn, Store};

#[path = "conformance/holes.rs"]
mod holes;

#[path = "conformance/bills.rs"]
mod bills;

#[path = "conformance/agreements.rs"]
mod agreements;

/// Reads (version, checksum) pairs: the migration table is not behind a repository.
async fn sqlx_rows(conn: &mut Conn, sql: &str) -> Vec<(i64, Option<String>)> {
    sqlx::query_as::<_, (i64, Option<String>)>(sql).fetch_all(conn).await.unwrap()
}

pub(crate) async fn new_order(store: &Store, sku: &str) -> OrderRow {
    let catalog = Catalog::default_catalog();
    let product = catalog.get(sku).unwrap().clone();
    let order = NewOrder {
        id: OrderId::new(),
        order_no: OrderNo::from_random(rand::random::<u64>()),
        user_id: UserId::parse("user-1").unwrap(),
        amount: product.total(1).unwrap(),
        product,
        quantity: 1,
        provider: "sandbox".into(),
        expires_at_ms: now_ms() + 900_000,
    };
    let mut tx = store.begin().await.unwrap();
    let row = orders::insert(&mut tx, &order, "test", now_ms()).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    row
}

both_engines! {
    async fn migrations_are_idempotent(db) {
        assert_eq!(db.store.migrate().await.unwrap(), 0, "a second run applies nothing");
    }
}

both_engines! {
    async fn an_edited_migration_is_refused_and_an_unrecorded_checksum_is_recorded(db) {
        // What an edited migration file looks like to the runner: the database ran other text.
        let mut conn = db.store.reader().await.unwrap();
        raw_execute(&mut conn, "UPDATE schema_migrations SET checksum = 'ab12' WHERE version = 1").await.unwrap();
        let refused = db.store.migrate().await.expect_err("an edited migration must be refused");
        let message = refused.to_string();
        assert!(message.contains("migration 1 (core) was edited") && message.contains("ab12"), "{message}");
        // A database migrated before checksums were kept (its table has no such column):
        // the column is added and the checksums recorded once, then checked.
        raw_execute(&mut conn, "ALTER TABLE schema_migrations DROP COLUMN checksum").await.unwrap();
        assert_eq!(db.store.migrate().await.unwrap(), 0);
        let recorded: Vec<(i64, Option<String>)> =
            sqlx_rows(&mut conn, "SELECT version, checksum FROM schema_migrations ORDER BY version").await;
        assert_eq!(recorded.last().map(|(version, _)| *version), Some(zerodrop_store::MIGRATIONS_LATEST));
        assert!(recorded.iter().all(|(_, c)| c.as_deref().is_some_and(|c| c.len() == 64)), "{recorded:?}");
        assert_eq!(db.store.migrate().await.unwrap(), 0, "the recorded checksums match");
    }
}

both_engines! {
    async fn status_changes_only_through_events(db) {
        let order = new_order(&db.store, "diamonds_60").await;
        assert_eq!(order.status, OrderStatus::AwaitingPayment);
        assert_eq!(order.event_seq, 1);

        let mut tx = db.store.begin().await.unwrap();
        let mut locked = orders::lock(&mut tx, order.id).await.unwrap();
        let event = NewEvent::new(EventKind::Delivered, Actor::System, "test", json!({}));
        let refused = events::append(&mut tx, &mut locked, event, now_ms()).await;
        assert!(refused.is_err(), "delivering an unpaid order is refused");
        drop(tx);

        let mut tx = db.store.begin().await.unwrap();
        let mut locked = orders::lock(&mut tx, order.id).await.unwrap();
        for kind in [EventKind::PaymentCaptured, EventKind::Delivered] {
            events::append(&mut tx, &mut locked, NewEvent::new(kind, Actor::Provider, "test", json!({})), now_ms()).await.unwrap();
        }
        tx.commit().await.unwrap();

        let mut conn = db.store.reader().await.unwrap();
        let stored = orders::get_by_no(&mut conn, order.order_no.as_str()).await.unwrap().unwrap();
        assert_eq!(stored.status, OrderStatus::Delivered);
        assert!(stored.paid_at_ms.is_some() && stored.settled_at_ms.is_some());
        let timeline = events::list(&mut conn, order.id).await.unwrap();
        let kinds: Vec<_> = timeline.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["created", "payment_captured", "delivered"]);
    }
}

both_engines! {
    async fn payments_are_unique_per_trade_and_per_order(db) {
        let a = new_order(&db.store, "diamonds_60").await;
        let b = new_order(&db.store, "diamonds_60").await;
        let payment = |order: OrderId, trade: &'static str| NewPayment {
            order_id: order, provider: "sandbox", trade_no: trade, amount: a.amount,
            paid_at_ms: None, source: PaymentSource::Query, late: false,
        };
        let mut tx = db.store.begin().await.unwrap();
        assert!(payments::insert(&mut tx, &payment(a.id, "T1"), now_ms()).await.unwrap());
        assert!(!payments::insert(&mut tx, &payment(a.id, "T1"), now_ms()).await.unwrap(), "same trade twice");
        assert!(!payments::insert(&mut tx, &payment(a.id, "T2"), now_ms()).await.unwrap(), "second trade for one order");
        assert!(!payments::insert(&mut tx, &payment(b.id, "T1"), now_ms()).await.unwrap(), "one trade for two orders");
        tx.commit().await.unwrap();
    }
}

both_engines! {
    async fn ledger_transfers_apply_once_and_never_overdraw(db) {
        let order = new_order(&db.store, "diamonds_60").await;
        let user = UserId::parse("user-1").unwrap();
        let credit = Transfer::order_credit(order.id, &user, "DIAMOND", 60).unwrap();
        let mut tx = db.store.begin().await.unwrap();
        assert_eq!(ledger::apply(&mut tx, &credit, Some(order.id), now_ms()).await.unwrap().unwrap(), TransferOutcome::Applied);
        assert_eq!(ledger::apply(&mut tx, &credit, Some(order.id), now_ms()).await.unwrap().unwrap(), TransferOutcome::AlreadyApplied);
        let overdraw = Transfer::new(
            "spend:1".into(),
            (AccountId::wallet(&user, "DIAMOND"), AccountKind::Wallet),
            (AccountId::issuance("DIAMOND"), AccountKind::Issuance),
            "DIAMOND",
            61,
        ).unwrap();
        let refused = ledger::apply(&mut tx, &overdraw, None, now_ms()).await.unwrap();
        assert!(matches!(refused, Err(TransferRefused::Insufficient { balance: 60, amount: 61, .. })));
        tx.commit().await.unwrap();

        let mut conn = db.store.reader().await.unwrap();
        let wallet = ledger::wallet(&mut conn, &user).await.unwrap();
        assert_eq!(wallet.len(), 1);
        assert_eq!(wallet[0].balance, 60);
        assert_eq!(wallet[0].last_credit_order_id.as_deref(), Some(order.id.to_string().as_str()));
        assert!(wallet[0].last_entry_id.is_some());
    }
}

both_engines! {
    async fn the_record_is_append_only(db) {
        let order = new_order(&db.store, "diamonds_60").await;
        let mut tx = db.store.begin().await.unwrap();
        let deleted = sqlx::query("DELETE FROM orders WHERE id = $1").bind(order.id.to_string()).execute(&mut *tx).await;
        assert!(deleted.is_err(), "orders are never deleted");
        drop(tx);
        let mut tx = db.store.begin().await.unwrap();
        let changed = sqlx::query("UPDATE order_events SET kind = 'delivered'").execute(&mut *tx).await;
        assert!(changed.is_err(), "events are never changed");
    }
}

both_engines! {
    /// A provider's signed answer is kept exactly as it came (text and signature, byte for
    /// byte) and can never be changed or deleted.
    async fn provider_answers_are_kept_as_they_came(db) {
        use zerodrop_store::answers::{self, NewAnswer};
        let content = r#"{"code":"10000","msg":"Success","out_trade_no":"ZD1","trade_no":"T1","total_amount":"6.00","buyer_logon_id":"李*明"}"#;
        let answer = NewAnswer { provider: "sandbox", method: "alipay.trade.query", order_no: "ZD1", trade_no: Some("T1"), content, sign: "c2lnbg==" };
        let mut tx = db.store.begin().await.unwrap();
        let id = answers::insert(&mut tx, &answer, 42).await.unwrap();
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let stored = answers::get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!((stored.content.as_str(), stored.sign.as_str(), stored.trade_no.as_deref(), stored.received_at_ms), (content, "c2lnbg==", Some("T1"), 42));
        assert!(answers::get(&mut conn, id + 1).await.unwrap().is_none());
        drop(conn);
        let mut tx = db.store.begin().await.unwrap();
        assert!(sqlx::query("UPDATE provider_answers SET content = '{}'").execute(&mut *tx).await.is_err(), "never changed");
        drop(tx);
        let mut tx = db.store.begin().await.unwrap();
        assert!(sqlx::query("DELETE FROM provider_answers").execute(&mut *tx).await.is_err(), "never deleted");
    }
}

both_engines! {
    async fn memberships_stack_once_per_order(db) {
        let user = UserId::parse("user-1").unwrap();
        let first = new_order(&db.store, "svip_30d").await;
        let second = new_order(&db.store, "svip_90d").await;
        let now = now_ms();
        let mut tx = db.store.begin().await.unwrap();
        let p1 = memberships::extend(&mut tx, &user, "svip", 30, first.id, now).await.unwrap();
        let p2 = memberships::extend(&mut tx, &user, "svip", 90, second.id, now).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(p2.starts_at_ms, p1.ends_at_ms, "the second purchase starts when the first ends");
        let mut tx = db.store.begin().await.unwrap();
        assert!(memberships::extend(&mut tx, &user, "svip", 30, first.id, now).await.is_err(), "once per order");
        drop(tx);
        let mut conn = db.store.reader().await.unwrap();
        let list = memberships::for_user(&mut conn, &user).await.unwrap();
        assert_eq!(list[0].ends_at_ms, p2.ends_at_ms);
        assert_eq!(list[0].periods.len(), 2);
    }
}

both_engines! {
    async fn jobs_are_leased_retried_and_bounded(db) {
        let now = now_ms();
        let mut tx = db.store.begin().await.unwrap();
        let job = NewJob { kind: "probe", order_id: None, payload: json!({"n": 1}), run_at_ms: now, max_attempts: 2, dedupe_key: Some("probe:1".into()) };
        assert!(jobs::enqueue(&mut tx, &job, now).await.unwrap());
        assert!(!jobs::enqueue(&mut tx, &job, now).await.unwrap(), "deduplicated");
        tx.commit().await.unwrap();

        let claimed = jobs::claim(&db.store, &["probe"], "w1", now, 30_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempt, 1);
        assert!(jobs::claim(&db.store, &["probe"], "w2", now, 30_000, 10).await.unwrap().is_empty(), "leased");
        // After the lease expires another worker takes it over (a killed process).
        let taken = jobs::claim(&db.store, &["probe"], "w2", now + 31_000, 30_000, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].attempt, 2);
        let mut tx = db.store.begin().await.unwrap();
        assert!(jobs::fail(&mut tx, &taken[0], "provider down", now + 31_000).await.unwrap(), "exhausted");
        tx.commit().await.unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let counts = jobs::counts(&mut conn).await.unwrap();
        assert_eq!((counts[0].state.as_str(), counts[0].count), ("attention", 1));
    }
}

both_engines! {
    async fn concurrent_claimers_never_share_a_job(db) {
        let now = now_ms();
        let mut tx = db.store.begin().await.unwrap();
        for n in 0..200 {
            let job = NewJob { kind: "probe", order_id: None, payload: json!({"n": n}), run_at_ms: now, max_attempts: 3, dedupe_key: None };
            jobs::enqueue(&mut tx, &job, now).await.unwrap();
        }
        for n in 0..10 {
            let job = NewJob { kind: "unhandled", order_id: None, payload: json!({"n": n}), run_at_ms: now, max_attempts: 3, dedupe_key: None };
            jobs::enqueue(&mut tx, &job, now).await.unwrap();
        }
        tx.commit().await.unwrap();
        let mut handles = Vec::new();
        for w in 0..4 {
            let store = db.store.clone();
            handles.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = jobs::claim(&store, &["probe"], &format!("w{w}"), now, 60_000, 7).await.unwrap();
                    if batch.is_empty() { break ids; }
                    ids.extend(batch.into_iter().map(|j| j.id));
                }
            }));
        }
        let mut all = Vec::new();
        for h in handles { all.extend(h.await.unwrap()); }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(total, 200, "only the kinds asked for are claimed");
        assert_eq!(all.len(), 200, "no job claimed twice");
    }
}

both_engines! {
    async fn the_audit_passes_a_consistent_database_and_catches_tampering(db) {
        let order = new_order(&db.store, "diamonds_60").await;
        let user = UserId::parse("user-1").unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let mut locked = orders::lock(&mut tx, order.id).await.unwrap();
        let payment = NewPayment { order_id: order.id, provider: "sandbox", trade_no: "T9", amount: order.amount, paid_at_ms: None, source: PaymentSource::Query, late: false };
        payments::insert(&mut tx, &payment, now_ms()).await.unwrap();
        let answer = zerodrop_store::answers::NewAnswer {
            provider: "sandbox", method: "alipay.trade.query", order_no: order.order_no.as_str(), trade_no: Some("T9"),
            content: "{}", sign: "s",
        };
        let answer_id = zerodrop_store::answers::insert(&mut tx, &answer, now_ms()).await.unwrap();
        let evidence = json!({ "source": "query", "answer_id": answer_id });
        let charge = zerodrop_store::charges::NewCharge {
            provider: "sandbox", trade_no: "T9", order_no: order.order_no.as_str(), order_id: Some(order.id), amount: order.amount,
            paid_at_ms: None, class: zerodrop_store::charges::ChargeClass::Matched, evidence: &evidence,
        };
        assert!(zerodrop_store::charges::record(&mut tx, &charge, now_ms()).await.unwrap().1);
        assert!(!zerodrop_store::charges::record(&mut tx, &charge, now_ms()).await.unwrap().1, "a trade is recorded once");
        events::append(&mut tx, &mut locked, NewEvent::new(EventKind::PaymentCaptured, Actor::Provider, "t", json!({})), now_ms()).await.unwrap();
        ledger::apply(&mut tx, &Transfer::order_credit(order.id, &user, "DIAMOND", 60).unwrap(), Some(order.id), now_ms()).await.unwrap().unwrap();
        payments::insert_delivery(&mut tx, order.id, "currency_pack", &json!({}), now_ms()).await.unwrap();
        events::append(&mut tx, &mut locked, NewEvent::new(EventKind::Delivered, Actor::System, "t", json!({})), now_ms()).await.unwrap();
        tx.commit().await.unwrap();

        let options = audit::AuditOptions::new(3_600_000);
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        assert!(report.passed(), "{report:#?}");

        // An operator's slip: a balance edited by hand. The audit must notice.
        let mut tx = db.store.begin().await.unwrap();
        sqlx::query("UPDATE ledger_accounts SET balance = balance + 5 WHERE kind = 'wallet'").execute(&mut *tx).await.unwrap();
        sqlx::query("UPDATE orders SET status = 'awaiting_payment'").execute(&mut *tx).await.unwrap();
        // The money relabelled as a second trade: it no longer is the order's payment, and
        // nothing returns it.
        sqlx::query("UPDATE charges SET class = 'duplicate_trade'").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let report = audit::run(&db.store, &options, now_ms()).await.unwrap();
        let failed: Vec<_> = report.checks.iter().filter(|c| c.violations > 0).map(|c| c.name).collect();
        for name in ["balance_equals_entries", "ledger_sums_to_zero", "status_is_fold", "payment_has_outcome", "delivered_exactly_once", "charge_is_payment", "charge_has_outcome"] {
            assert!(failed.contains(&name), "{name} should fail, failed: {failed:?}");
        }
    }
}

both_engines! {
    /// Whatever sequence of events is attempted (allowed or not, in any order), the stored
    /// status and attention flag always equal the fold of the events actually stored.
    async fn stored_status_is_always_the_fold_of_stored_events(db) {
        use rand::Rng;
        let kinds = EventKind::ALL;
        for _ in 0..25 {
            let order = new_order(&db.store, "diamonds_60").await;
            let attempts = rand::rng().random_range(1..12);
            for _ in 0..attempts {
                let kind = kinds[rand::rng().random_range(0..kinds.len())];
                let mut tx = db.store.begin().await.unwrap();
                let mut locked = orders::lock(&mut tx, order.id).await.unwrap();
                let event = NewEvent::new(kind, Actor::System, "property", json!({"reason": "p"}));
                if events::append(&mut tx, &mut locked, event, now_ms()).await.is_ok() {
                    tx.commit().await.unwrap();
                }
            }
            let mut conn = db.store.reader().await.unwrap();
            let stored = orders::get(&mut conn, order.id).await.unwrap().unwrap();
            let timeline = events::list(&mut conn, order.id).await.unwrap();
            let kinds: Vec<String> = timeline.iter().map(|e| e.kind.clone()).collect();
            let folded = events::fold_kinds(&kinds).unwrap().unwrap();
            assert_eq!((stored.status, stored.attention), (folded.status, folded.attention), "{kinds:?}");
            assert_eq!(stored.event_seq, timeline.len() as i64);
            assert!(timeline.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1), "sequence numbers have no gaps");
        }
    }
}

both_engines! {
    /// Attention items get their due time from the store's clocks (money at stake or not,
    /// per-reason overrides), end once through a recorded action, and are never deleted.
    async fn attention_items_have_clocks_and_end_once(db) {
        use zerodrop_store::attention::{self, Clocks, NewAction, NewItem};
        let mut by_reason = std::collections::BTreeMap::new();
        by_reason.insert("special".to_owned(), 60_000);
        let store = db.store.clone().with_attention_clocks(Clocks { money_ms: 1_000, none_ms: 2_000, by_reason_ms: by_reason });
        let now = now_ms();
        let mut tx = store.begin().await.unwrap();
        let money = attention::raise(&mut tx, NewItem { at_stake_minor: 600, ..NewItem::new("refund_failed", json!({})) }, now).await.unwrap();
        let flag = attention::raise(&mut tx, NewItem::new("amount_mismatch", json!({})), now).await.unwrap();
        let special = attention::raise(&mut tx, NewItem { at_stake_minor: 1, ..NewItem::new("special", json!({})) }, now).await.unwrap();
        tx.commit().await.unwrap();
        let mut conn = store.reader().await.unwrap();
        for (id, after) in [(money, 1_000), (flag, 2_000), (special, 60_000)] {
            let item = attention::get(&mut conn, id).await.unwrap().unwrap();
            assert_eq!(item.due_at_ms, now + after, "{item:?}");
        }
        assert_eq!(attention::count_overdue(&mut conn, now + 1_500).await.unwrap(), 1);
        assert_eq!(attention::count_overdue(&mut conn, now + 61_000).await.unwrap(), 3);
        drop(conn);
        let detail = json!({});
        let action = NewAction { item_id: Some(flag), order_id: None, charge_id: None, action: "dismiss", reason_code: "r", note: "n", actor: "a", channel: "api", detail: &detail };
        let mut tx = store.begin().await.unwrap();
        assert!(attention::resolve(&mut tx, flag, &action, now).await.unwrap());
        assert!(!attention::resolve(&mut tx, flag, &action, now).await.unwrap(), "an item ends once");
        tx.commit().await.unwrap();
        let mut conn = store.reader().await.unwrap();
        assert_eq!(attention::count_open(&mut conn).await.unwrap(), 2);
        let resolved = attention::get(&mut conn, flag).await.unwrap().unwrap();
        assert_eq!((resolved.owner.as_deref(), resolved.resolution.unwrap()["action"].as_str()), (Some("a"), Some("dismiss")));
        drop(conn);
        // A flag closed by hand in the database, with no action behind it: the audit sees it.
        let options = zerodrop_store::audit::AuditOptions::new(3_600_000);
        let before = zerodrop_store::audit::run(&store, &options, now).await.unwrap();
        assert!(before.checks.iter().all(|c| c.name != "attention_ended_by_action" || c.violations == 0), "{before:?}");
        let mut tx = store.begin().await.unwrap();
        sqlx::query("UPDATE attention_items SET resolved_at_ms = 1 WHERE resolved_at_ms IS NULL").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let after = zerodrop_store::audit::run(&store, &options, now).await.unwrap();
        let closed = after.checks.iter().find(|c| c.name == "attention_ended_by_action").unwrap();
        assert_eq!(closed.violations, 2, "{closed:?}");
        let mut tx = store.begin().await.unwrap();
        assert!(sqlx::query("DELETE FROM attention_items").execute(&mut *tx).await.is_err(), "items are never deleted");
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        assert!(sqlx::query("UPDATE operator_actions SET note = 'x'").execute(&mut *tx).await.is_err(), "the action log is append-only");
    }
}
