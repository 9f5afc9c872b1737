//! One-dimensional `.npy` arrays: memory-mapped reading and streaming writing, so that
//! every array the core reads or writes is also readable by `np.load(path, mmap_mode="r")`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    U16,
    I16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DType {
    pub fn descr(self) -> &'static str {
        match self {
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::U16 => "<u2",
            DType::I16 => "<i2",
            DType::I32 => "<i4",
            DType::U32 => "<u4",
            DType::I64 => "<i8",
            DType::U64 => "<u8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    fn parse(descr: &str) -> Option<DType> {
        // '=' and '|' mean native / not applicable; the core only runs on little-endian hosts.
        let (order, code) = descr.split_at_checked(1)?;
        if !matches!(order, "<" | "|" | "=") {
            return None;
        }
        Some(match code {
            "u1" => DType::U8,
            "i1" => DType::I8,
            "u2" => DType::U16,
            "i2" => DType::I16,
            "i4" => DType::I32,
            "u4" => DType::U32,
            "i8" => DType::I64,
            "u8" => DType::U64,
            "f4" => DType::F32,
            "f8" => DType::F64,
            _ => return None,
        })
    }
}

/// Rust element types that have an `.npy` dtype.
pub trait Element: bytemuck::Pod + Send + Sync {
    const DTYPE: DType;
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
impl Element for i8 {
    const DTYPE: DType = DType::I8;
}
impl Element for u16 {
    const DTYPE: DType = DType::U16;
}
impl Element for i16 {
    const DTYPE: DType = DType::I16;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
}
impl Element for u64 {
    const DTYPE: DType = DType::U64;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}

/// A memory-mapped 1-D `.npy` file.
pub struct Npy {
    path: PathBuf,
    map: Mmap,
    dtype: DType,
    len: usize,
    offset: usize,
}

/// A float array of either width, as score inputs come in both.
#[derive(Clone, Copy)]
pub enum Floats<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Floats<'_> {
    pub fn len(&self) -> usize {
        match self {
            Floats::F32(v) => v.len(),
            Floats::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Floats::F32(v) => v[i] as f64,
            Floats::F64(v) => v[i],
        }
    }
}

fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

