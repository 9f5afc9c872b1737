//! Content fingerprints and token ranges of shard files: one parallel pass over every
//! byte (xxh3-64 per 16 MiB block, min / max token id), cached per file so that a
//! repeated open costs a `stat` (docs/FORMATS.md, "Dataset fingerprint").

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::dtype::TokenDType;
use super::shard::Shard;
use crate::error::{IoContext, Result};

/// Blocks hashed in parallel; the file's digest is xxh3-64 over its length and the
/// blocks' digests, so it does not depend on the thread count.
const BLOCK: usize = 16 << 20;
/// Bumped when what is hashed changes, so old cache entries are never read.
const CACHE_VERSION: u32 = 1;
/// A file changed this recently may change again within the timestamp granularity
/// without its (size, mtime, ctime) changing: hash it, but do not cache it.
const RACY_NS: i128 = 2_000_000_000;

/// What one pass over a shard's files yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardContent {
    pub idx_hash: u64,
    pub bin_hash: u64,
    /// Smallest and largest token id, `None` for a shard without tokens.
    pub range: Option<(i64, i64)>,
}

fn min_max(dtype: TokenDType, bytes: &[u8]) -> Option<(i64, i64)> {
    fn fold<I: Iterator<Item = i64>>(it: I) -> Option<(i64, i64)> {
        it.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }
    match dtype {
        // Fixed-width loops the compiler vectorises; the fold above would not.
        TokenDType::U16 => {
            let it = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]));
            let (lo, hi) = it.fold((u16::MAX, u16::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
            (bytes.len() >= 2).then_some((lo as i64, hi as i64))
        }
        TokenDType::I32 => {
            let it = bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            let (lo, hi) = it.fold((i32::MAX, i32::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
            (bytes.len() >= 4).then_some((lo as i64, hi as i64))
        }
        _ => {
            let t = dtype.size();
            fold((0..bytes.len() / t).map(|j| dtype.decode(bytes, j * t)))
        }
    }
}

fn merge(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some((l1, h1)), Some((l2, h2))) => Some((l1.min(l2), h1.max(h2))),
        (x, None) | (None, x) => x,
    }
}

/// Digest of `bytes` and, over its first `token_bytes`, the token range.
fn scan(bytes: &[u8], dtype: TokenDType, token_bytes: usize) -> (u64, Option<(i64, i64)>) {
    let parts: Vec<(u64, Option<(i64, i64)>)> = bytes
        .par_chunks(BLOCK)
        .enumerate()
        .map(|(k, block)| {
            let start = k * BLOCK;
            let tokens = &block[..token_bytes.saturating_sub(start).min(block.len())];
            (xxh3_64(block), min_max(dtype, tokens))
        })
        .collect();
    let mut h = Xxh3::new();
    h.update(&(bytes.len() as u64).to_le_bytes());
    let mut range = None;
    for (d, r) in parts {
        h.update(&d.to_le_bytes());
        range = merge(range, r);
    }
    (h.digest(), range)
}

/// Where cache entries live: `$MINIPLM_CACHE_DIR/fingerprints`, else
/// `$XDG_CACHE_HOME/miniplm/fingerprints`, else `~/.cache/miniplm/fingerprints`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("MINIPLM_CACHE_DIR") {
        return Some(d.join("fingerprints"));
    }
    let base = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))?;
    Some(base.join("miniplm").join("fingerprints"))
}

/// The identity of a file's current content as the OS tells it, `None` when unknown or
/// too fresh to trust: (canonical path, size, mtime, ctime, inode, device).
fn cache_key(path: &Path, extra: &str) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    cache_key_at(path, extra, now)
}

fn cache_key_at(path: &Path, extra: &str, now: i128) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let canon = std::fs::canonicalize(path).ok()?;
        let m = std::fs::metadata(&canon).ok()?;
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        let ctime = ns(m.ctime(), m.ctime_nsec());
        if now - ctime < RACY_NS {
            return None;
        }
        Some(format!(
            "v{CACHE_VERSION} {extra} {} {} {} {} {} {}",
            m.len(),
            ns(m.mtime(), m.mtime_nsec()),
            ctime,
            m.ino(),
            m.dev(),
            canon.display()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, extra, now);
        None
    }
}

fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{:016x}", xxh3_64(key.as_bytes())))
}

/// A cached `(digest, range)`; anything unreadable or not matching is a miss.
fn cache_get(dir: &Path, key: &str) -> Option<(u64, Option<(i64, i64)>)> {
    let text = std::fs::read_to_string(entry_path(dir, key)).ok()?;
    let (k, v) = text.split_once('\n')?;
    if k != key {
        return None;
    }
    let f: Vec<&str> = v.split_whitespace().collect();
    let digest = u64::from_str_radix(f.first()?, 16).ok()?;
    let range = match f.get(1..3)? {
        ["-", "-"] => None,
        [lo, hi] => Some((lo.parse().ok()?, hi.parse().ok()?)),
        _ => return None,
    };
    Some((digest, range))
}

