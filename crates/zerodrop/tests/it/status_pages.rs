//! Status in words, the signed status page and the evidence receipt, in zh-CN and en;
//! and the page rendered in a real browser (headless Chromium), screenshots kept in
//! test-artifacts/.

use crate::support::{browser, calm, goods, Harness};
use serde_json::Value;
use std::time::Duration;
use zerodrop_store::both_engines;

async fn get_text(h: &Harness, url: &str, accept_language: Option<&str>) -> (u16, String) {
    let mut request = h.client.http.get(url);
    if let Some(lang) = accept_language {
        request = request.header("accept-language", lang);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn status_links(h: &Harness, order_no: &str) -> Value {
    let (status, links) = h.post(&format!("/v1/orders/{order_no}/status-link"), &serde_json::json!({}), None).await;
    assert_eq!(status, 200, "{links}");
    links
}

both_engines! {
    /// The user sees the truth in their language, and can print the evidence.
    async fn s08_status_pages_and_receipts_tell_the_truth(db) {
        let h = Harness::start(db, calm(), goods(None)).await;
        let delivered = h.paid("li-ming", "diamonds_60").await;
        let waiting = h.paid("li-ming", "card_patient").await;

        let en = h.client.http.get(format!("{}/v1/orders/{delivered}", h.server.base_url)).bearer_auth(zerodrop::stack::API_KEY)
            .header("accept-language", "en-US,en;q=0.9").send().await.unwrap().json::<Value>().await.unwrap();
        assert!(en["status_text"].as_str().unwrap().starts_with("Delivered: 60 diamonds arrived at"), "{}", en["status_text"]);
        let zh = h.client.order(&waiting).await.unwrap();
        let text = zh["status_text"].as_str().unwrap();
        assert!(text.starts_with("已收到支付宝（沙箱）付款；游戏点卡 50 元暂时缺货") && text.contains("否则自动原路退款"), "{text}");

        let links = status_links(&h, &delivered).await;
        let status_url = links["status_url"].as_str().unwrap();
        let (status, page) = get_text(&h, &format!("{status_url}&lang=zh-CN"), None).await;
        assert_eq!(status, 200);
        assert!(page.contains("已到账：60 钻石已于") && page.contains("收到付款") && page.contains(&delivered), "{page}");
        let (_, page) = get_text(&h, status_url, Some("en")).await;
        assert!(page.contains("Delivered: 60 diamonds arrived at") && page.contains("Payment received"), "{page}");

        let (status, receipt) = get_text(&h, links["receipt_json_url"].as_str().unwrap(), None).await;
        assert_eq!(status, 200);
        let receipt: Value = serde_json::from_str(&receipt).unwrap();
        let order = h.client.order(&delivered).await.unwrap();
        assert_eq!(receipt["provider_trade_no"], order["payment"]["trade_no"]);
        assert_eq!(receipt["amount"], "6.00 CNY");
        assert!(receipt["paid_at"].as_str().is_some());
        assert_eq!(receipt["timeline"].as_array().unwrap().len(), order["timeline"].as_array().unwrap().len());
        let (status, printable) = get_text(&h, links["receipt_url"].as_str().unwrap(), Some("zh-CN")).await;
        assert!(status == 200 && printable.contains("渠道交易号") && printable.contains(order["payment"]["trade_no"].as_str().unwrap()));

        // A link shows its one order, and only while it is valid.
        let tampered = status_url.replace(&delivered, &waiting);
        assert_eq!(get_text(&h, &tampered, None).await.0, 403, "a link for one order opens no other");
        let forged = format!("{}/pages/orders/{delivered}?exp=99999999999&sig=00", h.server.base_url);
        assert_eq!(get_text(&h, &forged, None).await.0, 403);
        let secret = h.server.app.config.status_pages.secret.as_ref().unwrap().expose().clone();
        let past = zerodrop_store::now_ms() / 1000 - 10;
        let expired = format!("{}/pages/orders/{delivered}?exp={past}&sig={}", h.server.base_url, zerodrop_server::http::pages::signature(&secret, &delivered, past));
        assert_eq!(get_text(&h, &expired, None).await.0, 410);
        // Card codes are for the owner's API response, never a page.
        h.import_keys("card_patient", &["SECRET-CODE-777"]).await;
        h.wait_for_status(&waiting, "delivered", Duration::from_secs(10)).await;
        let links = status_links(&h, &waiting).await;
        let (_, page) = get_text(&h, links["status_url"].as_str().unwrap(), None).await;
        let (_, receipt) = get_text(&h, links["receipt_json_url"].as_str().unwrap(), None).await;
        assert!(!page.contains("SECRET-CODE-777") && !receipt.contains("SECRET-CODE-777"));
        h.stop().await;
    }
}

/// Renders the status page in headless Chromium, in both languages: the DOM a browser
/// builds says the right thing, and a screenshot of each is kept in test-artifacts/.
/// Required when ZERODROP_TEST_BROWSER=1 (CI); skipped with a message where no Chromium is
/// installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_a_real_browser_in_both_languages() {
    let Some(chrome) = browser::chromium() else {
        assert!(
            std::env::var("ZERODROP_TEST_BROWSER").is_err(),
            "ZERODROP_TEST_BROWSER is set but Chromium is not installed"
        );
        eprintln!("skipped: install Debian's chromium to run the browser test");
        return;
    };
    let db = zerodrop_store::testing::TestDb::sqlite().await;
    let h = Harness::start(&db, calm(), goods(None)).await;
    let order_no = h.paid("li-ming", "diamonds_60").await;
    let links = status_links(&h, &order_no).await;
    let artifacts = browser::artifacts();
    for (lang, expected) in [("zh-CN", "已到账：60 钻石已于"), ("en", "Delivered: 60 diamonds arrived at")] {
        let url = format!("{}&lang={lang}", links["status_url"].as_str().unwrap());
        let shot = artifacts.join(format!("status-page-{lang}.png"));
        let (dom, size, complaints) = browser::render(&chrome, &url, &shot, "720,900").await;
        assert!(dom.contains(expected), "{lang}: the rendered DOM lacks {expected:?}: {dom}");
        assert!(size > 5_000, "{lang}: no screenshot ({}): {complaints}", shot.display());
    }
    h.stop().await;
    db.finish().await;
}
