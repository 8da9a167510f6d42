//! The application as it starts: configuration, database, catalog and providers are
//! loaded and checked, and the notification committer is started. The database may be
//! reached later ([`App::open`] and [`crate::readiness`]); everything else is checked at
//! once, since no wait would fix it.

use crate::card_vault::{Vault, VaultError};
use crate::config::{Config, ProviderConfig};
use crate::intake::committer::Committer;
use crate::intake::limit::{Limits, RefusalLimiter};
use crate::readiness::{self, Readiness};
use crate::services::Services;
use std::sync::Arc;
use zerodrop_domain::catalog::CatalogError;
use zerodrop_domain::Catalog;
use zerodrop_providers::alipay::{Alipay, AlipayConfig};
use zerodrop_providers::keys::{KeyError, RsaPrivateKey, RsaPublicKey};
use zerodrop_providers::{Provider, ProviderError};
use zerodrop_store::seal::key::SealKey;
use zerodrop_store::Store;

/// The running application: the [`Services`] every flow and job is given, and the group
/// committer that notification intake feeds. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub services: Services,
    /// Group commit for notifications.
    pub committer: Committer,
    /// How many refused notifications are stored, per source and in all.
    pub refusals: Arc<RefusalLimiter>,
    /// Whether the database has been reached and migrated; until then the HTTP layer
    /// answers 503 and no job runs.
    pub readiness: Readiness,
    /// The seal key the sealing job signs checkpoints with (none: this process does not seal).
    pub sealer: Option<Arc<SealKey>>,
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
    #[error("catalog {path}: {source}")]
    CatalogFile { path: String, source: std::io::Error },
    #[error("catalog {path}: {source}")]
    Catalog { path: String, source: CatalogError },
    #[error("card_keys.encryption_key: {0}")]
    CardKeys(#[source] VaultError),
    #[error("provider {name}: {source}")]
    Provider { name: String, source: ProviderSetupError },
    #[error("seal: {0}")]
    Seal(#[from] crate::config::SealKeyError),
}

/// Why a configured provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("{what}_file {path}: {source}")]
    KeyFile { what: &'static str, path: String, source: std::io::Error },
    #[error("set {0} or {0}_file, not both")]
    KeyTwice(&'static str),
    #[error("{0} (or {0}_file) is required")]
    KeyMissing(&'static str),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Adapter(#[from] ProviderError),
}

impl App {
    /// Builds the application over a migrated store. Must run inside the Tokio runtime
    /// (it starts the committer).
    pub fn new(config: Config, store: Store, catalog: Catalog, providers: Vec<Arc<dyn Provider>>) -> App {
        App::with_readiness(config, store, catalog, providers, Readiness::ready())
    }

    fn with_readiness(
        config: Config,
        store: Store,
        catalog: Catalog,
        providers: Vec<Arc<dyn Provider>>,
        readiness: Readiness,
    ) -> App {
        let committer = Committer::start(store.clone());
        let limits = Limits {
            per_source: config.notifications.refused_per_source_per_minute,
            total: config.notifications.refused_per_minute,
        };
        let refusals = Arc::new(RefusalLimiter::new(limits));
        App { services: Services::new(config, store, catalog, providers), committer, refusals, readiness, sealer: None }
    }

    /// Checks everything but the database (the card-key key, the catalog, the
    /// providers) and opens the database's pools without connecting. The app is not
    /// ready: `serve` brings the database up ([`readiness::bring_up`]) while it already
    /// answers. Must run inside the Tokio runtime.
    pub fn open(config: Config) -> Result<App, StartError> {
        if let Some(key) = &config.card_keys.encryption_key {
            Vault::from_config(key).map_err(StartError::CardKeys)?;
        }
        let catalog = load_catalog(&config.catalog_path)?;
        let providers = build_providers(&config)?;
        let store = Store::open(&config.database_url, &config.database.pool())?
            .with_attention_clocks(config.attention.clocks());
        let sealer = seal_key(&config)?;
        let mut app = App::with_readiness(config, store, catalog, providers, Readiness::waiting());
        app.sealer = sealer;
        Ok(app)
    }

    /// Opens, then connects and migrates at once: fails if the database cannot be reached.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let app = App::open(config)?;
        readiness::migrate_once(&app.store, app.catalog.plans(), &app.readiness).await?;
        Ok(app)
    }
}

/// The seal key, when this process runs the sealing job; created on the first start.
fn seal_key(config: &Config) -> Result<Option<Arc<SealKey>>, StartError> {
    if !(config.seal.enabled && config.jobs.enabled) {
        return Ok(None);
    }
    let (key, created) = config.seal.read_or_create_key()?;
    if created {
        tracing::warn!(
            key_file = %config.seal.key_file,
            public_key = %key.public_base64(),
            "created a new seal key; give its public key to whoever audits this installation"
        );
    }
    Ok(Some(Arc::new(key)))
}

pub fn load_catalog(path: &str) -> Result<Catalog, StartError> {
    if path.is_empty() {
        return Ok(Catalog::default_catalog());
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| StartError::CatalogFile { path: path.to_owned(), source })?;
    Catalog::from_toml(&text).map_err(|source| StartError::Catalog { path: path.to_owned(), source })
}

pub fn build_providers(config: &Config) -> Result<Vec<Arc<dyn Provider>>, StartError> {
    config.providers.iter().map(|p| build_provider(config, p)).collect()
}

fn build_provider(config: &Config, p: &ProviderConfig) -> Result<Arc<dyn Provider>, StartError> {
    adapter(config, p).map_err(|source| StartError::Provider { name: p.name.clone(), source })
}

fn adapter(config: &Config, p: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderSetupError> {
    let private_text = inline_or_file(
        p.app_private_key.as_ref().map(|s| s.expose().as_str()),
        p.app_private_key_file.as_deref(),
        "app_private_key",
    )?;
    let public_text =
        inline_or_file(p.provider_public_key.as_deref(), p.provider_public_key_file.as_deref(), "provider_public_key")?;
    let app_private_key = RsaPrivateKey::parse(&private_text, "app_private_key")?;
    let alipay_public_key = RsaPublicKey::parse(&public_text, "provider_public_key")?;
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
    })?;
    Ok(Arc::new(alipay))
}

fn inline_or_file(inline: Option<&str>, file: Option<&str>, what: &'static str) -> Result<String, ProviderSetupError> {
    match (inline, file) {
        (Some(text), None) => Ok(text.to_owned()),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| ProviderSetupError::KeyFile {
            what,
            path: path.to_owned(),
            source,
        }),
        (Some(_), Some(_)) => Err(ProviderSetupError::KeyTwice(what)),
        (None, None) => Err(ProviderSetupError::KeyMissing(what)),
    }
}
