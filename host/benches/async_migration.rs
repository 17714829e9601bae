//! Async migration, measured on a real `ferry serve`: 4k random read and
//! write IOPS (fio's nbd engine, iodepth 16) on a volume in
//! `migrating_attachable` against the same volume once idle, and the time
//! from the migrate request to `migrating_attachable` for 1, 4 and 16 GiB.
//!
//! Run: `cargo bench -p ferry --bench async_migration`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::run;

const GIB: u64 = 1 << 30;

struct Ferry {
    child: Child,
    url: String,
    token: String,
    agent: ureq::Agent,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ferry {
    fn start(dir: &std::path::Path) -> Ferry {
        let config = support::zoned_config(dir);
        let data = dir.join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("ferry serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .find_map(|l| l.ok().filter(|l| l.contains("ferry serving")))
            .expect("serving line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("url")
            .to_owned();
        let token = std::fs::read_to_string(data.join("admin.token"))
            .expect("token")
            .trim()
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Ferry {
            child,
            url,
            token,
            agent,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .expect("request");
        let mut resp = self.agent.run(req).expect("http");
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn volume_with_data(&self, size: u64, data: u64) -> String {
        let v = self.call(
            "POST",
            "/v1/volumes",
            Some(json!({"name": "bench", "size_bytes": size, "array": "p1"})),
        );
        let id = v["id"].as_str().expect("volume id").to_owned();
        let (att, uri) = self.attach(&id);
        // qemu-io takes at most 2 GiB a request.
        let mut args = vec!["-f".to_owned(), "raw".to_owned()];
        let mut off = 0;
        while off < data {
            let len = (data - off).min(GIB);
            args.extend(["-c".to_owned(), format!("write -P 0x5a {off} {len}")]);
            off += len;
        }
        args.extend(["-c".to_owned(), "flush".to_owned(), uri]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("qemu-io", &refs);
        self.call(
            "DELETE",
            &format!("/v1/volumes/{id}/attachments/{att}"),
            None,
        );
        id
    }

    fn attach(&self, id: &str) -> (String, String) {
        let a = self.call(
            "POST",
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "bench"})),
        );
        (
            a["id"].as_str().expect("attachment").to_owned(),
            a["uri"].as_str().expect("uri").to_owned(),
        )
    }

    fn status(&self, id: &str) -> String {
        self.call("GET", &format!("/v1/volumes/{id}/migration"), None)["migration_status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Migrates to t1; returns the time until `migrating_attachable`.
    fn migrate(&self, id: &str) -> Duration {
        let t = Instant::now();
        self.call(
            "POST",
            &format!("/v1/volumes/{id}/migrate"),
            Some(json!({"array": "t1"})),
        );
        loop {
            let s = self.status(id);
            if s == "migrating_attachable" || s == "success" {
                return t.elapsed();
            }
            assert!(s != "error" && t.elapsed() < Duration::from_secs(60), "{s}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_success(&self, id: &str) {
        let t = Instant::now();
        while self.status(id) != "success" {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "migration never ended"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// IOPS of a 4k random fio run of `secs` seconds.
fn fio_iops(uri: &str, rw: &str, secs: u64) -> f64 {
    let out = run(
        "fio",
        &[
            "--name=bench",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={rw}"),
            "--bs=4k",
            "--iodepth=16",
            "--size=4G",
            "--time_based",
            &format!("--runtime={secs}"),
            "--output-format=json",
        ],
    );
    // fio may print notes before its JSON document.
    let json = out.find('{').map_or(out.as_str(), |i| &out[i..]);
    let v: Value = serde_json::from_str(json).expect("fio json");
    let job = &v["jobs"][0];
    job["read"]["iops"].as_f64().unwrap_or(0.0) + job["write"]["iops"].as_f64().unwrap_or(0.0)
}

/// Lets the writeback of what came before finish, so neither run of a pair
/// pays for the other's dirty pages: both follow a large write (the fill,
/// or the hydration), and on two cores the kernel writing gigabytes back
/// during a 5 s run moves its IOPS by a third.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

/// Median, min and max.
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(dir.path());
    let secs = 5;

    // I/O during migrating_attachable versus the same volume idle, in
    // rounds: a fresh volume each, so one noisy 5 s run does not make the
    // figure. The migrating run starts as a server would: attach, then
    // I/O at once, while the worker hydrates.
    let rounds = support::runs(5);
    println!("4k random I/O, iodepth 16, {secs} s each, fio nbd engine, {rounds} rounds:");
    for rw in ["randread", "randwrite"] {
        let mut during = Vec::new();
        let mut idle = Vec::new();
        for round in 1..=rounds {
            let id = ferry.volume_with_data(16 * GIB, 4 * GIB);
            settle();
            let ready = ferry.migrate(&id);
            let (att, uri) = ferry.attach(&id);
            let d = fio_iops(&uri, rw, secs);
            let still = ferry.status(&id);
            ferry.wait_success(&id);
            settle();
            let i = fio_iops(&uri, rw, secs);
            println!(
                "  {rw:<9} round {round}: while migrating {d:>9.0} IOPS, idle {i:>9.0} IOPS, ratio {:.3} (attachable after {ready:.1?}; status after the run: {still})",
                d / i
            );
            during.push(d);
            idle.push(i);
            ferry.call(
                "DELETE",
                &format!("/v1/volumes/{id}/attachments/{att}"),
                None,
            );
            ferry.call("DELETE", &format!("/v1/volumes/{id}"), None);
        }
        let (d, i) = (stats(&mut during), stats(&mut idle));
        println!(
            "BENCH migrating-{rw} unit=IOPS runs={rounds} ferry={:.0} ferry_min={:.0} ferry_max={:.0} peer={:.0} peer_min={:.0} peer_max={:.0} | 4k {} IOPS (iodepth 16) while `migrating_attachable`; peer: same volume idle",
            d.0,
            d.1,
            d.2,
            i.0,
            i.1,
            i.2,
            rw.trim_start_matches("rand")
        );
    }

    println!("time from migrate request to migrating_attachable (median of 3):");
    for size in [GIB, 4 * GIB, 16 * GIB] {
        let mut times: Vec<Duration> = (0..3)
            .map(|_| {
                let id = ferry.volume_with_data(size, 64 << 20);
                let t = ferry.migrate(&id);
                ferry.wait_success(&id);
                t
            })
            .collect();
        times.sort();
        println!(
            "  {:>2} GiB  median {:>8.1?}  min {:>8.1?}  max {:>8.1?}",
            size / GIB,
            times[1],
            times[0],
            times[2]
        );
    }
}
