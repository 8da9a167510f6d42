//! Jobs stored by an earlier build (payloads written by hand, before jobs were typed)
//! still run after an upgrade.

use crate::support::{calm, fast, Harness};
use serde_json::json;
use std::time::Duration;
use zerodrop_sandbox::faults::Faults;
use zerodrop_store::both_engines;
use zerodrop_store::jobs::{self, NewJob};

both_engines! {
    async fn a_payment_query_stored_by_an_earlier_build_still_finds_the_payment(db) {
        // Every notification is lost and no query is scheduled within the order's life, so
        // only the job stored the old way can find this payment.
        let tuning = zerodrop::stack::Tuning { ttl_secs: 120, query_schedule_secs: vec![500], ..fast() };
        let h = Harness::start(db, Faults { drop_rate_pct: 100, ..calm() }, tuning).await;
        let created = h.order("upgraded", "diamonds_60").await;
        let order_no = created["order"]["order_no"].as_str().unwrap().to_owned();
        let order_id = created["order"]["id"].as_str().unwrap().to_owned();
        h.client.pay(&created).await.unwrap().expect("paid at the sandbox");
        let legacy = NewJob {
            kind: "query_payment",
            order_id: zerodrop_domain::OrderId::parse(&order_id),
            payload: json!({ "order_id": order_id }),
            run_at_ms: zerodrop_store::now_ms(),
            max_attempts: 5,
            dedupe_key: Some(format!("legacy-query:{order_id}")),
        };
        let mut tx = h.server.app.store.begin().await.unwrap();
        assert!(jobs::enqueue(&mut tx, &legacy, zerodrop_store::now_ms()).await.unwrap());
        tx.commit().await.unwrap();
        let order = h.wait_for_status(&order_no, "delivered", Duration::from_secs(30)).await;
        assert_eq!(order["payment"]["source"], "query");
        h.audit_passes().await;
        h.stop().await;
    }
}
