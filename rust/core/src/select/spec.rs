//! Checks of a selection request against its inputs.

use crate::error::{Error, Result};

use super::{Amount, By, Mode, SelectInputs, SelectSpec};

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
