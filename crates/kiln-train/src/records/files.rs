//! Files written crash-safe: all or nothing, flushed to disk, the directory too.

use std::path::Path;

use crate::TrainError;

/// Writes `bytes` to `path` all or nothing and durably, as databases do: into a temporary file
/// beside it, flushed to disk, renamed over `path`, then the directory flushed so that the
/// rename itself survives a power cut. A failure (a full disk) removes the temporary file and
/// leaves the old `path` as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A name of its own per writer: two threads or processes may replace one file at once
    // (the workers of a study its tune.csv); the last rename wins, whole.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!(
        "{}.{}-{n}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    if let Err(e) = write_synced(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_parent(path)
}

/// Writes a file and flushes it to disk (its data and length) before it is renamed into place.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    use std::io::Write;
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Flushes the directory holding `path` to disk: the entries renamed or removed in it.
pub(crate) fn sync_parent(path: &Path) -> Result<(), TrainError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Flushes a directory's entries to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Removes the temporary files (`*.tmp`) an earlier process left in `dir` when it was killed
/// or its disk filled up between writing one and renaming it.
pub(crate) fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".tmp") {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}
