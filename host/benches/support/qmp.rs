//! qemu-storage-daemon under QMP: a daemon exporting a raw file over NBD on
//! a loopback port, and the client of its monitor (commands, their
//! answers, and events with their stamps).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A QMP connection: commands and their answers, events kept as they come.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    pub fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "QMP socket {}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let writer = stream.try_clone().expect("QMP socket");
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read(Instant::now() + Duration::from_secs(20));
        assert!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        qmp.execute("qmp_capabilities", json!({}))
            .unwrap_or_else(|e| panic!("qmp_capabilities: {e}"));
        qmp
    }

    /// The next message; panics past `deadline`.
    fn read(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "QMP: no message in time");
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .expect("QMP read timeout");
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("QMP: qemu-storage-daemon closed its monitor"),
            Ok(_) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("QMP sent something not JSON ({e}): {line}")),
            Err(e) => panic!("QMP: no message in time ({e})"),
        }
    }

    /// Runs a command; its `return`, or its error's description.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut msg = json!({"execute": command, "arguments": arguments}).to_string();
        msg.push('\n');
        self.writer
            .write_all(msg.as_bytes())
            .unwrap_or_else(|e| panic!("QMP {command}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.read(deadline);
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(e.to_string());
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    /// The first event called `name` not yet taken, waiting up to `limit`.
    pub fn wait_event(&mut self, name: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            let v = self.read(deadline);
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

/// A QMP event's stamp (qemu's wall clock) in ms since the epoch.
pub fn event_ms(e: &Value) -> f64 {
    let t = &e["timestamp"];
    match (t["seconds"].as_f64(), t["microseconds"].as_f64()) {
        (Some(s), Some(us)) => s * 1e3 + us / 1e3,
        _ => panic!("QMP event without a timestamp: {e}"),
    }
}

/// A `qemu-storage-daemon` exporting a raw file over NBD on a loopback
/// port, with its QMP monitor on a unix socket; stopped when dropped.
pub struct Qsd {
    pub qmp: Qmp,
    port: u16,
    _daemon: Stopper,
}

impl Qsd {
    /// Starts the daemon on `src`; its socket and log in `dir` are named
    /// after `round`.
    pub fn start(dir: &Path, src: &Path, round: usize) -> Qsd {
        let port = super::free_port();
        let sock = dir.join(format!("qmp-{round}.sock"));
        // Option values separate on commas; a path holding one would be
        // read as more options.
        assert!(
            !src.to_string_lossy().contains(',') && !sock.to_string_lossy().contains(','),
            "the scratch dir's path holds a comma: {}",
            dir.display()
        );
        let log = File::create(dir.join(format!("qsd-{round}.log"))).expect("qsd log");
        let child = Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "file,node-name=src-file,filename={}",
                src.display()
            ))
            .args(["--blockdev", "raw,node-name=src,file=src-file"])
            .arg("--nbd-server")
            .arg(format!(
                "addr.type=inet,addr.host=127.0.0.1,addr.port={port}"
            ))
            .args([
                "--export",
                "type=nbd,id=exp0,node-name=src,name=bench,writable=on",
            ])
            .arg("--chardev")
            .arg(format!(
                "socket,id=mon0,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["--monitor", "chardev=mon0"])
            .stdout(log.try_clone().expect("qsd log"))
            .stderr(log)
            .spawn()
            .expect("qemu-storage-daemon (Debian package qemu-utils)");
        // Owned before anything can fail, so the daemon is stopped then too.
        let daemon = Stopper(Some(child));
        let qmp = Qmp::connect(&sock);
        super::wait_port(port);
        Qsd {
            qmp,
            port,
            _daemon: daemon,
        }
    }

    pub fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/bench", self.port)
    }
}

/// Stops its child when dropped: SIGTERM, then SIGKILL after 10 s.
struct Stopper(Option<Child>);

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            super::stop_child(child, Duration::from_secs(10));
        }
    }
}
