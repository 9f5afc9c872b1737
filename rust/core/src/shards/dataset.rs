//! A dataset: shards `<name>_0, <name>_1, ...` (or one prefix) with global instance ids.

use std::path::{Path, PathBuf};

use super::dtype::TokenDType;
use super::shard::{with_ext, Shard};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::quick_fingerprint;

pub struct Dataset {
    shards: Vec<Shard>,
    /// `starts[k]` = global id of shard k's first instance; one extra entry = len().
    starts: Vec<u64>,
    dtype: TokenDType,
}

/// Output element types of [`Dataset::gather`].
pub trait GatherOut: Copy {
    fn from_token(t: i64) -> Option<Self>;
    const NAME: &'static str;
}
impl GatherOut for i64 {
    #[inline]
    fn from_token(t: i64) -> Option<Self> {
        Some(t)
    }
    const NAME: &'static str = "int64";
}
impl GatherOut for i32 {
    #[inline]
    fn from_token(t: i64) -> Option<Self> {
        i32::try_from(t).ok()
    }
    const NAME: &'static str = "int32";
}

fn not_found(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no token dataset here (expected PREFIX.idx, PREFIX_0.idx, or a directory of shards)",
        ),
    )
}

/// `(family, shard number)` of an index file name `<family>_<k>.idx`.
fn split_shard_name(stem: &str) -> Option<(&str, u64)> {
    let (family, k) = stem.rsplit_once('_')?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((family, k.parse().ok()?))
}

/// The `.idx` stems in `dir`.
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

