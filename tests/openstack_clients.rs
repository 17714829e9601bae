//! OpenStack's own clients against a running `ferry serve`, unmodified:
//! `openstack volume ...` (python-openstackclient, through openstacksdk)
//! and `cinder ...` (python-cinderclient), in no-auth mode and with a Ferry
//! token as `X-Auth-Token`. Each command's output is checked, and the
//! volume's data is read back over NBD after every move.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::migrations::{check_pattern, write_pattern};
use support::{Server, require_tool};

/// Three arrays, one with a second pool; `[cinder] auth` as given.
fn config(dir: &Path, auth: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            r#"
zoning = [["t1", "p1"], ["t1", "v1"]]

[cinder]
auth = "{auth}"

[[array]]
name = "t1"
driver = "takeover"

[[array]]
name = "v1"
driver = "vendor-copy"

[[array]]
name = "p1"
driver = "plain"
pools = ["default", "fast"]
"#
        ),
    )
    .unwrap();
    path
}

fn start(dir: &Path, auth: &str) -> Server {
    require_tool("openstack", "python-openstackclient (from PyPI)");
    require_tool("cinder", "python-cinderclient (from PyPI)");
    let config = config(dir, auth);
    Server::start(&dir.join("data"), Some(&config))
}

/// The project every test names in its paths.
const PROJECT: &str = "demo";

fn endpoint(server: &Server) -> String {
    format!("{}/v3/{PROJECT}", server.url)
}

/// Runs a client with no inherited `OS_*` settings; fails the test with its
/// output unless it succeeds.
fn client(program: &str, env: &[(&str, String)], args: &[&str]) -> String {
    succeeded(program, args, client_output(program, env, args))
}

/// What a client printed; fails the test with its output unless it
/// succeeded.
fn succeeded(program: &str, args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn client_output(program: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") || k.starts_with("CINDER_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// `openstack ARGS` in no-auth mode.
fn openstack(server: &Server, args: &[&str]) -> String {
    let env = [
        ("OS_AUTH_TYPE", "none".to_owned()),
        ("OS_ENDPOINT", endpoint(server)),
    ];
    client("openstack", &env, args)
}

/// `openstack ARGS -f json`, parsed.
fn openstack_json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    let text = openstack(server, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("openstack {args:?}: {e}: {text}"))
}

/// `cinder ARGS` in no-auth mode, at the newest microversion Ferry serves;
/// fails the test unless it succeeds.
fn cinder(server: &Server, args: &[&str]) -> String {
    succeeded("cinder", args, cinder_output(server, args))
}

fn cinder_output(server: &Server, args: &[&str]) -> Output {
    let endpoint = endpoint(server);
    let mut all = vec![
        "--os-auth-type",
        "noauth",
        "--os-user-id",
        "admin",
        "--os-project-id",
        PROJECT,
        "--os-endpoint",
        &endpoint,
        "--os-volume-api-version",
        "3.66",
    ];
    all.extend(args);
    client_output("cinder", &[], &all)
}

/// The `Property | Value` rows of a `cinder show` table.
fn cinder_show(server: &Server, volume: &str) -> std::collections::BTreeMap<String, String> {
    cinder(server, &["show", volume])
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() == 4).then(|| (cells[1].to_owned(), cells[2].to_owned()))
        })
        .collect()
}

/// Runs the connection script (python-cinderclient's library, as Nova
/// calls it) with `action` on `volume` for `host`.
fn connection_script(server: &Server, action: &str, volume: &str, host: &str) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/cinder_connection.py"
    );
    let endpoint = format!("{}/v3", server.url);
    client(
        "python3",
        &[],
        &[script, &endpoint, PROJECT, action, volume, host],
    )
}

/// Attaches `host` through os-initialize_connection and returns the NBD
/// URI it answers.
fn connect(server: &Server, volume: &str, host: &str) -> String {
    let out = connection_script(server, "connect", volume, host);
    let info: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(info["driver_volume_type"], "nbd", "{info}");
    let data = &info["data"];
    let uri = data["uri"].as_str().unwrap().to_owned();
    assert_eq!(
        uri,
        format!(
            "nbd://{}:{}/{}",
            data["host"].as_str().unwrap(),
            data["port"],
            data["export_name"].as_str().unwrap()
        )
    );
    assert_eq!(data["access_mode"], "rw");
    uri
}

