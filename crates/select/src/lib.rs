//! # sparsedp-select
//!
//! Per-step coordinate selection for sparse DP-SGD ("gradient dropping", Adamczewski, He & Park
//! 2023): at every step only a fraction of the unpruned coordinates is active; only they count
//! towards the clipping norm, receive noise and are updated.
//!
//! * [`SelectMethod`]: random (fresh seeded subset per step), magnitude (largest current
//!   `|w|`), public gradient (largest `|g|` of a [`PublicGradient`], which can only be made from a
//!   public [`sparsedp_prune::DataBatch`] or by an explicit [`PublicGradient::assume_public`]).
//!   **Selection never reads private data**: weights are outputs of earlier DP steps, so all
//!   three are free post-processing (see `docs/method.md`).
//! * [`Budget`]: one global threshold or a per-tensor budget; [`RateSchedule`]: constant,
//!   linear, step-wise.
//! * [`Selector`]: owns the candidate list and scratch buffers; one call per step returns the
//!   **combined** mask (selection AND pruning) as a [`sparsedp_nn::ParamMask`]. Partial
//!   selection (`select_nth_unstable`) and an undoable partial Fisher-Yates shuffle keep it far
//!   cheaper than the DP step (`cargo bench -p sparsedp-select`, `docs/benchmarks.md`).

mod error;
mod schedule;
mod selector;

pub use error::{Result, SelectError};
pub use schedule::RateSchedule;
pub use selector::{Budget, PublicGradient, SelectMethod, Selector, SelectorConfig};
