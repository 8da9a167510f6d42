//! The Alipay adapter's withholding agreements: the sign request it hands out, the
//! `dut_user_sign` / `dut_user_unsign` notifications it verifies (and the ones it
//! refuses), and its reading of the gateway's answers about agreements and charges,
//! served by a one-shot local gateway that signs them as Alipay does.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::form;
use zerodrop_providers::alipay::sign::{response_key, signing_string};
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};
use zerodrop_providers::{
    AgreementNoticeKind, AgreementRef, AgreementSignRef, AgreementStatus, OrderRef, PaymentStatus, Provider,
    ProviderError, RejectCode, UnsignOutcome,
};

const APP_ID: &str = "2021000000000001";

fn vector(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/provider-vectors/alipay/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The key "Alipay" signs with in these tests (the SDK's app key pair, reused).
fn alipay_key() -> RsaPrivateKey {
    RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "gateway key").unwrap()
}

fn adapter(gateway_url: String, app_id: &str) -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: app_id.into(),
        seller_id: "2088000000000001".into(),
        gateway_url,
        notify_url: "http://127.0.0.1:9/v1/providers/alipay/notify".into(),
        app_private_key: RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "app key").unwrap(),
        alipay_public_key: RsaPublicKey::parse(&vector("nodejs-sdk_app-public-key.pem"), "alipay key").unwrap(),
        timeout_ms: 3_000,
    })
    .unwrap()
}

fn offline() -> Alipay {
    adapter("http://127.0.0.1:9/gateway.do".into(), APP_ID)
}

/// Serves one gateway call, answering `content` for `method` signed with [`alipay_key`].
/// Returns the gateway URL and the request's form fields once it came.
async fn gateway_answering(
    method: &'static str,
    content: Value,
) -> (String, tokio::sync::oneshot::Receiver<Vec<(String, String)>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gateway.do", listener.local_addr().unwrap());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        let body_at = loop {
            let n = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                if request.len() >= end + 4 + length || n == 0 {
                    break end + 4;
                }
            }
        };
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&request[body_at..]).unwrap();
        sender.send(fields).ok();
        let text = content.to_string();
        let sign = alipay_key().sign_sha256_base64(text.as_bytes()).unwrap();
        let body = format!("{{\"{}\":{text},\"sign\":{}}}", response_key(method), Value::String(sign));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.ok();
    });
    (url, receiver)
}

