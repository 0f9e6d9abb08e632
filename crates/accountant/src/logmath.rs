//! Log-space arithmetic and directed rounding.
//!
//! The RDP series mixes numbers as small as `1e-300` and as large as `exp(1e6)`, so every sum is
//! taken in log space. Where a rounded result feeds a privacy claim we push it *up* by a bound on
//! its accumulated rounding error ([`round_up`]), so floating point never makes a claim look
//! better than the exact arithmetic would (see `docs/accountant.md`, "Rounding").

/// Unit roundoff of f64 (half the machine epsilon): `fl(x op y) = (x op y)(1 + d)`, `|d| <= U`.
pub(crate) const U: f64 = f64::EPSILON / 2.0;

/// A streaming log-sum-exp: holds `log(sum_k exp(x_k))` without overflow or underflow.
///
/// Summation is kept relative to the running maximum, so each addition loses at most a couple of
/// units of roundoff relative to the total.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSum {
    max: f64,
    /// `sum_k exp(x_k - max)`, always >= 1 once a finite term was added.
    scaled: f64,
}

impl LogSum {
    /// The empty sum (log 0 = -inf).
    pub(crate) fn new() -> Self {
        LogSum {
            max: f64::NEG_INFINITY,
            scaled: 0.0,
        }
    }

    /// Adds `exp(x)` to the sum.
    pub(crate) fn add(&mut self, x: f64) {
        if x == f64::NEG_INFINITY {
            return;
        }
        if x > self.max {
            self.scaled = self.scaled * (self.max - x).exp() + 1.0;
            self.max = x;
        } else {
            self.scaled += (x - self.max).exp();
        }
    }

    /// `log` of the sum; `-inf` for the empty sum.
    pub(crate) fn value(&self) -> f64 {
        if self.max == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            self.max + self.scaled.ln()
        }
    }
}

/// `log(exp(a) + exp(b))`.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `log(exp(a) - exp(b))`, or `None` when `a <= b` (the difference is not positive).
pub(crate) fn log_sub(a: f64, b: f64) -> Option<f64> {
    if b == f64::NEG_INFINITY {
        return Some(a);
    }
    if a <= b {
        return None;
    }
    // exp(a) - exp(b) = exp(a) * (1 - exp(b - a)); -expm1(b - a) is accurate near 0.
    Some(a + (-(b - a).exp_m1()).ln())
}

/// `log(erfc(x))`, accurate for all finite `x`, including where `erfc(x)` underflows.
///
/// For `x <= 25` this is `ln(erfc(x))` with musl's erfc (error below 1 ulp) where
/// `erfc(25) ~ 8e-274` is still a normal f64. Beyond, the asymptotic expansion
/// `erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k`
/// is truncated after the positive term `k = 8`. The expansion's remainder has the sign of, and
/// is smaller than, the first omitted term, so truncating after a positive term gives an upper
/// bound on `erfc(x)`, with relative excess below `17!! / 1250^9 < 1e-20` at `x = 25`.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x <= 25.0 {
        return libm::erfc(x).ln();
    }
    let inv = 1.0 / (2.0 * x * x);
    // sum_{k=0}^{8} (-1)^k (2k-1)!! inv^k, by Horner in the ratio of successive terms.
    let mut series = 1.0;
    for k in (1..=8).rev() {
        series = 1.0 - (2 * k - 1) as f64 * inv * series;
    }
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

/// `x` raised by a bound on its rounding error: `x + |x| * rel + tiny`, then to the next f64.
///
/// `rel` is a bound on the relative error of the computation that produced `x`; the final
/// `next_up` covers the rounding of this adjustment itself.
pub(crate) fn round_up(x: f64, rel: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    (x + x.abs() * rel + f64::MIN_POSITIVE).next_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_matches_direct_sum() {
        let xs = [-3.0, 0.5, 2.0, -700.0, 1.25];
        let mut s = LogSum::new();
        for &x in &xs {
            s.add(x);
        }
        let direct: f64 = xs.iter().map(|x| x.exp()).sum();
        assert!((s.value() - direct.ln()).abs() < 1e-14);
        assert_eq!(LogSum::new().value(), f64::NEG_INFINITY);
    }

    #[test]
    fn log_add_and_sub_invert() {
        let a = log_add(1.0, -2.0);
        assert!((a - (1f64.exp() + (-2f64).exp()).ln()).abs() < 1e-15);
        let b = log_sub(a, -2.0).unwrap();
        assert!((b - 1.0).abs() < 1e-14);
        assert_eq!(log_sub(1.0, 1.0), None);
        assert_eq!(log_sub(3.0, f64::NEG_INFINITY), Some(3.0));
    }

    #[test]
    fn log_erfc_is_continuous_at_the_switch_and_accurate() {
        // Both branches evaluated around the switch point agree to ~1e-15 relative in the log.
        let x = 25.0f64;
        let direct = libm::erfc(x).ln();
        let inv = 1.0 / (2.0 * x * x);
        let mut series = 1.0;
        for k in (1..=8).rev() {
            series = 1.0 - (2 * k - 1) as f64 * inv * series;
        }
        let asym = -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln();
        assert!(
            (direct - asym).abs() < 1e-12 * direct.abs(),
            "{direct} vs {asym}"
        );
        // Pins from mpmath 1.3 at 40 digits: log(erfc(x)) for x = 26, 30, 100.
        for (x, want) in [
            (26.0, -679.831_199_763_194_2),
            (30.0, -903.974_117_110_643_9),
            (100.0, -10_005.177_585_122_664),
        ] {
            let v = log_erfc(x);
            assert!(
                ((v - want) / want).abs() < 1e-15,
                "log_erfc({x}) = {v}, want {want}"
            );
            // An upper bound, as documented (up to the final rounding).
            assert!(v >= want - 4.0 * f64::EPSILON * want.abs());
        }
        assert!((log_erfc(-3.0) - libm::erfc(-3.0).ln()).abs() < 1e-16);
    }

    #[test]
    fn round_up_never_lowers() {
        for &x in &[0.0, 1e-300, 1.0, -1.0, 7.3, -1e10] {
            assert!(round_up(x, 1e-12) > x);
        }
        assert_eq!(round_up(f64::INFINITY, 1e-12), f64::INFINITY);
    }
}