/// Detaches `host` through os-terminate_connection.
fn disconnect(server: &Server, volume: &str, host: &str) {
    connection_script(server, "disconnect", volume, host);
}

/// Polls `show` until the volume's last migration ended; fails unless it
/// ended in success on `host`.
fn wait_migrated(show: impl Fn() -> (String, String, String), host: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (migstat, at, status) = show();
        match migstat.as_str() {
            "success" if at == host => {
                assert_eq!(status, "available");
                return;
            }
            "error" | "aborted" => panic!("migration to {host} ended {migstat} on {at}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "migration to {host} still {migstat} (on {at}, {status})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn openstack_volume_commands_create_set_migrate_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "none");

    let types = openstack_json(&server, &["volume", "type", "list"]);
    let mut names: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["p1", "p1#fast", "t1", "v1"]);

    let created = openstack_json(
        &server,
        &[
            "volume",
            "create",
            "--size",
            "1",
            "--type",
            "p1",
            "--description",
            "first",
            "os-vol",
        ],
    );
    assert_eq!(created["status"], "available", "{created}");
    assert_eq!(created["size"], 1);
    assert_eq!(created["type"], "p1");
    assert_eq!(created["description"], "first");
    assert_eq!(created["os-vol-host-attr:host"], "ferry@p1#default");
    let id = created["id"].as_str().unwrap().to_owned();

    // The data that must move with it, written over NBD.
    let uri = connect(&server, &id, "server-a");
    write_pattern(&uri);
    disconnect(&server, &id, "server-a");

    let listed = openstack_json(&server, &["volume", "list"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ID"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {listed}"));
    assert_eq!(
        (&row["Name"], &row["Status"], &row["Size"]),
        (&json!("os-vol"), &json!("available"), &json!(1))
    );

    openstack(
        &server,
        &[
            "volume",
            "set",
            "--name",
            "os-vol-2",
            "--description",
            "moved twice",
            "os-vol",
        ],
    );
    let shown = openstack_json(&server, &["volume", "show", "os-vol-2"]);
    assert_eq!(
        (&shown["id"], &shown["description"]),
        (&json!(id), &json!("moved twice"))
    );

    // A migration started with `openstack volume migrate`, followed to its
    // end through `openstack volume show`.
    for (host, force) in [("ferry@t1#default", false), ("ferry@p1#fast", true)] {
        let mut args = vec!["volume", "migrate", "--host", host];
        if force {
            args.push("--force-host-copy");
        }
        args.push("os-vol-2");
        openstack(&server, &args);
        wait_migrated(
            || {
                let v = openstack_json(&server, &["volume", "show", "os-vol-2"]);
                let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                (
                    text("os-vol-mig-status-attr:migstat"),
                    text("os-vol-host-attr:host"),
                    text("status"),
                )
            },
            host,
        );
        let uri = connect(&server, &id, "server-a");
        check_pattern(&uri);
        disconnect(&server, &id, "server-a");
    }
    let shown = openstack_json(&server, &["volume", "show", "os-vol-2"]);
    assert_eq!(shown["type"], "p1#fast");

    openstack(&server, &["volume", "delete", "os-vol-2"]);
    let listed = openstack_json(&server, &["volume", "list"]);
    assert_eq!(listed, json!([]));
    // Ferry's own API agrees: the volume is gone, not hidden.
    let (_, native) = server.call("GET", "/v1/volumes", None);
    assert_eq!(native["volumes"], json!([]));
}

