//! The async migration tests' shared fixture: the two-array configuration
//! (`p1` plain, `t1` takeover, zoned, hydration paced), a model of what
//! every 64 KiB block of a volume must read as, and a small deterministic
//! random number generator for the writes.

use std::path::{Path, PathBuf};

/// Model granularity: every write is whole 64 KiB blocks of one byte.
pub const BLOCK: u64 = 64 << 10;

/// Arrays `p1` (plain) and `t1` (takeover), zoned, with the background
/// hydration (and the abort's copy-back) paced at `hydration_bps`, so that
/// I/O lands while they run.
pub fn config(dir: &Path, hydration_bps: u64) -> PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "zoning = [[\"t1\", \"p1\"]]\n\
             hydration_bandwidth_bytes_per_sec = {hydration_bps}\n\
             [[array]]\nname = \"t1\"\ndriver = \"takeover\"\n\
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
