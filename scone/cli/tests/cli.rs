//! The `scone` binary, driven as a user would: keygen, pubkey, mint, inspect, verify.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::io::Write;

fn scone(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scone"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the scone binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Makes a key in `dir` and returns its public key (the first line of keygen's stdout).
fn keygen(dir: &Path, file: &str) -> String {
    let out = scone(dir, &["keygen", "--out", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().next().unwrap().to_owned()
}

fn mint(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["mint", "--key", "key", "--service", "cart"];
    args.extend_from_slice(extra);
    let out = scone(dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn keygen_writes_a_private_file_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = scone(dir.path(), &["keygen", "--out", "key"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let pubkey = scone(dir.path(), &["pubkey", "key"]);
    assert_eq!(stdout(&pubkey).lines().next(), Some(public.as_str()));
    assert!(stdout(&pubkey)
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("key-id "));

    let forced = scone(dir.path(), &["keygen", "--out", "key", "--force"]);
    assert!(forced.status.success());
    assert_ne!(stdout(&forced).lines().next(), Some(public.as_str()));
}

#[test]
fn mint_then_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let text = mint(
        dir.path(),
        &["--data", r#"{"items":["apple"]}"#, "--ttl", "30m"],
    );

    let out = scone(
        dir.path(),
        &["inspect", &text, "--pubkey", &public, "--service", "cart"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("service     cart"), "{shown}");
    assert!(shown.contains(r#"{"items":["apple"]}"#), "{shown}");
    assert!(shown.contains("verdict     valid"), "{shown}");

    let json = scone(
        dir.path(),
        &["inspect", &text, "--pubkey", &public, "--json"],
    );
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["valid"], true);
    assert_eq!(value["service"], "cart");
    assert_eq!(value["state"]["items"][0], "apple");
    assert_eq!(value["version"], 1);
}

#[test]
fn inspect_reads_standard_input_and_says_when_it_did_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "key");
    let text = mint(dir.path(), &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scone"))
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // 3: decoded, but not verified for want of a key (0 would read as "valid").
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("not verified"), "{}", stdout(&out));
}

#[test]
fn every_kind_of_invalid_scone_exits_1_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let other = keygen(dir.path(), "other");
    let text = mint(dir.path(), &["--data", "[1,2,3]"]);

    let verify = |text: &str, extra: &[&str]| {
        let mut args = vec!["verify", text];
        args.extend_from_slice(extra);
        scone(dir.path(), &args)
    };
    let ok = verify(&text, &["--pubkey", &public]);
    assert_eq!((ok.status.code(), stdout(&ok).trim()), (Some(0), "valid"));

    let unknown = verify(&text, &["--pubkey", &other]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).starts_with("unknown key"));

    let wrong = verify(&text, &["--pubkey", &public, "--service", "billing"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stdout(&wrong).starts_with("wrong service"));

    // Rotation: trusting both keys accepts a SCONE signed by either.
    let both = verify(&text, &["--pubkey", &other, "--pubkey", &public]);
    assert_eq!(both.status.code(), Some(0));

    // Change one byte of the state. (Not a character picked blindly in the text form: it
    // may fall in the issuer tag, which is not signed and which verifiers ignore.)
    let mut bytes = scone::Scone::from_text(&text).unwrap().encoded().to_vec();
    let at = bytes.windows(7).position(|w| w == b"[1,2,3]").unwrap();
    bytes[at + 1] = b'9';
    let tampered = scone::Scone::decode(bytes).unwrap().to_text();
    let bad = verify(&tampered, &["--pubkey", &public]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
}

#[test]
fn an_expired_scone_is_reported_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let text = mint(dir.path(), &["--ttl", "1ms"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = scone(
            dir.path(),
            &["verify", &text, "--pubkey", &public, "--clock-skew", "0s"],
        );
        if out.status.code() == Some(1) {
            assert!(stdout(&out).starts_with("expired"), "{}", stdout(&out));
            break;
        }
        assert!(Instant::now() < deadline, "never expired");
    }
}

/// Writes `text` to `path`, readable by its owner only, as a key file must be.
fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "key");
    let key = dir.path().join("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["pubkey", "key"][..],
        &["mint", "--key", "key", "--service", "cart"],
    ] {
        let out = scone(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(scone(dir.path(), &["pubkey", "key"]).status.success());
}

#[test]
fn max_ttl_refuses_a_scone_that_lives_longer() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let text = mint(dir.path(), &["--ttl", "2h"]);
    let verify = |max: &str| {
        scone(
            dir.path(),
            &["verify", &text, "--pubkey", &public, "--max-ttl", max],
        )
    };
    let long = verify("1h");
    assert_eq!(long.status.code(), Some(1));
    assert!(
        stdout(&long).starts_with("lifetime too long"),
        "{}",
        stdout(&long)
    );
    assert!(verify("2h").status.success());
    let inspected = scone(
        dir.path(),
        &[
            "inspect",
            &text,
            "--pubkey",
            &public,
            "--max-ttl",
            "1h",
            "--json",
        ],
    );
    assert_eq!(inspected.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(value["verdict"], "lifetime too long");
}

#[test]
fn bad_input_gets_a_clear_message_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "key");
    private_file(&dir.path().join("junk"), "hello");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["inspect", "not*a*scone"], 1, "not base64url"),
        (&["inspect", "AAAA"], 1, "unsupported scone format"),
        (&["inspect"], 1, "no scone given"),
        (
            &["mint", "--key", "missing", "--service", "cart"],
            1,
            "missing",
        ),
        (
            &["mint", "--key", "junk", "--service", "cart"],
            1,
            "not a valid signing key",
        ),
        (
            &["mint", "--key", "key", "--service", "a b"],
            2,
            "service id may not contain",
        ),
        (
            &["mint", "--key", "key", "--service", "c", "--data", "{x"],
            1,
            "not valid JSON",
        ),
        (
            &["mint", "--key", "key", "--service", "c", "--ttl", "soon"],
            2,
            "--ttl",
        ),
        (&["pubkey", "junk"], 1, "not a valid signing key"),
        (
            &["verify", "AAAA", "--pubkey", "short"],
            2,
            "not a valid public key",
        ),
        (&["verify", "AAAA"], 2, "--pubkey"),
    ];
    for (args, code, message) in cases {
        let out = scone(dir.path(), args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn times_past_the_year_9999_are_shown_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    // A TTL this long saturates the expiry to the largest time a SCONE can hold.
    let text = mint(dir.path(), &["--ttl", "500000000years"]);
    let out = scone(dir.path(), &["inspect", &text, "--pubkey", &public]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("after the year 9999"),
        "{}",
        stdout(&out)
    );
    let json = scone(dir.path(), &["inspect", &text, "--json"]);
    assert_eq!(json.status.code(), Some(3), "{}", stderr(&json));
}

#[test]
fn a_public_key_that_starts_with_a_hyphen_is_still_a_key() {
    let dir = tempfile::tempdir().unwrap();
    // One key in 64 has a base64url text starting with '-'; find one deterministically.
    let key = (0u8..=255)
        .map(|seed| scone::SigningKey::from_seed(&[seed; 32]))
        .find(|key| key.public_key().to_string().starts_with('-'))
        .expect("some seed gives a key starting with '-'");
    key.save(&dir.path().join("key"), false).unwrap();
    let public = key.public_key().to_string();
    let text = mint(dir.path(), &[]);
    for command in ["inspect", "verify"] {
        let out = scone(dir.path(), &[command, &text, "--pubkey", &public]);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
    }
    // Other values that may start with '-': JSON state and service names.
    let out = scone(
        dir.path(),
        &["mint", "--key", "key", "--service", "-edge", "--data", "-5"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out).trim().to_owned();
    let out = scone(
        dir.path(),
        &["inspect", &text, "--service", "-edge", "--json"],
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (value["service"].as_str(), value["state"].as_i64()),
        (Some("-edge"), Some(-5))
    );
}

/// `inspect --json` of `text`, parsed; `extra` adds arguments.
fn inspect_json(dir: &Path, text: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["inspect", text, "--json"];
    args.extend_from_slice(extra);
    let out = scone(dir, &args);
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (out.status.code(), value)
}

/// A SCONE that has expired by the CLI's clock (minted with a 1 ms TTL by `key`, whose
/// public key is `public`). Waits for the clock, bounded, never a bare sleep.
fn expired_scone(dir: &Path, public: &str) -> String {
    let text = mint(dir, &["--ttl", "1ms"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let args = ["verify", &text, "--pubkey", public, "--clock-skew", "0s"];
        if scone(dir, &args).status.code() == Some(1) {
            return text;
        }
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `scone` SCONE in `text` with one byte of its state changed: the signature breaks.
fn tampered(text: &str, state: &[u8]) -> String {
    let mut bytes = scone::Scone::from_text(text).unwrap().encoded().to_vec();
    let at = bytes.windows(state.len()).position(|w| w == state).unwrap();
    bytes[at + 1] ^= 1;
    scone::Scone::decode(bytes).unwrap().to_text()
}

#[test]
fn the_library_has_no_cli_dependencies() {
    // Depending on `scone` must not pull in the command's crates: the command is its own
    // package, and the library has no features that could bring them back.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = |name: &str| {
        metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no package {name}"))
            .clone()
    };
    let library = package("scone");
    assert_eq!(library["features"], serde_json::json!({}), "{library}");
    let deps: Vec<&str> = library["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for cli_only in [
        "clap",
        "anyhow",
        "serde_json",
        "tracing-subscriber",
        "humantime",
    ] {
        assert!(!deps.contains(&cli_only), "scone depends on {cli_only}");
    }
    let bins = |package: &serde_json::Value| -> Vec<String> {
        package["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == serde_json::json!(["bin"]))
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(bins(&library).is_empty(), "{:?}", bins(&library));
    assert_eq!(bins(&package("scone-cli")), ["scone"]);
}

/// The write end of a pipe whose read end is already closed: every write to it fails
/// with a broken pipe, from the first byte, with no race against a reader.
#[cfg(unix)]
fn closed_pipe() -> Stdio {
    use std::os::fd::FromRawFd;
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `pipe` writes two fresh descriptors into the two-element array, which this
    // function then owns: it closes the read end once and hands the write end, not used
    // anywhere else, to a `File` that owns it from then on.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert_eq!(libc::close(fds[0]), 0);
        Stdio::from(std::fs::File::from_raw_fd(fds[1]))
    }
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly_and_keeps_the_exit_status() {
    // `scone pubkey KEY | head -n 1`: the reader goes before the command is done. That
    // panicked with "failed printing to stdout: Broken pipe" and exit 101.
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let other = keygen(dir.path(), "other");
    let text = mint(dir.path(), &["--data", r#"{"items":["apple","pear"]}"#]);
    let cases: &[(&[&str], i32)] = &[
        (&["pubkey", "key"], 0),
        (&["keygen", "--out", "fresh"], 0),
        (&["mint", "--key", "key", "--service", "cart"], 0),
        (&["inspect", &text, "--pubkey", &public], 0),
        (&["inspect", &text, "--pubkey", &public, "--json"], 0),
        (&["inspect", &text], 3),
        (&["inspect", &text, "--pubkey", &other, "--json"], 1),
        (&["verify", &text, "--pubkey", &public], 0),
        (&["verify", &text, "--pubkey", &other], 1),
        (&["--help"], 0),
    ];
    for (args, code) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_scone"))
            .current_dir(dir.path())
            .args(*args)
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !err.to_lowercase().contains("broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
    }
    // keygen did its work all the same.
    assert!(dir.path().join("fresh").exists());
}

#[test]
fn a_scone_accepted_only_within_the_clock_skew_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let text = expired_scone(dir.path(), &public);

    // The default allowance is 30 s: expired a moment ago, still accepted, but not silently.
    let out = scone(dir.path(), &["inspect", &text, "--pubkey", &public]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("verdict     valid"), "{shown}");
    let note = shown
        .lines()
        .find_map(|line| line.strip_prefix("note        "))
        .unwrap_or_else(|| panic!("no note: {shown}"));
    assert!(note.starts_with("expired "), "{note}");
    assert!(
        note.ends_with(" ago, accepted within the clock-skew allowance (30s)"),
        "{note}"
    );

    let (code, value) = inspect_json(dir.path(), &text, &["--pubkey", &public]);
    assert_eq!(code, Some(0));
    assert_eq!(value["valid"], true);
    assert_eq!(value["accepted_within_clock_skew"], true);
    assert!(value["note"].as_str().unwrap().starts_with("expired "));

    let verified = scone(dir.path(), &["verify", &text, "--pubkey", &public]);
    assert_eq!(verified.status.code(), Some(0));
    assert!(
        stdout(&verified).starts_with("valid: expired "),
        "{}",
        stdout(&verified)
    );

    // A fresh SCONE has nothing to say about the allowance.
    let fresh = mint(dir.path(), &[]);
    let (_, value) = inspect_json(dir.path(), &fresh, &["--pubkey", &public]);
    assert_eq!(value["accepted_within_clock_skew"], false);
    assert!(value["note"].is_null());
    let out = scone(dir.path(), &["verify", &fresh, "--pubkey", &public]);
    assert_eq!(stdout(&out).trim(), "valid");
}

#[test]
fn times_are_printed_as_dates_and_spans_never_raw_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let text = expired_scone(dir.path(), &public);
    let (_, value) = inspect_json(dir.path(), &text, &[]);
    let expires_at = value["expires_at"].as_str().unwrap();
    let expires_at_ms = value["expires_at_ms"].to_string();
    assert!(expires_at.ends_with('Z'), "{expires_at}");

    let out = scone(
        dir.path(),
        &["verify", &text, "--pubkey", &public, "--clock-skew", "0s"],
    );
    assert_eq!(out.status.code(), Some(1));
    let line = stdout(&out);
    assert!(line.contains(expires_at), "{line}");
    assert!(line.contains(" ago)"), "{line}");
    assert!(!line.contains(&expires_at_ms), "{line}");

    let long = mint(dir.path(), &["--ttl", "2h"]);
    let out = scone(
        dir.path(),
        &["verify", &long, "--pubkey", &public, "--max-ttl", "1h"],
    );
    let line = stdout(&out);
    assert!(line.contains("valid for 2h "), "{line}");
    assert!(line.contains("the 1h --max-ttl accepts"), "{line}");
    assert!(!line.contains("7200000"), "{line}");

    // inspect: every instant a date, with its distance from now.
    let (_, value) = inspect_json(dir.path(), &long, &[]);
    let out = scone(dir.path(), &["inspect", &long]);
    let expires_row = stdout(&out)
        .lines()
        .find(|line| line.starts_with("expires at"))
        .unwrap()
        .to_owned();
    let expected = format!("{} (in 1h 59m", value["expires_at"].as_str().unwrap());
    assert!(expires_row.contains(&expected), "{expires_row}");
}

#[test]
fn exit_codes_mean_the_same_in_every_output_format() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let other = keygen(dir.path(), "other");
    let text = mint(dir.path(), &[]);
    let expired = expired_scone(dir.path(), &public);
    let cases: &[(&str, &[&str], i32)] = &[
        // 0: valid (the expired one within the default clock-skew allowance).
        (&text, &["--pubkey", &public], 0),
        (&expired, &["--pubkey", &public], 0),
        // 1: not valid, whether the signature could be checked or not.
        (&text, &["--pubkey", &other], 1),
        (&text, &["--pubkey", &public, "--service", "billing"], 1),
        (&text, &["--service", "billing"], 1),
        (&expired, &["--pubkey", &public, "--clock-skew", "0s"], 1),
        (&expired, &["--clock-skew", "0s"], 1),
        // 3: decoded, passes every check that needs no key, signature not checked.
        (&text, &[], 3),
        (&text, &["--service", "cart"], 3),
        (&expired, &[], 3),
    ];
    for (scone_text, extra, code) in cases {
        for json in [false, true] {
            let mut args = vec!["inspect", scone_text];
            args.extend_from_slice(extra);
            if json {
                args.push("--json");
            }
            let out = scone(dir.path(), &args);
            assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stdout(&out));
            if json {
                let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(value["exit_status"], *code, "{args:?}");
            }
        }
    }
    // 1: bad input; 2: usage; the same with --json.
    for json in [&[][..], &["--json"]] {
        let mut garbage = vec!["inspect", "not*a*scone"];
        garbage.extend_from_slice(json);
        let out = scone(dir.path(), &garbage);
        assert_eq!(out.status.code(), Some(1), "{garbage:?}");
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
        let mut usage = vec!["inspect", &text, "--no-such-flag"];
        usage.extend_from_slice(json);
        let out = scone(dir.path(), &usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}");
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    }
    // verify has no "not verified": it requires a key (usage error without one).
    assert_eq!(scone(dir.path(), &["verify", &text]).status.code(), Some(2));
    let verify = |key: &str| {
        scone(dir.path(), &["verify", &text, "--pubkey", key])
            .status
            .code()
    };
    assert_eq!((verify(&public), verify(&other)), (Some(0), Some(1)));
}

#[test]
fn every_refusal_prints_its_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let public = keygen(dir.path(), "key");
    let other = keygen(dir.path(), "other");
    let text = mint(dir.path(), &["--data", "[1,2,3]", "--ttl", "2h"]);
    let expired = expired_scone(dir.path(), &public);
    let forged = tampered(&text, b"[1,2,3]");
    let cases: &[(&str, &[&str], &str)] = &[
        (&text, &["--pubkey", &other], "unknown-key"),
        (
            &text,
            &["--pubkey", &public, "--service", "billing"],
            "wrong-service",
        ),
        (&forged, &["--pubkey", &public], "bad-signature"),
        (
            &expired,
            &["--pubkey", &public, "--clock-skew", "0s"],
            "expired",
        ),
        (
            &text,
            &["--pubkey", &public, "--max-ttl", "1h"],
            "lifetime-too-long",
        ),
    ];
    for (scone_text, extra, code) in cases {
        let mut args = vec!["verify", scone_text];
        args.extend_from_slice(extra);
        let out = scone(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{code}");
        let tag = format!(" [{code}]: ");
        assert!(stdout(&out).contains(&tag), "{code}: {}", stdout(&out));

        args[0] = "inspect";
        let out = scone(dir.path(), &args);
        let verdict = stdout(&out)
            .lines()
            .find(|line| line.starts_with("verdict"))
            .unwrap()
            .to_owned();
        assert!(verdict.contains(&format!(" [{code}] (")), "{verdict}");

        let (_, value) = inspect_json(dir.path(), scone_text, extra);
        assert_eq!(value["code"], *code, "{value}");
        assert_eq!(value["valid"], false);
    }
    let (_, value) = inspect_json(dir.path(), &text, &["--pubkey", &public]);
    assert!(value["code"].is_null(), "{value}");
}

#[test]
fn every_help_text_gives_the_exit_status_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &[][..],
        &["keygen"],
        &["pubkey"],
        &["mint"],
        &["inspect"],
        &["verify"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let out = scone(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = stdout(&out);
        assert!(help.contains("Exit status"), "{args:?}: {help}");
        assert!(help.contains("Examples:\n  scone "), "{args:?}: {help}");
    }
}