#[test]
fn cinder_commands_migrate_retype_reset_and_force_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "none");

    let pools = cinder(&server, &["get-pools"]);
    for pool in [
        "ferry@t1#default",
        "ferry@v1#default",
        "ferry@p1#default",
        "ferry@p1#fast",
    ] {
        assert!(
            pools.contains(&format!("| name     | {pool} ")),
            "{pool} in {pools}"
        );
    }
    let detailed = cinder(&server, &["get-pools", "--detail"]);
    assert!(
        detailed.contains("| storage_protocol          | nbd "),
        "{detailed}"
    );
    assert!(
        detailed.contains("| volume_backend_name       | v1 "),
        "{detailed}"
    );

    let created = cinder(
        &server,
        &["create", "--name", "c-vol", "--volume-type", "v1", "1"],
    );
    assert!(
        created.contains("| status                         | available "),
        "{created}"
    );
    let shown = cinder_show(&server, "c-vol");
    let id = shown["id"].clone();
    assert_eq!(shown["os-vol-host-attr:host"], "ferry@v1#default");
    let uri = connect(&server, &id, "server-b");
    write_pattern(&uri);
    disconnect(&server, &id, "server-b");
    assert_eq!(cinder_show(&server, "c-vol")["status"], "available");

    let follow = || {
        let v = cinder_show(&server, "c-vol");
        (
            v["os-vol-mig-status-attr:migstat"].clone(),
            v["os-vol-host-attr:host"].clone(),
            v["status"].clone(),
        )
    };
    // The source driver's own path, then a copy in the host, then a
    // retype that must migrate.
    let said = cinder(&server, &["migrate", "c-vol", "ferry@t1#default"]);
    assert!(said.contains("has been accepted"), "{said}");
    wait_migrated(follow, "ferry@t1#default");
    cinder(
        &server,
        &[
            "migrate",
            "--force-host-copy",
            "True",
            "c-vol",
            "ferry@p1#fast",
        ],
    );
    wait_migrated(follow, "ferry@p1#fast");
    cinder(
        &server,
        &["retype", "--migration-policy", "on-demand", "c-vol", "v1"],
    );
    wait_migrated(follow, "ferry@v1#default");
    let shown = cinder_show(&server, "c-vol");
    assert_eq!(
        (
            shown["volume_type"].as_str(),
            shown["migration_status"].as_str()
        ),
        ("v1", "success")
    );
    let uri = connect(&server, &id, "server-b");
    check_pattern(&uri);

    // A retype that needs a migration is refused under the default policy,
    // with Cinder's error shape, and changes nothing.
    let refused = cinder_output(&server, &["retype", "c-vol", "t1"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("migration_policy never forbids") && err.contains("HTTP 400"),
        "{err}"
    );
    assert_eq!(cinder_show(&server, "c-vol")["volume_type"], "v1");

    cinder(&server, &["reset-state", "--state", "error", "c-vol"]);
    let shown = cinder_show(&server, "c-vol");
    assert_eq!(shown["status"], "error");
    cinder(
        &server,
        &["reset-state", "--reset-migration-status", "c-vol"],
    );
    assert_eq!(cinder_show(&server, "c-vol")["migration_status"], "None");

    // Forced away while still attached: its export goes with it.
    cinder(&server, &["force-delete", "c-vol"]);
    let listed = cinder(&server, &["list"]);
    assert!(!listed.contains("c-vol"), "{listed}");
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read 0 512", &uri])
        .output()
        .unwrap();
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stdout).contains("failed"));
}

#[test]
fn a_ferry_token_is_the_x_auth_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "token");
    let env = |token: &str| {
        [
            ("OS_AUTH_TYPE", "admin_token".to_owned()),
            ("OS_TOKEN", token.to_owned()),
            ("OS_ENDPOINT", endpoint(&server)),
        ]
    };
    let created = client(
        "openstack",
        &env(&server.token),
        &[
            "volume", "create", "--size", "1", "--type", "t1", "tok-vol", "-f", "json",
        ],
    );
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["status"], "available");
    let listed = client(
        "openstack",
        &env(&server.token),
        &["volume", "list", "-f", "value", "-c", "Name"],
    );
    assert_eq!(listed.trim(), "tok-vol");
    // cinder reads the token from OS_TOKEN and its auth type from its
    // command line, as the README shows.
    let url = endpoint(&server);
    let pools = client(
        "cinder",
        &env(&server.token)[1..],
        &[
            "--os-auth-type",
            "admin_token",
            "--os-project-id",
            PROJECT,
            "--os-endpoint",
            &url,
            "get-pools",
        ],
    );
    assert!(pools.contains("ferry@p1#fast"), "{pools}");

    // A wrong token is refused, and says what to send.
    let out = client_output("openstack", &env("not-a-token"), &["volume", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("X-Auth-Token is not valid"),
        "{err}"
    );
    // No token at all is refused too: no-auth is a setting, not a default.
    let out = client_output(
        "openstack",
        &[
            ("OS_AUTH_TYPE", "none".to_owned()),
            ("OS_ENDPOINT", endpoint(&server)),
        ],
        &["volume", "list"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
