//! A second `ferry serve` as the remote array of a first one: the first
//! host's configuration with the array `far` (the second host's `p1`,
//! through `ferry-remote`), and the second host's view of a volume.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Server;

/// Writes host A's configuration: `prelude` (top-level settings), a local
/// array and `far`, the array `p1` of host `b`. With `list_nbd` false B's
/// NBD server is left out of `nbd_allow`.
pub fn config_of_a(dir: &Path, b: &Server, prelude: &str, list_nbd: bool) -> PathBuf {
    let path = dir.join("a.toml");
    let nbd_allow = if list_nbd {
        format!("nbd_allow = [\"nbd://{}\"]\n", b.nbd)
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            "{prelude}\
             [[array]]\nname = \"local\"\ndriver = \"plain\"\n\
             [[array]]\nname = \"far\"\ndriver = \"ferry-remote\"\nlun_files = false\n\
             http_allow = [\"{url}\"]\n{nbd_allow}\
             settings = {{ endpoint = \"{url}\", array = \"p1\" }}\n\
             secrets = {{ token = {{ file = {token:?} }} }}\n",
            url = b.url,
            token = b.data_dir.join("admin.token"),
        ),
    )
    .unwrap();
    path
}

/// B's volume that holds A's volume `id`, if any.
pub fn on_b(b: &Server, id: &str) -> Option<Value> {
    let (status, list) = b.call("GET", "/v1/volumes", None);
    assert_eq!(status, 200, "{list}");
    list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == format!("ferry-{id}"))
        .cloned()
}

/// Starts host B (the embedded default arrays) in `dir/b`, then host A in
/// `dir/a` with `far` on B (`list_nbd` as in [`config_of_a`]).
pub fn two_hosts(dir: &Path, list_nbd: bool) -> (Server, Server) {
    let b = Server::start(&dir.join("b"), None);
    let a = Server::start(&dir.join("a"), Some(&config_of_a(dir, &b, "", list_nbd)));
    (a, b)
}
