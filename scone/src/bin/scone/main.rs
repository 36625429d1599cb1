//! `scone`: make keys, mint SCONEs, and inspect or verify them.
//!
//! Exit status: 0 on success (for `inspect` and `verify`: the SCONE is valid, or for
//! `inspect` without `--pubkey`, it decodes); 1 when the input is bad or the SCONE is not
//! valid; 2 for usage errors.

mod inspect;
mod keygen;
mod mint;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make keys, mint SCONEs (signed state-caching objects), and inspect or verify them.
#[derive(Debug, Parser)]
#[command(name = "scone", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new signing key (mode 0600) and print its public key and key ID.
    Keygen(keygen::KeygenArgs),
    /// Print the public key and key ID of a signing key file.
    Pubkey {
        /// The signing key file.
        file: PathBuf,
    },
    /// Mint a SCONE and print it in text form.
    Mint(mint::MintArgs),
    /// Decode a SCONE, show every field and say whether it is valid.
    Inspect(inspect::InspectArgs),
    /// Say only whether a SCONE is valid (exit 0) or why not (exit 1).
    Verify(inspect::VerifyArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match Cli::parse().command {
        Command::Keygen(args) => keygen::keygen(args),
        Command::Pubkey { file } => keygen::pubkey(&file),
        Command::Mint(args) => mint::mint(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Verify(args) => inspect::verify(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
