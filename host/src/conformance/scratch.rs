//! The scratch world a conformance run works in: a temporary directory
//! holding three file-backed arrays, the store the host's hydrations persist
//! into, and the data pattern the kit writes natively and reads back.
//!
//! `check-a` and `check-b` are managed by the driver under test (so `check-b`
//! is a peer for `migrate-volume`); `check-src` belongs to the host alone and
//! is zoned with `check-a`, so its LUNs can be handed to the take-over calls
//! as remote LUNs, the way the migration runner hands over a source LUN.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::CheckError;
use crate::array::{Array, Lun};
use crate::block::BlockDevice;
use crate::config::ArrayConfig;
use crate::hydrate::Hydrations;
use crate::model::LunAddress;
use crate::runtime::{CallScope, Destination, Source, VolumeRef};
use crate::store::Store;

/// Driver name the component under test is installed as.
pub(crate) const DRIVER: &str = "candidate";
/// Name of the (never called) driver of the host-owned source array.
const HOST_DRIVER: &str = "check-host";
/// The pool every scratch array has.
pub(crate) const POOL: &str = "default";
/// Size of every test volume: large enough for a pattern at its start,
/// middle and end, small enough to copy in no time.
pub(crate) const VOLUME_BYTES: u64 = 8 << 20;
/// Capacity of each scratch array.
const ARRAY_BYTES: u64 = 1 << 30;

/// A temporary directory, removed with everything in it when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> io::Result<Self> {
        // A fresh name every time, and `create_dir` (not `_all`) so two runs
        // can never share one.
        let dir = parent.join(format!("ferry-check-{:016x}", rand::random::<u64>()));
        crate::private_fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the scratch directory");
        }
    }
}

/// The arrays and hydrations of one run.
pub(crate) struct Scratch {
    /// The driver's main array.
    pub(crate) a: Arc<Array>,
    /// A second array of the same driver.
    pub(crate) b: Arc<Array>,
    /// The host's array, zoned with `a`.
    pub(crate) src: Arc<Array>,
    /// Hydrations drivers start during the run.
    pub(crate) hydrations: Arc<Hydrations>,
    // Last: dropped after everything that has files open in it.
    _dir: TempDir,
}

impl Scratch {
    /// Makes the scratch world under `parent` (the system's temporary
    /// directory unless the caller names one).
    pub(crate) fn new(parent: Option<&Path>) -> Result<Self, CheckError> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = TempDir::new(&parent).map_err(|e| CheckError::Scratch {
            what: format!("create a directory in {}", parent.display()),
            message: e.to_string(),
        })?;
        let arrays = dir.0.join("arrays");
        let open = |name: &str, driver: &str| {
            let cfg = ArrayConfig {
                name: name.to_owned(),
                driver: driver.to_owned(),
                pools: vec![POOL.to_owned()],
                capacity_bytes: ARRAY_BYTES,
                settings: Default::default(),
                secrets: Default::default(),
                http_allow: Vec::new(),
                http_ca_file: None,
                nbd_allow: Vec::new(),
                lun_files: true,
            };
            Array::open(&arrays, &cfg)
                .map(Arc::new)
                .map_err(|e| CheckError::Scratch {
                    what: format!("open scratch array {name}"),
                    message: e.to_string(),
                })
        };
        let a = open("check-a", DRIVER)?;
        let b = open("check-b", DRIVER)?;
        let src = open("check-src", HOST_DRIVER)?;
        let store = Store::open(&dir.0.join("check.redb")).map_err(|e| CheckError::Scratch {
            what: "open the scratch store".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            a,
            b,
            src,
            hydrations: Arc::new(Hydrations::new(store, None)),
            _dir: dir,
        })
    }

    /// Where the scratch world lives.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self._dir.0
    }

    /// The scope of a call working for `check-a`.
    pub(crate) fn scope_a(&self) -> CallScope {
        CallScope::new(self.a.clone(), vec![self.src.name().to_owned()])
    }

    /// The scope of a call working for `check-b`.
    pub(crate) fn scope_b(&self) -> CallScope {
        CallScope::new(self.b.clone(), Vec::new())
    }

    /// `check-b` as the destination of a move between the driver's arrays.
    pub(crate) fn peer_destination(&self) -> Destination {
        Destination {
            array: self.b.name().to_owned(),
            pool: POOL.to_owned(),
            driver: DRIVER.to_owned(),
        }
    }

    /// A destination of another vendor: no peer handle goes with it.
    pub(crate) fn foreign_destination(&self) -> Destination {
        Destination {
            array: self.src.name().to_owned(),
            pool: POOL.to_owned(),
            driver: HOST_DRIVER.to_owned(),
        }
    }

    /// The host-owned array as the source of a take-over.
    pub(crate) fn remote_source(&self) -> Source {
        Source {
            array: self.src.name().to_owned(),
            pool: POOL.to_owned(),
            driver: HOST_DRIVER.to_owned(),
        }
    }

    /// A LUN on the host's array holding `pattern`, as the remote LUN of a
    /// take-over: what the source driver would have exposed.
    pub(crate) fn remote_lun(
        &self,
        vol: &VolumeRef,
        pattern: &Pattern,
    ) -> Result<Arc<Lun>, String> {
        let address = LunAddress {
            pool: POOL.to_owned(),
            name: format!("remote-{}", vol.id),
        };
        let lun = self
            .src
            .create_lun(&address, vol.size_bytes)
            .map_err(|e| format!("the host could not make the remote LUN: {e}"))?;
        pattern.write(&lun)?;
        Ok(Arc::new(lun))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Workers of hydrations a driver left running hold files in the
        // directory about to go.
        self.hydrations.stop_all();
    }
}

