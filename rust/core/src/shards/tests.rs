//! Shard tests: an independent byte-level Megatron writer, round trips, corruption.

use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Megatron's layout built by hand, independent of `ShardWriter`.
fn megatron_bytes(seqs: &[Vec<i64>], dtype: TokenDType) -> (Vec<u8>, Vec<u8>) {
    let t = dtype.size();
    let mut bin = Vec::new();
    let mut idx = b"MMIDIDX\x00\x00".to_vec();
    idx.extend(1u64.to_le_bytes());
    idx.push(dtype.code());
    idx.extend((seqs.len() as u64).to_le_bytes());
    idx.extend((seqs.len() as u64 + 1).to_le_bytes());
    for s in seqs {
        idx.extend((s.len() as i32).to_le_bytes());
    }
    let mut p = 0i64;
    for s in seqs {
        idx.extend(p.to_le_bytes());
        p += (s.len() * t) as i64;
    }
    for d in 0..=seqs.len() as i64 {
        idx.extend(d.to_le_bytes());
    }
    for s in seqs {
        for &v in s {
            match dtype {
                TokenDType::U16 => bin.extend((v as u16).to_le_bytes()),
                TokenDType::I32 => bin.extend((v as i32).to_le_bytes()),
                _ => unreachable!("tests use uint16 and int32"),
            }
        }
    }
    (idx, bin)
}

fn write_pair(prefix: &Path, idx: &[u8], bin: &[u8]) {
    std::fs::write(shard::with_ext(prefix, ".idx"), idx).unwrap();
    std::fs::write(shard::with_ext(prefix, ".bin"), bin).unwrap();
}

