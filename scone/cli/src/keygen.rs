//! `scone keygen` and `scone pubkey`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use scone::SigningKey;

use crate::out::{self, outln};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the signing key.
    #[arg(long, short)]
    out: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate()?;
    key.save(&args.out, args.force)?;
    print_public(&key)?;
    out::note(format_args!("wrote signing key to {}", args.out.display()));
    Ok(ExitCode::SUCCESS)
}

pub fn pubkey(file: &Path) -> anyhow::Result<ExitCode> {
    print_public(&SigningKey::load(file)?)?;
    Ok(ExitCode::SUCCESS)
}

/// First line: the public key alone, as `--pubkey` takes it; second: the key ID.
fn print_public(key: &SigningKey) -> anyhow::Result<()> {
    outln!("{}", key.public_key())?;
    outln!("key-id {}", key.key_id())
}
