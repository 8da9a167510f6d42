//! The application as it starts: configuration, database, catalog and providers are
//! loaded and checked, and the notification committer is started.

use crate::card_vault::Vault;
use crate::config::{Config, ProviderConfig};
use crate::intake::committer::Committer;
use crate::services::Services;
use std::sync::Arc;
use zerodrop_domain::Catalog;
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};
use zerodrop_providers::Provider;
use zerodrop_store::{PoolConfig, Store};

/// The running application: the [`Services`] every flow and job is given, and the group
/// committer that notification intake feeds. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub services: Services,
    /// Group commit for notifications.
    pub committer: Committer,
}

impl std::ops::Deref for App {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] zerodrop_store::StoreError),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("provider {name}: {problem}")]
    Provider { name: String, problem: String },
}

impl App {
    /// Builds the application. Must run inside the Tokio runtime (it starts the committer).
    pub fn new(config: Config, store: Store, catalog: Catalog, providers: Vec<Arc<dyn Provider>>) -> App {
        let committer = Committer::start(store.clone());
        App { services: Services::new(config, store, catalog, providers), committer }
    }

    /// Connects, migrates, loads the catalog and builds the providers the configuration names.
    pub async fn start(config: Config) -> Result<App, StartError> {
        if let Some(key) = &config.card_keys.encryption_key {
            Vault::from_config(key).map_err(|e| StartError::Catalog(e.to_string()))?;
        }
        let catalog = load_catalog(&config.catalog_path)?;
        let providers = build_providers(&config)?;
        let store = Store::connect(&config.database_url, &PoolConfig::default()).await?;
        store.migrate().await?;
        Ok(App::new(config, store, catalog, providers))
    }
}

pub fn load_catalog(path: &str) -> Result<Catalog, StartError> {
    if path.is_empty() {
        return Ok(Catalog::default_catalog());
    }
    let text = std::fs::read_to_string(path).map_err(|e| StartError::Catalog(format!("{path}: {e}")))?;
    Catalog::from_toml(&text).map_err(|e| StartError::Catalog(format!("{path}: {e}")))
}

pub fn build_providers(config: &Config) -> Result<Vec<Arc<dyn Provider>>, StartError> {
    config.providers.iter().map(|p| build_provider(config, p)).collect()
}

fn build_provider(config: &Config, p: &ProviderConfig) -> Result<Arc<dyn Provider>, StartError> {
    let problem = |problem: String| StartError::Provider { name: p.name.clone(), problem };
    let private_text = inline_or_file(
        p.app_private_key.as_ref().map(|s| s.expose().as_str()),
        p.app_private_key_file.as_deref(),
        "app_private_key",
    )
    .map_err(problem)?;
    let public_text =
        inline_or_file(p.provider_public_key.as_deref(), p.provider_public_key_file.as_deref(), "provider_public_key")
            .map_err(problem)?;
    let app_private_key = RsaPrivateKey::parse(&private_text, "app_private_key").map_err(|e| problem(e.to_string()))?;
    let alipay_public_key =
        RsaPublicKey::parse(&public_text, "provider_public_key").map_err(|e| problem(e.to_string()))?;
    let notify_url = format!("{}/v1/providers/{}/notify", config.public_base_url.trim_end_matches('/'), p.name);
    let alipay = Alipay::new(AlipayConfig {
        name: p.name.clone(),
        app_id: p.app_id.clone(),
        seller_id: p.seller_id.clone(),
        gateway_url: p.gateway_url.clone(),
        notify_url,
        app_private_key,
        alipay_public_key,
        timeout_ms: p.timeout_ms,
    })
    .map_err(|e| problem(e.to_string()))?;
    Ok(Arc::new(alipay))
}

fn inline_or_file(inline: Option<&str>, file: Option<&str>, what: &str) -> Result<String, String> {
    match (inline, file) {
        (Some(text), None) => Ok(text.to_owned()),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| format!("{what}_file {path}: {e}")),
        (Some(_), Some(_)) => Err(format!("set {what} or {what}_file, not both")),
        (None, None) => Err(format!("{what} (or {what}_file) is required")),
    }
}
