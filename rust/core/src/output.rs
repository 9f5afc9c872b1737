//! Outputs that are safe to write: never one of the inputs, one writer at a time, and no
//! debris of a dead writer left beside them. The rules of docs/FORMATS.md ("Outputs").

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// `path` made absolute with symlinks resolved, for a path that may not exist yet: its
/// longest existing ancestor is canonicalized and the rest appended (`..` applied
/// lexically, there being no link left to follow).
pub fn resolve_lenient(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().at(".")?.join(path)
    };
    let mut rest: Vec<Component> = Vec::new();
    let mut base = abs.as_path();
    let canonical = loop {
        match fs::canonicalize(base) {
            Ok(c) => break c,
            Err(_) => match (base.parent(), base.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    base = parent;
                }
                _ => break base.to_path_buf(),
            },
        }
    };
    let mut out = canonical;
    for c in rest.into_iter().rev() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Refuse an output that would destroy one of `inputs`: the output is an input, contains
/// one, or is an existing entry inside an input directory (replacing it would replace part
/// of that input). Both sides are compared with symlinks resolved; inputs that do not
/// exist are skipped (opening them reports that). Call it before touching anything.
pub fn check_spares_inputs<P: AsRef<Path>>(out: &Path, inputs: &[P]) -> Result<()> {
    let target = resolve_lenient(out)?;
    let out_exists = fs::symlink_metadata(out).is_ok();
    for input in inputs {
        let input = input.as_ref();
        let Ok(inp) = fs::canonicalize(input) else {
            continue;
        };
        let how = if inp == target {
            "is"
        } else if inp.starts_with(&target) {
            "contains"
        } else if out_exists && inp.is_dir() && target.starts_with(&inp) {
            "lies inside"
        } else {
            continue;
        };
        return Err(Error::invalid(format!(
            "{}: refusing to write this output: it {how} the input {}, which writing it would \
             destroy; choose another output path",
            out.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The sibling `.<name>.<tag>` of `out` (lock file, temporary and old copies).
pub fn sibling_name(out: &Path, tag: &str) -> Result<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a usable output path", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.{tag}", name.to_string_lossy())))
}

/// Remove what a dead writer of `out` left beside it: `.<name>.tmp-*` (a partial output)
/// and `.<name>.old-*` (the previous output moved aside, put back if `out` itself is
/// gone: the writer died between the two renames). Only call it holding `out`'s lock: a
/// live writer would hold it, so everything found is debris.
pub fn remove_debris(out: &Path) -> Result<()> {
    let probe = sibling_name(out, "x")?;
    let dir = probe.parent().unwrap_or(Path::new("."));
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, old) = (format!(".{name}.tmp-"), format!(".{name}.old-"));
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut olds = Vec::new();
    for e in entries {
        let e = e.at(dir)?;
        let file = e.file_name().to_string_lossy().into_owned();
        if file.starts_with(&tmp) {
            remove_any(&e.path())?;
        } else if file.starts_with(&old) {
            olds.push(e.path());
        }
    }
    for o in olds {
        if fs::symlink_metadata(out).is_err() {
            fs::rename(&o, out).at(out)?;
        } else {
            remove_any(&o)?;
        }
    }
    Ok(())
}

/// Remove a file, a link or a directory tree.
pub fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path).at(path)
    } else {
        fs::remove_file(path).at(path)
    }
}

/// An exclusive lock on an output for the whole of one writer's run: `flock` on the
/// sibling `.<name>.lock`, which holds the holder's pid, host, command and start time and
/// is removed on release. Taking it also removes the output's debris (see
/// [`remove_debris`]). Released on drop.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: Option<fs::File>,
}

impl OutputLock {
    /// Lock `out` (which need not exist; its parent directory is created), or fail at once
    /// with [`Error::Locked`] naming the current holder.
    pub fn acquire(out: &Path) -> Result<OutputLock> {
        let path = sibling_name(out, "lock")?;
        // Errors here name the output: its directory cannot be created or written.
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at(out)?;
        }
        let file = loop {
            let mut opts = fs::OpenOptions::new();
            opts.read(true).write(true).create(true).truncate(false);
            let file = opts.open(&path).at(out)?;
            if !sys::try_lock(&file).at(&path)? {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::Locked {
                    path: out.to_path_buf(),
                    holder: describe_holder(&holder),
                });
            }
            // A releasing holder unlinks the file before closing it: if the name no longer
            // leads to the inode just locked, that lock guards nothing, so start again.
            if sys::same_file(&file, &path) {
                break file;
            }
        };
        write_holder(&file, &path)?;
        let lock = OutputLock {
            path,
            file: Some(file),
        };
        remove_debris(out)?;
        Ok(lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Give the lock up (unlink, then close); a second call does nothing.
    pub fn release(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = fs::remove_file(&self.path);
            drop(file);
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        self.release();
    }
}

