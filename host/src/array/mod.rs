//! File-backed storage arrays: an array is a directory, each pool a
//! subdirectory, each LUN a sparse file. This is the only module that touches
//! LUN files; drivers reach it through `runtime`'s host functions, scoped to
//! their own array.

mod copy;
mod device_copy;
mod lun;
mod trash;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use copy::{
    CopyCheckpoint, CopyError, CopyOptions, copy_lun, copy_range, copy_range_cancellable,
};
pub use device_copy::copy_device;
pub use lun::{Extent, Lun};

use crate::config::{ArrayConfig, Config};
use crate::model::LunAddress;

/// Why an array operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    /// A secret or the HTTP policy the configuration names for the array
    /// cannot be read.
    #[error("array {array}: {message}")]
    Configuration {
        /// Array name.
        array: String,
        /// What and why; never a secret's text.
        message: String,
    },
    /// A pool or LUN name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The array has no such pool.
    #[error("array {array} has no pool {pool:?}")]
    NoSuchPool {
        /// Array name.
        array: String,
        /// Pool asked for.
        pool: String,
    },
    /// The LUN does not exist.
    #[error("LUN {pool}/{name} not found on array {array}")]
    NoSuchLun {
        /// Array name.
        array: String,
        /// Pool name.
        pool: String,
        /// LUN name.
        name: String,
    },
    /// A LUN of that name exists already.
    #[error("LUN {pool}/{name} already exists on array {array}")]
    LunExists {
        /// Array name.
        array: String,
        /// Pool name.
        pool: String,
        /// LUN name.
        name: String,
    },
    /// The size is zero or not a multiple of 512.
    #[error("invalid size {0}: must be a positive multiple of 512 bytes")]
    InvalidSize(u64),
    /// Not enough capacity left.
    #[error("array {array} has {free} bytes free, {wanted} wanted")]
    NoSpace {
        /// Array name.
        array: String,
        /// Bytes still free.
        free: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The file system beneath the array has too little free space for a
    /// LUN of this size (see [`Array::check_filesystem_fits`]).
    #[error(
        "the file system under array {array} has {free} bytes free, {needed} bytes needed \
         for the LUN"
    )]
    InsufficientSpace {
        /// Array name.
        array: String,
        /// Bytes an unprivileged writer may still use on the file system.
        free: u64,
        /// Bytes asked for.
        needed: u64,
    },
    /// The file system failed.
    #[error("I/O error on array {array}: {source}")]
    Io {
        /// Array name.
        array: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Size and free space of the file system that holds an array's LUN files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemSpace {
    /// Bytes an unprivileged process may still allocate (`f_bavail`: the
    /// blocks reserved for root are not the host's to use).
    pub free_bytes: u64,
    /// Size of the file system in bytes.
    pub total_bytes: u64,
}

/// `statvfs(2)` of the file system holding `path`.
pub fn filesystem_space(path: &Path) -> io::Result<FilesystemSpace> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call,
    // and `st` is a writable statvfs the call fills on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between libcs and targets (u32 or u64).
    #[allow(clippy::useless_conversion)]
    let (block, avail, blocks) = (
        u64::from(st.f_frsize),
        u64::from(st.f_bavail),
        u64::from(st.f_blocks),
    );
    Ok(FilesystemSpace {
        free_bytes: avail.saturating_mul(block),
        total_bytes: blocks.saturating_mul(block),
    })
}

/// An array promised more than its file system can hold (see
/// [`Array::filesystem_shortfall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// The configured capacity.
    pub capacity_bytes: u64,
    /// Bytes the array's LUN files occupy on disk now.
    pub allocated_bytes: u64,
    /// The file system's free space.
    pub filesystem: FilesystemSpace,
}

