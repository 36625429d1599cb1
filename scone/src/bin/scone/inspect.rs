//! `scone inspect` and `scone verify`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use scone::{
    DecodeError, KeyRing, PublicKey, Scone, ServiceId, Verifier, VerifierConfig, VerifyError,
    DEFAULT_MAX_SCONE_BYTES,
};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SCONE in text form; `-` or nothing reads it from standard input.
    scone: Option<String>,
    /// A trusted public key (repeat for several, as during a key rotation).
    // Base64url keys may start with '-' (1 in 64): never mistake one for a flag.
    #[arg(long = "pubkey", value_name = "KEY", allow_hyphen_values = true)]
    pubkeys: Vec<PublicKey>,
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
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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

/// The outcome of checking a decoded SCONE.
enum Verdict {
    Valid,
    NotVerified,
    Invalid(VerifyError),
}

impl Verdict {
    fn word(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::NotVerified => "not verified",
            Verdict::Invalid(VerifyError::Expired { .. }) => "expired",
            Verdict::Invalid(VerifyError::NotYetValid { .. }) => "not yet valid",
            Verdict::Invalid(VerifyError::UnknownKey(_)) => "unknown key",
            Verdict::Invalid(VerifyError::KeyNotForService { .. }) => "key not for this service",
            Verdict::Invalid(VerifyError::LifetimeTooLong { .. }) => "lifetime too long",
            Verdict::Invalid(VerifyError::WrongService { .. }) => "wrong service",
            Verdict::Invalid(VerifyError::BadSignature) => "bad signature",
            Verdict::Invalid(VerifyError::Decode(DecodeError::TooLarge { .. })) => "too large",
            Verdict::Invalid(_) => "invalid",
        }
    }

    fn detail(&self) -> String {
        match self {
            Verdict::Valid => "signature, key, service and expiry check out".into(),
            Verdict::NotVerified => "no --pubkey given, so the signature was not checked".into(),
            Verdict::Invalid(error) => error.to_string(),
        }
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            Verdict::Invalid(_) => ExitCode::FAILURE,
            Verdict::Valid | Verdict::NotVerified => ExitCode::SUCCESS,
        }
    }
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

/// What `inspect` and `verify` check a SCONE against.
struct Checks<'a> {
    pubkeys: &'a [PublicKey],
    service: Option<&'a ServiceId>,
    clock_skew: Duration,
    max_ttl: Option<Duration>,
}

fn check(scone: &Scone, checks: &Checks<'_>) -> anyhow::Result<Verdict> {
    if checks.pubkeys.is_empty() {
        return Ok(match checks.service {
            Some(expected) if scone.service() != expected => {
                Verdict::Invalid(VerifyError::WrongService {
                    expected: expected.clone(),
                    found: scone.service().clone(),
                })
            }
            _ => Verdict::NotVerified,
        });
    }
    // The user names the keys for this one SCONE: without --service, that is a statement
    // about the service it names.
    let trusted_for = checks.service.unwrap_or(scone.service());
    let keys = KeyRing::for_service(trusted_for.clone(), checks.pubkeys.iter().copied())
        .context("the --pubkey keys cannot be trusted together")?;
    let mut verifier = Verifier::new(keys).with_config(VerifierConfig {
        clock_skew: checks.clock_skew,
        max_ttl: checks.max_ttl,
        ..VerifierConfig::default()
    });
    if let Some(service) = checks.service {
        verifier = verifier.for_service(service.clone());
    }
    Ok(match verifier.verify(scone) {
        Ok(()) => Verdict::Valid,
        Err(error) => Verdict::Invalid(error),
    })
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let scone = read_scone(args.scone.as_deref())?;
    let verdict = check(
        &scone,
        &Checks {
            pubkeys: &args.pubkeys,
            service: args.service.as_ref(),
            clock_skew: args.clock_skew,
            max_ttl: args.max_ttl,
        },
    )?;
    match &verdict {
        Verdict::Valid => println!("valid"),
        other => println!("{}: {}", other.word(), other.detail()),
    }
    Ok(verdict.exit_code())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let scone = read_scone(args.scone.as_deref())?;
    let verdict = check(
        &scone,
        &Checks {
            pubkeys: &args.pubkeys,
            service: args.service.as_ref(),
            clock_skew: args.clock_skew,
            max_ttl: args.max_ttl,
        },
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(&scone, &verdict))?
        );
    } else {
        print_fields(&scone, &verdict);
    }
    Ok(verdict.exit_code())
}

/// Milliseconds since the epoch of 10000-01-01: RFC 3339 (and humantime) stop at 9999.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

fn rfc3339(ms: u64) -> String {
    if ms >= YEAR_10000_MS {
        return format!("{ms} ms after the epoch (after the year 9999)");
    }
    humantime::format_rfc3339_millis(scone::clock::to_system_time(ms)).to_string()
}

/// The state as JSON if it is JSON (as `scone mint` writes it), else `None`.
fn state_json(scone: &Scone) -> Option<serde_json::Value> {
    serde_json::from_slice(scone.state()).ok()
}

fn print_fields(scone: &Scone, verdict: &Verdict) {
    let state = match state_json(scone) {
        Some(json) => json.to_string(),
        None if scone.state().is_empty() => "(empty)".into(),
        None => format!("base64 {}", STANDARD.encode(scone.state())),
    };
    let rows = [
        ("format", scone.format_version().to_string()),
        ("service", scone.service().to_string()),
        ("endpoint", scone.endpoint().to_string()),
        ("object", scone.object().to_string()),
        ("status", scone.status().to_string()),
        ("version", scone.version().to_string()),
        ("issued at", rfc3339(scone.issued_at_ms())),
        ("expires at", rfc3339(scone.expires_at_ms())),
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
        ("state", format!("{} bytes: {state}", scone.state().len())),
    ];
    for (name, value) in rows {
        println!("{name:<11} {value}");
    }
    println!(
        "{:<11} {} ({})",
        "verdict",
        verdict.word(),
        verdict.detail()
    );
}

fn as_json(scone: &Scone, verdict: &Verdict) -> serde_json::Value {
    serde_json::json!({
        "format": scone.format_version(),
        "service": scone.service().as_str(),
        "endpoint": scone.endpoint().to_string(),
        "object": scone.object().0,
        "status": scone.status().as_str(),
        "version": scone.version(),
        "issued_at": rfc3339(scone.issued_at_ms()),
        "issued_at_ms": scone.issued_at_ms(),
        "expires_at": rfc3339(scone.expires_at_ms()),
        "expires_at_ms": scone.expires_at_ms(),
        "key_id": scone.key_id().to_string(),
        "issuer_tag": scone.has_tag(),
        "batch_size_bound": scone.batch_size_bound(),
        "size": scone.encoded_len(),
        "state_len": scone.state().len(),
        "state": state_json(scone),
        "state_base64": STANDARD.encode(scone.state()),
        "verdict": verdict.word(),
        "detail": verdict.detail(),
        "valid": matches!(verdict, Verdict::Valid),
    })
}
