//! A dataset: shards `<name>_0, <name>_1, ...` (or one prefix) with global instance ids.

use std::path::{Path, PathBuf};

use super::dtype::TokenDType;
use super::manifest::check;
use super::resolve::{describe, resolve};
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::fsutil::quick_fingerprint;

pub struct Dataset {
    shards: Vec<Shard>,
    /// `starts[k]` = global id of shard k's first instance; one extra entry = len().
    starts: Vec<u64>,
    dtype: TokenDType,
    /// The paths the dataset was opened from, as given (what records name).
    given: Vec<PathBuf>,
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

impl Dataset {
    /// Open a prefix, a prefix of numbered shards, a directory of one family, or a glob
    /// of prefixes (docs/FORMATS.md, "Token dataset").
    pub fn open(path: &Path) -> Result<Dataset> {
        Dataset::open_many(&[path.to_path_buf()])
    }

    /// One dataset of several paths (each as [`Dataset::open`] takes), in the order given.
    /// A family whose shard set was inferred is checked against its directory's manifest.
    pub fn open_many(paths: &[PathBuf]) -> Result<Dataset> {
        let mut shards = Vec::new();
        for family in resolve(paths)? {
            let opened = family
                .prefixes
                .iter()
                .map(|p| Shard::open(p))
                .collect::<Result<Vec<_>>>()?;
            check(&family, &opened)?;
            shards.extend(opened);
        }
        let mut data = Dataset::from_shards(shards)?;
        data.given = paths.to_vec();
        Ok(data)
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
        let given = shards
            .iter()
            .map(|s| s.idx_path().with_extension(""))
            .collect();
        Ok(Dataset {
            shards,
            starts,
            dtype,
            given,
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
    /// The paths the dataset was opened from, as given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.given
    }
    /// The dataset as given: one path, or several joined by ", ".
    pub fn describe(&self) -> String {
        describe(&self.given)
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
