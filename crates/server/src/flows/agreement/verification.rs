//! Step-up verification for ending an agreement: TOTP enrolment (the `otpauth://` URI is
//! shown once; the secret never reaches a log or an error) and its confirmation with a
//! first code. A wrong code is counted (the hold rules read the count); a code replayed
//! within its window is refused.

use crate::services::Services;
use zerodrop_domain::totp::{enrolment_uri, totp_secret, verify_totp, TotpAlgorithm, TOTP_SECRET_BYTES};
use zerodrop_domain::{Secret, UserId};
use zerodrop_store::agreements::verification;
use zerodrop_store::StoreError;

#[derive(Debug)]
pub enum Enrolled {
    /// The URI to scan, shown once.
    New(Secret<String>),
    /// A confirmed secret exists: it is kept (replacing it would turn the step-up off).
    AlreadyConfirmed,
}

pub async fn enrol(services: &Services, user: &UserId, now_ms: i64) -> Result<Enrolled, StoreError> {
    let secret = totp_secret(rand::random::<[u8; TOTP_SECRET_BYTES]>());
    let algorithm = TotpAlgorithm::default();
    let mut tx = services.store.begin().await?;
    if !verification::enrol_totp(&mut tx, user, &secret, algorithm, now_ms).await? {
        return Ok(Enrolled::AlreadyConfirmed);
    }
    tx.commit().await?;
    Ok(Enrolled::New(enrolment_uri(user.as_str(), secret.expose(), algorithm)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    Confirmed,
    NotEnrolled,
    /// Wrong, or a replay of a code already used: counted as a failure.
    WrongCode,
}

pub async fn confirm(services: &Services, user: &UserId, code: &str, now_ms: i64) -> Result<Confirmed, StoreError> {
    let enrolled = {
        let mut conn = services.store.reader().await?;
        verification::totp(&mut conn, user).await?
    };
    let Some(enrolled) = enrolled else { return Ok(Confirmed::NotEnrolled) };
    let mut tx = services.store.begin().await?;
    let step = verify_totp(enrolled.algorithm, enrolled.secret.expose(), code, now_ms, enrolled.last_step);
    let used = match step {
        Some(step) => verification::use_totp_step(&mut tx, user, step, true, now_ms).await?,
        None => false,
    };
    if !used {
        verification::record_failure(&mut tx, user, None, "totp", now_ms).await?;
    }
    tx.commit().await?;
    Ok(if used { Confirmed::Confirmed } else { Confirmed::WrongCode })
}
