//! One validated, memory-mapped `.bin/.idx` pair.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dtype::{le4, le8, TokenDType};
use super::{HEADER_LEN, MAGIC};
use crate::error::{Error, IoContext, Result};

/// A shard whose every header field and pointer was checked against the file sizes
/// before any accessor can read through them.
pub struct Shard {
    idx_path: PathBuf,
    bin_path: PathBuf,
    idx: Mmap,
    /// `None` for an empty `.bin` (a zero-length file cannot be mapped).
    bin: Option<Mmap>,
    dtype: TokenDType,
    len: u64,
    num_docs: u64,
    num_tokens: u64,
}

/// `prefix` + `ext` without replacing anything after a dot in the prefix's name.
pub(crate) fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

fn map(path: &Path) -> Result<Option<Mmap>> {
    let file = File::open(path).at(path)?;
    if file.metadata().at(path)?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: read-only private map. We assume, as every mmap reader must, that no other
    // process truncates or rewrites the file while it is open; miniplm itself only ever
    // replaces outputs by rename, never in place.
    let m = unsafe { Mmap::map(&file) }.at(path)?;
    Ok(Some(m))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(le8(b, at))
}

impl Shard {
    /// Open `prefix.idx` / `prefix.bin` and validate them (see docs/FORMATS.md).
    pub fn open(prefix: &Path) -> Result<Shard> {
        let idx_path = with_ext(prefix, ".idx");
        let bin_path = with_ext(prefix, ".bin");
        let idx = map(&idx_path)?.ok_or_else(|| {
            Error::format(&idx_path, "header", "empty file, not an MMIDIDX index")
        })?;
        let bin = map(&bin_path)?;
        let bad = |field: &str, msg: String| Error::format(&idx_path, field, msg);
        if idx.len() < HEADER_LEN {
            return Err(bad(
                "header",
                format!(
                    "file has {} bytes, the header alone needs {HEADER_LEN}",
                    idx.len()
                ),
            ));
        }
        if &idx[..9] != MAGIC {
            return Err(bad("magic", "not a Megatron MMIDIDX index".into()));
        }
        let version = u64_at(&idx, 9);
        if version != 1 {
            return Err(bad("version", format!("{version}, only version 1 exists")));
        }
        let dtype = TokenDType::from_code(idx[17])
            .ok_or_else(|| bad("dtype", format!("unknown dtype code {}", idx[17])))?;
        let len = u64_at(&idx, 18);
        let num_docs = u64_at(&idx, 26);
        let need = len
            .checked_mul(12)
            .and_then(|b| b.checked_add(num_docs.checked_mul(8)?))
            .and_then(|b| b.checked_add(HEADER_LEN as u64));
        match need {
            Some(n) if n == idx.len() as u64 => {}
            _ => {
                return Err(bad(
                    "sequence count",
                    format!(
                        "header says {len} sequences and {num_docs} document-index entries, \
                         which does not match the file size of {} bytes",
                        idx.len()
                    ),
                ))
            }
        }
        if num_docs == 0 {
            return Err(bad(
                "document count",
                "0; the document index holds at least [0]".into(),
            ));
        }
        let mut shard = Shard {
            idx_path,
            bin_path,
            idx,
            bin,
            dtype,
            len,
            num_docs,
            num_tokens: 0,
        };
        shard.num_tokens = shard.validate_sequences()?;
        shard.validate_documents()?;
        Ok(shard)
    }

    /// One pass over sizes and pointers: non-negative sizes, pointers that follow each
    /// other, the last sequence inside `.bin`. Returns the token count.
    fn validate_sequences(&self) -> Result<u64> {
        let bad = |field: &str, msg: String| Error::format(&self.idx_path, field, msg);
        let tsize = self.dtype.size() as u64;
        let mut expected = 0u64;
        let mut tokens = 0u64;
        for i in 0..self.len {
            let size = self.raw_size(i);
            if size < 0 {
                return Err(bad(
                    "sizes",
                    format!("sequence {i} has negative length {size}"),
                ));
            }
            let ptr = self.raw_pointer(i);
            if ptr < 0 || ptr as u64 != expected {
                return Err(bad(
                    "pointers",
                    format!("sequence {i} starts at byte {ptr}, expected {expected} (previous pointer + size)"),
                ));
            }
            tokens += size as u64;
            expected += size as u64 * tsize;
        }
        let bin_len = self.bin.as_ref().map_or(0, |m| m.len() as u64);
        if expected > bin_len {
            return Err(Error::format(
                &self.bin_path,
                "size",
                format!(
                    "truncated: the index needs {expected} bytes of tokens, the file has {bin_len}"
                ),
            ));
        }
        Ok(tokens)
    }