/// Shard prefixes `prefix_0, prefix_1, ...`, refusing gaps.
fn numbered(prefix: &Path) -> Result<Vec<PathBuf>> {
    let stem = prefix
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
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

/// Resolve `path` to shard prefixes (see docs/FORMATS.md, "Token dataset").
fn resolve(path: &Path) -> Result<Vec<PathBuf>> {
    if with_ext(path, ".idx").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if with_ext(path, "_0.idx").is_file() {
        return numbered(path);
    }
    if path.is_dir() {
        let stems = idx_stems(path)?;
        let families: Vec<&str> = stems
            .iter()
            .map(|s| split_shard_name(s).map_or(s.as_str(), |(f, _)| f))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        return match families.as_slice() {
            [one] => resolve(&path.join(one)),
            [] => Err(not_found(path)),
            many => Err(Error::invalid(format!(
                "{}: several datasets in one directory ({}); pass one prefix",
                path.display(),
                many.join(", ")
            ))),
        };
    }
    Err(not_found(path))
}

impl Dataset {
    /// Open a prefix, a prefix of numbered shards, or a directory of one family.
    pub fn open(path: &Path) -> Result<Dataset> {
        let shards = resolve(path)?
            .iter()
            .map(|p| Shard::open(p))
            .collect::<Result<Vec<_>>>()?;
        Dataset::from_shards(shards)
    }

    /// A dataset of already opened shards, which must share a dtype.
    pub fn from_shards(shards: Vec<Shard>) -> Result<Dataset> {
        let first = shards
            .first()
            .ok_or_else(|| Error::invalid("a dataset needs at least one shard"))?;
        let dtype = first.dtype();
        if let Some(other) = shards.iter().find(|s| s.dtype() != dtype) {
            return Err(Error::format(
                other.idx_path(),
                "dtype",
                format!(
                    "{} here but {} in {}; all shards of a dataset share one dtype",
                    other.dtype().name(),
                    dtype.name(),
                    first.idx_path().display()
                ),
            ));
        }
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut at = 0u64;
        for s in &shards {
            starts.push(at);
            at += s.len();
        }
        starts.push(at);
        Ok(Dataset {
            shards,
            starts,
            dtype,
        })
    }

    pub fn len(&self) -> u64 {
        *self.starts.last().unwrap_or(&0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn num_tokens(&self) -> u64 {
        self.shards.iter().map(Shard::num_tokens).sum()
    }
    pub fn dtype(&self) -> TokenDType {
        self.dtype
    }
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
    /// Global id of each shard's first instance, plus `len()` at the end.
    pub fn starts(&self) -> &[u64] {
        &self.starts
    }

    /// `(shard index, index within the shard)` of global instance `id`.
    #[inline]
    pub fn locate(&self, id: u64) -> Result<(usize, u64)> {
        if id >= self.len() {
            return Err(Error::invalid(format!(
                "instance id {id} is out of range for a dataset of {} instances",
                self.len()
            )));
        }
        let k = self.starts.partition_point(|&s| s <= id) - 1;
        Ok((k, id - self.starts[k]))
    }

    pub fn instance_len(&self, id: u64) -> Result<u32> {
        let (k, i) = self.locate(id)?;
        Ok(self.shards[k].size(i))
    }

    /// Raw little-endian tokens of instance `id`.
    pub fn instance_bytes(&self, id: u64) -> Result<&[u8]> {
        let (k, i) = self.locate(id)?;
        Ok(self.shards[k].bytes(i))
    }

    pub fn tokens_i64(&self, id: u64) -> Result<Vec<i64>> {
        let bytes = self.instance_bytes(id)?;
        let t = self.dtype.size();
        Ok((0..bytes.len() / t)
            .map(|j| self.dtype.decode(bytes, j * t))
            .collect())
    }

    /// Fill row r of `out` (rows of `cols`) with instance `ids[r]`: its first
    /// `min(len, cols)` tokens, then `pad`; `lengths[r]` = tokens copied.
    pub fn gather<T: GatherOut>(
        &self,
        ids: &[u64],
        out: &mut [T],
        cols: usize,
        pad: T,
        lengths: &mut [u32],
    ) -> Result<()> {
        if out.len() != ids.len().saturating_mul(cols) || lengths.len() != ids.len() {
            return Err(Error::invalid(format!(
                "gather: {} ids need an output of {} x {cols} and {} lengths, got {} and {}",
                ids.len(),
                ids.len(),
                ids.len(),
                out.len(),
                lengths.len()
            )));
        }
        if cols == 0 {
            lengths.iter_mut().for_each(|l| *l = 0);
            return Ok(());
        }
        let tsize = self.dtype.size();
        for ((&id, row), len_out) in ids.iter().zip(out.chunks_exact_mut(cols)).zip(lengths) {
            let bytes = self.instance_bytes(id)?;
            let n = (bytes.len() / tsize).min(cols);
            copy_tokens(self.dtype, &bytes[..n * tsize], &mut row[..n]).map_err(|t| {
                Error::invalid(format!(
                    "gather: token {t} of instance {id} does not fit {}",
                    T::NAME
                ))
            })?;
            row[n..].fill(pad);
            *len_out = n as u32;
        }
        Ok(())
    }

    /// Combined quick fingerprints of every shard file (see `fsutil::quick_fingerprint`).
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for s in &self.shards {
            h.update(quick_fingerprint(s.idx_path())?.as_bytes());
            h.update(quick_fingerprint(s.bin_path())?.as_bytes());
        }
        Ok(format!("xxh3:{:016x}", h.digest()))
    }
}

/// Decode `bytes` into `out` with the dtype dispatch outside the loop; `Err(token)` for a
/// token the output type cannot hold.
#[inline]
fn copy_tokens<T: GatherOut>(dtype: TokenDType, bytes: &[u8], out: &mut [T]) -> Result<(), i64> {
    macro_rules! run {
        ($n:expr, $conv:expr) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                let t: i64 = $conv(c);
                *o = T::from_token(t).ok_or(t)?;
            }
        };
    }
    match dtype {
        TokenDType::U16 => run!(2, |c: &[u8]| u16::from_le_bytes([c[0], c[1]]) as i64),
        TokenDType::I32 => run!(4, |c: &[u8]| i32::from_le_bytes([c[0], c[1], c[2], c[3]])
            as i64),
        _ => {
            let t = dtype.size();
            for (j, o) in out.iter_mut().enumerate() {
                let v = dtype.decode(bytes, j * t);
                *o = T::from_token(v).ok_or(v)?;
            }
        }
    }
    Ok(())
}
