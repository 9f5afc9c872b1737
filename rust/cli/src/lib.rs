//! `miniplm-sample`: select, build and inspect on a CPU box. A thin clap front over
//! miniplm-core; shared by the native binary (installed on PATH by the wheel) and the
//! in-process entry `python -m miniplm._sample` (through the extension module).

mod progress;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use miniplm_core::build::{build_at, BuildOptions, BuildReport};
use miniplm_core::inspect::inspect;
use miniplm_core::select::{By, Keep, SelectRequest, SelectionReport};
use miniplm_core::{Error, Job, Result};

pub use progress::Bar;

#[derive(Parser)]
#[command(
    name = "miniplm-sample",
    version,
    about = "Exact Difference Sampling (MiniPLM) over token shards and score runs"
)]
struct Cli {
    /// Worker threads (0: one per core).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the top instances by r = nll_ref - nll_teacher (or a baseline) and write DIR/ids.npy.
    Select(SelectArgs),
    /// Copy the selected instances into new Megatron shards.
    Build(BuildArgs),
    /// Summarise a dataset, a score run or a selection.
    Inspect(InspectArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ByArg {
    Diff,
    Teacher,
    Reference,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeepArg {
    Highest,
    Lowest,
}

#[derive(Args)]
#[command(group(ArgGroup::new("amount").required(true).args(["ratio", "count"])))]
struct SelectArgs {
    /// Teacher score run directory (manifest.json + parts).
    #[arg(long, conflicts_with = "teacher_nll")]
    pub teacher: Option<PathBuf>,
    /// Reference score run directory.
    #[arg(long, conflicts_with = "reference_nll")]
    pub reference: Option<PathBuf>,
    /// Teacher per-instance mean NLL as a float32/float64 .npy.
    #[arg(long)]
    pub teacher_nll: Option<PathBuf>,
    /// Reference per-instance mean NLL as a float32/float64 .npy.
    #[arg(long)]
    pub reference_nll: Option<PathBuf>,
    /// Keep floor(RATIO x non-excluded instances).
    // Negative numbers are values, refused by the range check, not unknown flags.
    #[arg(long, allow_hyphen_values = true)]
    pub ratio: Option<f64>,
    /// Keep COUNT instances.
    #[arg(long)]
    pub count: Option<u64>,
    /// Instance ids never kept (the reference model's training slice), a .npy of ids.
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    /// Token dataset the scores belong to: checks lengths and the score runs' dataset,
    /// records its fingerprint in selection.json, gives N for --random without scores.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// What to rank by: the difference r, or one model's NLL (perplexity filtering).
    #[arg(long, value_enum, default_value = "diff")]
    pub by: ByArg,
    /// Keep the highest or lowest values [default: highest for diff, lowest for teacher/reference].
    #[arg(long, value_enum)]
    pub keep: Option<KeepArg>,
    /// Uniform random subset of the same size (the "w/o KD" baseline).
    #[arg(long, conflicts_with = "temperature")]
    pub random: bool,
    /// Gumbel-top-K sampling proportional to exp(value / T) instead of exact top-K.
    #[arg(long, allow_hyphen_values = true)]
    pub temperature: Option<f64>,
    /// Seed for --random and --temperature.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (ids.npy, selection.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    pub overwrite: bool,
    /// Print selection.json instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct BuildArgs {
    /// Source token dataset: a directory, a shard prefix, or a quoted glob of prefixes
    /// ('dir/*_tokens').
    #[arg(long)]
    pub data: PathBuf,
    /// Selection directory written by `select`.
    #[arg(long)]
    pub selection: PathBuf,
    /// Output directory of the refined dataset.
    #[arg(long)]
    pub out: PathBuf,
    /// Write instances in a seeded random order instead of corpus order.
    #[arg(long)]
    pub shuffle: bool,
    /// Seed for --shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest .bin per output shard, in bytes (suffixes K, M, G, T: powers of 1024).
    #[arg(long, value_parser = parse_size)]
    pub shard_size: Option<u64>,
    /// Shard name prefix.
    #[arg(long, default_value = "refined")]
    pub name: String,
    /// Replace an existing output.
    #[arg(long)]
    pub overwrite: bool,
    /// Print build.json instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// A token dataset, a score run, a selection, or a .npy score array.
    pub path: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Parse `123`, `64K`, `1.5G`, `4GiB` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?}")),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("size must be positive: {s:?}"));
    }
    let bytes = (v * mult as f64) as u64;
    if bytes == 0 {
        return Err(format!("size must be at least one byte: {s:?}"));
    }
    Ok(bytes)
}

impl SelectArgs {
    /// The core's request from the flags (its defaults and conflicts live in the core).
    pub fn request(&self) -> SelectRequest {
        SelectRequest {
            out: self.out.clone(),
            teacher: self.teacher.clone(),
            reference: self.reference.clone(),
            teacher_nll: self.teacher_nll.clone(),
            reference_nll: self.reference_nll.clone(),
            ratio: self.ratio,
            count: self.count,
            exclude: self.exclude.clone(),
            data: self.data.clone(),
            by: match self.by {
                ByArg::Diff => By::Diff,
                ByArg::Teacher => By::Teacher,
                ByArg::Reference => By::Reference,
            },
            keep: self.keep.map(|k| match k {
                KeepArg::Highest => Keep::Highest,
                KeepArg::Lowest => Keep::Lowest,
            }),
            random: self.random,
            temperature: self.temperature,
            seed: self.seed,
            overwrite: self.overwrite,
        }
    }
}

fn select_text(a: &SelectArgs, report: &SelectionReport) -> Result<String> {
    if a.json {
        return to_json(report);
    }
    Ok(format!(
        "kept {} of {} instances ({} excluded, {} without a score); threshold {}; ties at threshold {} (kept {})\nwrote {}",
        report.num_selected,
        report.num_instances,
        report.num_excluded,
        report.num_nan,
        report.threshold.map_or("-".to_string(), |t| format!("{t:.6}")),
        report.ties_at_threshold,
        report.ties_kept,
        a.out.join("ids.npy").display(),
    ))
}

/// `build` as the CLI runs it.
fn build_cmd(a: &BuildArgs, job: &Job) -> Result<BuildReport> {
    let opts = BuildOptions {
        name: a.name.clone(),
        shuffle_seed: a.shuffle.then_some(a.seed),
        max_shard_bytes: a.shard_size,
        overwrite: a.overwrite,
    };
    build_at(
        std::slice::from_ref(&a.data),
        &a.selection,
        &a.out,
        &opts,
        job,
    )
}

fn build_text(a: &BuildArgs, report: &BuildReport) -> Result<String> {
    if a.json {
        return to_json(report);
    }
    Ok(format!(
        "wrote {} instances, {} tokens ({:.2} GB) in {:.2} s ({:.2} GB/s) to {}",
        report.num_instances,
        report.num_tokens,
        report.num_bytes as f64 / 1e9,
        report.elapsed_s,
        report.num_bytes as f64 / 1e9 / report.elapsed_s.max(1e-9),
        a.out.display()
    ))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v)
        .map_err(|e| Error::internal(format!("cannot serialize JSON: {e}")))
}

