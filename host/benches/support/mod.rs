//! Shared helpers of the side-by-side benchmarks: a real `ferry serve` on
//! loopback ports, its HTTP API, fio's nbd engine, run statistics and the
//! `BENCH` result lines that `cargo xtask bench` collects.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

/// fio logging every write, and the figures over windows of its log.
pub mod fio_log;
/// qemu-storage-daemon serving a file over NBD, driven through QMP.
pub mod qmp;
/// A CA and a server certificate made with `openssl`, shared with the
/// tests.
#[path = "../../../tests/support/tls.rs"]
pub mod tls;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Number of runs of each measurement (`FERRY_BENCH_RUNS`, default `dflt`).
pub fn runs(dflt: usize) -> usize {
    std::env::var("FERRY_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(dflt)
}

/// A scratch directory under `FERRY_BENCH_DIR` (default: the temp dir).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(
        std::env::var_os("FERRY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("scratch dir")
}

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summary(samples: &[f64]) -> Summary {
    assert!(!samples.is_empty(), "no samples");
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    Summary {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
        n: v.len(),
    }
}

/// The `q` quantile (0..=1) of samples, nearest rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Prints one machine-parsable result line:
/// `BENCH <id> unit=<u> ferry=<median> ferry_min=.. ferry_max=.. runs=<n>
/// [peer=.. peer_min=.. peer_max=..] | <what>`.
pub fn report(id: &str, what: &str, unit: &str, ferry: Summary, peer: Option<Summary>) {
    let mut line = format!(
        "BENCH {id} unit={unit} runs={} ferry={} ferry_min={} ferry_max={}",
        ferry.n,
        num(ferry.median),
        num(ferry.min),
        num(ferry.max)
    );
    if let Some(p) = peer {
        line.push_str(&format!(
            " peer={} peer_min={} peer_max={}",
            num(p.median),
            num(p.min),
            num(p.max)
        ));
    }
    println!("{line} | {what}");
}

fn num(v: f64) -> String {
    // Enough digits for microseconds and for IOPS alike.
    format!("{v:.4}")
}

/// A `ferry serve` child process on loopback ports.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub url: String,
    /// `host:port` of its NBD server.
    pub nbd: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `ferry serve` on `data_dir` with the embedded default arrays
    /// (`t1`, `v1`, `v2`, `p1`) and waits until it answers `/healthz`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, None)
    }

    /// Starts `ferry serve` with the configuration file `config` (the
    /// embedded default when `None`).
    pub fn start_with(data_dir: &Path, config: Option<&Path>) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.arg("serve").arg("--data-dir").arg(data_dir).args([
            "--listen",
            "127.0.0.1:0",
            "--nbd-listen",
            "127.0.0.1:0",
        ]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        // FERRY_BENCH_LOG=<filter> shows the server's log on stderr.
        let log = std::env::var("FERRY_BENCH_LOG").ok();
        let mut child = command
            .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ferry serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep draining so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if log.is_some() {
                    eprintln!("{line}");
                }
                if !sent && line.contains("ferry serving") {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ferry serve did not print its serving line within 60 s");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("url in the serving line")
            .trim_end_matches('/')
            .to_owned();
        let nbd = line
            .split_once("(nbd ")
            .and_then(|(_, rest)| rest.split([')', ' ', ',']).next())
            .expect("nbd address in the serving line")
            .to_owned();
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let server = Server {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            url,
            nbd,
            token,
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.try_call("GET", "/healthz", None).map(|r| r.0) != Ok(200) {
            assert!(Instant::now() < deadline, "ferry never became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A new agent of its own (one per client thread).
    pub fn agent(&self) -> ureq::Agent {
        self.agent.clone()
    }

    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        call_with(&self.agent, &self.url, &self.token, method, path, body)
    }

    /// A request with the admin token; panics on transport errors.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_call(method, path, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Creates a volume on `array`; returns its id.
    pub fn create(&self, name: &str, array: &str, size: u64) -> String {
        let (s, v) = self.call(
            "POST",
            "/v1/volumes",
            Some(serde_json::json!({"name": name, "size_bytes": size, "array": array})),
        );
        assert_eq!(s, 201, "create {name}: {v}");
        v["id"].as_str().expect("volume id").to_owned()
    }

    /// Attaches a volume; returns the attachment id and its NBD URI.
    pub fn attach(&self, id: &str) -> (String, String) {
        let (s, a) = self.call(
            "POST",
            &format!("/v1/volumes/{id}/attachments"),
            Some(serde_json::json!({"server": "bench"})),
        );
        assert!(s == 200 || s == 201, "attach {id}: {a}");
        (
            a["id"].as_str().expect("attachment id").to_owned(),
            a["uri"].as_str().expect("attachment uri").to_owned(),
        )
    }

    pub fn detach(&self, id: &str, att: &str) {
        let (s, v) = self.call(
            "DELETE",
            &format!("/v1/volumes/{id}/attachments/{att}"),
            None,
        );
        assert!(s < 300, "detach {id}: {v}");
    }

    /// Path of a volume's LUN file on the file-backed demo arrays.
    pub fn lun_path(&self, array: &str, id: &str) -> PathBuf {
        self.data_dir
            .join("arrays")
            .join(array)
            .join("default")
            .join(format!("volume-{id}"))
    }

    /// CPU seconds (user and system, every thread's, those ended too) the
    /// server has used since it started.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    /// Peak resident memory (VmHWM) of the server, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Duration::from_secs(20));
        }
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it lingers past `grace`.
pub fn stop_child(mut child: Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid: a clean stop first.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One request with a bearer token; status and JSON body (Null when empty).
pub fn call_with(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map(Value::to_string).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .into_with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, json))
}

/// An RFC 3339 time (as the API writes `started_at`, `finished_at` and
/// events' `at`) as ms since the epoch.
pub fn rfc3339_ms(v: &Value) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(v.as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1e3)
}

/// A configuration whose target array declares take-over: `t1`
/// (takeover) zoned with `p1` (plain), the async target path's pair.
pub fn zoned_config(dir: &Path) -> PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        "zoning = [[\"t1\", \"p1\"]]\n[[array]]\nname = \"t1\"\ndriver = \"takeover\"\n\
         [[array]]\nname = \"p1\"\ndriver = \"plain\"\n",
    )
    .expect("config");
    config
}

