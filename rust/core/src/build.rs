//! Copy a selection of instances into new Megatron shards (the refined corpus D').

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::{quick_fingerprint, write_dir_atomically, write_file_atomically};
use crate::job::Job;
use crate::npy::{Npy, NpyWriter};
use crate::rng::shuffle;
use crate::shards::{Dataset, DatasetWriter, ShardSummary};

pub struct BuildOptions {
    /// Output shards are `<name>_0, <name>_1, ...`.
    pub name: String,
    /// Write in the order of a seeded permutation (`rng::shuffle`) instead of corpus order.
    pub shuffle_seed: Option<u64>,
    pub max_shard_bytes: Option<u64>,
    pub overwrite: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            name: "refined".into(),
            shuffle_seed: None,
            max_shard_bytes: None,
            overwrite: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub format: &'static str,
    pub version: u32,
    pub dataset: DataInput,
    pub selection: Input,
    pub shuffle_seed: Option<u64>,
    pub num_instances: u64,
    pub num_tokens: u64,
    pub num_bytes: u64,
    pub dtype: &'static str,
    pub shards: Vec<ShardSummary>,
    pub elapsed_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Input {
    pub path: PathBuf,
    pub fingerprint: String,
}

/// The source dataset as it was given: its path (or glob), or the list of its paths.
#[derive(Debug, Serialize)]
pub struct DataInput {
    pub path: serde_json::Value,
    pub fingerprint: String,
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

const BATCH: usize = 4096;

/// Write the instances of `data` listed in `selection_dir/ids.npy` to `out` as new shards
/// plus `source_ids.npy` and `build.json`. `out` appears complete or not at all.
pub fn build(
    data: &Dataset,
    selection_dir: &Path,
    out: &Path,
    opts: &BuildOptions,
    job: &Job,
) -> Result<BuildReport> {
    let start = Instant::now();
    let ids_path = selection_dir.join("ids.npy");
    let mut ids = read_ids(&ids_path, data.len())?;
    if let Some(seed) = opts.shuffle_seed {
        shuffle(&mut ids, seed);
    }
    let dataset = DataInput {
        path: given_path(data),
        fingerprint: data.fingerprint()?,
    };
    let selection = Input {
        path: selection_dir.to_path_buf(),
        fingerprint: quick_fingerprint(&ids_path)?,
    };
    write_dir_atomically(out, opts.overwrite, |tmp| {
        job.progress.start("build", ids.len() as u64);
        let mut writer =
            DatasetWriter::create(tmp, &opts.name, data.dtype(), opts.max_shard_bytes)?;
        let mut sources = NpyWriter::<u64>::create(tmp.join("source_ids.npy"))?;
        for chunk in ids.chunks(BATCH) {
            job.check()?;
            for &id in chunk {
                writer.add_raw(data.instance_bytes(id)?)?;
            }
            sources.write(chunk)?;
            job.progress.inc(chunk.len() as u64);
        }
        sources.finish()?;
        let shards = writer.finish()?;
        job.progress.finish();
        let shards: Vec<ShardSummary> = shards
            .into_iter()
            .map(|s| ShardSummary {
                prefix: out.join(s.prefix.file_name().unwrap_or_default()),
                ..s
            })
            .collect();
        let report = BuildReport {
            format: "miniplm.refined_dataset",
            version: 1,
            dataset,
            selection,
            shuffle_seed: opts.shuffle_seed,
            num_instances: ids.len() as u64,
            num_tokens: shards.iter().map(|s| s.num_tokens).sum(),
            num_bytes: shards.iter().map(|s| s.num_bytes).sum(),
            dtype: data.dtype().name(),
            shards,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::invalid(format!("cannot write build.json: {e}")))?;
        write_file_atomically(&tmp.join("build.json"), &json)?;
        Ok(report)
    })
}

/// The dataset as it was opened: one path as a string, several as a list.
fn given_path(data: &Dataset) -> serde_json::Value {
    let paths: Vec<serde_json::Value> = data
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned().into())
        .collect();
    match <[serde_json::Value; 1]>::try_from(paths) {
        Ok([one]) => one,
        Err(many) => many.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::write_npy;
    use crate::shards::TokenDType;

    fn dataset(dir: &Path, seqs: &[Vec<i64>]) -> Dataset {
        let mut w = DatasetWriter::create(dir, "c", TokenDType::U16, None).unwrap();
        for s in seqs {
            w.add_tokens(s).unwrap();
        }
        w.finish().unwrap();
        Dataset::open(dir).unwrap()
    }

    #[test]
    fn builds_selected_in_order_and_shuffled() {
        let d = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<i64>> = (0..50)
            .map(|i| (0..(i % 7)).map(|t| t + i).collect())
            .collect();
        let data = dataset(&d.path().join("src"), &seqs);
        let sel = d.path().join("sel");
        std::fs::create_dir(&sel).unwrap();
        let ids: Vec<u64> = (0..50).filter(|i| i % 3 == 0).collect();
        write_npy(sel.join("ids.npy"), &ids).unwrap();
        let opts = BuildOptions {
            max_shard_bytes: Some(20),
            ..Default::default()
        };
        let rep = build(&data, &sel, &d.path().join("out"), &opts, &Job::default()).unwrap();
        assert!(rep.shards.len() > 1);
        // The dataset as given (a directory of several shards), not its first shard.
        assert_eq!(
            rep.dataset.path,
            d.path().join("src").to_string_lossy().as_ref()
        );
        let out = Dataset::open(&d.path().join("out")).unwrap();
        assert_eq!(out.len(), ids.len() as u64);
        for (j, &i) in ids.iter().enumerate() {
            assert_eq!(out.tokens_i64(j as u64).unwrap(), seqs[i as usize]);
        }
        let opts = BuildOptions {
            shuffle_seed: Some(3),
            ..Default::default()
        };
        build(&data, &sel, &d.path().join("shuf"), &opts, &Job::default()).unwrap();
        let src = Npy::open(d.path().join("shuf/source_ids.npy")).unwrap();
        let src = src.view::<u64>().unwrap();
        let mut want = ids.clone();
        shuffle(&mut want, 3);
        assert_eq!(src, &want[..]);
        let out = Dataset::open(&d.path().join("shuf")).unwrap();
        for (j, &i) in src.iter().enumerate() {
            assert_eq!(out.tokens_i64(j as u64).unwrap(), seqs[i as usize]);
        }
    }

    #[test]
    fn bad_ids_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let data = dataset(&d.path().join("src"), &[vec![1, 2], vec![3]]);
        let sel = d.path().join("sel");
        std::fs::create_dir(&sel).unwrap();
        for bad in [vec![1u64, 0], vec![0, 2], vec![1, 1]] {
            write_npy(sel.join("ids.npy"), &bad).unwrap();
            let e = build(
                &data,
                &sel,
                &d.path().join("out"),
                &BuildOptions::default(),
                &Job::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("ids.npy"), "{e}");
            assert!(!d.path().join("out").exists());
        }
    }
}
