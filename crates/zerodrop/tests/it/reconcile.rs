//! Reconciliation against the provider's bill, end to end: the sandbox's bill for the day
//! fetched through the provider's gateway, matched, and every lost payment repaired
//! through the one payment path, with the bill line as its cause.

use crate::support::{calm, notifications_only, Harness};
use serde_json::Value;
use std::time::Duration;
use zerodrop::stack::{self, PROVIDER};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::Twist;
use zerodrop_server::flows::reconcile::{day, file};
use zerodrop_server::jobs::reconcile_daily;
use zerodrop_store::bills::{self, DifferenceState};
use zerodrop_store::{both_engines, now_ms};

/// Every notification lost, and no query while the test runs: zerodrop learns nothing
/// of the payments by itself, as after a lost database.
fn lost() -> Faults {
    Faults { drop_rate_pct: 100, extra_trade_drop_rate_pct: 100, ..calm() }
}

fn bill_file<'a>(account: &'a str, path: &'a std::path::Path, dir: &'a std::path::Path) -> file::BillFile<'a> {
    file::BillFile { provider: PROVIDER, account, path, bill_dir: dir, day_from_ms: None, missing_grace_ms: 600_000 }
}

/// The bill the import kept in the bill directory.
fn kept_bill(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file());
    files.next().expect("a kept bill")
}

fn today_cst() -> String {
    format_cst(now_ms()).chars().take(10).collect()
}

impl Harness {
    /// Waits until none of the reconciliation's differences is pending.
    async fn repaired(&self, reconciliation_id: i64) {
        stack::eventually(Duration::from_secs(30), "differences repaired", || async {
            let mut conn = self.server.app.store.reader().await?;
            let counts = bills::counts(&mut conn, reconciliation_id).await?;
            Ok((!counts.iter().any(|(_, s, n)| *s == DifferenceState::Pending && *n > 0)).then_some(()))
        })
        .await
        .expect("repairs end");
    }

    async fn events(&self) -> i64 {
        let mut conn = self.server.app.store.reader().await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM order_events").fetch_one(&mut *conn).await.unwrap()
    }
}

