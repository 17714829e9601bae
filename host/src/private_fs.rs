//! Private files and directories: everything Ferry creates in its data
//! directory (the store, tokens, arrays, LUN files) is readable by its own
//! user only, whatever the process umask, so an embedding program gets the
//! same protection as `ferry serve`.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory Ferry creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file Ferry creates.
pub const FILE_MODE: u32 = 0o600;
/// The umask `ferry serve` sets at start, so that anything created through
/// a path that forgot [`FILE_MODE`] (a library's own files) stays private too.
pub const UMASK: u32 = 0o077;

/// Creates `path` and any missing parents with mode 0700. Directories that
/// exist already keep their mode (an operator may have chosen it); see
/// [`open_to_others`] for the warning about them.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates one directory (not its parents) with mode 0700; fails if it exists.
pub fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Open options that create a file with mode 0600 (the caller adds read,
/// write and the create flag it wants).
pub fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// The permission bits of `path` when group or others may reach it, `None`
/// when only its owner can or it does not exist.
pub fn open_to_others(path: &Path) -> io::Result<Option<u32>> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            Ok((mode & 0o077 != 0).then_some(mode))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Logs a warning when the existing directory `path` is open to group or
/// others (older versions created it 0755); returns its mode then. A fresh
/// directory is created 0700 and never warned about.
pub fn warn_if_open_to_others(path: &Path, what: &str) -> Option<u32> {
    match open_to_others(path) {
        Ok(Some(mode)) => {
            tracing::warn!(
                dir = %path.display(),
                mode = format_args!("{mode:04o}"),
                "the {what} is open to other users: they may read volume data, the store \
                 and tokens; chmod 700 it"
            );
            Some(mode)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(dir = %path.display(), error = %e, "cannot check the {what}'s permissions");
            None
        }
    }
}

/// Sets the process umask to [`UMASK`]. Process-wide, so only the `ferry`
/// binary calls it; a library user keeps its own.
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps an integer in the process; it cannot fail.
    unsafe {
        libc::umask(UMASK as libc::mode_t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        create_dir(&dir.path().join("d")).unwrap();
        assert_eq!(mode(&dir.path().join("d")), 0o700);
        assert!(create_dir(&dir.path().join("d")).is_err());
        let f = dir.path().join("a/f");
        let mut file = file_options()
            .write(true)
            .create_new(true)
            .open(&f)
            .unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn directories_open_to_others_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        assert_eq!(open_to_others(&p).unwrap(), None);
        create_dir_all(&p).unwrap();
        assert_eq!(open_to_others(&p).unwrap(), None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(open_to_others(&p).unwrap(), Some(0o755));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert_eq!(open_to_others(&p).unwrap(), Some(0o710));
    }
}
