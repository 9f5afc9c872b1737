//! Writing Megatron shards: `.bin` streamed through a large buffer, `.idx` at the end.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dtype::TokenDType;
use super::shard::with_ext;
use super::{HEADER_LEN, MAGIC};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::start_writeback;

#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    pub prefix: PathBuf,
    pub num_sequences: u64,
    pub num_tokens: u64,
    pub num_bytes: u64,
}

/// One shard; each sequence is its own document (document index 0, 1, ..., N).
pub struct ShardWriter {
    prefix: PathBuf,
    bin_path: PathBuf,
    dtype: TokenDType,
    bin: BufWriter<File>,
    sizes: Vec<i32>,
    pointers: Vec<i64>,
    offset: u64,
    /// `offset` when write-back was last started.
    behind: u64,
    scratch: Vec<u8>,
}

/// Start the disk writing the `.bin` after every this many bytes, so that it works while
/// instances are still being copied and `finish`'s sync has little left.
const WRITE_BEHIND: u64 = 64 << 20;

impl ShardWriter {
    pub fn create(prefix: &Path, dtype: TokenDType) -> Result<ShardWriter> {
        let bin_path = with_ext(prefix, ".bin");
        let file = File::create(&bin_path).at(&bin_path)?;
        Ok(ShardWriter {
            prefix: prefix.to_path_buf(),
            bin_path,
            dtype,
            bin: BufWriter::with_capacity(1 << 23, file),
            sizes: Vec::new(),
            pointers: Vec::new(),
            offset: 0,
            behind: 0,
            scratch: Vec::new(),
        })
    }

    /// Bytes of tokens written so far.
    pub fn num_bytes(&self) -> u64 {
        self.offset
    }

    pub fn num_sequences(&self) -> u64 {
        self.sizes.len() as u64
    }

    /// Append one sequence given as little-endian tokens of this shard's dtype.
    pub fn add_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let t = self.dtype.size();
        if bytes.len() % t != 0 {
            return Err(Error::invalid(format!(
                "{}: a sequence of {} bytes is not a whole number of {} tokens",
                self.bin_path.display(),
                bytes.len(),
                self.dtype.name()
            )));
        }
        let n = i32::try_from(bytes.len() / t).map_err(|_| {
            Error::invalid(format!(
                "{}: a sequence of {} tokens is longer than the format allows (2^31 - 1)",
                self.bin_path.display(),
                bytes.len() / t
            ))
        })?;
        self.bin.write_all(bytes).at(&self.bin_path)?;
        self.sizes.push(n);
        self.pointers.push(self.offset as i64);
        self.offset += bytes.len() as u64;
        if self.offset - self.behind >= WRITE_BEHIND {
            start_writeback(self.bin.get_ref());
            self.behind = self.offset;
        }
        Ok(())
    }

    /// Append one sequence of token ids, each checked against the dtype's range.
    pub fn add_tokens(&mut self, tokens: &[i64]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        let r = encode(self.dtype, tokens, &mut buf).and_then(|()| self.add_raw(&buf));
        self.scratch = buf;
        r
    }

    /// Write the index and make both files durable.
    pub fn finish(self) -> Result<ShardSummary> {
        let ShardWriter {
            prefix,
            bin_path,
            dtype,
            bin,
            sizes,
            pointers,
            offset,
            ..
        } = self;
        let file = bin
            .into_inner()
            .map_err(|e| Error::io(&bin_path, e.into_error()))?;
        file.sync_all().at(&bin_path)?;
        let idx_path = with_ext(&prefix, ".idx");
        let n = sizes.len() as u64;
        let mut idx = Vec::with_capacity(HEADER_LEN + 12 * sizes.len() + 8 * (sizes.len() + 1));
        idx.extend_from_slice(MAGIC);
        idx.extend_from_slice(&1u64.to_le_bytes());
        idx.push(dtype.code());
        idx.extend_from_slice(&n.to_le_bytes());
        idx.extend_from_slice(&(n + 1).to_le_bytes());
        sizes
            .iter()
            .for_each(|s| idx.extend_from_slice(&s.to_le_bytes()));
        pointers
            .iter()
            .for_each(|p| idx.extend_from_slice(&p.to_le_bytes()));
        (0..=n as i64).for_each(|d| idx.extend_from_slice(&d.to_le_bytes()));
        let mut f = File::create(&idx_path).at(&idx_path)?;
        f.write_all(&idx).at(&idx_path)?;
        f.sync_all().at(&idx_path)?;
        Ok(ShardSummary {
            prefix,
            num_sequences: n,
            num_tokens: offset / dtype.size() as u64,
            num_bytes: offset,
        })
    }
}

/// Encode `tokens` as little-endian `dtype` into `out` (cleared first).
pub(crate) fn encode(dtype: TokenDType, tokens: &[i64], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve(tokens.len() * dtype.size());
    let (lo, hi) = dtype.range();
    for &t in tokens {
        if t < lo || t > hi {
            return Err(Error::invalid(format!(
                "token {t} is out of range for {} ({lo}..={hi})",
                dtype.name()
            )));
        }
        dtype.encode(t, out);
    }
    Ok(())
}

/// Shards `<dir>/<name>_0, _1, ...`, rolling to a new shard when the next sequence would
/// push the current `.bin` past `max_shard_bytes` (a shard holds at least one sequence).
pub struct DatasetWriter {
    dir: PathBuf,
    name: String,
    dtype: TokenDType,
    max_shard_bytes: Option<u64>,
    current: Option<ShardWriter>,
    done: Vec<ShardSummary>,
    scratch: Vec<u8>,
}

impl DatasetWriter {
    pub fn create(
        dir: &Path,
        name: &str,
        dtype: TokenDType,
        max_shard_bytes: Option<u64>,
    ) -> Result<DatasetWriter> {
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(Error::invalid(format!("bad shard name {name:?}")));
        }
        fs::create_dir_all(dir).at(dir)?;
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            dtype,
            max_shard_bytes,
            current: None,
            done: Vec::new(),
            scratch: Vec::new(),
        })
    }

    pub fn dtype(&self) -> TokenDType {
        self.dtype
    }

    fn next_shard(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            self.done.push(w.finish()?);
        }
        let k = self.done.len();
        let prefix = self.dir.join(format!("{}_{k}", self.name));
        self.current = Some(ShardWriter::create(&prefix, self.dtype)?);
        Ok(())
    }

    /// Append one sequence given as little-endian tokens of the writer's dtype.
    pub fn add_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let roll = match (&self.current, self.max_shard_bytes) {
            (None, _) => true,
            (Some(w), Some(max)) => {
                w.num_sequences() > 0 && w.num_bytes() + bytes.len() as u64 > max
            }
            (Some(_), None) => false,
        };
        if roll {
            self.next_shard()?;
        }
        match self.current.as_mut() {
            Some(w) => w.add_raw(bytes),
            None => Err(Error::internal("no open shard")),
        }
    }

    /// Append one sequence of token ids, each checked against the dtype's range.
    pub fn add_tokens(&mut self, tokens: &[i64]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        let r = encode(self.dtype, tokens, &mut buf).and_then(|()| self.add_raw(&buf));
        self.scratch = buf;
        r
    }

    /// Close the last shard (an empty dataset still gets one empty shard `_0`).
    pub fn finish(mut self) -> Result<Vec<ShardSummary>> {
        if self.current.is_none() && self.done.is_empty() {
            self.next_shard()?;
        }
        if let Some(w) = self.current.take() {
            self.done.push(w.finish()?);
        }
        Ok(self.done)
    }
}