fn corpus() -> impl Strategy<Value = (TokenDType, Vec<Vec<Vec<i64>>>)> {
    prop_oneof![Just(TokenDType::U16), Just(TokenDType::I32)].prop_flat_map(|dt| {
        let hi = if dt == TokenDType::U16 {
            65535i64
        } else {
            i32::MAX as i64
        };
        let seq = prop::collection::vec(0..=hi, 0..30);
        let shard = prop::collection::vec(seq, 0..8);
        (Just(dt), prop::collection::vec(shard, 1..4))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn independent_bytes_read_back_and_writer_matches((dt, shards) in corpus(),
                                                      picks in prop::collection::vec(any::<u64>(), 0..10),
                                                      cols in 1usize..40) {
        let d = tempfile::tempdir().unwrap();
        let flat: Vec<Vec<i64>> = shards.iter().flatten().cloned().collect();
        for (k, s) in shards.iter().enumerate() {
            let (idx, bin) = megatron_bytes(s, dt);
            write_pair(&d.path().join(format!("hand_{k}")), &idx, &bin);
            // The writer produces exactly the same bytes.
            let prefix = d.path().join(format!("w{k}"));
            let mut w = ShardWriter::create(&prefix, dt).unwrap();
            for seq in s {
                w.add_tokens(seq).unwrap();
            }
            w.finish().unwrap();
            prop_assert_eq!(std::fs::read(shard::with_ext(&prefix, ".idx")).unwrap(), idx);
            prop_assert_eq!(std::fs::read(shard::with_ext(&prefix, ".bin")).unwrap(), bin);
        }
        let ds = Dataset::open(&d.path().join("hand")).unwrap();
        prop_assert_eq!(ds.len(), flat.len() as u64);
        prop_assert_eq!(ds.num_tokens(), flat.iter().map(|s| s.len() as u64).sum::<u64>());
        for (i, s) in flat.iter().enumerate() {
            prop_assert_eq!(&ds.tokens_i64(i as u64).unwrap(), s);
        }
        if !flat.is_empty() {
            let ids: Vec<u64> = picks.iter().map(|p| p % flat.len() as u64).collect();
            let mut out = vec![0i64; ids.len() * cols];
            let mut lens = vec![0u32; ids.len()];
            ds.gather(&ids, &mut out, cols, -1, &mut lens).unwrap();
            for (r, &id) in ids.iter().enumerate() {
                let s = &flat[id as usize];
                let m = s.len().min(cols);
                let mut want = vec![-1i64; cols];
                want[..m].copy_from_slice(&s[..m]);
                prop_assert_eq!(&out[r * cols..(r + 1) * cols], &want[..]);
                prop_assert_eq!(lens[r] as usize, m);
            }
        }
        prop_assert!(ds.locate(flat.len() as u64).is_err());
    }

    #[test]
    fn dataset_writer_rolls_and_reads_back((dt, shards) in corpus(), max in 1u64..200) {
        let d = tempfile::tempdir().unwrap();
        let flat: Vec<Vec<i64>> = shards.into_iter().flatten().collect();
        let mut w = DatasetWriter::create(d.path(), "x", dt, Some(max)).unwrap();
        for s in &flat {
            w.add_tokens(s).unwrap();
        }
        let written = w.finish().unwrap();
        for s in &written[..written.len().saturating_sub(1)] {
            // A shard past the limit holds exactly one sequence.
            prop_assert!(s.num_bytes <= max || s.num_sequences == 1);
        }
        let ds = Dataset::open(d.path()).unwrap();
        prop_assert_eq!(ds.len(), flat.len() as u64);
        for (i, s) in flat.iter().enumerate() {
            prop_assert_eq!(&ds.tokens_i64(i as u64).unwrap(), s);
        }
    }
}

/// Every file of directory `d`, name -> bytes.
fn files_of(d: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A writer checkpointed after `at` sequences, killed after writing `extra` more (its
    /// junk left on disk), then resumed and given the rest, leaves exactly the files of a
    /// writer that never stopped.
    #[test]
    fn resumed_writer_matches_an_uninterrupted_one(
        (dt, shards) in corpus(),
        max in prop::option::of(1u64..200),
        at_frac in 0.0f64..=1.0,
        extra in 0usize..6,
        twice in any::<bool>(),
    ) {
        let flat: Vec<Vec<i64>> = shards.into_iter().flatten().collect();
        let at = (at_frac * flat.len() as f64) as usize;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut w = DatasetWriter::create(a.path(), "x", dt, max).unwrap();
        flat.iter().for_each(|s| w.add_tokens(s).unwrap());
        w.finish().unwrap();

        let mut w = DatasetWriter::create(b.path(), "x", dt, max).unwrap();
        w.checkpoint().unwrap(); // earlier checkpoints, superseded by the last
        for (i, s) in flat[..at].iter().enumerate() {
            w.add_tokens(s).unwrap();
            if twice && i == at / 2 {
                w.checkpoint().unwrap();
            }
        }
        let ck = w.checkpoint().unwrap();
        for s in flat[at..].iter().chain(&flat).take(extra) {
            w.add_tokens(s).unwrap();
        }
        drop(w); // killed: what it buffered reaches the files, no .idx for the open shard
        let mut w = DatasetWriter::resume(b.path(), "x", dt, max, &ck).unwrap();
        flat[at..].iter().for_each(|s| w.add_tokens(s).unwrap());
        let got = w.finish().unwrap();
        prop_assert_eq!(files_of(a.path()), files_of(b.path()));
        prop_assert_eq!(got.iter().map(|s| s.num_sequences).sum::<u64>(), flat.len() as u64);
    }
}

#[test]
fn resume_refuses_files_that_do_not_match_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(d.path(), "x", TokenDType::U16, Some(4)).unwrap();
    w.add_tokens(&[1, 2]).unwrap();
    w.add_tokens(&[3, 4]).unwrap();
    let ck = w.checkpoint().unwrap();
    assert_eq!(ck.done, [(1, 4)]);
    assert_eq!(ck.open, Some((1, 4)));
    drop(w);
    // The open shard's .bin lost bytes: refused, naming the file.
    std::fs::write(d.path().join("x_1.bin"), [3u8]).unwrap();
    let resume = || DatasetWriter::resume(d.path(), "x", TokenDType::U16, Some(4), &ck).err();
    let e = resume().expect("a short .bin must be refused");
    assert!(e.to_string().contains("x_1.bin"), "{e}");
    // A finished shard of another size: refused too.
    std::fs::write(d.path().join("x_0.bin"), [1u8, 0]).unwrap();
    let e = resume().expect("a finished shard of another size must be refused");
    assert!(e.to_string().contains("x_0.bin"), "{e}");
}

/// Edits the (idx, bin) bytes of a valid shard.
type Edit = Box<dyn Fn(&mut Vec<u8>, &mut Vec<u8>)>;

fn corrupt(edit: impl Fn(&mut Vec<u8>, &mut Vec<u8>)) -> String {
    let d = tempfile::tempdir().unwrap();
    let (mut idx, mut bin) = megatron_bytes(&[vec![1, 2, 3, 4, 5], vec![6, 7, 8]], TokenDType::U16);
    edit(&mut idx, &mut bin);
    let prefix = d.path().join("bad");
    write_pair(&prefix, &idx, &bin);
    match Shard::open(&prefix) {
        Ok(_) => panic!("corrupt shard opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_corruption_names_file_and_field() {
    let cases: Vec<(&str, Edit)> = vec![
        ("magic", Box::new(|i, _| i[0] = b'X')),
        ("version", Box::new(|i, _| i[9] = 2)),
        ("dtype", Box::new(|i, _| i[17] = 99)),
        (
            "sequence count",
            Box::new(|i, _| i[18..26].copy_from_slice(&(1u64 << 61).to_le_bytes())),
        ),
        ("sequence count", Box::new(|i, _| i.truncate(i.len() - 3))),
        ("header", Box::new(|i, _| i.truncate(20))),
        ("size", Box::new(|_, b| b.truncate(b.len() - 2))),
        (
            "pointers",
            Box::new(|i, _| i[34 + 16..34 + 24].copy_from_slice(&999i64.to_le_bytes())),
        ),
        (
            "sizes",
            Box::new(|i, _| i[34..38].copy_from_slice(&(-5i32).to_le_bytes())),
        ),
        (
            "document index",
            Box::new(|i, _| {
                let n = i.len();
                i[n - 8..].copy_from_slice(&7i64.to_le_bytes())
            }),
        ),
        (
            "document index",
            Box::new(|i, _| {
                let n = i.len();
                i[n - 24..n - 16].copy_from_slice(&3i64.to_le_bytes())
            }),
        ),
    ];
    for (field, edit) in cases {
        let e = corrupt(edit);
        assert!(e.contains("bad.") && e.contains(field), "{field}: {e}");
    }
}

#[test]
fn empty_shard_opens() {
    let d = tempfile::tempdir().unwrap();
    let (idx, bin) = megatron_bytes(&[], TokenDType::U16);
    write_pair(&d.path().join("e"), &idx, &bin);
    let ds = Dataset::open(&d.path().join("e")).unwrap();
    assert_eq!((ds.len(), ds.num_tokens()), (0, 0));
    let mut w = DatasetWriter::create(&d.path().join("w"), "z", TokenDType::I32, None).unwrap();
    assert_eq!(w.finish().unwrap().len(), 1);
    assert_eq!(Dataset::open(&d.path().join("w")).unwrap().len(), 0);
    // and adding after creation works for int32
    w = DatasetWriter::create(&d.path().join("w2"), "z", TokenDType::I32, None).unwrap();
    w.add_tokens(&[i32::MAX as i64, -3]).unwrap();
    assert!(w.add_tokens(&[i32::MAX as i64 + 1]).is_err());
    w.finish().unwrap();
}

#[test]
fn layout_errors() {
    let d = tempfile::tempdir().unwrap();
    let (idx, bin) = megatron_bytes(&[vec![1]], TokenDType::U16);
    write_pair(&d.path().join("a_0"), &idx, &bin);
    write_pair(&d.path().join("a_2"), &idx, &bin);
    let e = Dataset::open(&d.path().join("a"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("a_1.idx"), "{e}");
    let (idx32, bin32) = megatron_bytes(&[vec![1]], TokenDType::I32);
    write_pair(&d.path().join("m_0"), &idx, &bin);
    write_pair(&d.path().join("m_1"), &idx32, &bin32);
    let e = Dataset::open(&d.path().join("m"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dtype") && e.contains("m_1.idx"), "{e}");
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("several datasets"), "{e}");
    std::fs::remove_file(d.path().join("a_0.bin")).unwrap();
    let e = Shard::open(&d.path().join("a_0"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("a_0.bin"), "{e}");
    assert!(Dataset::open(&d.path().join("nothing")).is_err());
    let e = Dataset::open(&d.path().join("m")).err();
    assert!(e.is_some());
    let e = Dataset::open(&d.path().join("m_0")).unwrap();
    assert_eq!(e.len(), 1);
    let mut out = [0i32; 2];
    let mut lens = [0u32; 1];
    assert!(e.gather(&[0], &mut out, 3, 0, &mut lens).is_err()); // wrong out size
    assert!(e.gather(&[1], &mut out, 2, 0, &mut lens).is_err()); // id out of range
    e.gather(&[0], &mut out, 2, 9, &mut lens).unwrap();
    assert_eq!((out, lens), ([1, 9], [1]));
}

/// Shards `dir/<name>_0..` of `per_shard` one-token instances each.
fn numbered_shards(dir: &Path, name: &str, per_shard: &[usize]) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, &n) in per_shard.iter().enumerate() {
        let seqs: Vec<Vec<i64>> = (0..n as i64).map(|i| vec![i + 10 * k as i64]).collect();
        let (idx, bin) = megatron_bytes(&seqs, TokenDType::U16);
        write_pair(&dir.join(format!("{name}_{k}")), &idx, &bin);
    }
}

fn remove_shard(prefix: &Path) {
    std::fs::remove_file(shard::with_ext(prefix, ".idx")).unwrap();
    std::fs::remove_file(shard::with_ext(prefix, ".bin")).unwrap();
}

#[test]
fn single_prefix_beside_numbered_shards_is_ambiguous() {
    let d = tempfile::tempdir().unwrap();
    numbered_shards(d.path(), "corpus", &[2, 2, 2]);
    let (idx, bin) = megatron_bytes(&[vec![1]], TokenDType::U16);
    write_pair(&d.path().join("corpus"), &idx, &bin);
    for p in [d.path().to_path_buf(), d.path().join("corpus")] {
        let e = Dataset::open(&p).err().unwrap().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("corpus.idx") && e.contains("corpus_0"),
            "{e}"
        );
    }
}

#[test]
fn missing_last_shard_is_caught_by_the_manifest() {
    let d = tempfile::tempdir().unwrap();
    numbered_shards(d.path(), "corpus", &[3, 3, 2]);
    // tokenize.json as written before it listed its shards: totals only.
    let old = r#"{"format": "miniplm.tokenized_corpus", "version": 1,
                  "counts": {"instances": 8, "tokens": 8}}"#;
    std::fs::write(d.path().join("tokenize.json"), old).unwrap();
    assert_eq!(Dataset::open(d.path()).unwrap().len(), 8);
    crate::npy::write_npy(d.path().join("sources.npy"), &[0u16; 8]).unwrap();
    assert_eq!(Dataset::open(d.path()).unwrap().len(), 8);
    remove_shard(&d.path().join("corpus_2"));
    for p in [d.path().to_path_buf(), d.path().join("corpus")] {
        let e = Dataset::open(&p).err().unwrap();
        assert!(matches!(e, crate::Error::Format { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("tokenize.json") && e.contains("8 instances") && e.contains("6 instances"),
            "{e}"
        );
    }
    // With the shards listed, the message names the missing one.
    let new = r#"{"format": "miniplm.tokenized_corpus", "version": 1,
                  "counts": {"instances": 8, "tokens": 8},
                  "shards": [{"name": "corpus_0", "num_instances": 3, "num_tokens": 3},
                             {"name": "corpus_1", "num_instances": 3, "num_tokens": 3},
                             {"name": "corpus_2", "num_instances": 2, "num_tokens": 2}]}"#;
    std::fs::write(d.path().join("tokenize.json"), new).unwrap();
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("missing corpus_2"), "{e}");
    // No manifest: sources.npy still tells.
    std::fs::remove_file(d.path().join("tokenize.json")).unwrap();
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(
        e.contains("sources.npy") && e.contains("8 source ids"),
        "{e}"
    );
    // Garbage manifest: a format error naming it.
    std::fs::write(d.path().join("tokenize.json"), "{nope").unwrap();
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("tokenize.json") && e.contains("JSON"), "{e}");
    // An explicitly named shard is what the user asked for.
    assert_eq!(Dataset::open(&d.path().join("corpus_0")).unwrap().len(), 3);
}

#[test]
fn build_manifest_checks_its_shards() {
    let d = tempfile::tempdir().unwrap();
    numbered_shards(d.path(), "refined", &[2, 1]);
    let man = r#"{"format": "miniplm.refined_dataset", "version": 1, "num_instances": 3,
                  "num_tokens": 3,
                  "shards": [{"prefix": "/elsewhere/refined_0", "num_sequences": 2, "num_tokens": 2},
                             {"prefix": "/elsewhere/refined_1", "num_sequences": 1, "num_tokens": 1}]}"#;
    std::fs::write(d.path().join("build.json"), man).unwrap();
    assert_eq!(Dataset::open(d.path()).unwrap().len(), 3);
    // A replaced shard of another size.
    let (idx, bin) = megatron_bytes(&[vec![1, 2]], TokenDType::U16);
    write_pair(&d.path().join("refined_1"), &idx, &bin);
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("build.json") && e.contains("refined_1"), "{e}");
}

