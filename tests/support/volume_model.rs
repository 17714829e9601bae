//! The async migration tests' shared fixture: the two-array configuration
//! (`p1` plain, `t1` takeover, zoned, hydration paced), a model of what
//! every 64 KiB block of a volume must read as, a small deterministic
//! random number generator for the writes, and the API steps those tests
//! share (a volume holding a pattern, attach, wait for a migration status).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, qemu_io};

/// Model granularity: every write is whole 64 KiB blocks of one byte.
pub const BLOCK: u64 = 64 << 10;

/// Arrays `p1` (plain) and `t1` (takeover), zoned, with the background
/// hydration (and the abort's copy-back) paced at `hydration_bps`, so that
/// I/O lands while they run.
pub fn config(dir: &Path, hydration_bps: u64) -> PathBuf {
    config_with(dir, hydration_bps, Takeover::Rust)
}

/// Which `takeover` driver array `t1` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// The Rust example, embedded in the host.
    Rust,
    /// Its Python twin, `python-takeover`, from its component file.
    Python,
}

/// [`config`] with `t1` run by `takeover`.
pub fn config_with(dir: &Path, hydration_bps: u64, takeover: Takeover) -> PathBuf {
    let (driver, section) = match takeover {
        Takeover::Rust => ("takeover", String::new()),
        Takeover::Python => {
            let path = ferry::guests::PYTHON_TAKEOVER_PATH.expect(
                "the Python example drivers were not built: componentize-py (from PyPI) was \
                 missing when the host was built; run cargo xtask install-peers",
            );
            (
                "python-takeover",
                format!("[[driver]]\nname = \"python-takeover\"\npath = {path:?}\n"),
            )
        }
    };
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "zoning = [[\"t1\", \"p1\"]]\n\
             hydration_bandwidth_bytes_per_sec = {hydration_bps}\n\
             {section}\
             [[array]]\nname = \"t1\"\ndriver = \"{driver}\"\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n"
        ),
    )
    .unwrap();
    config
}

/// What every block of the volume must read as.
#[derive(Clone)]
pub struct Model {
    pub blocks: Vec<u8>,
}

impl Model {
    pub fn new(size: u64) -> Self {
        Self {
            blocks: vec![0; (size / BLOCK) as usize],
        }
    }

    pub fn set(&mut self, off: u64, len: u64, byte: u8) {
        for b in &mut self.blocks[(off / BLOCK) as usize..((off + len) / BLOCK) as usize] {
            *b = byte;
        }
    }

    /// qemu-io read commands covering runs of equal blocks in `[from, to)`.
    pub fn reads(&self, from: u64, to: u64) -> Vec<String> {
        let mut out = Vec::new();
        let (mut i, end) = ((from / BLOCK) as usize, (to / BLOCK) as usize);
        while i < end {
            let mut j = i + 1;
            while j < end && self.blocks[j] == self.blocks[i] && j - i < 1024 {
                j += 1;
            }
            out.push(format!(
                "read -P {} {} {}",
                self.blocks[i],
                i as u64 * BLOCK,
                (j - i) as u64 * BLOCK
            ));
            i = j;
        }
        out
    }

    /// The model as a sparse raw image, for `qemu-img compare`.
    pub fn write_image(&self, path: &Path) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(path).unwrap();
        f.set_len(self.blocks.len() as u64 * BLOCK).unwrap();
        for (i, b) in self.blocks.iter().enumerate() {
            if *b != 0 {
                f.write_all_at(&vec![*b; BLOCK as usize], i as u64 * BLOCK)
                    .unwrap();
            }
        }
    }
}

/// xorshift64: the same writes on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// qemu-io commands for `count` random writes of 1 to `max_blocks` whole
/// blocks, recorded in the model, each followed by `pause_ms` of sleep, and
/// a flush at the end.
pub fn random_write_cmds(
    model: &mut Model,
    rng: &mut Rng,
    count: usize,
    max_blocks: u64,
    pause_ms: u64,
) -> Vec<String> {
    let blocks = model.blocks.len() as u64;
    let mut cmds = Vec::new();
    for _ in 0..count {
        let n = 1 + rng.next() % max_blocks;
        let first = rng.next() % (blocks - n);
        let byte = (rng.next() % 250) as u8 + 1;
        cmds.push(format!("write -P {byte} {} {}", first * BLOCK, n * BLOCK));
        model.set(first * BLOCK, n * BLOCK, byte);
        if pause_ms > 0 {
            cmds.push(format!("sleep {pause_ms}"));
        }
    }
    cmds.push("flush".into());
    cmds
}

/// The volume over NBD reads as the model in `[from, to)`.
pub fn verify(uri: &str, model: &Model, from: u64, to: u64) {
    let cmds = model.reads(from, to);
    for chunk in cmds.chunks(200) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        qemu_io(uri, &refs);
    }
}

/// Runs qemu-io `cmds` on `uri`.
pub fn io(uri: &str, cmds: &[String]) {
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io(uri, &refs);
}

/// A volume `name` of `size` bytes on `p1` holding four extents of
/// `extent` bytes (holes between them), recorded in the model.
pub fn create_with_pattern(
    server: &Server,
    name: &str,
    size: u64,
    extent: u64,
    model: &mut Model,
) -> String {
    create_with_pattern_on(server, "p1", name, size, extent, model)
}

/// [`create_with_pattern`] on `array`.
pub fn create_with_pattern_on(
    server: &Server,
    array: &str,
    name: &str,
    size: u64,
    extent: u64,
    model: &mut Model,
) -> String {
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": size, "array": array})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "loader"})),
    );
    let uri = a["uri"].as_str().unwrap().to_owned();
    let mut cmds = Vec::new();
    for k in 0..4u64 {
        let off = k * (size / 4);
        let byte = 0x10 + k as u8;
        cmds.push(format!("write -P {byte} {off} {extent}"));
        model.set(off, extent, byte);
    }
    cmds.push("flush".into());
    io(&uri, &cmds);
    server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{}", a["id"].as_str().unwrap()),
        None,
    );
    id
}

/// `GET /v1/volumes/{id}/migration`.
pub fn migration(server: &Server, id: &str) -> Value {
    server
        .call("GET", &format!("/v1/volumes/{id}/migration"), None)
        .1
}

/// Polls the migration until its status is `status`; fails on another end
/// state (`error`, `aborted`, `success`) or after `limit`.
pub fn wait_for(server: &Server, id: &str, status: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let m = migration(server, id);
        if m["migration_status"] == status {
            // A success counts once its source LUN's removal is over too.
            if status != "success" || m["source_removal"] != "pending" {
                return m;
            }
            assert!(start.elapsed() < limit, "source LUN not removed: {m}");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        assert!(
            !matches!(
                m["migration_status"].as_str(),
                Some("error" | "aborted" | "success")
            ),
            "waiting for {status}: {m}"
        );
        assert!(start.elapsed() < limit, "no {status} after {limit:?}: {m}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Attaches volume `id` for server `app`; returns the attachment's id and
/// NBD URI.
pub fn attach(server: &Server, id: &str) -> (String, String) {
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "app"})),
    );
    assert_eq!(status, 201, "{a}");
    (
        a["id"].as_str().unwrap().to_owned(),
        a["uri"].as_str().unwrap().to_owned(),
    )
}
