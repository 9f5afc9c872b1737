//! The one resolver from what a user names (a prefix, a directory, a glob of prefixes, a
//! list of those) to the shard prefixes of one dataset (docs/FORMATS.md, "Token dataset").

use std::path::{Path, PathBuf};

use super::shard::with_ext;
use crate::error::{Error, IoContext, Result};

/// Shards of one family found in `dir`. `inferred`: the resolver chose the shard set
/// (from a directory or a numbered prefix), so the directory's manifest must confirm it.
pub(crate) struct Family {
    pub dir: PathBuf,
    pub prefixes: Vec<PathBuf>,
    pub inferred: bool,
}

fn not_found(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no token dataset here (expected PREFIX.idx, PREFIX_0.idx, a directory of shards, \
             or a glob of prefixes)",
        ),
    )
}

/// `(family, shard number)` of an index file name `<family>_<k>.idx`.
pub(crate) fn split_shard_name(stem: &str) -> Option<(&str, u64)> {
    let (family, k) = stem.rsplit_once('_')?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((family, k.parse().ok()?))
}

/// The family a shard stem belongs to: `corpus` for `corpus_3` and for `corpus`.
pub(crate) fn family_of(stem: &str) -> &str {
    split_shard_name(stem).map_or(stem, |(f, _)| f)
}

/// The `.idx` stems in `dir` (hidden files, such as a writer's temporaries, skipped).
fn idx_stems(dir: &Path) -> Result<Vec<String>> {
    let mut stems = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".idx") {
            if !stem.starts_with('.') {
                stems.push(stem.to_string());
            }
        }
    }
    stems.sort();
    Ok(stems)
}

fn parent_dir(prefix: &Path) -> PathBuf {
    match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Shard prefixes `prefix_0, prefix_1, ...`, refusing gaps.
fn numbered(prefix: &Path) -> Result<Vec<PathBuf>> {
    let stem = file_name(prefix);
    let dir = parent_dir(prefix);
    let mut found: Vec<u64> = idx_stems(&dir)?
        .iter()
        .filter_map(|s| {
            split_shard_name(s)
                .filter(|(f, _)| *f == stem)
                .map(|(_, k)| k)
        })
        .collect();
    found.sort_unstable();
    for (want, &k) in found.iter().enumerate() {
        if k != want as u64 {
            return Err(Error::invalid(format!(
                "{}: shard {}_{want}.idx is missing (found shard {k}); shards must be numbered 0, 1, 2, ...",
                dir.display(),
                stem
            )));
        }
    }
    Ok((0..found.len())
        .map(|k| with_ext(prefix, &format!("_{k}")))
        .collect())
}

/// One prefix or directory (no glob).
fn resolve_one(path: &Path, from_dir: bool) -> Result<Family> {
    let single = with_ext(path, ".idx").is_file();
    let many = with_ext(path, "_0.idx").is_file();
    if single && many {
        return Err(Error::invalid(format!(
            "{}: ambiguous dataset: both {} and the shards {}_0, {}_1, ... exist; pass one \
             prefix or move one aside",
            path.display(),
            file_name(&with_ext(path, ".idx")),
            file_name(path),
            file_name(path)
        )));
    }
    if single {
        return Ok(Family {
            dir: parent_dir(path),
            prefixes: vec![path.to_path_buf()],
            inferred: from_dir,
        });
    }
    if many {
        return Ok(Family {
            dir: parent_dir(path),
            prefixes: numbered(path)?,
            inferred: true,
        });
    }
    if path.is_dir() {
        let stems = idx_stems(path)?;
        let families: Vec<&str> = stems
            .iter()
            .map(|s| family_of(s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        return match families.as_slice() {
            [one] => resolve_one(&path.join(one), true),
            [] => Err(not_found(path)),
            many => Err(Error::invalid(format!(
                "{}: several datasets in one directory ({}); pass one prefix, or a glob \
                 such as '{}' for shards that form one dataset",
                path.display(),
                many.join(", "),
                path.join("*").display()
            ))),
        };
    }
    Err(not_found(path))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style match of `name` against `pat`: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
pub(crate) fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    match pat.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| glob_match(&pat[1..], &name[i..])),
        Some(b'?') => !name.is_empty() && glob_match(&pat[1..], &name[1..]),
        Some(b'[') => {
            let Some(close) = pat.iter().skip(2).position(|&b| b == b']').map(|p| p + 2) else {
                return name.first() == Some(&b'[') && glob_match(&pat[1..], &name[1..]);
            };
            let Some(&c) = name.first() else { return false };
            let (neg, set) = match pat[1] {
                b'!' | b'^' => (true, &pat[2..close]),
                _ => (false, &pat[1..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_match(&pat[close + 1..], &name[1..])
        }
        Some(&b) => name.first() == Some(&b) && glob_match(&pat[1..], &name[1..]),
    }
}

/// Natural order: runs of digits compare as numbers, so `x_2` sorts before `x_10`.
fn natural_key(s: &str) -> Vec<(u8, u128, String)> {
    let mut key = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let j = i + b[i..]
            .iter()
            .position(|c| c.is_ascii_digit() != b[i].is_ascii_digit())
            .unwrap_or(b.len() - i);
        let part = &s[i..j];
        match part.parse::<u128>() {
            Ok(n) if b[i].is_ascii_digit() => key.push((0, n, part.to_string())),
            _ => key.push((1, 0, part.to_string())),
        }
        i = j;
    }
    key
}

/// Prefixes (stems of `.idx` files) and directories in the glob's directory whose names
/// match its last component, in natural order; each then resolves as a path would.
fn expand_glob(path: &Path) -> Result<Vec<Family>> {
    let dir = parent_dir(path);
    let pat = file_name(path);
    if is_glob(&dir.to_string_lossy()) {
        return Err(Error::invalid(format!(
            "{}: a dataset glob may use *, ? and [...] in its last component only",
            path.display()
        )));
    }
    let mut names: Vec<String> = idx_stems(&dir)?;
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        let entry = entry.at(&dir)?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| !n.starts_with('.') && glob_match(pat.as_bytes(), n.as_bytes()))
        .collect();
    names.sort_by_key(|n| natural_key(n));
    names.dedup();
    if names.is_empty() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the glob matches no shard prefix or directory",
            ),
        ));
    }
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            resolve_one(&p, false)
        })
        .collect()
}

