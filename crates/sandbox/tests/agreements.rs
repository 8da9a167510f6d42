//! Withholding agreements end to end over loopback HTTP: the Alipay adapter hands out a
//! sign request, a simulated user signs it at the sandbox, the sandbox notifies a local
//! merchant endpoint, and the adapter verifies, queries, charges and unsigns through the
//! sandbox's gateway.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::bill::{open_bill, BillExpect};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::RsaPrivateKey;
use zerodrop_providers::{
    AgreementNotice, AgreementNoticeKind, AgreementRef, AgreementSignRef, AgreementStatus, NoticeStatus, OrderRef,
    PaymentStatus, Provider, ProviderError, RejectCode, UnsignOutcome,
};
use zerodrop_sandbox::agreements::SignError;
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::state::{AgreementState, Merchant};
use zerodrop_sandbox::Sandbox;

const SELLER: &str = "2088000000000001";
const APP_ID: &str = "2021000000000001";
/// How long a test waits for a notification before failing.
const WAIT_MS: u64 = 10_000;

/// One notification as the merchant's endpoint received it.
#[derive(Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn receive(State(inbox): State<Inbox>, uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> &'static str {
    inbox.lock().unwrap().push(Received { path: uri.path().to_owned(), headers, body: body.to_vec() });
    "success"
}

struct Setup {
    sandbox: Sandbox,
    alipay: Alipay,
    notify_base: String,
    inbox: Inbox,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap()
}

async fn start(faults: Faults) -> Setup {
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

    let inbox: Inbox = Arc::default();
    let merchant = Router::new().route("/{*path}", post(receive)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, merchant).await });

    let alipay = Alipay::new(AlipayConfig {
        name: "sandbox".into(),
        app_id: APP_ID.into(),
        seller_id: SELLER.into(),
        gateway_url: format!("{base}/gateway.do"),
        notify_url: format!("{notify_base}/trades"),
        app_private_key: app_key,
        alipay_public_key: sandbox.public_key(),
        timeout_ms: 5_000,
    })
    .unwrap();
    Setup { sandbox, alipay, notify_base, inbox }
}

impl Setup {
    fn sign_ref(&self, external_no: &str, single_minor: i64) -> AgreementSignRef {
        AgreementSignRef {
            external_agreement_no: external_no.into(),
            single_amount: Money::new(single_minor, Currency::Cny),
            total_amount: None,
            period_days: 30,
            first_charge_at_ms: now_ms() + 30 * 86_400_000,
            notify_url: Some(format!("{}/agreements", self.notify_base)),
        }
    }

    fn sign_request(&self, external_no: &str, single_minor: i64) -> String {
        let instructions = self.alipay.agreement_sign_instructions(&self.sign_ref(external_no, single_minor)).unwrap();
        instructions["sign_request"].as_str().unwrap().to_owned()
    }

    /// Waits for the `n`th notification (1-based) to `path`.
    async fn nth(&self, path: &str, n: usize) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            let found: Vec<Received> = self.inbox.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect();
            if let Some(received) = found.get(n - 1) {
                return received.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no notification #{n} to {path}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn count(&self, path: &str) -> usize {
        self.inbox.lock().unwrap().iter().filter(|r| r.path == path).count()
    }

    async fn agreement_notice(&self, n: usize) -> AgreementNotice {
        let received = self.nth("/agreements", n).await;
        self.alipay.verify_agreement_notification(&received.headers, &received.body).unwrap()
    }

    fn reference(&self, external_no: &str, agreement_no: &str) -> AgreementRef {
        AgreementRef { external_agreement_no: external_no.into(), agreement_no: Some(agreement_no.into()) }
    }
}

fn order(no: &str, minor: i64) -> OrderRef {
    OrderRef {
        order_no: no.into(),
        amount: Money::new(minor, Currency::Cny),
        subject: "月度会员 monthly membership".into(),
        expires_at_ms: now_ms() + 15 * 60_000,
        trade_no: None,
    }
}

fn quiet() -> Faults {
    Faults { retry_scale_pct: 1, ..Faults::none() }
}

