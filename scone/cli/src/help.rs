//! The `--help` texts shown after the options: what the output means, exit status, examples.

/// `scone --help`.
pub const SCONE: &str = "\
Exit status, the same whatever the output format:
  0  success; for inspect and verify, the SCONE is valid
  1  bad input (a missing key file, garbage text, bad JSON), or the SCONE is not valid
  2  usage error (an unknown flag, a missing or malformed argument)
  3  inspect without --pubkey: the SCONE decodes and passes every check that needs no
     key (expiry; --service and --max-ttl if given), but its signature was not checked

Examples:
  scone keygen --out cart.key
  PK=$(scone pubkey cart.key | head -n 1)
  T=$(scone mint --key cart.key --service cart --data '{\"items\":[\"apple\"]}' --ttl 30m)
  scone inspect \"$T\" --pubkey \"$PK\" --service cart
  scone verify \"$T\" --pubkey \"$PK\"";

/// `scone keygen --help`.
pub const KEYGEN: &str = "\
Line 1 of the output is the public key alone, as --pubkey takes it; line 2 is its key ID.

Exit status: 0 written; 1 the file exists (without --force) or cannot be written; 2 usage.

Examples:
  scone keygen --out cart.key
  PK=$(scone keygen --out cart.key | head -n 1)";

/// `scone pubkey --help`.
pub const PUBKEY: &str = "\
Line 1 of the output is the public key alone, as --pubkey takes it; line 2 is its key ID.

Exit status: 0 printed; 1 the file is missing, not a key, or readable by others; 2 usage.

Examples:
  scone pubkey cart.key
  PK=$(scone pubkey cart.key | head -n 1)";

/// `scone mint --help`.
pub const MINT: &str = "\
Exit status: 0 minted; 1 bad input (key file, JSON, a SCONE over the size limit); 2 usage.

Examples:
  scone mint --key cart.key --service cart --data '{\"items\":[\"apple\"]}' --ttl 30m
  echo '{\"items\":[]}' | scone mint --key cart.key --service cart --data-file -";

/// `scone inspect --help`.
pub const INSPECT: &str = "\
Times are RFC 3339 dates with their distance from now; --json adds milliseconds since the
epoch (*_ms fields). A refusal shows its stable code (`code` in --json): malformed,
unsupported-version, too-large, unknown-key, bad-signature, expired, not-yet-valid,
wrong-service, lifetime-too-long. A SCONE accepted only thanks to --clock-skew (expired
a moment ago by our clock) says so (`note` in --json).

Exit status, the same with --json: 0 valid; 1 not valid, or bad input; 2 usage error;
3 not verified: no --pubkey given, but every check that needs no key passes.

Examples:
  scone inspect \"$T\" --pubkey \"$PK\" --service cart   # every field, then the verdict
  echo \"$T\" | scone inspect --json                     # from stdin; exit 3: not verified";

/// `scone verify --help`.
pub const VERIFY: &str = "\
Prints `valid`, or the reason, its stable code in brackets, and why:
  expired [expired]: expired at 2030-01-01T12:00:00.000Z (3s ago), beyond the clock-skew allowance of 30s
Codes: malformed, unsupported-version, too-large, unknown-key, bad-signature, expired,
not-yet-valid, wrong-service, lifetime-too-long.

Exit status: 0 valid; 1 not valid, or bad input; 2 usage error.

Examples:
  scone verify \"$T\" --pubkey \"$PK\" --service cart
  scone verify \"$T\" --pubkey \"$OLD\" --pubkey \"$NEW\"   # during a key rotation";
