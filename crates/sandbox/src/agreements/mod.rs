//! Withholding agreements (周期扣款) at the sandbox.
//!
//! A simulated user signs with the signed `alipay.user.agreement.page.sign` request the
//! merchant handed out ([`Sandbox::sign_agreement`], or `POST /sandbox/agreements/sign`);
//! the sandbox then sends a signed `dut_user_sign` notification to the request's
//! `notify_url`. The user can end it in the app at any moment ([`Sandbox::user_unsign`],
//! `POST /sandbox/agreements/unsign`), as the merchant can through
//! `alipay.user.agreement.unsign`: either sends `dut_user_unsign`. The gateway answers
//! `alipay.user.agreement.query`, and `alipay.trade.pay` under an agreement charges at once
//! (a paid trade like any other: notified, and in the day's bill), or is declined for a
//! stopped, unknown or expired agreement, an amount above its limit, or a fault knob.
//! Notifications go through the same faults as trades' (drop, duplicate, delay, GBK).

mod gateway;

use crate::faults::{self, Faults};
use crate::notifier;
use crate::state::{Agreement, AgreementState, Ledger};
use crate::{now_ms, Sandbox};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use zerodrop_domain::money::{Currency, Money};
use zerodrop_providers::alipay::agreement::{PERSONAL_PRODUCT_CODE, SIGN_PRODUCT_CODE};
use zerodrop_providers::alipay::clock::{format_cst, parse_cst};
use zerodrop_providers::alipay::sign::signing_string;

/// The gateway method whose signed request a user signs with.
const SIGN_METHOD: &str = "alipay.user.agreement.page.sign";
/// Alipay's `invalid_time` for an agreement with no end of its own.
const FOREVER: &str = "2115-02-01 00:00:00";
/// Alipay's shortest day period for a cycle agreement.
const PERIOD_DAYS_MIN: u64 = 7;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("sign request is malformed: {0}")]
    Malformed(String),
    #[error("unknown merchant app_id")]
    UnknownMerchant,
    #[error("sign request signature does not verify")]
    BadSignature,
    /// The agreement number was signed and ended: a new agreement needs a new number.
    #[error("this agreement was ended; sign a new one")]
    Ended,
    #[error("no such agreement")]
    NotFound,
}

/// What an agreement notification says.
#[derive(Clone, Copy, Debug)]
pub(super) enum Notice {
    Signed,
    Unsigned,
}

/// The sign request's terms, read and verified.
struct SignRequest {
    app_id: String,
    notify_url: String,
    external_agreement_no: String,
    single_amount_minor: i64,
    total_amount_minor: Option<i64>,
    period_days: u32,
}

impl Sandbox {
    /// A user opens the sign page: the agreement exists as TEMP until confirmed. Opening
    /// it again changes nothing.
    pub fn open_agreement(&self, sign_request: &str) -> Result<Agreement, SignError> {
        let request = self.read_sign_request(sign_request)?;
        let mut ledger =
            self.shared.ledger.lock().map_err(|_| SignError::Malformed("sandbox state poisoned".into()))?;
        Ok(open(&mut ledger, request)?.clone())
    }

    /// A user signs with the request the merchant handed out: NORMAL, with its own
    /// agreement number, and a `dut_user_sign` notification. Signing a signed agreement
    /// again returns it unchanged (no second notification).
    pub fn sign_agreement(&self, sign_request: &str) -> Result<Agreement, SignError> {
        let request = self.read_sign_request(sign_request)?;
        let faults = self.faults();
        let now = now_ms();
        let agreement = {
            let mut ledger =
                self.shared.ledger.lock().map_err(|_| SignError::Malformed("sandbox state poisoned".into()))?;
            ledger.next_agreement_seq += 1;
            let seq = ledger.next_agreement_seq;
            let agreement = open(&mut ledger, request)?;
            match agreement.status {
                AgreementState::Normal => return Ok(agreement.clone()),
                AgreementState::Stop => return Err(SignError::Ended),
                AgreementState::Temp => {}
            }
            agreement.status = AgreementState::Normal;
            agreement.agreement_no =
                format!("{}7{seq:011}", format_cst(now).get(..10).unwrap_or("2026-01-01").replace('-', ""));
            agreement.signed_at_ms = Some(now);
            agreement.valid_until_ms = match faults.agreement_valid_ms {
                ms if ms > 0 => now + ms,
                _ => parse_cst(FOREVER).unwrap_or(i64::MAX),
            };
            agreement.clone()
        };
        // Notifying takes the ledger's lock: never while holding it.
        self.notify_agreement(&agreement, Notice::Signed, &faults);
        Ok(agreement)
    }

