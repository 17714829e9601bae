//! The driver registry against a real `ferry serve`: uploads validated with
//! a specific refusal for each kind of bad component, versions installed,
//! activated, rolled back and kept across a restart, and hot swaps under
//! load (NBD I/O verified by fio, a migration polling the swapped driver,
//! a steady stream of HTTP requests) that drop nothing.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, require_tool, run};

const MIB: u64 = 1 << 20;

/// `bytes` with a custom section appended: the same driver, another digest,
/// as a vendor's rebuild would be.
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"ferry-test-build";
    let payload = n.to_le_bytes();
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `plain` as if built against a future, incompatible WIT release: every
/// mention of the driver interface's version is rewritten in place (same
/// length, so the binary stays well-formed).
fn future_world(bytes: &[u8]) -> Vec<u8> {
    rename_interface(bytes, b"ferry:driver/driver@0.3.0")
}

/// Rewrites every mention of the driver interface's name and version to
/// `to` (of the same length, so the binary stays well-formed).
fn rename_interface(bytes: &[u8], to: &[u8; 25]) -> Vec<u8> {
    let from = b"ferry:driver/driver@0.2.0";
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut replaced = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "the driver interface name was not found");
    out
}

/// A PUT that declares `length` body bytes and sends none; returns the
/// status and JSON body of the answer.
fn declared_upload(server: &Server, path: &str, length: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/wasm\r\ncontent-length: {length}\r\n\r\n",
        server.token
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the JSON body is complete; the server may keep the
    // connection open.
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && serde_json::from_str::<Value>(body).is_ok()
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "zoning = [[\"t1\", \"p1\"]]\n{extra}\n\
             [[array]]\nname = \"t1\"\ndriver = \"takeover\"\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n"
        ),
    )
    .unwrap();
    path
}

fn active_digest(server: &Server, name: &str) -> String {
    let (status, list) = server.call("GET", "/v1/drivers", None);
    assert_eq!(status, 200, "{list}");
    list["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no driver {name}: {list}"))["active_digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create_volume(server: &Server, array: &str, size: u64) -> String {
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "reg", "size_bytes": size, "array": array})),
    );
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn driver_events(server: &Server) -> Vec<Value> {
    let (_, page) = server.call("GET", "/v1/events?follow=false", None);
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "driver")
        .cloned()
        .collect()
}

#[test]
fn each_bad_upload_is_refused_with_its_own_code_and_the_old_version_serves() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "max_component_bytes = 4194304");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("reader.token"), "reader-token-0123456789\n").unwrap();
    let server = Server::start(&data, Some(&config));
    let before = active_digest(&server, "plain");
    let trap = std::fs::read(ferry::guests::TRAP_CAPABILITIES_PATH).unwrap();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage",
            b"definitely not a component".to_vec(),
            422,
            "not_wasm",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "core_module",
        ),
        (
            "another world",
            b"\0asm\x0d\0\x01\0".to_vec(),
            422,
            "wrong_world",
        ),
        (
            "future world",
            future_world(ferry::guests::PLAIN),
            422,
            "incompatible_world_version",
        ),
        (
            "truncated",
            ferry::guests::PLAIN[..ferry::guests::PLAIN.len() / 2].to_vec(),
            422,
            "compile_failed",
        ),
        ("traps in capabilities", trap, 422, "smoke_call_failed"),
        ("empty", Vec::new(), 400, "empty_body"),
    ];
    for (what, bytes, status, code) in &cases {
        let (got, body) = server.send_bytes("PUT", "/v1/drivers/plain", bytes);
        assert_eq!(got, *status, "{what}: {body}");
        assert_eq!(body["error"]["code"], *code, "{what}: {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{what}: {body}"
        );
        assert_eq!(active_digest(&server, "plain"), before, "{what}");
    }
    // Oversized: refused on its declared length, before the body is read
    // (the client here sends none of it).
    let (got, body) = declared_upload(&server, "/v1/drivers/plain", 5 << 20);
    assert_eq!(got, 413, "{body}");
    assert_eq!(body["error"]["code"], "component_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4194304"),
        "{body}"
    );
    assert_eq!(active_digest(&server, "plain"), before);
    // Refusals are per kind: no two cases share a code.
    let mut codes: Vec<&str> = cases.iter().map(|c| c.3).collect();
    codes.push("component_too_large");
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), cases.len() + 1);

    let (got, body) = server.send_bytes("PUT", "/v1/drivers/..%2Fx", ferry::guests::PLAIN);
    assert_eq!(got, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_name");
    // A reader may list drivers but not install one.
    let (got, body) = server
        .request(
            "POST",
            "/v1/drivers/plain/activate",
            Some(json!({"digest": before})),
            Some("reader-token-0123456789"),
        )
        .unwrap();
    assert_eq!(got, 403, "{body}");
    let (got, body) = server.call(
        "POST",
        "/v1/drivers/plain/activate",
        Some(json!({"digest": "00".repeat(32)})),
    );
    assert_eq!(
        (got, body["error"]["code"].clone()),
        (404, json!("driver_version_not_found"))
    );
    let (got, body) = server.call(
        "POST",
        "/v1/drivers/nosuch/activate",
        Some(json!({"digest": before})),
    );
    assert_eq!(
        (got, body["error"]["code"].clone()),
        (404, json!("driver_not_found"))
    );

    // The old version still serves: a volume's life cycle works.
    let id = create_volume(&server, "p1", 64 * MIB);
    let (status, _) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204);
    assert!(
        driver_events(&server).is_empty(),
        "refusals emit no driver events"
    );
    let (_, metrics) = server.metrics();
    assert!(
        metrics.contains("ferry_http_requests_total{method=\"PUT\",route=\"/v1/drivers/{name}\",status=\"422\"} 6"),
        "{metrics}"
    );
}

