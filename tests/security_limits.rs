//! The smaller limits of a real `ferry serve`, each met by a real client
//! (HTTP, the `ferry` CLI): names that could spoof a table are refused and
//! escaped, attachments per volume are capped, volumes are held to the free
//! space of the file system beneath their array, and `/metrics` is served
//! as `[http] metrics` says.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::migrations::{MIB, create};
use support::{Launch, Server, array_named};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `text` as `DIR/ferry.toml`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes the embedded default configuration plus `extra` (TOML tables).
fn config_with(dir: &Path, extra: &str) -> PathBuf {
    write_config(dir, &format!("{}\n{extra}", ferry::config::DEFAULT_CONFIG))
}

/// Checks that an answer is the refusal `status` with `code`, its message
/// holding `words`; returns the message.
fn refused(answer: &(u16, Value), status: u16, code: &str, words: &str) -> String {
    let (got, v) = answer;
    assert_eq!(
        (*got, v["error"]["code"].as_str()),
        (status, Some(code)),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{words:?} not in {message:?}");
    message.to_owned()
}

/// Runs the CLI, which must fail with `code` (and `words`) on stderr.
fn cli_refused(server: &Server, args: &[&str], code: &str, words: &str) {
    let out = server.cli(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
    assert!(err.contains(code) && err.contains(words), "{args:?}: {err}");
}

fn volumes(server: &Server) -> Vec<Value> {
    let (status, v) = server.call("GET", "/v1/volumes", None);
    assert_eq!(status, 200, "{v}");
    v["volumes"].as_array().unwrap().clone()
}

/// Files below `dir`, recursively (the LUN files under `arrays/`).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A bidi override in a volume name, a zero-width space in a server name:
/// both refused with 400 `invalid_name` naming the field and the code
/// point, over HTTP and through the CLI, and nothing is created.
#[test]
fn names_with_bidi_or_zero_width_characters_are_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);

    let spoof = "invoice\u{202e}fdp.exe";
    let answer = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": spoof, "size_bytes": 1 << 20, "array": "p1"})),
    );
    let message = refused(
        &answer,
        400,
        "invalid_name",
        "(field \"name\") contains U+202E",
    );
    assert!(message.contains("character 7"), "{message}");
    assert!(!message.contains('\u{202e}'), "echoed: {message:?}");
    let create_spoof = ["volume", "create", spoof, "--size", "1M", "--array", "p1"];
    cli_refused(&server, &create_spoof, "invalid_name", "U+202E");

    assert!(volumes(&server).is_empty());
    let (_, arrays) = server.call("GET", "/v1/arrays", None);
    assert_eq!(array_named(&arrays, "p1")["used_bytes"], 0, "{arrays}");
    assert!(files_below(&dir.path().join("arrays")).is_empty());

    // A server name with a zero-width space: the attach changes nothing.
    let id = create(&server, "db1", "p1", MIB);
    let answer = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "web\u{200b}1"})),
    );
    refused(
        &answer,
        400,
        "invalid_name",
        "(field \"server\") contains U+200B",
    );
    let (_, shown) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["attachments"].as_array().map(Vec::len)
        ),
        (Some("available"), Some(0)),
        "{shown}"
    );
    server.stop();
}

/// A record stored before names were checked (written into the store of a
/// stopped host) holds a bidi override and a newline: the CLI's table and
/// details show them escaped, so the line reads as it is stored.
#[test]
fn the_cli_escapes_a_spoofing_name_stored_before_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let id: uuid::Uuid = create(&server, "old", "p1", MIB).parse().unwrap();
    let data = server.stop();
    {
        let store = ferry::store::Store::open(&data.join("ferry.redb")).unwrap();
        store
            .update_volume(id, |v| {
                v.name = "gpj.\u{202e}exe\u{2066}x\u{200b}\nfake-row".into();
                Ok::<(), String>(())
            })
            .unwrap();
    }
    let server = Server::start(&data, None);
    for args in [
        &["volume", "list"][..],
        &["volume", "show", &id.to_string()],
    ] {
        let out = server.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        for c in ['\u{202e}', '\u{2066}', '\u{200b}'] {
            assert!(
                !text.contains(c),
                "{args:?} prints U+{:04X} raw: {text:?}",
                u32::from(c)
            );
        }
        assert!(
            text.contains("gpj.\\u{202e}exe\\u{2066}x\\u{200b}\\nfake-row"),
            "{args:?}: {text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake-row")), "{text}");
    }
    server.stop();
}