fn biz_of(fields: &[(String, String)]) -> Value {
    let biz = fields.iter().find(|(k, _)| k == "biz_content").map(|(_, v)| v.as_str()).unwrap();
    serde_json::from_str(biz).unwrap()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn order() -> OrderRef {
    OrderRef {
        order_no: "ZD0000000000AB".into(),
        amount: Money::new(2501, Currency::Cny),
        subject: "月度会员 monthly".into(),
        expires_at_ms: 1_900_000_000_000,
        trade_no: None,
    }
}

fn ours() -> AgreementRef {
    AgreementRef { external_agreement_no: "AG0000000001".into(), agreement_no: Some("20261129700000000001".into()) }
}

#[test]
fn the_sign_request_is_signed_and_states_the_period_rule_exactly() {
    let alipay = offline();
    let sign = AgreementSignRef {
        external_agreement_no: "AG0000000001".into(),
        single_amount: Money::new(2501, Currency::Cny),
        total_amount: Some(Money::new(30_012, Currency::Cny)),
        period_days: 30,
        // 2019-08-15 15:56:24 CST.
        first_charge_at_ms: 1_565_855_784_000,
        notify_url: Some("https://zerodrop.example/v1/providers/alipay/agreements/notify".into()),
    };
    let instructions = alipay.agreement_sign_instructions(&sign).unwrap();
    assert_eq!(instructions["method"], "alipay.user.agreement.page.sign");
    let request = instructions["sign_request"].as_str().unwrap();
    assert!(instructions["sign_url"].as_str().unwrap().ends_with(request));
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(request).unwrap();
    assert_eq!(field(&fields, "notify_url"), sign.notify_url.as_deref());
    let message = signing_string(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
    let app_public = RsaPublicKey::parse(&vector("nodejs-sdk_app-public-key.pem"), "app").unwrap();
    assert!(app_public.verify_sha256_base64(message.as_bytes(), field(&fields, "sign").unwrap()));
    let biz = biz_of(&fields);
    assert_eq!(biz["personal_product_code"], "CYCLE_PAY_AUTH_P");
    assert_eq!(biz["external_agreement_no"], "AG0000000001");
    assert_eq!(biz["access_params"]["channel"], "ALIPAYAPP");
    let rule = &biz["period_rule_params"];
    assert_eq!((rule["period_type"].as_str(), rule["period"].as_u64()), (Some("DAY"), Some(30)));
    assert_eq!(rule["execute_time"], "2019-08-15");
    assert_eq!((rule["single_amount"].as_str(), rule["total_amount"].as_str()), (Some("25.01"), Some("300.12")));

    // Without a URL of its own, the agreement is notified where trades are.
    let shared = alipay.agreement_sign_instructions(&AgreementSignRef { notify_url: None, ..sign.clone() }).unwrap();
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(shared["sign_request"].as_str().unwrap()).unwrap();
    assert_eq!(field(&fields, "notify_url"), Some("http://127.0.0.1:9/v1/providers/alipay/notify"));

    for bad in [
        AgreementSignRef { period_days: 6, ..sign.clone() },
        AgreementSignRef { single_amount: Money::new(0, Currency::Cny), ..sign.clone() },
        AgreementSignRef { total_amount: Some(Money::new(-1, Currency::Cny)), ..sign.clone() },
    ] {
        assert!(matches!(alipay.agreement_sign_instructions(&bad), Err(ProviderError::Config(_))), "{bad:?}");
    }
}

/// A `dut_user_sign` notification's fields, as Alipay sends them.
fn sign_notice() -> Vec<(&'static str, String)> {
    vec![
        ("notify_time", "2026-11-29 20:00:01".into()),
        ("notify_type", "dut_user_sign".into()),
        ("notify_id", "N0001".into()),
        ("app_id", APP_ID.into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("status", "NORMAL".into()),
        ("agreement_no", "20261129700000000001".into()),
        ("external_agreement_no", "AG0000000001".into()),
        ("personal_product_code", "CYCLE_PAY_AUTH_P".into()),
        ("alipay_user_id", "2088102177846880".into()),
        ("sign_time", "2019-08-15 15:56:24".into()),
        ("valid_time", "2019-08-15 15:56:24".into()),
        ("invalid_time", "2115-02-01 00:00:00".into()),
    ]
}

fn unsign_notice() -> Vec<(&'static str, String)> {
    let mut fields = sign_notice();
    for (k, v) in fields.iter_mut() {
        match *k {
            "notify_type" => *v = "dut_user_unsign".into(),
            "status" => *v = "UNSIGN".into(),
            _ => {}
        }
    }
    fields.push(("unsign_time", "2019-08-16 15:56:24".into()));
    fields
}

/// Signs as Alipay signs notifications (without `sign_type`, over the bytes in the
/// body's charset) and encodes the form.
fn signed(key: &RsaPrivateKey, mut fields: Vec<(&'static str, String)>, gbk: bool) -> Vec<u8> {
    let message = signing_string(fields.iter().map(|(k, v)| (*k, v.as_str())), false);
    let bytes = if gbk { encoding_rs::GBK.encode(&message).0.into_owned() } else { message.into_bytes() };
    fields.push(("sign", key.sign_sha256_base64(&bytes).unwrap()));
    form::encode(&fields, gbk).into_bytes()
}

#[test]
fn sign_and_unsign_notifications_verify_and_read() {
    let alipay = offline();
    let headers = http::HeaderMap::new();
    let notice = alipay.verify_agreement_notification(&headers, &signed(&alipay_key(), sign_notice(), false)).unwrap();
    assert_eq!(notice.notify_id.as_deref(), Some("N0001"));
    assert_eq!(
        (notice.external_agreement_no.as_str(), notice.agreement_no.as_str()),
        ("AG0000000001", "20261129700000000001")
    );
    let AgreementNoticeKind::Signed { signed_at_ms, valid_until_ms } = notice.kind else { panic!("{notice:?}") };
    assert_eq!(signed_at_ms, 1_565_855_784_000);
    assert!(valid_until_ms > 4_000_000_000_000, "a century away");

    let notice =
        alipay.verify_agreement_notification(&headers, &signed(&alipay_key(), unsign_notice(), false)).unwrap();
    assert_eq!(notice.kind, AgreementNoticeKind::Unsigned { unsigned_at_ms: 1_565_855_784_000 + 86_400_000 });

    // GBK, with Chinese text the signature covers in GBK bytes.
    let mut gbk = sign_notice();
    gbk.iter_mut().find(|(k, _)| *k == "charset").unwrap().1 = "GBK".into();
    gbk.push(("memo", "自动续费会员".into()));
    let body = signed(&alipay_key(), gbk, true);
    assert!(std::str::from_utf8(&body).unwrap().contains("%D7%D4"), "GBK bytes of 自");
    assert!(alipay.verify_agreement_notification(&headers, &body).is_ok());
}

#[test]
fn forged_unsigned_foreign_and_misdirected_notifications_are_refused() {
    let alipay = offline();
    let headers = http::HeaderMap::new();
    let code = |body: &[u8]| alipay.verify_agreement_notification(&headers, body).unwrap_err();

    // Forged: signed with a key nobody trusts.
    let stranger = RsaPrivateKey::generate().unwrap();
    let forged = code(&signed(&stranger, sign_notice(), false));
    assert_eq!((forged.code, forged.signed), (RejectCode::BadSignature, false));

    let mut tampered = String::from_utf8(signed(&alipay_key(), unsign_notice(), false)).unwrap();
    tampered = tampered.replace("AG0000000001", "AG0000000002");
    assert_eq!(code(tampered.as_bytes()).code, RejectCode::BadSignature);

    let unsigned = form::encode(&sign_notice(), false);
    assert_eq!(code(unsigned.as_bytes()).code, RejectCode::MissingSignature);

    let mut foreign = sign_notice();
    foreign.iter_mut().find(|(k, _)| *k == "app_id").unwrap().1 = "2021999999999999".into();
    let wrong_app = code(&signed(&alipay_key(), foreign, false));
    assert_eq!((wrong_app.code, wrong_app.signed), (RejectCode::WrongApp, true));

    let mut mixed = sign_notice();
    mixed.iter_mut().find(|(k, _)| *k == "status").unwrap().1 = "UNSIGN".into();
    assert_eq!(code(&signed(&alipay_key(), mixed, false)).code, RejectCode::Malformed);

    let mut no_time = sign_notice();
    no_time.retain(|(k, _)| *k != "invalid_time");
    assert_eq!(code(&signed(&alipay_key(), no_time, false)).code, RejectCode::Malformed);

    // A genuine trade notification is not an agreement's, and the other way round.
    let trade = vec![
        ("notify_type", "trade_status_sync".to_owned()),
        ("notify_id", "N0002".into()),
        ("app_id", APP_ID.into()),
        ("seller_id", "2088000000000001".into()),
        ("out_trade_no", "ZD0000000000AB".into()),
        ("trade_no", "2026112922001400000000000001".into()),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", "25.01".into()),
    ];
    let trade_body = signed(&alipay_key(), trade, false);
    assert!(alipay.verify_notification(&headers, &trade_body).is_ok(), "the control: a genuine trade notification");
    let refused = code(&trade_body);
    assert_eq!((refused.code, refused.signed), (RejectCode::UnsupportedType, true));
    let refused = alipay.verify_notification(&headers, &signed(&alipay_key(), sign_notice(), false)).unwrap_err();
    assert_eq!((refused.code, refused.signed), (RejectCode::UnsupportedType, true));
}

#[tokio::test]
async fn a_charge_paid_at_once_is_read_exactly_and_names_the_agreement() {
    let answer = json!({
        "code": "10000", "msg": "Success", "trade_no": "2026112922001400000000000001",
        "out_trade_no": "ZD0000000000AB", "total_amount": "25.01", "gmt_payment": "2019-08-15 15:56:24",
    });
    let (url, request) = gateway_answering("alipay.trade.pay", answer).await;
    let alipay = adapter(url, APP_ID);
    let status = alipay.charge_agreement(&order(), "20261129700000000001").await.unwrap();
    let PaymentStatus::Paid { trade_no, amount, paid_at_ms, answer } = status else { panic!("{status:?}") };
    assert_eq!(
        (trade_no.as_str(), amount, paid_at_ms),
        ("2026112922001400000000000001", Money::new(2501, Currency::Cny), Some(1_565_855_784_000))
    );
    // The signed answer is the payment's evidence, and verifies again later.
    let answer = answer.unwrap();
    let (order_no, replayed) = alipay.verify_answer(&answer).unwrap();
    assert_eq!(order_no, "ZD0000000000AB");
    assert!(matches!(replayed, PaymentStatus::Paid { amount, .. } if amount.minor == 2501));

    let request = request.await.unwrap();
    let biz = biz_of(&request);
    assert_eq!(biz["product_code"], "GENERAL_WITHHOLDING");
    assert_eq!(biz["agreement_params"]["agreement_no"], "20261129700000000001");
    assert_eq!(biz["total_amount"], "25.01");
    assert_eq!(field(&request, "notify_url"), Some("http://127.0.0.1:9/v1/providers/alipay/notify"));
}

#[tokio::test]
async fn charge_answers_map_to_processing_declined_and_unknown() {
    let processing = json!({"code": "10003", "msg": "order success pay inprocess", "out_trade_no": "ZD0000000000AB"});
    let (url, _) = gateway_answering("alipay.trade.pay", processing).await;
    assert_eq!(adapter(url, APP_ID).charge_agreement(&order(), "A1").await.unwrap(), PaymentStatus::AwaitingPayment);

    for sub_code in ["ACQ.BUYER_BALANCE_NOT_ENOUGH", "ACQ.AGREEMENT_NOT_EXIST", "ACQ.AGREEMENT_STATUS_NOT_NORMAL"] {
        let declined = json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x"});
        let (url, _) = gateway_answering("alipay.trade.pay", declined).await;
        match adapter(url, APP_ID).charge_agreement(&order(), "A1").await {
            Err(ProviderError::Refused { sub_code: got, .. }) => assert_eq!(got, sub_code),
            other => panic!("{sub_code}: {other:?}"),
        }
    }

    let unknown = [
        json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"}),
        json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR"}),
    ];
    for answer in unknown {
        let (url, _) = gateway_answering("alipay.trade.pay", answer.clone()).await;
        let outcome = adapter(url, APP_ID).charge_agreement(&order(), "A1").await;
        assert!(matches!(outcome, Err(ProviderError::Unknown(_))), "{answer}: {outcome:?}");
    }
    assert!(matches!(offline().charge_agreement(&order(), "").await, Err(ProviderError::Config(_))));
}

#[tokio::test]
async fn agreement_queries_read_every_status_and_refuse_another_agreement() {
    let normal = json!({
        "code": "10000", "msg": "Success", "status": "NORMAL", "agreement_no": "20261129700000000001",
        "external_agreement_no": "AG0000000001", "sign_time": "2019-08-15 15:56:24",
        "valid_time": "2019-08-15 15:56:24", "invalid_time": "2115-02-01 00:00:00",
    });
    let (url, request) = gateway_answering("alipay.user.agreement.query", normal.clone()).await;
    let status = adapter(url, APP_ID).query_agreement(&ours()).await.unwrap();
    let AgreementStatus::Normal { ref agreement_no, signed_at_ms, valid_until_ms } = status else {
        panic!("{status:?}")
    };
    assert_eq!((agreement_no.as_str(), signed_at_ms), ("20261129700000000001", 1_565_855_784_000));
    assert!(status.chargeable_at(signed_at_ms) && !status.chargeable_at(valid_until_ms), "expired at invalid_time");
    let biz = biz_of(&request.await.unwrap());
    assert_eq!(
        (biz["personal_product_code"].as_str(), biz["agreement_no"].as_str()),
        (Some("CYCLE_PAY_AUTH_P"), Some("20261129700000000001"))
    );

    let answers = [
        (json!({"code": "10000", "status": "TEMP", "external_agreement_no": "AG0000000001"}), AgreementStatus::Temp),
        (
            json!({"code": "10000", "status": "STOP", "agreement_no": "20261129700000000001"}),
            AgreementStatus::Stopped { at_ms: None },
        ),
        (json!({"code": "40004", "sub_code": "USER_AGREEMENT_NOT_EXIST"}), AgreementStatus::NotFound),
    ];
    for (answer, expected) in answers {
        let (url, _) = gateway_answering("alipay.user.agreement.query", answer).await;
        assert_eq!(adapter(url, APP_ID).query_agreement(&ours()).await.unwrap(), expected);
    }

    let mut other = normal;
    other["external_agreement_no"] = json!("AG0000000002");
    let (url, _) = gateway_answering("alipay.user.agreement.query", other).await;
    assert!(matches!(adapter(url, APP_ID).query_agreement(&ours()).await, Err(ProviderError::BadResponse(_))));

    let (url, _) = gateway_answering("alipay.user.agreement.query", json!({"code": "20000"})).await;
    assert!(matches!(adapter(url, APP_ID).query_agreement(&ours()).await, Err(ProviderError::Unknown(_))));
}

#[tokio::test]
async fn unsign_answers_map_to_outcomes() {
    let (url, request) =
        gateway_answering("alipay.user.agreement.unsign", json!({"code": "10000", "msg": "Success"})).await;
    let by_ours = AgreementRef { agreement_no: None, ..ours() };
    assert_eq!(adapter(url, APP_ID).unsign_agreement(&by_ours).await.unwrap(), UnsignOutcome::Unsigned);
    let biz = biz_of(&request.await.unwrap());
    assert_eq!(biz["external_agreement_no"], "AG0000000001");
    assert!(biz.get("agreement_no").is_none());

    let missing = json!({"code": "40004", "sub_code": "USER_AGREEMENT_NOT_EXIST"});
    let (url, _) = gateway_answering("alipay.user.agreement.unsign", missing).await;
    assert_eq!(adapter(url, APP_ID).unsign_agreement(&ours()).await.unwrap(), UnsignOutcome::NotFound);

    let (url, _) = gateway_answering("alipay.user.agreement.unsign", json!({"code": "20000"})).await;
    assert!(matches!(adapter(url, APP_ID).unsign_agreement(&ours()).await, Err(ProviderError::Unknown(_))));
}