#[test]
fn versions_install_activate_roll_back_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let original = active_digest(&server, "plain");

    let v1 = variant(ferry::guests::PLAIN, 1);
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/plain", &v1);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["created"], true);
    assert_eq!(body["capabilities"]["sparse"], true);
    let d1 = body["digest"].as_str().unwrap().to_owned();
    assert_ne!(d1, original);
    assert_eq!(active_digest(&server, "plain"), d1);
    // The same bytes again: nothing new.
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/plain", &v1);
    assert_eq!(
        (status, body["created"].clone()),
        (200, json!(false)),
        "{body}"
    );

    // Installed but not activated.
    let v2 = variant(ferry::guests::PLAIN, 2);
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/plain?activate=false", &v2);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["active"], false);
    let d2 = body["digest"].as_str().unwrap().to_owned();
    assert_eq!(active_digest(&server, "plain"), d1);
    let (status, body) = server.call(
        "POST",
        "/v1/drivers/plain/activate",
        Some(json!({"digest": d2})),
    );
    assert_eq!(
        (status, body["active"].clone()),
        (200, json!(true)),
        "{body}"
    );
    assert_eq!(active_digest(&server, "plain"), d2);
    let id = create_volume(&server, "p1", 64 * MIB);

    let (_, list) = server.call("GET", "/v1/drivers", None);
    let plain = list["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "plain")
        .unwrap()
        .clone();
    let versions: Vec<&str> = plain["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [original.as_str(), d1.as_str(), d2.as_str()]);
    let events = driver_events(&server);
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("installed".to_owned(), d1.clone()),
            ("activated".to_owned(), d1.clone()),
            ("installed".to_owned(), d2.clone()),
            ("activated".to_owned(), d2.clone()),
        ]
    );
    assert_eq!(events[3]["from"], json!(d1));
    assert!(events.iter().all(|e| e["driver"] == "plain"));

    // A restart keeps the operator's choice, and an older version can be
    // activated again from the stored component.
    let server = server.restart();
    assert_eq!(active_digest(&server, "plain"), d2);
    let (status, body) = server.call(
        "POST",
        "/v1/drivers/plain/activate",
        Some(json!({"digest": original})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(active_digest(&server, "plain"), original);
    // The volume made under another version is still served by this one.
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "s"})),
    );
    assert_eq!(status, 201, "{a}");
    let uri = a["uri"].as_str().unwrap();
    support::qemu_io(uri, &["write -P 0x5c 0 1M", "read -P 0x5c 0 1M"]);
    let (_, metrics) = server.metrics();
    assert!(
        metrics.contains(&format!(
            "ferry_driver_active_version{{driver=\"plain\",digest=\"{original}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_driver_calls_total{driver=\"plain\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_nbd_requests_total{op=\"write\"}"),
        "{metrics}"
    );
}

