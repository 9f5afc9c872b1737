//! `selection.json`'s tie to its dataset: what a selection records of the dataset it was
//! made for, the one reader every consumer (build, `TokenDataset.select`, train) checks a
//! selection through, and the writer for selections given as ids (pipeline slices).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::SelectInputs;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{write_dir_atomically, write_file_atomically};
use crate::npy::{write_npy, Npy};
use crate::output::check_spares_inputs;
use crate::scores::{ScoreRun, ScoreSource};
use crate::shards::Dataset;

/// The dataset a selection was made for (`selection.json` `dataset`).
#[derive(Debug, Clone, Serialize)]
pub struct DatasetBinding {
    pub num_instances: u64,
    /// The dataset fingerprint, where known (from `--data` or the score runs' manifests).
    pub fingerprint: Option<String>,
    /// The dataset as given to `--data`, or as the score run recorded it.
    pub path: Option<Value>,
}

/// What `--data` tells a selection about its dataset.
#[derive(Debug, Clone)]
pub struct DatasetRef {
    pub fingerprint: String,
    pub path: Value,
}

impl DatasetRef {
    pub fn of(data: &Dataset) -> Result<DatasetRef> {
        Ok(DatasetRef {
            fingerprint: data.fingerprint()?,
            path: given_path(data),
        })
    }
}

/// The dataset as it was opened: one path as a string, several as a list.
pub fn given_path(data: &Dataset) -> Value {
    let paths: Vec<Value> = data
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned().into())
        .collect();
    match <[Value; 1]>::try_from(paths) {
        Ok([one]) => one,
        Err(many) => many.into(),
    }
}

/// `xxh3c` of `xxh3c:...`: fingerprints of different schemes cannot be compared.
fn scheme(fp: &str) -> &str {
    fp.split_once(':').map_or(fp, |(s, _)| s)
}

/// The binding a new selection records; refuses inputs made for different datasets.
pub(crate) fn binding(inputs: &SelectInputs, n: u64) -> Result<DatasetBinding> {
    let mut known: Vec<(String, String, Option<Value>)> = Vec::new();
    if let Some(d) = &inputs.dataset {
        known.push(("--data".into(), d.fingerprint.clone(), Some(d.path.clone())));
    }
    for (what, src) in [
        ("teacher", &inputs.teacher),
        ("reference", &inputs.reference),
    ] {
        if let Some(ScoreSource::Run(run)) = src {
            let ds = run.manifest().get("dataset");
            if let Some(fp) = ds
                .and_then(|d| d.get("fingerprint"))
                .and_then(Value::as_str)
            {
                let path = ds.and_then(|d| d.get("path")).cloned();
                known.push((
                    format!("the {what} run {}", run.dir().display()),
                    fp.to_string(),
                    path,
                ));
            }
        }
    }
    for (i, a) in known.iter().enumerate() {
        for b in &known[i + 1..] {
            if scheme(&a.1) == scheme(&b.1) && a.1 != b.1 {
                return Err(Error::invalid(format!(
                    "{} and {} are of different datasets (fingerprints {} and {})",
                    a.0, b.0, a.1, b.1
                )));
            }
        }
    }
    same_scored_positions(inputs)?;
    let first = known.into_iter().next();
    Ok(DatasetBinding {
        num_instances: n,
        fingerprint: first.as_ref().map(|k| k.1.clone()),
        path: first.and_then(|k| k.2),
    })
}

/// Refuse two runs that left out different input ids from scoring (`settings.ignore_id`,
/// a number or null): their means are over different positions, so their difference is
/// not one of models. Runs that do not record it (written by other tools) pass.
fn same_scored_positions(inputs: &SelectInputs) -> Result<()> {
    let (Some(ScoreSource::Run(t)), Some(ScoreSource::Run(r))) =
        (&inputs.teacher, &inputs.reference)
    else {
        return Ok(());
    };
    let id = |run: &ScoreRun| run.manifest().get("settings")?.get("ignore_id").cloned();
    match (id(t), id(r)) {
        (Some(a), Some(b)) if a != b => Err(Error::invalid(format!(
            "the teacher run {} left out input id {a} from scoring and the reference run {}              id {b}: their mean NLLs are over different positions; score both with the same              --ignore-id",
            t.dir().display(),
            r.dir().display()
        ))),
        _ => Ok(()),
    }
}

