//! The Alipay adapter against Alipay's published test vectors
//! (tests/fixtures/provider-vectors/alipay, copied from the providers' SDK test suites).

use serde_json::Value;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::sign::{signing_string, split_response};
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};
use zerodrop_providers::{NoticeStatus, Provider, RejectCode};

fn vector(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/provider-vectors/alipay/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn form_params(file: &str) -> Vec<(String, String)> {
    let json: serde_json::Map<String, Value> = serde_json::from_str(&vector(file)).unwrap();
    json.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_owned())).collect()
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    serde_urlencoded::to_string(params).unwrap().into_bytes()
}

fn adapter(public_key_file: &str, app_id: &str, seller_id: &str) -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: app_id.into(),
        seller_id: seller_id.into(),
        gateway_url: "http://127.0.0.1:9/gateway.do".into(),
        notify_url: "http://127.0.0.1:9/v1/providers/alipay/notify".into(),
        app_private_key: RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "app key").unwrap(),
        alipay_public_key: RsaPublicKey::parse(&vector(public_key_file), "alipay key").unwrap(),
        timeout_ms: 1_000,
    })
    .unwrap()
}

fn pairs(params: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

const V1_KEY: &str = "nodejs-sdk_inline_notify_public_key_v1.pem";
const V2_KEY: &str = "nodejs-sdk_alipay-notify-sign-public-key-v2.pem";

#[test]
fn trade_status_sync_signing_string_matches_the_vector() {
    let params = form_params("trade_status_sync_notify.json");
    assert_eq!(
        signing_string(pairs(&params), false),
        vector("trade_status_sync_signing_string.txt").trim_end_matches('\n')
    );
}

#[test]
fn trade_status_sync_verifies_and_reads_the_payment() {
    let params = form_params("trade_status_sync_notify.json");
    let alipay = adapter(V1_KEY, "2019073166072302", "2088531891668739");
    let notice = alipay.verify_notification(&http::HeaderMap::new(), &form_body(&params)).unwrap();
    assert_eq!(notice.order_no, "20190815155618536-564-57");
    assert_eq!(notice.trade_no.as_deref(), Some("2019081522001468450512505578"));
    assert_eq!(notice.notify_id.as_deref(), Some("2019081500222155624068450559358070"));
    // 0.10 CNY is exactly 10 fen; gmt_payment 15:56:24 in China is 07:56:24 UTC.
    assert_eq!(
        notice.status,
        NoticeStatus::Paid { amount: Money::new(10, Currency::Cny), paid_at_ms: Some(1_565_855_784_000) }
    );
}

#[test]
fn trade_status_sync_negative_cases_are_refused() {
    let params = form_params("trade_status_sync_notify.json");
    let key = RsaPublicKey::parse(&vector(V1_KEY), "k").unwrap();
    let sign = params.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
    // Keeping sign_type in the signed string is the wrong rule for this type.
    assert!(!key.verify_sha256_base64(signing_string(pairs(&params), true).as_bytes(), &sign));

    let headers = http::HeaderMap::new();
    let other_key = adapter(V2_KEY, "2019073166072302", "2088531891668739");
    assert_eq!(
        other_key.verify_notification(&headers, &form_body(&params)).unwrap_err().code,
        RejectCode::BadSignature
    );

    let alipay = adapter(V1_KEY, "2019073166072302", "2088531891668739");
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "total_amount").unwrap().1 = "100.00".into();
    let rejection = alipay.verify_notification(&headers, &form_body(&tampered)).unwrap_err();
    assert_eq!(rejection.code, RejectCode::BadSignature);
    assert_eq!(rejection.order_no.as_deref(), Some("20190815155618536-564-57"));

    let unsigned: Vec<_> = params.iter().filter(|(k, _)| k != "sign").cloned().collect();
    assert_eq!(
        alipay.verify_notification(&headers, &form_body(&unsigned)).unwrap_err().code,
        RejectCode::MissingSignature
    );

    let wrong_app = adapter(V1_KEY, "2021000000000000", "2088531891668739");
    assert_eq!(wrong_app.verify_notification(&headers, &form_body(&params)).unwrap_err().code, RejectCode::WrongApp);
    let wrong_seller = adapter(V1_KEY, "2019073166072302", "2088000000000000");
    assert_eq!(
        wrong_seller.verify_notification(&headers, &form_body(&params)).unwrap_err().code,
        RejectCode::WrongSeller
    );

    for junk in [&b"%%%"[..], b"a=1&a=2", b"", b"\xff\xfe"] {
        let code = alipay.verify_notification(&headers, junk).unwrap_err().code;
        assert!(matches!(code, RejectCode::Malformed | RejectCode::MissingSignature), "{junk:?} -> {code:?}");
    }
}