/// Issue acceptance: ten hot swaps of the driver in use while fio writes
/// and verifies over NBD, a migration polls that driver, and fifty HTTP
/// requests a second arrive. Nothing fails; the figures are printed for
/// BENCHMARKS.md.
#[test]
fn hot_swaps_under_load_drop_nothing() {
    require_tool("fio", "fio");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("hydration_bandwidth_bytes_per_sec = {}", 16 * MIB),
    );
    let server = Arc::new(Server::start(&dir.path().join("data"), Some(&config)));
    let size = 1024 * MIB;
    let id = create_volume(&server, "p1", size);
    // The fill paces the bytes it reads from the source (holes are free):
    // 256 MiB of data keep it hydrating for some 16 s, through every swap.
    support::migrations::with_attachment(&server, &id, |uri| {
        support::qemu_io(uri, &["write -P 0x6b 512M 256M", "flush"])
    });
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202, "{body}");
    let start = Instant::now();
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["migration_status"] == "migrating_attachable" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "app"})),
    );
    assert_eq!(status, 201, "{a}");
    let uri = a["uri"].as_str().unwrap().to_owned();

    // fio writes and verifies for the whole run.
    let fio = std::thread::spawn(move || {
        run(
            "fio",
            &[
                "--name=hot-swap",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=16",
                "--size=256M",
                "--verify=crc32c",
                "--verify_state_save=0",
                "--do_verify=1",
                "--verify_fatal=1",
                "--output-format=terse",
            ],
        )
    });

    // 50 requests a second, every one must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (server, stop, sent, id) = (server.clone(), stop.clone(), sent.clone(), id.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let tick = Duration::from_millis(20);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let path = match sent.load(Ordering::Relaxed) % 3 {
                    0 => format!("/v1/volumes/{id}"),
                    1 => format!("/v1/volumes/{id}/migration"),
                    _ => "/v1/drivers".to_owned(),
                };
                match server.request("GET", &path, None, Some(&server.token)) {
                    Ok((200, _)) => {}
                    other => failures.push(format!("{path}: {other:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                next += tick;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            failures
        })
    };

    let mut installs = Vec::new();
    let mut activations = Vec::new();
    let mut digests = vec![active_digest(&server, "takeover")];
    for n in 0..10u32 {
        let bytes = variant(ferry::guests::TAKEOVER, 100 + n);
        // Install without activating (validation and compile), then swap.
        let t = Instant::now();
        let (status, body) =
            server.send_bytes("PUT", "/v1/drivers/takeover?activate=false", &bytes);
        installs.push(t.elapsed());
        assert_eq!(status, 201, "{body}");
        let digest = body["digest"].as_str().unwrap().to_owned();
        let t = Instant::now();
        let (status, body) = server.call(
            "POST",
            "/v1/drivers/takeover/activate",
            Some(json!({"digest": digest})),
        );
        activations.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
        let now = active_digest(&server, "takeover");
        assert_eq!(now, digest);
        assert_ne!(Some(&now), digests.last());
        digests.push(now);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
    let swapped_mid_migration = m["migration_status"] == "migrating_attachable";

    let out = fio.join().expect("fio thread");
    assert!(!out.contains("verify: bad"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        match m["migration_status"].as_str() {
            Some("success") => break,
            Some("error" | "aborted") => panic!("migration failed: {m}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "migration did not finish: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().expect("load thread");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        swapped_mid_migration,
        "the swaps should land while the migration runs"
    );

    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mut act: Vec<f64> = activations.iter().map(ms).collect();
    act.sort_by(f64::total_cmp);
    let mut inst: Vec<f64> = installs.iter().map(ms).collect();
    inst.sort_by(f64::total_cmp);
    println!(
        "hot swap: {} HTTP requests, 0 failed; fio verify passed; migration success; \
         activation ms median {:.2} max {:.2}; install (validate+compile) ms median {:.1} max {:.1}",
        sent.load(Ordering::Relaxed),
        act[act.len() / 2],
        act[act.len() - 1],
        inst[inst.len() / 2],
        inst[inst.len() - 1],
    );
    let (_, metrics) = server.metrics();
    assert!(metrics.contains("ferry_driver_calls_total{driver=\"takeover\"}"));
    assert!(
        metrics.contains("ferry_driver_traps_total{driver=\"takeover\"} 0"),
        "{metrics}"
    );
}

#[test]
fn the_cli_installs_lists_and_activates_versions() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let original = active_digest(&server, "plain");
    let file = dir.path().join("plain-next.wasm");
    std::fs::write(&file, variant(ferry::guests::PLAIN, 7)).unwrap();
    let file = file.to_str().unwrap();

    let out = server.cli(&["--json", "driver", "install", file, "--name", "plain"]);
    assert!(out.status.success(), "{out:?}");
    let installed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = installed["digest"].as_str().unwrap().to_owned();
    assert_eq!(installed["active"], true);
    assert_eq!(active_digest(&server, "plain"), digest);

    let out = server.cli(&["driver", "list"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&digest[..12]) && table.contains(&original[..12]),
        "{table}"
    );

    let out = server.cli(&["driver", "activate", "plain", &original]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(active_digest(&server, "plain"), original);

    // A refusal exits 1 with the server's code, and changes nothing.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let out = server.cli(&[
        "driver",
        "install",
        bad.to_str().unwrap(),
        "--name",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("core_module"),
        "{out:?}"
    );
    assert_eq!(active_digest(&server, "plain"), original);
    let out = server.cli(&["driver", "activate", "plain", &"ab".repeat(32)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("driver_version_not_found"),
        "{out:?}"
    );

    // The uploaded version is no longer active: it can be deleted; the
    // active one cannot.
    let out = server.cli(&["driver", "delete", "plain", &digest]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("deleted version {digest}")),
        "{out:?}"
    );
    assert_eq!(versions(&server, "plain"), [original.as_str()]);
    let out = server.cli(&["driver", "delete", "plain", &original]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("driver_version_active"),
        "{out:?}"
    );
    assert_eq!(active_digest(&server, "plain"), original);
}

/// `plain` exporting its interface under another name: a whole component
/// that compiles like the real one and then fails the world check.
fn other_world(bytes: &[u8]) -> Vec<u8> {
    rename_interface(bytes, b"ferry:driver/drivex@0.2.0")
}

/// A component that takes seconds to compile: one core module of `funcs`
/// functions, each a long chain of 64-bit arithmetic over sixteen locals
/// (no world, so it would be refused after the compile anyway).
fn slow_component(funcs: u32) -> Vec<u8> {
    fn section(id: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        leb128(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }
    const LOCALS: u64 = 16;
    let mut code = Vec::new();
    // One group of 16 i64 locals.
    leb128(&mut code, 1);
    leb128(&mut code, LOCALS);
    code.push(0x7e);
    // Each local starts from the parameter, so nothing folds to constants.
    for i in 0..LOCALS {
        code.extend_from_slice(&[0x20, 0x00, 0x42]);
        leb128(&mut code, i * 2 + 1);
        code.push(0x7e); // i64.mul
        code.push(0x21);
        leb128(&mut code, i + 1);
    }
    for i in 0..1000u64 {
        let local = |k: u64| 1 + k % LOCALS;
        for (op, k) in [
            (0x20, i),
            (0x20, i * 7 + 3),
            (0x7e, 0),
            (0x20, i * 5 + 1),
            (0x7c, 0),
            (0x21, i * 3 + 2),
        ] {
            code.push(op);
            if op != 0x7e && op != 0x7c {
                leb128(&mut code, local(k));
            }
        }
    }
    code.extend_from_slice(&[0x20, 0x01, 0x0b]);
    let mut body = Vec::new();
    leb128(&mut body, code.len() as u64);
    body.extend_from_slice(&code);

    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // One type: (i64) -> i64.
    module.extend(section(1, &[0x01, 0x60, 0x01, 0x7e, 0x01, 0x7e]));
    let mut funcs_sec = Vec::new();
    leb128(&mut funcs_sec, u64::from(funcs));
    funcs_sec.extend(std::iter::repeat_n(0u8, funcs as usize));
    module.extend(section(3, &funcs_sec));
    let mut code_sec = Vec::new();
    leb128(&mut code_sec, u64::from(funcs));
    for _ in 0..funcs {
        code_sec.extend_from_slice(&body);
    }
    module.extend(section(10, &code_sec));
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend(section(1, &module));
    component
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The value of the sample `series` (name with its labels, as printed) in
/// the Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn versions(server: &Server, name: &str) -> Vec<String> {
    let (status, list) = server.call("GET", "/v1/drivers", None);
    assert_eq!(status, 200, "{list}");
    list["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no driver {name}: {list}"))["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// What the store of a stopped server holds of drivers: the digests every
/// record lists, of the stored components, and of the cached artifacts.
fn stored(data: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let store = ferry::store::Store::open(&data.join("ferry.redb")).unwrap();
    let mut listed: Vec<String> = store
        .list_drivers()
        .unwrap()
        .into_iter()
        .flat_map(|d| d.versions.into_iter().map(|v| v.digest))
        .collect();
    listed.sort();
    listed.dedup();
    let blobs = store.driver_blob_digests().unwrap();
    let mut artifacts: Vec<String> = store
        .artifact_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.split('.').next().unwrap().to_owned())
        .collect();
    artifacts.sort();
    artifacts.dedup();
    (listed, blobs, artifacts)
}

/// Issue acceptance: refused uploads that compiled (another world, a
/// future world, a failing first call) used to leave their compiled
/// artifact in `ferry.redb`, which grew by megabytes. Now nothing of them
/// is stored.
#[test]
fn refused_uploads_leave_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let db = data.join("ferry.redb");
    let before = std::fs::metadata(&db).unwrap().len();
    let trap = std::fs::read(ferry::guests::TRAP_CAPABILITIES_PATH).unwrap();

    let mut refused = Vec::new();
    for n in 0..10u32 {
        let (bytes, code) = match n % 5 {
            0..=2 => (
                other_world(&variant(ferry::guests::PLAIN, n)),
                "wrong_world",
            ),
            3 => (
                future_world(&variant(ferry::guests::PLAIN, n)),
                "incompatible_world_version",
            ),
            _ => (variant(&trap, n), "smoke_call_failed"),
        };
        let (status, body) = server.send_bytes("PUT", "/v1/drivers/plain", &bytes);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}"
        );
        refused.push(sha256(&bytes));
    }
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(
        after < before + (256 << 10),
        "ferry.redb grew from {before} to {after} bytes"
    );
    // An accepted version still gets its artifact (a restart skips the
    // compiler).
    let good = variant(ferry::guests::PLAIN, 99);
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/plain", &good);
    assert_eq!(status, 201, "{body}");

    server.stop();
    let (listed, blobs, artifacts) = stored(&data);
    assert!(listed.contains(&sha256(&good)), "{listed:?}");
    assert_eq!(blobs, listed, "components stored");
    assert_eq!(artifacts, listed, "artifacts cached");
    for d in &refused {
        assert!(!artifacts.contains(d) && !blobs.contains(d), "{d} kept");
    }
}

