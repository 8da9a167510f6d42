//! Finding payments whose notifications are all lost: the app's check call, the open
//! order's query cadence, and the late sweeps after expiry. Every test here drops 100% of
//! notifications, so only zerodrop's own questions to the provider can find a payment.

use crate::support::{calm, code, count, fast, kinds, notifications_only, Harness};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerodrop::stack::Tuning;
use zerodrop_sandbox::faults::Faults;
use zerodrop_server::config::QueryStep;
use zerodrop_server::jobs::check_payment::BURST_WINDOW_MS;
use zerodrop_server::schedule::CHECK_BURST_SECS;
use zerodrop_store::both_engines;

/// Every notification lost.
fn silent() -> Faults {
    Faults { drop_rate_pct: 100, ..calm() }
}

/// The production cadence (every 30 s for 10 minutes, then every 2 minutes) scaled down
/// 15 times: every 2 s for 40 s, then every 8 s. Orders live 120 s, so neither expiry's
/// close nor a fixed point can find a payment within the first minute: only the cadence.
fn cadence_scaled() -> Tuning {
    let cadence =
        vec![QueryStep { every_secs: 2, until_secs: Some(40) }, QueryStep { every_secs: 8, until_secs: None }];
    Tuning { ttl_secs: 120, query_schedule_secs: Vec::new(), query_cadence: cadence, ..fast() }
}

impl Harness {
    /// `POST /v1/orders/{order_no}/check` with the merchant key.
    async fn check(&self, order_no: &str) -> (u16, Value) {
        self.client.post(&format!("/v1/orders/{order_no}/check"), &Value::Null, None).await.expect("check")
    }
}

fn order_no(created: &Value) -> String {
    created["order"]["order_no"].as_str().expect("order_no").to_owned()
}

both_engines! {
    /// The user is back from the payment sheet: the check call finds the payment at once
    /// (the answer already says delivered), and when the call comes before the provider has
    /// the payment, the burst that follows finds it seconds later. Within 10 s either way.
    async fn the_check_call_finds_a_payment_within_10_s_with_every_notification_lost(db) {
        // No scheduled query within the test: only the check call asks the provider.
        let h = Harness::start(db, silent(), notifications_only()).await;

        let created = h.order("back-from-sheet", "diamonds_60").await;
        let no = order_no(&created);
        h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let paid = Instant::now();
        let (status, body) = h.check(&no).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order"]["status"], "delivered", "the call's own query found it: {:?}", kinds(&body));
        assert_eq!(body["payment"]["source"], "query");
        assert_eq!((body["check"]["started"].clone(), body["check"]["under_way"].clone()), (true.into(), true.into()));
        assert!(paid.elapsed() < Duration::from_secs(10), "{:?}", paid.elapsed());
        assert_eq!(h.wallet("back-from-sheet").await["balances"][0]["balance"], 60);

        // "I paid", tapped before the provider has the payment: the burst finds it.
        let created = h.order("tapped-early", "diamonds_60").await;
        let no = order_no(&created);
        let (status, body) = h.check(&no).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order"]["status"], "awaiting_payment");
        assert_eq!(body["check"]["under_way"], true);
        assert!(body["pending_jobs"].as_array().unwrap().iter().any(|j| j["kind"] == "check_payment"), "{body}");
        h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        assert_eq!(order["payment"]["source"], "query");
        assert!(count(&order, "provider_queried") >= 1, "the first answer (not paid yet) is in the timeline");
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    /// Without any check call, the open order's cadence finds a payment in its first
    /// minutes within 60 s (by a scheduled query, not the expiry's close). The cadence is the
    /// production shape scaled down; that the real default keeps the 60 s promise for every
    /// instant of an order's first 10 minutes is proven in `schedule::tests`.
    async fn the_open_order_cadence_finds_a_payment_within_60_s_without_a_check(db) {
        let h = Harness::start(db, silent(), cadence_scaled()).await;
        let created = h.order("never-checks", "diamonds_60").await;
        let no = order_no(&created);
        h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let paid = Instant::now();
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(60)).await;
        assert!(paid.elapsed() < Duration::from_secs(60), "{:?}", paid.elapsed());
        assert_eq!(order["payment"]["source"], "query", "found while open, not by the expiry's close");
        assert_eq!(order["payment"]["late"], false);
        assert_eq!(count(&order, "provider_close_requested"), 0, "{:?}", kinds(&order));
        h.audit_passes().await;
        h.stop().await;
    }
}

