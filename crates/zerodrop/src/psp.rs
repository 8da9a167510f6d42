//! `zerodrop sandbox-psp`: the sandbox provider as its own HTTP service.

use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use zerodrop_providers::keys::{RsaPrivateKey, RsaPublicKey};
use zerodrop_sandbox::faults::Faults;
use zerodrop_sandbox::state::Merchant;
use zerodrop_sandbox::Sandbox;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 9090)]
    pub port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The sandbox's private key (PKCS#8 PEM). Generated and written here if missing.
    #[arg(long, default_value = "./data/sandbox/sandbox_private_key.pem")]
    pub key_file: PathBuf,
    /// Where to write the sandbox's public key: zerodrop's `provider_public_key_file`.
    #[arg(long, default_value = "./data/sandbox/sandbox_public_key.pem")]
    pub public_key_out: PathBuf,
    /// The merchant (zerodrop's provider entry) allowed to use this sandbox.
    #[arg(long)]
    pub merchant_app_id: String,
    #[arg(long)]
    pub merchant_seller_id: String,
    /// The merchant's app public key (PEM or base64): verifies its requests.
    #[arg(long)]
    pub merchant_public_key_file: PathBuf,
    /// Faults as JSON, e.g. '{"drop_rate_pct":20,"duplicate_rate_pct":10}'. Also
    /// adjustable at run time with POST /sandbox/faults.
    #[arg(long)]
    pub faults: Option<String>,
}

pub async fn run(args: &Args) -> Result<()> {
    let key = load_or_create_key(&args.key_file)?;
    let public = key.public_key();
    if let Some(dir) = args.public_key_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.public_key_out, public.to_pem())?;
    let faults = match &args.faults {
        Some(json) => serde_json::from_str(json).context("--faults")?,
        None => Faults::none(),
    };
    let sandbox = Sandbox::with_key(key, faults)?;
    let merchant_key_text = std::fs::read_to_string(&args.merchant_public_key_file)
        .with_context(|| format!("reading {}", args.merchant_public_key_file.display()))?;
    let app_public_key = RsaPublicKey::parse(&merchant_key_text, "merchant public key").map_err(|e| anyhow!("{e}"))?;
    sandbox.add_merchant(Merchant {
        app_id: args.merchant_app_id.clone(),
        seller_id: args.merchant_seller_id.clone(),
        app_public_key,
    });
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let address = listener.local_addr()?;
    println!("sandbox provider listening on http://{address}");
    println!("  gateway:    http://{address}/gateway.do");
    println!("  public key: {}", args.public_key_out.display());
    println!("  users pay:  POST http://{address}/sandbox/pay {{\"order_string\": \"…\"}}");
    sandbox
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn load_or_create_key(path: &PathBuf) -> Result<RsaPrivateKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        return RsaPrivateKey::parse(&text, "sandbox key").map_err(|e| anyhow!("{}: {e}", path.display()));
    }
    let key = RsaPrivateKey::generate().map_err(|e| anyhow!("{e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, key.to_pkcs8_pem().map_err(|e| anyhow!("{e}"))?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(key)
}
