//! `zerodrop admin seal-key new|public`: the seal key that signs checkpoints.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use zerodrop_server::Config;

#[derive(Subcommand)]
pub enum SealKeyCommand {
    /// Create a new seal key (refuses to replace an existing file) and print its public key.
    New {
        /// Where to write it; defaults to `seal.key_file`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the public key of `seal.key_file`, for auditors (`seal.trusted_public_keys`).
    Public,
}

pub fn run(config: &Config, command: &SealKeyCommand) -> Result<ExitCode> {
    match command {
        SealKeyCommand::New { out } => {
            let path = out.clone().unwrap_or_else(|| PathBuf::from(&config.seal.key_file));
            let key = zerodrop_server::config::write_new_key(&path)?;
            eprintln!("wrote a new seal key to {} (readable by its owner only)", path.display());
            println!("{}", key.public_base64());
        }
        SealKeyCommand::Public => println!("{}", config.seal.read_key()?.public_base64()),
    }
    Ok(ExitCode::SUCCESS)
}