both_engines! {
    /// A lost database: notifications dropped, queries held off. The day's bill names every
    /// payment; each one zerodrop lacks is recorded through the one payment path and
    /// delivered (or, for an order zerodrop never issued, refunded in full), the report
    /// shows each repair, the audit passes, and the same bill again changes nothing.
    async fn a_lost_database_is_repaired_from_the_bill(db) {
        let h = Harness::start(db, lost(), notifications_only()).await;
        let mut lost_orders = Vec::new();
        for user in ["lost-1", "lost-2", "lost-3"] {
            let created = h.order(user, "diamonds_60").await;
            h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
            lost_orders.push(created["order"]["order_no"].as_str().unwrap().to_owned());
        }
        // One payment zerodrop knows (the app's check call found it).
        let known = h.order("known", "diamonds_60").await;
        let known_no = known["order"]["order_no"].as_str().unwrap().to_owned();
        h.client.pay(&known).await.unwrap().expect("paid");
        let (status, body) = h.client.post(&format!("/v1/orders/{known_no}/check"), &Value::Null, None).await.unwrap();
        assert_eq!((status, body["order"]["status"].as_str()), (200, Some("delivered")), "{body}");
        // A payment for an order number zerodrop never issued.
        let stray = h.order("stray", "diamonds_60").await;
        let never_issued = zerodrop_domain::OrderNo::from_random(0x5eed).as_str().to_owned();
        h.client.pay_with(&stray, Twist::OrderNo(never_issued.clone())).await.unwrap().expect("paid");
        // And one for an order number of another system on the same merchant account.
        let other_system = h.order("other-system", "diamonds_60").await;
        h.client.pay_with(&other_system, Twist::OrderNo("POS-20261130-0001".into())).await.unwrap().expect("paid");
        for no in &lost_orders {
            assert_eq!(h.client.order(no).await.unwrap()["order"]["status"], "awaiting_payment");
        }

        let app = &h.server.app;
        let imported = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.expect("reconciled");
        let s = &imported.summary;
        assert!(!imported.already);
        assert_eq!((s.trade_lines.count, s.matched.count, s.unknown_to_us.count), (6, 1, 5), "{s:?}");
        assert_eq!(s.unknown_to_us.bill_amount_minor, 5 * 600);
        assert_eq!((s.missing_from_bill.count, s.amount_differs.count, s.no_outcome.count), (0, 0, 0));
        h.repaired(imported.reconciliation_id).await;

        for no in &lost_orders {
            let order = h.wait_for_status(no, "delivered", Duration::from_secs(10)).await;
            let events = order["timeline"].as_array().unwrap();
            let captured = events.iter().find(|e| e["kind"] == "payment_captured").expect("captured");
            assert!(captured["cause"].as_str().unwrap().starts_with("bill_line:"), "{captured}");
        }
        for user in ["lost-1", "lost-2", "lost-3", "known"] {
            assert_eq!(h.wallet(user).await["balances"][0]["balance"], 60, "{user}");
        }
        let (status, report) = h.client.get(&format!("/v1/reconciliations/{}", imported.reconciliation_id)).await.unwrap();
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["report"]["repaired"], 4, "{report}");
        let lines = report["report"]["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l["line_no"].as_i64().unwrap() > 0), "{lines:?}");
        let stray_line = lines.iter().find(|l| l["order_no"] == never_issued.as_str()).expect("the stray payment");
        assert!(stray_line["outcome"].as_str().unwrap().contains("refunded in full"), "{stray_line}");
        let other_line = lines.iter().find(|l| l["order_no"] == "POS-20261130-0001").expect("another system's sale");
        assert_eq!(other_line["state"], "resolved", "another system's sale is left alone: {other_line}");
        stack::eventually(Duration::from_secs(20), "the stray payment refunded at the sandbox", || async {
            Ok(h.sandbox.sandbox.refunds().iter().any(|r| r.out_trade_no == never_issued).then_some(()))
        })
        .await
        .unwrap();
        h.audit_passes().await;

        // The same bill again: nothing changes.
        let events = h.events().await;
        let dir = std::path::PathBuf::from(&app.config.reconcile.bill_dir);
        let bill = kept_bill(&dir);
        let account = day::account(app, PROVIDER).unwrap();
        let again = file::import_file(&app.store, &bill_file(&account, &bill, &dir), None).await.unwrap();
        assert!(again.already);
        assert_eq!(again.reconciliation_id, imported.reconciliation_id);
        // The day's bill downloaded again (another file, the same facts): found matched now,
        // nothing repaired twice.
        let refetched = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.unwrap();
        assert_eq!(refetched.summary.unknown_to_us.count, 1, "only the other system's: {:?}", refetched.summary);
        assert_eq!(refetched.summary.matched.count, 5);
        let mut conn = app.store.reader().await.unwrap();
        let trade_repairs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bill_differences WHERE class = 'unknown_to_us'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(trade_repairs, 5, "each difference recorded once");
        drop(conn);
        assert!(h.events().await >= events);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// A bill that does not add up, or is cut short, imports nothing.
    async fn a_bad_bill_imports_nothing(db) {
        let h = Harness::start(db, calm(), notifications_only()).await;
        let created = h.order("u", "diamonds_60").await;
        h.client.pay(&created).await.unwrap().expect("paid");
        let app = &h.server.app;
        let imported = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.expect("reconciled");
        let dir = std::path::PathBuf::from(&app.config.reconcile.bill_dir);
        let good = kept_bill(&dir);
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.join("cut.zip");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let account = day::account(app, PROVIDER).unwrap();
        let refused = file::import_file(&app.store, &bill_file(&account, &cut, &dir), None).await.expect_err("a cut zip");
        assert!(refused.to_string().contains("cut.zip"), "{refused}");
        let other = file::import_file(&app.store, &bill_file("2088000000000000", &good, &dir), None).await;
        // The same file was imported already: found by its hash before anything is read.
        assert!(other.unwrap().already);
        let mut conn = app.store.reader().await.unwrap();
        let list = bills::list(&mut conn, 0, 10).await.unwrap();
        assert_eq!(list.len(), 1, "only the good bill");
        assert_eq!(list[0].id, imported.reconciliation_id);
        drop(conn);
        h.stop().await;
    }
}

/// The report's page rendered in headless Chromium: the DOM a browser builds shows the
/// totals, the repaired lines and the chart, and a screenshot is kept in test-artifacts/.
/// Required when ZERODROP_TEST_BROWSER=1 (CI); skipped with a message where no Chromium is
/// installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_renders_in_a_real_browser() {
    let Some(chrome) = crate::support::browser::chromium() else {
        assert!(
            std::env::var("ZERODROP_TEST_BROWSER").is_err(),
            "ZERODROP_TEST_BROWSER is set but Chromium is not installed"
        );
        eprintln!("skipped: install Debian's chromium to run the browser test");
        return;
    };
    let db = zerodrop_store::testing::TestDb::sqlite().await;
    let h = Harness::start(&db, lost(), notifications_only()).await;
    for user in ["page-1", "page-2"] {
        let created = h.order(user, "diamonds_60").await;
        h.client.pay(&created).await.unwrap().expect("paid");
    }
    let app = &h.server.app;
    let imported = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.expect("reconciled");
    h.repaired(imported.reconciliation_id).await;
    let (status, html) = {
        let response = h
            .client
            .http
            .get(format!("{}/v1/reconciliations/{}?format=html", h.server.base_url, imported.reconciliation_id))
            .bearer_auth(stack::API_KEY)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "{html}");
    let artifacts = crate::support::browser::artifacts();
    let page = artifacts.join("reconciliation-report.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let shot = artifacts.join("reconciliation-report.png");
    let (dom, size, complaints) = crate::support::browser::render(&chrome, &url, &shot, "1100,1400").await;
    for expected in ["<td id=\"repaired\">2</td>", "recorded through the payment path", "<svg id=\"chart\"", "<rect "] {
        assert!(dom.contains(expected), "the rendered DOM lacks {expected:?}: {dom}");
    }
    assert!(size > 10_000, "no screenshot ({}): {complaints}", shot.display());
    h.stop().await;
    db.finish().await;
}

both_engines! {
    /// The daily job: run for a day, it fetches and reconciles that day's bill once (a
    /// second run for the same day is never enqueued, whichever instance asks) and chains
    /// the next day's run.
    async fn the_daily_job_reconciles_a_day_once_and_chains_the_next(db) {
        let h = Harness::start(db, lost(), notifications_only()).await;
        let created = h.order("daily", "diamonds_60").await;
        h.client.pay(&created).await.unwrap().expect("paid");
        let no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let app = &h.server.app;
        let day = today_cst();
        assert!(reconcile_daily::run_now(app, PROVIDER, &day).await.unwrap());
        assert!(!reconcile_daily::run_now(app, PROVIDER, &day).await.unwrap(), "once per provider and day");
        let id = stack::eventually(Duration::from_secs(30), "the day reconciled", || async {
            let mut conn = app.store.reader().await?;
            Ok(bills::list(&mut conn, 0, 10).await?.first().map(|r| r.id))
        })
        .await
        .unwrap();
        h.repaired(id).await;
        h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        let mut conn = app.store.reader().await.unwrap();
        let queued: Vec<String> = sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE kind = 'reconcile_daily' ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(queued.len(), 2, "{queued:?}");
        assert!(queued[1].starts_with("reconcile_daily:sandbox:") && !queued[1].ends_with(&day), "{queued:?}");
        drop(conn);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Queries held off past the order's whole schedule: the provider hides the payments
    /// (no notification; its queries and close say "no such trade") until the orders have
    /// expired and their late sweeps are over. The day's bill then repairs each by the
    /// product's late-payment policy: delivered late, or refunded in full.
    async fn payments_hidden_past_their_schedule_are_repaired_by_policy(db) {
        let hidden = Faults { hide_rate_pct: 100, ..calm() };
        let h = Harness::start(db, hidden, crate::support::fast()).await;
        let deliver = h.order("late-deliver", "diamonds_60").await;
        let refund = h.order("late-refund", "diamonds_3280").await;
        for created in [&deliver, &refund] {
            h.client.pay(created).await.unwrap().expect("paid at the sandbox");
        }
        let (deliver_no, refund_no) = (
            deliver["order"]["order_no"].as_str().unwrap().to_owned(),
            refund["order"]["order_no"].as_str().unwrap().to_owned(),
        );
        for no in [&deliver_no, &refund_no] {
            h.wait_for_status(no, "expired", Duration::from_secs(30)).await;
            stack::eventually(Duration::from_secs(30), "the order's schedule over", || async {
                let order = h.client.order(no).await?;
                Ok(order["pending_jobs"].as_array().is_some_and(|jobs| jobs.is_empty()).then_some(()))
            })
            .await
            .unwrap();
        }
        assert_eq!(h.sandbox.sandbox.reveal_hidden(), 2);
        let app = &h.server.app;
        let imported = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.expect("reconciled");
        assert_eq!(imported.summary.unknown_to_us.count, 2, "{:?}", imported.summary);
        h.repaired(imported.reconciliation_id).await;
        let delivered = h.wait_for_status(&deliver_no, "delivered", Duration::from_secs(20)).await;
        assert_eq!(delivered["payment"]["late"], true, "{delivered}");
        h.wait_for_status(&refund_no, "refunded", Duration::from_secs(30)).await;
        assert_eq!(h.wallet("late-deliver").await["balances"][0]["balance"], 60);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// The report endpoints refuse what they cannot answer, in the documented JSON: no key
    /// or a forged one, malformed and unknown ids, unknown formats and query keys, limits
    /// out of bounds; a report that exists answers in every format.
    async fn the_report_endpoints_refuse_bad_requests_clearly(db) {
        let h = Harness::start(db, calm(), notifications_only()).await;
        let created = h.order("probe", "diamonds_60").await;
        h.client.pay(&created).await.unwrap().expect("paid");
        let imported = day::fetch_and_import(&h.server.app, PROVIDER, &today_cst(), None).await.expect("reconciled");
        let get = |path: String, key: Option<&'static str>| {
            let url = format!("{}{path}", h.server.base_url);
            let http = h.client.http.clone();
            async move {
                let request = http.get(url);
                let request = match key {
                    Some(key) => request.bearer_auth(key),
                    None => request,
                };
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
            }
        };
        let id = imported.reconciliation_id;
        let key = Some(stack::API_KEY);
        for (path, key, status, code) in [
            (format!("/v1/reconciliations/{id}"), None, 401, "unauthorized"),
            (format!("/v1/reconciliations/{id}"), Some("zd_forged_key_0000000000000000000000"), 401, "unauthorized"),
            ("/v1/reconciliations".to_owned(), None, 401, "unauthorized"),
            ("/v1/reconciliations/abc".to_owned(), key, 404, "reconciliation_not_found"),
            ("/v1/reconciliations/0".to_owned(), key, 404, "reconciliation_not_found"),
            ("/v1/reconciliations/-1".to_owned(), key, 404, "reconciliation_not_found"),
            ("/v1/reconciliations/99999999999999999999999".to_owned(), key, 404, "reconciliation_not_found"),
            (format!("/v1/reconciliations/{}", id + 1), key, 404, "reconciliation_not_found"),
            (format!("/v1/reconciliations/{id}?format=pdf"), key, 422, "invalid_request"),
            (format!("/v1/reconciliations/{id}?after=x"), key, 422, "invalid_request"),
            (format!("/v1/reconciliations/{id}?sneaky=1"), key, 422, "invalid_request"),
            ("/v1/reconciliations?limit=0".to_owned(), key, 422, "invalid_request"),
            ("/v1/reconciliations?limit=100000".to_owned(), key, 422, "invalid_request"),
            ("/v1/reconciliations?before=-5".to_owned(), key, 422, "invalid_request"),
            (format!("/v1/reconciliations?before={}", "9".repeat(5_000)), key, 422, "invalid_request"),
        ] {
            let (got, body) = get(path.clone(), key).await;
            assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        }
        let (status, list) = get("/v1/reconciliations?limit=1".to_owned(), key).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["reconciliations"][0]["id"], id);
        for format in ["json", "csv", "html"] {
            let (status, body) = get(format!("/v1/reconciliations/{id}?format={format}"), key).await;
            assert_eq!(status, 200, "{format}: {body}");
        }
        h.stop().await;
    }
}

/// The differences of one reconciliation.
async fn differences(h: &Harness, reconciliation_id: i64) -> Vec<bills::DifferenceRow> {
    let mut conn = h.server.app.store.reader().await.unwrap();
    bills::by_reconciliation(&mut conn, reconciliation_id, 0, 100).await.unwrap()
}

both_engines! {
    /// The repairs that run another job's step record the bill as their cause, and a
    /// refund the bill lacks is asked about again:
    /// - a refund the provider finished that zerodrop still holds as processing (its own
    ///   job's next poll is a day off) is settled by the repair, through the refund job's
    ///   step, with the bill line as the cause;
    /// - an order whose delivery endpoint is down past its deadline (the deadline job a day
    ///   off) is refunded by the deadline's policy, through the deadline job's step, with
    ///   the bill (and the difference) as the cause;
    /// - a refund zerodrop made that the bill leaves out is queried at the provider, which
    ///   confirms it: the difference ends without a person.
    async fn repairs_through_other_jobs_cite_the_bill_and_unbilled_refunds_are_asked_about(db) {
        use crate::refunds_never_double::{paid_out, refund, wait_refund};
        use crate::support::{count, goods};
        use zerodrop::endpoint::{Endpoint, Mode};
        let game = Endpoint::start(Mode::Down).await.unwrap();
        // Everything just made counts: no grace for the last minutes before the import.
        let h = Harness::start_with(db, calm(), goods(Some(game.url.clone())), |c| c.reconcile.missing_grace_secs = 0).await;
        // No outcome: the endpoint is down, and the deadline job will not come in time.
        let stuck = h.paid("stuck", "gold_100").await;
        h.postpone("deadline").await;
        let paid_at = std::time::Instant::now();
        // Refunded here, left out of the bill.
        let unbilled = h.paid("unbilled", "diamonds_60").await;
        let (status, body) = refund(&h, &unbilled, serde_json::json!({"reason": "test"}), Some("unbilled")).await;
        assert_eq!(status, 201, "{body}");
        let unbilled_order = wait_refund(&h, &unbilled, 0, "succeeded").await;
        let unbilled_trade = unbilled_order["payment"]["trade_no"].as_str().unwrap().to_owned();
        // Processing here, finished at the provider.
        let processing = h.paid("processing", "diamonds_60").await;
        // No notifications from here on: only a query can tell zerodrop the refund ended.
        h.sandbox.sandbox.set_faults(Faults { refund_delay_ms: 3_600_000, drop_rate_pct: 100, ..calm() });
        let (status, body) = refund(&h, &processing, serde_json::json!({"reason": "test"}), Some("processing")).await;
        assert_eq!(status, 201, "{body}");
        stack::eventually(Duration::from_secs(15), "the refund at the provider", || async {
            Ok((paid_out(&h, &processing).len() == 1).then_some(()))
        })
        .await
        .unwrap();
        wait_refund(&h, &processing, 0, "processing").await;
        h.postpone("refund").await;
        h.sandbox.sandbox.finish_refunds();
        let omit = Faults { bill_omit_trade_nos: vec![unbilled_trade.clone()], drop_rate_pct: 100, ..calm() };
        h.sandbox.sandbox.set_faults(omit);
        // Past the stuck order's deadline (10 s).
        tokio::time::sleep(Duration::from_secs(11).saturating_sub(paid_at.elapsed())).await;

        let app = &h.server.app;
        let imported = day::fetch_and_import(app, PROVIDER, &today_cst(), None).await.expect("reconciled");
        let s = &imported.summary;
        assert_eq!(
            (s.no_outcome.count, s.refund_unknown_to_us.count, s.refund_missing_from_bill.count, s.missing_from_bill.count),
            (1, 1, 1, 1),
            "{s:?}"
        );
        let id = imported.reconciliation_id;
        let ended = stack::eventually(Duration::from_secs(30), "the three repairs", || async {
            let rows = differences(&h, id).await;
            let done = rows.iter().filter(|d| d.class != bills::Class::MissingFromBill).all(|d| d.state != DifferenceState::Pending);
            Ok(done.then_some(rows))
        })
        .await
        .unwrap();
        let find = |class| ended.iter().find(|d| d.class == class).unwrap();
        let no_outcome = find(bills::Class::NoOutcome);
        assert_eq!(no_outcome.state, DifferenceState::Repaired, "{no_outcome:?}");
        assert!(no_outcome.cause().starts_with(&format!("bill:{}:", no_outcome.bill_id)), "{}", no_outcome.cause());
        let refund_line = find(bills::Class::RefundUnknownToUs);
        assert_eq!(refund_line.state, DifferenceState::Repaired, "{refund_line:?}");
        let unbilled_refund = find(bills::Class::RefundMissingFromBill);
        assert_eq!(unbilled_refund.state, DifferenceState::Resolved, "{unbilled_refund:?}");
        assert!(unbilled_refund.outcome.as_deref().unwrap().contains("the provider confirms"), "{unbilled_refund:?}");
        assert_eq!(find(bills::Class::MissingFromBill).state, DifferenceState::Pending, "waits for the next day's bill");

        // Each repair's events carry the bill as their cause, not the repair job.
        let cause_of = |order: &Value, kind: &str| {
            let events = order["timeline"].as_array().unwrap();
            let event = events.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind}: {order}"));
            event["cause"].as_str().unwrap().to_owned()
        };
        let settled = wait_refund(&h, &processing, 0, "succeeded").await;
        assert_eq!(cause_of(&settled, "refund_succeeded"), refund_line.cause());
        assert!(refund_line.cause().starts_with("bill_line:"), "{}", refund_line.cause());
        let stuck_order = h.client.order(&stuck).await.unwrap();
        assert_eq!(cause_of(&stuck_order, "deadline_missed"), no_outcome.cause());
        assert_eq!(stuck_order["refunds"][0]["origin"], "deadline", "{stuck_order}");
        h.wait_for_status(&stuck, "refunded", Duration::from_secs(20)).await;
        assert_eq!(count(&h.client.order(&processing).await.unwrap(), "refund_succeeded"), 1);
        h.audit_passes().await;
        h.stop().await;
        game.stop();
    }
}
