//! Per-instance teacher/reference scores: score runs and plain `.npy` arrays
//! (layout in docs/FORMATS.md).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::quick_fingerprint;
use crate::npy::{write_npy, Floats, Npy};

struct Part {
    start: u64,
    end: u64,
    nll_sum: Npy,
    n_scored: Npy,
}

/// A validated score run: parts tiling `[0, len)`, all complete.
pub struct ScoreRun {
    dir: PathBuf,
    manifest: Value,
    manifest_bytes: Vec<u8>,
    len: u64,
    parts: Vec<Part>,
}

/// `nll_sum` in its stored width.
pub enum ScoreValues {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A manifest value as given: `T` when it has `T`'s shape, else the value itself, kept so
/// that the error names the field and shows what was there (serde's own error names
/// neither).
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Checked<T> {
    Ok(T),
    Bad(Value),
    #[default]
    #[serde(skip)]
    Missing,
}

const UINT: &str = "a non-negative integer";

impl<T> Checked<T> {
    /// The value, or a format error of `field` of `path`: missing, or not `expected`.
    fn get(self, path: &Path, field: &str, expected: &str) -> Result<T> {
        match self {
            Checked::Ok(v) => Ok(v),
            Checked::Bad(v) => Err(Error::format(
                path,
                field,
                format!("expected {expected}, got {v}"),
            )),
            Checked::Missing => Err(Error::format(path, field, "missing")),
        }
    }
}

/// The fields of `manifest.json` that opening a run checks (docs/FORMATS.md, "Score
/// run"); the rest (model, dataset, ...) is read from `ScoreRun::manifest`.
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    format: Checked<String>,
    #[serde(default)]
    version: Checked<u64>,
    #[serde(default)]
    num_instances: Checked<u64>,
    #[serde(default)]
    parts: Checked<Vec<Checked<PartEntry>>>,
}

#[derive(Deserialize)]
struct PartEntry {
    #[serde(default)]
    name: Checked<String>,
    #[serde(default)]
    start: Checked<u64>,
    #[serde(default)]
    end: Checked<u64>,
    #[serde(default)]
    complete: Checked<bool>,
}