#[test]
fn datatrove_prefixes_glob_and_list() {
    let d = tempfile::tempdir().unwrap();
    for (k, tok) in [
        (0i64, "00000_tokens"),
        (1, "00001_tokens"),
        (2, "00002_tokens"),
    ] {
        let (idx, bin) = megatron_bytes(&[vec![k], vec![k, k]], TokenDType::U16);
        write_pair(&d.path().join(tok), &idx, &bin);
    }
    let e = Dataset::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("several datasets") && e.contains("*"), "{e}");
    let ds = Dataset::open(&d.path().join("*_tokens")).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.tokens_i64(2).unwrap(), [1]);
    assert_eq!(ds.paths(), [d.path().join("*_tokens")]);
    let list = [d.path().join("00002_tokens"), d.path().join("00000_tokens")];
    let ds = Dataset::open_many(&list).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.tokens_i64(0).unwrap(), [2]);
    let e = Dataset::open_many(&[
        d.path().join("00000_tokens"),
        d.path().join("0000[0]_tokens"),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("twice"), "{e}");
    let e = Dataset::open(&d.path().join("*_nothing")).err().unwrap();
    assert!(matches!(e, crate::Error::Io { .. }), "{e}");
}

#[test]
fn fingerprint_sees_an_in_place_edit_of_the_same_size() {
    let d = tempfile::tempdir().unwrap();
    // 4 MiB of tokens: more than the 16 sampled blocks of a quick fingerprint cover.
    let seqs: Vec<Vec<i64>> = (0..64).map(|i| vec![i % 7; 32 * 1024]).collect();
    let (idx, mut bin) = megatron_bytes(&seqs, TokenDType::U16);
    write_pair(&d.path().join("c"), &idx, &bin);
    let a = Dataset::open(&d.path().join("c"))
        .unwrap()
        .fingerprint()
        .unwrap();
    assert!(a.starts_with("xxh3c:"), "{a}");
    assert_eq!(
        Dataset::open(&d.path().join("c"))
            .unwrap()
            .fingerprint()
            .unwrap(),
        a
    );
    bin[100_000] ^= 1;
    std::fs::write(d.path().join("c.bin"), &bin).unwrap();
    let b = Dataset::open(&d.path().join("c"))
        .unwrap()
        .fingerprint()
        .unwrap();
    assert_ne!(a, b);
    // A copy elsewhere has the same content and the same fingerprint.
    let e = tempfile::tempdir().unwrap();
    write_pair(&e.path().join("c"), &idx, &bin);
    let c = Dataset::open(&e.path().join("c"))
        .unwrap()
        .fingerprint()
        .unwrap();
    assert_eq!(b, c);
}