/// Exit code of an internal error (a bug in miniplm), as sysexits.h's EX_SOFTWARE.
pub const EX_SOFTWARE: i32 = 70;

/// Run the CLI on `argv` (program name first); returns the process exit code. Errors are
/// printed to stderr as `miniplm-sample: error: ...`.
pub fn run(argv: Vec<OsString>, cancel: &AtomicBool) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let bar = Bar::new(!cli.quiet);
    let job = Job {
        progress: &bar,
        cancel,
        threads: cli.threads,
    };
    let out = match &cli.command {
        Command::Select(a) => a.request().run(&job).and_then(|r| select_text(a, &r)),
        Command::Build(a) => build_cmd(a, &job).and_then(|r| build_text(a, &r)),
        Command::Inspect(a) => {
            inspect(&a.path, &job).and_then(|r| if a.json { to_json(&r) } else { Ok(r.to_text()) })
        }
    };
    match out {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            match e {
                Error::Interrupted => {
                    eprintln!("miniplm-sample: interrupted; no output was written")
                }
                Error::Internal(_) => eprintln!("miniplm-sample: {e}"),
                _ => eprintln!("miniplm-sample: error: {e}"),
            }
            exit_code(&e)
        }
    }
}

/// 130 for Ctrl-C, EX_SOFTWARE for a bug of ours, 1 for everything the user can mend.
pub fn exit_code(e: &Error) -> i32 {
    match e {
        Error::Interrupted => 130,
        Error::Internal(_) => EX_SOFTWARE,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::{exit_code, parse_size, Cli, Command, EX_SOFTWARE};
    use clap::Parser;
    use miniplm_core::Error;

    #[test]
    fn internal_errors_exit_with_ex_software() {
        assert_eq!(
            exit_code(&Error::internal("tie cut not found")),
            EX_SOFTWARE
        );
        assert_eq!(EX_SOFTWARE, 70);
        assert_eq!(exit_code(&Error::invalid("ratio must lie in [0, 1]")), 1);
        assert_eq!(exit_code(&Error::Interrupted), 130);
    }

    #[test]
    fn negative_numbers_are_values() {
        for (flag, value) in [
            ("--ratio", "-0.1"),
            ("--ratio", "-1e-3"),
            ("--temperature", "-2"),
        ] {
            let mut argv = vec!["miniplm-sample", "select", "--teacher-nll", "t.npy"];
            argv.extend(["--out", "o", flag, value]);
            if flag != "--ratio" {
                argv.extend(["--ratio", "0.5"]);
            }
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
            let Command::Select(a) = cli.command else {
                panic!("not select")
            };
            let got = if flag == "--ratio" {
                a.ratio
            } else {
                a.temperature
            };
            assert_eq!(got, Some(value.parse().unwrap()));
        }
    }

    #[test]
    fn select_flags_map_onto_the_core_request() {
        use miniplm_core::select::{By, Keep, SelectRequest};
        let argv = [
            "miniplm-sample",
            "select",
            "--teacher",
            "T",
            "--reference-nll",
            "r.npy",
            "--count",
            "7",
            "--exclude",
            "ex.npy",
            "--data",
            "D",
            "--by",
            "reference",
            "--keep",
            "highest",
            "--temperature",
            "0.5",
            "--seed",
            "3",
            "--out",
            "O",
            "--overwrite",
        ];
        let Command::Select(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not select")
        };
        let want = SelectRequest {
            teacher: Some("T".into()),
            reference_nll: Some("r.npy".into()),
            count: Some(7),
            exclude: Some("ex.npy".into()),
            data: Some("D".into()),
            by: By::Reference,
            keep: Some(Keep::Highest),
            temperature: Some(0.5),
            seed: 3,
            overwrite: true,
            ..SelectRequest::new("O".into())
        };
        assert_eq!(a.request(), want);
        let argv = [
            "miniplm-sample",
            "select",
            "--teacher-nll",
            "t",
            "--reference",
            "R",
        ];
        let argv = [&argv[..], &["--ratio", "0.25", "--random", "--out", "O"]].concat();
        let Command::Select(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not select")
        };
        let want = SelectRequest {
            teacher_nll: Some("t".into()),
            reference: Some("R".into()),
            ratio: Some(0.25),
            random: true,
            ..SelectRequest::new("O".into())
        };
        assert_eq!(a.request(), want);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0.5").is_err()); // was 0 bytes: a shard per instance
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
    }
}