impl ScoreRun {
    pub fn open(dir: &Path) -> Result<ScoreRun> {
        let mpath = dir.join("manifest.json");
        let manifest_bytes = std::fs::read(&mpath).at(&mpath)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::format(&mpath, "json", e.to_string()))?;
        if !manifest.is_object() {
            return Err(Error::format(&mpath, "json", "expected an object"));
        }
        let man = Manifest::deserialize(&manifest)
            .map_err(|e| Error::internal(format!("{}: {e}", mpath.display())))?;
        const FORMAT: &str = "miniplm.score_run";
        let got = match man.format {
            Checked::Ok(f) if f == FORMAT => None,
            Checked::Ok(f) => Some(Value::from(f)),
            Checked::Bad(v) => Some(v),
            Checked::Missing => return Err(Error::format(&mpath, "format", "missing")),
        };
        if let Some(got) = got {
            return Err(Error::format(
                &mpath,
                "format",
                format!("{got}, expected \"{FORMAT}\""),
            ));
        }
        let version = man.version.get(&mpath, "version", UINT)?;
        if version != 1 {
            return Err(Error::format(
                &mpath,
                "version",
                format!("{version}, only version 1 exists"),
            ));
        }
        let len = man.num_instances.get(&mpath, "num_instances", UINT)?;
        let list = match man.parts {
            Checked::Ok(list) => list,
            Checked::Bad(_) => return Err(Error::format(&mpath, "parts", "expected a list")),
            Checked::Missing => return Err(Error::format(&mpath, "parts", "missing")),
        };
        let mut specs = Vec::with_capacity(list.len());
        for (i, p) in list.into_iter().enumerate() {
            let what = |k: &str| format!("parts[{i}].{k}");
            // A part that is not an object has no name either.
            let no_name = || Error::format(&mpath, what("name"), "missing");
            let Checked::Ok(p) = p else {
                return Err(no_name());
            };
            let Checked::Ok(name) = p.name else {
                return Err(no_name());
            };
            // An absent bound is reported as null, the way a null one is.
            let bound = |c: Checked<u64>, k: &str| {
                match c {
                    Checked::Missing => Checked::Bad(Value::Null),
                    c => c,
                }
                .get(&mpath, &what(k), UINT)
            };
            let start = bound(p.start, "start")?;
            let end = bound(p.end, "end")?;
            if !matches!(p.complete, Checked::Ok(true)) {
                return Err(Error::format(
                    &mpath,
                    what("complete"),
                    format!("part {name} is not complete: the run is incomplete (still being scored, or interrupted; resume the scoring job)"),
                ));
            }
            if end < start || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(Error::format(
                    &mpath,
                    what("name"),
                    format!("bad part {name:?} [{start}, {end})"),
                ));
            }
            specs.push((start, end, name));
        }
        specs.sort();
        let mut at = 0u64;
        for (start, end, name) in &specs {
            if *start != at {
                let how = if *start < at {
                    "overlaps the previous part"
                } else {
                    "leaves a gap"
                };
                return Err(Error::format(
                    &mpath,
                    "parts",
                    format!("part {name} starts at {start} and {how} (expected {at})"),
                ));
            }
            at = *end;
        }
        if at != len {
            return Err(Error::format(
                &mpath,
                "parts",
                format!("parts cover [0, {at}) but num_instances is {len}"),
            ));
        }
        let parts = specs
            .into_iter()
            .map(|(start, end, name)| open_part(dir, &mpath, &name, start, end))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScoreRun {
            dir: dir.to_path_buf(),
            manifest,
            manifest_bytes,
            len,
            parts,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Value {
        &self.manifest
    }

    /// Cheap: the manifest plus each part file's quick fingerprint.
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.manifest_bytes);
        for p in &self.parts {
            h.update(quick_fingerprint(p.nll_sum.path())?.as_bytes());
            h.update(quick_fingerprint(p.n_scored.path())?.as_bytes());
        }
        Ok(format!("xxh3:{:016x}", h.digest()))
    }

    /// `out[j]` = mean NLL of instance `start + j` (NaN where nothing was scored).
    pub fn mean_nll_into(&self, start: u64, out: &mut [f64]) -> Result<()> {
        let end = start
            .checked_add(out.len() as u64)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "scores [{start}, {start} + {}) past {} instances",
                    out.len(),
                    self.len
                ))
            })?;
        let mut k = self.parts.partition_point(|p| p.end <= start);
        let mut at = start;
        let mut o = 0usize;
        while at < end {
            let p = &self.parts[k];
            let a = (at - p.start) as usize;
            let b = (end.min(p.end) - p.start) as usize;
            let counts = &p.n_scored.view::<u32>()?[a..b];
            let dst = &mut out[o..o + (b - a)];
            match p.nll_sum.floats()? {
                Floats::F32(v) => mean_into(&v[a..b], counts, dst),
                Floats::F64(v) => mean_into(&v[a..b], counts, dst),
            }
            o += b - a;
            at = p.start + b as u64;
            k += 1;
        }
        Ok(())
    }

    /// Whole arrays, concatenated over parts (for `miniplm.load_scores`).
    pub fn load(&self) -> Result<(ScoreValues, Vec<u32>)> {
        let wide = self
            .parts
            .iter()
            .any(|p| matches!(p.nll_sum.floats(), Ok(Floats::F64(_))));
        let mut counts = Vec::with_capacity(self.len as usize);
        let mut f32s = Vec::new();
        let mut f64s = Vec::new();
        for p in &self.parts {
            counts.extend_from_slice(p.n_scored.view::<u32>()?);
            match (p.nll_sum.floats()?, wide) {
                (Floats::F64(v), _) => f64s.extend_from_slice(v),
                (Floats::F32(v), true) => f64s.extend(v.iter().map(|&x| x as f64)),
                (Floats::F32(v), false) => f32s.extend_from_slice(v),
            }
        }
        Ok((
            if wide {
                ScoreValues::F64(f64s)
            } else {
                ScoreValues::F32(f32s)
            },
            counts,
        ))
    }
}

