//! The per-period proof and the honest figures, on a database populated through the API:
//! an untouched database verifies; an event or ledger entry edited, events deleted and
//! renumbered, a record edited and re-sealed, a proof file edited, each fails naming the
//! record; a malformed proof is a clear error. The user's own proof behind the receipt,
//! and `/v1/stats` and `/metrics` with the figures.

use crate::seal::{drop_guards, order_id, populate, sql};
use crate::support::{calm, goods, Harness};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zerodrop_server::Config;
use zerodrop_store::outcome::Outcome;
use zerodrop_store::proof::{verify, write};
use zerodrop_store::seal::content;
use zerodrop_store::testing::TestDb;
use zerodrop_store::{both_engines, now_ms};

fn temp_proof() -> PathBuf {
    std::env::temp_dir().join(format!("zerodrop-proof-{}", uuid::Uuid::new_v4().simple())).join("proof.json")
}

/// The proof of the last hour (everything the test wrote), to a fresh file.
async fn write_proof(db: &TestDb, config: &Config) -> PathBuf {
    let now = now_ms();
    let options = write::Options {
        from_ms: now - 3_600_000,
        to_ms: now + 60_000,
        bounds: zerodrop_server::http::stats::bounds(config),
        now_ms: now,
    };
    let path = temp_proof();
    write::write(&db.store, &options, &path).await.expect("proof written");
    path
}

async fn findings(db: &TestDb, config: &Config, path: &Path) -> Vec<String> {
    let proof = verify::read(path).expect("a readable proof");
    let trusted = config.seal.trusted_keys();
    let log = zerodrop_store::seal::log::read(Path::new(&config.seal.log_path)).expect("seal log");
    let inputs = verify::Inputs { trusted_keys: &trusted, log: Some(&log) };
    verify::verify(&db.store, &proof, &inputs).await.expect("verify ran")
}

fn names(findings: &[String], record: &str, what: &str) {
    assert!(
        findings.iter().any(|f| f.contains(record) && f.contains(what)),
        "expected a finding naming {record} ({what}); findings: {findings:#?}"
    );
}