/// Calls made by the hammering test.
const HAMMER_CALLS: usize = 1_000;
/// Calls in flight at once.
const HAMMER_CONCURRENCY: usize = 50;
/// Calls made before the user's payment lands.
const HAMMER_CALLS_BEFORE_PAYING: usize = 100;

both_engines! {
    /// "I paid" hammered a thousand times, fifty at a time, while the payment lands: one
    /// delivery, every call answered, and the provider asked no more than one burst per
    /// minute the hammering lasted (plus one, for a burst straddling a minute's end).
    async fn the_check_call_hammered_a_thousand_times_delivers_once_and_asks_little(db) {
        let h = Arc::new(Harness::start(db, silent(), notifications_only()).await);
        let created = h.order("hammer", "diamonds_60").await;
        let no = order_no(&created);
        let calls_before = h.sandbox.sandbox.stats().gateway_calls;
        let started = Instant::now();
        let limiter = Arc::new(tokio::sync::Semaphore::new(HAMMER_CONCURRENCY));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..HAMMER_CALLS {
            if n == HAMMER_CALLS_BEFORE_PAYING {
                // Let the calls so far finish, so the payment lands mid-hammering.
                while let Some(answer) = calls.join_next().await {
                    assert_eq!(answer.unwrap(), 200);
                }
                h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
            }
            let (h, no, permit) = (h.clone(), no.clone(), limiter.clone().acquire_owned().await.unwrap());
            calls.spawn(async move {
                let (status, body) = h.check(&no).await;
                drop(permit);
                assert!(status != 200 || body["check"].is_object(), "{body}");
                status
            });
        }
        while let Some(answer) = calls.join_next().await {
            assert_eq!(answer.unwrap(), 200, "every call is answered from the order as it stands");
        }
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(90)).await;
        let elapsed_ms = i64::try_from(started.elapsed().as_millis()).unwrap();

        assert_eq!(count(&order, "payment_captured"), 1, "{:?}", kinds(&order));
        assert_eq!(count(&order, "delivered"), 1, "{:?}", kinds(&order));
        assert_eq!(h.wallet("hammer").await["balances"][0]["balance"], 60, "delivered once");
        // The bound: one burst per minute window the hammering touched, each at most its
        // points. Nothing else asks (no scheduled query, no expiry within the test).
        let bursts_max = elapsed_ms / BURST_WINDOW_MS + 2;
        let asked = h.sandbox.sandbox.stats().gateway_calls - calls_before;
        let bound = u64::try_from(bursts_max).unwrap() * CHECK_BURST_SECS.len() as u64;
        assert!(asked >= 1 && asked <= bound, "{asked} provider queries for {HAMMER_CALLS} calls in {elapsed_ms} ms (bound {bound})");
        let mut conn = db.store.reader().await.unwrap();
        let order_id = zerodrop_domain::OrderId::parse(order["order"]["id"].as_str().unwrap()).unwrap();
        let jobs = zerodrop_store::jobs::for_order(&mut conn, order_id).await.unwrap();
        let bursts = jobs.iter().filter(|(kind, ..)| kind == "check_payment").count();
        assert!((1..=usize::try_from(bursts_max).unwrap()).contains(&bursts), "{bursts} bursts: {jobs:?}");
        drop(conn);
        h.audit_passes().await;
        Arc::into_inner(h).expect("no call holds the harness").stop().await;
    }
}