#[inline]
fn mean_into<F: Copy + Into<f64>>(sums: &[F], counts: &[u32], out: &mut [f64]) {
    for ((o, &s), &c) in out.iter_mut().zip(sums).zip(counts) {
        *o = if c == 0 {
            f64::NAN
        } else {
            s.into() / c as f64
        };
    }
}

/// A part the manifest `mpath` lists but the run lacks is a format error of the
/// manifest (also a name that cannot be a directory here: a file, a NUL byte, too long).
fn open_part(dir: &Path, mpath: &Path, name: &str, start: u64, end: u64) -> Result<Part> {
    let part_dir = dir.join(name);
    let listed = |what: String| {
        Error::format(
            mpath,
            "parts",
            format!("part {name:?} is listed but {what}"),
        )
    };
    if !part_dir.is_dir() {
        return Err(listed(format!("{} is not a directory", part_dir.display())));
    }
    let open = |file: &str| {
        Npy::open(part_dir.join(file)).map_err(|e| match e {
            Error::Io { path, source } if source.kind() == ErrorKind::NotFound => {
                listed(format!("{} is missing", path.display()))
            }
            e => e,
        })
    };
    let nll_sum = open("nll_sum.npy")?;
    let n_scored = open("n_scored.npy")?;
    nll_sum.floats()?;
    n_scored.view::<u32>()?;
    for a in [&nll_sum, &n_scored] {
        if a.len() as u64 != end - start {
            return Err(Error::format(
                a.path(),
                "shape",
                format!(
                    "{} values, but the manifest gives the part [{start}, {end}) = {} instances",
                    a.len(),
                    end - start
                ),
            ));
        }
    }
    Ok(Part {
        start,
        end,
        nll_sum,
        n_scored,
    })
}

/// Where per-instance mean NLLs come from.
pub enum ScoreSource {
    Run(ScoreRun),
    /// A float32/float64 array of per-instance mean NLL (NaN = no score).
    MeanNll(Npy),
}

impl ScoreSource {
    pub fn open_run(dir: &Path) -> Result<ScoreSource> {
        if dir.is_file() {
            return Err(Error::invalid(format!(
                "{}: is a file, not a score run directory: pass a .npy of mean NLLs as \
                 --teacher-nll / --reference-nll (teacher_nll= / reference_nll=) instead",
                dir.display()
            )));
        }
        ScoreRun::open(dir).map(ScoreSource::Run)
    }

    pub fn open_npy(path: &Path) -> Result<ScoreSource> {
        if path.join("manifest.json").is_file() {
            return Err(Error::invalid(format!(
                "{}: is a score run directory, not a .npy file of mean NLLs: pass it as \
                 --teacher / --reference (teacher= / reference=) instead",
                path.display()
            )));
        }
        let a = Npy::open(path)?;
        a.floats()?;
        Ok(ScoreSource::MeanNll(a))
    }

    pub fn len(&self) -> u64 {
        match self {
            ScoreSource::Run(r) => r.len(),
            ScoreSource::MeanNll(a) => a.len() as u64,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn path(&self) -> &Path {
        match self {
            ScoreSource::Run(r) => r.dir(),
            ScoreSource::MeanNll(a) => a.path(),
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            ScoreSource::Run(_) => "run",
            ScoreSource::MeanNll(_) => "npy",
        }
    }
    pub fn fingerprint(&self) -> Result<String> {
        match self {
            ScoreSource::Run(r) => r.fingerprint(),
            ScoreSource::MeanNll(a) => quick_fingerprint(a.path()),
        }
    }

    /// Mean NLLs of instances `[start, start + len)`: borrowed straight from a float64
    /// array, else computed into `scratch`.
    pub fn mean_nll_chunk<'a>(
        &'a self,
        start: u64,
        len: usize,
        scratch: &'a mut Vec<f64>,
    ) -> Result<&'a [f64]> {
        if let ScoreSource::MeanNll(a) = self {
            if let Floats::F64(v) = a.floats()? {
                let (s, e) = (start as usize, start as usize + len);
                return v.get(s..e).ok_or_else(|| {
                    Error::invalid(format!("scores [{s}, {e}) past {} instances", v.len()))
                });
            }
        }
        scratch.resize(len, 0.0);
        self.mean_nll_into(start, scratch)?;
        Ok(scratch)
    }

