//! Card-key stock: importing codes, validated, checked for duplicates (in the file and against
//! stock), sealed, and stored in one transaction with the restock job that serves
//! waiting orders. Reports name line numbers, never codes.

use crate::card_vault::{VaultError, CODE_BYTES_MAX};
use crate::jobs::enqueue;
use crate::jobs::restock::Restock;
use crate::services::Services;
use serde::Serialize;
use std::collections::HashMap;
use zerodrop_domain::ProductKind;
use zerodrop_store::card_keys::{self, NewCardKey};
use zerodrop_store::{now_ms, StoreError};

/// Most codes one import may hold; split bigger files.
pub const IMPORT_CODES_MAX: usize = 100_000;

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub sku: String,
    pub codes_read: usize,
    pub imported: u64,
    /// (line, the earlier line with the same code)
    pub duplicates_in_file: Vec<(usize, usize)>,
    pub already_in_stock: Vec<usize>,
    /// (line, what is wrong)
    pub malformed: Vec<(usize, String)>,
    pub stock_available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0} is not a card_key product in the catalog")]
    NotCardKey(String),
    #[error("card_keys.encryption_key is not configured: codes cannot be stored")]
    NoVault,
    #[error("the file holds more than {IMPORT_CODES_MAX} codes; split it")]
    TooMany,
    #[error("nothing imported: {0}")]
    Refused(String),
    #[error("nothing imported: a code could not be sealed")]
    Seal(#[source] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports the codes in `text` (one per line; blank lines and `#` comments are skipped).
#[tracing::instrument(name = "card_keys.import", skip(services, text))]
pub async fn import(
    services: &Services,
    sku: &str,
    text: &str,
    skip_duplicates: bool,
) -> Result<ImportReport, ImportError> {
    let product = services.catalog.get(sku).map_err(|_| ImportError::NotCardKey(sku.to_owned()))?;
    if product.kind != ProductKind::CardKey {
        return Err(ImportError::NotCardKey(sku.to_owned()));
    }
    let vault = services.vault.as_ref().ok_or(ImportError::NoVault)?;
    let mut report = ImportReport { sku: sku.to_owned(), ..ImportReport::default() };
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut fresh: Vec<(usize, &str, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let code = raw.trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        report.codes_read += 1;
        if report.codes_read > IMPORT_CODES_MAX {
            return Err(ImportError::TooMany);
        }
        if code.len() > CODE_BYTES_MAX || code.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report
                .malformed
                .push((line, format!("a code is 1 to {CODE_BYTES_MAX} bytes with no spaces or control characters")));
            continue;
        }
        let fingerprint = vault.fingerprint(sku, code);
        if let Some(first) = first_seen.get(&fingerprint) {
            report.duplicates_in_file.push((line, *first));
            continue;
        }
        first_seen.insert(fingerprint.clone(), line);
        fresh.push((line, code, fingerprint));
    }
    let fingerprints: Vec<String> = fresh.iter().map(|(_, _, f)| f.clone()).collect();
    let in_stock = {
        let mut conn = services.store.reader().await?;
        card_keys::existing(&mut conn, sku, &fingerprints).await?
    };
    report.already_in_stock = fresh.iter().filter(|(_, _, f)| in_stock.contains(f)).map(|(line, _, _)| *line).collect();
    if !report.malformed.is_empty() {
        return Err(ImportError::Refused(format!(
            "{} malformed line(s): {:?}",
            report.malformed.len(),
            lines(&report.malformed)
        )));
    }
    let duplicates = report.duplicates_in_file.len() + report.already_in_stock.len();
    if duplicates > 0 && !skip_duplicates {
        return Err(ImportError::Refused(format!(
            "{} duplicate(s) in the file (lines {:?}) and {} already in stock (lines {:?}); fix the file or pass --skip-duplicates",
            report.duplicates_in_file.len(),
            report.duplicates_in_file.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            report.already_in_stock.len(),
            report.already_in_stock
        )));
    }
    let keys = fresh
        .iter()
        .filter(|(_, _, f)| !in_stock.contains(f))
        .map(|(_, code, fingerprint)| {
            let ciphertext = vault.seal(sku, code).map_err(ImportError::Seal)?;
            Ok(NewCardKey { fingerprint: fingerprint.clone(), ciphertext })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let now = now_ms();
    let batch = uuid::Uuid::now_v7().to_string();
    let mut tx = services.store.begin().await?;
    report.imported = card_keys::insert(&mut tx, sku, &keys, &batch, now).await?;
    if report.imported > 0 {
        enqueue(&mut tx, &Restock { sku: sku.to_owned(), batch: batch.clone() }, now, now).await?;
    }
    tx.commit().await?;
    services.wake();
    let mut conn = services.store.reader().await?;
    report.stock_available = card_keys::stock(&mut conn, sku).await?.available;
    Ok(report)
}

fn lines(items: &[(usize, String)]) -> Vec<usize> {
    items.iter().map(|(line, _)| *line).collect()
}
