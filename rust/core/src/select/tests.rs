//! `select` against a sort-everything reference on adversarial inputs.

use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

use super::kernel::{gumbel, key_value, order_key};
use super::*;
use crate::job::NoProgress;
use crate::npy::{write_npy, Npy};
use crate::rng::rand_u64;

const SPECIAL: [f64; 9] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];

#[derive(Debug)]
struct Case {
    t: Vec<f64>,
    r: Vec<f64>,
    exclude: Vec<u64>,
    spec: SelectSpec,
}

/// Plainly: value, eligibility, key; sort by (key desc, id asc); take k; sort ids.
fn reference(c: &Case) -> (Vec<u64>, u64, u64, Option<(u64, u64)>) {
    let n = c.t.len();
    let sign = if c.spec.keep == Keep::Highest {
        1.0
    } else {
        -1.0
    };
    let mut rows: Vec<(f64, u64, u64)> = Vec::new(); // (float key, random key, id)
    let mut nan = 0;
    let excluded: std::collections::HashSet<u64> = c.exclude.iter().copied().collect();
    for i in 0..n {
        if excluded.contains(&(i as u64)) {
            continue;
        }
        let v = match c.spec.by {
            By::Diff => c.r[i] - c.t[i],
            By::Teacher => c.t[i],
            By::Reference => c.r[i],
        };
        if v.is_nan() {
            nan += 1;
            continue;
        }
        let fk = match c.spec.mode {
            Mode::Gumbel { temperature, seed } => {
                (sign * v + 0.0) / temperature + gumbel(rand_u64(seed, i as u64))
            }
            _ => sign * v + 0.0,
        };
        let rk = match c.spec.mode {
            Mode::Random { seed } => rand_u64(seed, i as u64),
            _ => 0,
        };
        rows.push((fk, rk, i as u64));
    }
    rows.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.0.partial_cmp(&a.0).unwrap())
            .then(a.2.cmp(&b.2))
    });
    let k = match c.spec.amount {
        Amount::Ratio(r) => super::ratio_count(r, (n - c.exclude.len()) as u64),
        Amount::Count(k) => k,
    };
    let kept = &rows[..(k as usize).min(rows.len())];
    let ties = kept.last().map(|last| {
        let same = |x: &(f64, u64, u64)| x.0 == last.0 && x.1 == last.1;
        (
            rows.iter().filter(|x| same(x)).count() as u64,
            kept.iter().filter(|x| same(x)).count() as u64,
        )
    });
    let mut ids: Vec<u64> = kept.iter().map(|x| x.2).collect();
    ids.sort_unstable();
    (ids, k, nan, ties)
}

fn run(c: &Case, tuning: Tuning) -> Result<(Vec<u64>, SelectionReport)> {
    run_on(c, tuning, Cpu::detect())
}

/// The case's scores and exclusions as `.npy` files in `dir`, opened as select inputs.
fn inputs_in(dir: &std::path::Path, c: &Case) -> SelectInputs {
    write_npy(dir.join("t.npy"), &c.t).unwrap();
    write_npy(dir.join("r.npy"), &c.r).unwrap();
    write_npy(dir.join("x.npy"), &c.exclude).unwrap();
    SelectInputs {
        teacher: Some(ScoreSource::open_npy(&dir.join("t.npy")).unwrap()),
        reference: Some(ScoreSource::open_npy(&dir.join("r.npy")).unwrap()),
        exclude: Some(dir.join("x.npy")),
        num_instances: None,
        dataset: None,
    }
}

/// In memory, through the AVX2 kernels where the CPU has them or the portable ones.
fn run_on(c: &Case, tuning: Tuning, cpu: Cpu) -> Result<(Vec<u64>, SelectionReport)> {
    let d = tempfile::tempdir().unwrap();
    let inputs = inputs_in(d.path(), c);
    let out = MemOut(Mutex::new(Vec::new()));
    let rep = select_into(&inputs, &c.spec, tuning, cpu, &Job::default(), &out)?;
    Ok((out.0.into_inner().unwrap(), rep))
}

