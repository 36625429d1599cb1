//! `scone inspect` and `scone verify`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use scone::{PublicKey, Scone, ServiceId, DEFAULT_MAX_SCONE_BYTES};

use crate::out::outln;
use crate::time::{date, date_and_relative};
use crate::verdict::{check, Checks, Report, Verdict};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SCONE in text form; `-` or nothing reads it from standard input.
    scone: Option<String>,
    /// A trusted public key (repeat for several, as during a key rotation).
    // Base64url keys may start with '-' (1 in 64): never mistake one for a flag.
    #[arg(long = "pubkey", value_name = "KEY", allow_hyphen_values = true)]
    pubkeys: Vec<PublicKey>,
    #[command(flatten)]
    checks: CheckArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The checks `inspect` and `verify` share, besides the keys.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The service the SCONE must belong to; the keys are trusted for it alone. Without
    /// it, the keys are trusted for whatever service the SCONE names.
    #[arg(long, allow_hyphen_values = true)]
    service: Option<ServiceId>,
    /// How far the issuer's clock may differ from ours when checking expiry.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    clock_skew: Duration,
    /// Refuse a SCONE valid for longer than this from issue to expiry (for example 30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_ttl: Option<Duration>,
}

impl CheckArgs {
    fn with_keys<'a>(&'a self, pubkeys: &'a [PublicKey]) -> Checks<'a> {
        Checks {
            pubkeys,
            service: self.service.as_ref(),
            clock_skew: self.clock_skew,
            max_ttl: self.max_ttl,
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The SCONE in text form; `-` or nothing reads it from standard input.
    scone: Option<String>,
    /// A trusted public key (repeat for several, as during a key rotation).
    #[arg(
        long = "pubkey",
        value_name = "KEY",
        required = true,
        allow_hyphen_values = true
    )]
    pubkeys: Vec<PublicKey>,
    #[command(flatten)]
    checks: CheckArgs,
}

fn read_scone(arg: Option<&str>) -> anyhow::Result<Scone> {
    let text = match arg {
        Some(text) if text != "-" => text.to_owned(),
        _ => {
            let mut text = String::new();
            // Twice the text size of the largest SCONE: enough to report "too large".
            let cap = (DEFAULT_MAX_SCONE_BYTES as u64) * 3;
            std::io::stdin()
                .take(cap)
                .read_to_string(&mut text)
                .context("could not read the scone from standard input")?;
            text
        }
    };
    if text.trim().is_empty() {
        anyhow::bail!("no scone given (pass it as an argument or on standard input)");
    }
    Scone::from_text(&text).context("could not decode the scone")
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let scone = read_scone(args.scone.as_deref())?;
    let report = check(&scone, &args.checks.with_keys(&args.pubkeys))?;
    match (&report.verdict, &report.skew_note) {
        (Verdict::Valid, None) => outln!("valid")?,
        (Verdict::Valid, Some(note)) => outln!("valid: {note}")?,
        _ => outln!("{}: {}", report.headline(), report.detail())?,
    }
    Ok(report.exit().into())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let scone = read_scone(args.scone.as_deref())?;
    let report = check(&scone, &args.checks.with_keys(&args.pubkeys))?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&as_json(&scone, &report))?
        )?;
    } else {
        print_fields(&scone, &report)?;
    }
    Ok(report.exit().into())
}

/// The state as JSON if it is JSON (as `scone mint` writes it), else `None`.
fn state_json(scone: &Scone) -> Option<serde_json::Value> {
    // A sealed state is ciphertext, whatever its plaintext's format.
    (!scone.is_sealed())
        .then(|| serde_json::from_slice(scone.state()).ok())
        .flatten()
}

fn print_fields(scone: &Scone, report: &Report) -> anyhow::Result<()> {
    let state = match state_json(scone) {
        Some(json) => json.to_string(),
        None if scone.state().is_empty() => "(empty)".into(),
        None => format!("base64 {}", STANDARD.encode(scone.state())),
    };
    let now_ms = report.now_ms;
    let rows = [
        ("format", scone.format_version().to_string()),
        ("service", scone.service().to_string()),
        ("endpoint", scone.endpoint().to_string()),
        ("object", scone.object().to_string()),
        ("status", scone.status().to_string()),
        ("version", scone.version().to_string()),
        ("issued at", date_and_relative(scone.issued_at_ms(), now_ms)),
        (
            "expires at",
            date_and_relative(scone.expires_at_ms(), now_ms),
        ),
        ("key id", scone.key_id().to_string()),
        (
            "issuer tag",
            if scone.has_tag() { "yes" } else { "no" }.into(),
        ),
        (
            "signature",
            match scone.batch_size_bound() {
                1 => "its own".to_owned(),
                n => format!("shared by a batch of up to {n}"),
            },
        ),
        ("size", format!("{} bytes", scone.encoded_len())),
        ("encoding", scone.state_format().to_string()),
        (
            "sealed",
            if scone.is_sealed() { "yes" } else { "no" }.into(),
        ),
        ("state", format!("{} bytes: {state}", scone.state().len())),
        (
            "verdict",
            format!("{} ({})", report.headline(), report.detail()),
        ),
    ];
    for (name, value) in rows {
        outln!("{name:<11} {value}")?;
    }
    if let Some(note) = &report.skew_note {
        outln!("{:<11} {note}", "note")?;
    }
    Ok(())
}

fn as_json(scone: &Scone, report: &Report) -> serde_json::Value {
    serde_json::json!({
        "format": scone.format_version(),
        "service": scone.service().as_str(),
        "endpoint": scone.endpoint().to_string(),
        "object": scone.object().0,
        "status": scone.status().as_str(),
        "version": scone.version(),
        "issued_at": date(scone.issued_at_ms()),
        "issued_at_ms": scone.issued_at_ms(),
        "expires_at": date(scone.expires_at_ms()),
        "expires_at_ms": scone.expires_at_ms(),
        "now": date(report.now_ms),
        "now_ms": report.now_ms,
        "key_id": scone.key_id().to_string(),
        "issuer_tag": scone.has_tag(),
        "batch_size_bound": scone.batch_size_bound(),
        "size": scone.encoded_len(),
        "state_format": scone.state_format().as_str(),
        "sealed": scone.is_sealed(),
        "state_len": scone.state().len(),
        "state": state_json(scone),
        "state_base64": STANDARD.encode(scone.state()),
        "verdict": report.word(),
        "code": report.code(),
        "detail": report.detail(),
        "valid": matches!(report.verdict, Verdict::Valid),
        "accepted_within_clock_skew": report.skew_note.is_some(),
        "note": report.skew_note,
        "exit_status": report.exit() as u8,
    })
}
