//! Shared helpers of the process-level tests: start a real `ferry serve` on
//! loopback ports, talk to its API, run the CLI and the peer NBD tools.
#![allow(dead_code)]

pub mod migrations;
pub mod remote;
pub mod sockets;
pub mod tls;
pub mod volume_model;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The export name of an attachment's `nbd://host:port/EXPORT` URI: it
/// stays the same across restarts, while the port may not.
pub fn export_of(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or(uri)
}

/// Path of the `ferry` binary cargo built for these tests.
pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// Fails with the Debian package to install when a peer tool is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: install the Debian package {package} (cargo xtask install-peers)"
    );
}

/// A `ferry serve` child process on loopback ports.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub url: String,
    pub nbd: String,
    pub token: String,
    config: Option<PathBuf>,
    /// What the server wrote to stderr (its log), when captured.
    pub log: Option<ServerLog>,
}

/// How to start a server, beyond its data directory and config.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// Keep the server's stderr in [`Server::log`] (still echoed).
    pub capture_stderr: bool,
    /// Start the server with this soft RLIMIT_NOFILE (the hard limit stays).
    pub nofile_soft_limit: Option<u64>,
    /// The server's `RUST_LOG` instead of `warn`.
    pub rust_log: Option<String>,
    /// More environment variables for the server.
    pub env: Vec<(String, String)>,
    /// `host:port` of the HTTP API and of the NBD server (any free ports
    /// on loopback when absent).
    pub addresses: Option<(String, String)>,
    /// The server's working directory (the test's when absent): relative
    /// paths in its configuration are read from there.
    pub current_dir: Option<PathBuf>,
}

