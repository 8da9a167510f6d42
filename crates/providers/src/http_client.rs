//! The one way zerodrop builds HTTP clients: rustls with aws-lc (the same crypto library
//! as the signatures), no redirects, explicit timeouts.

use std::time::Duration;

/// Builds a client. Installs aws-lc as rustls's process-wide provider first; reqwest
/// cannot build a TLS client without one (a second install is a harmless no-op).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        // A payment provider never redirects; following one could leak signed requests.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
}
