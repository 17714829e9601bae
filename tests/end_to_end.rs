//! The whole host as a user meets it: a real `ferry serve` process, its HTTP
//! API and CLI, volumes attached with real NBD clients, restarts and kills.

mod support;

use serde_json::{Value, json};
use support::{Server, qemu_io, require_tool, run};

const GIB: u64 = 1 << 30;

fn create(server: &Server, name: &str, array: &str, size: u64) -> Value {
    let (status, body) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": size, "array": array})),
    );
    assert_eq!(status, 201, "create {name} on {array}: {body}");
    body
}

fn attach(server: &Server, id: &str) -> (String, String) {
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "host-a"})),
    );
    assert_eq!(status, 201, "attach {id}: {body}");
    let uri = body["uri"].as_str().expect("uri").to_owned();
    assert!(uri.starts_with("nbd://127.0.0.1:"), "{uri}");
    (body["id"].as_str().expect("id").to_owned(), uri)
}

fn detach(server: &Server, id: &str, attachment: &str) {
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{attachment}"),
        None,
    );
    assert_eq!(status, 204, "detach: {body}");
}

/// The acceptance walk of the volume service: every default array, a 1 GiB
/// volume on each, 64 MiB of a pattern through qemu-io, a restart, and the
/// data compared byte for byte with qemu-img against a local copy.
#[test]
fn volumes_on_every_array_keep_their_data_across_restart() {
    require_tool("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);

    let (status, arrays) = server.call("GET", "/v1/arrays", None);
    assert_eq!(status, 200);
    let names: Vec<(&str, &str)> = arrays["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["driver"].as_str().unwrap()))
        .collect();
    for want in [
        ("t1", "takeover"),
        ("v1", "vendor-copy"),
        ("v2", "vendor-copy"),
        ("p1", "plain"),
    ] {
        assert!(names.contains(&want), "{want:?} missing from {names:?}");
    }

    let mut volumes = Vec::new();
    for (i, array) in ["t1", "v1", "v2", "p1"].iter().enumerate() {
        let v = create(&server, &format!("vol-{array}"), array, GIB);
        assert_eq!(v["status"], "available");
        assert_eq!(v["size_bytes"], GIB);
        let id = v["id"].as_str().unwrap().to_owned();
        let (att, uri) = attach(&server, &id);
        let pattern = 0x10 + i as u8;
        qemu_io(&uri, &[&format!("write -P {pattern} 0 64M"), "flush"]);
        detach(&server, &id, &att);
        volumes.push((id, pattern));
    }
    let (_, listed) = server.call("GET", "/v1/volumes", None);
    assert_eq!(listed["volumes"].as_array().unwrap().len(), 4);

    let server = server.restart();
    let (_, listed) = server.call("GET", "/v1/volumes", None);
    assert_eq!(listed["volumes"].as_array().unwrap().len(), 4, "{listed}");
    let expected = dir.path().join("expected.raw");
    for (id, pattern) in &volumes {
        let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
        assert_eq!(v["status"], "available", "{v}");
        let (att, uri) = attach(&server, id);
        // A local file with the same content: pattern, then zeroes.
        let f = std::fs::File::create(&expected).unwrap();
        f.set_len(GIB).unwrap();
        drop(f);
        run(
            "qemu-io",
            &[
                "-f",
                "raw",
                "-c",
                &format!("write -P {pattern} 0 64M"),
                expected.to_str().unwrap(),
            ],
        );
        run(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                expected.to_str().unwrap(),
                &uri,
            ],
        );
        qemu_io(
            &uri,
            &[&format!("read -P {pattern} 0 64M"), "read -P 0 64M 64M"],
        );
        detach(&server, id, &att);
    }
    drop(server);
}

/// A write acknowledged after FLUSH survives kill -9 of the host, and the
/// attachment (and its URI) comes back with the host.
#[test]
fn flushed_writes_survive_kill_9_and_the_attachment_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let v = create(&server, "crashy", "p1", 256 << 20);
    let id = v["id"].as_str().unwrap().to_owned();
    let (att, uri) = attach(&server, &id);
    qemu_io(&uri, &["write -P 0x5a 1M 8M", "flush"]);
    let dir_path = server.kill();
    let server = Server::start(&dir_path, None);
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(v["status"], "in-use", "{v}");
    // The restored export keeps the same URI apart from the new port.
    let port_uri = format!("nbd://{}/{}", server.nbd, support::export_of(&uri));
    qemu_io(&port_uri, &["read -P 0x5a 1M 8M", "read -P 0 0 1M"]);
    detach(&server, &id, &att);
    let _ = uri;
}

