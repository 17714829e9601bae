//! NBD over TLS (`NBD_OPT_STARTTLS`) against a real `ferry serve`, with
//! the clients people use: qemu-io with `tls-creds-x509`, nbdinfo and
//! nbdcopy with `nbds://` URIs. Certificates are made at test time with
//! the `openssl` command.

mod support;
#[path = "support_nbd.rs"]
mod support_nbd;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use support::migrations::{create, with_attachment};
use support::sockets::closed_within;
use support::tls::{Pki, make_pki, nbds_uri, qemu_io_ok, qemu_io_tls};
use support::{Server, export_of, qemu_io, require_tool, serve_expecting_refusal};
use support_nbd::{go_bytes, read_option_reply, request_bytes};

const MIB: usize = 1 << 20;

/// A configuration with one plain array and the given `[nbd]` settings.
fn config(dir: &Path, nbd: &str) -> PathBuf {
    let path = dir.join("ferry.toml");
    let text = format!("[nbd]\n{nbd}\n\n[[array]]\nname = \"p1\"\ndriver = \"plain\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `[nbd]` TLS settings of `pki` in `mode`.
fn tls_settings(mode: &str, pki: &Pki) -> String {
    format!(
        "tls = \"{mode}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        pki.cert.display(),
        pki.key.display()
    )
}

fn nbdinfo(args: &[&str]) -> std::process::Output {
    require_tool("nbdinfo", "libnbd-bin");
    Command::new("nbdinfo")
        .args(args)
        .env("LIBNBD_DEBUG", "1")
        .output()
        .expect("run nbdinfo")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `ferry serve` with TLS `mode` on a fresh CA (and the `[nbd]`
/// settings `extra`), and one volume of `size` bytes on it.
fn tls_server(dir: &Path, mode: &str, extra: &str, size: u64) -> (Pki, Server, String) {
    let pki = make_pki(dir, "ours");
    let settings = format!("{}\n{extra}", tls_settings(mode, &pki));
    let config = config(dir, &settings);
    let server = Server::start(&dir.join("data"), Some(&config));
    let id = create(&server, "vol", "p1", size);
    (pki, server, id)
}

/// Everything a client needs over TLS works, nothing works without it,
/// and a client trusting another CA never gets through the handshake.
#[test]
fn required_tls_serves_tls_clients_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, server, id) = tls_server(dir.path(), "required", "", 16 << 20);
    let other = make_pki(dir.path(), "theirs");
    with_attachment(&server, &id, |uri| {
        assert!(uri.starts_with("nbds://"), "{uri}");
        let out = qemu_io_tls(
            uri,
            &pki.client_dir,
            &["write -P 0x5c 0 4M", "flush", "read -P 0x5c 0 4M"],
        );
        assert!(qemu_io_ok(&out), "qemu-io over TLS: {out:?}");

        let tls_uri = nbds_uri(uri, &pki.client_dir);
        let out = nbdinfo(&["--size", &tls_uri]);
        assert!(out.status.success(), "nbdinfo over TLS: {out:?}");
        assert_eq!(text(&out.stdout).trim(), (16 << 20).to_string());

        require_tool("nbdcopy", "libnbd-bin");
        let copy = dir.path().join("copy.raw");
        let out = Command::new("nbdcopy")
            .arg(&tls_uri)
            .arg(&copy)
            .output()
            .expect("run nbdcopy");
        assert!(out.status.success(), "nbdcopy over TLS: {out:?}");
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(bytes.len(), 16 << 20);
        assert!(bytes[..4 * MIB].iter().all(|&b| b == 0x5c));
        assert!(bytes[4 * MIB..].iter().all(|&b| b == 0));

        // Plaintext: every option is answered TLS_REQD.
        let plain = uri.replacen("nbds://", "nbd://", 1);
        let out = Command::new("qemu-io")
            .args(["-f", "raw", "-c", "read 0 4k", &plain])
            .output()
            .unwrap();
        assert!(!out.status.success(), "plaintext qemu-io got in");
        assert!(
            text(&out.stderr).contains("TLS negotiation required"),
            "{out:?}"
        );
        let out = nbdinfo(&["--size", &plain]);
        assert!(!out.status.success(), "plaintext nbdinfo got in");
        assert!(
            text(&out.stderr).contains("this server requires TLS"),
            "{out:?}"
        );

        // A client that trusts another CA refuses our certificate.
        let out = qemu_io_tls(uri, &other.client_dir, &["read 0 4k"]);
        assert!(!qemu_io_ok(&out), "qemu-io trusted a foreign CA: {out:?}");
        assert!(
            text(&out.stderr).to_lowercase().contains("certificate"),
            "{out:?}"
        );
        let out = nbdinfo(&["--size", &nbds_uri(uri, &other.client_dir)]);
        assert!(!out.status.success(), "nbdinfo trusted a foreign CA");
    });
    server.stop();
}

/// With `tls = "on"` plaintext and TLS clients share a volume.
#[test]
fn tls_on_serves_plaintext_and_tls_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, server, id) = tls_server(dir.path(), "on", "", 8 << 20);
    with_attachment(&server, &id, |uri| {
        assert!(uri.starts_with("nbd://"), "{uri}");
        qemu_io(uri, &["write -P 0xa7 0 1M"]);
        let out = qemu_io_tls(
            uri,
            &pki.client_dir,
            &["read -P 0xa7 0 1M", "write -P 0x3e 1M 1M"],
        );
        assert!(qemu_io_ok(&out), "qemu-io over TLS: {out:?}");
        qemu_io(uri, &["read -P 0x3e 1M 1M"]);
        let out = nbdinfo(&["--size", &nbds_uri(uri, &pki.client_dir)]);
        assert!(out.status.success(), "nbdinfo over TLS: {out:?}");
        assert_eq!(text(&out.stdout).trim(), (8 << 20).to_string());
    });
    server.stop();
}