/// Checks a pool or LUN name (see [`crate::model::check_name`]).
pub fn validate_name(name: &str) -> Result<(), ArrayError> {
    crate::model::check_name(name).map_err(|reason| ArrayError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// One file-backed array.
#[derive(Debug)]
pub struct Array {
    name: String,
    driver: String,
    root: PathBuf,
    pools: Vec<String>,
    capacity_bytes: u64,
    /// The configuration's settings for the array's driver.
    settings: std::collections::BTreeMap<String, String>,
    /// The configuration's secrets for the array's driver, read.
    secrets: crate::secrets::Secrets,
    /// What the array's driver may reach over HTTP.
    outbound: crate::outbound::OutboundPolicy,
    nbd_allow: crate::outbound::NbdAllow,
    lun_files: bool,
    /// Provisioned bytes: counted by one scan of the pools when first
    /// needed, then kept by `create_lun` and `delete_lun`, which hold this
    /// lock, so capacity checks cannot race and a create does not stat
    /// every LUN of the array.
    provisioned: Mutex<Option<u64>>,
}

impl Array {
    /// Opens the array described by `cfg` under `root`, creating its
    /// directories as needed (mode 0700: LUNs hold volume data).
    pub fn open(root: &Path, cfg: &ArrayConfig) -> Result<Self, ArrayError> {
        validate_name(&cfg.name)?;
        let secrets = crate::secrets::Secrets::read(&cfg.secrets).map_err(|message| {
            ArrayError::Configuration {
                array: cfg.name.clone(),
                message,
            }
        })?;
        let outbound = if cfg.http_allow.is_empty() {
            crate::outbound::OutboundPolicy::none()
        } else {
            crate::outbound::OutboundPolicy::new(&cfg.http_allow, cfg.http_ca_file.as_deref())
                .map_err(|message| ArrayError::Configuration {
                    array: cfg.name.clone(),
                    message: format!("http_allow: {message}"),
                })?
        };
        let nbd_allow = crate::outbound::NbdAllow::new(&cfg.nbd_allow).map_err(|message| {
            ArrayError::Configuration {
                array: cfg.name.clone(),
                message: format!("nbd_allow: {message}"),
            }
        })?;
        let dir = root.join(&cfg.name);
        for pool in &cfg.pools {
            validate_name(pool)?;
            crate::private_fs::create_dir_all(&dir.join(pool)).map_err(|source| {
                ArrayError::Io {
                    array: cfg.name.clone(),
                    source,
                }
            })?;
        }
        trash::empty(&dir.join(trash::TRASH_DIR));
        Ok(Self {
            name: cfg.name.clone(),
            driver: cfg.driver.clone(),
            root: dir,
            pools: cfg.pools.clone(),
            capacity_bytes: cfg.capacity_bytes,
            settings: cfg.settings.clone(),
            secrets,
            outbound,
            nbd_allow,
            lun_files: cfg.lun_files,
            provisioned: Mutex::new(None),
        })
    }

    /// Array name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the driver that manages this array.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Pool names.
    pub fn pools(&self) -> &[String] {
        &self.pools
    }

    /// Every setting of the array's driver, from the configuration.
    pub fn settings(&self) -> &std::collections::BTreeMap<String, String> {
        &self.settings
    }

    /// The setting `name` of the array's driver, from the configuration.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }

    /// What the array's driver may reach over HTTP.
    pub fn outbound(&self) -> &crate::outbound::OutboundPolicy {
        &self.outbound
    }

    /// The NBD servers the array's driver may send the host to.
    pub fn nbd_allow(&self) -> &crate::outbound::NbdAllow {
        &self.nbd_allow
    }

    /// Whether its LUNs are files in the host's data directory (false: its
    /// storage lives elsewhere, behind its driver's NBD exports).
    pub fn lun_files(&self) -> bool {
        self.lun_files
    }

    /// The array's secrets; their `redact` keeps them out of messages.
    pub fn secrets(&self) -> &crate::secrets::Secrets {
        &self.secrets
    }

    /// Capacity in bytes (sum of LUN sizes may not exceed it).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn io(&self, source: io::Error) -> ArrayError {
        ArrayError::Io {
            array: self.name.clone(),
            source,
        }
    }

    fn pool_dir(&self, pool: &str) -> Result<PathBuf, ArrayError> {
        validate_name(pool)?;
        if !self.pools.iter().any(|p| p == pool) {
            return Err(ArrayError::NoSuchPool {
                array: self.name.clone(),
                pool: pool.to_owned(),
            });
        }
        Ok(self.root.join(pool))
    }

    fn lun_path(&self, addr: &LunAddress) -> Result<PathBuf, ArrayError> {
        let dir = self.pool_dir(&addr.pool)?;
        validate_name(&addr.name)?;
        Ok(dir.join(&addr.name))
    }

    fn no_such_lun(&self, addr: &LunAddress) -> ArrayError {
        ArrayError::NoSuchLun {
            array: self.name.clone(),
            pool: addr.pool.clone(),
            name: addr.name.clone(),
        }
    }

    /// Provisioned bytes: the sum of every LUN's size.
    pub fn used_bytes(&self) -> Result<u64, ArrayError> {
        let mut guard = self.lock_provisioned();
        self.provisioned_in(&mut guard)
    }

    fn lock_provisioned(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        // The count is one number, consistent even if a holder panicked.
        self.provisioned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn provisioned_in(&self, cached: &mut Option<u64>) -> Result<u64, ArrayError> {
        if let Some(n) = *cached {
            return Ok(n);
        }
        let n = self.scan_provisioned()?;
        *cached = Some(n);
        Ok(n)
    }

    /// The sum of every LUN's size, from the files.
    fn scan_provisioned(&self) -> Result<u64, ArrayError> {
        Ok(self.scan()?.0)
    }

    /// From the files: the sum of every LUN's size, and the bytes they
    /// occupy on disk (less, as LUNs are sparse).
    fn scan(&self) -> Result<(u64, u64), ArrayError> {
        use std::os::unix::fs::MetadataExt as _;
        let (mut used, mut allocated) = (0u64, 0u64);
        for pool in &self.pools {
            let dir = self.root.join(pool);
            for entry in fs::read_dir(&dir).map_err(|e| self.io(e))? {
                let meta = match entry.and_then(|e| e.metadata()) {
                    Ok(m) => m,
                    // Deleted between the listing and the stat (a
                    // migration's source LUN going away): it uses nothing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.io(e)),
                };
                if meta.is_file() {
                    used = used.saturating_add(meta.len());
                    allocated = allocated.saturating_add(meta.blocks().saturating_mul(512));
                }
            }
        }
        Ok((used, allocated))
    }

    /// The file system the array's LUN files live on.
    pub fn filesystem_space(&self) -> Result<FilesystemSpace, ArrayError> {
        filesystem_space(&self.root).map_err(|e| self.io(e))
    }

    /// Refuses a LUN of `size` bytes that the file system beneath could
    /// not hold even now. LUN files are sparse, so this is the one rule
    /// that is both cheap and never wrong: a LUN larger than the free space
    /// would fail with ENOSPC before its last block is written. What other
    /// LUNs may still claim is not subtracted (they may never be written
    /// full, and arrays may share the file system); the start-up warning of
    /// [`Array::filesystem_shortfall`] speaks of that.
    pub fn check_filesystem_fits(&self, size: u64) -> Result<(), ArrayError> {
        if !self.lun_files {
            return Ok(());
        }
        let fs = self.filesystem_space()?;
        if size > fs.free_bytes {
            return Err(ArrayError::InsufficientSpace {
                array: self.name.clone(),
                free: fs.free_bytes,
                needed: size,
            });
        }
        Ok(())
    }

    /// Whether the configured capacity exceeds what the file system can
    /// still give the array: its free space plus what the array's LUN files
    /// occupy already. Counts the LUNs once (and keeps the count for
    /// capacity checks).
    pub fn filesystem_shortfall(&self) -> Result<Option<Shortfall>, ArrayError> {
        if !self.lun_files {
            return Ok(None);
        }
        let mut guard = self.lock_provisioned();
        let (provisioned, allocated) = self.scan()?;
        *guard = Some(provisioned);
        drop(guard);
        let fs = self.filesystem_space()?;
        let short = self.capacity_bytes > fs.free_bytes.saturating_add(allocated);
        Ok(short.then_some(Shortfall {
            capacity_bytes: self.capacity_bytes,
            allocated_bytes: allocated,
            filesystem: fs,
        }))
    }

    /// Creates a sparse LUN of `size` bytes, readable by this user only
    /// (mode 0600).
    pub fn create_lun(&self, addr: &LunAddress, size: u64) -> Result<Lun, ArrayError> {
        if size == 0 || !size.is_multiple_of(512) {
            return Err(ArrayError::InvalidSize(size));
        }
        let path = self.lun_path(addr)?;
        let mut guard = self.lock_provisioned();
        let used = self.provisioned_in(&mut guard)?;
        let free = self.capacity_bytes.saturating_sub(used);
        if size > free {
            return Err(ArrayError::NoSpace {
                array: self.name.clone(),
                free,
                wanted: size,
            });
        }
        self.check_filesystem_fits(size)?;
        let file = match crate::private_fs::file_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ArrayError::LunExists {
                    array: self.name.clone(),
                    pool: addr.pool.clone(),
                    name: addr.name.clone(),
                });
            }
            Err(e) => return Err(self.io(e)),
        };
        if let Err(e) = file.set_len(size) {
            let _ = fs::remove_file(&path);
            return Err(self.io(e));
        }
        *guard = Some(used.saturating_add(size));
        Ok(Lun::new(file, size, self.name.clone(), addr.clone()))
    }

    /// Opens an existing LUN.
    pub fn open_lun(&self, addr: &LunAddress) -> Result<Lun, ArrayError> {
        let path = self.lun_path(addr)?;
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.no_such_lun(addr)),
            Err(e) => return Err(self.io(e)),
        };
        let meta = file.metadata().map_err(|e| self.io(e))?;
        if !meta.is_file() {
            return Err(self.no_such_lun(addr));
        }
        Ok(Lun::new(file, meta.len(), self.name.clone(), addr.clone()))
    }

    /// Whether the LUN exists.
    pub fn lun_exists(&self, addr: &LunAddress) -> Result<bool, ArrayError> {
        Ok(self.lun_path(addr)?.is_file())
    }

    /// Deletes a LUN: its name is gone on return, its blocks are freed in
    /// the background (`trash`). A missing LUN is not an error (deletes are
    /// retried).
    pub fn delete_lun(&self, addr: &LunAddress) -> Result<(), ArrayError> {
        let path = self.lun_path(addr)?;
        let mut guard = self.lock_provisioned();
        let size = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => 0,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted already (a retry), or by other means: the next
                // need counts the files again rather than trust the sum.
                *guard = None;
                return Ok(());
            }
            Err(e) => return Err(self.io(e)),
        };
        let removed = match trash::discard_file(&self.root.join(trash::TRASH_DIR), &path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(array = %self.name, error = %e, "cannot move a deleted LUN to the trash; removing it in place");
                fs::remove_file(&path)
            }
            moved => moved,
        };
        match removed {
            Ok(()) => {
                if let Some(n) = guard.as_mut() {
                    *n = n.saturating_sub(size);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Gone by other means: count again when next needed.
                *guard = None;
                Ok(())
            }
            Err(e) => Err(self.io(e)),
        }
    }

    /// LUN names in a pool, sorted.
    pub fn list_luns(&self, pool: &str) -> Result<Vec<String>, ArrayError> {
        let dir = self.pool_dir(pool)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| self.io(e))? {
            let entry = entry.map_err(|e| self.io(e))?;
            if let Some(n) = entry.file_name().to_str()
                && validate_name(n).is_ok()
            {
                names.push(n.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Every array of this host, with the fabric's zoning.
#[derive(Debug)]
pub struct Arrays {
    arrays: BTreeMap<String, Arc<Array>>,
    zoning: BTreeSet<(String, String)>,
}

impl Arrays {
    /// Opens every array of `config` under `root` (the data directory's
    /// `arrays/` folder unless the config names its own).
    pub fn open(root: &Path, config: &Config) -> Result<Self, ArrayError> {
        let mut arrays = BTreeMap::new();
        for cfg in &config.arrays {
            arrays.insert(cfg.name.clone(), Arc::new(Array::open(root, cfg)?));
        }
        let mut zoning = BTreeSet::new();
        for [a, b] in &config.zoning {
            zoning.insert((a.clone(), b.clone()));
            zoning.insert((b.clone(), a.clone()));
        }
        Ok(Self { arrays, zoning })
    }

    /// The array called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Array>> {
        self.arrays.get(name)
    }

    /// Every array, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Array>> {
        self.arrays.values()
    }

    /// Whether `a` and `b` are connected over the fabric.
    pub fn zoned(&self, a: &str, b: &str) -> bool {
        self.zoning.contains(&(a.to_owned(), b.to_owned()))
    }

    /// Arrays zoned with `name`, sorted.
    pub fn zoned_with(&self, name: &str) -> Vec<String> {
        self.zoning
            .iter()
            .filter(|(a, _)| a == name)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockDevice;

    fn array(dir: &Path, capacity: u64) -> Array {
        let cfg = ArrayConfig {
            name: "a1".into(),
            driver: "plain".into(),
            pools: vec!["default".into()],
            capacity_bytes: capacity,
            settings: Default::default(),
            secrets: Default::default(),
            http_allow: Vec::new(),
            http_ca_file: None,
            nbd_allow: Vec::new(),
            lun_files: true,
        };
        Array::open(dir, &cfg).unwrap()
    }

    fn addr(name: &str) -> LunAddress {
        LunAddress {
            pool: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_cannot_escape_the_pool() {
        for bad in [
            "",
            "..",
            "../v1",
            "a/b",
            ".hidden",
            "a\0b",
            &"x".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), 1 << 30);
        let escape = LunAddress {
            pool: "../../v1/default".into(),
            name: "x".into(),
        };
        assert!(matches!(
            a.create_lun(&escape, 512),
            Err(ArrayError::InvalidName { .. })
        ));
        let other_pool = LunAddress {
            pool: "gold".into(),
            name: "x".into(),
        };
        assert!(matches!(
            a.open_lun(&other_pool),
            Err(ArrayError::NoSuchPool { .. })
        ));
    }

    #[test]
    fn array_directories_and_luns_are_private_to_their_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("arrays");
        let a = array(&root, 1 << 30);
        a.create_lun(&addr("l"), 1 << 20).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        for d in ["", "a1", "a1/default"] {
            assert_eq!(mode(d), 0o700, "{d:?}");
        }
        assert_eq!(mode("a1/default/l"), 0o600);
    }

    #[test]
    fn capacity_is_enforced_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), 1 << 20);
        a.create_lun(&addr("one"), 768 << 10).unwrap();
        assert!(matches!(
            a.create_lun(&addr("two"), 512 << 10),
            Err(ArrayError::NoSpace { .. })
        ));
        assert!(matches!(
            a.create_lun(&addr("one"), 512),
            Err(ArrayError::LunExists { .. })
        ));
        assert!(matches!(
            a.create_lun(&addr("odd"), 1000),
            Err(ArrayError::InvalidSize(1000))
        ));
        a.delete_lun(&addr("one")).unwrap();
        a.delete_lun(&addr("one")).unwrap();
        let l = a.create_lun(&addr("two"), 512 << 10).unwrap();
        assert_eq!(l.size(), 512 << 10);
        assert_eq!(a.used_bytes().unwrap(), 512 << 10);
        assert_eq!(a.list_luns("default").unwrap(), vec!["two".to_owned()]);
    }

    #[test]
    fn a_deleted_lun_is_gone_at_once_and_its_file_freed_after() {
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), 1 << 30);
        let lun = a.create_lun(&addr("big"), 64 << 20).unwrap();
        lun.write_at(&[7u8; 4096], 0).unwrap();
        drop(lun);
        let trash = dir.path().join("a1").join(trash::TRASH_DIR);
        a.delete_lun(&addr("big")).unwrap();
        assert!(!a.lun_exists(&addr("big")).unwrap());
        assert!(matches!(
            a.open_lun(&addr("big")),
            Err(ArrayError::NoSuchLun { .. })
        ));
        assert_eq!(a.used_bytes().unwrap(), 0);
        // The name is free again at once, and the old file goes soon.
        a.create_lun(&addr("big"), 4096).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read_dir(&trash).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the deleted file stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // What a crash left in the trash is removed when the array opens.
        fs::write(trash.join("left.1.0"), b"old").unwrap();
        let _again = array(dir.path(), 1 << 30);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while trash.join("left.1.0").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the crash's leftover stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_lun_larger_than_the_free_space_of_the_file_system_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A capacity no file system here has: only the file system limits.
        let a = array(dir.path(), 1 << 62);
        let free = a.filesystem_space().unwrap().free_bytes;
        let too_big = (free + (1 << 30)) / 512 * 512;
        match a.create_lun(&addr("big"), too_big) {
            Err(ArrayError::InsufficientSpace {
                array,
                free: f,
                needed,
            }) => {
                assert_eq!((array.as_str(), needed), ("a1", too_big));
                // Others write to this file system meanwhile: near, not equal.
                assert!(f.abs_diff(free) < 1 << 30, "{f} vs {free}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!a.lun_exists(&addr("big")).unwrap());
        assert_eq!(a.used_bytes().unwrap(), 0);
        a.create_lun(&addr("small"), 1 << 20).unwrap();
    }

    #[test]
    fn a_capacity_beyond_the_file_system_is_a_shortfall() {
        let dir = tempfile::tempdir().unwrap();
        let big = array(dir.path(), 1 << 62);
        let s = big.filesystem_shortfall().unwrap().expect("a shortfall");
        assert_eq!(s.capacity_bytes, 1 << 62);
        assert!(s.filesystem.total_bytes >= s.filesystem.free_bytes);
        let small = array(dir.path(), 1 << 20);
        assert_eq!(small.filesystem_shortfall().unwrap(), None);
    }

    #[test]
    fn the_kept_count_matches_a_scan_and_starts_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let a = array(dir.path(), 1 << 30);
            a.create_lun(&addr("a"), 1 << 20).unwrap();
            a.create_lun(&addr("b"), 3 << 20).unwrap();
        }
        // A new host counts what is on disk.
        let a = array(dir.path(), 1 << 30);
        assert_eq!(a.used_bytes().unwrap(), 4 << 20);
        a.create_lun(&addr("c"), 2 << 20).unwrap();
        a.delete_lun(&addr("a")).unwrap();
        assert_eq!(a.used_bytes().unwrap(), 5 << 20);
        assert_eq!(a.used_bytes().unwrap(), a.scan_provisioned().unwrap());
        // A LUN removed behind the array's back is noticed at the next
        // delete of it, which counts again.
        std::fs::remove_file(dir.path().join("a1/default/b")).unwrap();
        a.delete_lun(&addr("b")).unwrap();
        assert_eq!(a.used_bytes().unwrap(), 2 << 20);
    }
}
