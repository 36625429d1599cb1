//! `scone mint`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use scone::sealed::StateSealer;
use scone::{Draft, EndpointId, Minter, ObjectId, ServiceId, SigningKey, StateFormat, Status};

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The signing key file (from `scone keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The service the SCONE belongs to.
    #[arg(long, allow_hyphen_values = true)]
    service: ServiceId,
    /// The state, in the form --format names (JSON by default).
    #[arg(long, conflicts_with = "data_file", allow_hyphen_values = true)]
    data: Option<String>,
    /// A file holding the state, in the form --format names (`-` for standard input).
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// How the state is given, and the state format the SCONE's claims name: `json` is
    /// stored compact and read by `#[derive(SconeState)]` types; `postcard-hex` is the
    /// hex of a postcard encoding (what those types write); `raw` is stored as given and
    /// tagged opaque, which typed readers refuse.
    #[arg(long, value_enum, default_value_t = DataFormat::Json)]
    format: DataFormat,
    /// Seal the state with a key derived from the signing key, so that only the
    /// service's servers (with `sealed_state` on) can read it.
    #[arg(long)]
    seal: bool,
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

/// How `--data` is given, and the state format it is minted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DataFormat {
    /// JSON text, minted compact as a `json` state.
    Json,
    /// Hex digits of a postcard encoding, minted as a `postcard` state.
    PostcardHex,
    /// Bytes as given, minted as an `opaque` state.
    Raw,
}

impl DataFormat {
    fn state_format(self) -> StateFormat {
        match self {
            DataFormat::Json => StateFormat::Json,
            DataFormat::PostcardHex => StateFormat::Postcard,
            DataFormat::Raw => StateFormat::Opaque,
        }
    }
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

/// The state, or `None` when neither --data nor --data-file is given.
fn read_data(args: &MintArgs) -> anyhow::Result<Option<Vec<u8>>> {
    let (data, origin) = match (&args.data, &args.data_file) {
        (Some(data), _) => (data.clone().into_bytes(), "--data".to_owned()),
        (None, Some(path)) => {
            let mut data = Vec::new();
            let reader: Box<dyn Read> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(path).with_context(|| path.display().to_string())?)
            };
            reader
                .take(MAX_DATA_FILE_BYTES)
                .read_to_end(&mut data)
                .with_context(|| path.display().to_string())?;
            (data, path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    let state = match args.format {
        DataFormat::Json => {
            let value: serde_json::Value = serde_json::from_slice(&data)
                .with_context(|| format!("{origin} is not valid JSON"))?;
            serde_json::to_vec(&value)?
        }
        DataFormat::PostcardHex => parse_hex(&data)
            .with_context(|| format!("{origin} is not hex (--format postcard-hex)"))?,
        DataFormat::Raw => data,
    };
    Ok(Some(state))
}

/// Hex digits, with any whitespace between them ignored.
fn parse_hex(text: &[u8]) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 != 0 {
        anyhow::bail!("an odd number of hex digits ({})", digits.len());
    }
    let nibble = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .with_context(|| format!("{:?} is not a hex digit", c as char))
    };
    digits
        .chunks_exact(2)
        .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

pub fn mint(args: MintArgs) -> anyhow::Result<ExitCode> {
    let state = read_data(&args)?;
    let key = SigningKey::load(&args.key)?;
    let endpoint = match args.endpoint {
        Some(endpoint) => endpoint,
        None => EndpointId::random()?,
    };
    // No data at all is an empty state, in no format.
    let (state, state_format) = match state {
        Some(state) => (state, args.format.state_format()),
        None => (Vec::new(), StateFormat::Opaque),
    };
    let mut draft = Draft::new(args.service, endpoint)
        .with_state(state)
        .with_state_format(state_format)
        .with_ttl(args.ttl)
        .with_object(ObjectId(args.object))
        .with_version(args.version)
        .with_status(args.status);
    if args.seal {
        // Last: the seal binds the service, endpoint, object and version.
        StateSealer::new(&key).seal_draft(&mut draft)?;
    }
    let scone = Minter::new(key).mint(draft)?;
    crate::out::outln!("{}", scone.to_text())?;
    Ok(ExitCode::SUCCESS)
}
