//! The sealed record: a database populated through the API is sealed and checkpointed,
//! its seal log matches it, and edits are caught, including an attacker's who re-seals
//! what they edit, rewrites the database's checkpoints and signs them with a key of their
//! own. The append-only tables refuse the edits outright until their triggers are dropped.

use crate::support::{calm, goods, Harness};
use std::path::PathBuf;
use std::time::Duration;
use zerodrop::audit::{check_with, SealInputs};
use zerodrop::stack::{eventually, Twist};
use zerodrop_server::Config;
use zerodrop_store::audit::Report;
use zerodrop_store::seal::{batch, checkpoint, content, key::SealKey, log, sha256_hex, Head};
use zerodrop_store::testing::TestDb;
use zerodrop_store::{both_engines, raw_execute, Store};

/// Paid and delivered orders, a second payment refunded, a card key; then the server
/// stops, which writes and exports the final checkpoint. Returns the configuration the
/// server ran with and the paid orders' numbers.
pub(crate) async fn populate(db: &TestDb) -> (Config, Vec<String>) {
    let h = Harness::start(db, calm(), goods(None)).await;
    h.import_keys("card_50", &["SEAL-CARD-0001-AAAA"]).await;
    let mut paid = Vec::new();
    for (user, sku) in [("sealer1", "diamonds_60"), ("sealer2", "svip_30d"), ("sealer3", "card_50")] {
        let no = h.paid(user, sku).await;
        h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
        paid.push(no);
    }
    let twice = h.order("sealer4", "diamonds_60").await;
    let no = twice["order"]["order_no"].as_str().unwrap().to_owned();
    h.client.pay(&twice).await.unwrap().unwrap();
    h.wait_for_status(&no, "delivered", Duration::from_secs(15)).await;
    h.client.pay_with(&twice, Twist::SecondTrade).await.unwrap().unwrap();
    eventually(Duration::from_secs(20), "the second trade refunded", || async {
        let mut conn = db.store.reader().await?;
        let refunds = zerodrop_store::refunds::all(&mut conn).await?;
        Ok((!refunds.is_empty() && refunds.iter().all(|r| r.state.is_final())).then_some(()))
    })
    .await
    .unwrap();
    let config = h.server.app.config.clone();
    h.stop().await;
    (config, paid)
}

async fn audit(db: &TestDb, config: &Config, with_log: bool) -> Report {
    let inputs = SealInputs { log: with_log.then(|| PathBuf::from(&config.seal.log_path)), public_keys: Vec::new() };
    check_with(&db.store, config, &inputs).await.expect("audit")
}

/// The examples of every failing check, as "check: example" lines.
fn failures(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.violations > 0)
        .flat_map(|c| c.examples.iter().map(|e| format!("{}: {e}", c.name)))
        .collect()
}

fn fails_naming(report: &Report, check: &str, record: &str) {
    let failing = failures(report);
    assert!(
        failing.iter().any(|f| f.starts_with(&format!("{check}: ")) && f.contains(record)),
        "expected {check} to name {record}; failures: {failing:#?}"
    );
}