fn case() -> impl Strategy<Value = Case> {
    (0usize..300).prop_flat_map(|n| {
        let v = prop_oneof![
            3 => prop::sample::select(SPECIAL.to_vec()),
            1 => -3.0f64..3.0,
        ];
        (
            prop::collection::vec(v.clone(), n),
            prop::collection::vec(v, n),
            prop::collection::btree_set(0..n.max(1) as u64, 0..=n / 3),
            prop_oneof![Just(By::Diff), Just(By::Teacher), Just(By::Reference)],
            prop_oneof![Just(Keep::Highest), Just(Keep::Lowest)],
            prop_oneof![
                Just(Mode::Top),
                any::<u64>().prop_map(|seed| Mode::Random { seed }),
                (prop::sample::select(vec![0.1, 1.0, 5.0]), any::<u64>())
                    .prop_map(|(temperature, seed)| Mode::Gumbel { temperature, seed }),
            ],
            prop_oneof![
                prop::sample::select(vec![0.0, 0.25, 0.5, 1.0]).prop_map(Amount::Ratio),
                (0..n as u64 + 3).prop_map(Amount::Count),
            ],
        )
            .prop_map(move |(t, r, ex, by, keep, mode, amount)| Case {
                t,
                r,
                exclude: ex.into_iter().filter(|&x| (x as usize) < n).collect(),
                spec: SelectSpec {
                    by,
                    keep,
                    mode,
                    amount,
                },
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn equals_reference(c in case(), chunk in 1usize..40, cap in 1usize..400, block in 1u64..5) {
        let (want, k, nan, ties) = reference(&c);
        let small = Tuning { chunk, cap, sample_block: block };
        for (tuning, cpu) in [
            (Tuning::default(), Cpu::detect()),
            (small, Cpu::detect()),
            (small, Cpu::baseline()),
        ] {
            let (ids, rep) = run_on(&c, tuning, cpu).unwrap();
            prop_assert_eq!(&ids, &want);
            prop_assert_eq!(rep.k, k);
            prop_assert_eq!(rep.num_selected, want.len() as u64);
            prop_assert_eq!(rep.num_excluded, c.exclude.len() as u64);
            prop_assert_eq!(rep.num_nan, nan);
            match ties {
                Some((at, kept)) => {
                    prop_assert_eq!(rep.ties_at_threshold, at);
                    prop_assert_eq!(rep.ties_kept, kept);
                }
                None => prop_assert_eq!(rep.ties_kept, 0),
            }
        }
    }
}

#[test]
fn all_equal_keys_beyond_cap_use_tie_counting() {
    let n = 5000;
    let c = Case {
        t: vec![1.0; n],
        r: vec![2.0; n],
        exclude: vec![3, 4, 4000],
        spec: SelectSpec {
            by: By::Diff,
            keep: Keep::Highest,
            mode: Mode::Top,
            amount: Amount::Count(1234),
        },
    };
    let (ids, rep) = run(
        &c,
        Tuning {
            chunk: 7,
            cap: 10,
            sample_block: 2,
        },
    )
    .unwrap();
    assert_eq!(ids, reference(&c).0);
    assert_eq!((rep.ties_at_threshold, rep.ties_kept), (4997, 1234));
    assert_eq!(rep.threshold, Some(1.0));
}

#[test]
fn sampled_guess_gives_two_passes_and_the_same_answer() {
    let n = 300_000;
    let t: Vec<f64> = (0..n)
        .map(|i| (rand_u64(1, i) % 1000) as f64 / 7.0)
        .collect();
    let r: Vec<f64> = (0..n)
        .map(|i| (rand_u64(2, i) % 1000) as f64 / 7.0)
        .collect();
    let c = Case {
        t,
        r,
        exclude: (0..n).step_by(17).collect(),
        spec: SelectSpec {
            by: By::Diff,
            keep: Keep::Highest,
            mode: Mode::Top,
            amount: Amount::Ratio(0.3),
        },
    };
    let (ids, rep) = run(&c, Tuning::default()).unwrap();
    assert_eq!(rep.passes, 2);
    assert_eq!(ids, reference(&c).0);
    same_through_file(&c, &ids, &rep);
    // More candidates in the guessed interval than the cap (at N = 1e9 and beyond with
    // the default cap): one more pass collects those of the sub-interval holding the
    // K-th key, on both kernels.
    let small_cap = Tuning {
        cap: 1000,
        ..Tuning::default()
    };
    for cpu in [Cpu::detect(), Cpu::baseline()] {
        let (narrowed, nrep) = run_on(&c, small_cap, cpu).unwrap();
        assert_eq!(nrep.passes, 3);
        assert_eq!(narrowed, ids);
        assert_eq!(
            (nrep.threshold, nrep.ties_at_threshold, nrep.ties_kept),
            (rep.threshold, rep.ties_at_threshold, rep.ties_kept)
        );
    }
    // Sorted input defeats the block sample: still exact, with more passes.
    let mut sorted = c;
    sorted.t = vec![0.0; n as usize];
    sorted.r = (0..n).map(|i| (i / 3) as f64).collect();
    let (ids, rep) = run(&sorted, Tuning::default()).unwrap();
    assert!(rep.passes > 2);
    assert_eq!(ids, reference(&sorted).0);
    same_through_file(&sorted, &ids, &rep);
    // Every value tied: the tie-counting path writes the file too.
    let mut flat = sorted;
    flat.r = vec![1.0; n as usize];
    let (ids, rep) = run(&flat, Tuning::default()).unwrap();
    assert_eq!(ids, reference(&flat).0);
    same_through_file(&flat, &ids, &rep);
}

/// `select` writes the ids and report that the in-memory run gives, on both kernels.
fn same_through_file(c: &Case, ids: &[u64], rep: &SelectionReport) {
    let (base, brep) = run_on(c, Tuning::default(), Cpu::baseline()).unwrap();
    assert_eq!(base, ids);
    let d = tempfile::tempdir().unwrap();
    let inputs = inputs_in(d.path(), c);
    let out = d.path().join("sel");
    let frep = select(&inputs, &c.spec, &out, false, &Job::default()).unwrap();
    let npy = Npy::open(out.join("ids.npy")).unwrap();
    assert_eq!(npy.view::<u64>().unwrap(), ids);
    let json = |r: &SelectionReport| {
        let mut v = serde_json::to_value(r).unwrap();
        v["elapsed_s"] = 0.into();
        v["inputs"] = 0.into(); // temporary paths differ
        v
    };
    assert_eq!(json(&frep), json(rep));
    assert_eq!(json(&brep), json(rep));
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("selection.json")).unwrap()).unwrap();
    assert_eq!(on_disk["ties_at_threshold"], json(rep)["ties_at_threshold"]);
}

#[test]
fn interrupted_select_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    write_npy(d.path().join("t.npy"), &vec![0.5f64; 1000]).unwrap();
    let inputs = SelectInputs {
        teacher: Some(ScoreSource::open_npy(&d.path().join("t.npy")).unwrap()),
        reference: None,
        exclude: None,
        num_instances: None,
        dataset: None,
    };
    let spec = SelectSpec {
        by: By::Teacher,
        keep: Keep::Lowest,
        mode: Mode::Top,
        amount: Amount::Ratio(0.5),
    };
    let cancel = AtomicBool::new(true);
    let job = Job {
        progress: &NoProgress,
        cancel: &cancel,
        threads: 1,
    };
    let out = d.path().join("sel");
    assert!(matches!(
        select(&inputs, &spec, &out, false, &job),
        Err(Error::Interrupted)
    ));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}

#[test]
fn input_errors_are_clear() {
    let d = tempfile::tempdir().unwrap();
    write_npy(d.path().join("t.npy"), &[0.0f64; 10]).unwrap();
    write_npy(d.path().join("r.npy"), &[0.0f64; 11]).unwrap();
    write_npy(d.path().join("x.npy"), &[2u64, 10]).unwrap();
    let src = |f: &str| Some(ScoreSource::open_npy(&d.path().join(f)).unwrap());
    let spec = |amount| SelectSpec {
        by: By::Diff,
        keep: Keep::Highest,
        mode: Mode::Top,
        amount,
    };
    let go = |inputs: &SelectInputs, s: SelectSpec| {
        select_ids(inputs, &s, Tuning::default(), &Job::default())
            .err()
            .unwrap()
            .to_string()
    };
    let mism = SelectInputs {
        teacher: src("t.npy"),
        reference: src("r.npy"),
        exclude: None,
        num_instances: None,
        dataset: None,
    };
    let e = go(&mism, spec(Amount::Ratio(0.5)));
    assert!(
        e.contains("t.npy has 10") && e.contains("r.npy has 11"),
        "{e}"
    );
    let ok = SelectInputs {
        teacher: src("t.npy"),
        reference: src("t.npy"),
        exclude: Some(d.path().join("x.npy")),
        num_instances: None,
        dataset: None,
    };
    let e = go(&ok, spec(Amount::Ratio(0.5)));
    assert!(e.contains("x.npy") && e.contains("10"), "{e}");
    let ok = SelectInputs {
        exclude: None,
        ..ok
    };
    assert!(go(&ok, spec(Amount::Ratio(1.5))).contains("ratio"));
    let only_t = SelectInputs {
        teacher: src("t.npy"),
        reference: None,
        exclude: None,
        num_instances: None,
        dataset: None,
    };
    assert!(go(&only_t, spec(Amount::Count(1))).contains("reference"));
    let g = SelectSpec {
        mode: Mode::Gumbel {
            temperature: 0.0,
            seed: 0,
        },
        ..spec(Amount::Count(1))
    };
    assert!(go(&ok, g).contains("temperature"));
}

#[test]
fn keys_round_trip_and_order() {
    let xs = [
        f64::NEG_INFINITY,
        -2.0,
        -1e-300,
        -0.0,
        0.0,
        1e-300,
        3.0,
        f64::INFINITY,
    ];
    for w in xs.windows(2) {
        assert!(order_key(w[0]) <= order_key(w[1]));
    }
    assert_eq!(order_key(-0.0), order_key(0.0));
    for &x in &xs {
        assert_eq!(key_value(order_key(x)), x + 0.0);
    }
}

/// K of a ratio: the floor of the exact product of the decimal ratio and the count,
/// not of its binary rounding.
#[test]
fn ratio_count_is_the_floor_of_the_decimal_product() {
    use super::ratio_count;
    // (ratio in hundredths, m): exact K = floor(h * m / 100) in integers.
    for h in 0..=100u64 {
        for m in [0u64, 1, 3, 7, 10, 99, 100, 101, 1000, 12_345, 1 << 40] {
            let want = h * m / 100;
            assert_eq!(ratio_count(h as f64 / 100.0, m), want, "{h}/100 of {m}");
        }
    }
    assert_eq!(ratio_count(0.29, 100), 29); // 0.29 * 100 = 28.999999999999996
    assert_eq!(ratio_count(0.5, 7), 3); // a real half is still floored
    assert_eq!(ratio_count(1.0 / 3.0, 3), 1);
    assert_eq!(ratio_count(0.999_999, 1_000_000), 999_999);
    assert_eq!(ratio_count(0.999_999_9, 1_000_000), 999_999);
}
