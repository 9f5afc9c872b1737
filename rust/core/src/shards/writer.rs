//! Writing Megatron shards: `.bin` streamed through a large buffer, `.idx` at the end.
//!
//! A writer can be checkpointed and later resumed after a kill: `checkpoint` makes the
//! `.bin` durable and appends the sizes written since the last one to a hidden sidecar
//! (`.<name>_<k>.sizes`, little-endian i32), and `DatasetWriter::resume` truncates both
//! back to what the checkpoint recorded, so what was written after it is written again.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
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
    /// Sizes already in the sidecar (written by `checkpoint`).
    saved: usize,
}

/// The sidecar of shard `prefix` that holds its sizes up to the last checkpoint.
fn sizes_path(prefix: &Path) -> PathBuf {
    let name = prefix.file_name().unwrap_or_default().to_string_lossy();
    prefix.with_file_name(format!(".{name}.sizes"))
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
            saved: 0,
        })
    }

    /// Reopen the shard at `prefix` as a checkpoint left it: `sequences` sequences in
    /// `bytes` bytes. Both the `.bin` and the sizes sidecar are cut back to that (what a
    /// killed writer added after the checkpoint is dropped); a stale `.idx` is removed.
    pub fn reopen(
        prefix: &Path,
        dtype: TokenDType,
        sequences: u64,
        bytes: u64,
    ) -> Result<ShardWriter> {
        let bin_path = with_ext(prefix, ".bin");
        let side = sizes_path(prefix);
        let short = |path: &Path, what: String| {
            Error::format(
                path,
                "length",
                format!("{what}: not the shard the checkpoint wrote"),
            )
        };
        let mut file = OpenOptions::new()
            .write(true)
            .open(&bin_path)
            .at(&bin_path)?;
        let len = file.metadata().at(&bin_path)?.len();
        if len < bytes {
            let what = format!("{len} bytes, the checkpoint recorded {bytes}");
            return Err(short(&bin_path, what));
        }
        file.set_len(bytes).at(&bin_path)?;
        file.seek(SeekFrom::End(0)).at(&bin_path)?;
        let raw = match fs::read(&side) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && sequences == 0 => Vec::new(),
            Err(e) => return Err(Error::io(&side, e)),
        };
        let want = usize::try_from(sequences)
            .ok()
            .and_then(|n| n.checked_mul(4))
            .filter(|&n| n <= raw.len())
            .ok_or_else(|| {
                short(
                    &side,
                    format!(
                        "{} sizes, the checkpoint recorded {sequences}",
                        raw.len() / 4
                    ),
                )
            })?;
        let sizes: Vec<i32> = raw[..want]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = dtype.size() as u64;
        let mut pointers = Vec::with_capacity(sizes.len());
        let mut offset = 0u64;
        for &n in &sizes {
            pointers.push(offset as i64);
            offset += u64::try_from(n).map_err(|_| short(&side, format!("a size of {n}")))? * t;
        }
        if offset != bytes {
            let what = format!("sizes add up to {offset} bytes, the checkpoint recorded {bytes}");
            return Err(short(&side, what));
        }
        if raw.len() > want {
            OpenOptions::new()
                .write(true)
                .open(&side)
                .and_then(|f| f.set_len(want as u64))
                .at(&side)?;
        }
        remove_if_present(&with_ext(prefix, ".idx"))?;
        Ok(ShardWriter {
            prefix: prefix.to_path_buf(),
            bin_path,
            dtype,
            bin: BufWriter::with_capacity(1 << 23, file),
            saved: sizes.len(),
            sizes,
            pointers,
            offset: bytes,
            behind: bytes,
            scratch: Vec::new(),
        })
    }

    /// Make everything added so far durable: the `.bin` synced, the new sizes appended to
    /// the sidecar and synced. Returns (sequences, bytes), what `reopen` takes.
    pub fn checkpoint(&mut self) -> Result<(u64, u64)> {
        self.bin.flush().at(&self.bin_path)?;
        self.bin.get_ref().sync_data().at(&self.bin_path)?;
        let side = sizes_path(&self.prefix);
        let mut buf = Vec::with_capacity(4 * (self.sizes.len() - self.saved));
        self.sizes[self.saved..]
            .iter()
            .for_each(|s| buf.extend_from_slice(&s.to_le_bytes()));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&side)
            .at(&side)?;
        f.write_all(&buf).at(&side)?;
        f.sync_data().at(&side)?;
        self.saved = self.sizes.len();
        Ok((self.num_sequences(), self.offset))
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

    /// Continue the writer whose `checkpoint` returned `at`, in the same `dir` with the same
    /// settings: finished shards are kept (their `.bin` sizes checked), the open one is cut
    /// back to the checkpoint, and shards begun after it are removed.
    pub fn resume(
        dir: &Path,
        name: &str,
        dtype: TokenDType,
        max_shard_bytes: Option<u64>,
        at: &WriterCheckpoint,
    ) -> Result<DatasetWriter> {
        let mut w = DatasetWriter::create(dir, name, dtype, max_shard_bytes)?;
        let t = dtype.size() as u64;
        for &(num_sequences, num_bytes) in &at.done {
            let prefix = w.prefix(w.done.len());
            let (bin, idx) = (with_ext(&prefix, ".bin"), with_ext(&prefix, ".idx"));
            let len = fs::metadata(&bin).at(&bin)?.len();
            if len != num_bytes || !idx.is_file() || num_bytes % t != 0 {
                let msg =
                    format!("{len} bytes, the checkpoint recorded a finished shard of {num_bytes}");
                return Err(Error::format(&bin, "length", msg));
            }
            w.done.push(ShardSummary {
                prefix,
                num_sequences,
                num_tokens: num_bytes / t,
                num_bytes,
            });
        }
        if let Some((sequences, bytes)) = at.open {
            let prefix = w.prefix(w.done.len());
            w.current = Some(ShardWriter::reopen(&prefix, dtype, sequences, bytes)?);
        }
        // Shards a killed writer began after the checkpoint.
        let mut k = w.done.len() + usize::from(at.open.is_some());
        loop {
            let prefix = w.prefix(k);
            let files = [
                with_ext(&prefix, ".bin"),
                with_ext(&prefix, ".idx"),
                sizes_path(&prefix),
            ];
            if !files.iter().any(|f| f.exists()) {
                break;
            }
            files.iter().try_for_each(|f| remove_if_present(f))?;
            k += 1;
        }
        Ok(w)
    }

    pub fn dtype(&self) -> TokenDType {
        self.dtype
    }

    fn prefix(&self, k: usize) -> PathBuf {
        self.dir.join(format!("{}_{k}", self.name))
    }

    fn next_shard(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            self.done.push(w.finish()?);
        }
        let prefix = self.prefix(self.done.len());
        self.current = Some(ShardWriter::create(&prefix, self.dtype)?);
        Ok(())
    }

    /// Make everything added so far durable; `resume` takes what it returns. (A finished
    /// shard keeps its sidecar until `finish`: a checkpoint taken before it rolled still
    /// names it as the open one.)
    pub fn checkpoint(&mut self) -> Result<WriterCheckpoint> {
        let open = match self.current.as_mut() {
            Some(w) => Some(w.checkpoint()?),
            None => None,
        };
        let done = self
            .done
            .iter()
            .map(|s| (s.num_sequences, s.num_bytes))
            .collect();
        Ok(WriterCheckpoint { done, open })
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
        for s in &self.done {
            remove_if_present(&sizes_path(&s.prefix))?;
        }
        Ok(self.done)
    }
}

/// Where a `DatasetWriter` stood at a checkpoint: (sequences, bytes) of each finished
/// shard, and of the open one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterCheckpoint {
    pub done: Vec<(u64, u64)>,
    pub open: Option<(u64, u64)>,
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
