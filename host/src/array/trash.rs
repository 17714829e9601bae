//! Deleted LUN files, freed off the caller's path. `Array::delete_lun`
//! renames the file into the array's `.trash` directory, so the LUN is gone
//! at once, and a thread unlinks it. Freeing a large file's blocks (on a
//! `discard` mount, a TRIM of every extent) took hundreds of milliseconds,
//! spent inside a driver's move or a volume's deletion. What a crash leaves
//! in `.trash` is removed when the array opens again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The directory under an array's root; pool names never start with `.`.
pub(super) const TRASH_DIR: &str = ".trash";

/// Moves `path` into `trash` and unlinks it in the background. Fails as
/// the rename does (`NotFound` when there is no such file).
pub(super) fn discard_file(trash: &Path, path: &Path) -> io::Result<()> {
    crate::private_fs::create_dir_all(trash)?;
    let dest = trash.join(unique_name(path));
    fs::rename(path, &dest)?;
    unlink_in_background(vec![dest]);
    Ok(())
}

/// Removes, in the background, what an earlier run left in `trash`.
pub(super) fn empty(trash: &Path) {
    let Ok(entries) = fs::read_dir(trash) else {
        return;
    };
    let files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    if !files.is_empty() {
        unlink_in_background(files);
    }
}

/// A name no other discarded file has: the LUN's, the time and a count.
fn unique_name(path: &Path) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = path
        .file_name()
        .map_or_else(|| "lun".into(), |n| n.to_string_lossy());
    format!("{name}.{nanos}.{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

fn unlink_in_background(files: Vec<PathBuf>) {
    let unlink = |files: &[PathBuf]| {
        for f in files {
            if let Err(e) = fs::remove_file(f)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %f.display(), error = %e, "cannot free a deleted LUN's file");
            }
        }
    };
    let owned = files.clone();
    let spawned = std::thread::Builder::new()
        .name("lun-trash".into())
        .spawn(move || unlink(&owned));
    if spawned.is_err() {
        // No thread to spare: free them here.
        unlink(&files);
    }
}