    /// The user ends the agreement inside the provider's app: STOP at once, and a
    /// `dut_user_unsign` notification. Ending an ended agreement changes nothing.
    pub fn user_unsign(&self, external_agreement_no: &str) -> Result<Agreement, SignError> {
        let (agreement, changed) = {
            let mut ledger =
                self.shared.ledger.lock().map_err(|_| SignError::Malformed("sandbox state poisoned".into()))?;
            let agreement = ledger.agreements.get_mut(external_agreement_no).ok_or(SignError::NotFound)?;
            let changed = stop(agreement, now_ms());
            (agreement.clone(), changed)
        };
        if changed {
            self.notify_agreement(&agreement, Notice::Unsigned, &self.faults());
        }
        Ok(agreement)
    }

    /// Every agreement, in no particular order.
    pub fn agreements(&self) -> Vec<Agreement> {
        self.shared.ledger.lock().map(|l| l.agreements.values().cloned().collect()).unwrap_or_default()
    }

    pub fn agreement(&self, external_agreement_no: &str) -> Option<Agreement> {
        self.shared.ledger.lock().ok().and_then(|l| l.agreements.get(external_agreement_no).cloned())
    }

    fn read_sign_request(&self, sign_request: &str) -> Result<SignRequest, SignError> {
        let malformed = |what: &str| SignError::Malformed(what.to_owned());
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(sign_request).map_err(|e| SignError::Malformed(e.to_string()))?;
        let fields: HashMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let field = |name: &str| fields.get(name).copied().ok_or_else(|| malformed(&format!("{name} missing")));
        let app_id = field("app_id")?;
        let merchant = self
            .shared
            .ledger
            .lock()
            .ok()
            .and_then(|l| l.merchants.get(app_id).cloned())
            .ok_or(SignError::UnknownMerchant)?;
        let message = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        if !merchant.app_public_key.verify_sha256_base64(message.as_bytes(), field("sign")?) {
            return Err(SignError::BadSignature);
        }
        if field("method")? != SIGN_METHOD {
            return Err(malformed("not an agreement sign request"));
        }
        let biz: Value =
            serde_json::from_str(field("biz_content")?).map_err(|e| SignError::Malformed(e.to_string()))?;
        let text = |name: &str| biz.get(name).and_then(Value::as_str);
        if text("personal_product_code") != Some(PERSONAL_PRODUCT_CODE)
            || text("product_code") != Some(SIGN_PRODUCT_CODE)
        {
            return Err(malformed("not a cycle agreement (CYCLE_PAY_AUTH_P, CYCLE_PAY_AUTH)"));
        }
        let rule = biz.get("period_rule_params").ok_or_else(|| malformed("period_rule_params missing"))?;
        let amount = |name: &str| -> Result<Option<i64>, SignError> {
            match rule.get(name).and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => Money::parse_decimal(text, Currency::Cny)
                    .map(|m| Some(m.minor))
                    .map_err(|e| SignError::Malformed(format!("{name}: {e}"))),
            }
        };
        let single_amount_minor =
            amount("single_amount")?.filter(|m| *m > 0).ok_or_else(|| malformed("single_amount missing"))?;
        let period = rule.get("period").and_then(Value::as_u64).unwrap_or(0);
        if rule.get("period_type").and_then(Value::as_str) != Some("DAY") || period < PERIOD_DAYS_MIN {
            return Err(malformed("period_rule_params: a DAY period of 7 days or more"));
        }
        Ok(SignRequest {
            app_id: app_id.to_owned(),
            notify_url: field("notify_url")?.to_owned(),
            external_agreement_no: text("external_agreement_no")
                .filter(|no| !no.is_empty())
                .ok_or_else(|| malformed("external_agreement_no missing"))?
                .to_owned(),
            single_amount_minor,
            total_amount_minor: amount("total_amount")?,
            period_days: u32::try_from(period).map_err(|_| malformed("period"))?,
        })
    }

    /// Plans an agreement notification with the trade notifications' faults: maybe none
    /// (dropped), maybe two (duplicated), after a random delay, in GBK when asked.
    fn notify_agreement(&self, agreement: &Agreement, notice: Notice, faults: &Faults) {
        let dropped = faults::roll(faults.drop_rate_pct);
        let duplicated = !dropped && faults::roll(faults.duplicate_rate_pct);
        if let Ok(mut ledger) = self.shared.ledger.lock() {
            ledger.stats.notifications_planned += 1;
            ledger.stats.notifications_dropped += u64::from(dropped);
            ledger.stats.notifications_duplicated += u64::from(duplicated);
        }
        let copies = usize::from(!dropped) + usize::from(duplicated);
        for _ in 0..copies {
            let shared = self.shared.clone();
            let agreement = agreement.clone();
            let faults = faults.clone();
            let delay_ms = faults::delay_ms(&faults);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let Some(body) = notification_body(&shared, &agreement, notice, faults.notify_in_gbk) else { return };
                let about = agreement.external_agreement_no.as_str();
                notifier::deliver_body(&shared, &agreement.notify_url, &body, &faults, about).await;
            });
        }
    }
}

