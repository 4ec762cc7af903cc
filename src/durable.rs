//! Files and directories that survive a power cut, and the lock on `data_dir`.
//!
//! The rule, for every file system (strict POSIX ones too, which do not order directory updates
//! the way ext4's journal happens to): a created or renamed file or directory is durable only
//! once the directory that holds it has been fsync'd, and so on up to the first directory that
//! already existed. Every place that creates state under `data_dir` goes through
//! [`create_dir_all`], [`create_file`] or [`write_atomic`], which apply it before they return; a
//! write is acknowledged only after them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Fsyncs a directory so entries created, renamed or removed in it are durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs the directory holding `path` (`.` for a bare name).
///
/// # Errors
/// As [`sync_dir`].
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and every missing ancestor, then fsyncs the parent of each directory it
/// created, deepest first, up to the first one that existed. Returns whether it created any.
///
/// # Errors
/// A directory cannot be created or synced; a directory already created stays.
pub fn create_dir_all(dir: &Path) -> io::Result<bool> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    if missing.is_empty() {
        return Ok(false);
    }
    fs::create_dir_all(dir)?;
    for d in &missing {
        sync_parent(d)?;
    }
    Ok(true)
}

/// Opens `path` for writing, creating it if it does not exist; when it did not, the directory
/// holding it is fsync'd before this returns.
///
/// # Errors
/// The file cannot be opened, or its directory synced.
pub fn create_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    match options.clone().create(false).open(path) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = options.create(true).open(path)?;
    sync_parent(path)?;
    Ok(f)
}

/// Writes `data` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
///
/// # Errors
/// Any I/O error; `path` then still holds its previous contents.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// `data_dir` is in use by another process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("data_dir {} is in use by another heliograph (the lock {} is held); two agents on one data_dir would deliver each other's points as their own", .dir.display(), .lock.display())]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The directory or its lock file cannot be created.
    #[error("cannot create data_dir {}", .dir.display())]
    Io {
        /// The data dir.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// The lock on a `data_dir` (`data_dir/LOCK`, an exclusive `flock`): one agent per directory.
/// The agent takes it once, whenever it keeps any state there (local buckets, disk buffers),
/// and holds it across reloads until it exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates `dir` (durably) and takes its lock.
///
/// # Errors
/// [`LockError::Locked`] when another holder has it (another process, or another lock taken
/// in this one); [`LockError::Io`] when the directory or the lock file cannot be created.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LockError> {
    let io_err = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    create_dir_all(dir).map_err(io_err)?;
    let path = dir.join("LOCK");
    let file =
        create_file(&path, OpenOptions::new().write(true).truncate(false)).map_err(io_err)?;
    if file.try_lock().is_err() {
        return Err(LockError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        });
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_reports_whether_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        assert!(create_dir_all(&deep).unwrap());
        assert!(deep.is_dir());
        assert!(!create_dir_all(&deep).unwrap());
        assert!(!create_dir_all(tmp.path()).unwrap());
        // A file in the way is an error, not a success.
        std::fs::write(tmp.path().join("f"), b"").unwrap();
        assert!(create_dir_all(&tmp.path().join("f/g")).is_err());
    }

    #[test]
    fn create_file_opens_an_existing_file_without_truncating() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x");
        std::fs::write(&p, b"kept").unwrap();
        drop(create_file(&p, OpenOptions::new().write(true)).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"kept");
        let q = tmp.path().join("y");
        drop(create_file(&q, OpenOptions::new().write(true)).unwrap());
        assert!(q.exists());
        assert!(create_file(&tmp.path().join("no/z"), OpenOptions::new().write(true)).is_err());
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let a = lock_data_dir(&dir).unwrap();
        assert!(dir.join("LOCK").is_file());
        assert!(matches!(lock_data_dir(&dir), Err(LockError::Locked { .. })));
        drop(a);
        assert!(lock_data_dir(&dir).is_ok());
    }
}
