//! The audit log file, rotated as kube-apiserver rotates it (Go's lumberjack, which its
//! `--audit-log-max*` flags configure): when a line would take the file past `maxsize` MB
//! (100 when 0), it is renamed to `<name>-<UTC time>.<ext>` (`audit-2026-11-30T13-01-16.123.log`)
//! and a new one started; backups beyond `maxbackup` (0: all kept) and older than `maxage` days
//! (0: no age limit) are deleted.
//!
//! Written here because the rotation crates keep either a number of files or an age, not both,
//! and name backups differently than the files audit pipelines already collect.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Rotation limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Size in bytes at which the file is rotated.
    pub max_bytes: u64,
    /// Backups kept; 0 keeps all.
    pub max_backups: usize,
    /// Oldest backup kept; zero keeps all.
    pub max_age: Duration,
}

impl Rotation {
    /// From the flags: `maxsize` in megabytes (0 means lumberjack's default, 100), `maxbackup`
    /// files, `maxage` days.
    pub fn from_flags(max_size_mb: u64, max_backups: usize, max_age_days: u64) -> Rotation {
        let mb = if max_size_mb == 0 { 100 } else { max_size_mb };
        Rotation {
            max_bytes: mb * 1024 * 1024,
            max_backups,
            max_age: Duration::from_secs(max_age_days * 24 * 3600),
        }
    }
}

/// An append-only file that rotates itself.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

fn open(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl RotatingFile {
    /// Opens (or creates, with its directory) `path` for appending.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    /// Appends `line` (which ends with a newline), rotating first when it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn backup_name(&self, at: SystemTime) -> PathBuf {
        let (stem, ext) = split_name(&self.path);
        let stamp = k8s_openapi::jiff::Timestamp::try_from(at)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H-%M-%S%.3f")
            .to_string();
        self.path.with_file_name(format!("{stem}-{stamp}{ext}"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let mut backup = self.backup_name(SystemTime::now());
        // Two rotations within a millisecond: never overwrite a backup.
        let mut n = 1;
        while backup.exists() {
            let (stem, ext) = split_name(&backup);
            backup = backup.with_file_name(format!("{stem}.{n}{ext}"));
            n += 1;
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = open(&self.path)?;
        self.size = 0;
        self.remove_old_backups();
        Ok(())
    }

    /// The backups of this file, newest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        let (stem, ext) = split_name(&self.path);
        let prefix = format!("{stem}-");
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut found: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&prefix) && name.ends_with(&ext)
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        found.sort_by(|a, b| b.cmp(a));
        found.into_iter().map(|(_, p)| p).collect()
    }

    fn remove_old_backups(&self) {
        let now = SystemTime::now();
        for (i, backup) in self.backups().into_iter().enumerate() {
            let too_many = self.rotation.max_backups > 0 && i >= self.rotation.max_backups;
            let too_old = !self.rotation.max_age.is_zero()
                && std::fs::metadata(&backup)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > self.rotation.max_age);
            if (too_many || too_old)
                && let Err(e) = std::fs::remove_file(&backup)
            {
                tracing::warn!(backup = %backup.display(), error = %e, "unable to remove an old audit log");
            }
        }
    }
}

/// `("audit", ".log")` for `/var/log/audit.log`; the extension keeps its dot.
fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_by_size_and_keeps_maxbackup_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = RotatingFile::open(
            &path,
            Rotation {
                max_bytes: 100,
                max_backups: 2,
                max_age: Duration::ZERO,
            },
        )
        .unwrap();
        let line = format!("{}\n", "x".repeat(59));
        for _ in 0..7 {
            f.write_line(line.as_bytes()).unwrap();
        }
        f.flush().unwrap();
        // One line per file (two do not fit in 100 bytes): 6 rotations, 2 backups kept.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        let backups = f.backups();
        assert_eq!(backups.len(), 2, "{backups:?}");
        for b in &backups {
            let name = b.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("audit-20") && name.ends_with(".log"),
                "{name}"
            );
        }
    }

    #[test]
    fn backups_older_than_maxage_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let old = dir.path().join("audit-2020-01-01T00-00-00.000.log");
        std::fs::write(&old, "old\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3 * 24 * 3600))
            .unwrap();
        let mut f = RotatingFile::open(&path, Rotation::from_flags(1, 0, 1)).unwrap();
        f.write_line(&vec![b'x'; 1024 * 1024]).unwrap();
        f.write_line(b"y\n").unwrap();
        assert!(!old.exists(), "a backup older than maxage was kept");
        assert_eq!(f.backups().len(), 1);
        assert_eq!(
            Rotation::from_flags(0, 0, 0).max_bytes,
            100 * 1024 * 1024,
            "lumberjack's default"
        );
    }
}