pub(crate) async fn sql(store: &Store, statement: &str) {
    let mut tx = store.begin().await.unwrap();
    raw_execute(&mut tx, statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    tx.commit().await.unwrap();
}

/// What an attacker with the database's owner rights does first: switch off the guards.
pub(crate) async fn drop_guards(db: &TestDb, table: &str) {
    if db.is_postgres() {
        sql(&db.store, &format!("ALTER TABLE {table} DISABLE TRIGGER USER")).await;
        return;
    }
    let mut conn = db.store.reader().await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1")
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    drop(conn);
    for name in names {
        sql(&db.store, &format!("DROP TRIGGER {name}")).await;
    }
}

/// The tables whose sealed rows name their transaction's batch (migration 0008).
const SEALED_IN_BATCHES: [&str; 7] =
    ["order_events", "ledger_entries", "payments", "deliveries", "charges", "refunds", "notifications"];

/// The seals of the rows that name `batch_id`, as the audit gathers them.
async fn batch_seals(conn: &mut sqlx::AnyConnection, batch_id: &[u8]) -> Vec<String> {
    let mut seals = Vec::new();
    for table in SEALED_IN_BATCHES {
        let found: Vec<String> = sqlx::query_scalar(&format!("SELECT seal FROM {table} WHERE seal_batch = $1"))
            .bind(batch_id.to_vec())
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        seals.extend(found);
    }
    seals
}

pub(crate) async fn order_id(db: &TestDb, order_no: &str) -> String {
    let mut conn = db.store.reader().await.unwrap();
    sqlx::query_scalar("SELECT id FROM orders WHERE order_no = $1").bind(order_no).fetch_one(&mut *conn).await.unwrap()
}

both_engines! {
    /// Everything written through the API is sealed, checkpointed and exported; the audit
    /// passes against the database and the seal log, and a second export adds nothing.
    async fn a_populated_database_is_sealed_and_its_log_matches(db) {
        let (config, _) = populate(db).await;
        let report = audit(db, &config, true).await;
        assert!(report.passed(), "{}", zerodrop::audit::render(&report));
        for name in ["sealed_rows", "checkpoints_signed", "checkpoint_heads_match", "seal_log_matches", "sealing_keeps_up"] {
            assert!(report.checks.iter().any(|c| c.name == name), "{name} ran");
        }
        let mut conn = db.store.reader().await.unwrap();
        let stored = checkpoint::list(&mut conn, 0, 1_000).await.unwrap();
        let path = PathBuf::from(&config.seal.log_path);
        assert_eq!(log::read(&path).unwrap(), stored, "the log holds every checkpoint, in order");
        // Every sealed row names a batch that a checkpoint recorded.
        let mut recorded = std::collections::HashSet::new();
        for cp in &stored {
            recorded.extend(checkpoint::heads(&mut conn, cp.id).await.unwrap().into_iter().map(|h| h.0));
        }
        let mut batches = 0;
        for table in SEALED_IN_BATCHES {
            // The shared accounts' entries (written last, under their locks) name none:
            // their accounts' heads are checkpointed instead (below).
            let shared = match table {
                "ledger_entries" => " AND account_id NOT IN (SELECT id FROM ledger_accounts WHERE kind IN \
                                     ('issuance', 'compensation', 'loss'))",
                _ => "",
            };
            let unnamed: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE seal IS NOT NULL AND seal_batch IS NULL{shared}"
            ))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(unnamed, 0, "every sealed row of {table} names its batch");
            let named: Vec<Vec<u8>> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT seal_batch FROM {table} WHERE seal_batch IS NOT NULL"
            ))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            for id in named {
                assert!(recorded.contains(&batch::stream(&id)), "{table}'s batch {} is checkpointed", batch::stream(&id));
                batches += 1;
            }
        }
        assert!(batches > 10, "the checkpoints cover the record: {batches} batches");
        // Every shared account's entries are in no batch, and its chain's head is checkpointed.
        let shared: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, seal_seq FROM ledger_accounts WHERE kind IN ('issuance', 'compensation', 'loss') AND seal_seq > 0",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(!shared.is_empty(), "deliveries moved an issuance account");
        for (account, seq) in &shared {
            let batched: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE account_id = $1 AND seal_batch IS NOT NULL")
                .bind(account)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(batched, 0, "{account}'s entries name no batch");
            let last = checkpoint::heads(&mut conn, stored.last().unwrap().id).await.unwrap();
            let head = last.iter().find(|h| h.0 == format!("account:{account}")).unwrap_or_else(|| panic!("{account} head"));
            assert_eq!(head.1, *seq, "the last checkpoint holds {account}'s head");
        }
        drop(conn);
        assert_eq!(log::export(&db.store, &path).await.unwrap(), 0, "a second export adds nothing");
    }

}