/// Store an entry (temp file + rename); a cache that cannot be written is no error.
fn cache_put(dir: &Path, key: &str, digest: u64, range: Option<(i64, i64)>) {
    let r = match range {
        Some((lo, hi)) => format!("{lo} {hi}"),
        None => "- -".into(),
    };
    let path = entry_path(dir, key);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let ok = std::fs::create_dir_all(dir).is_ok()
        && std::fs::write(&tmp, format!("{key}\n{digest:016x} {r}\n")).is_ok()
        && std::fs::rename(&tmp, &path).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Digest (and token range over `token_bytes`) of one file, through the cache.
fn file_content(
    path: &Path,
    bytes: &[u8],
    dtype: TokenDType,
    token_bytes: usize,
    cache: Option<&Path>,
) -> Result<(u64, Option<(i64, i64)>)> {
    let key = cache.and(cache_key(path, &format!("{} {token_bytes}", dtype.code())));
    if let (Some(dir), Some(key)) = (cache, &key) {
        if let Some(hit) = cache_get(dir, key) {
            return Ok(hit);
        }
    }
    // The file must still be there: a vanished file is an error, not a stale answer.
    std::fs::metadata(path).at(path)?;
    let got = scan(bytes, dtype, token_bytes);
    if let (Some(dir), Some(key)) = (cache, &key) {
        cache_put(dir, key, got.0, got.1);
    }
    Ok(got)
}

/// Hash both files of `shard` and find its token range, using the cache in `cache`.
pub(crate) fn shard_content(shard: &Shard, cache: Option<&Path>) -> Result<ShardContent> {
    let dtype = shard.dtype();
    let (idx_hash, _) = file_content(shard.idx_path(), shard.idx_bytes(), dtype, 0, cache)?;
    let token_bytes = shard.num_tokens() as usize * dtype.size();
    let (bin_hash, range) = file_content(
        shard.bin_path(),
        shard.bin_bytes(),
        dtype,
        token_bytes,
        cache,
    )?;
    Ok(ShardContent {
        idx_hash,
        bin_hash,
        range,
    })
}

/// The dataset fingerprint of its shards' contents; `xxh3c:` marks it apart from the
/// sampled `xxh3:` fingerprints that came before.
pub(crate) fn combine(dtype: TokenDType, contents: &[ShardContent]) -> String {
    let mut h = Xxh3::new();
    h.update(&[dtype.code()]);
    h.update(&(contents.len() as u64).to_le_bytes());
    for c in contents {
        h.update(&c.idx_hash.to_le_bytes());
        h.update(&c.bin_hash.to_le_bytes());
    }
    format!("xxh3c:{:016x}", h.digest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Obviously correct: one token at a time.
    fn slow_min_max(dtype: TokenDType, bytes: &[u8]) -> Option<(i64, i64)> {
        let t = dtype.size();
        let all: Vec<i64> = (0..bytes.len() / t)
            .map(|j| dtype.decode(bytes, j * t))
            .collect();
        Some((*all.iter().min()?, *all.iter().max()?))
    }

    proptest! {
        #[test]
        fn range_matches_reference(words in prop::collection::vec(any::<u32>(), 0..200),
                                   cut in 0usize..900, i32s in any::<bool>()) {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let dtype = if i32s { TokenDType::I32 } else { TokenDType::U16 };
            let n = cut.min(bytes.len()) / dtype.size() * dtype.size();
            prop_assert_eq!(scan(&bytes, dtype, n).1, slow_min_max(dtype, &bytes[..n]));
            prop_assert_eq!(min_max(dtype, &bytes[..n]), slow_min_max(dtype, &bytes[..n]));
        }
    }

    #[test]
    fn digest_sees_every_byte_and_block_boundaries() {
        let mut bytes = vec![7u8; BLOCK * 2 + 5];
        let (a, _) = scan(&bytes, TokenDType::U16, 0);
        bytes[BLOCK + 3] ^= 1;
        let (b, _) = scan(&bytes, TokenDType::U16, 0);
        assert_ne!(a, b);
        bytes[BLOCK + 3] ^= 1;
        assert_eq!(scan(&bytes, TokenDType::U16, 0).0, a);
        bytes.push(7);
        assert_ne!(scan(&bytes, TokenDType::U16, 0).0, a);
    }

    #[test]
    fn cache_round_trip_and_garbage_is_a_miss() {
        let d = tempfile::tempdir().unwrap();
        cache_put(d.path(), "k 1", 0xabc, Some((-3, 9)));
        cache_put(d.path(), "k 2", 5, None);
        assert_eq!(cache_get(d.path(), "k 1"), Some((0xabc, Some((-3, 9)))));
        assert_eq!(cache_get(d.path(), "k 2"), Some((5, None)));
        assert_eq!(cache_get(d.path(), "k 3"), None);
        std::fs::write(entry_path(d.path(), "k 1"), "k 1\nzz 1").unwrap();
        assert_eq!(cache_get(d.path(), "k 1"), None);
        // An unwritable cache is silently skipped.
        std::fs::write(d.path().join("file"), "").unwrap();
        cache_put(&d.path().join("file").join("x"), "k", 1, None);
    }

    #[test]
    fn key_follows_size_mtime_ctime_and_skips_fresh_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abcd").unwrap();
        let later = i128::MAX / 2;
        let a = cache_key_at(&p, "x", later).unwrap();
        assert_eq!(cache_key_at(&p, "x", later), Some(a.clone()));
        assert_ne!(cache_key_at(&p, "y", later), Some(a.clone()));
        assert_eq!(
            cache_key(&p, "x"),
            None,
            "a file written just now is not cached"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"abce").unwrap(); // same size, in place
        assert_ne!(cache_key_at(&p, "x", later), Some(a));
    }
}