/// With `max_attachments_per_volume = 2`, a third attach (through the CLI
/// and over HTTP) is refused with 409 `too_many_attachments`, and the
/// volume keeps its two attachments and their exports; a detach makes room.
#[test]
fn attachments_beyond_the_cap_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "[volumes]\nmax_attachments_per_volume = 2\n");
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let id = create(&server, "shared", "p1", MIB);
    let attach = |server_name: &str| {
        server.call(
            "POST",
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": server_name, "mode": "ro"})),
        )
    };
    let (s1, first) = attach("web1");
    let (s2, _) = attach("web2");
    assert_eq!((s1, s2), (201, 201), "{first}");
    let events_before = server.call("GET", "/v1/events?follow=false", None).1["events"]
        .as_array()
        .unwrap()
        .len();

    refused(
        &attach("web3"),
        409,
        "too_many_attachments",
        "max_attachments_per_volume",
    );
    let attach_web4 = ["volume", "attach", &id, "--server", "web4"];
    cli_refused(&server, &attach_web4, "too_many_attachments", "detach one");

    let (_, shown) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    let servers: Vec<&str> = shown["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["web1", "web2"], "{shown}");
    let events_after = server.call("GET", "/v1/events?follow=false", None).1["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        events_after, events_before,
        "a refused attach emitted events"
    );
    // The attachments that exist still serve their exports.
    support::require_tool("nbdinfo", "libnbd-bin");
    let size = support::run("nbdinfo", &["--size", first["uri"].as_str().unwrap()]);
    assert_eq!(size.trim(), (1 << 20).to_string());

    let att = first["id"].as_str().unwrap();
    let (status, _) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{att}"),
        None,
    );
    assert_eq!(status, 204);
    let cli = server.cli(&["volume", "attach", &id, "--server", "web3"]);
    assert!(cli.status.success(), "{}", stderr(&cli));
    server.stop();
}

/// Free and total bytes of the file system holding `path`.
fn statvfs(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs we own.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    #[allow(clippy::useless_conversion)]
    let (avail, blocks, frsize) = (
        u64::from(st.f_bavail),
        u64::from(st.f_blocks),
        u64::from(st.f_frsize),
    );
    (avail * frsize, blocks * frsize)
}

/// An array configured far larger than its file system: the host warns at
/// start, a volume 1 GiB larger than the free space is refused with 507
/// `insufficient_space` (HTTP and CLI) and leaves nothing, one that fits is
/// created, and `/v1/arrays` reports the file system's free and total
/// bytes as statvfs sees them.
#[test]
fn a_volume_larger_than_the_free_space_of_the_file_system_is_refused_with_507() {
    let dir = tempfile::tempdir().unwrap();
    // 4 EiB: only the file system can limit it.
    let config = write_config(
        dir.path(),
        "[[array]]\nname = \"big\"\ndriver = \"plain\"\ncapacity_bytes = 4611686018427387904\n",
    );
    let data = dir.path().join("data");
    let server = Server::launch(
        &data,
        Some(&config),
        &Launch {
            capture_stderr: true,
            ..Launch::default()
        },
    );
    let log = server.log.clone().unwrap();
    let warned = log.wait_for(
        "exceeds the free space of the file system",
        Duration::from_secs(5),
    );
    let warned = warned.expect("no start-up warning about the file system");
    assert!(
        warned.contains("WARN") && warned.contains("big"),
        "{warned}"
    );

    let arrays_dir = data.join("arrays");
    let (free, total) = statvfs(&arrays_dir);
    let too_big = (free + (1 << 30)) / 512 * 512;
    let answer = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "huge", "size_bytes": too_big, "array": "big"})),
    );
    let needed = format!("{too_big} bytes needed");
    let message = refused(&answer, 507, "insufficient_space", &needed);
    assert!(message.contains("bytes free"), "{message}");
    let size = too_big.to_string();
    let create_huge = [
        "volume", "create", "huge", "--size", &size, "--array", "big",
    ];
    cli_refused(&server, &create_huge, "insufficient_space", &needed);
    assert!(volumes(&server).is_empty());
    assert!(files_below(&arrays_dir).is_empty());
    create(&server, "fits", "big", MIB);

    // Others write to this file system meanwhile: the answer must lie
    // between what statvfs said just before and just after, give or take.
    let before = statvfs(&arrays_dir).0;
    let (status, arrays) = server.call("GET", "/v1/arrays", None);
    let after = statvfs(&arrays_dir).0;
    assert_eq!(status, 200, "{arrays}");
    let big = array_named(&arrays, "big");
    let reported = big["filesystem_free_bytes"].as_u64().expect("free bytes");
    let slack = 64 << 20;
    assert!(
        before.min(after).saturating_sub(slack) <= reported
            && reported <= before.max(after) + slack,
        "reported {reported}, statvfs {before}..{after}"
    );
    assert_eq!(big["filesystem_total_bytes"].as_u64(), Some(total), "{big}");
    let table = server.cli(&["array", "list"]);
    assert!(stdout(&table).contains("FS FREE"), "{}", stdout(&table));
    server.stop();
}

