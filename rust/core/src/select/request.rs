//! A selection as the user asks for it (paths and flags, nothing opened yet): what the
//! CLI's flags and the Python keywords both map onto. Its conflicts and defaults are
//! checked here once (`SelectRequest::spec`); `SelectRequest::run` opens the inputs and
//! selects.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::output::check_spares_inputs;
use crate::scores::ScoreSource;
use crate::shards::Dataset;

use super::{select, By, DatasetRef, Keep, Mode, SelectInputs, SelectSpec, SelectionReport};

#[derive(Clone, Debug, PartialEq)]
pub struct SelectRequest {
    /// Output directory (`ids.npy`, `selection.json`).
    pub out: PathBuf,
    /// Score run directories; or, instead of each, a per-instance mean-NLL `.npy`.
    pub teacher: Option<PathBuf>,
    pub reference: Option<PathBuf>,
    pub teacher_nll: Option<PathBuf>,
    pub reference_nll: Option<PathBuf>,
    /// Exactly one of the two amounts.
    pub ratio: Option<f64>,
    pub count: Option<u64>,
    pub exclude: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub by: By,
    /// `None`: the default of `by` (`SelectSpec::new`).
    pub keep: Option<Keep>,
    pub random: bool,
    pub temperature: Option<f64>,
    pub seed: u64,
    pub overwrite: bool,
}

impl SelectRequest {
    /// A top-K request by the difference with every option at its default.
    pub fn new(out: PathBuf) -> SelectRequest {
        SelectRequest {
            out,
            teacher: None,
            reference: None,
            teacher_nll: None,
            reference_nll: None,
            ratio: None,
            count: None,
            exclude: None,
            data: None,
            by: By::Diff,
            keep: None,
            random: false,
            temperature: None,
            seed: 0,
            overwrite: false,
        }
    }

    /// The checked request with its defaults filled in.
    pub fn spec(&self) -> Result<SelectSpec> {
        for (run, npy, a, b) in [
            (&self.teacher, &self.teacher_nll, "teacher", "teacher_nll"),
            (
                &self.reference,
                &self.reference_nll,
                "reference",
                "reference_nll",
            ),
        ] {
            if run.is_some() && npy.is_some() {
                return Err(Error::invalid(format!("pass either {a} or {b}, not both")));
            }
        }
        let mode = Mode::new(self.random, self.temperature, self.seed)?;
        SelectSpec::new(self.by, self.keep, mode, self.ratio, self.count)
    }

    /// Open the inputs, check that the output spares them, and select (all or nothing).
    pub fn run(&self, job: &Job) -> Result<SelectionReport> {
        let spec = self.spec()?;
        let data = self.data.as_deref().map(Dataset::open).transpose()?;
        let mut inputs: Vec<&Path> = [
            &self.teacher,
            &self.reference,
            &self.teacher_nll,
            &self.reference_nll,
            &self.exclude,
            &self.data,
        ]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
        inputs.extend(data.iter().flat_map(Dataset::files));
        check_spares_inputs(&self.out, &inputs)?;
        let inputs = SelectInputs {
            teacher: open_scores(&self.teacher, &self.teacher_nll)?,
            reference: open_scores(&self.reference, &self.reference_nll)?,
            exclude: self.exclude.clone(),
            num_instances: data.as_ref().map(Dataset::len),
            dataset: data.as_ref().map(DatasetRef::of).transpose()?,
        };
        select(&inputs, &spec, &self.out, self.overwrite, job)
    }
}

fn open_scores(run: &Option<PathBuf>, npy: &Option<PathBuf>) -> Result<Option<ScoreSource>> {
    match (run, npy) {
        (Some(dir), _) => ScoreSource::open_run(dir).map(Some),
        (None, Some(path)) => ScoreSource::open_npy(path).map(Some),
        (None, None) => Ok(None),
    }
}

impl FromStr for By {
    type Err = Error;
    fn from_str(s: &str) -> Result<By> {
        match s {
            "diff" => Ok(By::Diff),
            "teacher" => Ok(By::Teacher),
            "reference" => Ok(By::Reference),
            _ => Err(Error::invalid(format!(
                "by must be 'diff', 'teacher' or 'reference', got {s:?}"
            ))),
        }
    }
}

impl FromStr for Keep {
    type Err = Error;
    fn from_str(s: &str) -> Result<Keep> {
        match s {
            "highest" => Ok(Keep::Highest),
            "lowest" => Ok(Keep::Lowest),
            _ => Err(Error::invalid(format!(
                "keep must be 'highest' or 'lowest', got {s:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Amount;

    fn req() -> SelectRequest {
        SelectRequest {
            teacher_nll: Some("t.npy".into()),
            reference_nll: Some("r.npy".into()),
            ratio: Some(0.5),
            ..SelectRequest::new("o".into())
        }
    }

    #[test]
    fn defaults_fill_the_spec() {
        let s = req().spec().unwrap();
        assert_eq!((s.by, s.keep, s.mode), (By::Diff, Keep::Highest, Mode::Top));
        assert_eq!(s.amount, Amount::Ratio(0.5));
        let r = SelectRequest {
            by: By::Teacher,
            ratio: None,
            count: Some(4),
            temperature: Some(2.0),
            seed: 9,
            ..req()
        };
        let s = r.spec().unwrap();
        assert_eq!((s.keep, s.amount), (Keep::Lowest, Amount::Count(4)));
        let gumbel = Mode::Gumbel {
            temperature: 2.0,
            seed: 9,
        };
        assert_eq!(s.mode, gumbel);
    }

    #[test]
    fn a_run_and_its_array_conflict() {
        let both = SelectRequest {
            teacher: Some("t".into()),
            ..req()
        };
        let e = both.spec().unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "pass either teacher or teacher_nll, not both"
        );
        let both = SelectRequest {
            reference: Some("r".into()),
            ..req()
        };
        let e = both.spec().unwrap_err().to_string();
        assert_eq!(e, "pass either reference or reference_nll, not both");
    }

    #[test]
    fn every_flag_conflict_is_checked_by_spec() {
        let e = SelectRequest {
            count: Some(2),
            ..req()
        }
        .spec()
        .unwrap_err();
        assert!(
            e.to_string().contains("exactly one of ratio and count"),
            "{e}"
        );
        let r = SelectRequest {
            random: true,
            temperature: Some(1.0),
            ..req()
        };
        let e = r.spec().unwrap_err();
        assert!(
            e.to_string().contains("random or temperature, not both"),
            "{e}"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("reference".parse::<By>().unwrap(), By::Reference);
        assert_eq!("lowest".parse::<Keep>().unwrap(), Keep::Lowest);
        let e = "dif".parse::<By>().unwrap_err().to_string();
        assert_eq!(
            e,
            r#"by must be 'diff', 'teacher' or 'reference', got "dif""#
        );
        let e = "high".parse::<Keep>().unwrap_err().to_string();
        assert_eq!(e, r#"keep must be 'highest' or 'lowest', got "high""#);
    }
}