#[tokio::test]
async fn sign_charge_unsign_and_the_charge_after_is_refused() {
    let s = start(quiet()).await;
    let request = s.sign_request("AGFLOW0001", 2_501);
    let agreement = s.sandbox.sign_agreement(&request).unwrap();
    assert_eq!(agreement.status, AgreementState::Normal);
    assert_eq!(s.sandbox.sign_agreement(&request).unwrap().agreement_no, agreement.agreement_no, "signing again");

    // The sign notification reaches the agreement's own URL, signed and readable.
    let notice = s.agreement_notice(1).await;
    assert_eq!(
        (notice.external_agreement_no.as_str(), notice.agreement_no.as_str()),
        ("AGFLOW0001", agreement.agreement_no.as_str())
    );
    let AgreementNoticeKind::Signed { signed_at_ms, valid_until_ms } = notice.kind else { panic!("{notice:?}") };
    assert!(valid_until_ms > signed_at_ms);

    // Query, by our number alone and by theirs.
    let ours = AgreementRef { external_agreement_no: "AGFLOW0001".into(), agreement_no: None };
    let status = s.alipay.query_agreement(&ours).await.unwrap();
    assert!(matches!(&status, AgreementStatus::Normal { agreement_no, .. } if *agreement_no == agreement.agreement_no));
    assert!(status.chargeable_at(now_ms()));
    let theirs = s.reference("AGFLOW0001", &agreement.agreement_no);
    assert_eq!(s.alipay.query_agreement(&theirs).await.unwrap(), status);

    // A charge: paid at once, exactly, notified as a trade, and in the day's bill.
    let renewal = order("ZDAGR0000001", 2_501);
    let paid = s.alipay.charge_agreement(&renewal, &agreement.agreement_no).await.unwrap();
    let PaymentStatus::Paid { trade_no, amount, .. } = paid else { panic!("{paid:?}") };
    assert_eq!(amount, Money::new(2_501, Currency::Cny));
    let trade_notice = s.nth("/trades", 1).await;
    let notice = s.alipay.verify_notification(&trade_notice.headers, &trade_notice.body).unwrap();
    assert_eq!((notice.order_no.as_str(), notice.trade_no.as_deref()), ("ZDAGR0000001", Some(trade_no.as_str())));
    assert!(matches!(notice.status, NoticeStatus::Paid { amount, .. } if amount.minor == 2_501));
    let charge = s.sandbox.charges().into_iter().find(|c| c.trade_no == trade_no).unwrap();
    assert_eq!(charge.amount_minor, 2_501);
    let day = format_cst(charge.paid_at_ms)[..10].to_owned();
    let path = std::env::temp_dir().join(format!("zerodrop-agreement-bill-{}.zip", std::process::id()));
    std::fs::write(&path, s.sandbox.bill_zip(SELLER, &day).unwrap()).unwrap();
    let mut bill = open_bill(&path, &BillExpect { account: SELLER.into() }).unwrap();
    let mut listed = false;
    while let Some(line) = bill.next_line().unwrap() {
        listed |= line.trade_no == trade_no && line.order_no == "ZDAGR0000001" && line.amount.minor == 2_501;
    }
    std::fs::remove_file(&path).ok();
    assert!(listed, "the charge is in the day's bill");

    // The same order number again is the same charge, never a second.
    let again = s.alipay.charge_agreement(&renewal, &agreement.agreement_no).await.unwrap();
    assert!(matches!(again, PaymentStatus::Paid { trade_no: ref t, .. } if *t == trade_no));
    assert_eq!(s.sandbox.charges().len(), 1);

    // Above the agreement's single limit: declined for good.
    match s.alipay.charge_agreement(&order("ZDAGR0000002", 2_502), &agreement.agreement_no).await {
        Err(ProviderError::Refused { sub_code, .. }) => assert_eq!(sub_code, "ACQ.BEYOND_PAY_RESTRICTION"),
        other => panic!("{other:?}"),
    }

    // The merchant unsigns: STOP, a notification, idempotent.
    assert_eq!(s.alipay.unsign_agreement(&theirs).await.unwrap(), UnsignOutcome::Unsigned);
    let notice = s.agreement_notice(2).await;
    assert!(matches!(notice.kind, AgreementNoticeKind::Unsigned { unsigned_at_ms } if unsigned_at_ms <= now_ms()));
    assert_eq!(s.alipay.unsign_agreement(&ours).await.unwrap(), UnsignOutcome::Unsigned, "again");
    let status = s.alipay.query_agreement(&theirs).await.unwrap();
    assert!(matches!(status, AgreementStatus::Stopped { .. }) && !status.chargeable_at(now_ms()));
    match s.alipay.charge_agreement(&order("ZDAGR0000003", 2_501), &agreement.agreement_no).await {
        Err(ProviderError::Refused { sub_code, .. }) => assert_eq!(sub_code, "ACQ.AGREEMENT_STATUS_NOT_NORMAL"),
        other => panic!("a charge after the unsign: {other:?}"),
    }
    assert_eq!(s.sandbox.sign_agreement(&request).unwrap_err(), SignError::Ended);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.count("/agreements"), 2, "one unsign notification, however often unsigned");
    assert_eq!(s.sandbox.charges().len(), 1);
}

