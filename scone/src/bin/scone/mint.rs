//! `scone mint`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use scone::{Draft, EndpointId, Minter, ObjectId, ServiceId, SigningKey, Status};

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The signing key file (from `scone keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The service the SCONE belongs to.
    #[arg(long, allow_hyphen_values = true)]
    service: ServiceId,
    /// The state, as JSON.
    #[arg(long, conflicts_with = "data_file", allow_hyphen_values = true)]
    data: Option<String>,
    /// A file holding the state as JSON (`-` for standard input).
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// How long the SCONE stays valid (for example 90s, 30m, 2h).
    #[arg(long, default_value = "30m", value_parser = parse_ttl)]
    ttl: Duration,
    /// The endpoint (session) ID, 32 hex digits; random when not given.
    #[arg(long)]
    endpoint: Option<EndpointId>,
    /// The object ID.
    #[arg(long, default_value_t = 0)]
    object: u64,
    /// The state version.
    #[arg(long, default_value_t = 1)]
    version: u64,
    /// The operation status: idle, in-progress, completed or failed.
    #[arg(long, default_value = "idle")]
    status: Status,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_millis(1) {
        return Err("the ttl must be at least 1ms".into());
    }
    Ok(ttl)
}

/// Largest state file read: well over any SCONE's size limit, so the limit reports it.
const MAX_DATA_FILE_BYTES: u64 = 16 * 1024 * 1024;

fn read_data(args: &MintArgs) -> anyhow::Result<Vec<u8>> {
    let (json, origin) = match (&args.data, &args.data_file) {
        (Some(json), _) => (json.clone(), "--data".to_owned()),
        (None, Some(path)) => {
            let mut json = String::new();
            let reader: Box<dyn Read> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(path).with_context(|| path.display().to_string())?)
            };
            reader
                .take(MAX_DATA_FILE_BYTES)
                .read_to_string(&mut json)
                .with_context(|| path.display().to_string())?;
            (json, path.display().to_string())
        }
        (None, None) => return Ok(Vec::new()),
    };
    let value: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("{origin} is not valid JSON"))?;
    Ok(serde_json::to_vec(&value)?)
}

pub fn mint(args: MintArgs) -> anyhow::Result<ExitCode> {
    let state = read_data(&args)?;
    let key = SigningKey::load(&args.key)?;
    let endpoint = match args.endpoint {
        Some(endpoint) => endpoint,
        None => EndpointId::random()?,
    };
    let draft = Draft::new(args.service, endpoint)
        .with_state(state)
        .with_ttl(args.ttl)
        .with_object(ObjectId(args.object))
        .with_version(args.version)
        .with_status(args.status);
    let scone = Minter::new(key).mint(draft)?;
    println!("{}", scone.to_text());
    Ok(ExitCode::SUCCESS)
}
