//! Plan terms as published: each version's canonical JSON and its SHA-256.
//!
//! Stored at start from the catalog ([`publish`]). A version never changes: a catalog
//! whose version differs from the stored one is a startup error naming it (publish a new
//! version instead), because agreements cite the stored text and its hash. The database
//! refuses updates and deletes of this table outright.

use crate::{Conn, Result, StoreError, Tx};
use serde::Serialize;
use zerodrop_domain::{Plans, TermsVersion};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedTerms {
    pub plan: String,
    pub version: u32,
    /// The canonical JSON, as stored (and as hashed).
    pub canonical_json: String,
    pub sha256: String,
    pub published_at_ms: i64,
}

/// Hex SHA-256 of a terms version's canonical JSON: what an agreement records.
pub fn sha256(canonical_json: &str) -> String {
    crate::seal::sha256_hex(canonical_json.as_bytes())
}

/// The canonical JSON and hash of a version.
pub fn canonical(terms: &TermsVersion) -> Result<(String, String)> {
    let json = terms.canonical_json()?;
    let hash = sha256(&json);
    Ok((json, hash))
}

/// Stores every version of every plan not stored yet, and checks that every version
/// already stored is unchanged. Returns how many were newly stored. A changed version is
/// `Invariant` naming the plan and version, and nothing is stored.
pub async fn publish(tx: &mut Tx, plans: &Plans, now_ms: i64) -> Result<usize> {
    let mut stored = 0;
    for plan in plans.iter() {
        for terms in plan.versions.values() {
            let (json, hash) = canonical(terms)?;
            let existing = get(tx, &plan.id, terms.version).await?;
            match existing {
                Some(existing) if existing.sha256 == hash && existing.canonical_json == json => {}
                Some(existing) => {
                    return Err(StoreError::Invariant(format!(
                        "terms version {} of plan {} changed since it was published (stored sha256 {}, \
                         catalog {hash}): a version never changes; publish a new version instead",
                        terms.version, plan.id, existing.sha256
                    )));
                }
                None => {
                    sqlx::query(
                        "INSERT INTO plan_terms (plan, version, canonical_json, sha256, published_at_ms) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&plan.id)
                    .bind(i64::from(terms.version))
                    .bind(&json)
                    .bind(&hash)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await?;
                    stored += 1;
                }
            }
        }
    }
    Ok(stored)
}

pub async fn get(conn: &mut Conn, plan: &str, version: u32) -> Result<Option<PublishedTerms>> {
    let row = sqlx::query_as::<_, (String, i64, String, String, i64)>(
        "SELECT plan, version, canonical_json, sha256, published_at_ms FROM plan_terms WHERE plan = $1 AND version = $2",
    )
    .bind(plan)
    .bind(i64::from(version))
    .fetch_optional(conn)
    .await?;
    row.map(into_published).transpose()
}

/// Every stored version of a plan, oldest first (the current one is the last).
pub async fn list(conn: &mut Conn, plan: &str) -> Result<Vec<PublishedTerms>> {
    let rows = sqlx::query_as::<_, (String, i64, String, String, i64)>(
        "SELECT plan, version, canonical_json, sha256, published_at_ms FROM plan_terms WHERE plan = $1 ORDER BY version",
    )
    .bind(plan)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(into_published).collect()
}

fn into_published(
    (plan, version, canonical_json, sha256, published_at_ms): (String, i64, String, String, i64),
) -> Result<PublishedTerms> {
    let version =
        u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("plan {plan}: terms version {version}")))?;
    Ok(PublishedTerms { plan, version, canonical_json, sha256, published_at_ms })
}