/// Connects, reads the greeting, and sends the client flags, STARTTLS
/// and then `behind`.
fn send_starttls(addr: &str, behind: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).unwrap();
    let mut hello = 3u32.to_be_bytes().to_vec();
    hello.extend_from_slice(b"IHAVEOPT");
    hello.extend_from_slice(&5u32.to_be_bytes());
    hello.extend_from_slice(&0u32.to_be_bytes());
    hello.extend_from_slice(behind);
    s.write_all(&hello).unwrap();
    s
}

/// A client that asks for TLS and then stalls in the TLS handshake is
/// closed at the handshake deadline, and one that sends bytes behind
/// STARTTLS before its reply is closed at once.
#[test]
fn the_handshake_deadline_covers_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server, _) = tls_server(
        dir.path(),
        "required",
        "handshake_timeout_ms = 1000",
        MIB as u64,
    );
    let started = Instant::now();
    let mut stalled = send_starttls(&server.nbd, &[]);
    let mut reply = [0u8; 20];
    stalled.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[12..16], &1u32.to_be_bytes(), "STARTTLS not acked");
    // Half a ClientHello, then silence.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)),
        "a stalled TLS handshake stayed open"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    let mut s = send_starttls(&server.nbd, b"IHAVEOPT injected before the reply");
    assert!(
        closed_within(&mut s, Duration::from_millis(900)),
        "bytes behind STARTTLS were not refused"
    );
    server.stop();
}

