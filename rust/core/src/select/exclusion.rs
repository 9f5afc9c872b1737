//! Excluded ids: read once, ascending and unique, and the runs of ids between them.

use crate::error::{Error, Result};
use crate::npy::{DType, Npy};
use std::path::Path;

/// Excluded ids, ascending and unique: the file itself when it already is, else a copy.
pub(super) enum Exclude {
    None,
    Mapped(Npy),
    Owned(Vec<u64>),
}

impl Exclude {
    pub(super) fn open(path: &Path, n: u64) -> Result<Exclude> {
        let npy = Npy::open(path)?;
        let bad = |id: i128| {
            Error::invalid(format!(
                "{}: excluded id {id} is out of range for {n} instances",
                path.display()
            ))
        };
        let ids: Vec<u64> = match npy.dtype() {
            DType::U64 => {
                let v = npy.view::<u64>()?;
                if let Some(&m) = v.iter().max() {
                    if m >= n {
                        return Err(bad(m as i128));
                    }
                }
                if v.windows(2).all(|w| w[0] < w[1]) {
                    return Ok(Exclude::Mapped(npy));
                }
                v.to_vec()
            }
            DType::I64 => widen(npy.view::<i64>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U32 => widen(npy.view::<u32>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I32 => widen(npy.view::<i32>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U16 => widen(npy.view::<u16>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I16 => widen(npy.view::<i16>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U8 => widen(npy.view::<u8>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I8 => widen(npy.view::<i8>()?.iter().map(|&x| x as i128), n, bad)?,
            d @ (DType::F32 | DType::F64) => {
                return Err(Error::format(
                    path,
                    "dtype",
                    format!(
                        "exclude ids must be integers (uint8, uint16, uint32, uint64, int8, int16, \
                         int32 or int64), found {}",
                        d.name()
                    ),
                ))
            }
        };
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        Ok(Exclude::Owned(ids))
    }

    pub(super) fn ids(&self) -> &[u64] {
        match self {
            Exclude::None => &[],
            Exclude::Mapped(n) => n.view::<u64>().unwrap_or(&[]),
            Exclude::Owned(v) => v,
        }
    }
}

pub(super) fn widen(
    it: impl Iterator<Item = i128>,
    n: u64,
    bad: impl Fn(i128) -> Error,
) -> Result<Vec<u64>> {
    it.map(|x| {
        if x < 0 || x >= n as i128 {
            Err(bad(x))
        } else {
            Ok(x as u64)
        }
    })
    .collect()
}

/// The runs of ids of `[start, end)` between the excluded ids `ex` (ascending, inside the
/// range), as offsets from `start`.
pub(super) fn runs(start: u64, end: u64, ex: &[u64]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut from = 0usize;
    ex.iter()
        .map(move |&x| (x - start) as usize)
        .chain(std::iter::once((end - start) as usize))
        .filter_map(move |x| {
            let run = (from, x);
            from = x + 1;
            (run.0 < run.1).then_some(run)
        })
}