#[tokio::test]
async fn the_user_unsigns_in_the_app() {
    let s = start(quiet()).await;
    let agreement = s.sandbox.sign_agreement(&s.sign_request("AGAPP0001", 1_000)).unwrap();
    s.agreement_notice(1).await;
    let ended = s.sandbox.user_unsign("AGAPP0001").unwrap();
    assert_eq!(ended.status, AgreementState::Stop);
    let notice = s.agreement_notice(2).await;
    assert_eq!(notice.agreement_no, agreement.agreement_no);
    let AgreementNoticeKind::Unsigned { unsigned_at_ms } = notice.kind else { panic!("{notice:?}") };
    assert_eq!(unsigned_at_ms / 1000, ended.unsigned_at_ms.unwrap() / 1000);
    let theirs = s.reference("AGAPP0001", &agreement.agreement_no);
    assert!(matches!(s.alipay.query_agreement(&theirs).await.unwrap(), AgreementStatus::Stopped { .. }));
    let refused = s.alipay.charge_agreement(&order("ZDAPP0000001", 1_000), &agreement.agreement_no).await;
    assert!(matches!(refused, Err(ProviderError::Refused { .. })), "{refused:?}");
    assert_eq!(s.sandbox.user_unsign("AGNONE").unwrap_err(), SignError::NotFound);
}

#[tokio::test]
async fn unknown_temp_and_foreign_agreements() {
    let s = start(quiet()).await;
    let nobody = AgreementRef { external_agreement_no: "AGNOBODY".into(), agreement_no: None };
    assert_eq!(s.alipay.query_agreement(&nobody).await.unwrap(), AgreementStatus::NotFound);
    assert_eq!(s.alipay.unsign_agreement(&nobody).await.unwrap(), UnsignOutcome::NotFound);
    match s.alipay.charge_agreement(&order("ZDUNK0000001", 100), "20261129700000000999").await {
        Err(ProviderError::Refused { sub_code, .. }) => assert_eq!(sub_code, "ACQ.AGREEMENT_NOT_EXIST"),
        other => panic!("{other:?}"),
    }

    // Opened, never confirmed: TEMP, nothing notified.
    let opened = s.sandbox.open_agreement(&s.sign_request("AGTEMP0001", 100)).unwrap();
    assert_eq!(opened.status, AgreementState::Temp);
    let temp = AgreementRef { external_agreement_no: "AGTEMP0001".into(), agreement_no: None };
    assert_eq!(s.alipay.query_agreement(&temp).await.unwrap(), AgreementStatus::Temp);

    // A sign request that does not verify is refused.
    let forged = s.sign_request("AGFORGED01", 100).replace("AGFORGED01", "AGFORGED02");
    assert_eq!(s.sandbox.sign_agreement(&forged).unwrap_err(), SignError::BadSignature);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.count("/agreements"), 0);
}