#[test]
fn servicemarket_notification_signs_sign_type() {
    let params = form_params("servicemarket_order_notify.json");
    let expected = vector("servicemarket_notify_signing_string_keep_sign_type.txt");
    assert_eq!(signing_string(pairs(&params), true), expected.trim_end_matches('\n'));
    let key = RsaPublicKey::parse(&vector(V2_KEY), "k").unwrap();
    let sign = params.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
    assert!(key.verify_sha256_base64(signing_string(pairs(&params), true).as_bytes(), &sign));
    assert!(!key.verify_sha256_base64(signing_string(pairs(&params), false).as_bytes(), &sign), "excluding sign_type");

    // Through the adapter: the signature passes (so the type is what is refused) …
    let alipay = adapter(V2_KEY, "2017122801303261", "2088721996721370");
    let headers = http::HeaderMap::new();
    assert_eq!(
        alipay.verify_notification(&headers, &form_body(&params)).unwrap_err().code,
        RejectCode::UnsupportedType
    );
    // … and the upstream "verify fail" case (service_code changed) is a bad signature.
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "service_code").unwrap().1 = "58621634111".into();
    assert_eq!(alipay.verify_notification(&headers, &form_body(&tampered)).unwrap_err().code, RejectCode::BadSignature);
}

#[test]
fn gateway_response_signature_covers_the_raw_response_text() {
    let index: Value = serde_json::from_str(&vector("alipay_vectors.json")).unwrap();
    let case = &index["vectors"][2];
    let raw_response = case["raw_response"].as_str().unwrap();
    let split = split_response(raw_response, "alipay.open.file.upload").unwrap();
    assert_eq!(split.content, case["signed_content"].as_str());
    let key = RsaPublicKey::parse(&vector("nodejs-sdk_alipay-public-key.pem"), "k").unwrap();
    assert!(key.verify_sha256_base64(split.content.unwrap().as_bytes(), split.sign.as_deref().unwrap()));
    // Re-serialising the content changes the bytes and breaks the signature: never do that.
    let reserialised = serde_json::to_string(&serde_json::from_str::<Value>(split.content.unwrap()).unwrap()).unwrap();
    let reordered = reserialised.replace("\"code\":\"10000\",", "").replace('}', ",\"code\":\"10000\"}");
    assert!(!key.verify_sha256_base64(reordered.as_bytes(), split.sign.as_deref().unwrap()));
}

#[test]
fn app_key_pair_signs_requests_deterministically() {
    let private = RsaPrivateKey::parse(&vector("nodejs-sdk_app-private-key.pem"), "k").unwrap();
    let public = RsaPublicKey::parse(&vector("nodejs-sdk_app-public-key.pem"), "k").unwrap();
    let message = b"app_id=2021&biz_content={}&method=alipay.trade.query";
    let first = private.sign_sha256_base64(message).unwrap();
    assert_eq!(first, private.sign_sha256_base64(message).unwrap(), "PKCS#1 v1.5 is deterministic");
    assert!(public.verify_sha256_base64(message, &first));
}