/// A fresh test volume in the scratch pool.
pub(crate) fn volume(name: &str) -> VolumeRef {
    VolumeRef {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        size_bytes: VOLUME_BYTES,
        pool: POOL.to_owned(),
        provider_location: None,
    }
}

/// Bytes written at the start, middle and end of a LUN, different for every
/// volume and every place, so that a LUN swapped for another or a block
/// written to the wrong place is noticed.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    seed: u64,
}

/// Length of each patterned block.
const BLOCK: u64 = 64 << 10;

impl Pattern {
    /// The pattern of `vol`.
    pub(crate) fn of(vol: &VolumeRef) -> Self {
        let (hi, lo) = vol.id.as_u64_pair();
        Self { seed: hi ^ lo }
    }

    fn offsets(size: u64) -> Vec<u64> {
        let last = size.saturating_sub(BLOCK);
        let middle = (size / 2 / BLOCK) * BLOCK;
        let mut at = vec![0, middle, last];
        at.dedup();
        at
    }

    fn block(&self, offset: u64) -> Vec<u8> {
        // xorshift: cheap, deterministic, never all zeroes.
        let mut x = (self.seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        let mut out = Vec::with_capacity(BLOCK as usize);
        while out.len() < BLOCK as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Writes the pattern into `lun` and makes it durable.
    pub(crate) fn write(&self, lun: &Lun) -> Result<(), String> {
        let size = lun.size();
        if size < BLOCK {
            return Err(format!(
                "the LUN holds {size} bytes, too few for the test pattern"
            ));
        }
        for at in Self::offsets(size) {
            lun.write_at(&self.block(at), at)
                .map_err(|e| format!("the host could not write at offset {at}: {e}"))?;
        }
        lun.flush()
            .map_err(|e| format!("the host could not flush the LUN: {e}"))
    }

    /// Checks that `lun` holds the pattern; the error names the first block
    /// that does not.
    pub(crate) fn verify(&self, lun: &Lun) -> Result<(), String> {
        let size = lun.size();
        if size < BLOCK {
            return Err(format!(
                "the LUN holds {size} bytes, too few for the test pattern"
            ));
        }
        let mut buf = vec![0u8; BLOCK as usize];
        for at in Self::offsets(size) {
            lun.read_at(&mut buf, at)
                .map_err(|e| format!("the host could not read at offset {at}: {e}"))?;
            if buf != self.block(at) {
                let zero = buf.iter().all(|&b| b == 0);
                return Err(format!(
                    "the {} bytes at offset {at} {}",
                    BLOCK,
                    if zero {
                        "read as zeroes: the data written there is gone"
                    } else {
                        "differ from the data written there"
                    }
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_reads_back_and_a_lost_block_is_named() {
        let scratch = Scratch::new(None).unwrap();
        let root = scratch.path().to_path_buf();
        let vol = volume("p");
        let lun = scratch
            .a
            .create_lun(
                &LunAddress {
                    pool: POOL.into(),
                    name: "p".into(),
                },
                vol.size_bytes,
            )
            .unwrap();
        let pattern = Pattern::of(&vol);
        assert!(
            pattern
                .verify(&lun)
                .unwrap_err()
                .contains("offset 0 read as zeroes")
        );
        pattern.write(&lun).unwrap();
        pattern.verify(&lun).unwrap();
        // Another volume's pattern is not this one.
        let other = Pattern::of(&volume("q"));
        assert!(other.verify(&lun).unwrap_err().contains("differ"));
        lun.write_zeroes(VOLUME_BYTES - BLOCK, BLOCK).unwrap();
        let e = pattern.verify(&lun).unwrap_err();
        assert!(
            e.contains(&format!("offset {}", VOLUME_BYTES - BLOCK)),
            "{e}"
        );
        drop(lun);
        drop(scratch);
        assert!(!root.exists(), "scratch directory left behind");
    }
}