    fn validate_documents(&self) -> Result<()> {
        let bad = |msg: String| Error::format(&self.idx_path, "document index", msg);
        let base = HEADER_LEN + 12 * self.len as usize;
        let doc = |j: u64| i64::from_le_bytes(le8(&self.idx, base + 8 * j as usize));
        if doc(0) != 0 {
            return Err(bad(format!("starts at {}, not 0", doc(0))));
        }
        let mut prev = 0i64;
        for j in 1..self.num_docs {
            let d = doc(j);
            if d < prev {
                return Err(bad(format!(
                    "entry {j} = {d} is smaller than entry {} = {prev}",
                    j - 1
                )));
            }
            prev = d;
        }
        if prev != self.len as i64 {
            return Err(bad(format!(
                "ends at {prev}, not at the sequence count {}",
                self.len
            )));
        }
        Ok(())
    }

    #[inline]
    fn raw_size(&self, i: u64) -> i32 {
        i32::from_le_bytes(le4(&self.idx, HEADER_LEN + 4 * i as usize))
    }

    #[inline]
    fn raw_pointer(&self, i: u64) -> i64 {
        i64::from_le_bytes(le8(&self.idx, self.pointers_offset() + 8 * i as usize))
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn num_tokens(&self) -> u64 {
        self.num_tokens
    }
    pub fn num_docs(&self) -> u64 {
        self.num_docs
    }
    pub fn dtype(&self) -> TokenDType {
        self.dtype
    }
    pub fn idx_path(&self) -> &Path {
        &self.idx_path
    }
    pub fn bin_path(&self) -> &Path {
        &self.bin_path
    }
    /// The whole `.idx` file.
    pub(crate) fn idx_bytes(&self) -> &[u8] {
        &self.idx
    }
    /// The whole `.bin` file (empty when the file is).
    pub(crate) fn bin_bytes(&self) -> &[u8] {
        self.bin.as_deref().unwrap_or(&[])
    }
    /// Byte offset of the int32 sizes array in the `.idx` file.
    pub fn sizes_offset(&self) -> usize {
        HEADER_LEN
    }
    /// Byte offset of the int64 pointers array in the `.idx` file (not 8-byte aligned).
    pub fn pointers_offset(&self) -> usize {
        HEADER_LEN + 4 * self.len as usize
    }

    /// Length in tokens of sequence `i` (`i < len()`, validated non-negative).
    #[inline]
    pub fn size(&self, i: u64) -> u32 {
        self.raw_size(i) as u32
    }

    /// Byte offset of sequence `i` in `.bin`.
    #[inline]
    pub fn pointer(&self, i: u64) -> u64 {
        self.raw_pointer(i) as u64
    }

    /// Raw little-endian tokens of sequence `i` (`i < len()`).
    #[inline]
    pub fn bytes(&self, i: u64) -> &[u8] {
        let start = self.pointer(i) as usize;
        let end = start + self.size(i) as usize * self.dtype.size();
        match &self.bin {
            Some(m) => &m[start..end],
            None => &[],
        }
    }

    /// Raw bytes of sequences `first..=last` (contiguous in `.bin`).
    pub fn bytes_range(&self, first: u64, last: u64) -> &[u8] {
        let start = self.pointer(first) as usize;
        let end = self.pointer(last) as usize + self.size(last) as usize * self.dtype.size();
        match &self.bin {
            Some(m) => &m[start..end],
            None => &[],
        }
    }
}
