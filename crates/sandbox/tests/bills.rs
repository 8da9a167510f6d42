//! The sandbox's bills, through the Alipay adapter as zerodrop fetches them: ask the
//! gateway for the day's URL, download, read, and find the sandbox's own books.

use std::collections::BTreeSet;
use std::path::PathBuf;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::bill::{open_bill, BillErrorCode, BillExpect, BillLine, BillLineKind, BillTotals};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::bill_download::{download_bill, download_client, BILL_DOWNLOAD_BYTES_MAX};
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_providers::{OrderRef, Provider, ProviderError, RefundRef, RefundStatus};
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::state::{Charge, Merchant};
use zerodrop_sandbox::Sandbox;

const SELLER: &str = "2088000000000001";
const APP_ID: &str = "2021000000000001";

struct Setup {
    sandbox: Sandbox,
    alipay: Alipay,
    base: String,
    dir: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap()
}

async fn start(name: &str) -> Setup {
    // Notifications are not what these tests are about: none are sent.
    let faults = Faults { drop_rate_pct: 100, ..Faults::none() };
    let sandbox = Sandbox::with_key(RsaPrivateKey::generate().unwrap(), faults).unwrap();
    let app_key = RsaPrivateKey::generate().unwrap();
    sandbox.add_merchant(Merchant {
        app_id: APP_ID.into(),
        seller_id: SELLER.into(),
        app_public_key: app_key.public_key(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sandbox.clone().serve(listener, std::future::pending()));
    let alipay = Alipay::new(AlipayConfig {
        name: "sandbox".into(),
        app_id: APP_ID.into(),
        seller_id: SELLER.into(),
        gateway_url: format!("{base}/gateway.do"),
        notify_url: "http://127.0.0.1:9/v1/providers/sandbox/notify".into(),
        app_private_key: app_key,
        alipay_public_key: sandbox.public_key(),
        timeout_ms: 5_000,
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("zerodrop-sandbox-bills-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Setup { sandbox, alipay, base, dir }
}

fn order(no: &str, minor: i64) -> OrderRef {
    OrderRef {
        order_no: no.into(),
        amount: Money::new(minor, Currency::Cny),
        subject: "60 钻石, a gem pack".into(),
        expires_at_ms: now_ms() + 15 * 60_000,
        trade_no: None,
    }
}

impl Setup {
    fn pay(&self, order: &OrderRef) -> Charge {
        let instructions = self.alipay.payment_instructions(order).unwrap();
        self.sandbox.pay(instructions["order_string"].as_str().unwrap()).unwrap()
    }

    async fn refund(&self, order: &OrderRef, charge: &Charge, request_no: &str, minor: i64) {
        let refund = RefundRef {
            order: order.clone(),
            trade_no: Some(charge.trade_no.clone()),
            request_no: request_no.into(),
            amount: Money::new(minor, Currency::Cny),
            reason: "test".into(),
        };
        assert_eq!(self.alipay.refund(&refund).await.unwrap(), RefundStatus::Succeeded);
    }

    /// The day's bill as zerodrop fetches it: the gateway's URL, then the download.
    async fn fetch(&self, date: &str) -> PathBuf {
        let url = self.alipay.bill_download_url(date).await.unwrap();
        assert!(url.starts_with(&format!("{}/sandbox/bills/", self.base)), "{url}");
        let path = self.dir.join(format!("{date}.zip"));
        let size = download_bill(&download_client().unwrap(), &url, &path, BILL_DOWNLOAD_BYTES_MAX).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        path
    }
}

fn read_bill(path: &std::path::Path) -> (Vec<BillLine>, BillTotals) {
    let mut reader = open_bill(path, &BillExpect { account: SELLER.into() }).unwrap();
    let mut lines = Vec::new();
    while let Some(line) = reader.next_line().unwrap() {
        lines.push(line);
    }
    (lines, reader.finish().unwrap())
}

fn day(ms: i64) -> String {
    format_cst(ms)[..10].to_owned()
}

/// A line reduced to what both sides know (bills keep whole seconds).
type Fact = (&'static str, String, String, String, i64, i64);

fn fact(line: &BillLine) -> Fact {
    let kind = line.kind.as_str();
    (kind, line.trade_no.clone(), line.order_no.clone(), line.refund_no.clone(), line.amount.minor, line.finished_at_ms)
}

fn seconds(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

#[tokio::test]
async fn the_bill_fetched_through_the_gateway_lists_the_sandboxs_books() {
    let s = start("books").await;
    let orders: Vec<OrderRef> = (1..=4).map(|i| order(&format!("ZDBILL{i:04}"), 600 * i)).collect();
    let charges: Vec<Charge> = orders.iter().map(|o| s.pay(o)).collect();
    s.refund(&orders[1], &charges[1], "RF-FULL", 1_200).await;
    s.refund(&orders[2], &charges[2], "RF-PART", 100).await;

    let mut expected: BTreeSet<Fact> = BTreeSet::new();
    for charge in s.sandbox.charges() {
        let paid = seconds(charge.paid_at_ms);
        expected.insert(("trade", charge.trade_no, charge.out_trade_no, String::new(), charge.amount_minor, paid));
    }
    for refund in s.sandbox.refunds() {
        let done = seconds(refund.requested_at_ms);
        expected.insert(("refund", refund.trade_no, refund.out_trade_no, refund.request_no, refund.amount_minor, done));
    }
    assert_eq!(expected.len(), 6);

    // The books may straddle midnight in China: fetch every day they touch.
    let days: BTreeSet<String> = expected.iter().map(|f| day(f.5)).collect();
    let mut found = BTreeSet::new();
    let mut totals = BillTotals::default();
    for date in &days {
        let (lines, day_totals) = read_bill(&s.fetch(date).await);
        for line in &lines {
            assert_eq!(day(line.finished_at_ms), *date);
            assert!(found.insert(fact(line)), "listed once");
        }
        totals.trade_count += day_totals.trade_count;
        totals.trade_total_minor += day_totals.trade_total_minor;
        totals.refund_count += day_totals.refund_count;
        totals.refund_total_minor += day_totals.refund_total_minor;
    }
    assert_eq!(found, expected);
    assert_eq!(
        totals,
        BillTotals { trade_count: 4, trade_total_minor: 6_000, refund_count: 2, refund_total_minor: 1_300 }
    );

    // The bill is the merchant's: read as another account's, it is refused.
    let path = s.fetch(&days.iter().next().cloned().unwrap()).await;
    let error = open_bill(&path, &BillExpect { account: "2088999999999999".into() }).err().unwrap();
    assert_eq!((error.code, error.line), (BillErrorCode::WrongAccount, 2));
}

#[tokio::test]
async fn days_without_a_bill_and_dead_urls_are_refused() {
    let s = start("refusals").await;
    let tomorrow = day(now_ms() + 2 * 86_400_000);
    match s.alipay.bill_download_url(&tomorrow).await {
        Err(ProviderError::Refused { sub_code, .. }) => assert_eq!(sub_code, "isp.bill_not_exist"),
        other => panic!("a future day has no bill: {other:?}"),
    }
    assert!(matches!(s.alipay.bill_download_url("2026-13-01").await, Err(ProviderError::Config(_))));
    assert!(matches!(s.alipay.bill_download_url("2026-11-28' OR 1").await, Err(ProviderError::Config(_))));

    // A day long past has an empty bill, which still reads (no lines, zero totals).
    let (lines, totals) = read_bill(&s.fetch("2020-01-01").await);
    assert!(lines.is_empty());
    assert_eq!(totals, BillTotals::default());

    // An unknown (or expired) token: nothing is written, not even a part file.
    let client = download_client().unwrap();
    let path = s.dir.join("dead.zip");
    let dead = format!("{}/sandbox/bills/{:032x}.zip", s.base, 7);
    let error = download_bill(&client, &dead, &path, BILL_DOWNLOAD_BYTES_MAX).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Transport(m) if m.contains("404") && !m.contains("sandbox/bills")),
        "{error}"
    );
    assert!(!path.exists() && !s.dir.join("dead.zip.part").exists());

    // A body over the limit is refused, and leaves nothing either.
    let url = s.alipay.bill_download_url("2020-01-01").await.unwrap();
    let error = download_bill(&client, &url, &path, 100).await.unwrap_err();
    assert!(matches!(error, ProviderError::BadResponse(_)), "{error}");
    assert!(!path.exists() && !s.dir.join("dead.zip.part").exists());
}

#[tokio::test]
async fn fault_knobs_leave_lines_out_or_change_their_amounts() {
    let s = start("knobs").await;
    let orders: Vec<OrderRef> = (1..=3).map(|i| order(&format!("ZDKNOB{i:04}"), 500)).collect();
    let charges: Vec<Charge> = orders.iter().map(|o| s.pay(o)).collect();
    s.sandbox.set_faults(Faults {
        drop_rate_pct: 100,
        bill_omit_trade_nos: vec![charges[0].trade_no.clone()],
        bill_add_minor: [(charges[1].trade_no.clone(), 1)].into_iter().collect(),
        ..Faults::none()
    });
    let date = day(charges[2].paid_at_ms);
    // The convenience route serves the same bill without the gateway.
    let zip = reqwest::get(format!("{}/sandbox/bill?date={date}", s.base)).await.unwrap().bytes().await.unwrap();
    let path = s.dir.join("knobs.zip");
    std::fs::write(&path, &zip).unwrap();
    let (lines, _) = read_bill(&path);
    let amounts: Vec<(String, i64)> = lines.iter().map(|l| (l.trade_no.clone(), l.amount.minor)).collect();
    let of = |charge: &Charge| amounts.iter().find(|(t, _)| *t == charge.trade_no).map(|(_, a)| *a);
    assert_eq!(of(&charges[0]), None, "left out");
    assert_eq!(of(&charges[1]), Some(501), "amount differs");
    assert_eq!(of(&charges[2]), Some(500));
    assert!(lines.iter().all(|l| l.kind == BillLineKind::Trade));
}
