//! Selection-rate schedules: the fraction of unpruned coordinates updated at each step.

use crate::error::{Result, SelectError};

/// The selection rate as a function of the step (0-based).
#[derive(Debug, Clone, PartialEq)]
pub enum RateSchedule {
    /// The same rate at every step.
    Constant(f64),
    /// Linear from `from` at step 0 to `to` at step `steps`, then constant at `to`.
    Linear {
        /// Rate at step 0.
        from: f64,
        /// Rate from step `steps` on.
        to: f64,
        /// Length of the ramp (0: `to` from the start).
        steps: u64,
    },
    /// Piecewise constant: `(first step, rate)` pairs with strictly increasing first steps, the
    /// first at step 0; each rate holds until the next pair's step.
    Steps(Vec<(u64, f64)>),
}

fn check_rate(r: f64) -> Result<()> {
    if r.is_finite() && r > 0.0 && r <= 1.0 {
        Ok(())
    } else {
        Err(SelectError::InvalidRate(r))
    }
}

impl RateSchedule {
    /// Checks every rate and the step list.
    pub fn validate(&self) -> Result<()> {
        match self {
            RateSchedule::Constant(r) => check_rate(*r),
            RateSchedule::Linear { from, to, .. } => {
                check_rate(*from)?;
                check_rate(*to)
            }
            RateSchedule::Steps(v) => {
                let Some(&(first, _)) = v.first() else {
                    return Err(SelectError::InvalidConfig(
                        "a step-wise rate schedule needs at least one (step, rate) pair"
                            .to_string(),
                    ));
                };
                if first != 0 {
                    return Err(SelectError::InvalidConfig(format!(
                        "a step-wise rate schedule must start at step 0, not {first}"
                    )));
                }
                for w in v.windows(2) {
                    if w[1].0 <= w[0].0 {
                        return Err(SelectError::InvalidConfig(format!(
                            "rate schedule steps must increase strictly: {} then {}",
                            w[0].0, w[1].0
                        )));
                    }
                }
                v.iter().try_for_each(|&(_, r)| check_rate(r))
            }
        }
    }

    /// The rate at `step` (assumes [`RateSchedule::validate`] passed).
    pub fn rate(&self, step: u64) -> f64 {
        match self {
            RateSchedule::Constant(r) => *r,
            RateSchedule::Linear { from, to, steps } => {
                if *steps == 0 || step >= *steps {
                    *to
                } else {
                    from + (to - from) * (step as f64 / *steps as f64)
                }
            }
            RateSchedule::Steps(v) => {
                let i = v.partition_point(|&(s, _)| s <= step);
                v[i.saturating_sub(1)].1
            }
        }
    }
}
