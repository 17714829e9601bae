//! The API fuzzed against its own OpenAPI document: schemathesis generates
//! requests from `/openapi.json` (valid and invalid ones, and sequences
//! that follow the ids one call returns into the next) against a real
//! `ferry serve` with the admin token, and checks that no request gets a
//! server error and that every answer matches the document's schema.

mod support;

use std::process::Command;
use std::time::Instant;

use support::Server;

/// The schemathesis command line tool, installed by `cargo xtask
/// install-peers`.
const SCHEMATHESIS: &str = "st";

/// Arrays far smaller than any file system the tests run on: a volume
/// that does not fit is refused by the array (422 `no_space`), never by
/// the file system beneath (507), which is a server-side status by design.
/// 4 GiB each, so that the Block Storage API's whole-GiB volumes fit.
const CONFIG: &str = r#"
zoning = [["t1", "p1"], ["t1", "v1"]]

[[array]]
name = "t1"
driver = "takeover"
capacity_bytes = 4294967296

[[array]]
name = "v1"
driver = "vendor-copy"
capacity_bytes = 4294967296

[[array]]
name = "p1"
driver = "plain"
capacity_bytes = 4294967296
"#;

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    support::require_tool(SCHEMATHESIS, "schemathesis (from PyPI)");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let started = Instant::now();
    let out = Command::new(SCHEMATHESIS)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", server.token),
        ])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        // The coverage phase is left out: on some Python versions its
        // generator fails inside hypothesis, before a request is sent.
        .args(["--phases", "examples,fuzzing,stateful"])
        // Bounded for two cores: a few examples per operation, one
        // deadline for the whole run.
        .args(["--max-examples", "25", "--max-time", "150"])
        .args(["--request-timeout", "10", "--workers", "2"])
        .arg("--generation-deterministic")
        .env("NO_COLOR", "1")
        // Its cache and reports go to the scratch directory, not the tree.
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    // A run that tested nothing would pass too.
    assert!(report.contains("passed"), "{report}");
    server.stop();
}