/// Issue acceptance: one compile at a time per host. A compile that
/// overruns `max_compile_ms` answers `compile_timeout` at once but keeps
/// the one compile slot until it really ends (Cranelift cannot be stopped),
/// so meanwhile every other upload gets 429 `compile_busy` with
/// `Retry-After` instead of starting another compile; the abandoned compile
/// burns at most one core, shows in /metrics, and once it ends the host is
/// idle again.
#[test]
fn one_compile_at_a_time_and_an_abandoned_compile_holds_the_slot_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The first start compiles the example drivers and caches them; the
    // tight limits apply from the restart on.
    let config = write_config(dir.path(), "");
    let server = Server::start(&data, Some(&config));
    let before = server.stop();
    write_config(
        dir.path(),
        "max_compile_ms = 500\nmax_compile_wait_ms = 300",
    );
    let server = Server::start(&before, Some(&config));

    let slow = slow_component(300);
    let started = Instant::now();
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/slow", &slow);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("compile_timeout")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let cpu_at_timeout = server.cpu_time();
    let timed_out_at = Instant::now();

    // The abandoned compile still runs: others are refused, quickly, and
    // start no compile of their own.
    for (what, bytes) in [
        ("a good driver", variant(ferry::guests::PLAIN, 1)),
        ("another slow one", variant(&slow, 1)),
        ("a third", variant(ferry::guests::TAKEOVER, 1)),
    ] {
        let t = Instant::now();
        let (status, body, headers) =
            server.send_bytes_with_headers("PUT", "/v1/drivers/plain", &bytes);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (429, Some("compile_busy")),
            "{what}: {body}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            t.elapsed()
        );
        let retry: u64 = headers
            .iter()
            .find(|(k, _)| k == "retry-after")
            .unwrap_or_else(|| panic!("{what}: no Retry-After in {headers:?}"))
            .1
            .parse()
            .unwrap();
        assert!(retry >= 1, "{what}: {retry}");
    }
    let (_, metrics) = server.metrics();
    assert_eq!(
        metric(&metrics, "ferry_driver_compile_abandoned_running"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "ferry_driver_compiles_total{result=\"timeout\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "ferry_driver_compiles_total{result=\"busy\"}"),
        Some(3.0)
    );

    // Wait for the abandoned compile to end on its own.
    let metrics = loop {
        let (_, m) = server.metrics();
        if metric(&m, "ferry_driver_compile_abandoned_running") == Some(0.0) {
            break m;
        }
        assert!(
            timed_out_at.elapsed() < Duration::from_secs(120),
            "the abandoned compile never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = timed_out_at.elapsed().as_secs_f64();
    let cpu = (server.cpu_time() - cpu_at_timeout).as_secs_f64();
    println!("abandoned compile: {cpu:.2} s of CPU in {wall:.2} s after its timeout");
    // One compile on one core, plus the host's own small work.
    assert!(cpu <= wall * 1.15 + 0.3, "{cpu:.2} s of CPU in {wall:.2} s");
    let burned = metric(
        &metrics,
        "ferry_driver_compile_cpu_seconds_total{caller=\"abandoned\"}",
    )
    .unwrap();
    assert!(burned > 0.5, "{metrics}");
    // It stopped consuming CPU when it ended.
    let idle_from = server.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let idle = (server.cpu_time() - idle_from).as_secs_f64();
    assert!(idle < 0.25, "{idle:.2} s of CPU while idle");

    // The slot is free: an upload compiles again.
    let (status, body) = server.send_bytes(
        "PUT",
        "/v1/drivers/plain?activate=false",
        &variant(ferry::guests::PLAIN, 1),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        driver_events(&server)
            .iter()
            .all(|e| e["driver"] == "plain")
    );
}

/// Issue acceptance: `DELETE /v1/drivers/{name}/versions/{digest}` removes
/// a version (its component, its artifact, its record) unless it is active
/// or a driver call of a running migration still runs on it.
#[test]
fn a_version_is_deleted_unless_active_or_in_use_by_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::migrations::faulty_config(dir.path(), 10_000);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("reader.token"), "reader-token-0123456789\n").unwrap();
    let server = Server::start(&data, Some(&config));
    let original = active_digest(&server, "faulty");
    let next = variant(&std::fs::read(ferry::guests::FAULTY_PATH).unwrap(), 1);
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/faulty?activate=false", &next);
    assert_eq!(status, 201, "{body}");
    let d1 = body["digest"].as_str().unwrap().to_owned();
    let path = |d: &str| format!("/v1/drivers/faulty/versions/{d}");

    let (status, body) = server.call("DELETE", &path(&original), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("driver_version_active")),
        "{body}"
    );

    // The source driver's copy runs 1.6 s on the original version; the
    // swap to d1 lands in the middle of it.
    let id = support::migrations::create(&server, "slow:migrate-volume@f1", "f1", 32 << 20);
    let (status, body) = support::migrations::migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    support::migrations::wait_phase(&server, &id, "source_driver", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = server.call(
        "POST",
        "/v1/drivers/faulty/activate",
        Some(json!({"digest": d1})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call("DELETE", &path(&original), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("driver_version_in_use")),
        "{body}"
    );
    let (m, _) = support::migrations::wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");

    // Nothing runs on it any more.
    let (status, body) = server.call("DELETE", &path(&original), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(versions(&server, "faulty"), [d1.as_str()]);
    let (status, body) = server.call("DELETE", &path(&original), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("driver_version_not_found")),
        "{body}"
    );
    let (status, body) = server.call("DELETE", &format!("/v1/drivers/nosuch/versions/{d1}"), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("driver_not_found")),
        "{body}"
    );
    let (status, body) = server.call("DELETE", &format!("/v1/drivers/..%2Fx/versions/{d1}"), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_name")),
        "{body}"
    );
    let (status, _) = server
        .request("DELETE", &path(&d1), None, Some("reader-token-0123456789"))
        .unwrap();
    assert_eq!(status, 403);
    let deleted: Vec<Value> = driver_events(&server)
        .into_iter()
        .filter(|e| e["reason"] == "deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["to"], json!(original));
    // The migrated volume is still served by the version left.
    let (status, _) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204);

    // Restarted, the host runs the version left; the deleted one's bytes
    // and artifact are gone from the store.
    let server = server.restart();
    assert_eq!(active_digest(&server, "faulty"), d1);
    assert_eq!(versions(&server, "faulty"), [d1.as_str()]);
    server.stop();
    let (_, blobs, artifacts) = stored(&data);
    assert!(!blobs.contains(&original), "{blobs:?}");
    assert!(!artifacts.contains(&original), "{artifacts:?}");
    assert!(blobs.contains(&d1) && artifacts.contains(&d1));
}

