//! Outbound HTTP from drivers (`wasi:http/outgoing-handler`): a driver
//! reaches the origins its array lists and nothing else — not another port,
//! not the host's own API, not a private address behind a listed name, not
//! a redirect off the list — its bodies are capped and its requests end at
//! the call's deadline, and the host stays healthy throughout. Run against
//! a real `ferry serve` with a hostile test component and loopback HTTP
//! servers started here.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Server;

/// A loopback HTTP/1 server answering `/ok`, `/redirect` (to `redirect_to`),
/// `/big` (20 MiB) and `/slow` (never); counts its connections.
struct ArrayEndpoint {
    port: u16,
    connections: Arc<AtomicUsize>,
}

fn endpoint(redirect_to: Option<u16>) -> ArrayEndpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let _ = match path.as_str() {
                    "/ok" => stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\nhello from the array",
                    ),
                    "/redirect" => stream.write_all(
                        format!(
                            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/ok\r\n\
                             content-length: 0\r\nconnection: close\r\n\r\n",
                            redirect_to.unwrap_or(9)
                        )
                        .as_bytes(),
                    ),
                    "/big" => {
                        let size = 20usize << 20;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
                        );
                        let chunk = vec![0x5au8; 1 << 20];
                        stream.write_all(head.as_bytes()).and_then(|()| {
                            (0..20).try_for_each(|_| stream.write_all(&chunk))
                        })
                    }
                    _ => {
                        std::thread::sleep(Duration::from_secs(30));
                        Ok(())
                    }
                };
            });
        }
    });
    ArrayEndpoint { port, connections }
}

fn start(dir: &std::path::Path, allowed: u16) -> Server {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\ndeadline_ms = 3000\nmemory_bytes = 67108864\n\
             [[array]]\nname = \"m1\"\ndriver = \"misbehave\"\n\
             http_allow = [\"http://127.0.0.1:{allowed}\", \"http://localhost:{allowed}\"]\n\
             [[array]]\nname = \"m2\"\ndriver = \"misbehave\"\n\
             [[driver]]\nname = \"misbehave\"\npath = {:?}\n",
            ferry::guests::MISBEHAVE_PATH
        ),
    )
    .unwrap();
    Server::start(&dir.join("data"), Some(&config))
}

/// What the driver reported for `name` on `array` (its create fails on
/// purpose with the report).
fn report(server: &Server, array: &str, name: &str) -> String {
    let (status, body) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": 1 << 20, "array": array})),
    );
    assert!(status >= 400, "{name}: {status} {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_driver_reaches_its_arrays_endpoint_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let outside = endpoint(None);
    let array = endpoint(Some(outside.port));
    let server = start(dir.path(), array.port);
    let p = array.port;

    let ok = report(&server, "m1", &format!("http-get:http://127.0.0.1:{p}/ok"));
    assert!(ok.contains("status 200: hello from the array"), "{ok}");
    let m1 = server.array("m1");
    assert_eq!(
        m1["http_allow"],
        json!([
            format!("http://127.0.0.1:{p}"),
            format!("http://localhost:{p}")
        ]),
        "{m1}"
    );

    let denied = "denied by the host: the origin is not in the array's http_allow";
    for url in [
        format!("http://127.0.0.1:{}/ok", outside.port),
        format!("{}/healthz", server.url),
        format!("https://127.0.0.1:{p}/ok"),
    ] {
        let r = report(&server, "m1", &format!("http-get:{url}"));
        assert!(r.contains(denied), "{url}: {r}");
    }
    let r = report(&server, "m2", &format!("http-get:http://127.0.0.1:{p}/ok"));
    assert!(r.contains(denied), "an array without http_allow: {r}");

    let r = report(&server, "m1", &format!("http-get:http://localhost:{p}/ok"));
    assert!(
        r.contains("resolves to an address that is not public"),
        "{r}"
    );

    let r = report(
        &server,
        "m1",
        &format!("http-follow:http://127.0.0.1:{p}/redirect"),
    );
    assert!(
        r.contains(&format!("followed to http://127.0.0.1:{}/ok", outside.port))
            && r.contains(denied),
        "{r}"
    );
    // Nothing ever reached the server off the list; the array's endpoint
    // saw the two allowed requests only.
    assert_eq!(outside.connections.load(Ordering::SeqCst), 0);
    assert_eq!(array.connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.call("GET", "/healthz", None).0, 200);
}

#[test]
fn bodies_are_capped_and_requests_end_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let array = endpoint(None);
    let server = start(dir.path(), array.port);
    let p = array.port;

    let r = report(&server, "m1", &format!("http-get:http://127.0.0.1:{p}/big"));
    assert!(r.contains("the response body failed"), "{r}");
    // A request body over the cap is refused before anything connects.
    let before = array.connections.load(Ordering::SeqCst);
    let r = report(
        &server,
        "m1",
        &format!("http-post-big:http://127.0.0.1:{p}/ok"),
    );
    assert!(
        r.contains("the request body is over the host's limit"),
        "{r}"
    );
    assert_eq!(array.connections.load(Ordering::SeqCst), before, "{r}");

    let started = Instant::now();
    let r = report(
        &server,
        "m1",
        &format!("http-get:http://127.0.0.1:{p}/slow"),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "a silent endpoint held the call {took:?}: {r}"
    );
    assert!(r.contains("timed out") || r.contains("deadline"), "{r}");
    // The host answers and the driver works as before.
    assert_eq!(server.call("GET", "/healthz", None).0, 200);
    let ok = report(&server, "m1", &format!("http-get:http://127.0.0.1:{p}/ok"));
    assert!(ok.contains("status 200"), "{ok}");
}

/// A loopback HTTPS server answering every request with `hello over tls`,
/// its certificate signed by `pki`'s CA.
fn tls_endpoint(pki: &support::tls::Pki) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nhello over tls",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// HTTPS trusts the array's own CA file: a certificate it signed works, one
/// from another CA fails the handshake.
#[test]
fn https_trusts_the_arrays_ca_file_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ours = support::tls::make_pki(&dir.path().join("ours"), "array-ca");
    let theirs = support::tls::make_pki(&dir.path().join("theirs"), "other-ca");
    let port = tls_endpoint(&ours);
    let config = dir.path().join("ferry.toml");
    let mut text = String::new();
    for (array, ca) in [("m1", &ours), ("m2", &theirs)] {
        text.push_str(&format!(
            "[[array]]\nname = \"{array}\"\ndriver = \"misbehave\"\n\
             http_allow = [\"https://127.0.0.1:{port}\"]\nhttp_ca_file = {:?}\n",
            ca.client_dir.join("ca-cert.pem")
        ));
    }
    text.push_str(&format!(
        "[[driver]]\nname = \"misbehave\"\npath = {:?}\n",
        ferry::guests::MISBEHAVE_PATH
    ));
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let url = format!("https://127.0.0.1:{port}/ok");
    let r = report(&server, "m1", &format!("http-get:{url}"));
    assert!(r.contains("status 200: hello over tls"), "{r}");
    let r = report(&server, "m2", &format!("http-get:{url}"));
    assert!(
        r.contains("failed: GET") && !r.contains("status 200"),
        "{r}"
    );
}
