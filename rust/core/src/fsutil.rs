//! Outputs that are never half-written, and cheap fingerprints of large inputs.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::output::{remove_any, sibling_name, OutputLock};

/// Start writing `file`'s dirty pages to disk without waiting for them, so that a later
/// sync finds little left and the disk works while the caller goes on producing. Only a
/// hint: write errors surface at that sync. A no-op off Linux.
pub fn start_writeback(file: &fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a file descriptor that `file` owns and keeps open
        // for the duration of the call; no memory is passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

fn sibling(out: &Path, tag: &str) -> Result<PathBuf> {
    sibling_name(out, &format!("{tag}-{}", std::process::id()))
}

/// Build the directory `out` by letting `fill` write into a temporary sibling directory,
/// then renaming it into place, holding `out`'s [`OutputLock`] throughout (which also
/// clears a dead writer's debris). On error the temporary directory is removed and `out`
/// is untouched. An existing `out` is refused unless `overwrite`.
pub fn write_dir_atomically<T>(
    out: &Path,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    if out.exists() && !overwrite {
        return Err(Error::OutputExists(out.to_path_buf()));
    }
    let _lock = OutputLock::acquire(out)?;
    // Checked again under the lock: another writer may have finished in between.
    if out.exists() && !overwrite {
        return Err(Error::OutputExists(out.to_path_buf()));
    }
    let tmp = sibling(out, "tmp")?;
    fs::create_dir(&tmp).at(&tmp)?;
    let value = match fill(&tmp) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // The writers sync their files; the names in `tmp`, then the rename in the parent,
    // are made durable too, so a power cut cannot leave `out` named but empty, and the
    // old output is removed only once the new one's name is on disk.
    sync_dir(&tmp)?;
    let parent = parent_dir(out);
    if out.exists() {
        // Move the old output aside first so that `out` is never a mix of old and new.
        let old = sibling(out, "old")?;
        fs::rename(out, &old).at(out)?;
        fs::rename(&tmp, out).at(out)?;
        sync_dir(&parent)?;
        remove_any(&old)?;
    } else {
        fs::rename(&tmp, out).at(out)?;
        sync_dir(&parent)?;
    }
    Ok(value)
}

/// The directory `p` is in (`.` for a bare name).
fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync a directory: its entries (names created or renamed in it) reach the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Write a small file atomically (temp name in the same directory, fsync, rename).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = sibling(path, "tmp")?;
    let mut f = fs::File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    fs::rename(&tmp, path).at(path)?;
    sync_dir(&parent_dir(path))
}

const BLOCK: u64 = 64 * 1024;
const SAMPLES: u64 = 16;

/// A fingerprint of a file that reads at most 1 MiB whatever its size: xxh3-64 over the
/// length and 16 blocks of 64 KiB spread evenly over the file (the whole file when small).
/// Detects truncation, appends and almost every rewrite; it is not a content hash.
pub fn quick_fingerprint(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).at(path)?;
    let len = f.metadata().at(path)?.len();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&len.to_le_bytes());
    let mut buf = vec![0u8; BLOCK as usize];
    if len <= BLOCK * SAMPLES {
        let mut all = Vec::with_capacity(len as usize);
        f.read_to_end(&mut all).at(path)?;
        h.update(&all);
    } else {
        let step = (len - BLOCK) / (SAMPLES - 1);
        for i in 0..SAMPLES {
            f.seek(SeekFrom::Start(i * step)).at(path)?;
            f.read_exact(&mut buf).at(path)?;
            h.update(&buf);
        }
    }
    Ok(format!("xxh3:{:016x}", h.digest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fill_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let r: Result<()> = write_dir_atomically(&out, false, |tmp| {
            fs::write(tmp.join("a"), b"x").unwrap();
            Err(Error::invalid("boom"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn existing_output_refused_then_replaced() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        write_dir_atomically(&out, false, |tmp| fs::write(tmp.join("a"), b"1").at(tmp)).unwrap();
        let again = write_dir_atomically(&out, false, |_| Ok(()));
        assert!(matches!(again, Err(Error::OutputExists(_))));
        write_dir_atomically(&out, true, |tmp| fs::write(tmp.join("b"), b"2").at(tmp)).unwrap();
        assert!(!out.join("a").exists());
        assert_eq!(fs::read(out.join("b")).unwrap(), b"2");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn fingerprint_sees_small_changes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, vec![7u8; 3 << 20]).unwrap();
        let a = quick_fingerprint(&p).unwrap();
        let mut bytes = vec![7u8; 3 << 20];
        bytes.push(1);
        fs::write(&p, bytes).unwrap();
        assert_ne!(a, quick_fingerprint(&p).unwrap());
    }
}