both_engines! {
    /// The append-only tables refuse edits to what they record, on both engines.
    async fn the_guards_refuse_edits_of_sealed_facts(db) {
        let (_, paid) = populate(db).await;
        let id = order_id(db, &paid[0]).await;
        let refused = [
            format!("UPDATE payments SET amount_minor = 1 WHERE order_id = '{id}'"),
            format!("UPDATE deliveries SET detail = '{{}}' WHERE order_id = '{id}'"),
            format!("UPDATE order_events SET data = '{{}}' WHERE order_id = '{id}'"),
            format!("UPDATE orders SET amount_minor = 1 WHERE id = '{id}'"),
            format!("UPDATE charges SET amount_minor = 1 WHERE order_id = '{id}'"),
            "UPDATE refunds SET amount_minor = 1".to_owned(),
            "UPDATE notifications SET body = 'x'".to_owned(),
            "UPDATE ledger_transfers SET amount = 6000".to_owned(),
            "UPDATE ledger_entries SET amount = 6000".to_owned(),
            "UPDATE seal_checkpoints SET heads = '[]'".to_owned(),
            "DELETE FROM seal_checkpoints".to_owned(),
            "UPDATE membership_periods SET days = 3650".to_owned(),
        ];
        for statement in refused {
            let mut tx = db.store.begin().await.unwrap();
            let result = raw_execute(&mut tx, &statement).await;
            assert!(result.is_err(), "refused: {statement}");
        }
        // A state that moves with the record's life stays movable.
        sql(&db.store, &format!("UPDATE charges SET classified_at_ms = classified_at_ms WHERE order_id = '{id}'")).await;
    }

}

both_engines! {
    /// An event edited in place breaks its order's chain; the audit names the order.
    async fn an_edit_without_resealing_breaks_its_chain(db) {
        let (config, paid) = populate(db).await;
        let id = order_id(db, &paid[1]).await;
        drop_guards(db, "order_events").await;
        sql(&db.store, &format!(
            "UPDATE order_events SET data = '{{\"units\":6000}}' WHERE order_id = '{id}' AND kind = 'delivered'"
        )).await;
        let report = audit(db, &config, false).await;
        fails_naming(&report, "sealed_rows", &format!("order:{id}"));

        // An event that does not change the status, deleted and the sequence renumbered.
        let id = order_id(db, &paid[0]).await;
        let mut conn = db.store.reader().await.unwrap();
        let events: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, kind FROM order_events WHERE order_id = $1 ORDER BY seq")
                .bind(&id)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        drop(conn);
        let quiet = ["charge_recorded", "provider_queried", "delivery_attempted", "delivery_accepted"];
        // A quiet event when the order has one (queries are timing-dependent), else the second.
        let gone = events.iter().find(|(_, kind)| quiet.contains(&kind.as_str())).map_or(2, |(seq, _)| *seq);
        sql(&db.store, &format!("DELETE FROM order_events WHERE order_id = '{id}' AND seq = {gone}")).await;
        let last = events.last().unwrap().0;
        for seq in gone + 1..=last {
            sql(&db.store, &format!("UPDATE order_events SET seq = {} WHERE order_id = '{id}' AND seq = {seq}", seq - 1)).await;
        }
        drop_guards(db, "orders").await;
        sql(&db.store, &format!("UPDATE orders SET event_seq = {} WHERE id = '{id}'", last - 1)).await;
        let report = audit(db, &config, false).await;
        fails_naming(&report, "sealed_rows", &format!("order:{id}"));
    }

}