/// The agreement a request opens: new as TEMP, or the one it opened before. The same
/// number from another merchant app is refused.
fn open(ledger: &mut Ledger, request: SignRequest) -> Result<&mut Agreement, SignError> {
    let key = request.external_agreement_no.clone();
    let agreement = ledger.agreements.entry(key).or_insert_with(|| Agreement {
        external_agreement_no: request.external_agreement_no,
        agreement_no: String::new(),
        app_id: request.app_id.clone(),
        status: AgreementState::Temp,
        user_id: String::new(),
        notify_url: request.notify_url,
        signed_at_ms: None,
        valid_until_ms: 0,
        unsigned_at_ms: None,
        single_amount_minor: request.single_amount_minor,
        total_amount_minor: request.total_amount_minor,
        charged_minor: 0,
        period_days: request.period_days,
    });
    if agreement.app_id != request.app_id {
        return Err(SignError::Malformed("external_agreement_no is another merchant's".into()));
    }
    if agreement.user_id.is_empty() {
        // One simulated user per agreement, with a stable Alipay-style id.
        let digits: u64 = agreement.external_agreement_no.bytes().fold(0, |h, b| h.wrapping_mul(31) ^ u64::from(b));
        agreement.user_id = format!("2088{:012}", digits % 1_000_000_000_000);
    }
    Ok(agreement)
}

/// STOP; true when it changed (a signed agreement ended now).
pub(super) fn stop(agreement: &mut Agreement, now: i64) -> bool {
    match agreement.status {
        AgreementState::Stop => false,
        AgreementState::Temp | AgreementState::Normal => {
            let was_signed = agreement.status == AgreementState::Normal;
            agreement.status = AgreementState::Stop;
            agreement.unsigned_at_ms = Some(now);
            was_signed
        }
    }
}

/// The notification's form body, signed as Alipay signs notifications.
fn notification_body(shared: &crate::Shared, agreement: &Agreement, notice: Notice, gbk: bool) -> Option<String> {
    let now = now_ms();
    let notify_id = format!("{}{:06}", agreement.agreement_no, rand::random::<u32>() % 1_000_000);
    let (notify_type, status) = match notice {
        Notice::Signed => ("dut_user_sign", "NORMAL"),
        Notice::Unsigned => ("dut_user_unsign", "UNSIGN"),
    };
    let mut params: Vec<(&str, String)> = vec![
        ("notify_time", format_cst(now)),
        ("notify_type", notify_type.into()),
        ("notify_id", notify_id),
        ("app_id", agreement.app_id.clone()),
        ("auth_app_id", agreement.app_id.clone()),
        ("charset", if gbk { "GBK".into() } else { "utf-8".into() }),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("status", status.into()),
        ("agreement_no", agreement.agreement_no.clone()),
        ("external_agreement_no", agreement.external_agreement_no.clone()),
        ("personal_product_code", PERSONAL_PRODUCT_CODE.into()),
        ("alipay_user_id", agreement.user_id.clone()),
    ];
    if let Some(signed) = agreement.signed_at_ms {
        params.push(("sign_time", format_cst(signed)));
        params.push(("valid_time", format_cst(signed)));
        params.push(("invalid_time", format_cst(agreement.valid_until_ms)));
    }
    if let (Notice::Unsigned, Some(at)) = (notice, agreement.unsigned_at_ms) {
        params.push(("unsign_time", format_cst(at)));
    }
    if gbk {
        // Chinese text too, so the signature covers GBK bytes that are not ASCII.
        params.push(("memo", "自动续费会员 / auto-renewing membership".into()));
    }
    notifier::sign_form(shared, params, gbk)
}

#[derive(Deserialize)]
pub(crate) struct SignBody {
    sign_request: String,
    /// False: the user opens the page and stops there (TEMP).
    #[serde(default = "yes")]
    confirm: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub(crate) struct UnsignBody {
    external_agreement_no: String,
}

fn sign_error(e: SignError) -> Response {
    let status = match e {
        SignError::Ended => StatusCode::CONFLICT,
        SignError::NotFound => StatusCode::NOT_FOUND,
        SignError::Malformed(_) | SignError::UnknownMerchant | SignError::BadSignature => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

/// `POST /sandbox/agreements/sign {"sign_request": "…", "confirm": true}`.
pub(crate) async fn sign(State(sandbox): State<Sandbox>, Json(body): Json<SignBody>) -> Response {
    let signed = if body.confirm {
        sandbox.sign_agreement(&body.sign_request)
    } else {
        sandbox.open_agreement(&body.sign_request)
    };
    signed.map_or_else(sign_error, |a| Json(a).into_response())
}

/// `POST /sandbox/agreements/unsign {"external_agreement_no": "…"}`: the user in the app.
pub(crate) async fn unsign(State(sandbox): State<Sandbox>, Json(body): Json<UnsignBody>) -> Response {
    sandbox.user_unsign(&body.external_agreement_no).map_or_else(sign_error, |a| Json(a).into_response())
}

/// `GET /sandbox/agreements`.
pub(crate) async fn list(State(sandbox): State<Sandbox>) -> Json<Vec<Agreement>> {
    Json(sandbox.agreements())
}
