//! Copy a selection of instances into new Megatron shards (the refined corpus D').

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::{quick_fingerprint, write_dir_atomically, write_file_atomically};
use crate::job::Job;
use crate::npy::NpyWriter;
use crate::output::check_spares_inputs;
use crate::rng::shuffle;
use crate::select::read_selection;
use crate::select::record::given_path;
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

const BATCH: usize = 4096;

/// `build` as the CLI and Python ask for it: open `data` (each a directory, a shard
/// prefix or a glob: one dataset, as `Dataset::open_many`), check that `out` spares
/// every input, and build.
pub fn build_at(
    data: &[PathBuf],
    selection_dir: &Path,
    out: &Path,
    opts: &BuildOptions,
    job: &Job,
) -> Result<BuildReport> {
    let dataset = Dataset::open_many(data)?;
    let mut inputs: Vec<&Path> = data.iter().map(PathBuf::as_path).collect();
    inputs.push(selection_dir);
    inputs.extend(dataset.files());
    check_spares_inputs(out, &inputs)?;
    build(&dataset, selection_dir, out, opts, job)
}

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
    let mut ids = read_selection(selection_dir, data)?;
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
            .map_err(|e| Error::internal(format!("cannot serialize build.json: {e}")))?;
        write_file_atomically(&tmp.join("build.json"), &json)?;
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::{write_npy, Npy};
    use crate::select::write_given_selection;
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
        let ids: Vec<u64> = (0..50).filter(|i| i % 3 == 0).collect();
        write_given_selection(&sel, &ids, &data, "test", false).unwrap();
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
        std::fs::write(
            sel.join("selection.json"),
            r#"{"format": "miniplm.selection"}"#,
        )
        .unwrap();
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

    #[test]
    fn selection_json_is_read_and_tied_to_the_dataset() {
        let d = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<i64>> = (0..6).map(|i| vec![i, i + 1]).collect();
        let data = dataset(&d.path().join("src"), &seqs);
        let sel = d.path().join("sel");
        write_given_selection(&sel, &[1, 3], &data, "test", false).unwrap();
        let go = |data: &Dataset| {
            let out = d.path().join("out");
            let r = build(data, &sel, &out, &BuildOptions::default(), &Job::default());
            assert!(r.is_err() || out.exists());
            let _ = std::fs::remove_dir_all(&out);
            r.map(|_| ()).map_err(|e| e.to_string())
        };
        go(&data).unwrap();
        // Another dataset of another size, and one of the same size with other tokens.
        let other = dataset(&d.path().join("small"), &seqs[..5]);
        let e = go(&other).unwrap_err();
        assert!(
            e.contains("dataset of 6 instances") && e.contains("has 5"),
            "{e}"
        );
        let same_size: Vec<Vec<i64>> = (0..6).map(|i| vec![i + 9]).collect();
        let other = dataset(&d.path().join("same"), &same_size);
        let e = go(&other).unwrap_err();
        assert!(e.contains("another dataset"), "{e}");
        // Counts that disagree with ids.npy, garbage, a missing file.
        let json = sel.join("selection.json");
        let good = std::fs::read_to_string(&json).unwrap();
        std::fs::write(
            &json,
            good.replace("\"num_selected\": 2", "\"num_selected\": 3"),
        )
        .unwrap();
        let e = go(&data).unwrap_err();
        assert!(
            e.contains("selection.json") && e.contains("num_selected"),
            "{e}"
        );
        std::fs::write(&json, "{garbage").unwrap();
        let e = go(&data).unwrap_err();
        assert!(e.contains("selection.json") && e.contains("JSON"), "{e}");
        std::fs::write(&json, "[1]").unwrap();
        let e = go(&data).unwrap_err();
        assert!(e.contains("not a selection"), "{e}");
        std::fs::remove_file(&json).unwrap();
        let e = go(&data).unwrap_err();
        assert!(e.contains("selection.json"), "{e}");
    }
}