both_engines! {
    /// The attacker re-seals: the chains check out, the signed checkpoints do not. They
    /// then rewrite the database's checkpoints (the signature fails), and sign them with a
    /// key of their own (not trusted; and the exported log disagrees).
    async fn a_resealed_edit_is_caught_by_the_checkpoints_and_the_log(db) {
        let (config, paid) = populate(db).await;
        let id = order_id(db, &paid[2]).await;
        drop_guards(db, "payments").await;
        let mut conn = db.store.reader().await.unwrap();
        let p: (String, String, i64, String, Option<i64>, i64, String, i64) = sqlx::query_as(
            "SELECT provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late \
             FROM payments WHERE order_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        let forged = content::payment(&content::PaymentFacts {
            order_id: &id,
            provider: &p.0,
            trade_no: &p.1,
            amount_minor: p.2 * 100,
            currency: &p.3,
            paid_at_ms: p.4,
            recorded_at_ms: p.5,
            source: &p.6,
            late: p.7 != 0,
        });
        sql(&db.store, &format!(
            "UPDATE payments SET amount_minor = amount_minor * 100, seal = '{forged}' WHERE order_id = '{id}'"
        )).await;
        let report = audit(db, &config, false).await;
        let failing = failures(&report);
        assert!(!failing.iter().any(|f| f.starts_with("sealed_rows")), "the re-sealed row checks out alone: {failing:#?}");
        fails_naming(&report, "checkpoint_heads_match", &format!("payment:{id}"));

        // The checkpoints rewritten to the forged seal (the payment's batch's digest over
        // its rows as they are now): no longer the heads they signed.
        drop_guards(db, "seal_checkpoints").await;
        let mut conn = db.store.reader().await.unwrap();
        let batch_id: Vec<u8> = sqlx::query_scalar("SELECT seal_batch FROM payments WHERE order_id = $1")
            .bind(&id)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let stream = batch::stream(&batch_id);
        let seals = batch_seals(&mut conn, &batch_id).await;
        assert!(seals.contains(&forged), "the batch holds the forged seal: {seals:?}");
        let forged_digest = batch::digest(&batch_id, seals);
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, heads FROM seal_checkpoints ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        let mut rewritten = Vec::new();
        for (cp, text) in rows {
            let mut heads: Vec<Head> = serde_json::from_str(&text).unwrap();
            let mut touched = false;
            for head in heads.iter_mut().filter(|h| h.0 == stream) {
                head.2 = forged_digest.clone();
                touched = true;
            }
            if touched {
                let text = serde_json::to_string(&heads).unwrap();
                sql(&db.store, &format!("UPDATE seal_checkpoints SET heads = '{text}' WHERE id = {cp}")).await;
                rewritten.push((cp, heads));
            }
        }
        assert!(!rewritten.is_empty(), "the payment was in a checkpoint");
        let report = audit(db, &config, false).await;
        assert!(failures(&report).iter().all(|f| !f.starts_with("checkpoint_heads_match")), "{:#?}", failures(&report));
        fails_naming(&report, "checkpoints_signed", "stored heads are not the ones it signed");

        // Re-signed with the attacker's key, every checkpoint from the first touched on.
        let (theirs, _) = SealKey::generate().unwrap();
        let mut conn = db.store.reader().await.unwrap();
        let all = checkpoint::list(&mut conn, 0, 10_000).await.unwrap();
        let mut prev = all.iter().find(|c| c.id == rewritten[0].0 - 1).map(|c| c.hash.clone())
            .unwrap_or_else(|| zerodrop_store::seal::GENESIS.to_owned());
        for cp in all.iter().filter(|c| c.id >= rewritten[0].0) {
            let heads = checkpoint::heads(&mut conn, cp.id).await.unwrap();
            let root = checkpoint::heads_root(&heads);
            let message = checkpoint::Checkpoint::message(cp.id, cp.at_ms, &prev, &root, heads.len() as i64);
            let hash = sha256_hex(message.as_bytes());
            let signature = theirs.sign(message.as_bytes());
            sql(&db.store, &format!(
                "UPDATE seal_checkpoints SET prev_hash = '{prev}', heads_root = '{root}', hash = '{hash}', \
                 public_key = '{}', signature = '{signature}' WHERE id = {}", theirs.public_base64(), cp.id
            )).await;
            prev = hash;
        }
        drop(conn);
        let report = audit(db, &config, false).await;
        fails_naming(&report, "checkpoints_signed", "not signed by a trusted seal key");
        let report = audit(db, &config, true).await;
        fails_naming(&report, "seal_log_matches", "differs from the seal log's");
    }
}