/// Issue acceptance: `driver_versions_kept` prunes the oldest inactive
/// versions after an install, never the active one or the one just
/// installed.
#[test]
fn installs_prune_the_oldest_inactive_versions_beyond_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "driver_versions_kept = 2");
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let original = active_digest(&server, "plain");
    let mut digests = vec![original.clone()];
    for n in 1..=3u32 {
        let (status, body) = server.send_bytes(
            "PUT",
            "/v1/drivers/plain",
            &variant(ferry::guests::PLAIN, n),
        );
        assert_eq!(status, 201, "{body}");
        digests.push(body["digest"].as_str().unwrap().to_owned());
        let kept = versions(&server, "plain");
        assert_eq!(kept, digests[digests.len() - 2..], "after install {n}");
    }
    // Installed without activation: the active version and the new one
    // stay, the limit notwithstanding.
    let (status, body) = server.send_bytes(
        "PUT",
        "/v1/drivers/plain?activate=false",
        &variant(ferry::guests::PLAIN, 4),
    );
    assert_eq!(status, 201, "{body}");
    let d4 = body["digest"].as_str().unwrap().to_owned();
    assert_eq!(versions(&server, "plain"), [digests[3].clone(), d4.clone()]);
    let (status, body) = server.call(
        "POST",
        "/v1/drivers/plain/activate",
        Some(json!({"digest": d4})),
    );
    assert_eq!(status, 200, "{body}");
    let pruned: Vec<String> = driver_events(&server)
        .into_iter()
        .filter(|e| e["reason"] == "pruned")
        .map(|e| e["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pruned, digests[..3]);
    // Other drivers keep theirs.
    assert_eq!(versions(&server, "takeover").len(), 1);

    server.stop();
    let (listed, blobs, artifacts) = stored(&data);
    for d in &digests[..3] {
        assert!(!listed.contains(d) && !blobs.contains(d) && !artifacts.contains(d));
    }
    assert_eq!(blobs, listed);
    assert_eq!(artifacts, listed);
}
