//! A day's bill from the provider: its download URL asked for, the file downloaded into
//! `reconcile.bill_dir` (kept: it is the evidence each repair cites), then imported.

use super::file::{import_file, BillFile, Progress};
use super::import::Imported;
use super::ReconcileError;
use crate::services::Services;
use std::path::PathBuf;
use zerodrop_providers::alipay::clock::parse_cst;
use zerodrop_providers::bill_download::download_bill;

/// Fetches and imports `provider`'s bill for `bill_date` (`YYYY-MM-DD`, China Standard Time).
pub async fn fetch_and_import(
    services: &Services,
    provider: &str,
    bill_date: &str,
    progress: Option<Progress>,
) -> Result<Imported, ReconcileError> {
    let account = account(services, provider)?;
    let adapter = services.provider(provider).ok_or_else(|| ReconcileError::UnknownProvider(provider.to_owned()))?;
    let url = adapter.bill_download_url(bill_date).await.map_err(|e| ReconcileError::Provider(e.to_string()))?;
    let dir = PathBuf::from(&services.config.reconcile.bill_dir);
    std::fs::create_dir_all(&dir).map_err(|e| ReconcileError::Bill(format!("{}: {e}", dir.display())))?;
    let day_from_ms = parse_cst(&format!("{bill_date} 00:00:00"))
        .ok_or_else(|| ReconcileError::Bill(format!("{bill_date:?} is not a day (YYYY-MM-DD)")))?;
    // Downloaded beside the kept bills, named by the day; the import keeps its own copy.
    let download = dir.join(format!(".download-{provider}-{bill_date}-{}.zip", uuid::Uuid::now_v7().simple()));
    let fetched = download_bill(&services.http, &url, &download, services.config.reconcile.bill_bytes_max).await;
    if let Err(e) = fetched {
        let _ = std::fs::remove_file(&download);
        return Err(ReconcileError::Provider(e.to_string()));
    }
    // Named by the provider and day in a directory of its own, so the bill is known by
    // that name (the import keeps its own copy and this one is removed).
    let downloads = dir.join(".downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| ReconcileError::Bill(format!("{}: {e}", downloads.display())))?;
    let named =
        downloads.join(format!("{provider}-{bill_date}-{}.zip", &uuid::Uuid::now_v7().simple().to_string()[..8]));
    let path = if std::fs::rename(&download, &named).is_ok() { named } else { download };
    let bill = BillFile {
        provider,
        account: &account,
        path: &path,
        bill_dir: &dir,
        day_from_ms: Some(day_from_ms),
        missing_grace_ms: services.config.reconcile.missing_grace_secs * 1000,
    };
    let imported = import_file(&services.store, &bill, progress).await;
    let _ = std::fs::remove_file(&path);
    imported
}

/// The merchant account a provider's bills must be for (its seller id).
pub fn account(services: &Services, provider: &str) -> Result<String, ReconcileError> {
    services
        .config
        .providers
        .iter()
        .find(|p| p.name == provider)
        .map(|p| p.seller_id.clone())
        .ok_or_else(|| ReconcileError::UnknownProvider(provider.to_owned()))
}
