//! What flows and job runs are given: the database, the catalog, the providers, the
//! platform's delivery endpoints, the card-code vault and an HTTP client, with the
//! configuration they were built from. Cheap to clone. It holds no HTTP routing and no
//! notification intake, so everything that needs these can take them without importing
//! the server's outer layers.

use crate::card_vault::Vault;
use crate::config::{Config, EndpointConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use zerodrop_domain::Catalog;
use zerodrop_providers::Provider;
use zerodrop_store::Store;

/// Timeout of the client that calls the platform's delivery endpoints; each request
/// also sets the endpoint's own, shorter, timeout.
const ENDPOINT_CLIENT_TIMEOUT_MS: u64 = 30_000;

#[derive(Clone)]
pub struct Services(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub catalog: Catalog,
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    /// The platform's delivery endpoints, by name.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Card codes at rest; `None` when no key is configured (card keys are not sold then).
    pub vault: Option<Vault>,
    /// For calls to the platform's delivery endpoints.
    pub http: reqwest::Client,
    /// Wakes idle job workers when a job becomes due now, instead of waiting for the next poll.
    pub wake_workers: Notify,
    /// Names this process's job leases (visible in the jobs table when debugging).
    pub instance_id: String,
}

impl std::ops::Deref for Services {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Services {
    pub fn new(config: Config, store: Store, catalog: Catalog, providers: Vec<Arc<dyn Provider>>) -> Services {
        let providers = providers.into_iter().map(|p| (p.name().to_owned(), p)).collect();
        let endpoints = config.delivery_endpoints.iter().map(|e| (e.name.clone(), e.clone())).collect();
        // A wrong card-key key is refused at start (see `App::start`); here it is optional.
        let vault = config.card_keys.encryption_key.as_ref().and_then(|k| Vault::from_config(k).ok());
        // Building a client fails only if TLS cannot initialise; the default client would
        // then fail the same way on first use, and every delivery attempt records the error.
        let http =
            zerodrop_providers::http_client::client(std::time::Duration::from_millis(ENDPOINT_CLIENT_TIMEOUT_MS))
                .unwrap_or_default();
        Services(Arc::new(Inner {
            config,
            store,
            catalog,
            providers,
            endpoints,
            vault,
            http,
            wake_workers: Notify::new(),
            instance_id: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        }))
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.get(name)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Tells idle workers that a job may be due now.
    pub fn wake(&self) {
        self.wake_workers.notify_waiters();
    }
}
