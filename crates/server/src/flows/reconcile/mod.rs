//! Reconciliation against a provider's bill: [`import`] stores the bill and what differs in
//! one transaction, with a repair job per difference; [`repair`] ends each difference
//! through the one payment or refund path, or puts it in front of a person.

pub mod day;
pub mod file;
pub mod import;
pub mod repair;

/// Why an import was refused. Nothing of the bill was stored.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The file is not a bill zerodrop can take (its reader's error, naming file, line
    /// and column).
    #[error("{0}")]
    Bill(String),
    /// The provider could not give the bill (unreachable, refused): try again later.
    #[error("provider: {0}")]
    Provider(String),
    #[error("provider {0} is not configured")]
    UnknownProvider(String),
    #[error(transparent)]
    Store(#[from] zerodrop_store::StoreError),
}