both_engines! {
    /// Every charge of the period has its one outcome and its sealed records; the untouched
    /// database verifies, and each later edit fails naming the record.
    async fn the_proof_holds_until_a_record_is_edited(db) {
        let (config, paid) = populate(db).await;
        let path = write_proof(db, &config).await;
        let proof = verify::read(&path).unwrap();
        let body = &proof.body;
        // Three delivered orders, one delivered order paid twice: its second trade refunded.
        assert_eq!(body.totals.charges, 5, "{:#?}", body.totals);
        let count = |o: Outcome| body.charges.iter().filter(|e| e.outcome == o).count();
        assert_eq!((count(Outcome::Delivered), count(Outcome::Refunded)), (4, 1), "{:#?}", body.totals);
        assert_eq!(body.totals.drop_rate_ppm, 0);
        assert_eq!((body.figures.window.charges, body.figures.window.dropped, body.figures.window.late), (5, 0, 0));
        assert_eq!(body.figures.window.to_outcome.count, 5);
        assert!(body.bills.statement.contains("no bills"), "{}", body.bills.statement);
        assert_eq!(body.unsealed.count, 0, "the server's last run sealed everything: {:?}", body.unsealed);
        assert!(!body.checkpoints.is_empty());
        let diamonds = body.charges.iter().find(|e| e.charge.order_no == paid[0]).unwrap();
        assert!(diamonds.charge.seal.is_some());
        assert!(diamonds.events.iter().any(|e| e.kind == "delivered" && e.seal.is_some()), "{diamonds:#?}");
        assert!(diamonds.transfers.iter().any(|t| t.id.ends_with(":credit") && t.entries.len() == 2), "{diamonds:#?}");
        let refunded = body.charges.iter().find(|e| e.outcome == Outcome::Refunded).unwrap();
        assert_eq!(refunded.charge.class, "duplicate_trade");
        assert!(refunded.refunds.iter().any(|r| r.state == "succeeded" && r.seal.is_some()), "{refunded:#?}");
        assert!(refunded.events.iter().any(|e| e.kind == "charge_refund_succeeded"), "{refunded:#?}");

        let untouched = findings(db, &config, &path).await;
        assert!(untouched.is_empty(), "an untouched database passes: {untouched:#?}");

        // The proof file itself edited: its hash and its totals say so.
        let edited = temp_proof();
        std::fs::create_dir_all(edited.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&edited, text.replacen("\"outcome\":\"refunded\"", "\"outcome\":\"delivered\"", 1)).unwrap();
        let found = findings(db, &config, &edited).await;
        names(&found, "proof file", "SHA-256");
        names(&found, "totals", "not the sum");

        // One event's data edited in place.
        let svip = order_id(db, &paid[1]).await;
        drop_guards(db, "order_events").await;
        sql(&db.store, &format!(
            "UPDATE order_events SET data = '{{\"days\":3650}}' WHERE order_id = '{svip}' AND kind = 'delivered'"
        )).await;
        let found = findings(db, &config, &path).await;
        names(&found, &format!("order {} event #", paid[1]), "not the hash of its content");

        // One ledger entry edited in place.
        let diamonds_id = order_id(db, &paid[0]).await;
        drop_guards(db, "ledger_entries").await;
        sql(&db.store, &format!(
            "UPDATE ledger_entries SET amount = amount * 100 WHERE transfer_id = 'order:{diamonds_id}:credit' AND amount > 0"
        )).await;
        let found = findings(db, &config, &path).await;
        names(&found, &format!("ledger entry order:{diamonds_id}:credit"), "not the hash of its content");

        // An event deleted and the later ones renumbered.
        let card = order_id(db, &paid[2]).await;
        let mut conn = db.store.reader().await.unwrap();
        let events: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, kind FROM order_events WHERE order_id = $1 ORDER BY seq")
                .bind(&card)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        drop(conn);
        let delivered = events.iter().find(|(_, k)| k == "delivered").unwrap().0;
        sql(&db.store, &format!("DELETE FROM order_events WHERE order_id = '{card}' AND seq = 2")).await;
        for (seq, _) in events.iter().filter(|(seq, _)| *seq > 2) {
            sql(&db.store, &format!("UPDATE order_events SET seq = {} WHERE order_id = '{card}' AND seq = {seq}", seq - 1)).await;
        }
        let found = findings(db, &config, &path).await;
        names(&found, &format!("order {} event #{delivered} (delivered)", paid[2]), "renumbered");

        // A refund edited and re-sealed by someone who knows how seals are made: the seal
        // fits its content, but not the seal the proof recorded.
        let refund = &refunded.refunds[0];
        let mut conn = db.store.reader().await.unwrap();
        let r: (Option<String>, Option<i64>, String, i64, String, i64, String, i64) = sqlx::query_as(
            "SELECT order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, created_at_ms \
             FROM refunds WHERE id = $1",
        )
        .bind(&refund.id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        let resealed = content::refund(&content::RefundFacts {
            id: &refund.id,
            order_id: r.0.as_deref(),
            charge_id: r.1,
            request_no: &r.2,
            amount_minor: r.3,
            currency: &r.4,
            full: r.5 != 0,
            origin: &r.6,
            reason: "rewritten",
            created_at_ms: r.7,
        });
        drop_guards(db, "refunds").await;
        sql(&db.store, &format!(
            "UPDATE refunds SET reason = 'rewritten', seal = '{resealed}' WHERE id = '{}'", refund.id
        )).await;
        let found = findings(db, &config, &path).await;
        names(&found, &format!("refund {}", refund.id), "changed since the proof was made");
        assert!(
            !found.iter().any(|f| f.contains(&format!("refund {}", refund.id)) && f.contains("not the hash")),
            "the re-sealed row checks out alone: {found:#?}"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        let _ = std::fs::remove_dir_all(edited.parent().unwrap());
    }
}

/// A file that is not a proof, or a proof cut short, is refused naming the file and where
/// reading stopped; the command exits non-zero with that one line.
#[test]
fn a_malformed_or_truncated_proof_is_a_clear_error() {
    let path = temp_proof();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let header = r#"{"header":{"kind":"zerodrop-proof","schema_version":1,"from_ms":0,"to_ms":1,"generated_at_ms":1,"body_sha256":"00"},"#;
    for (text, says) in [
        ("", "EOF"),
        ("not json", "expected"),
        (
            r#"{"header":{"kind":"something-else","schema_version":1,"from_ms":0,"to_ms":1,"generated_at_ms":1,"body_sha256":""},"body":{}}"#,
            "kind",
        ),
        (&format!("{header}\n\"body\":{{\"from_ms\":0,\"to_ms\":1,\"charges\":[\n"), "line 3"),
        (&format!("{header}\n\"body\":{{\"from_ms\":0}}}}"), "body: missing field"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = verify::read(&path).err().unwrap_or_else(|| panic!("{text:?} was read as a proof")).to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(says), "{text:?}: {err}");
    }
    std::fs::write(&path, format!("{header}\n\"body\":{{\"from_ms\":0,\"to_ms\":1,\"charges\":[")).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"))
        .args(["proof", "verify"])
        .arg(&path)
        .output()
        .expect("run zerodrop");
    assert!(!run.status.success(), "a truncated proof fails");
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("not a zerodrop proof") && said.contains("EOF"), "{said}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

both_engines! {
    /// The receipt links to the order's own proof, behind the same signed link; `/v1/stats`
    /// (merchant key) and `/metrics` give the figures.
    async fn the_users_proof_and_the_figures(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let no = h.paid("proof-user", "diamonds_60").await;
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        let config = h.server.app.config.clone();
        let key = config.seal.read_key().unwrap();
        zerodrop_server::sealer::seal_and_export(&h.server.app.store, &key, Path::new(&config.seal.log_path)).await;

        let (status, links) = h.post(&format!("/v1/orders/{no}/status-link"), &serde_json::json!({}), None).await;
        assert_eq!(status, 200, "{links}");
        let receipt = h.client.http.get(links["receipt_url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
        assert!(receipt.contains(&format!("/pages/orders/{no}/proof?exp=")), "{receipt}");
        let proof_url = links["proof_url"].as_str().unwrap();
        let response = h.client.http.get(proof_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let proof: Value = response.json().await.unwrap();
        assert_eq!(proof["order_no"], no.as_str());
        let charge = &proof["charges"][0];
        assert_eq!(charge["outcome"], "delivered", "{proof:#}");
        assert!(charge["charge"]["seal"].is_string(), "{proof:#}");
        assert!(charge["events"].as_array().unwrap().iter().any(|e| e["kind"] == "delivered" && e["seal"].is_string()));
        assert!(proof["checkpoint"]["signature"].is_string(), "sealed: {proof:#}");
        assert_eq!(proof["unsealed"], serde_json::json!([]), "{proof:#}");
        let forged = format!("{}0", &proof_url[..proof_url.len() - 1]);
        assert_eq!(h.client.http.get(forged).send().await.unwrap().status(), 403, "a forged link shows nothing");

        let url = format!("{}/v1/stats", h.server.base_url);
        assert_eq!(h.client.http.get(&url).send().await.unwrap().status(), 401, "the merchant key is required");
        let stats: Value = h.client.http.get(&url).bearer_auth(zerodrop::stack::API_KEY).send().await.unwrap().json().await.unwrap();
        let hour = &stats["windows"]["1h"];
        assert_eq!((hour["charges"].as_i64(), hour["dropped"].as_i64(), hour["drop_rate_ppm"].as_i64()), (Some(1), Some(0), Some(0)), "{stats:#}");
        assert_eq!((hour["late"].as_i64(), hour["to_outcome"]["count"].as_i64()), (Some(0), Some(1)), "{stats:#}");
        assert_eq!(stats["attention"]["open"], 0, "{stats:#}");
        let metrics = h.client.http.get(format!("{}/metrics", h.server.base_url)).send().await.unwrap().text().await.unwrap();
        for line in ["zerodrop_drop_rate_ppm{window=\"1h\"} 0", "zerodrop_charges_confirmed{window=\"30d\"} 1", "zerodrop_attention_open_by_age{age=\"lt_1h\"} 0"] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
        h.stop().await;
    }
}