both_engines! {
    /// One-row records are checkpointed through their transaction's batch. A payment, a
    /// charge and a refund, each re-sealed on a fresh copy, check out alone and fail the
    /// batch a signed checkpoint recorded, which names them; so does a charge moved out of
    /// its batch (named by the payment it was sealed with).
    async fn a_resealed_one_row_record_is_caught_by_its_batch(db) {
        let (config, paid) = populate(db).await;
        let id = order_id(db, &paid[0]).await;
        let mut conn = db.store.reader().await.unwrap();
        let p: (String, String, i64, String, Option<i64>, i64, String, i64) = sqlx::query_as(
            "SELECT provider, trade_no, amount_minor, currency, paid_at_ms, recorded_at_ms, source, late \
             FROM payments WHERE order_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let c: (String, String, String, i64, String, Option<i64>, String, i64) = sqlx::query_as(
            "SELECT provider, trade_no, order_no, amount_minor, currency, paid_at_ms, evidence, recorded_at_ms \
             FROM charges WHERE order_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        #[allow(clippy::type_complexity)]
        let r: (String, Option<String>, Option<i64>, String, i64, String, i64, String, String, i64) = sqlx::query_as(
            "SELECT id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason, \
                 created_at_ms FROM refunds ORDER BY id LIMIT 1",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        let payment = content::payment(&content::PaymentFacts {
            order_id: &id,
            provider: &p.0,
            trade_no: &p.1,
            amount_minor: p.2 * 100,
            currency: &p.3,
            paid_at_ms: p.4,
            recorded_at_ms: p.5,
            source: &p.6,
            late: p.7 != 0,
        });
        let charge = content::charge(&content::ChargeFacts {
            provider: &c.0,
            trade_no: &c.1,
            order_no: &c.2,
            amount_minor: c.3 * 100,
            currency: &c.4,
            paid_at_ms: c.5,
            evidence: &c.6,
            recorded_at_ms: c.7,
        });
        let refund = content::refund(&content::RefundFacts {
            id: &r.0,
            order_id: r.1.as_deref(),
            charge_id: r.2,
            request_no: &r.3,
            amount_minor: r.4 * 100,
            currency: &r.5,
            full: r.6 != 0,
            origin: &r.7,
            reason: &r.8,
            created_at_ms: r.9,
        });
        let (charge_where, refund_id) = (format!("provider = '{}' AND trade_no = '{}'", c.0, c.1), &r.0);
        let cases = [
            ("payments", format!(
                "UPDATE payments SET amount_minor = amount_minor * 100, seal = '{payment}' WHERE order_id = '{id}'"
            ), format!("payment:{id}")),
            ("charges", format!(
                "UPDATE charges SET amount_minor = amount_minor * 100, seal = '{charge}' WHERE {charge_where}"
            ), format!("charge:{}:{}", c.0, c.1)),
            ("refunds", format!(
                "UPDATE refunds SET amount_minor = amount_minor * 100, seal = '{refund}' WHERE id = '{refund_id}'"
            ), format!("refund:{refund_id}")),
            ("charges", format!("UPDATE charges SET seal_batch = NULL WHERE {charge_where}"), format!("payment:{id}")),
        ];
        for (table, statement, record) in cases {
            let copy = db.copy().await;
            drop_guards(&copy, table).await;
            sql(&copy.store, &statement).await;
            let report = audit(&copy, &config, false).await;
            let failing = failures(&report);
            assert!(!failing.iter().any(|f| f.starts_with("sealed_rows")), "{statement}: checks out alone: {failing:#?}");
            fails_naming(&report, "checkpoint_heads_match", &record);
            copy.finish().await;
        }
    }
}

/// `admin seal-key new` writes a key readable by its owner only and prints its public key;
/// `public` prints the same; a second `new` refuses to replace the key.
#[test]
fn the_seal_key_is_made_once_and_its_public_key_shown() {
    let dir = std::env::temp_dir().join(format!("zerodrop-seal-cli-{}", uuid::Uuid::new_v4().simple()));
    let key_file = dir.join("seal.key");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"))
            .args(args)
            .env("ZERODROP_SEAL__KEY_FILE", &key_file)
            .output()
            .expect("run zerodrop")
    };
    let made = run(&["admin", "seal-key", "new"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = String::from_utf8(made.stdout).unwrap();
    assert!(zerodrop_store::seal::key::is_public_key(&public), "{public}");
    let private = std::fs::read_to_string(&key_file).unwrap();
    assert!(!public.contains(private.trim()), "the private key is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let shown = run(&["admin", "seal-key", "public"]);
    assert!(shown.status.success());
    assert_eq!(String::from_utf8(shown.stdout).unwrap(), public);
    let again = run(&["admin", "seal-key", "new"]);
    assert!(!again.status.success(), "a second key never replaces the first");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already exists") && !said.contains(private.trim()), "{said}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), private);
    let _ = std::fs::remove_dir_all(&dir);
}