both_engines! {
    /// A payment the provider takes after expiry (its clock is laxer) with every
    /// notification lost: the first late sweep finds nothing (the user has not paid yet),
    /// the job moves on to the schedule's next point, and that sweep finds the payment,
    /// delivered late by the product's policy. The sweep job keeps the shape and key of
    /// earlier builds' single sweep.
    async fn a_later_sweep_finds_a_payment_made_after_expiry(db) {
        let faults = Faults { late_pay_grace_ms: 120_000, ..silent() };
        // Sweeps far off, so only make_due runs them, when the test chooses.
        let tuning = Tuning { late_sweep_schedule_secs: vec![600, 1_200], ..fast() };
        let h = Harness::start(db, faults, tuning).await;
        let created = h.order("pays-late", "diamonds_60").await; // late policy: deliver
        let no = order_no(&created);
        h.wait_for_status(&no, "expired", Duration::from_secs(20)).await;

        h.make_due("late_sweep").await;
        let swept_once = zerodrop::stack::eventually(Duration::from_secs(15), "the first sweep", || async {
            let order = h.client.order(&no).await?;
            let queued = order["pending_jobs"].as_array().is_some_and(|j| j.iter().any(|j| j["kind"] == "late_sweep"));
            Ok((queries_after_expiry(&order) == 1 && queued).then_some(order))
        })
        .await
        .unwrap();
        assert_eq!(swept_once["order"]["status"], "expired", "nothing paid yet");

        h.client.pay(&created).await.unwrap().expect("the sandbox's lax clock still takes payment");
        h.make_due("late_sweep").await;
        let order = h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        assert_eq!(order["payment"]["late"], true);
        assert_eq!(order["payment"]["source"], "query");
        assert_eq!(h.wallet("pays-late").await["balances"][0]["balance"], 60);
        let order_id = zerodrop_domain::OrderId::parse(order["order"]["id"].as_str().unwrap()).unwrap();
        // The sweep's run ends (the job marked done) just after the payment's own commit.
        let jobs = zerodrop::stack::eventually(Duration::from_secs(10), "the sweep to be done", || async {
            let mut conn = db.store.reader().await?;
            let jobs = zerodrop_store::jobs::for_order(&mut conn, order_id).await?;
            let done = jobs.iter().any(|(kind, state, ..)| kind == "late_sweep" && state == "done");
            Ok(done.then_some(jobs))
        })
        .await
        .unwrap();
        let sweeps: Vec<_> = jobs.iter().filter(|(kind, ..)| kind == "late_sweep").collect();
        assert_eq!(sweeps.len(), 1, "one job walks the schedule: {jobs:?}");
        h.audit_passes().await;
        h.stop().await;
    }
}

/// Provider answers noted in the timeline after the order expired.
fn queries_after_expiry(order: &Value) -> usize {
    let kinds = kinds(order);
    let expired = kinds.iter().position(|k| k == "expired").unwrap_or(kinds.len());
    kinds[expired..].iter().filter(|k| *k == "provider_queried").count()
}

both_engines! {
    /// The check route refuses what it must: no key or a wrong one, an order number that is
    /// malformed or unknown, a method it does not take. An order no longer awaiting payment
    /// is answered as it stands, without asking the provider.
    async fn the_check_route_refuses_bad_input_and_asks_nothing_for_settled_orders(db) {
        let h = Harness::start(db, calm(), notifications_only()).await;
        let url = |no: &str| format!("{}/v1/orders/{no}/check", h.server.base_url);
        let created = h.order("u", "diamonds_60").await;
        let no = order_no(&created);

        let response = h.client.http.post(url(&no)).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let response = h.client.http.post(url(&no)).bearer_auth("not-the-key").send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "unauthorized");

        let long = "Z".repeat(300);
        for bad in ["not-an-order", "ZD", "ZD000000000000", "zd3k7q9w2m4x8p", long.as_str()] {
            let (status, body) = h.check(bad).await;
            assert_eq!((status, code(&body)), (404, "order_not_found"), "{bad}: {body}");
        }
        let response = h.client.http.get(url(&no)).bearer_auth(zerodrop::stack::API_KEY).send().await.unwrap();
        assert_eq!(response.status(), 405);
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "method_not_allowed");
        // Delivered (by its notification): answered as it stands, the provider not asked.
        h.client.pay(&created).await.unwrap().expect("paid");
        h.wait_for_status(&no, "delivered", Duration::from_secs(10)).await;
        let asked_before = h.sandbox.sandbox.stats().gateway_calls;
        let (status, body) = h.check(&no).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order"]["status"], "delivered");
        assert_eq!((body["check"]["started"].clone(), body["check"]["under_way"].clone()), (false.into(), false.into()));
        // Any body is ignored, even one that is not JSON.
        let response = h.client.http.post(url(&no)).bearer_auth(zerodrop::stack::API_KEY).body("{oops").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(h.sandbox.sandbox.stats().gateway_calls, asked_before, "no query for a settled order");
        assert!(!body["pending_jobs"].as_array().unwrap().iter().any(|j| j["kind"] == "check_payment"), "no burst");
        h.audit_passes().await;
        h.stop().await;
    }
}
