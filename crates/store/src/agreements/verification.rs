//! Step-up verification facts: a TOTP secret per user (with the last step used, so a code
//! replayed within its window is refused), one-time codes stored hashed and used once, and
//! wrong codes with their times (the hold rules count those in a window).
//!
//! Secrets travel as `Secret` and never appear in an error: a `Debug` of any value here
//! shows no secret and no code.

use crate::{Conn, Result, StoreError, Tx};
use zerodrop_domain::totp::{base32_decode, base32_encode, TotpAlgorithm};
use zerodrop_domain::{Secret, UserId};

/// Longest list of failure times read back: the hold rules look at a window of minutes,
/// in which anything above a few dozen is already a hold.
pub const FAILURES_READ_MAX: i64 = 100;

#[derive(Debug)]
pub struct TotpRow {
    pub user_id: UserId,
    pub secret: Secret<Vec<u8>>,
    pub algorithm: TotpAlgorithm,
    pub enrolled_at_ms: i64,
    /// Set once the user proved a first code: only then does the secret verify anything.
    pub confirmed_at_ms: Option<i64>,
    /// The last step a code matched: codes at or before it are refused (replays).
    pub last_step: Option<i64>,
}

fn algorithm_name(algorithm: TotpAlgorithm) -> &'static str {
    match algorithm {
        TotpAlgorithm::Sha1 => "sha1",
        TotpAlgorithm::Sha256 => "sha256",
        TotpAlgorithm::Sha512 => "sha512",
    }
}

fn parse_algorithm(text: &str) -> Option<TotpAlgorithm> {
    [TotpAlgorithm::Sha1, TotpAlgorithm::Sha256, TotpAlgorithm::Sha512].into_iter().find(|a| algorithm_name(*a) == text)
}

/// Stores a user's new TOTP secret. A confirmed secret is kept (`false`): replacing it
/// would let whoever holds a session turn off the step-up; an unconfirmed one is replaced.
pub async fn enrol_totp(
    tx: &mut Tx,
    user_id: &UserId,
    secret: &Secret<Vec<u8>>,
    algorithm: TotpAlgorithm,
    now_ms: i64,
) -> Result<bool> {
    let encoded = base32_encode(secret.expose());
    let changed = sqlx::query(
        "INSERT INTO user_totp (user_id, secret_base32, algorithm, enrolled_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET secret_base32 = excluded.secret_base32, algorithm = excluded.algorithm, \
             enrolled_at_ms = excluded.enrolled_at_ms, last_step = NULL \
         WHERE user_totp.confirmed_at_ms IS NULL",
    )
    .bind(user_id.as_str())
    .bind(encoded)
    .bind(algorithm_name(algorithm))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub async fn totp(conn: &mut Conn, user_id: &UserId) -> Result<Option<TotpRow>> {
    let row = sqlx::query_as::<_, (String, String, i64, Option<i64>, Option<i64>)>(
        "SELECT secret_base32, algorithm, enrolled_at_ms, confirmed_at_ms, last_step FROM user_totp WHERE user_id = $1",
    )
    .bind(user_id.as_str())
    .fetch_optional(conn)
    .await?;
    let Some((secret, algorithm, enrolled_at_ms, confirmed_at_ms, last_step)) = row else { return Ok(None) };
    // The error names the user, never the secret.
    let corrupt = || StoreError::Corrupt(format!("TOTP enrolment of user {user_id} is not readable"));
    Ok(Some(TotpRow {
        user_id: user_id.clone(),
        secret: Secret::new(base32_decode(&secret).ok_or_else(corrupt)?),
        algorithm: parse_algorithm(&algorithm).ok_or_else(corrupt)?,
        enrolled_at_ms,
        confirmed_at_ms,
        last_step,
    }))
}

/// Records that a code matched `step`. `false` when a code at or after that step was
/// already used (a replay, or a race with another request using the same code): refuse it.
/// With `confirm`, also marks the enrolment confirmed.
pub async fn use_totp_step(tx: &mut Tx, user_id: &UserId, step: i64, confirm: bool, now_ms: i64) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE user_totp SET last_step = $1, \
             confirmed_at_ms = CASE WHEN $2 = 1 AND confirmed_at_ms IS NULL THEN $3 ELSE confirmed_at_ms END \
         WHERE user_id = $4 AND (last_step IS NULL OR last_step < $1)",
    )
    .bind(step)
    .bind(i64::from(confirm))
    .bind(now_ms)
    .bind(user_id.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Hex SHA-256 of a one-time code: what is stored (a database reader learns no code).
/// Codes are six digits, so the hash alone would not resist a search; it keeps codes out
/// of backups and logs, and a code lives ten minutes and is used once.
pub fn code_hash(agreement_id: &str, code: &str) -> String {
    crate::seal::sha256_hex(format!("zerodrop-code-v1\0{agreement_id}\0{code}").as_bytes())
}

/// Stores a one-time code (hashed) for an agreement until `expires_at_ms`.
pub async fn insert_code(
    tx: &mut Tx,
    id: &str,
    agreement_id: &str,
    user_id: &UserId,
    code: &Secret<String>,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<()> {
    // A new code supersedes the agreement's earlier live ones: only the newest works, so
    // asking again and again never multiplies the odds of a guess.
    sqlx::query(
        "UPDATE verification_codes SET expires_at_ms = $1 \
         WHERE agreement_id = $2 AND used_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(agreement_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO verification_codes (id, agreement_id, user_id, code_sha256, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(agreement_id)
    .bind(user_id.as_str())
    .bind(code_hash(agreement_id, code.expose()))
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Uses the agreement's unexpired, unused code equal to `code`, if there is one: `true`
/// when it matched (and is now used), `false` otherwise (wrong, expired or used).
pub async fn use_code(tx: &mut Tx, agreement_id: &str, code: &str, now_ms: i64) -> Result<bool> {
    let used = sqlx::query(
        "UPDATE verification_codes SET used_at_ms = $1 \
         WHERE agreement_id = $2 AND code_sha256 = $3 AND used_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(agreement_id)
    .bind(code_hash(agreement_id, code))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(used > 0)
}

/// Records a wrong code (`method`: `totp` or `code`).
pub async fn record_failure(
    tx: &mut Tx,
    user_id: &UserId,
    agreement_id: Option<&str>,
    method: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO verification_failures (user_id, agreement_id, method, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(user_id.as_str())
        .bind(agreement_id)
        .bind(method)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The times of a user's wrong codes since `since_ms`, newest first (at most
/// [`FAILURES_READ_MAX`]), for `HoldRules::after_failures`.
pub async fn failures_since(conn: &mut Conn, user_id: &UserId, since_ms: i64) -> Result<Vec<i64>> {
    let rows = sqlx::query_scalar::<_, i64>(
        "SELECT at_ms FROM verification_failures WHERE user_id = $1 AND at_ms >= $2 ORDER BY at_ms DESC LIMIT $3",
    )
    .bind(user_id.as_str())
    .bind(since_ms)
    .bind(FAILURES_READ_MAX)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
