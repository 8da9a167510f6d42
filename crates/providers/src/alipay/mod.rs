//! The Alipay adapter: RSA2-signed notifications, the signed gateway methods
//! (`alipay.trade.query`, `alipay.trade.close`, refunds, the bill's download URL), and
//! the trade bill's format ([`bill`]), and withholding agreements ([`agreement`]: the sign
//! request, `dut_user_sign` / `dut_user_unsign`, query, unsign, charges). Pointed at the sandbox provider's URL
//! with the sandbox's keys, the same adapter talks to the sandbox.

pub mod agreement;
pub mod bill;
pub mod clock;
pub mod form;
mod gateway;
mod notify;
pub mod sign;

use crate::keys::{RsaPrivateKey, RsaPublicKey};
use crate::{
    Ack, AckKind, AgreementNotice, AgreementRef, AgreementSignRef, AgreementStatus, BoxFuture, CloseOutcome, Notice,
    OrderRef, PaymentStatus, Provider, ProviderError, RefundRef, RefundStatus, Rejection, SignedAnswer, UnsignOutcome,
};
use std::sync::Arc;
use std::time::Duration;

/// Largest gateway response read, in bytes. Real answers are a few KiB; anything far
/// larger is an error page or an attack, and reading it whole would cost memory.
pub const GATEWAY_RESPONSE_BYTES_MAX: usize = 1024 * 1024;
/// Default time allowed for one gateway call, connect included.
pub const GATEWAY_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// The product code Alipay uses for in-app payments.
const APP_PAY_PRODUCT_CODE: &str = "QUICK_MSECURITY_PAY";

pub struct AlipayConfig {
    /// The provider name zerodrop routes by (`alipay`, or `sandbox` for the sandbox).
    pub name: String,
    pub app_id: String,
    /// The merchant's Alipay partner id (2088…), which notifications carry as `seller_id`.
    pub seller_id: String,
    pub gateway_url: String,
    /// Where Alipay should send notifications: zerodrop's `/v1/providers/{name}/notify`.
    pub notify_url: String,
    pub app_private_key: RsaPrivateKey,
    pub alipay_public_key: RsaPublicKey,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("name", &self.name)
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .field("gateway_url", &self.gateway_url)
            .field("notify_url", &self.notify_url)
            .field("app_private_key", &"[redacted]")
            .finish()
    }
}

pub struct Alipay {
    config: Arc<AlipayConfig>,
    client: reqwest::Client,
}

impl Alipay {
    pub fn new(config: AlipayConfig) -> Result<Alipay, ProviderError> {
        let client = crate::http_client::client(Duration::from_millis(config.timeout_ms))
            .map_err(|e| ProviderError::Config(format!("http client: {e}")))?;
        Ok(Alipay { config: Arc::new(config), client })
    }

    pub fn config(&self) -> &AlipayConfig {
        &self.config
    }
}

impl Provider for Alipay {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn verify_notification(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Notice, Rejection> {
        notify::verify(&self.config, headers, body)
    }

    fn payment_instructions(&self, order: &OrderRef) -> Result<serde_json::Value, ProviderError> {
        let biz = serde_json::json!({
            "out_trade_no": order.order_no,
            "total_amount": order.amount.to_decimal(),
            "subject": order.subject,
            "product_code": APP_PAY_PRODUCT_CODE,
            // The provider refuses payment after our expiry, so a user cannot pay an
            // order we have stopped waiting for (short of a provider-side race).
            "time_expire": clock::format_cst(order.expires_at_ms),
        });
        let order_string =
            gateway::signed_params(&self.config, "alipay.trade.app.pay", &biz, Some(&self.config.notify_url))?;
        Ok(serde_json::json!({
            "method": "alipay.trade.app.pay",
            "order_string": order_string,
        }))
    }

    fn query_payment<'a>(&'a self, order: &'a OrderRef) -> BoxFuture<'a, Result<PaymentStatus, ProviderError>> {
        Box::pin(gateway::query(&self.client, &self.config, order))
    }

    fn verify_answer(&self, answer: &SignedAnswer) -> Result<(String, PaymentStatus), ProviderError> {
        gateway::verify_answer(&self.config, answer)
    }

    fn close_payment<'a>(&'a self, order: &'a OrderRef) -> BoxFuture<'a, Result<CloseOutcome, ProviderError>> {
        Box::pin(gateway::close(&self.client, &self.config, order))
    }

    fn refund<'a>(&'a self, refund: &'a RefundRef) -> BoxFuture<'a, Result<RefundStatus, ProviderError>> {
        Box::pin(gateway::refund(&self.client, &self.config, refund))
    }

    fn query_refund<'a>(&'a self, refund: &'a RefundRef) -> BoxFuture<'a, Result<RefundStatus, ProviderError>> {
        Box::pin(gateway::query_refund(&self.client, &self.config, refund))
    }

    fn bill_download_url<'a>(&'a self, bill_date: &'a str) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(gateway::bill_download_url(&self.client, &self.config, bill_date))
    }

    fn ack(&self, kind: AckKind) -> Ack {
        // Alipay retries any notification whose reply is not exactly `success`.
        let (status, body): (u16, &[u8]) = match kind {
            AckKind::Accepted => (200, b"success"),
            AckKind::Rejected => (400, b"fail"),
            AckKind::RetryLater => (503, b"fail"),
        };
        Ack { status, content_type: "text/plain; charset=utf-8", body: body.to_vec() }
    }

    fn agreement_sign_instructions(&self, sign: &AgreementSignRef) -> Result<serde_json::Value, ProviderError> {
        agreement::sign_instructions(&self.config, sign)
    }

    fn verify_agreement_notification(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<AgreementNotice, Rejection> {
        agreement::verify_notification(&self.config, headers, body)
    }

    fn query_agreement<'a>(
        &'a self,
        agreement: &'a AgreementRef,
    ) -> BoxFuture<'a, Result<AgreementStatus, ProviderError>> {
        Box::pin(agreement::query(&self.client, &self.config, agreement))
    }

    fn unsign_agreement<'a>(
        &'a self,
        agreement: &'a AgreementRef,
    ) -> BoxFuture<'a, Result<UnsignOutcome, ProviderError>> {
        Box::pin(agreement::unsign(&self.client, &self.config, agreement))
    }

    fn charge_agreement<'a>(
        &'a self,
        order: &'a OrderRef,
        agreement_no: &'a str,
    ) -> BoxFuture<'a, Result<PaymentStatus, ProviderError>> {
        Box::pin(agreement::charge(&self.client, &self.config, order, agreement_no))
    }
}