/// The families a path names: a prefix, a directory, or (when no such file exists) a glob.
fn resolve_spec(path: &Path) -> Result<Vec<Family>> {
    let exists =
        with_ext(path, ".idx").is_file() || with_ext(path, "_0.idx").is_file() || path.is_dir();
    if !exists && is_glob(&file_name(path)) {
        return expand_glob(path);
    }
    Ok(vec![resolve_one(path, false)?])
}

/// Resolve every path, in the order given, into the families of one dataset; a shard
/// named twice is an error (it would count its instances twice).
pub(crate) fn resolve(paths: &[PathBuf]) -> Result<Vec<Family>> {
    if paths.is_empty() {
        return Err(Error::invalid("a dataset needs at least one path"));
    }
    let mut families = Vec::new();
    for p in paths {
        families.extend(resolve_spec(p)?);
    }
    let mut seen = std::collections::HashSet::new();
    for p in families.iter().flat_map(|f| &f.prefixes) {
        let key = std::fs::canonicalize(with_ext(p, ".idx")).unwrap_or_else(|_| p.clone());
        if !seen.insert(key) {
            return Err(Error::invalid(format!(
                "{}: shard named twice in the dataset {}",
                p.display(),
                describe(paths)
            )));
        }
    }
    Ok(families)
}

/// The dataset as the user gave it: one path, or the paths joined by ", ".
pub fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*_tokens", "00001_tokens", true),
            ("*_tokens", "00001_tokens_x", false),
            ("0000?_tokens", "00001_tokens", true),
            ("[0-1]*", "1x", true),
            ("[!0-1]*", "1x", false),
            ("[ab]", "c", false),
            ("a[", "a[", true),
            ("*", "", true),
        ] {
            assert_eq!(glob_match(p.as_bytes(), n.as_bytes()), want, "{p} {n}");
        }
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["x_10", "x_2", "x_1", "a"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["a", "x_1", "x_2", "x_10"]);
    }
}
