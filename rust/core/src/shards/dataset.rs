//! A dataset: shards `<name>_0, <name>_1, ...` (or one prefix) with global instance ids.

use std::path::{Path, PathBuf};

use super::dtype::TokenDType;
use super::fingerprint::{cache_dir, combine, shard_content, ShardContent};
use super::manifest::check;
use super::resolve::{describe, resolve};
use super::shard::Shard;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::sync::OnceLock;

pub struct Dataset {
    shards: Vec<Shard>,
    /// `starts[k]` = global id of shard k's first instance; one extra entry = len().
    starts: Vec<u64>,
    dtype: TokenDType,
    /// The paths the dataset was opened from, as given (what records name).
    given: Vec<PathBuf>,
    /// Per-shard content digests and token ranges, computed on first use.
    content: OnceLock<Vec<ShardContent>>,
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
            content: OnceLock::new(),
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
    /// Every file the dataset reads (each shard's `.idx` and `.bin`): what an output
    /// must spare.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.shards
            .iter()
            .flat_map(|s| [s.idx_path(), s.bin_path()])
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

    /// Every shard's content digest and token range (one parallel pass over the files,
    /// or the per-user cache; see `fingerprint.rs`).
    pub fn contents(&self) -> Result<&[ShardContent]> {
        self.contents_with(cache_dir().as_deref())
    }

    pub(crate) fn contents_with(&self, cache: Option<&Path>) -> Result<&[ShardContent]> {
        if let Some(c) = self.content.get() {
            return Ok(c);
        }
        let c = self
            .shards
            .par_iter()
            .map(|s| shard_content(s, cache))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.content.get_or_init(|| c))
    }

    /// A fingerprint of every byte of every shard file (`xxh3c:...`, docs/FORMATS.md).
    pub fn fingerprint(&self) -> Result<String> {
        Ok(combine(self.dtype, self.contents()?))
    }

    /// Smallest and largest token id over all instances, `None` without tokens.
    pub fn token_range(&self) -> Result<Option<(i64, i64)>> {
        Ok(self
            .contents()?
            .iter()
            .filter_map(|c| c.range)
            .reduce(|(l1, h1), (l2, h2)| (l1.min(l2), h1.max(h2))))
    }

    /// Refuse a token id outside `[0, vocab_size)`, naming the dataset, the first
    /// instance holding one and the id.
    pub fn check_vocab(&self, vocab_size: u64) -> Result<()> {
        let bad = |t: i64| t < 0 || t as u64 >= vocab_size;
        let contents = self.contents()?;
        for (k, (shard, c)) in self.shards.iter().zip(contents).enumerate() {
            let Some((lo, hi)) = c.range else { continue };
            if !bad(lo) && !bad(hi) {
                continue;
            }
            for i in 0..shard.len() {
                let id = self.starts[k] + i;
                if let Some(&t) = self.tokens_i64(id)?.iter().find(|&&t| bad(t)) {
                    return Err(Error::invalid(format!(
                        "{}: instance {id} holds token id {t}, outside the vocabulary of \
                         {vocab_size} ids [0, {vocab_size}); the dataset does not belong to \
                         this model or tokenizer",
                        self.describe()
                    )));
                }
            }
        }
        Ok(())
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