/// The lines a server wrote to stderr so far.
#[derive(Debug, Default, Clone)]
pub struct ServerLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl ServerLog {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` for a line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// The array `name` as `GET /v1/arrays` shows it.
    pub fn array(&self, name: &str) -> Value {
        let (status, arrays) = self.call("GET", "/v1/arrays", None);
        assert_eq!(status, 200, "{arrays}");
        arrays["arrays"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no array {name} in {arrays}"))
    }

    /// Starts `ferry serve` on `data_dir` (with `config` if given) and waits
    /// until it answers `/healthz`.
    pub fn start(data_dir: &Path, config: Option<&Path>) -> Server {
        Self::launch(data_dir, config, &Launch::default())
    }

    /// Like [`Server::start`], with the extra settings of `how`.
    pub fn launch(data_dir: &Path, config: Option<&Path>, how: &Launch) -> Server {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(match &how.addresses {
                Some((http, nbd)) => ["--listen", http.as_str(), "--nbd-listen", nbd.as_str()],
                None => ["--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"],
            })
            .env("RUST_LOG", how.rust_log.as_deref().unwrap_or("warn"))
            .stdout(Stdio::piped())
            .stderr(if how.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        if let Some(d) = &how.current_dir {
            cmd.current_dir(d);
        }
        cmd.envs(how.env.iter().map(|(k, v)| (k, v)));
        if let Some(soft) = how.nofile_soft_limit {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: between fork and exec only async-signal-safe calls:
            // getrlimit and setrlimit on the child itself.
            unsafe {
                cmd.pre_exec(move || {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    lim.rlim_cur = soft.min(lim.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn ferry serve");
        let log = how.capture_stderr.then(|| {
            let log = ServerLog::default();
            let stderr = child.stderr.take().expect("stderr");
            let lines = log.0.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[ferry] {line}");
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
            log
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains("ferry serving") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                println!("[ferry] {line}");
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ferry serve did not print its serving line within 60 s");
        let url = word_after(&line, "http://")
            .map(|a| format!("http://{a}"))
            .expect("url");
        let nbd = word_after(&line, "(nbd ").expect("nbd addr");
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned();
        let server = Server {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            url,
            nbd,
            token,
            config: config.map(Path::to_owned),
            log,
        };
        server.wait_healthy();
        server
    }

    /// The server's process id (to look at its descriptors in /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The host and port of the HTTP API, for raw sockets.
    pub fn http_addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = self.request("GET", "/healthz", None, None) {
                return;
            }
            assert!(Instant::now() < deadline, "ferry never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a request with the admin token; returns status and JSON body
    /// (Null when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(method, path, body, Some(&self.token))
            .expect("request failed")
    }

    /// Sends a request with the given token (or none).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let uri = format!("{}{}", self.url, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => {
                let req = builder
                    .header("content-type", "application/json")
                    .body(b.to_string())
                    .map_err(|e| e.to_string())?;
                agent.run(req)
            }
            None => {
                let req = builder.body(()).map_err(|e| e.to_string())?;
                agent.run(req)
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, json))
    }

    /// Sends `bytes` as the raw body of a request with the admin token (a
    /// driver upload); returns status and JSON body.
    pub fn send_bytes(&self, method: &str, path: &str, bytes: &[u8]) -> (u16, Value) {
        let (status, json, _) = self.send_bytes_with_headers(method, path, bytes);
        (status, json)
    }

    /// [`Server::send_bytes`], with the answer's headers (names lowercase).
    pub fn send_bytes_with_headers(
        &self,
        method: &str,
        path: &str,
        bytes: &[u8],
    ) -> (u16, Value, Vec<(String, String)>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.url, path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/wasm")
            .body(bytes.to_vec())
            .expect("request");
        let resp = agent.run(req).expect("upload failed");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    v.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let text = resp.into_body().read_to_string().expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json, headers)
    }

    /// CPU time the server process has used so far (user and system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 14th and 15th of the line.
        let rest = &stat[stat.rfind(')').expect("stat line") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf reads a constant of the system.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// Fetches a path without a token and returns status and raw text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        self.get_text_with(path, None)
    }

    /// Fetches a path with the given token (or none) and returns status
    /// and raw text.
    pub fn get_text_with(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.get(format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.call().expect("request failed");
        let status = resp.status().as_u16();
        (status, resp.into_body().read_to_string().expect("body"))
    }

    /// Scrapes `/metrics` with the admin token, as the default `[http]
    /// metrics = "reader"` asks; returns status and the text.
    pub fn metrics(&self) -> (u16, String) {
        self.get_text_with("/metrics", Some(&self.token))
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(ferry_bin())
            .args(args)
            .env("FERRY_URL", &self.url)
            .env("FERRY_TOKEN", &self.token)
            .output()
            .expect("run ferry cli")
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(mut self) -> PathBuf {
        self.signal(libc::SIGTERM);
        self.data_dir.clone()
    }

    /// Kills with SIGKILL, as a crash would.
    pub fn kill(mut self) -> PathBuf {
        self.signal(libc::SIGKILL);
        self.data_dir.clone()
    }

    /// Stops (SIGTERM) and starts again on the same data dir and config.
    pub fn restart(self) -> Server {
        let config = self.config.clone();
        let dir = self.stop();
        Server::start(&dir, config.as_deref())
    }

    /// Kills with SIGKILL and starts again on the same data dir, config
    /// and addresses, so that its peers find it where it was.
    pub fn kill_and_relaunch(self) -> Server {
        let how = Launch {
            addresses: Some((self.http_addr(), self.nbd.clone())),
            ..Launch::default()
        };
        let config = self.config.clone();
        let dir = self.kill();
        Server::launch(&dir, config.as_deref(), &how)
    }

    fn signal(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, sig) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry did not exit within 30 s of signal {sig}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn word_after(line: &str, marker: &str) -> Option<String> {
    let start = line.find(marker)? + marker.len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ')' || c == ',')
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('/').to_owned())
}

/// Runs `ferry serve` with `config` where it is expected to refuse to
/// start; returns whether it exited successfully and what it wrote to
/// stderr. Fails the test if it is still running after 30 s.
pub fn serve_expecting_refusal(data_dir: &Path, config: &Path) -> (bool, String) {
    use std::io::Read as _;
    let mut child = Command::new(ferry_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nbd-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry serve");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        // Ends when the process exits (or closes stderr).
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferry serve kept running with {}", config.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stderr = reader.join().unwrap_or_default();
    }
    let status = child.wait().expect("wait for ferry serve");
    (status.success(), stderr)
}

/// The array called `name` in a `GET /v1/arrays` answer.
pub fn array_named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no array {name} in {list}"))
}

/// Runs a peer tool; panics with its output when it fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    run_in(Path::new("."), tool, args)
}

/// Runs a tool in `dir`; panics with its output when it fails.
pub fn run_in(dir: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// qemu-io on an NBD URI with the given commands; fails the test on any
/// error, including a pattern mismatch (qemu-io reports it on stdout).
pub fn qemu_io(uri: &str, commands: &[&str]) -> String {
    require_tool("qemu-io", "qemu-utils");
    let mut args = vec!["-f", "raw"];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(uri);
    let out = run("qemu-io", &args);
    assert!(
        !out.contains("Pattern verification failed") && !out.contains("failed:"),
        "qemu-io {commands:?} on {uri}: {out}"
    );
    out
}