    /// `out[j]` = mean NLL of instance `start + j` (NaN = no score).
    #[inline]
    pub fn mean_nll_into(&self, start: u64, out: &mut [f64]) -> Result<()> {
        match self {
            ScoreSource::Run(r) => r.mean_nll_into(start, out),
            ScoreSource::MeanNll(a) => {
                let s = start as usize;
                let e = s.saturating_add(out.len());
                if start > usize::MAX as u64 || e > a.len() {
                    return Err(Error::invalid(format!(
                        "scores [{s}, {e}) past {} instances",
                        a.len()
                    )));
                }
                match a.floats()? {
                    Floats::F32(v) => out
                        .iter_mut()
                        .zip(&v[s..e])
                        .for_each(|(o, &x)| *o = x as f64),
                    Floats::F64(v) => out.copy_from_slice(&v[s..e]),
                }
                Ok(())
            }
        }
    }
}

/// Write a complete run of float64 `nll_sum` in parts of `part_len` (tests, benches).
pub fn write_score_run(
    dir: &Path,
    nll_sum: &[f64],
    n_scored: &[u32],
    part_len: usize,
) -> Result<()> {
    if nll_sum.len() != n_scored.len() || part_len == 0 {
        return Err(Error::invalid(
            "write_score_run: arrays of one length and part_len > 0",
        ));
    }
    std::fs::create_dir_all(dir).at(dir)?;
    let mut parts = Vec::new();
    for (k, start) in (0..nll_sum.len()).step_by(part_len).enumerate() {
        let end = (start + part_len).min(nll_sum.len());
        let name = format!("part-{k:06}");
        std::fs::create_dir_all(dir.join(&name)).at(dir)?;
        write_npy(dir.join(&name).join("nll_sum.npy"), &nll_sum[start..end])?;
        write_npy(dir.join(&name).join("n_scored.npy"), &n_scored[start..end])?;
        parts.push(serde_json::json!({"name": name, "start": start, "end": end, "complete": true}));
    }
    let man = serde_json::json!({
        "format": "miniplm.score_run", "version": 1, "num_instances": nll_sum.len(),
        "normalization": "mean_nll_per_scored_token", "parts": parts,
    });
    let path = dir.join("manifest.json");
    std::fs::write(&path, man.to_string()).at(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_means_cross_parts_and_errors_name_files() {
        let d = tempfile::tempdir().unwrap();
        let sums: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let counts: Vec<u32> = (0..10).map(|i| i % 3).collect();
        write_score_run(d.path(), &sums, &counts, 4).unwrap();
        let src = ScoreSource::open_run(d.path()).unwrap();
        let mut out = vec![0.0; 7];
        src.mean_nll_into(2, &mut out).unwrap();
        for (j, &v) in out.iter().enumerate() {
            let i = j + 2;
            if counts[i] == 0 {
                assert!(v.is_nan());
            } else {
                assert_eq!(v, sums[i] / counts[i] as f64);
            }
        }
        // A range past the end is refused, not wrapped around (u64 overflow) or cut.
        for (start, len) in [(8u64, 3usize), (11, 0), (u64::MAX, 2)] {
            let mut out = vec![0.0; len];
            let e = src.mean_nll_into(start, &mut out).unwrap_err().to_string();
            assert!(e.contains("past 10 instances"), "{e}");
        }
        let path = d.path().join("manifest.json");
        let mut man: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        man["parts"][1]["start"] = 3.into();
        std::fs::write(&path, man.to_string()).unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("manifest.json") && e.contains("overlaps"), "{e}");
        man["parts"][1]["start"] = 4.into();
        man["parts"][2]["complete"] = false.into();
        std::fs::write(&path, man.to_string()).unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("incomplete"), "{e}");
        man["parts"][2]["complete"] = true.into();
        std::fs::write(&path, man.to_string()).unwrap();
        write_npy(d.path().join("part-000001/n_scored.npy"), &[1u32; 3]).unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert!(
            e.contains("part-000001") && e.contains("n_scored.npy"),
            "{e}"
        );
        // A listed part or array that is not there: a format error of the manifest.
        std::fs::remove_file(d.path().join("part-000001/n_scored.npy")).unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap();
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("manifest.json") && e.contains("n_scored.npy is missing"),
            "{e}"
        );
        std::fs::remove_dir_all(d.path().join("part-000001")).unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("part-000001 is not a directory"), "{e}");
    }

    /// Every field check of manifest.json: the message names the file and the field.
    #[test]
    fn manifest_errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        write_score_run(d.path(), &[1.0; 6], &[1; 6], 4).unwrap();
        let path = d.path().join("manifest.json");
        let good: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let fails = |edit: &dyn Fn(&mut Value), want: &str| {
            let mut man = good.clone();
            edit(&mut man);
            std::fs::write(&path, man.to_string()).unwrap();
            let e = ScoreRun::open(d.path()).err().unwrap();
            assert!(matches!(e, Error::Format { .. }), "{e:?}");
            assert_eq!(e.to_string(), format!("{}: bad {want}", path.display()));
        };
        let drop =
            |k: &'static str| move |m: &mut Value| drop(m.as_object_mut().unwrap().remove(k));
        let set = |k: &'static str, v: Value| move |m: &mut Value| m[k] = v.clone();
        fails(&drop("format"), "format: missing");
        fails(
            &set("format", "other".into()),
            r#"format: "other", expected "miniplm.score_run""#,
        );
        fails(
            &set("format", 3.into()),
            r#"format: 3, expected "miniplm.score_run""#,
        );
        fails(&drop("version"), "version: missing");
        fails(
            &set("version", "1".into()),
            r#"version: expected a non-negative integer, got "1""#,
        );
        fails(
            &set("version", 2.into()),
            "version: 2, only version 1 exists",
        );
        fails(
            &set("version", Value::Null),
            "version: expected a non-negative integer, got null",
        );
        fails(&drop("num_instances"), "num_instances: missing");
        fails(
            &set("num_instances", (-6).into()),
            "num_instances: expected a non-negative integer, got -6",
        );
        fails(
            &set("num_instances", 6.5.into()),
            "num_instances: expected a non-negative integer, got 6.5",
        );
        fails(&drop("parts"), "parts: missing");
        fails(&set("parts", "p".into()), "parts: expected a list");
        let part = |k: &'static str, v: Option<Value>| {
            move |m: &mut Value| {
                let p = m["parts"][1].as_object_mut().unwrap();
                match &v {
                    Some(v) => p.insert(k.into(), v.clone()),
                    None => p.remove(k),
                };
            }
        };
        fails(&part("name", None), "parts[1].name: missing");
        fails(&|m| m["parts"][1] = 5.into(), "parts[1].name: missing");
        fails(&part("name", Some(7.into())), "parts[1].name: missing");
        fails(
            &part("start", None),
            "parts[1].start: expected a non-negative integer, got null",
        );
        fails(
            &part("end", Some("6".into())),
            r#"parts[1].end: expected a non-negative integer, got "6""#,
        );
        let incomplete = "part part-000001 is not complete: the run is incomplete (still being \
            scored, or interrupted; resume the scoring job)";
        fails(
            &part("complete", None),
            &format!("parts[1].complete: {incomplete}"),
        );
        fails(
            &part("complete", Some("true".into())),
            &format!("parts[1].complete: {incomplete}"),
        );
        fails(
            &part("start", Some(7.into())),
            r#"parts[1].name: bad part "part-000001" [7, 6)"#,
        );
        fails(
            &part("name", Some("../x".into())),
            r#"parts[1].name: bad part "../x" [4, 6)"#,
        );
        fails(
            &set("num_instances", 7.into()),
            "parts: parts cover [0, 6) but num_instances is 7",
        );
        std::fs::write(&path, "[1]").unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert_eq!(
            e,
            format!("{}: bad json: expected an object", path.display())
        );
        std::fs::write(&path, "{not json").unwrap();
        let e = ScoreRun::open(d.path()).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("{}: bad json: ", path.display())),
            "{e}"
        );
        std::fs::write(&path, good.to_string()).unwrap();
        assert_eq!(ScoreRun::open(d.path()).unwrap().len(), 6);
    }
}