#[test]
fn payment_instructions_are_a_signed_app_pay_order_string() {
    let alipay = adapter(V1_KEY, "2019073166072302", "2088531891668739");
    let order = zerodrop_providers::OrderRef {
        order_no: "ZD0000000000AB".into(),
        amount: Money::new(990, Currency::Cny),
        subject: "60 钻石".into(),
        expires_at_ms: 1_565_855_784_000,
        trade_no: None,
    };
    let instructions = alipay.payment_instructions(&order).unwrap();
    let order_string = instructions["order_string"].as_str().unwrap();
    let params: Vec<(String, String)> = serde_urlencoded::from_str(order_string).unwrap();
    let biz: Value = serde_json::from_str(&params.iter().find(|(k, _)| k == "biz_content").unwrap().1).unwrap();
    assert_eq!(biz["total_amount"], "9.90");
    assert_eq!(biz["time_expire"], "2019-08-15 15:56:24");
    let public = RsaPublicKey::parse(&vector("nodejs-sdk_app-public-key.pem"), "k").unwrap();
    let sign = &params.iter().find(|(k, _)| k == "sign").unwrap().1;
    assert!(public.verify_sha256_base64(signing_string(pairs(&params), true).as_bytes(), sign));
}

/// A `trade_status_sync` notification sent with `charset=GBK`: the form's bytes are GBK
/// (a Chinese subject and body) and the signature covers the GBK bytes of the signing
/// string. Made outside zerodrop (Python's gbk codec and `openssl dgst -sha256 -sign`)
/// with the SDK's app key standing in for Alipay's; see the fixtures' README.
const GBK_BODY: &str = "DERIVED_gbk_trade_status_sync_body.txt";

fn gbk_adapter() -> Alipay {
    adapter("nodejs-sdk_app-public-key.pem", "2021000000000001", "2088000000000001")
}

#[test]
fn a_gbk_notification_verifies_over_its_gbk_bytes_and_reads_in_chinese() {
    let body = vector(GBK_BODY);
    assert!(body.contains("charset=GBK") && body.contains("%D7%EA%CA%AF"), "the body is GBK: 钻石 is D7EA CAAF");
    let notice = gbk_adapter().verify_notification(&http::HeaderMap::new(), body.trim_end().as_bytes()).unwrap();
    assert_eq!(notice.order_no, "ZD3K7Q9W2M4X8P");
    assert_eq!(notice.trade_no.as_deref(), Some("2026112222001400000000000001"));
    assert!(matches!(notice.status, NoticeStatus::Paid { amount, .. } if amount == Money::new(600, Currency::Cny)));
    let form = zerodrop_providers::alipay::form::Form::parse(body.trim_end().as_bytes(), None).unwrap();
    let subject = form.fields.iter().find(|(k, _)| k == "subject").unwrap();
    assert_eq!(subject.1, "60 钻石 / 60 diamonds");
}

#[test]
fn a_gbk_notification_read_or_re_encoded_as_utf8_is_refused() {
    let body = vector(GBK_BODY).trim_end().to_owned();
    let headers = http::HeaderMap::new();
    // Declared UTF-8, the GBK bytes are not text: refused as malformed, not misread.
    let relabelled = body.replace("charset=GBK", "charset=utf-8");
    let refused = gbk_adapter().verify_notification(&headers, relabelled.as_bytes()).unwrap_err();
    assert_eq!(refused.code, RejectCode::Malformed);
    // The same text sent as UTF-8 with the same signature: the signed bytes differ.
    let form = zerodrop_providers::alipay::form::Form::parse(body.as_bytes(), None).unwrap();
    let fields: Vec<(&str, String)> = form
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), if k == "charset" { "utf-8".to_owned() } else { v.clone() }))
        .collect();
    let as_utf8 = zerodrop_providers::alipay::form::encode(&fields, false);
    let refused = gbk_adapter().verify_notification(&headers, as_utf8.as_bytes()).unwrap_err();
    assert_eq!(refused.code, RejectCode::BadSignature);
}