/// `ferry serve` with unusable TLS settings exits at once, naming the
/// setting at fault.
#[test]
fn bad_tls_settings_stop_ferry_serve() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "ours");
    let other = make_pki(dir.path(), "theirs");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let cert = pki.cert.display().to_string();
    let key = pki.key.display().to_string();
    let cases: [(String, &str); 6] = [
        (
            format!("tls = \"required\"\ntls_cert = \"{cert}\""),
            "nbd.tls_key is required",
        ),
        (
            format!(
                "tls = \"on\"\ntls_cert = \"{}\"\ntls_key = \"{key}\"",
                missing.display()
            ),
            "nbd.tls_cert",
        ),
        (
            format!(
                "tls = \"on\"\ntls_cert = \"{}\"\ntls_key = \"{key}\"",
                garbage.display()
            ),
            "nbd.tls_cert",
        ),
        (
            format!(
                "tls = \"on\"\ntls_cert = \"{cert}\"\ntls_key = \"{}\"",
                garbage.display()
            ),
            "nbd.tls_key",
        ),
        (
            format!(
                "tls = \"on\"\ntls_cert = \"{cert}\"\ntls_key = \"{}\"",
                missing.display()
            ),
            "nbd.tls_key",
        ),
        (
            format!(
                "tls = \"required\"\ntls_cert = \"{cert}\"\ntls_key = \"{}\"",
                other.key.display()
            ),
            "nbd.tls_key does not belong to the certificate of nbd.tls_cert",
        ),
    ];
    for (i, (settings, want)) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let config = config(&case, settings);
        let (started, stderr) = serve_expecting_refusal(&case.join("data"), &config);
        assert!(!started, "case {i} started: {settings}");
        assert!(stderr.contains(want), "case {i}: want {want:?} in {stderr}");
    }
}

/// A TLS client of our own on `plain`, after STARTTLS was acknowledged,
/// trusting the CA in `client_dir`.
fn tls_client(
    plain: TcpStream,
    client_dir: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(client_dir.join("ca-cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, plain)
}

/// Over TLS, a large write and read round-trip, and a write whose payload
/// stops halfway is closed at the request deadline: the reaper's shutdown
/// of the TCP socket wakes a TLS reader as it wakes a plaintext one.
#[test]
fn a_tls_write_payload_that_stalls_is_closed_at_the_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, server, id) = tls_server(
        dir.path(),
        "required",
        "request_timeout_ms = 1000",
        16 << 20,
    );
    with_attachment(&server, &id, |uri| {
        let mut plain = send_starttls(&server.nbd, &[]);
        let (_, ack, _) = read_option_reply(&mut plain);
        assert_eq!(ack, 1, "STARTTLS not acked");
        plain
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut tls = tls_client(plain, &pki.client_dir);
        tls.write_all(&go_bytes(export_of(uri))).unwrap();
        loop {
            match read_option_reply(&mut tls).1 {
                1 => break,
                3 => {}
                other => panic!("NBD_OPT_GO over TLS answered {other:#x}"),
            }
        }

        // 3 MiB: several payload pieces in, several sealed rounds out.
        let pattern: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8).collect();
        let mut write = request_bytes(1, 0, 1, 4096, pattern.len() as u32);
        write.extend_from_slice(&pattern);
        tls.write_all(&write).unwrap();
        let mut reply = [0u8; 16];
        tls.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[4..16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // Requests in flight together may run in any order: read only
        // once the write is done.
        tls.write_all(&request_bytes(0, 0, 2, 4096, pattern.len() as u32))
            .unwrap();
        tls.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[4..16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let mut back = vec![0u8; pattern.len()];
        tls.read_exact(&mut back).unwrap();
        assert!(back == pattern, "read over TLS differs from the write");

        let mut stalled = request_bytes(1, 0, 3, 0, MIB as u32);
        stalled.extend_from_slice(&vec![0x11; MIB / 2]);
        tls.write_all(&stalled).unwrap();
        let started = Instant::now();
        let mut sink = [0u8; 64];
        let ended = tls.read(&mut sink);
        let waited = started.elapsed();
        assert!(
            matches!(&ended, Ok(0))
                || ended.as_ref().is_err_and(|e| !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
            "the stalled connection answered {ended:?}"
        );
        assert!(
            waited > Duration::from_millis(500) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    });
    server.stop();
}