#[test]
fn token_range_and_vocab_check_find_the_first_offender() {
    let d = tempfile::tempdir().unwrap();
    let (idx, bin) = megatron_bytes(&[vec![0, 5], vec![3]], TokenDType::I32);
    write_pair(&d.path().join("x_0"), &idx, &bin);
    let (idx, bin) = megatron_bytes(&[vec![1], vec![2, -4, 9], vec![12]], TokenDType::I32);
    write_pair(&d.path().join("x_1"), &idx, &bin);
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.token_range().unwrap(), Some((-4, 12)));
    let e = ds.check_vocab(100).err().unwrap();
    assert!(matches!(e, crate::Error::Invalid(_)));
    let e = e.to_string();
    assert!(e.contains("instance 3") && e.contains("token id -4"), "{e}");
    assert!(
        e.contains("vocabulary of 100 ids [0, 100); the dataset"),
        "{e}"
    );
    let (idx, bin) = megatron_bytes(&[vec![1], vec![2, 4, 9], vec![12]], TokenDType::I32);
    write_pair(&d.path().join("x_1"), &idx, &bin);
    let ds = Dataset::open(d.path()).unwrap();
    ds.check_vocab(13).unwrap();
    let e = ds.check_vocab(10).err().unwrap().to_string();
    assert!(e.contains("instance 4") && e.contains("token id 12"), "{e}");
    let e = ds.check_vocab(9).err().unwrap().to_string();
    assert!(e.contains("instance 3") && e.contains("token id 9"), "{e}");
    let (idx, bin) = megatron_bytes(&[vec![]], TokenDType::U16);
    write_pair(&d.path().join("empty"), &idx, &bin);
    let ds = Dataset::open(&d.path().join("empty")).unwrap();
    assert_eq!(ds.token_range().unwrap(), None);
    ds.check_vocab(1).unwrap();
}