fn write_holder(file: &fs::File, path: &Path) -> Result<()> {
    use std::io::{Seek, Write};
    let command: Vec<String> = std::env::args().collect();
    let info = serde_json::json!({
        "pid": std::process::id(),
        "host": sys::hostname(),
        "command": command.join(" "),
        "started": utc_now(),
    });
    let mut f = file;
    f.set_len(0).at(path)?;
    f.seek(std::io::SeekFrom::Start(0)).at(path)?;
    f.write_all(format!("{info}\n").as_bytes()).at(path)
}

fn describe_holder(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return "a process that has not yet said who it is".into();
    };
    let field = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "?".into(),
        other => other.to_string(),
    };
    format!(
        "pid {} on {}, `{}`, since {}",
        field("pid"),
        field("host"),
        field("command"),
        field("started")
    )
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant, "chrono-compatible algorithms").
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    /// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when another open file description holds it.
    pub fn try_lock(file: &File) -> std::io::Result<bool> {
        loop {
            // SAFETY: a plain system call on a descriptor `file` owns and keeps open for
            // the duration of the call; no memory is passed.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) => return Ok(false),
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
    }

    pub fn same_file(file: &File, path: &Path) -> bool {
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    pub fn hostname() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and
        // gethostname writes at most that many.
        let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if r != 0 {
            return "?".into();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! No advisory locks here: every writer gets the lock (the pre-lock behaviour).
    use std::fs::File;
    use std::path::Path;

    pub fn try_lock(_: &File) -> std::io::Result<bool> {
        Ok(true)
    }

    pub fn same_file(_: &File, path: &Path) -> bool {
        path.exists()
    }

    pub fn hostname() -> String {
        "?".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(out: &Path, inputs: &[&Path]) -> bool {
        matches!(check_spares_inputs(out, inputs), Err(Error::Invalid(_)))
    }

    #[test]
    fn output_that_is_contains_or_replaces_part_of_an_input_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("c_0.bin"), b"x").unwrap();
        let npy = d.path().join("t.npy");
        fs::write(&npy, b"x").unwrap();
        // is / contains
        assert!(refused(&data, &[&data]));
        assert!(refused(&npy, &[&npy]));
        assert!(refused(d.path(), &[&data.join("c_0.bin")]));
        assert!(refused(&data.join("c_0.bin"), &[&data.join("c_0.bin")]));
        // spelled differently: `..`, a trailing component that does not exist yet
        assert!(refused(&data.join("x").join(".."), &[&data]));
        // lies inside an input directory and exists (would be replaced)
        fs::create_dir(data.join("sub")).unwrap();
        assert!(refused(&data.join("sub"), &[&data]));
        // fine: a sibling, a new entry inside an input directory, a missing input
        assert!(check_spares_inputs(&d.path().join("out"), &[&data, &npy]).is_ok());
        assert!(check_spares_inputs(&data.join("new"), &[&data]).is_ok());
        assert!(check_spares_inputs(&data, &[&d.path().join("missing")]).is_ok());
        assert!(check_spares_inputs(&data.join("sub"), &[&data.join("c_0.bin")]).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_on_both_sides() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        fs::create_dir(&data).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert!(refused(&link, &[&data]));
        assert!(refused(&data, &[&link]));
        let err = check_spares_inputs(&link, &[&data])
            .unwrap_err()
            .to_string();
        assert!(err.contains("link") && err.contains("data"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn second_writer_is_refused_naming_the_holder_then_gets_it_after_release() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let mut first = OutputLock::acquire(&out).unwrap();
        assert!(first.path().is_file());
        match OutputLock::acquire(&out) {
            Err(e @ Error::Locked { .. }) => {
                let msg = e.to_string();
                let pid = std::process::id().to_string();
                assert!(msg.contains(&pid) && msg.contains("out"), "{msg}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        first.release();
        assert!(!d.path().join(".out.lock").exists());
        let again = OutputLock::acquire(&out).unwrap();
        drop(again);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn taking_the_lock_removes_debris_and_restores_an_output_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        fs::create_dir(d.path().join(".out.tmp-123")).unwrap();
        fs::write(d.path().join(".out.tmp-123").join("a"), b"x").unwrap();
        fs::write(d.path().join(".out.tmp-9"), b"x").unwrap();
        fs::create_dir(d.path().join(".out.old-5")).unwrap();
        fs::write(d.path().join(".out.old-5").join("keep"), b"k").unwrap();
        fs::write(d.path().join(".other.tmp-1"), b"x").unwrap();
        drop(OutputLock::acquire(&out).unwrap());
        let mut left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".other.tmp-1", "out"]);
        assert_eq!(fs::read(out.join("keep")).unwrap(), b"k");
    }

    #[test]
    fn utc_dates() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
