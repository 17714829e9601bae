//! Project automation. `cargo xtask test` makes sure the peer tools the tests
//! drive (qemu-img/qemu-io/qemu-nbd, nbdinfo/nbdcopy, fio, nbdkit, openssl) are installed, then
//! runs every test of the workspace in the release profile (the same build
//! `cargo build --release` makes, so nothing is compiled twice).
//! `cargo xtask bench` runs every benchmark side by side with its peer and
//! writes the table into BENCHMARKS.md (see `bench.rs`).

mod bench;

use std::process::{Command, ExitCode};

/// A peer tool the tests need and the Debian package that ships it.
const PEER_TOOLS: &[(&str, &str)] = &[
    ("qemu-io", "qemu-utils"),
    ("qemu-img", "qemu-utils"),
    ("qemu-nbd", "qemu-utils"),
    ("nbdinfo", "libnbd-bin"),
    ("nbdcopy", "libnbd-bin"),
    ("fio", "fio"),
    ("nbdkit", "nbdkit"),
    ("openssl", "openssl"),
    ("curl", "curl"),
];

/// Peer tools only the benchmarks need: the HTTP load generator, and
/// QEMU's storage daemon (live migration's peer).
const BENCH_TOOLS: &[(&str, &str)] = &[("wrk", "wrk"), ("qemu-storage-daemon", "qemu-utils")];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("install-peers") => match install_peers(&[]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask test [-- CARGO TEST ARGS]\n       cargo xtask bench [--only NAME,..] [--no-write]\n       cargo xtask install-peers"
            );
            ExitCode::from(2)
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("xtask: {msg}");
    ExitCode::FAILURE
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Peer tools from PyPI: the command, and the pinned requirement it comes
/// from. schemathesis fuzzes the API against its OpenAPI document
/// (`tests/api_fuzz.rs`); OpenStack's clients drive the Block Storage v3
/// API (`tests/openstack_clients.rs`); componentize-py builds the Python
/// example drivers (`host/build.rs`). Pinned because their options and
/// output change between releases.
const PYPI_TOOLS: &[(&str, &str)] = &[
    ("st", "schemathesis==4.32.5"),
    ("openstack", "python-openstackclient==10.5.0"),
    ("cinder", "python-cinderclient==9.10.0"),
    ("componentize-py", "componentize-py==0.25.0"),
];

/// Installs the PyPI tools that are missing from PATH, with pip.
fn install_pypi_tools() -> Result<(), String> {
    let missing: Vec<&str> = PYPI_TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, req)| *req)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing from PyPI {}", missing.join(" "));
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&missing)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("pip install {} failed with {s}", missing.join(" "))),
        Err(e) => Err(format!("cannot run python3 -m pip: {e}")),
    }
}

/// Installs the Debian packages of the test peers and of `extra` that are
/// missing from PATH, and the PyPI tools.
fn install_peers(extra: &[(&str, &str)]) -> Result<(), String> {
    install_pypi_tools()?;
    let mut missing: Vec<&str> = PEER_TOOLS
        .iter()
        .chain(extra)
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(" "));
    // apt-get needs root; use sudo when we are not.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("apt-get {} failed with {s}", args.join(" "))),
            Err(e) => Err(format!("cannot run apt-get: {e}")),
        }
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    apt(&install)
}

fn test(extra: &[String]) -> ExitCode {
    if let Err(e) = install_peers(&[]) {
        return fail(&e);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["test", "--release", "--workspace"])
        .args(extra)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => fail(&format!("cannot run cargo: {e}")),
    }
}
