//! An array's settings and secrets reach its driver through the contract's
//! `config` interface, and the secrets never come out again: not in the
//! log, the events, an API answer or a stored model update, whatever the
//! driver does with them. Run against a real `ferry serve` with a hostile
//! test component as the array's driver.

mod support;

use serde_json::json;
use support::{Launch, Server};

/// The secrets, long and unlikely enough to be found only where leaked.
const TOKEN: &str = "tok-5d1f0c9ae7b2";
const PASSWORD: &str = "pw-81c3e6f04d2a";
const TOKEN_VAR: &str = "FERRY_TEST_ARRAY_TOKEN";

fn start(dir: &std::path::Path) -> Server {
    let password_file = dir.join("array.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[[array]]\nname = \"m1\"\ndriver = \"misbehave\"\n\
             [array.settings]\nendpoint = \"https://array.invalid:8443\"\n\
             [array.secrets]\ntoken = {{ env = \"{TOKEN_VAR}\" }}\n\
             password = {{ file = {password_file:?} }}\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n\
             [[driver]]\nname = \"misbehave\"\npath = {:?}\n",
            ferry::guests::MISBEHAVE_PATH
        ),
    )
    .unwrap();
    Server::launch(
        &dir.join("data"),
        Some(&config),
        &Launch {
            capture_stderr: true,
            // Debug shows the drivers' console output and every log line.
            rust_log: Some("debug".into()),
            env: vec![(TOKEN_VAR.into(), TOKEN.into())],
            ..Launch::default()
        },
    )
}

fn create(server: &Server, name: &str, array: &str) -> (u16, serde_json::Value) {
    server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": 1 << 20, "array": array})),
    )
}

#[test]
fn a_driver_reads_its_arrays_settings_and_secrets_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (status, body) = create(&server, "settings", "m1");
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("endpoint=https://array.invalid:8443, token=present"),
        "{message}"
    );
    assert!(
        message.contains("the array's configuration has no secret \"nothing-by-this-name\""),
        "{message}"
    );
}

#[test]
fn secrets_never_leave_the_host_whatever_the_driver_does_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut answers = Vec::new();
    for name in ["leak", "leak-update", "leak-panic"] {
        let (status, body) = create(&server, name, "m1");
        assert!(status >= 400, "{name}: {status} {body}");
        answers.push(body.to_string());
    }
    // The error's message says what happened, with the secrets blanked.
    assert!(
        answers[0].contains("refused token [redacted] and password [redacted]"),
        "{}",
        answers[0]
    );
    assert!(
        answers[1].contains("holds one of its array's secrets"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].contains("cannot log in with [redacted]"),
        "{}",
        answers[2]
    );
    let (_, volumes) = server.call("GET", "/v1/volumes", None);
    let (_, events) = server.call("GET", "/v1/events?follow=false", None);
    let (_, drivers) = server.call("GET", "/v1/drivers", None);
    let (_, arrays) = server.call("GET", "/v1/arrays", None);
    // The array shows its settings and its secrets' names, not their text.
    let m1 = server.array("m1");
    assert_eq!(
        m1["settings"]["endpoint"], "https://array.invalid:8443",
        "{m1}"
    );
    assert_eq!(
        m1["secrets"],
        serde_json::json!(["password", "token"]),
        "{m1}"
    );
    let log = server.log.as_ref().unwrap();
    // The driver's own log line came through, blanked.
    assert!(
        log.wait_for(
            "logging in with token [redacted] and password [redacted]",
            std::time::Duration::from_secs(5)
        )
        .is_some(),
        "{:#?}",
        log.lines()
    );
    // So did what it printed to its console (shown at debug level).
    assert!(
        log.wait_for(
            "console: token [redacted], password [redacted]",
            std::time::Duration::from_secs(5)
        )
        .is_some(),
        "{:#?}",
        log.lines()
    );
    let everything = [
        answers.join("\n"),
        volumes.to_string(),
        events.to_string(),
        drivers.to_string(),
        arrays.to_string(),
        log.lines().join("\n"),
    ];
    for (what, text) in ["answers", "volumes", "events", "drivers", "arrays", "log"]
        .iter()
        .zip(&everything)
    {
        for secret in [TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{what} holds a secret:\n{text}");
        }
    }
}

#[test]
fn a_secret_that_cannot_be_read_stops_the_start_with_its_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[[array]]\nname = \"p1\"\ndriver = \"plain\"\n\
         [array.secrets]\ntoken = { file = \"/nonexistent/token\" }\n\
         short = { value = \"abc\" }\n",
    )
    .unwrap();
    let (started, output) = support::serve_expecting_refusal(&dir.path().join("data"), &config);
    assert!(!started, "{output}");
    assert!(
        output.contains("secret short") || output.contains("secret token"),
        "{output}"
    );
    assert!(
        output.contains("cannot read file /nonexistent/token") || output.contains("6 to"),
        "{output}"
    );
}
