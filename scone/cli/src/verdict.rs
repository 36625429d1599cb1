//! What `inspect` and `verify` conclude about a SCONE, and how they say it.

use std::time::Duration;

use anyhow::Context;
use scone::{
    Clock, DecodeError, KeyRing, ManualClock, PublicKey, Scone, ServiceId, SystemClock, Verifier,
    VerifierConfig, VerifyError,
};

use crate::time::{date, relative, span, span_ms};
use crate::Exit;

/// What `inspect` and `verify` check a SCONE against.
pub struct Checks<'a> {
    /// The trusted public keys; none means the signature cannot be checked.
    pub pubkeys: &'a [PublicKey],
    /// The service the SCONE must belong to, if the user named one.
    pub service: Option<&'a ServiceId>,
    /// How far the issuer's clock may differ from ours.
    pub clock_skew: Duration,
    /// The longest lifetime accepted, if limited.
    pub max_ttl: Option<Duration>,
}

/// The outcome of checking a decoded SCONE.
pub enum Verdict {
    /// Every check passed, the signature included.
    Valid,
    /// Every check that needs no key passed; with no key given, the signature was not checked.
    NotVerified,
    /// Refused, and why.
    Invalid(VerifyError),
}

/// A verdict, with what it was reached against: what the command prints.
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// The one clock reading the verdict and every relative time printed are taken from.
    pub now_ms: u64,
    /// The clock-skew allowance the verdict was reached with.
    pub clock_skew: Duration,
    /// Set when the SCONE passed only thanks to the clock-skew allowance: it expired a
    /// moment ago, or is issued a moment in the future, by our clock.
    pub skew_note: Option<String>,
}

/// Checks `scone`: all of it with keys given, all but the signature without.
pub fn check(scone: &Scone, checks: &Checks<'_>) -> anyhow::Result<Report> {
    let keys = if checks.pubkeys.is_empty() {
        KeyRing::new()
    } else {
        // The user names the keys for this one SCONE: without --service, that is a
        // statement about the service it names.
        let trusted_for = checks.service.unwrap_or(scone.service());
        KeyRing::for_service(trusted_for.clone(), checks.pubkeys.iter().copied())
            .context("the --pubkey keys cannot be trusted together")?
    };
    let now_ms = SystemClock.now_ms();
    let mut verifier = Verifier::new(keys)
        .with_config(VerifierConfig {
            clock_skew: checks.clock_skew,
            max_ttl: checks.max_ttl,
            ..VerifierConfig::default()
        })
        .with_clock(ManualClock::new(now_ms));
    if let Some(service) = checks.service {
        verifier = verifier.for_service(service.clone());
    }
    let verdict = match verifier.verify(scone) {
        Ok(()) => Verdict::Valid,
        // The verifier checks size, service, validity window and lifetime before it looks
        // up the key (as its docs say): with an empty key ring, an unknown key means every
        // other check passed.
        Err(VerifyError::UnknownKey(_)) if checks.pubkeys.is_empty() => Verdict::NotVerified,
        Err(error) => Verdict::Invalid(error),
    };
    let skew_note = match verdict {
        Verdict::Invalid(_) => None,
        Verdict::Valid | Verdict::NotVerified => skew_note(scone, now_ms, checks.clock_skew),
    };
    Ok(Report {
        verdict,
        now_ms,
        clock_skew: checks.clock_skew,
        skew_note,
    })
}

/// What the clock-skew allowance let pass, if anything.
fn skew_note(scone: &Scone, now_ms: u64, clock_skew: Duration) -> Option<String> {
    let why = if scone.is_expired_at(now_ms) {
        format!("expired {} ago", span_ms(now_ms - scone.expires_at_ms()))
    } else if scone.issued_at_ms() > now_ms {
        let ahead = span_ms(scone.issued_at_ms() - now_ms);
        format!("issued {ahead} in the future")
    } else {
        return None;
    };
    Some(format!(
        "{why}, accepted within the clock-skew allowance ({})",
        span(clock_skew)
    ))
}

impl Report {
    /// The verdict in a few words.
    pub fn word(&self) -> &'static str {
        match &self.verdict {
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

    /// The stable kebab-case code of a refusal (`expired`, `bad-signature`), for scripts.
    pub fn code(&self) -> Option<&'static str> {
        match &self.verdict {
            Verdict::Invalid(error) => Some(error.reason().code()),
            Verdict::Valid | Verdict::NotVerified => None,
        }
    }

    /// The verdict's words and code: `valid`, or `expired [expired]`.
    pub fn headline(&self) -> String {
        match self.code() {
            Some(code) => format!("{} [{code}]", self.word()),
            None => self.word().to_owned(),
        }
    }

    /// Why, in a sentence.
    pub fn detail(&self) -> String {
        let skew = span(self.clock_skew);
        match &self.verdict {
            Verdict::Valid => "signature, key, service and expiry check out".into(),
            Verdict::NotVerified => "no --pubkey given, so the signature was not checked; \
                                     expiry, and --service and --max-ttl if given, check out"
                .into(),
            Verdict::Invalid(VerifyError::Expired {
                expires_at_ms,
                now_ms,
            }) => format!(
                "expired at {} ({}), beyond the clock-skew allowance of {skew}",
                date(*expires_at_ms),
                relative(*expires_at_ms, *now_ms)
            ),
            Verdict::Invalid(VerifyError::NotYetValid {
                issued_at_ms,
                now_ms,
            }) => format!(
                "issued at {} ({}, in the future), beyond the clock-skew allowance of {skew}",
                date(*issued_at_ms),
                relative(*issued_at_ms, *now_ms)
            ),
            Verdict::Invalid(VerifyError::LifetimeTooLong {
                lifetime_ms,
                max_ttl_ms,
            }) => format!(
                "valid for {} from issue to expiry, longer than the {} --max-ttl accepts",
                span_ms(*lifetime_ms),
                span_ms(*max_ttl_ms)
            ),
            Verdict::Invalid(error) => error.to_string(),
        }
    }

    /// The exit status this verdict gives, whatever the output format.
    pub fn exit(&self) -> Exit {
        match self.verdict {
            Verdict::Valid => Exit::Success,
            Verdict::NotVerified => Exit::NotVerified,
            Verdict::Invalid(_) => Exit::Failure,
        }
    }
}