impl Npy {
    pub fn open(path: impl AsRef<Path>) -> Result<Npy> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).at(&path)?;
        if file.metadata().at(&path)?.is_dir() {
            // mmap of a directory fails with a bare "No such device".
            return Err(Error::invalid(format!(
                "{}: is a directory, not a .npy file",
                path.display()
            )));
        }
        // SAFETY: the map is read-only and private to this process. Like every reader of
        // memory-mapped files we assume nobody truncates or rewrites the file while it is
        // open; outputs of this crate are only ever replaced by rename, never in place.
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let bad = |field: &str, msg: String| Error::format(&path, field, msg);
        if map.len() < 10 || &map[..6] != b"\x93NUMPY" {
            return Err(bad(
                "magic",
                "not a .npy file (no \\x93NUMPY header)".into(),
            ));
        }
        let (hlen, start) = match map[6] {
            1 => (u16::from_le_bytes([map[8], map[9]]) as usize, 10),
            2 | 3 if map.len() >= 12 => (
                u32::from_le_bytes([map[8], map[9], map[10], map[11]]) as usize,
                12,
            ),
            2 | 3 => {
                return Err(bad(
                    "header",
                    format!(
                        "truncated: {} bytes, a version 2 header needs 12",
                        map.len()
                    ),
                ))
            }
            v => return Err(bad("version", format!("unsupported .npy version {v}"))),
        };
        let offset = start + hlen;
        if offset > map.len() {
            return Err(bad(
                "header",
                format!("header length {hlen} runs past the end of the file"),
            ));
        }
        let header = std::str::from_utf8(&map[start..offset])
            .map_err(|_| bad("header", "not UTF-8".into()))?;
        let descr = header_field(header, "descr")
            .and_then(|r| r.strip_prefix('\'')?.split('\'').next())
            .ok_or_else(|| bad("descr", format!("no dtype in header {header:?}")))?;
        let dtype = DType::parse(descr).ok_or_else(|| {
            bad(
                "descr",
                format!("dtype {descr:?} is not supported (little-endian u1/i1/u2/i2/u4/i4/u8/i8/f4/f8)"),
            )
        })?;
        let shape = header_field(header, "shape")
            .and_then(|r| r.strip_prefix('(')?.split(')').next())
            .ok_or_else(|| bad("shape", format!("no shape in header {header:?}")))?;
        let dims: Vec<&str> = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if dims.len() != 1 {
            return Err(bad(
                "shape",
                format!("expected a 1-D array, found shape ({shape})"),
            ));
        }
        let len: usize = dims[0]
            .parse()
            .map_err(|_| bad("shape", format!("bad length {:?}", dims[0])))?;
        let need = len
            .checked_mul(dtype.size())
            .and_then(|b| b.checked_add(offset))
            .ok_or_else(|| bad("shape", format!("length {len} overflows")))?;
        if need > map.len() {
            return Err(bad(
                "data",
                format!(
                    "truncated: shape ({len},) of {} needs {need} bytes, file has {}",
                    dtype.name(),
                    map.len()
                ),
            ));
        }
        Ok(Npy {
            path,
            map,
            dtype,
            len,
            offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len * self.dtype.size()]
    }

    /// The data as `&[T]`; an error if the dtype is not `T`'s.
    pub fn view<T: Element>(&self) -> Result<&[T]> {
        if self.dtype != T::DTYPE {
            return Err(Error::format(
                &self.path,
                "dtype",
                format!("expected {}, found {}", T::DTYPE.name(), self.dtype.name()),
            ));
        }
        bytemuck::try_cast_slice(self.bytes()).map_err(|e| {
            Error::format(
                &self.path,
                "data",
                format!("cannot view as {}: {e}", T::DTYPE.name()),
            )
        })
    }

    /// The data as float32 or float64; an error for any other dtype.
    pub fn floats(&self) -> Result<Floats<'_>> {
        match self.dtype {
            DType::F32 => Ok(Floats::F32(self.view()?)),
            DType::F64 => Ok(Floats::F64(self.view()?)),
            d => Err(Error::format(
                &self.path,
                "dtype",
                format!("expected float32 or float64, found {}", d.name()),
            )),
        }
    }
}

/// Fixed header size, so the final length can be patched in place after streaming.
const HEADER_LEN: usize = 128;

fn header(dtype: DType, len: u64) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({len},), }}",
        dtype.descr()
    );
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(HEADER_LEN - 1, b' ');
    h.push(b'\n');
    h
}

/// Streams a 1-D array of unknown final length into a `.npy` file.
pub struct NpyWriter<T: Element> {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
    _t: PhantomData<T>,
}

impl<T: Element> NpyWriter<T> {
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).at(&path)?;
        let mut out = BufWriter::with_capacity(1 << 22, file);
        out.write_all(&header(T::DTYPE, 0)).at(&path)?;
        Ok(NpyWriter {
            path,
            out,
            len: 0,
            _t: PhantomData,
        })
    }

    pub fn write(&mut self, values: &[T]) -> Result<()> {
        self.out
            .write_all(bytemuck::cast_slice(values))
            .at(&self.path)?;
        self.len += values.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Patch the length into the header and flush to disk.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        file.write_all(&header(T::DTYPE, self.len)).at(&path)?;
        file.sync_all().at(&path)?;
        Ok(self.len)
    }
}

/// Write a whole array at once.
pub fn write_npy<T: Element>(path: impl AsRef<Path>, values: &[T]) -> Result<()> {
    let mut w = NpyWriter::<T>::create(path)?;
    w.write(values)?;
    w.finish().map(|_| ())
}

/// Writes a 1-D array of known length into a `.npy` file in pieces placed by index, from
/// any number of threads at once (positional writes; no shared cursor).
pub struct NpyAtWriter<T: Element> {
    path: PathBuf,
    file: File,
    len: u64,
    #[cfg(not(unix))]
    lock: std::sync::Mutex<()>,
    _t: PhantomData<T>,
}

