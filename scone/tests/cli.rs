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
    assert_eq!(out.status.code(), Some(0));
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
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
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
