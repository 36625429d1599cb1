//! `scone mint --format` and `--seal`, and what `scone inspect` says of them.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn scone(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scone"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the scone binary runs")
}

/// A directory holding a signing key file `key`.
fn with_key() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = scone(dir.path(), &["keygen", "--out", "key"]);
    assert!(out.status.success(), "{out:?}");
    dir
}

/// Mints with `extra` arguments and returns the SCONE's text.
fn mint(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["mint", "--key", "key", "--service", "cart"];
    args.extend_from_slice(extra);
    let out = scone(dir, &args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `scone inspect --json` of `text` (not verified: no key given).
fn inspect(dir: &Path, text: &str) -> serde_json::Value {
    let out = scone(dir, &["inspect", text, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"))
}

#[test]
fn json_is_the_default_and_is_tagged_json() {
    let dir = with_key();
    let text = mint(dir.path(), &["--data", r#"{"items": {"apple": 2}}"#]);
    let shown = inspect(dir.path(), &text);
    assert_eq!(shown["state_format"], "json");
    assert_eq!(shown["sealed"], false);
    assert_eq!(shown["state"], serde_json::json!({"items": {"apple": 2}}));
    let out = scone(dir.path(), &["inspect", &text]);
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("encoding") && l.ends_with("json")),
        "{lines}"
    );
}

#[test]
fn postcard_hex_and_raw_are_tagged_postcard_and_opaque() {
    let dir = with_key();
    let text = mint(
        dir.path(),
        &["--format", "postcard-hex", "--data", "01 05 6170706c65 02"],
    );
    let shown = inspect(dir.path(), &text);
    assert_eq!(shown["state_format"], "postcard");
    assert_eq!(shown["state_len"], 8);
    let text = mint(dir.path(), &["--format", "raw", "--data", "two apples"]);
    let shown = inspect(dir.path(), &text);
    assert_eq!(shown["state_format"], "opaque");
    assert_eq!(shown["state_len"], 10);
    // No data at all is an empty state, in no format.
    let shown = inspect(dir.path(), &mint(dir.path(), &[]));
    assert_eq!(shown["state_format"], "opaque");

    let out = scone(
        dir.path(),
        &[
            "mint",
            "--key",
            "key",
            "--service",
            "cart",
            "--format",
            "postcard-hex",
            "--data",
            "0g",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("not hex"), "{error}");
}

#[test]
fn a_sealed_state_is_shown_as_sealed_and_not_as_json() {
    let dir = with_key();
    let text = mint(dir.path(), &["--data", r#"{"secret": 1}"#, "--seal"]);
    let shown = inspect(dir.path(), &text);
    assert_eq!(shown["sealed"], true);
    assert_eq!(shown["state_format"], "json", "the plaintext's format");
    assert!(shown["state"].is_null(), "ciphertext is no JSON: {shown}");
    let out = scone(dir.path(), &["inspect", &text]);
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("sealed") && l.ends_with("yes")),
        "{lines}"
    );
}