impl<T: Element> NpyAtWriter<T> {
    /// Create `path` with the header of a `len`-element array.
    pub fn create(path: impl AsRef<Path>, len: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::create(&path).at(&path)?;
        file.write_all(&header(T::DTYPE, len)).at(&path)?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let size = HEADER_LEN as u64 + len * std::mem::size_of::<T>() as u64;
            // Reserve the blocks up front: writes into allocated space skip the per-page
            // delayed-allocation work (about a third less CPU per byte on ext4). Only an
            // optimisation: a file system without fallocate just allocates as it writes.
            // SAFETY: a plain system call on a file descriptor that `file` owns and keeps
            // open for the duration of the call; no memory is passed.
            unsafe {
                libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t);
            }
        }
        Ok(NpyAtWriter {
            path,
            file,
            len,
            #[cfg(not(unix))]
            lock: std::sync::Mutex::new(()),
            _t: PhantomData,
        })
    }

    /// Write `values` as elements `at..at + values.len()`.
    pub fn write_at(&self, at: u64, values: &[T]) -> Result<()> {
        if at
            .checked_add(values.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(Error::invalid(format!(
                "{}: elements [{at}, +{}) past the array's {}",
                self.path.display(),
                values.len(),
                self.len
            )));
        }
        let pos = HEADER_LEN as u64 + at * std::mem::size_of::<T>() as u64;
        let bytes: &[u8] = bytemuck::cast_slice(values);
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(bytes, pos).at(&self.path)
        }
        #[cfg(not(unix))]
        {
            let _g = self
                .lock
                .lock()
                .map_err(|_| Error::internal("a writer thread panicked"))?;
            let mut f = &self.file;
            f.seek(SeekFrom::Start(pos)).at(&self.path)?;
            f.write_all(bytes).at(&self.path)
        }
    }

    /// Start writing what has been written so far to disk, without waiting for it (a
    /// background thread calls this while pieces are still being written, so that
    /// `finish`'s sync has little left to do). Only a hint: errors surface at `finish`.
    pub fn start_writeback(&self) {
        crate::fsutil::start_writeback(&self.file);
    }

    /// Check that every element was written (the file has its full size) and sync it to
    /// disk.
    pub fn finish(self) -> Result<u64> {
        let want = HEADER_LEN as u64 + self.len * std::mem::size_of::<T>() as u64;
        let got = self.file.metadata().at(&self.path)?.len();
        if got != want {
            return Err(Error::invalid(format!(
                "{}: {got} bytes written, expected {want}",
                self.path.display()
            )));
        }
        self.file.sync_all().at(&self.path)?;
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_header_is_aligned() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        write_npy(&p, &[1.5f64, -2.0, f64::NAN]).unwrap();
        let a = Npy::open(&p).unwrap();
        assert_eq!(a.len(), 3);
        let v = a.view::<f64>().unwrap();
        assert_eq!(v[..2], [1.5, -2.0]);
        assert!(v[2].is_nan());
        assert!(a.view::<u64>().is_err());
        assert_eq!(HEADER_LEN % 64, 0);
    }

    #[test]
    fn empty_and_truncated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.npy");
        write_npy::<u64>(&p, &[]).unwrap();
        assert_eq!(Npy::open(&p).unwrap().view::<u64>().unwrap().len(), 0);
        write_npy(&p, &[1u32, 2, 3]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = Npy::open(&p).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("e.npy"), "{e}");
        std::fs::write(&p, b"hello world").unwrap();
        assert!(Npy::open(&p).err().unwrap().to_string().contains("magic"));
        // Version 2 with its 4-byte header length cut off (was "unsupported version 2").
        std::fs::write(&p, b"\x93NUMPY\x02\x00\x10\x00").unwrap();
        let e = Npy::open(&p).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("e.npy"), "{e}");
    }

    #[test]
    fn small_integer_dtypes_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.npy");
        write_npy(&p, &[-3i8, 4]).unwrap();
        assert_eq!(Npy::open(&p).unwrap().view::<i8>().unwrap(), [-3, 4]);
        write_npy(&p, &[-300i16, 4]).unwrap();
        assert_eq!(Npy::open(&p).unwrap().view::<i16>().unwrap(), [-300, 4]);
        let e = Npy::open(d.path()).err().unwrap();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(
            e.to_string().contains("is a directory, not a .npy file"),
            "{e}"
        );
    }
}