/// Starts a host whose `[http] metrics` is `mode` (the default when None),
/// with a reader token.
fn metrics_host(dir: &Path, mode: Option<&str>) -> Server {
    use std::os::unix::fs::PermissionsExt as _;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token = data.join("reader.token");
    std::fs::write(&token, format!("{READER}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = mode.map(|m| config_with(dir, &format!("[http]\nmetrics = \"{m}\"\n")));
    Server::start(&data, config.as_deref())
}

const READER: &str = "reader-token-for-metrics-0123456789";

fn is_prometheus(text: &str) -> bool {
    text.contains("# TYPE ferry_driver_calls_total counter") && text.contains("ferry_volumes")
}

/// Each `[http] metrics` mode against every kind of caller: no token, a
/// wrong one, a reader's, the admin's. The default (`reader`) serves any
/// valid token and answers 401 otherwise; `public` serves everyone; `off`
/// answers 404 to everyone, the admin too, while the rest of the API
/// serves.
#[test]
fn metrics_are_served_to_whom_the_config_says() {
    const OK: u16 = 200;
    // Expected status for: no token, a wrong token, reader, admin.
    let modes: [(Option<&str>, [u16; 4]); 3] = [
        (None, [401, 401, OK, OK]),
        (Some("public"), [OK, OK, OK, OK]),
        (Some("off"), [404, 404, 404, 404]),
    ];
    for (mode, expected) in modes {
        let dir = tempfile::tempdir().unwrap();
        let server = metrics_host(dir.path(), mode);
        let callers = [
            None,
            Some("not-a-valid-token-at-all"),
            Some(READER),
            Some(server.token.as_str()),
        ];
        for (token, want) in callers.into_iter().zip(expected) {
            let (status, body) = server.get_text_with("/metrics", token);
            assert_eq!(status, want, "{mode:?}, {token:?}: {body}");
            let code = match want {
                401 => Some("\"unauthorized\""),
                404 => Some("\"not_found\""),
                _ => None,
            };
            match code {
                Some(code) => assert!(
                    body.contains(code) && !body.contains("ferry_"),
                    "{mode:?}, {token:?}: {body}"
                ),
                None => assert!(is_prometheus(&body), "{mode:?}, {token:?}: {body}"),
            }
        }
        assert_eq!(server.get_text("/healthz").0, OK, "{mode:?}");
        assert_eq!(server.call("GET", "/v1/arrays", None).0, OK, "{mode:?}");
        server.stop();
    }
}

/// Bad values of the new settings stop `ferry serve` at start with a
/// message that names them.
#[test]
fn bad_limits_in_the_config_stop_the_host_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        (
            "[http]\nmetrics = \"everyone\"\n",
            "unknown variant `everyone`",
        ),
        (
            "[volumes]\nmax_attachments_per_volume = 0\n",
            "volumes.max_attachments_per_volume",
        ),
    ] {
        let config = config_with(dir.path(), extra);
        let (started, stderr) = support::serve_expecting_refusal(&dir.path().join("data"), &config);
        assert!(!started, "{extra}: started");
        assert!(stderr.contains(want), "{extra}: {stderr}");
    }
}
