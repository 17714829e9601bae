//! TLS for the process-level NBD tests: a CA and a server certificate made
//! at test time with the `openssl` command, and the peer clients (qemu-io,
//! nbdinfo, nbdcopy) run over TLS against a `ferry serve`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::require_tool;

/// A test CA and a server certificate it signed, valid for 127.0.0.1 and
/// localhost.
pub struct Pki {
    /// The directory a client is pointed at: it holds `ca-cert.pem` only,
    /// the name qemu's `tls-creds-x509` and libnbd's `tls-certificates`
    /// look for.
    pub client_dir: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// The server certificate's extensions: what GnuTLS (qemu, libnbd) checks
/// of a server.
const SERVER_EXTENSIONS: &str = "basicConstraints=critical,CA:FALSE\n\
    keyUsage=critical,digitalSignature,keyEncipherment\n\
    extendedKeyUsage=serverAuth\n\
    subjectAltName=IP:127.0.0.1,DNS:localhost\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a fresh CA called `name` and a server certificate under `dir`
/// (P-256 keys: quick to make, understood by rustls and GnuTLS).
pub fn make_pki(dir: &Path, name: &str) -> Pki {
    require_tool("openssl", "openssl");
    let dir = dir.join(name);
    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    std::fs::write(dir.join("server.ext"), SERVER_EXTENSIONS).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca_subject = format!("/CN=Ferry test CA {name}");
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca-cert.pem",
        "-days",
        "2",
        "-subj",
        &ca_subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&dir, &csr);
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server-cert.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    std::fs::copy(dir.join("ca-cert.pem"), client_dir.join("ca-cert.pem")).unwrap();
    Pki {
        client_dir,
        cert: dir.join("server-cert.pem"),
        key: dir.join("server-key.pem"),
    }
}

/// Host, port and export of an `nbd://` or `nbds://` URI.
pub fn split_uri(uri: &str) -> (String, String, String) {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let (addr, export) = rest.split_once('/').expect("URI without an export");
    let (host, port) = addr.rsplit_once(':').expect("URI without a port");
    (host.to_owned(), port.to_owned(), export.to_owned())
}

/// The `nbds://` URI libnbd tools take for `uri`, trusting `client_dir`.
pub fn nbds_uri(uri: &str, client_dir: &Path) -> String {
    let (host, port, export) = split_uri(uri);
    format!(
        "nbds://{host}:{port}/{export}?tls-certificates={}",
        client_dir.display()
    )
}

/// qemu-io over TLS on the export of `uri`, trusting `client_dir`; the
/// raw output, so that a test can expect a failure.
pub fn qemu_io_tls(uri: &str, client_dir: &Path, commands: &[&str]) -> Output {
    require_tool("qemu-io", "qemu-utils");
    let (host, port, export) = split_uri(uri);
    let object = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        client_dir.display()
    );
    let image = format!("driver=nbd,host={host},port={port},export={export},tls-creds=tls0");
    let mut args = vec!["--object", &object, "--image-opts", &image];
    for c in commands {
        args.extend(["-c", c]);
    }
    Command::new("qemu-io")
        .args(&args)
        .output()
        .expect("run qemu-io")
}

/// Whether qemu-io ran every command without an error or a mismatch.
pub fn qemu_io_ok(out: &Output) -> bool {
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success()
        && !stdout.contains("Pattern verification failed")
        && !stdout.contains("failed:")
}
