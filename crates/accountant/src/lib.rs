//! # sparsedp-accountant
//!
//! A Renyi-DP (RDP) accountant for DP-SGD: the Poisson-subsampled Gaussian mechanism under
//! add/remove-one neighbouring datasets. It is a standalone crate, with no dependency on the rest
//! of sparsedp, for users who only need accounting and for auditors who check it.
//!
//! What it computes, and which way each approximation errs:
//! - [`rdp_subsampled_gaussian`]: RDP of one step at any order `alpha > 1` (Mironov, Talwar &
//!   Zhang 2019), in log space. Fractional orders sum an infinite series either by absolute
//!   values (an upper bound; the default, [`FractionalSeries::AbsoluteBound`]) or with signs
//!   (Opacus' choice, [`FractionalSeries::Signed`]). The truncated tail is bounded rigorously and
//!   added; floating-point error is bounded and added.
//! - [`RdpAccountant`] / [`RdpCurve`]: composition over heterogeneous phases (RDP adds up).
//! - [`epsilon_from_rdp`] / [`delta_from_rdp`]: conversion to (epsilon, delta)-DP (Balle et al.
//!   2020; Canonne, Kamath & Steinke 2020), minimised over an [`Orders`] set, with a warning when
//!   the optimum sits at the set's edge.
//! - [`calibrate_sigma`] and [`max_steps`]: the noise a plan needs, or the steps a budget
//!   affords; both never overshoot the target epsilon.
//!
//! Every returned epsilon or delta is an upper bound on what exact arithmetic would give for the
//! chosen series and orders ("rounding errs against the privacy claim"). The derivations are in
//! `docs/accountant.md` of the repository.
//!
//! ```
//! use sparsedp_accountant::{FractionalSeries, Orders, RdpAccountant};
//!
//! let mut acc = RdpAccountant::new(Orders::opacus(), FractionalSeries::AbsoluteBound);
//! for _ in 0..100 {
//!     acc.step(0.01, 1.1)?; // q = 1%, sigma = 1.1
//! }
//! let spent = acc.epsilon(1e-5)?;
//! assert!(spent.epsilon > 0.0 && spent.epsilon < 2.0);
//! # Ok::<(), sparsedp_accountant::Error>(())
//! ```
//!
//! Calibrating a plan, then spending it (the trainer's pattern; also in the README):
//!
//! ```
//! use sparsedp_accountant::{CalibrationOptions, RdpAccountant, calibrate_sigma};
//!
//! let plan = calibrate_sigma(3.0, 1e-5, 512.0 / 60000.0, 4688, &CalibrationOptions::default())?;
//! let mut acc = RdpAccountant::default(); // Opacus' orders, absolute-value series
//! for _ in 0..4688 {
//!     acc.step(512.0 / 60000.0, plan.sigma)?;
//! }
//! assert!(acc.epsilon(1e-5)?.epsilon <= 3.0); // calibration never overshoots
//! # Ok::<(), sparsedp_accountant::Error>(())
//! ```

mod accountant;
mod calibrate;
#[cfg(feature = "cli")]
pub mod cli;
mod conversion;
mod error;
mod logmath;
mod orders;
mod rdp;

pub use accountant::{Phase, RdpAccountant, RdpCurve};
pub use calibrate::{
    Calibration, CalibrationOptions, StepBudget, calibrate_sigma, max_steps, sampling_rate,
    steps_for_epochs,
};
pub use conversion::{
    OrderEdge, PrivacyGuarantee, delta_from_rdp, epsilon_from_rdp, validate_delta, validate_epsilon,
};
pub use error::{Error, Result};
pub use orders::Orders;
pub use rdp::{
    FractionalSeries, rdp_subsampled_gaussian, validate_order, validate_q, validate_sigma,
};
