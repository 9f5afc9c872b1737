//! A dataset directory's own record of its shards (`tokenize.json` of `miniplm tokenize`,
//! `build.json` of `miniplm-sample build`), checked on open so that a missing or foreign
//! shard is an error rather than a smaller dataset.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::resolve::{family_of, Family};
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::npy::Npy;

/// What a manifest promises about one family of shards.
struct Promise {
    path: PathBuf,
    family: String,
    /// `(shard name, instances, tokens)`, where the manifest lists its shards.
    shards: Option<Vec<(String, u64, u64)>>,
    instances: u64,
    tokens: Option<u64>,
}

fn count(v: &Value, path: &Path, field: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| Error::format(path, field, format!("not a count: {v}")))
}

/// `shards: [{"prefix" | "name": ..., "num_instances" | "num_sequences": ..., "num_tokens": ...}]`.
fn shard_list(v: &Value, path: &Path) -> Result<Vec<(String, u64, u64)>> {
    let bad = |m: &str| Error::format(path, "shards", m.to_string());
    let list = v.as_array().ok_or_else(|| bad("not a list"))?;
    list.iter()
        .map(|s| {
            let name = s
                .get("name")
                .or_else(|| s.get("prefix"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a shard without a name"))?;
            let name = Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad("a shard without a name"))?;
            let n = s
                .get("num_instances")
                .or_else(|| s.get("num_sequences"))
                .ok_or_else(|| bad("a shard without num_instances"))?;
            let t = s
                .get("num_tokens")
                .ok_or_else(|| bad("a shard without num_tokens"))?;
            Ok((name, count(n, path, "shards")?, count(t, path, "shards")?))
        })
        .collect()
}

/// The promise of `dir/tokenize.json` or `dir/build.json`, if either is ours.
fn read_promise(dir: &Path) -> Result<Option<Promise>> {
    for (file, format) in [
        ("tokenize.json", "miniplm.tokenized_corpus"),
        ("build.json", "miniplm.refined_dataset"),
    ] {
        let path = dir.join(file);
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::format(&path, "JSON", e.to_string()))?;
        if v.get("format").and_then(Value::as_str) != Some(format) {
            continue;
        }
        let shards = v.get("shards").map(|s| shard_list(s, &path)).transpose()?;
        let (instances, tokens) = if file == "tokenize.json" {
            let c = v
                .get("counts")
                .ok_or_else(|| Error::format(&path, "counts", "missing"))?;
            let n = c
                .get("instances")
                .ok_or_else(|| Error::format(&path, "counts.instances", "missing"))?;
            let t = c.get("tokens").map(|t| count(t, &path, "counts.tokens"));
            (count(n, &path, "counts.instances")?, t.transpose()?)
        } else {
            let n = v
                .get("num_instances")
                .ok_or_else(|| Error::format(&path, "num_instances", "missing"))?;
            let t = v.get("num_tokens").map(|t| count(t, &path, "num_tokens"));
            (count(n, &path, "num_instances")?, t.transpose()?)
        };
        let family = match &shards {
            Some(s) if !s.is_empty() => family_of(&s[0].0).to_string(),
            // tokenize.json before it listed its shards: `miniplm tokenize` names them so.
            _ => "corpus".to_string(),
        };
        return Ok(Some(Promise {
            path,
            family,
            shards,
            instances,
            tokens,
        }));
    }
    Ok(None)
}

fn names(shards: &[&Shard]) -> String {
    shards
        .iter()
        .map(|s| stem(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stem(s: &Shard) -> String {
    s.idx_path()
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Check a family the resolver inferred against its directory's manifest and
/// `sources.npy` (one source index per instance).
pub(crate) fn check(family: &Family, shards: &[Shard]) -> Result<()> {
    if !family.inferred {
        return Ok(());
    }
    let Some(first) = shards.first() else {
        return Ok(());
    };
    let found: Vec<&Shard> = shards.iter().collect();
    let instances: u64 = shards.iter().map(Shard::len).sum();
    let tokens: u64 = shards.iter().map(Shard::num_tokens).sum();
    if let Some(p) = read_promise(&family.dir)? {
        if family_of(&stem(first)) == p.family {
            check_promise(&p, &found, instances, tokens)?;
        }
    }
    let sources = family.dir.join("sources.npy");
    if sources.is_file() {
        let npy = Npy::open(&sources)?;
        if npy.len() as u64 != instances {
            return Err(Error::invalid(format!(
                "{}: {} source ids, but the shards {} hold {instances} instances; a shard is \
                 missing or does not belong here",
                sources.display(),
                npy.len(),
                names(&found)
            )));
        }
    }
    Ok(())
}

fn check_promise(p: &Promise, found: &[&Shard], instances: u64, tokens: u64) -> Result<()> {
    let bad = |msg: String| Err(Error::format(&p.path, "shards", msg));
    if let Some(listed) = &p.shards {
        let have: Vec<String> = found.iter().map(|s| stem(s)).collect();
        let missing: Vec<&str> = listed
            .iter()
            .map(|s| s.0.as_str())
            .filter(|n| !have.iter().any(|h| h == n))
            .collect();
        let extra: Vec<&str> = have
            .iter()
            .map(String::as_str)
            .filter(|h| !listed.iter().any(|s| s.0 == *h))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return bad(format!(
                "lists {} shards ({} instances) but the directory holds {} ({instances} \
                 instances): missing {}; not listed {}",
                listed.len(),
                p.instances,
                found.len(),
                if missing.is_empty() {
                    "none".to_string()
                } else {
                    missing.join(", ")
                },
                if extra.is_empty() {
                    "none".to_string()
                } else {
                    extra.join(", ")
                },
            ));
        }
        for s in found {
            let name = stem(s);
            if let Some((_, n, t)) = listed.iter().find(|l| l.0 == name) {
                if (*n, *t) != (s.len(), s.num_tokens()) {
                    return bad(format!(
                        "shard {name} should hold {n} instances and {t} tokens, it holds {} and {}",
                        s.len(),
                        s.num_tokens()
                    ));
                }
            }
        }
    }
    if instances != p.instances || p.tokens.is_some_and(|t| t != tokens) {
        return bad(format!(
            "records {} instances{} but the shards found ({}) hold {instances} instances and \
             {tokens} tokens; a shard is missing or does not belong here",
            p.instances,
            p.tokens
                .map_or(String::new(), |t| format!(" and {t} tokens")),
            names(found),
        ));
    }
    Ok(())
}