/// The selected ids, checked: strictly ascending and inside the dataset.
fn read_ids(path: &Path, n: u64) -> Result<Vec<u64>> {
    let npy = Npy::open(path)?;
    let ids = npy.view::<u64>()?;
    if let Some(p) = ids.windows(2).position(|w| w[0] >= w[1]) {
        return Err(Error::format(
            path,
            "ids",
            format!(
                "not strictly ascending at position {}: {} then {}",
                p + 1,
                ids[p],
                ids[p + 1]
            ),
        ));
    }
    if let Some(&last) = ids.last() {
        if last >= n {
            return Err(Error::format(
                path,
                "ids",
                format!("id {last} is out of range for a dataset of {n} instances"),
            ));
        }
    }
    Ok(ids.to_vec())
}

/// The ids of the selection in `dir`, after checking `ids.npy` (ascending, unique, inside
/// `data`), `selection.json` (present, ours, its counts those of `ids.npy`) and its
/// binding (made for a dataset of `data`'s size and, where both are known in one scheme,
/// `data`'s fingerprint).
pub fn read_selection(dir: &Path, data: &Dataset) -> Result<Vec<u64>> {
    let jpath = dir.join("selection.json");
    let text = std::fs::read(&jpath).at(&jpath)?;
    let v: Value =
        serde_json::from_slice(&text).map_err(|e| Error::format(&jpath, "JSON", e.to_string()))?;
    if v.get("format").and_then(Value::as_str) != Some("miniplm.selection") {
        return Err(Error::format(
            &jpath,
            "format",
            "not \"miniplm.selection\"; not a selection",
        ));
    }
    let count = |key: &str| -> Result<Option<u64>> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::format(&jpath, key, format!("not a count: {x}"))),
        }
    };
    let bound = v.get("dataset").filter(|d| !d.is_null());
    let recorded_n = match bound.and_then(|d| d.get("num_instances")) {
        Some(x) => Some(x.as_u64().ok_or_else(|| {
            Error::format(&jpath, "dataset.num_instances", format!("not a count: {x}"))
        })?),
        None => count("num_instances")?,
    };
    if let Some(rn) = recorded_n {
        if rn != data.len() {
            return Err(Error::invalid(format!(
                "{}: the selection was made for a dataset of {rn} instances, but {} has {}",
                dir.display(),
                data.describe(),
                data.len()
            )));
        }
    }
    let ids_path = dir.join("ids.npy");
    let ids = read_ids(&ids_path, data.len())?;
    if let Some(k) = count("num_selected")? {
        if k != ids.len() as u64 {
            return Err(Error::format(
                &jpath,
                "num_selected",
                format!("{k}, but {} holds {} ids", ids_path.display(), ids.len()),
            ));
        }
    }
    if let Some(fp) = bound
        .and_then(|d| d.get("fingerprint"))
        .and_then(Value::as_str)
    {
        let have = data.fingerprint()?;
        if scheme(fp) == scheme(&have) && fp != have {
            return Err(Error::invalid(format!(
                "{}: the selection was made for another dataset (fingerprint {fp}) than {} \
                 ({have}), though of the same size",
                dir.display(),
                data.describe()
            )));
        }
    }
    Ok(ids)
}

/// `selection.json` of a selection given as ids rather than selected (`mode: "given"`).
#[derive(Serialize)]
struct GivenSelection<'a> {
    format: &'static str,
    version: u32,
    mode: &'static str,
    what: &'a str,
    num_instances: u64,
    num_selected: u64,
    dataset: DatasetBinding,
}

/// Write `ids` (sorted and deduplicated here) of `data` as a selection directory `out`.
pub fn write_given_selection(
    out: &Path,
    ids: &[u64],
    data: &Dataset,
    what: &str,
    overwrite: bool,
) -> Result<PathBuf> {
    // Never replace (part of) the dataset the ids are of: `overwrite` is for old selections.
    let inputs: Vec<&Path> = data
        .paths()
        .iter()
        .map(PathBuf::as_path)
        .chain(data.files())
        .collect();
    check_spares_inputs(out, &inputs)?;
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if let Some(&last) = ids.last() {
        if last >= data.len() {
            return Err(Error::invalid(format!(
                "id {last} is out of range for {} of {} instances",
                data.describe(),
                data.len()
            )));
        }
    }
    let d = DatasetRef::of(data)?;
    let rec = GivenSelection {
        format: "miniplm.selection",
        version: 1,
        mode: "given",
        what,
        num_instances: data.len(),
        num_selected: ids.len() as u64,
        dataset: DatasetBinding {
            num_instances: data.len(),
            fingerprint: Some(d.fingerprint),
            path: Some(d.path),
        },
    };
    let json = serde_json::to_vec_pretty(&rec)
        .map_err(|e| Error::internal(format!("cannot serialize selection.json: {e}")))?;
    write_dir_atomically(out, overwrite, |tmp| {
        write_npy(tmp.join("ids.npy"), &ids)?;
        write_file_atomically(&tmp.join("selection.json"), &json)
    })?;
    Ok(out.to_path_buf())
}