/// Bad input of every kind answers 4xx with a JSON error code, and changes
/// nothing.
#[test]
fn bad_requests_get_clear_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "x", "size_bytes": 0, "array": "p1"})),
            400,
            "invalid_size",
        ),
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "x", "size_bytes": 1000, "array": "p1"})),
            400,
            "invalid_size",
        ),
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "x", "size_bytes": 1u64 << 50, "array": "p1"})),
            422,
            "no_space",
        ),
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "x", "size_bytes": 512, "array": "nope"})),
            404,
            "array_not_found",
        ),
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "x", "size_bytes": 512, "array": "p1", "pool": "gold"})),
            404,
            "pool_not_found",
        ),
        (
            "POST",
            "/v1/volumes",
            Some(json!({"name": "", "size_bytes": 512, "array": "p1"})),
            400,
            "invalid_name",
        ),
        (
            "GET",
            "/v1/volumes/7b0c5a52-8a43-4c1e-9a5e-6c0f2f4d9b11",
            None,
            404,
            "volume_not_found",
        ),
        (
            "DELETE",
            "/v1/volumes/7b0c5a52-8a43-4c1e-9a5e-6c0f2f4d9b11",
            None,
            404,
            "volume_not_found",
        ),
        ("GET", "/v1/volumes/not-a-uuid", None, 400, "invalid_id"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = server.call(method, path, body.clone());
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (got, answer) = server.request("GET", "/v1/volumes", None, None).unwrap();
    assert_eq!(got, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (got, _) = server
        .request("GET", "/v1/volumes", None, Some("wrong-token"))
        .unwrap();
    assert_eq!(got, 401);
    let (_, listed) = server.call("GET", "/v1/volumes", None);
    assert_eq!(
        listed["volumes"],
        json!([]),
        "a refused request created something"
    );

    // An attached volume cannot be deleted.
    let v = create(&server, "busy", "p1", 1 << 20);
    let id = v["id"].as_str().unwrap();
    let (att, _) = attach(&server, id);
    let (got, answer) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (409, Some("invalid_state")),
        "{answer}"
    );
    detach(&server, id, &att);
    let (got, _) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(got, 204);
    let lun_files = std::fs::read_dir(dir.path().join("arrays/p1/default"))
        .unwrap()
        .count();
    assert_eq!(lun_files, 0, "the LUN file outlived its volume");
}

/// The CLI drives the same life cycle, with tables and --json, and reports
/// server errors with a non-zero exit.
#[test]
fn cli_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let out = server.cli(&[
        "--json", "volume", "create", "cli-vol", "--size", "64M", "--array", "v1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["size_bytes"], 64 << 20);

    let out = server.cli(&["volume", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("cli-vol") && table.contains(&id),
        "{table}"
    );
    let out = server.cli(&["array", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        ["t1", "v1", "v2", "p1", "takeover"]
            .iter()
            .all(|w| table.contains(w)),
        "{table}"
    );

    let out = server.cli(&["--json", "volume", "attach", &id, "--server", "srv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri = a["uri"].as_str().unwrap();
    qemu_io(uri, &["write -P 7 0 1M", "read -P 7 0 1M"]);
    let out = server.cli(&["volume", "detach", &id, a["id"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&["volume", "delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = server.cli(&["volume", "show", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("volume_not_found"),
        "{err}"
    );
}

/// A driver that loops, traps, recurses or eats memory fails only its own
/// call, with a clear error, while the host answers and other volumes serve.
#[test]
fn hostile_driver_calls_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\ndeadline_ms = 1500\nmemory_bytes = 33554432\n\n\
             [[array]]\nname = \"h1\"\ndriver = \"misbehave\"\n\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n\n\
             [[driver]]\nname = \"misbehave\"\npath = {:?}\n",
            ferry::guests::MISBEHAVE_PATH
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let good = create(&server, "good", "p1", 64 << 20);
    let good_id = good["id"].as_str().unwrap().to_owned();
    let (_, uri) = attach(&server, &good_id);

    for (name, code) in [
        ("loop", "driver_timeout"),
        ("grow", "driver_out_of_memory"),
        ("recurse", "driver_trap"),
        ("panic", "driver_trap"),
    ] {
        std::thread::scope(|s| {
            let bad = s.spawn(|| {
                server.call(
                    "POST",
                    "/v1/volumes",
                    Some(json!({"name": name, "size_bytes": 1 << 20, "array": "h1"})),
                )
            });
            // While the hostile call runs, the host and other volumes serve.
            let started = std::time::Instant::now();
            while !bad.is_finished() {
                let (h, _) = server.request("GET", "/healthz", None, None).unwrap();
                assert_eq!(h, 200);
                qemu_io(&uri, &["write -P 3 0 64k", "read -P 3 0 64k"]);
                assert!(started.elapsed().as_secs() < 30, "{name} never ended");
            }
            let (status, body) = bad.join().unwrap();
            assert_eq!(status, 502, "{name}: {body}");
            assert_eq!(body["error"]["code"], code, "{name}: {body}");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("misbehave"),
                "{name}: message should name the driver: {msg}"
            );
        });
        // The failed create left nothing behind.
        let (_, listed) = server.call("GET", "/v1/volumes", None);
        assert_eq!(
            listed["volumes"].as_array().unwrap().len(),
            1,
            "{name}: {listed}"
        );
    }
    // The same driver still serves a well-behaved call.
    let fine = create(&server, "fine", "h1", 1 << 20);
    assert_eq!(fine["status"], "available");
    let (h, _) = server.request("GET", "/healthz", None, None).unwrap();
    assert_eq!(h, 200);
}
