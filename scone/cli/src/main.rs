//! `scone`: make keys, mint SCONEs (signed state-caching objects), and inspect or verify
//! them, from the shell.
//!
//! ```sh
//! scone keygen --out cart.key
//! PK=$(scone pubkey cart.key | head -n 1)
//! T=$(scone mint --key cart.key --service cart --data '{"items":["apple"]}' --ttl 30m)
//! scone inspect "$T" --pubkey "$PK" --service cart
//! scone verify "$T" --pubkey "$PK"
//! ```
//!
//! # Exit status
//! The same for every command, whatever the output format (`--json` too):
//! - 0: success; for `inspect` and `verify`, the SCONE is valid.
//! - 1: bad input (a missing key file, garbage text, bad JSON), or the SCONE is not valid.
//! - 2: usage error (an unknown flag, a missing or malformed argument).
//! - 3: `inspect` without `--pubkey`: the SCONE decodes and passes every check that needs
//!   no key (expiry; `--service` and `--max-ttl` if given), but its signature was not
//!   checked.
//!
//! A refusal is printed with its stable kebab-case code (`expired`, `bad-signature`,
//! `unknown-key`, ...: [`scone::RejectReason::code`]). A reader that closes the pipe early
//! (`| head -n 1`) ends the output quietly, not the command (see [`out`]).
//!
//! # Layout
//! - [`keygen`]: `scone keygen` and `scone pubkey`.
//! - [`mint`]: `scone mint`.
//! - [`inspect`]: `scone inspect` and `scone verify`, their arguments and output.
//! - [`verdict`]: what a check of a SCONE concludes, its code, words and exit status.
//! - [`time`]: how times and spans are printed.
//! - [`out`]: standard output that goes quiet when its reader has gone.
//! - [`help`]: the `--help` texts: exit status and examples.

mod help;
mod inspect;
mod keygen;
mod mint;
mod out;
mod time;
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make keys, mint SCONEs (signed state-caching objects), and inspect or verify them.
#[derive(Debug, Parser)]
#[command(name = "scone", version, after_help = help::SCONE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new signing key (mode 0600) and print its public key and key ID.
    #[command(after_help = help::KEYGEN)]
    Keygen(keygen::KeygenArgs),
    /// Print the public key and key ID of a signing key file.
    #[command(after_help = help::PUBKEY)]
    Pubkey {
        /// The signing key file.
        file: PathBuf,
    },
    /// Mint a SCONE and print it in text form.
    #[command(after_help = help::MINT)]
    Mint(mint::MintArgs),
    /// Decode a SCONE, show every field and say whether it is valid.
    #[command(after_help = help::INSPECT)]
    Inspect(inspect::InspectArgs),
    /// Say only whether a SCONE is valid (exit 0) or why not (exit 1).
    #[command(after_help = help::VERIFY)]
    Verify(inspect::VerifyArgs),
}

/// The exit statuses this program sets itself (clap sets 2, for usage errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `inspect` and `verify`, the SCONE is valid.
    Success = 0,
    /// Bad input, or the SCONE is not valid.
    Failure = 1,
    /// `inspect` without `--pubkey`: decoded and passes every check that needs no key.
    NotVerified = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
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
            out::note(format_args!("error: {error:#}"));
            Exit::Failure.into()
        }
    }
}