#[tokio::test]
async fn gbk_notifications_verify_and_faults_decline_or_delay_charges() {
    let faults = Faults { notify_in_gbk: true, agreement_decline_nos: vec!["AGPOOR0001".into()], ..quiet() };
    let s = start(faults.clone()).await;
    let poor = s.sandbox.sign_agreement(&s.sign_request("AGPOOR0001", 500)).unwrap();
    let received = s.nth("/agreements", 1).await;
    assert!(received.headers["content-type"].to_str().unwrap().contains("GBK"));
    assert!(std::str::from_utf8(&received.body).unwrap().contains("charset=GBK"));
    let notice = s.alipay.verify_agreement_notification(&received.headers, &received.body).unwrap();
    assert_eq!(notice.agreement_no, poor.agreement_no);

    match s.alipay.charge_agreement(&order("ZDPOOR000001", 500), &poor.agreement_no).await {
        Err(ProviderError::Refused { sub_code, .. }) => assert_eq!(sub_code, "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
        other => panic!("{other:?}"),
    }

    // Processing (10003), then paid later: the trade query and a notification say so.
    s.sandbox.set_faults(Faults { agreement_charge_processing_pct: 100, agreement_charge_settle_ms: 300, ..faults });
    let slow = s.sandbox.sign_agreement(&s.sign_request("AGSLOW0001", 500)).unwrap();
    let renewal = order("ZDSLOW000001", 500);
    assert_eq!(s.alipay.charge_agreement(&renewal, &slow.agreement_no).await.unwrap(), PaymentStatus::AwaitingPayment);
    assert_eq!(s.alipay.query_payment(&renewal).await.unwrap(), PaymentStatus::AwaitingPayment);
    let again = s.alipay.charge_agreement(&renewal, &slow.agreement_no).await.unwrap();
    assert_eq!(again, PaymentStatus::AwaitingPayment, "the same charge, still processing");
    assert!(s.sandbox.charges().is_empty(), "not charged until it settles");
    let received = s.nth("/trades", 1).await;
    let notice = s.alipay.verify_notification(&received.headers, &received.body).unwrap();
    assert_eq!(notice.order_no, "ZDSLOW000001");
    assert!(
        matches!(s.alipay.query_payment(&renewal).await.unwrap(), PaymentStatus::Paid { amount, .. } if amount.minor == 500)
    );
    assert_eq!(s.sandbox.charges().len(), 1);
    assert_eq!(s.sandbox.agreement("AGSLOW0001").unwrap().charged_minor, 500);
}

#[tokio::test]
async fn an_unknown_gateway_outcome_is_unknown_never_a_failure() {
    let s = start(quiet()).await;
    let agreement = s.sandbox.sign_agreement(&s.sign_request("AGUNK0001", 500)).unwrap();
    s.sandbox.set_faults(Faults { gateway_unknown_rate_pct: 100, ..quiet() });
    let theirs = s.reference("AGUNK0001", &agreement.agreement_no);
    assert!(matches!(s.alipay.query_agreement(&theirs).await, Err(ProviderError::Unknown(_))));
    assert!(matches!(s.alipay.unsign_agreement(&theirs).await, Err(ProviderError::Unknown(_))));
    let charged = s.alipay.charge_agreement(&order("ZDUNK0000002", 500), &agreement.agreement_no).await;
    assert!(matches!(charged, Err(ProviderError::Unknown(_))), "{charged:?}");
    assert!(s.sandbox.charges().is_empty());
}

#[tokio::test]
async fn agreements_expire_without_a_notification() {
    let s = start(Faults { agreement_valid_ms: 300, ..quiet() }).await;
    let agreement = s.sandbox.sign_agreement(&s.sign_request("AGEXP0001", 500)).unwrap();
    s.agreement_notice(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = s.alipay.query_agreement(&s.reference("AGEXP0001", &agreement.agreement_no)).await.unwrap();
    assert!(matches!(status, AgreementStatus::Normal { .. }), "still NORMAL at the provider");
    assert!(!status.chargeable_at(now_ms()), "but past its validity: the merchant expires it");
    let refused = s.alipay.charge_agreement(&order("ZDEXP0000001", 500), &agreement.agreement_no).await;
    assert!(matches!(refused, Err(ProviderError::Refused { .. })), "{refused:?}");
    assert_eq!(s.count("/agreements"), 1);
}

#[tokio::test]
async fn notifications_from_elsewhere_are_refused() {
    let s = start(quiet()).await;
    s.sandbox.sign_agreement(&s.sign_request("AGELSE0001", 500)).unwrap();
    let genuine = s.nth("/agreements", 1).await;
    // Another sandbox, another key: a forger's notification.
    let other = start(quiet()).await;
    let forged_request = other.sign_request("AGELSE0001", 500);
    other.sandbox.sign_agreement(&forged_request).unwrap();
    let forged = other.nth("/agreements", 1).await;
    let refused = s.alipay.verify_agreement_notification(&forged.headers, &forged.body).unwrap_err();
    assert_eq!((refused.code, refused.signed), (RejectCode::BadSignature, false));
    // A genuine agreement notification at the trade verifier.
    let refused = s.alipay.verify_notification(&genuine.headers, &genuine.body).unwrap_err();
    assert_eq!(refused.code, RejectCode::UnsupportedType);
}

#[tokio::test]
async fn agreement_notifications_take_the_notification_faults() {
    let s = start(Faults { duplicate_rate_pct: 100, delay_ms_min: 10, delay_ms_max: 80, ..quiet() }).await;
    let agreement = s.sandbox.sign_agreement(&s.sign_request("AGTWICE001", 500)).unwrap();
    let (first, second) = (s.agreement_notice(1).await, s.agreement_notice(2).await);
    assert_eq!(
        (first.agreement_no.as_str(), second.agreement_no.as_str()),
        (agreement.agreement_no.as_str(), agreement.agreement_no.as_str())
    );
    assert_eq!(s.sandbox.stats().notifications_duplicated, 1);

    s.sandbox.set_faults(Faults { drop_rate_pct: 100, ..quiet() });
    s.sandbox.user_unsign("AGTWICE001").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.count("/agreements"), 2, "the unsign notification was dropped");
    assert_eq!(s.sandbox.stats().notifications_dropped, 1);
    // Only the query tells the merchant now.
    let status = s.alipay.query_agreement(&s.reference("AGTWICE001", &agreement.agreement_no)).await.unwrap();
    assert!(matches!(status, AgreementStatus::Stopped { .. }));
}

#[tokio::test]
async fn users_sign_and_unsign_over_http() {
    let s = start(quiet()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(s.sandbox.clone().serve(listener, std::future::pending()));
    let http = reqwest::Client::new();
    let request = s.sign_request("AGHTTP0001", 500);

    let opened = http
        .post(format!("{base}/sandbox/agreements/sign"))
        .json(&serde_json::json!({ "sign_request": request, "confirm": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    assert_eq!(opened.json::<serde_json::Value>().await.unwrap()["status"], "Temp");

    let signed = http
        .post(format!("{base}/sandbox/agreements/sign"))
        .json(&serde_json::json!({ "sign_request": request }))
        .send()
        .await
        .unwrap();
    let signed: serde_json::Value = signed.json().await.unwrap();
    assert_eq!(signed["status"], "Normal");
    assert_eq!(s.agreement_notice(1).await.agreement_no, signed["agreement_no"].as_str().unwrap());

    let forged = http
        .post(format!("{base}/sandbox/agreements/sign"))
        .json(&serde_json::json!({ "sign_request": request.replace("AGHTTP0001", "AGHTTP0002") }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);

    let unsign = |no: &str| {
        http.post(format!("{base}/sandbox/agreements/unsign"))
            .json(&serde_json::json!({ "external_agreement_no": no }))
            .send()
    };
    let ended = unsign("AGHTTP0001").await.unwrap();
    assert_eq!(ended.json::<serde_json::Value>().await.unwrap()["status"], "Stop");
    assert_eq!(unsign("AGNOBODY").await.unwrap().status(), 404);
    assert!(matches!(s.agreement_notice(2).await.kind, AgreementNoticeKind::Unsigned { .. }));

    let listed: serde_json::Value =
        http.get(format!("{base}/sandbox/agreements")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