/// Fails, naming the Debian package, when a tool is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package {package}"
    );
}

/// Runs a tool; panics with its stderr when it fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    run_with_home(tool, args, None)
}

/// Runs a tool with `HOME` set to `home` (where libnbd looks for TLS
/// certificates when a URI cannot name them).
pub fn run_with_home(tool: &str, args: &[&str], home: Option<&Path>) -> String {
    let mut command = Command::new(tool);
    if let Some(home) = home {
        command.env("HOME", home);
    }
    let out = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (`cargo xtask bench` installs the peer tools)"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `len` bytes of a pattern from offset 0 through an NBD URI and
/// flushes (qemu-io takes at most 2 GiB a request).
pub fn fill(uri: &str, len: u64) {
    let mut args = vec!["-f".to_owned(), "raw".to_owned()];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(GIB);
        args.extend(["-c".to_owned(), format!("write -P 0x5a {off} {n}")]);
        off += n;
    }
    args.extend(["-c".to_owned(), "flush".to_owned(), uri.to_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &refs);
}

/// What one fio run measured.
#[derive(Debug, Clone, Copy)]
pub struct FioResult {
    pub iops: f64,
    /// Bytes a second, reads plus writes.
    pub bw: f64,
    /// Requests completed, reads plus writes.
    pub requests: f64,
}

/// One time-based fio run with the nbd engine over the first `size` bytes.
pub fn fio(uri: &str, rw: &str, bs: &str, iodepth: u32, size: u64, secs: u64) -> FioResult {
    fio_with_home(None, uri, rw, bs, iodepth, size, secs)
}

/// The same, with `HOME` at `home`: an `nbds://` URI's CA goes in
/// `HOME/.pki/libnbd/ca-cert.pem`, since fio's engine may not name a file.
pub fn fio_with_home(
    home: Option<&Path>,
    uri: &str,
    rw: &str,
    bs: &str,
    iodepth: u32,
    size: u64,
    secs: u64,
) -> FioResult {
    let out = run_with_home(
        "fio",
        &[
            "--name=bench",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={rw}"),
            &format!("--bs={bs}"),
            &format!("--iodepth={iodepth}"),
            &format!("--size={size}"),
            "--time_based",
            &format!("--runtime={secs}"),
            "--output-format=json",
        ],
        home,
    );
    // fio may print notes before its JSON document.
    let json = out.find('{').map_or(out.as_str(), |i| &out[i..]);
    let v: Value = serde_json::from_str(json).expect("fio json");
    let job = &v["jobs"][0];
    let f = |dir: &str, k: &str| job[dir][k].as_f64().unwrap_or(0.0);
    FioResult {
        iops: f("read", "iops") + f("write", "iops"),
        bw: f("read", "bw_bytes") + f("write", "bw_bytes"),
        requests: f("read", "total_ios") + f("write", "total_ios"),
    }
}

/// CPU seconds (user and system, every thread's, those ended too) the
/// process `pid` has used since it started.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name may hold spaces and parentheses: count fields from
    // its closing parenthesis, after which utime and stime are the 12th
    // and 13th (fields 14 and 15 of proc(5)).
    let after_name = stat.rsplit_once(')').expect("a stat line").1;
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|t| t.parse::<u64>().expect("utime and stime in clock ticks"))
        .sum();
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    ticks as f64 / hz as f64
}

/// A free loopback TCP port (bound once and released; fine for a bench).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until something accepts TCP connections on the loopback port.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
