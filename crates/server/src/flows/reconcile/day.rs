//! A day's bill from the provider: its download URL asked for, the file downloaded into
//! `reconcile.bill_dir` (kept: it is the evidence each repair cites), then imported.

use super::file::{import_file, Progress};
use super::import::Imported;
use super::ReconcileError;
use crate::services::Services;
use std::path::PathBuf;
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
    let dest = dir.join(format!("{provider}-{bill_date}-{}.zip", uuid::Uuid::now_v7().simple()));
    download_bill(&services.http, &url, &dest, services.config.reconcile.bill_bytes_max)
        .await
        .map_err(|e| ReconcileError::Provider(e.to_string()))?;
    import_file(&services.store, provider, &account, &dest, progress).await
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
