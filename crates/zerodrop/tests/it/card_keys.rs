//! Card keys (卡密): imported encrypted, allocated in the payment's transaction, waiting
//! visibly when out of stock, restocked oldest first, refunded or escalated at the
//! deadline. On SQLite and PostgreSQL.

use crate::support::{calm, count, goods, kinds, Harness};
use std::time::Duration;
use zerodrop_store::both_engines;

both_engines! {
    async fn stock_out_then_restock_delivers_oldest_first(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let mut waiting = Vec::new();
        for user in ["first", "second", "third"] {
            let no = h.paid(user, "card_patient").await;
            let order = h.client.order(&no).await.unwrap();
            assert_eq!(order["order"]["status"], "paid", "out of stock: the order waits");
            assert!(kinds(&order).contains(&"awaiting_stock".to_owned()));
            assert!(order["status_text"].as_str().unwrap().contains("缺货"), "{}", order["status_text"]);
            waiting.push(no);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = h.import_keys("card_patient", &["CARD-AAAA-0001", "CARD-AAAA-0002"]).await;
        assert_eq!(report.imported, 2);
        // The two oldest payments get the two keys; the third keeps waiting.
        let first = h.wait_for_status(&waiting[0], "delivered", Duration::from_secs(10)).await;
        let second = h.wait_for_status(&waiting[1], "delivered", Duration::from_secs(10)).await;
        let mut codes = vec![first["delivery"]["code"].as_str().unwrap().to_owned(), second["delivery"]["code"].as_str().unwrap().to_owned()];
        codes.sort();
        assert_eq!(codes, ["CARD-AAAA-0001", "CARD-AAAA-0002"], "each owner sees their code");
        assert_eq!(h.client.order(&waiting[2]).await.unwrap()["order"]["status"], "paid");
        h.import_keys("card_patient", &["CARD-AAAA-0003"]).await;
        let third = h.wait_for_status(&waiting[2], "delivered", Duration::from_secs(10)).await;
        assert_eq!(third["delivery"]["code"], "CARD-AAAA-0003");
        // A key in stock is allocated inside the payment itself.
        h.import_keys("card_patient", &["CARD-AAAA-0004"]).await;
        let instant = h.paid("fourth", "card_patient").await;
        let order = h.client.order(&instant).await.unwrap();
        assert_eq!(order["order"]["status"], "delivered");
        assert_eq!(count(&order, "awaiting_stock"), 0);
        h.audit_passes().await;
        h.stop().await;
    }
}

both_engines! {
    async fn imports_refuse_duplicates_and_malformed_files(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let app = &h.server.app;
        let import = |text: &'static str, skip: bool| zerodrop_server::flows::card_keys::import(app, "card_50", text, skip);
        let err = import("K-1\nK-2\nK-1\n", false).await.unwrap_err().to_string();
        assert!(err.contains("1 duplicate(s) in the file (lines [3])"), "{err}");
        let err = import("K-1\nhas space\n", false).await.unwrap_err().to_string();
        assert!(err.contains("malformed") && err.contains("[2]"), "{err}");
        assert!(!err.contains("has space"), "reports name lines, never codes: {err}");
        assert_eq!(import("# a comment\nK-1\n\nK-2\n", false).await.unwrap().imported, 2);
        let err = import("K-2\nK-3\n", false).await.unwrap_err().to_string();
        assert!(err.contains("1 already in stock (lines [1])"), "{err}");
        let report = import("K-2\nK-3\n", true).await.unwrap();
        assert_eq!((report.imported, report.already_in_stock.clone(), report.stock_available), (1, vec![1], 3));
        assert!(zerodrop_server::flows::card_keys::import(app, "diamonds_60", "K-9", false).await.is_err(), "not a card-key product");
        h.stop().await;
    }
}

both_engines! {
    /// Out of stock past the deadline, the money goes back at once (refund policy)
    /// or the order goes to a person as a dropped order (escalate).
    async fn s02_out_of_stock_at_the_deadline_refunds_or_escalates(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let refunded = h.paid("u1", "card_50").await;
        let escalated = h.paid("u2", "card_escalate").await;
        let order = h.wait_for_status(&refunded, "refunded", Duration::from_secs(25)).await;
        assert_eq!(order["refunds"][0]["origin"], "deadline");
        assert_eq!(count(&order, "deadline_missed"), 1);
        zerodrop::stack::eventually(Duration::from_secs(25), "escalation", || async {
            let order = h.client.order(&escalated).await?;
            Ok((order["order"]["attention"] == true).then_some(order))
        })
        .await
        .map(|order| {
            assert_eq!(order["order"]["status"], "paid");
            assert_eq!(order["order"]["attention_reason"], "dropped_order");
        })
        .unwrap();
        // The deadline fires once, ever: a restock now serves the escalated order only.
        h.import_keys("card_50", &["LATE-1"]).await;
        h.import_keys("card_escalate", &["LATE-2"]).await;
        let order = h.wait_for_status(&escalated, "delivered", Duration::from_secs(10)).await;
        assert_eq!(count(&order, "deadline_missed"), 1);
        assert_eq!(h.client.order(&refunded).await.unwrap()["order"]["status"], "refunded", "a refunded order gets no key");
        h.audit_passes().await;
        h.stop().await;
    }
}
