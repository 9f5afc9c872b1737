//! A selection request: its defaults (`SelectSpec::new`, `Mode::new`), which the CLI and
//! the Python binding both map onto, and its checks against the inputs.

use crate::error::{Error, Result};

use super::{Amount, By, Keep, Mode, SelectInputs, SelectSpec};

impl SelectSpec {
    /// A request with its defaults filled in: `keep` is highest for the difference (a
    /// large reference-minus-teacher loss is what Difference Sampling keeps) and lowest
    /// for one model's loss; exactly one of `ratio` and `count` is given.
    pub fn new(
        by: By,
        keep: Option<Keep>,
        mode: Mode,
        ratio: Option<f64>,
        count: Option<u64>,
    ) -> Result<SelectSpec> {
        let keep = keep.unwrap_or(match by {
            By::Diff => Keep::Highest,
            By::Teacher | By::Reference => Keep::Lowest,
        });
        let amount = match (ratio, count) {
            (Some(r), None) => Amount::Ratio(r),
            (None, Some(k)) => Amount::Count(k),
            _ => return Err(Error::invalid("pass exactly one of ratio and count")),
        };
        Ok(SelectSpec {
            by,
            keep,
            mode,
            amount,
        })
    }
}

impl Mode {
    /// The mode of the `random` / `temperature` flags: top-K when neither is given.
    pub fn new(random: bool, temperature: Option<f64>, seed: u64) -> Result<Mode> {
        match (random, temperature) {
            (true, Some(_)) => Err(Error::invalid(
                "pass either random or temperature, not both",
            )),
            (true, None) => Ok(Mode::Random { seed }),
            (false, Some(temperature)) => Ok(Mode::Gumbel { temperature, seed }),
            (false, None) => Ok(Mode::Top),
        }
    }
}

pub(super) fn check_inputs(inputs: &SelectInputs, spec: &SelectSpec) -> Result<u64> {
    let mut lens: Vec<(String, u64)> = Vec::new();
    for (name, src) in [
        ("teacher", &inputs.teacher),
        ("reference", &inputs.reference),
    ] {
        if let Some(s) = src {
            lens.push((format!("{name} {}", s.path().display()), s.len()));
        }
    }
    if let Some(n) = inputs.num_instances {
        lens.push(("dataset".into(), n));
    }
    if lens.windows(2).any(|w| w[0].1 != w[1].1) {
        let list: Vec<String> = lens.iter().map(|(w, n)| format!("{w} has {n}")).collect();
        return Err(Error::invalid(format!(
            "inputs disagree on the number of instances: {}",
            list.join(", ")
        )));
    }
    let needs_scores = !matches!(spec.mode, Mode::Random { .. });
    if needs_scores {
        let missing = match spec.by {
            By::Diff if inputs.teacher.is_none() || inputs.reference.is_none() => {
                Some("by=diff needs teacher and reference scores")
            }
            By::Teacher if inputs.teacher.is_none() => Some("by=teacher needs teacher scores"),
            By::Reference if inputs.reference.is_none() => {
                Some("by=reference needs reference scores")
            }
            _ => None,
        };
        if let Some(m) = missing {
            return Err(Error::invalid(m));
        }
    }
    if let Amount::Ratio(r) = spec.amount {
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::invalid(format!("ratio must lie in [0, 1], got {r}")));
        }
    }
    if let Mode::Gumbel { temperature, .. } = spec.mode {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::invalid(format!(
                "temperature must be finite and > 0, got {temperature}"
            )));
        }
    }
    lens.first().map(|l| l.1).ok_or_else(|| {
        Error::invalid("nothing to select from: give scores, or --data for --random")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(by: By, keep: Option<Keep>, ratio: Option<f64>, count: Option<u64>) -> SelectSpec {
        SelectSpec::new(by, keep, Mode::Top, ratio, count).unwrap()
    }

    #[test]
    fn keep_defaults_to_highest_for_the_difference_else_lowest() {
        assert_eq!(spec(By::Diff, None, Some(0.1), None).keep, Keep::Highest);
        assert_eq!(spec(By::Teacher, None, Some(0.1), None).keep, Keep::Lowest);
        assert_eq!(
            spec(By::Reference, None, Some(0.1), None).keep,
            Keep::Lowest
        );
        let low = spec(By::Diff, Some(Keep::Lowest), Some(0.1), None);
        assert_eq!(low.keep, Keep::Lowest);
        let high = spec(By::Teacher, Some(Keep::Highest), None, Some(3));
        assert_eq!(high.keep, Keep::Highest);
        assert_eq!(high.amount, Amount::Count(3));
        assert_eq!(low.amount, Amount::Ratio(0.1));
    }

    #[test]
    fn exactly_one_amount() {
        for (ratio, count) in [(None, None), (Some(0.5), Some(2))] {
            let e = SelectSpec::new(By::Diff, None, Mode::Top, ratio, count).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e:?}");
            assert!(
                e.to_string().contains("exactly one of ratio and count"),
                "{e}"
            );
        }
    }

    #[test]
    fn mode_from_flags() {
        assert_eq!(Mode::new(false, None, 7).unwrap(), Mode::Top);
        assert_eq!(Mode::new(true, None, 7).unwrap(), Mode::Random { seed: 7 });
        let g = Mode::new(false, Some(2.0), 7).unwrap();
        assert_eq!(
            g,
            Mode::Gumbel {
                temperature: 2.0,
                seed: 7
            }
        );
        let e = Mode::new(true, Some(2.0), 7).unwrap_err();
        assert!(
            e.to_string().contains("random or temperature, not both"),
            "{e}"
        );
    }
}
